//! `lablens reviews`: unblinded totals, agreement between two reviewers, bad lines reported
//! with their numbers and skipped, the CSV export, and usage errors.

mod common;
use common::lablens;

use serde_json::{Value, json};
use std::path::Path;

fn line(reviewer: &str, id: &str, base: u8, run: u8, base_flags: &[&str]) -> String {
    json!({"reviewer": reviewer, "id": id,
           "a": {"source": "base", "rating": base, "flags": base_flags},
           "b": {"source": "r1", "rating": run, "flags": []},
           "comment": "", "at": 1})
    .to_string()
}

fn project(dir: &Path) -> String {
    std::fs::write(dir.join("project.ron"), "(name: \"rv\", task: discharge)").expect("project");
    let run = dir.join("runs").join("r1");
    std::fs::create_dir_all(&run).expect("run");
    let lines = [
        line("Ann", "d-1", 2, 5, &["omission"]),
        line("Ann", "d-2", 3, 4, &[]),
        "{\"reviewer\": \"Ann\", \"id\"".to_string(),
        line("Bo", "d-1", 2, 4, &["omission"]),
        line("Bo", "d-2", 3, 4, &["jargon"]),
        line("Ann", "d-2", 3, 5, &[]),
    ];
    std::fs::write(run.join("reviews.jsonl"), lines.join("\n") + "\n").expect("reviews");
    dir.display().to_string()
}

#[test]
fn summarises_unblinded_ratings_agreement_and_skips_bad_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(dir.path());
    let csv = dir.path().join("out.csv");
    let out = lablens(&[
        "reviews",
        "--project",
        &p,
        "--run",
        "r1",
        "--json",
        "--csv",
        &csv.display().to_string(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("reviews.jsonl: skipped line 3: "),
        "{stderr}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let s = &v["summary"];
    assert_eq!(
        (s["lines"].as_u64(), s["reviews"].as_u64()),
        (Some(5), Some(4))
    );
    assert_eq!(s["reviewers"], json!(["Ann", "Bo"]));
    assert_eq!(s["sources"][0]["source"], "base");
    assert_eq!(s["sources"][0]["mean_rating"], 2.5);
    assert_eq!(s["sources"][0]["flag_rates"]["omission"], 0.5);
    assert_eq!(
        s["sources"][1]["mean_rating"], 4.5,
        "Ann's correction counts, not her first line"
    );
    let a = &s["agreement"][0];
    assert_eq!(a["outputs"], 4);
    // Ratings (Ann, Bo): (2,2) (5,4) (3,3) (5,4): observed 0.5, chance 0.125, κ = 0.375/0.875.
    let k = a["rating_kappa"].as_f64().expect("kappa");
    assert!((k - 0.375 / 0.875).abs() < 1e-12, "{k}");
    assert_eq!(a["flag_kappa"]["omission"], 1.0);
    assert_eq!(v["skipped"][0]["line"], 3);
    let text = std::fs::read_to_string(&csv).expect("csv");
    assert_eq!(text.lines().count(), 5);

    let human = lablens(&["reviews", "--project", &p, "--run", "r1"]);
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert!(
        stdout.contains("base: 4 rated, mean rating 2.50"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Ann vs Bo: 4 outputs rated by both, same rating 50%"),
        "{stdout}"
    );

    let missing = lablens(&["reviews", "--project", &p, "--run", "nope"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no run \"nope\""));
}

#[test]
fn a_coordinator_chooses_the_records_reviewed_and_bad_ids_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(dir.path());
    let run = dir.path().join("runs").join("r1");
    let prediction = |id: &str| {
        json!({"id": id, "input": "note", "reference": "ref", "prediction": "out"}).to_string()
    };
    let rows: Vec<String> = ["d-1", "d-2", "d-3"].map(prediction).to_vec();
    std::fs::write(run.join("predictions.jsonl"), rows.join("\n") + "\n").expect("predictions");
    let ids = dir.path().join("ids.txt");
    let choose = |text: &str| {
        std::fs::write(&ids, text).expect("ids");
        lablens(&[
            "reviews",
            "--project",
            &p,
            "--run",
            "r1",
            "--choose",
            &ids.display().to_string(),
            "--json",
        ])
    };
    let set = run.join("review-set.json");

    let out = choose("# worst first\nd-3\n\nd-9\n");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ids.txt: line 4: \"d-9\" is not a record of"),
        "{stderr}"
    );
    assert!(!set.exists(), "nothing written");

    let out = choose("d-3\nd-1\nd-3\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3: \"d-3\" is chosen twice"));

    let out = choose("# worst first\nd-3\n\nd-1\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["chosen_records"], json!(["d-3", "d-1"]));
    let file: Value = serde_json::from_slice(&std::fs::read(&set).expect("set")).expect("json");
    assert_eq!(file["records"], json!(["d-3", "d-1"]));

    let out = lablens(&[
        "reviews",
        "--project",
        &p,
        "--run",
        "r1",
        "--choose-all",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["chosen_records"], Value::Null);
    assert!(!set.exists());
}
