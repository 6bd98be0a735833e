//! `lablens pipeline` through the binary on temp copies of the demo project (the embedded tiny
//! model, a few steps): the command of the example CI workflows registers and promotes (exit 0),
//! a gate that cannot pass registers without moving production (exit 3), a candidate worse than
//! production is not promoted (exit 4), bad gates and resumed options that differ exit 2, a
//! pipeline killed while training resumes from its checkpoint, a run trained by `lablens train`
//! goes on with `--resume` and a stage that fails is recorded in pipeline.json; and every
//! `lablens` command of the workflows parses and is the one README.md and docs/registry.md
//! document.

mod common;
use common::lablens;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const WORKFLOWS: [&str; 2] = [
    "examples/ci/github-actions.yml",
    "examples/ci/gitlab-ci.yml",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The demo project's project.ron in `dir`, its datasets read from the crate's sample_data,
/// with `extra` fields (gates, registry settings) added.
fn demo_copy(dir: &Path, extra: &str) -> PathBuf {
    let demo = std::fs::read_to_string(root().join("projects/demo/project.ron")).expect("demo");
    let sample = root().join("sample_data").display().to_string();
    let text = demo.replace("../../sample_data", &sample);
    let body = text.trim_end().strip_suffix(')').expect("a RON struct");
    std::fs::write(dir.join("project.ron"), format!("{body}    {extra}\n)\n")).expect("project");
    dir.to_path_buf()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn pipeline(project: &Path, args: &[&str]) -> Output {
    let mut all = vec!["pipeline", "--project", project.to_str().expect("utf8")];
    all.extend_from_slice(args);
    lablens(&all)
}

/// The `lablens` commands of a workflow file, each as its arguments (a redirection dropped).
fn workflow_commands(file: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(root().join(file)).expect("workflow");
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once("target/release/lablens ").map(|(_, c)| c))
        .map(|c| {
            let c = c.split_once(" >").map_or(c, |(c, _)| c);
            c.split_whitespace().map(str::to_string).collect()
        })
        .collect()
}

/// The workflows' pipeline command, with `--project projects/demo` pointed at `project`.
fn workflow_pipeline(project: &Path) -> Vec<String> {
    let commands = workflow_commands(WORKFLOWS[0]);
    let mut args = commands
        .into_iter()
        .find(|c| c.first().map(String::as_str) == Some("pipeline"))
        .expect("the workflow runs lablens pipeline");
    let at = args
        .iter()
        .position(|a| a == "--project")
        .expect("--project");
    args[at + 1] = project.display().to_string();
    args
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}); exit {:?}: {}",
            out.status.code(),
            stderr(out)
        )
    })
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON")
}

fn statuses(record: &Value) -> Vec<(String, String)> {
    record["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("name").to_string(),
                s["status"].as_str().expect("status").to_string(),
            )
        })
        .collect()
}

