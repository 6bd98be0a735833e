//! `lablens registry` through the binary, on run folders written in the formats the trainer,
//! `lablens eval` and `lablens bias` write (the per-record and corpus metrics come from
//! `lablens metrics`, the audit from `lablens bias` itself): versions, list and show, promotion
//! through the gates and the degradation check, forcing, rollback, two registrations at once,
//! and registrations killed at random moments.

mod common;
use common::lablens;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const RECORDS: usize = 40;
const GATES: &str = r#"[
    (metric: "rouge1", compare: ">=", threshold: 0.5, lower_bound: true),
    (metric: "bias.flagged_slices", compare: "<=", threshold: 0),
]"#;

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A project over the first records of the sample discharge set, with `gates`.
fn project(dir: &Path, gates: &str) -> PathBuf {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data/discharge.jsonl");
    let text = std::fs::read_to_string(sample).expect("sample data");
    let lines: Vec<&str> = text.lines().take(RECORDS).collect();
    std::fs::write(dir.join("discharge.jsonl"), lines.join("\n") + "\n").expect("data");
    std::fs::write(
        dir.join("project.ron"),
        format!(
            r#"(name: "reg", task: discharge,
                datasets: [(name: "discharge", path: "discharge.jsonl")],
                gates: {gates},
                registry: (primary_metric: "rouge1", max_relative_drop: 0.02))"#
        ),
    )
    .expect("project");
    dir.to_path_buf()
}

fn records(project: &Path) -> Vec<Value> {
    std::fs::read_to_string(project.join("discharge.jsonl"))
        .expect("data")
        .lines()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect()
}

