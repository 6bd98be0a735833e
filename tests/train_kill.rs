//! `lablens train` killed with SIGKILL at several moments and resumed each time ends with the
//! losses of an uninterrupted run and no corrupt file.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CONFIG: &str = r#"(max_seq_len: 96, micro_batch: 2, grad_accum: 2, max_steps: Some(24),
    lr: 0.001, warmup_steps: 3, eval_every: 0, eval_records: 6, checkpoint_every: 3)"#;

/// A project over the first 60 sample discharge records, with the config beside it.
fn project(dir: &Path) -> PathBuf {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data/discharge.jsonl");
    let text = std::fs::read_to_string(sample).expect("sample data");
    let lines: Vec<&str> = text.lines().take(60).collect();
    std::fs::write(dir.join("discharge.jsonl"), lines.join("\n")).expect("write data");
    std::fs::write(
        dir.join("project.ron"),
        r#"(name: "k", task: discharge, template: ChatMl,
            datasets: [(name: "discharge", path: "discharge.jsonl")],
            split: (ratios: (80.0, 20.0, 0.0), seed: 1))"#,
    )
    .expect("write project");
    std::fs::write(dir.join("train.ron"), CONFIG).expect("write config");
    dir.to_path_buf()
}

fn train(project: &Path, resume: Option<&str>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lablens"));
    cmd.arg("train")
        .arg("--project")
        .arg(project)
        .arg("--config")
        .arg(project.join("train.ron"))
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(run) = resume {
        cmd.args(["--resume", run]);
    }
    cmd
}

fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("every metrics line is whole JSON"))
        .filter_map(|v| Some((v["step"].as_u64()?, v["loss"].as_f64()?)))
        .collect()
}

fn only_run(project: &Path) -> Option<PathBuf> {
    let runs: Vec<PathBuf> = std::fs::read_dir(project.join("runs"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    (runs.len() == 1).then(|| runs[0].clone())
}

#[test]
fn a_run_killed_at_random_moments_resumes_to_the_uninterrupted_losses() {
    let whole = tempfile::tempdir().expect("tempdir");
    let reference = project(whole.path());
    let started = std::time::Instant::now();
    let out = train(&reference, None).output().expect("run");
    let uninterrupted = started.elapsed();
    assert!(out.status.success());
    let reference_run = only_run(&reference).expect("reference run");
    let expected = losses(&reference_run);
    assert_eq!(expected.len(), 24);

    let killed = tempfile::tempdir().expect("tempdir");
    let project = project(killed.path());
    let mut kills = 0;
    // Kill moments as shares of the uninterrupted run's time, so the kills land however fast
    // training is; the first three add up to less than one run.
    for share in [0.25, 0.4, 0.2, 0.5, 0.3, 0.45] {
        let run = only_run(&project);
        let id = run
            .as_ref()
            .and_then(|r| r.file_name()?.to_str().map(String::from));
        let mut child = train(&project, id.as_deref()).spawn().expect("spawn");
        std::thread::sleep(uninterrupted.mul_f64(share));
        if child.try_wait().expect("wait").is_none() {
            child.kill().expect("SIGKILL");
            kills += 1;
        }
        child.wait().expect("reap");
    }
    assert!(
        kills >= 3,
        "only {kills} kills landed; the run finished too fast"
    );
    let run = only_run(&project).expect("one run");
    let id = run
        .file_name()
        .and_then(|n| n.to_str())
        .expect("id")
        .to_string();
    let out = train(&project, Some(&id)).output().expect("final resume");
    assert!(out.status.success());
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary JSON");
    assert_eq!(summary["steps"], 24);

    let got = losses(&run);
    assert_eq!(got.len(), 24);
    for ((s, a), (_, b)) in expected.iter().zip(&got) {
        assert!(
            (a - b).abs() < 1e-5,
            "step {s}: {a} uninterrupted, {b} after kills"
        );
    }
    for entry in std::fs::read_dir(run.join("checkpoints"))
        .expect("checkpoints")
        .flatten()
    {
        let state = std::fs::read_to_string(entry.path().join("state.json")).expect("state");
        serde_json::from_str::<Value>(&state).expect("state.json is whole JSON");
    }
    let status: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).expect("status"))
            .expect("status JSON");
    assert_eq!(status["status"], "finished");
}
