//! The CLI contract end to end: gen-data → validate → split, JSON on stdout, exit codes.

mod common;
use common::lablens;

use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

/// 300 discharge records with seed 5 into `out`.
fn gen_discharge(out: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "gen-data",
        "--task",
        "discharge",
        "--n",
        "300",
        "--seed",
        "5",
        "--out",
        out,
    ];
    args.extend_from_slice(extra);
    lablens(&args)
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn gen_data_validate_split_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d.jsonl");
    let data_s = data.to_str().expect("utf8 path");
    let out = gen_discharge(data_s, &["--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_of(&out)["records"], 300);
    assert_eq!(read_jsonl(&data).len(), 300);

    // Same seed, same bytes.
    let again = dir.path().join("again.jsonl");
    gen_discharge(again.to_str().expect("utf8"), &[]);
    assert_eq!(
        std::fs::read(&data).expect("read"),
        std::fs::read(&again).expect("read")
    );

    let out = lablens(&["validate", data_s, "--json"]);
    let report = json_of(&out);
    assert_eq!(report["records"], 300);
    assert!(report["checks"].as_array().is_some_and(|c| !c.is_empty()));
    // Exit 0 exactly when every check passed.
    let all_passed = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .all(|c| c["passed"] == true);
    assert_eq!(out.status.code(), Some(if all_passed { 0 } else { 1 }));

    let split_dir = dir.path().join("split");
    let out = lablens(&[
        "split",
        data_s,
        "--ratios",
        "70,15,15",
        "--seed",
        "3",
        "--out",
        split_dir.to_str().expect("utf8"),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = json_of(&out);
    let mut owner: HashMap<String, String> = HashMap::new();
    let mut total = 0;
    for split in ["train", "validation", "test"] {
        let rows = read_jsonl(&split_dir.join(format!("{split}.jsonl")));
        assert_eq!(manifest["splits"][split]["records"], rows.len());
        total += rows.len();
        for r in rows {
            let patient = r["patient_id"].as_str().expect("patient").to_string();
            let prev = owner.insert(patient.clone(), split.to_string());
            assert!(
                prev.is_none() || prev.as_deref() == Some(split),
                "patient {patient} in two splits"
            );
        }
    }
    assert_eq!(total, 300);
    assert!(split_dir.join("split.json").exists());
}

#[test]
fn bad_input_exits_2_with_a_message_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.jsonl");
    let out = lablens(&["validate", missing.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.jsonl"));

    let out = lablens(&["gen-data", "--task", "poetry", "--out", "x.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--task"));

    let out = lablens(&[
        "split",
        missing.to_str().expect("utf8"),
        "--ratios",
        "70,30",
        "--out",
        "o",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ratios"));

    let out = lablens(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn validate_keeps_good_lines_and_names_the_bad_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("mixed.jsonl");
    let good = r#"{"id":"a","patient_id":"p1","task":"discharge","input":"Discharge Diagnosis: pneumonia. Take amoxicillin.","target":"You had a lung infection."}"#;
    let good2 = r#"{"id":"b","patient_id":"p2","task":"discharge","input":"Discharge Diagnosis: cellulitis of the leg.","target":"You had a skin infection."}"#;
    std::fs::write(
        &data,
        format!("{good}\n{{\"id\": \"c\", \"input\": \n[1,2]\n{good2}\n"),
    )
    .expect("write");
    let out = lablens(&["validate", data.to_str().expect("utf8"), "--json"]);
    let report = json_of(&out);
    assert_eq!(report["records"], 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("mixed.jsonl:2"), "{stderr}");
    assert!(stderr.contains("mixed.jsonl:3"), "{stderr}");
}

/// A repeated id is reported at its line and the record kept out; `--duplicate-ids rename`
/// keeps it under a new id, and the report's ids check passes.
#[test]
fn repeated_ids_are_refused_or_renamed_as_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("ids.jsonl");
    let row = |id: &str, patient: &str| {
        format!(
            r#"{{"id":"{id}","patient_id":"{patient}","task":"discharge","input":"Discharge Diagnosis: pneumonia, admitted for patient {patient}.","target":"You had a lung infection."}}"#
        )
    };
    let rows = [row("a", "p1"), row("b", "p2"), row("a", "p3")];
    std::fs::write(&data, rows.join("\n")).expect("write");
    let path = data.to_str().expect("utf8");

    let out = lablens(&["validate", path, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json_of(&out);
    assert_eq!(report["records"], 2);
    let ids = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "unique ids")
        .expect("an ids check")
        .clone();
    assert_eq!(ids["passed"], false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("ids.jsonl:3: field \"id\": id \"a\" is also the id of the record on line 1"),
        "{stderr}"
    );

    let renamed = lablens(&["validate", path, "--duplicate-ids", "rename", "--json"]);
    let report = json_of(&renamed);
    assert_eq!(report["records"], 3);
    let stderr = String::from_utf8_lossy(&renamed.stderr);
    assert!(stderr.contains("renamed \"a~2\""), "{stderr}");
    let checks = report["checks"].as_array().expect("checks");
    for name in ["unique ids", "schema valid"] {
        let check = checks.iter().find(|c| c["name"] == name).expect(name);
        assert_eq!(check["passed"], true, "{check}");
    }

    let out_dir = dir.path().join("splits");
    let split = lablens(&[
        "split",
        path,
        "--out",
        out_dir.to_str().expect("utf8"),
        "--duplicate-ids",
        "rename",
    ]);
    assert!(
        split.status.success(),
        "{}",
        String::from_utf8_lossy(&split.stderr)
    );
    let mut ids: Vec<String> = ["train", "validation", "test"]
        .iter()
        .flat_map(|s| read_jsonl(&out_dir.join(format!("{s}.jsonl"))))
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["a", "a~2", "b"]);
    let bad = lablens(&["validate", path, "--duplicate-ids", "keep"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// A project in `dir` over the 2,000 sample discharge records, with `extra` fields.
fn sample_project(dir: &Path, extra: &str) {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data/discharge.jsonl");
    std::fs::write(
        dir.join("project.ron"),
        format!(
            r#"(name: "s", task: discharge, template: ChatMl, {extra}
                datasets: [(name: "discharge", path: {:?})],
                split: (ratios: (80.0, 20.0, 0.0), seed: 1))"#,
            sample.to_str().expect("utf8")
        ),
    )
    .expect("write project");
}

/// A micro-batch beyond any machine is refused by its bound, and one beyond this machine's
/// memory (every sample record at the embedded model's full context) by the estimate, naming
/// the largest that fits; both exit 2 before a run folder exists.
#[test]
fn micro_batches_that_cannot_fit_are_refused_before_a_run_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    sample_project(dir.path(), "");
    let project = dir.path().to_str().expect("utf8");
    for (config, says) in [
        (
            "(micro_batch: 100000)",
            "micro_batch: must be between 1 and 4096",
        ),
        (
            "(micro_batch: 4096, max_seq_len: 1024)",
            "GiB available: at most",
        ),
    ] {
        let path = dir.path().join("c.ron");
        std::fs::write(&path, config).expect("write config");
        let out = lablens(&[
            "train",
            "--project",
            project,
            "--config",
            path.to_str().expect("utf8"),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{config}: {stderr}");
        assert!(stderr.contains(says), "{config}: {stderr}");
        assert!(!dir.path().join("runs").exists(), "{config}: a run folder");
    }
}

/// Fields `train` does not know, in `project.ron` and in a `--config` file, are named on
/// stderr (a misspelt setting would otherwise change nothing, silently).
#[test]
fn unknown_fields_of_a_project_and_a_config_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    sample_project(dir.path(), "modle: (source: Tiny),");
    let config = dir.path().join("t.ron");
    std::fs::write(
        &config,
        "(max_steps: Some(1), max_seq_len: 64, eval_records: 2, micro_batchh: 3, lora: (rank: 4))",
    )
    .expect("write config");
    let out = lablens(&[
        "train",
        "--project",
        dir.path().to_str().expect("utf8"),
        "--config",
        config.to_str().expect("utf8"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for field in [
        "project.ron: unknown field modle",
        "t.ron: unknown field micro_batchh",
        "t.ron: unknown field lora.rank",
    ] {
        assert!(stderr.contains(field), "{field}: {stderr}");
    }
}

/// The read bounds are the user's: a file over `--max-file-mb` is refused naming the limit and
/// how to raise it, a record over `--max-field-mb` is skipped and reported while the others load.
#[test]
fn read_bounds_are_set_on_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("big.jsonl");
    let long = "word ".repeat(300_000);
    let lines = [
        serde_json::json!({"id": "a", "input": long, "target": "ok"}),
        serde_json::json!({"id": "b", "input": "Take one tablet daily.", "target": "ok"}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&data, text).expect("write");
    let path = data.to_str().expect("utf8");

    let out = lablens(&["validate", path, "--max-file-mb", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("over the limit of 1048576 bytes (raise it with --max-file-mb"),
        "{stderr}"
    );

    let out = lablens(&["validate", path, "--max-field-mb", "1", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("big.jsonl:1: field \"input\": is 1500000 bytes, over the limit of 1048576"),
        "{stderr}"
    );
    assert_eq!(json_of(&out)["records"], 1, "the short record loads");

    let out = lablens(&["validate", path, "--max-field-mb", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A job's lines for people reach stderr also where it is a log, not a terminal (its bar is
/// hidden there).
#[test]
fn a_jobs_notes_reach_a_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("model");
    let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/sample_data/qa.jsonl");
    let out = lablens(&[
        "pretrain",
        "--corpus",
        corpus,
        "--out",
        out_dir.to_str().expect("utf8"),
        "--steps",
        "2",
        "--seed",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("step 1/2  loss"), "{stderr}");
    assert!(stderr.contains("step 2/2  loss"), "{stderr}");
}
