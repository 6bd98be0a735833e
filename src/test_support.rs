//! Fixtures shared by the unit tests of several modules.

use crate::project::OpenProject;
use std::path::Path;

/// A project in `dir` over the first `n` records of the sample discharge set, split by patient
/// with `ratios` (train, validation, test).
pub fn discharge_project(dir: &Path, n: usize, ratios: (f64, f64, f64)) -> OpenProject {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data/discharge.jsonl");
    let text = std::fs::read_to_string(sample).expect("sample data");
    let lines: Vec<&str> = text.lines().take(n).collect();
    std::fs::write(dir.join("discharge.jsonl"), lines.join("\n")).expect("write data");
    let (train, val, test) = ratios;
    std::fs::write(
        dir.join("project.ron"),
        format!(
            r#"(name: "t", task: discharge, template: ChatMl,
            datasets: [(name: "discharge", path: "discharge.jsonl")],
            split: (ratios: ({train:?}, {val:?}, {test:?}), seed: 1))"#
        ),
    )
    .expect("write project");
    OpenProject::open(dir).expect("open project")
}