fn stages(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn production(project: &Path) -> Option<u64> {
    let out = lablens(&[
        "registry",
        "list",
        "--project",
        project.to_str().expect("utf8"),
        "--name",
        "demo",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    json_of(&out)["models"][0]["aliases"]["production"].as_u64()
}

fn versions(project: &Path) -> usize {
    let out = lablens(&[
        "registry",
        "list",
        "--project",
        project.to_str().expect("utf8"),
        "--name",
        "demo",
        "--json",
    ]);
    json_of(&out)["models"][0]["versions"]
        .as_array()
        .expect("versions")
        .len()
}

/// The few-steps pipeline the later runs take.
const QUICK: [&str; 10] = [
    "--limit",
    "12",
    "--max-new-tokens",
    "48",
    "--register",
    "demo",
    "--promote-to",
    "production",
    "--json",
    "--max-steps",
];

#[test]
fn the_workflow_pipeline_promotes_a_failed_gate_exits_3_and_a_worse_candidate_exits_4() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = demo_copy(dir.path(), "");
    let started = Instant::now();

    // The example workflows' own command, on the copy.
    let args = workflow_pipeline(&project);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = lablens(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = json_of(&out);
    assert_eq!(summary["outcome"], "promoted");
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["version"], 1);
    assert_eq!(summary["alias"]["alias"], "production");
    assert_eq!(summary["alias"]["moved"], true);
    let run_dir = PathBuf::from(summary["run_dir"].as_str().expect("run_dir"));
    let record = read_json(&run_dir.join("pipeline.json"));
    let done: Vec<(&str, &str)> = ["train", "eval", "bias", "register", "gates", "promote"]
        .iter()
        .map(|s| (*s, "done"))
        .collect();
    assert_eq!(statuses(&record), stages(&done));
    assert_eq!(record["stages"][0]["result"]["steps"], 20);
    assert_eq!(record["stages"][1]["result"]["n"], 24);
    for file in [
        "eval.json",
        "bias.json",
        "predictions.jsonl",
        "adapter/adapter_model.safetensors",
    ] {
        assert!(run_dir.join(file).is_file(), "{file} in the run folder");
    }
    for stage in record["stages"].as_array().expect("stages") {
        assert!(stage["started"].is_string() && stage["finished"].is_string());
        assert!(stage["elapsed_s"].as_f64().is_some_and(|s| s >= 0.0));
    }
    assert_eq!(production(&project), Some(1));

    // Resuming with another option than the pipeline was started with is refused.
    let run = summary["run"].as_str().expect("run").to_string();
    let out = pipeline(&project, &["--resume", &run, "--limit", "5"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--limit"), "{}", stderr(&out));
    // Resuming a finished pipeline trains, evaluates and registers nothing again.
    let out = pipeline(&project, &["--resume", &run, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(json_of(&out)["starts"], 2);
    assert_eq!(versions(&project), 1);

    // A gate no model passes: registered as version 2, production stays at 1, exit 3.
    demo_copy(
        dir.path(),
        r#"gates: [(metric: "rouge1", compare: ">=", threshold: 0.99)],"#,
    );
    let mut args = QUICK.to_vec();
    args.push("10");
    let out = pipeline(&project, &args);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("gates failed: rouge1"),
        "{}",
        stderr(&out)
    );
    let summary = json_of(&out);
    assert_eq!(summary["outcome"], "gate_failed");
    assert_eq!(summary["version"], 2);
    assert_eq!(summary["gates_passed"], false);
    assert_eq!(summary["gates"][0]["metric"], "rouge1");
    let record = read_json(&PathBuf::from(
        summary["pipeline_file"].as_str().expect("file"),
    ));
    let expected = [
        ("train", "done"),
        ("eval", "done"),
        ("bias", "done"),
        ("register", "done"),
        ("gates", "failed"),
        ("promote", "skipped"),
    ];
    assert_eq!(statuses(&record), stages(&expected));
    assert_eq!(production(&project), Some(1));
    assert_eq!(versions(&project), 2);

    // No drop allowed, and a candidate of one step: worse than production, exit 4.
    demo_copy(
        dir.path(),
        r#"registry: (primary_metric: "rouge1", max_relative_drop: 0.0),"#,
    );
    let mut args = QUICK.to_vec();
    args.push("1");
    let out = pipeline(&project, &args);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let summary = json_of(&out);
    assert_eq!(summary["outcome"], "degraded");
    assert_eq!(summary["degradation"]["degraded"], true);
    assert_eq!(summary["degradation"]["production"], 1);
    assert_eq!(summary["alias"]["moved"], false);
    assert_eq!(production(&project), Some(1));
    assert_eq!(versions(&project), 3);

    // A gate on a metric that does not exist: exit 2 before a run folder is made.
    demo_copy(
        dir.path(),
        r#"gates: [(metric: "rouge9", compare: ">=", threshold: 0.3)],"#,
    );
    let runs_before = std::fs::read_dir(project.join("runs"))
        .expect("runs")
        .count();
    let out = pipeline(&project, &["--max-steps", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("gates[0].metric"), "{}", stderr(&out));
    let runs_after = std::fs::read_dir(project.join("runs"))
        .expect("runs")
        .count();
    assert_eq!(runs_before, runs_after);
    eprintln!("pipelines took {:.1}s", started.elapsed().as_secs_f64());
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_pipeline_killed_while_training_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = demo_copy(dir.path(), "");
    let args = [
        "pipeline",
        "--project",
        project.to_str().expect("utf8"),
        "--max-steps",
        "40",
        "--limit",
        "6",
        "--max-new-tokens",
        "32",
        "--register",
        "demo",
        "--promote-to",
        "production",
        "--json",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_lablens"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut run_dir = None;
    // The quick-demo preset keeps a checkpoint every 20 steps.
    wait_for(
        "the checkpoint of step 20",
        Duration::from_secs(120),
        || {
            run_dir = std::fs::read_dir(project.join("runs"))
                .ok()
                .and_then(|mut d| d.next())
                .and_then(|e| e.ok())
                .map(|e| e.path());
            run_dir
                .as_ref()
                .is_some_and(|r| r.join("checkpoints/step-20").is_dir())
        },
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let run_dir = run_dir.expect("run folder");
    let record = read_json(&run_dir.join("pipeline.json"));
    assert_eq!(record["stages"][0]["status"], "running");
    assert_eq!(record["stages"][1]["status"], "pending");
    assert!(
        !run_dir.join("adapter/adapter_model.safetensors").exists(),
        "killed before training finished"
    );

    // The same command with --resume RUN.
    let run = run_dir.file_name().and_then(|n| n.to_str()).expect("id");
    let mut resumed: Vec<&str> = args.to_vec();
    resumed.extend(["--resume", run]);
    let out = lablens(&resumed);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("resuming {run} from step 20")),
        "{}",
        stderr(&out)
    );
    let summary = json_of(&out);
    assert_eq!(summary["starts"], 2);
    assert_eq!(summary["outcome"], "promoted");
    assert_eq!(summary["stages"][0]["result"]["steps"], 40);
    let metrics = std::fs::read_to_string(run_dir.join("metrics.jsonl")).expect("metrics");
    let steps = metrics
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).expect("whole JSON")["loss"].is_f64())
        .count();
    assert_eq!(steps, 40);
    assert_eq!(production(&project), Some(1));
}

#[test]
fn the_workflows_commands_parse_and_are_the_documented_ones() {
    let docs = std::fs::read_to_string(root().join("docs/registry.md")).expect("docs");
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let mut all = Vec::new();
    for file in WORKFLOWS {
        let commands = workflow_commands(file);
        assert!(
            commands.iter().any(|c| c[0] == "pipeline"),
            "{file} runs lablens pipeline"
        );
        for args in commands {
            let line = format!("lablens {}", args.join(" "));
            assert!(
                docs.contains(&line),
                "{file}: `{line}` is not in docs/registry.md"
            );
            assert!(
                readme.contains(&line),
                "{file}: `{line}` is not in README.md"
            );
            // --help last: clap refuses an unknown option or a bad value before it.
            let mut parse: Vec<&str> = args.iter().map(String::as_str).collect();
            parse.push("--help");
            let out = lablens(&parse);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{file}: `{line}` does not parse: {}",
                stderr(&out)
            );
            all.push(args);
        }
    }
    let [github, gitlab] = WORKFLOWS.map(workflow_commands);
    assert_eq!(github, gitlab, "the two workflows run the same commands");
    // A misspelt option is caught the same way.
    let out = lablens(&[
        "pipeline",
        "--project",
        "projects/demo",
        "--promote",
        "x",
        "--help",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!all.is_empty());
}

#[test]
fn a_run_trained_by_lablens_train_goes_on_and_a_failed_stage_is_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = demo_copy(dir.path(), "");
    let p = project.to_str().expect("utf8");
    let out = lablens(&["train", "--project", p, "--max-steps", "2", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = json_of(&out)["run_id"]
        .as_str()
        .expect("run_id")
        .to_string();
    let weights = project
        .join("runs")
        .join(&run)
        .join("adapter/adapter_model.safetensors");
    std::fs::write(&weights, "not safetensors").expect("spoil the adapter");
    let out = pipeline(&project, &["--resume", &run, "--limit", "3", "--json"]);
    // A file that is not what it should be is bad input (exit 2), like `lablens eval` says.
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stage eval failed"),
        "{}",
        stderr(&out)
    );
    let summary = json_of(&out);
    assert_eq!(summary["outcome"], "failed");
    assert_eq!(summary["version"], Value::Null);
    let record = read_json(&project.join("runs").join(&run).join("pipeline.json"));
    let expected = [
        ("train", "done"),
        ("eval", "failed"),
        ("bias", "pending"),
        ("register", "pending"),
        ("gates", "pending"),
        ("promote", "pending"),
    ];
    assert_eq!(statuses(&record), stages(&expected));
    assert!(
        record["stages"][1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("adapter_model.safetensors")),
        "{record}"
    );
    assert_eq!(record["stages"][0]["result"]["steps"], 2);
    assert!(!project.join("registry").exists(), "nothing registered");
}
