//! `lablens`: with no arguments the workbench window, otherwise a headless subcommand.

fn main() {
    std::process::exit(lablens::cli::main());
}