/// The reference with every `every`-th line of its content left out (none for 0).
fn output(reference: &str, every: usize) -> String {
    reference
        .lines()
        .enumerate()
        .filter(|(i, l)| every == 0 || l.ends_with(':') || i % every != 1)
        .map(|(_, l)| l)
        .collect::<Vec<_>>()
        .join("\n")
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A finished run `id` whose adapter weights are `weights` bytes (a sparse file: as large as a
/// real adapter, without the disk); evaluated (predictions.jsonl and eval.json as `lablens eval`
/// writes them) when `outputs` is given, each record's prediction made by the function.
fn run(project: &Path, id: &str, weights: u64, outputs: Option<&dyn Fn(&str) -> String>) {
    let dir = project.join("runs").join(id);
    std::fs::create_dir_all(dir.join("adapter")).expect("mkdir");
    let config = lablens::train::config::TrainConfig::default();
    let text = ron::ser::to_string_pretty(&config, ron::ser::PrettyConfig::default()).expect("ron");
    std::fs::write(dir.join("config.ron"), text).expect("config");
    std::fs::write(
        dir.join("adapter/adapter_config.json"),
        json!({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "run": id}).to_string(),
    )
    .expect("adapter config");
    let weights_path = dir.join("adapter/adapter_model.safetensors");
    let file = std::fs::File::create(&weights_path).expect("weights");
    file.set_len(weights).expect("size");
    let Some(outputs) = outputs else {
        return;
    };
    let records = records(project);
    let pairs: String = records
        .iter()
        .map(|r| {
            let reference = r["target"].as_str().expect("target");
            let line = json!({"id": r["id"], "prediction": outputs(reference),
                "reference": reference, "source": r["input"], "task": "discharge"});
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
    std::fs::remove_file(&pairs_path).expect("rm");
    let lines: String = records
        .iter()
        .zip(scored["examples"].as_array().expect("examples"))
        .map(|(r, m)| {
            let mut metrics = m.clone();
            metrics.as_object_mut().expect("object").remove("id");
            let reference = r["target"].as_str().expect("target");
            let line = json!({"id": r["id"], "input": r["input"], "reference": reference,
                "prediction": outputs(reference), "task": "discharge", "gender": r["gender"],
                "age": r["age"], "ethnicity": r["ethnicity"], "input_cut": false,
                "output_cut": false, "metrics": metrics});
            format!("{line}\n")
        })
        .collect();
    std::fs::write(dir.join("predictions.jsonl"), lines).expect("predictions");
    let adapter_sha = sha256(&std::fs::read(&weights_path).expect("weights"));
    let data = std::fs::read(project.join("discharge.jsonl")).expect("data");
    let eval = json!({"run": id, "split": "test", "n": records.len(), "task": "discharge",
        "corpus": scored["corpus"], "generation": {"max_new_tokens": 256},
        "model": {"source": "tiny", "sha256": null}, "adapter": dir.join("adapter"),
        "adapter_sha256": adapter_sha, "data_sha256": sha256(&data), "inputs_cut": 0,
        "outputs_cut": 0, "lablens_version": "0.1.0", "elapsed_s": 1.0});
    std::fs::write(
        dir.join("eval.json"),
        serde_json::to_vec_pretty(&eval).expect("json"),
    )
    .expect("eval");
}

/// `lablens bias` over the run's predictions: writes its bias.json.
fn audit(project: &Path, id: &str) {
    let p = project.to_str().expect("utf8");
    let out = lablens(&[
        "bias",
        "--project",
        p,
        "--run",
        id,
        "--metric",
        "rouge1",
        "--permutations",
        "199",
        "--min-size",
        "5",
        "--json",
    ]);
    ok_json(&out);
}

fn registry(project: &Path, args: &[&str]) -> Output {
    let mut all = vec![
        "registry",
        args[0],
        "--project",
        project.to_str().expect("utf8"),
    ];
    all.extend_from_slice(&args[1..]);
    lablens(&all)
}

#[test]
fn versions_are_listed_promoted_through_gates_and_rolled_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(dir.path(), GATES);
    run(&p, "good", 4096, Some(&|r: &str| output(r, 6)));
    run(&p, "worse", 4096, Some(&|r: &str| output(r, 3)));
    run(
        &p,
        "poor",
        4096,
        Some(&|r: &str| r.lines().next().unwrap_or("").into()),
    );
    for id in ["good", "worse", "poor"] {
        audit(&p, id);
    }
    let add = |id: &str, note: &str| {
        ok_json(&registry(
            &p,
            &["add", "--run", id, "--name", "m", "--note", note, "--json"],
        ))
    };
    let first = add("good", "the first one");
    assert_eq!(first["version"], 1);
    let record = &first["record"];
    assert_eq!(record["run"], "good");
    assert_eq!(record["note"], "the first one");
    assert_eq!(record["bias"]["audited"], true);
    assert_eq!(record["dataset"]["evaluated_records"], RECORDS);
    assert!(record["eval"]["corpus"]["rouge1"]["fmeasure"]["low"].is_number());
    let gates = record["gates"].as_array().expect("gates");
    assert_eq!(gates.len(), 2);
    assert!(gates.iter().all(|g| g["outcome"] == "pass"), "{gates:?}");
    assert_eq!(add("worse", "fewer lines")["version"], 2);
    assert_eq!(add("poor", "one line")["version"], 3);

    let listed = ok_json(&registry(&p, &["list", "--json"]));
    let versions = listed["models"][0]["versions"]
        .as_array()
        .expect("versions");
    let numbers: Vec<u64> = versions
        .iter()
        .filter_map(|v| v["version"].as_u64())
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    let shown = ok_json(&registry(&p, &["show", "m", "2", "--json"]));
    assert_eq!(shown["files_intact"], true);
    assert_eq!(shown["version"]["run"], "worse");
    let files: Vec<&str> = shown["version"]["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    for f in [
        "adapter/adapter_model.safetensors",
        "eval.json",
        "predictions.jsonl",
        "bias.json",
    ] {
        assert!(files.contains(&f), "{files:?}");
    }

    // A failed gate refuses production (3), naming the gate with its value and threshold.
    let refused = registry(
        &p,
        &["promote", "m", "3", "--alias", "production", "--json"],
    );
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    let said = stderr(&refused);
    assert!(
        said.contains("gates failed: rouge1 ") && said.contains(">= 0.5: fail"),
        "{said}"
    );
    let body: Value = serde_json::from_slice(&refused.stdout).expect("json");
    assert_eq!(
        (body["moved"].clone(), body["refused"].clone()),
        (json!(false), json!("gates"))
    );
    // Other aliases move whatever the gates say.
    ok_json(&registry(
        &p,
        &["promote", "m", "3", "--alias", "staging", "--json"],
    ));
    let promoted = ok_json(&registry(
        &p,
        &["promote", "m", "1", "--alias", "production", "--json"],
    ));
    assert_eq!(
        (promoted["from"].clone(), promoted["to"].clone()),
        (Value::Null, json!(1))
    );

    // Version 2 passes the gates but is worse than production on the same records (4).
    let degraded = registry(
        &p,
        &["promote", "m", "2", "--alias", "production", "--json"],
    );
    assert_eq!(degraded.status.code(), Some(4), "{}", stderr(&degraded));
    let body: Value = serde_json::from_slice(&degraded.stdout).expect("json");
    assert_eq!(body["refused"], "degraded");
    assert!(
        body["gates"]
            .as_array()
            .expect("gates")
            .iter()
            .all(|g| g["outcome"] == "pass")
    );
    let d = &body["degradation"];
    assert_eq!(d["paired"], RECORDS);
    let diff = &d["difference"];
    let (value, low, high) = (
        diff["value"].as_f64().expect("value"),
        diff["low"].as_f64().expect("low"),
        diff["high"].as_f64().expect("high"),
    );
    assert!(low <= value && value <= high && high < 0.0, "{d}");
    assert!(d["relative_change"].as_f64() < Some(-0.02), "{d}");
    assert!(
        stderr(&degraded).contains("paired records"),
        "{}",
        stderr(&degraded)
    );

    let no_reason = registry(
        &p,
        &["promote", "m", "2", "--alias", "production", "--force"],
    );
    assert_eq!(no_reason.status.code(), Some(2));
    assert!(stderr(&no_reason).contains("--reason"));
    let forced = ok_json(&registry(
        &p,
        &[
            "promote",
            "m",
            "2",
            "--alias",
            "production",
            "--force",
            "--reason",
            "hotfix",
            "--json",
        ],
    ));
    assert_eq!(
        (forced["forced"].clone(), forced["moved"].clone()),
        (json!(true), json!(true))
    );

    let history = ok_json(&registry(&p, &["history", "m", "--json"]));
    let moves = history["moves"].as_array().expect("moves");
    assert_eq!(moves.len(), 3);
    let last = &moves[2];
    assert_eq!(
        (last["alias"].clone(), last["from"].clone()),
        (json!("production"), json!(1))
    );
    assert_eq!(
        (last["reason"].clone(), last["forced"].clone()),
        (json!("hotfix"), json!(true))
    );
    assert_eq!(last["degradation"]["degraded"], true);
    assert!(last["who"].is_string() && last["when"].as_str().is_some_and(|w| w.ends_with('Z')));

    let back = ok_json(&registry(
        &p,
        &[
            "rollback",
            "m",
            "--alias",
            "production",
            "--reason",
            "drops lines",
            "--json",
        ],
    ));
    assert_eq!(
        (back["from"].clone(), back["to"].clone()),
        (json!(2), json!(1))
    );
    let again = registry(
        &p,
        &["rollback", "m", "--alias", "production", "--reason", "more"],
    );
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("nothing to roll back to"),
        "{}",
        stderr(&again)
    );
    let listed = ok_json(&registry(&p, &["list", "--name", "m", "--json"]));
    assert_eq!(
        listed["models"][0]["aliases"],
        json!({"production": 1, "staging": 3})
    );

    // A version whose files changed is reported, and no alias moves to it.
    std::fs::write(p.join("registry/m/version-3/eval.json"), "{}").expect("tamper");
    let shown = registry(&p, &["show", "m", "3", "--json"]);
    assert_eq!(shown.status.code(), Some(2));
    let body: Value = serde_json::from_slice(&shown.stdout).expect("json");
    assert_eq!(body["files_intact"], false);
    assert!(stderr(&shown).contains("eval.json: changed since it was registered"));
    let out = registry(&p, &["promote", "m", "3", "--alias", "canary"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no alias moves to it"),
        "{}",
        stderr(&out)
    );

    // A hand edit pointing an alias at no version is reported, not trusted.
    let aliases = p.join("registry/m/aliases.ron");
    std::fs::write(&aliases, "{\"production\": 9, \"staging\": 3}").expect("edit");
    let listed = registry(&p, &["list", "--json"]);
    assert_eq!(listed.status.code(), Some(2));
    assert!(stderr(&listed).contains("aliases.ron: line 1, alias \"production\": names version 9"));
}

#[test]
fn bad_input_says_what_to_run_first_and_names_the_gate_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(dir.path(), GATES);
    run(&p, "trained", 64, None);
    let out = registry(&p, &["add", "--run", "trained"]);
    assert_eq!(out.status.code(), Some(2));
    let p_text = p.display().to_string();
    let eval_hint = format!("run `lablens eval --project {p_text} --run trained` first");
    assert!(stderr(&out).contains(&eval_hint), "{}", stderr(&out));
    std::fs::remove_dir_all(p.join("runs/trained/adapter")).expect("rm");
    let out = registry(&p, &["add", "--run", "trained"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`lablens train --project"),
        "{}",
        stderr(&out)
    );
    let out = registry(&p, &["add", "--run", "missing"]);
    assert_eq!(out.status.code(), Some(2));

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = project(
        dir.path(),
        r#"[(metric: "rouge3", compare: ">=", threshold: 0.3)]"#,
    );
    run(&bad, "r", 64, Some(&|r: &str| output(r, 6)));
    let out = registry(&bad, &["add", "--run", "r"]);
    assert_eq!(out.status.code(), Some(2));
    let said = stderr(&out);
    assert!(
        said.contains("project.ron: field \"gates[0].metric\": \"rouge3\""),
        "{said}"
    );
    std::fs::write(
        bad.join("project.ron"),
        "(name: \"reg\", task: discharge, gates: [(metric: \"rouge1\", compare: \">=\", \
         threshold: 1.5)])",
    )
    .expect("project");
    let out = registry(&bad, &["add", "--run", "r"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("gates[0].threshold"),
        "{}",
        stderr(&out)
    );
    assert!(!bad.join("registry").join("reg").join("version-1").exists());
}

fn add_process(project: &Path, run: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lablens"));
    cmd.args(["registry", "add", "--project"])
        .arg(project)
        .args(["--run", run, "--name", "m", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn registrations_at_the_same_time_get_distinct_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(dir.path(), "[]");
    run(&p, "r", 32 << 20, Some(&|r: &str| output(r, 6)));
    let children: Vec<_> = (0..4)
        .map(|_| add_process(&p, "r").spawn().expect("spawn"))
        .collect();
    let mut versions: Vec<u64> = children
        .into_iter()
        .map(|c| {
            ok_json(&c.wait_with_output().expect("wait"))["version"]
                .as_u64()
                .expect("n")
        })
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, [1, 2, 3, 4]);
}

#[test]
fn a_registration_killed_at_random_moments_leaves_every_version_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(dir.path(), "[]");
    // Large weights (sparse) widen the moments a kill lands in the middle of hashing them.
    run(&p, "r", 768 << 20, Some(&|r: &str| output(r, 6)));
    let started = std::time::Instant::now();
    ok_json(&add_process(&p, "r").output().expect("run"));
    let whole = started.elapsed();
    let mut kills = 0;
    for share in [0.2, 0.5, 0.8, 0.35, 0.65, 0.95, 0.1] {
        let mut child = add_process(&p, "r").spawn().expect("spawn");
        std::thread::sleep(whole.mul_f64(share));
        if child.try_wait().expect("wait").is_none() {
            child.kill().expect("SIGKILL");
            kills += 1;
        }
        child.wait().expect("reap");
    }
    eprintln!(
        "an uninterrupted registration: {:.2}s; {kills} kills landed",
        whole.as_secs_f64()
    );
    assert!(
        kills >= 3,
        "only {kills} kills landed; the registration was too fast"
    );
    let listed = ok_json(&registry(&p, &["list", "--json"]));
    let versions: Vec<u64> = listed["models"][0]["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["version"].as_u64())
        .collect();
    for v in &versions {
        let shown = ok_json(&registry(&p, &["show", "m", &v.to_string(), "--json"]));
        assert_eq!(shown["files_intact"], true, "version {v}");
    }
    let after = ok_json(&add_process(&p, "r").output().expect("run"));
    assert_eq!(after["version"].as_u64(), versions.last().map(|v| v + 1));
    let visible: Vec<String> = std::fs::read_dir(p.join("registry/m"))
        .expect("model folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("version-"))
        .collect();
    assert_eq!(visible.len(), versions.len() + 1, "{visible:?}");
}
