//! `lablens explain` on the embedded model: LIME and saliency of one record written to
//! base/explain/<record>.json (each method's result kept beside the other), section importance
//! averaged over a split, and bad input named.

mod common;
use common::lablens;

use serde_json::Value;
use std::path::Path;
use std::process::Output;

const RECORD: &str = "dis-000517";

fn project(dir: &Path) -> String {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data/discharge.jsonl");
    let ron = format!(
        "(name: \"ex\", task: discharge, datasets: [(name: \"discharge\", path: {:?})])",
        data.display().to_string()
    );
    std::fs::write(dir.join("project.ron"), ron).expect("project");
    dir.display().to_string()
}

/// `explain` of RECORD under the project's base model with `extra`, printing JSON.
fn record_args<'a>(project: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "explain",
        "--project",
        project,
        "--base",
        "--record",
        RECORD,
    ];
    args.extend_from_slice(extra);
    args.push("--json");
    args
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document on stdout")
}

#[test]
fn lime_and_saliency_of_one_record_are_kept_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(dir.path());
    let common = record_args(&p, &["--max-new-tokens", "24"]);
    let lime = json_of(&lablens(
        &[&common[..], &["--samples", "24", "--seed", "3"]].concat(),
    ));
    let l = &lime["lime"];
    assert_eq!(l["samples"], 24);
    assert_eq!(l["features"], "words");
    assert_eq!(l["target"], "output");
    let weights = l["weights"].as_array().expect("weights");
    assert_eq!(
        weights.len(),
        300,
        "one weight per word of the 300-word note"
    );
    assert!(l["r2"].as_f64().is_some_and(|r| r.is_finite()));
    assert!(
        l["scoring"]["tokens_per_s"]
            .as_f64()
            .is_some_and(|t| t > 0.0)
    );
    assert_eq!(lime["output_source"], "generated");

    let sal = json_of(&lablens(&[&common[..], &["--method", "saliency"]].concat()));
    let words = sal["saliency"]["words"].as_array().expect("words");
    assert_eq!(words.len(), 300);
    let file = dir
        .path()
        .join("base/explain")
        .join(format!("{RECORD}.json"));
    let saved: Value = serde_json::from_slice(&std::fs::read(&file).expect("file")).expect("json");
    assert!(saved["lime"].is_object() && saved["saliency"].is_object());
    assert_eq!(saved["lime"]["samples"], 24);

    let sections = json_of(&lablens(&[
        "explain",
        "--project",
        &p,
        "--base",
        "--method",
        "sections",
        "--split",
        "test",
        "--limit",
        "2",
        "--max-new-tokens",
        "16",
        "--json",
    ]));
    let kinds = sections["report"]["sections"].as_array().expect("sections");
    assert!(kinds.iter().any(|s| s["section"] == "Medications"));
    assert!(dir.path().join("base/explain/sections-test.json").is_file());
}

#[test]
fn bad_input_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(dir.path());
    let explain = |extra: &[&str]| {
        let out = lablens(&[&["explain", "--project", &p, "--base"][..], extra].concat());
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = explain(&["--record", "nope"]);
    assert!(
        err.contains("discharge.jsonl") && err.contains("\"nope\""),
        "{err}"
    );
    assert!(explain(&["--record", RECORD, "--method", "shap"]).contains("--method"));
    let err = explain(&[
        "--record",
        RECORD,
        "--method",
        "saliency",
        "--max-new-tokens",
        "8",
        "--target",
        "medication:aspirin9",
    ]);
    assert!(err.contains("aspirin9"), "{err}");
}

/// Section importance of a record: its ROUGE-L is the explained output's (the evaluated one
/// where base/predictions.jsonl has it, as the Compare panel shows), and when the whole input's
/// output generated again for the method differs from that one, both numbers are given and said
/// apart; with no evaluation the two are one output and one number.
#[test]
fn section_importance_says_which_output_its_rouge_l_is_of() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(dir.path());
    let args = record_args(&p, &["--method", "sections", "--max-new-tokens", "12"]);
    let out = lablens(&args);
    let generated = json_of(&out);
    let s = &generated["sections"];
    assert_eq!(generated["output_source"], "generated");
    assert_eq!(s["regenerated_differs"], false);
    assert_eq!(s["output_rouge_l"], s["full_rouge_l"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("(the output above)"));

    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data/discharge.jsonl");
    let text = std::fs::read_to_string(data).expect("sample data");
    let record: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json"))
        .find(|r| r["id"] == RECORD)
        .expect("the record");
    let evaluated = serde_json::json!({
        "id": RECORD,
        "input": record["input"],
        "reference": record["target"],
        "prediction": record["target"],
    });
    std::fs::create_dir_all(dir.path().join("base")).expect("base");
    std::fs::write(
        dir.path().join("base/predictions.jsonl"),
        format!("{evaluated}\n"),
    )
    .expect("predictions");
    let out = lablens(&args);
    let explained = json_of(&out);
    let s = &explained["sections"];
    assert_eq!(explained["output_source"], "predictions.jsonl");
    assert_eq!(
        s["output_rouge_l"], 1.0,
        "the reference scored against itself"
    );
    assert_eq!(s["regenerated_differs"], true);
    assert!(s["full_rouge_l"].as_f64().is_some_and(|r| r < 1.0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ROUGE-L F1 1.000 of the output above"),
        "{stderr}"
    );
    assert!(stderr.contains("generated again here"), "{stderr}");
}
