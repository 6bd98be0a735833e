//! What the integration tests share: running the `lablens` binary the way a user does.

use std::process::{Command, Output};

/// Runs `lablens` with `args` and returns its exit status and output.
pub fn lablens(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lablens"))
        .args(args)
        .output()
        .expect("run lablens")
}
