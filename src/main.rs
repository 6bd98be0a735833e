//! `lablens`: with no arguments the workbench window, otherwise a headless subcommand.

fn main() {
    // SAFETY: the first statement of main; no other thread exists yet.
    unsafe { lablens::model::runtime::configure() };
    std::process::exit(lablens::cli::main());
}
