//! `python3` for the tests that drive a reference tool: LABLENS_TEST_PYTHONPATH, when set, is
//! put on its PYTHONPATH (CI installs the packages there).

use std::process::Command;

pub fn python() -> Command {
    let mut cmd = Command::new("python3");
    if let Some(path) = std::env::var_os("LABLENS_TEST_PYTHONPATH") {
        cmd.env("PYTHONPATH", path);
    }
    cmd
}
