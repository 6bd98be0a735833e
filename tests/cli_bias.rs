//! `lablens bias` against a known truth: a dataset made with `gen-data --disparity` for one
//! group, outputs of an imaginary model that writes the clean explanation with some of its lines
//! left out (the same for every group), scored by `lablens metrics`, then audited. The degraded
//! group must be flagged, and no slice outside it. Also bias.json's contract and bad input.

mod common;
use common::lablens;

use serde_json::{Value, json};
use std::path::Path;
use std::process::Output;

const RUN: &str = "20261204-000000";

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// A stable pseudo-random number from a text (FNV-1a), for the imaginary model's omissions.
fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The clean explanation with about one content line in six left out.
fn imperfect_output(id: &str, clean: &str) -> String {
    clean
        .lines()
        .enumerate()
        .filter(|(i, line)| line.ends_with(':') || !hash(&format!("{id}/{i}")).is_multiple_of(6))
        .map(|(_, line)| line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A project whose run has the predictions of the imaginary model over `n` records, with the
/// references of `disparity`'s group degraded. Returns the project folder.
fn disparity_project(dir: &Path, n: usize, disparity: Option<&str>) -> std::path::PathBuf {
    let data = dir.join("data.jsonl");
    let n_text = n.to_string();
    let args = [
        "gen-data",
        "--task",
        "discharge",
        "--n",
        &n_text,
        "--seed",
        "11",
        "--out",
    ];
    let mut args: Vec<&str> = args.to_vec();
    let data_s = data.to_str().expect("utf8");
    args.push(data_s);
    if let Some(d) = disparity {
        args.extend(["--disparity", d]);
    }
    assert!(lablens(&args).status.success());
    let records: Vec<Value> = std::fs::read_to_string(&data)
        .expect("data")
        .lines()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect();
    let pairs: String = records
        .iter()
        .map(|r| {
            let id = r["id"].as_str().expect("id");
            let clean = r["meta"]["clean_target"]
                .as_str()
                .or(r["target"].as_str())
                .expect("target");
            let line = json!({"id": id, "prediction": imperfect_output(id, clean),
                "reference": r["target"], "source": r["input"], "task": "discharge"});
            format!("{line}\n")
        })
        .collect();
    let pairs_path = dir.join("pairs.jsonl");
    std::fs::write(&pairs_path, pairs).expect("pairs");
    let scored = ok_json(&lablens(&[
        "metrics",
        "--pred",
        pairs_path.to_str().expect("utf8"),
        "--json",
    ]));
    let examples = scored["examples"].as_array().expect("examples");
    assert_eq!(examples.len(), records.len());
    let project = dir.join("project");
    let run = project.join("runs").join(RUN);
    std::fs::create_dir_all(&run).expect("mkdir");
    std::fs::write(
        project.join("project.ron"),
        "(name: \"bias\", task: discharge)",
    )
    .expect("project");
    let lines: String = records
        .iter()
        .zip(examples)
        .map(|(r, m)| {
            let mut metrics = m.clone();
            metrics.as_object_mut().expect("object").remove("id");
            let line = json!({"id": r["id"], "input": r["input"], "reference": r["target"],
                "prediction": "", "task": "discharge", "gender": r["gender"], "age": r["age"],
                "ethnicity": r["ethnicity"], "metrics": metrics});
            format!("{line}\n")
        })
        .collect();
    std::fs::write(run.join("predictions.jsonl"), lines).expect("predictions");
    project
}

fn flagged(report: &Value) -> Vec<&Value> {
    report["slices"]
        .as_array()
        .expect("slices")
        .iter()
        .filter(|s| s["flagged"] == true)
        .collect()
}

fn has(slice: &Value, dim: &str, value: &str) -> bool {
    slice["dims"][dim].as_str() == Some(value)
}

#[test]
fn an_injected_disparity_is_flagged_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = disparity_project(dir.path(), 400, Some("ethnicity:Hispanic=0.6"));
    let project_s = project.to_str().expect("utf8");
    let started = std::time::Instant::now();
    let audit = || {
        ok_json(&lablens(&[
            "bias",
            "--project",
            project_s,
            "--run",
            RUN,
            "--json",
        ]))
    };
    let report = audit();
    eprintln!(
        "bias over 400 records: {:.2}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(report["metric"], "rougeL.fmeasure");
    assert_eq!(report["overall"]["n"], 400);
    let flagged = flagged(&report);
    let singles: Vec<&Value> = flagged
        .iter()
        .copied()
        .filter(|s| s["dims"].as_object().is_some_and(|d| d.len() == 1))
        .collect();
    assert_eq!(singles.len(), 1, "{singles:?}");
    assert!(has(singles[0], "ethnicity", "Hispanic"));
    let hispanic = singles[0];
    assert!(hispanic["q"].as_f64().expect("q") < 0.05);
    assert!(hispanic["diff_to_overall"].as_f64().expect("diff") < 0.0);
    for s in &flagged {
        assert!(
            has(s, "ethnicity", "Hispanic"),
            "flagged outside the group: {s}"
        );
    }
    let findings = report["findings"].to_string();
    assert!(
        findings.contains("Flagged: ethnicity Hispanic"),
        "{findings}"
    );
    // bias.json is the same document, beside the predictions.
    let written: Value = serde_json::from_str(
        &std::fs::read_to_string(project.join("runs").join(RUN).join("bias.json")).expect("file"),
    )
    .expect("json");
    assert_eq!(written, report);
    assert!(report["between_groups"]["ethnicity"]["difference"].as_f64() > Some(0.0));
    assert!(report["to_overall"]["gender,age_group"]["ratio"].as_f64() < Some(1.0));

    // The same audit again gives the same numbers: everything is seeded.
    let again = audit();
    assert_eq!(again["slices"], report["slices"]);
}

#[test]
fn without_a_disparity_nothing_is_flagged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = disparity_project(dir.path(), 300, None);
    let report = ok_json(&lablens(&[
        "bias",
        "--project",
        project.to_str().expect("utf8"),
        "--run",
        RUN,
        "--dims",
        "gender,ethnicity",
        "--metric",
        "bleu",
        "--json",
    ]));
    assert_eq!(report["metric"], "bleu");
    let flagged = flagged(&report);
    assert!(flagged.is_empty(), "{flagged:?}");
}

#[test]
fn bad_input_names_the_file_or_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("project.ron"),
        "(name: \"x\", task: discharge)",
    )
    .expect("project");
    let p = dir.path().to_str().expect("utf8");
    let out = lablens(&["bias", "--project", p, "--run", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("predictions.jsonl: not found") && err.contains("lablens eval"),
        "{err}"
    );
    let run = dir.path().join("runs").join("r1");
    std::fs::create_dir_all(&run).expect("mkdir");
    let line = json!({"id": "a", "input": "i", "reference": "r", "prediction": "p",
        "gender": "F", "metrics": {"bleu": 3.0}});
    std::fs::write(run.join("predictions.jsonl"), format!("{line}\n")).expect("write");
    let out = lablens(&["bias", "--project", p, "--run", "r1", "--metric", "rouge9"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("predictions.jsonl") && err.contains("\"rouge9\"") && err.contains("bleu"),
        "{err}"
    );
    let out = lablens(&["bias", "--project", p, "--run", "r1", "--dims", "income"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dims"));
    let out = lablens(&["bias", "--project", p, "--run", "r1", "--metric", "bleu"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("BLEU by group"));
}
