//! `lablens mlflow push` against a real MLflow tracking server (PyPI `mlflow`, SQLite backend,
//! proxied artifacts, a free local port) that the test starts, read back with `MlflowClient` in
//! a Python subprocess: the run once, its params equal to config.ron, its metric histories equal
//! to metrics.jsonl, the eval and bias metrics, the tags, the artifacts; the registered model's
//! versions and aliases equal to lablens'; a second push changes nothing; an alias moved in
//! lablens moves in MLflow; a closed port fails naming the URI.
//!
//! Needs `python3 -m pip install mlflow` (CI installs it); LABLENS_TEST_PYTHONPATH, when set,
//! is put on the server's and the reader's PYTHONPATH.

mod common;
mod local;
#[path = "local/python.rs"]
mod python;
use common::lablens;
use local::{demo_project, free_port};
use python::python;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        stderr(out)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// The MLflow server, stopped (its whole process group) when dropped.
struct Server {
    child: Child,
    uri: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = self.child.id() as i32;
        // SAFETY: signals the process group the test started; no memory is touched.
        unsafe {
            libc::kill(-group, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(100));
        }
        // The server's helpers (job runners) may outlive it: the group goes whatever is left.
        // SAFETY: as above.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

fn start_server(dir: &Path) -> Server {
    let probe = python()
        .args(["-c", "import mlflow; print(mlflow.__version__)"])
        .output()
        .expect("python3 runs");
    assert!(
        probe.status.success(),
        "this test needs MLflow: python3 -m pip install mlflow (or set LABLENS_TEST_PYTHONPATH \
         to where it is installed); importing it failed: {}",
        stderr(&probe)
    );
    let port = free_port();
    let log = dir.join("mlflow-server.log");
    let file = std::fs::File::create(&log).expect("log");
    use std::os::unix::process::CommandExt;
    let child = python()
        .args(["-m", "mlflow", "server", "--backend-store-uri"])
        .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
        .arg("--artifacts-destination")
        .arg(dir.join("artifacts"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--workers",
            "1",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .process_group(0)
        .spawn()
        .expect("start mlflow server");
    let server = Server {
        child,
        uri: format!("http://127.0.0.1:{port}"),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let health = ureq::get(format!("{}/health", server.uri)).call();
        if health.is_ok_and(|r| r.status() == 200) {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "mlflow server did not answer /health in 120 s: {}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A copy of the demo project (the embedded tiny model) with two pipeline runs registered as
/// versions 1 and 2 of `demo`: production on 1, staging on 2.
fn project(dir: &Path) -> PathBuf {
    let project = demo_project(dir);
    let p = project.to_str().expect("utf8");
    for _ in 0..2 {
        ok_json(&lablens(&[
            "pipeline",
            "--project",
            p,
            "--max-steps",
            "3",
            "--limit",
            "6",
            "--max-new-tokens",
            "16",
            "--register",
            "demo",
            "--promote-to",
            "staging",
            "--json",
        ]));
        std::thread::sleep(Duration::from_millis(1100)); // run ids are stamped by the second
    }
    promote(&project, "1", "production");
    project
}

fn promote(project: &Path, version: &str, alias: &str) {
    let p = project.to_str().expect("utf8");
    ok_json(&lablens(&[
        "registry",
        "promote",
        "--project",
        p,
        "demo",
        version,
        "--alias",
        alias,
        "--reason",
        "test",
        "--json",
    ]));
}

fn push(project: &Path, uri: &str) -> Value {
    ok_json(&lablens(&[
        "mlflow",
        "push",
        "--project",
        project.to_str().expect("utf8"),
        "--all",
        "--registry",
        "--tracking-uri",
        uri,
        "--json",
    ]))
}

const READER: &str = r#"
import json, sys
from mlflow.tracking import MlflowClient
uri, experiment = sys.argv[1], sys.argv[2]
c = MlflowClient(tracking_uri=uri)
exp = c.get_experiment_by_name(experiment)
out = {"runs": [], "models": {}}
def artifacts(run_id, path=None):
    found = []
    for f in c.list_artifacts(run_id, path):
        found.extend(artifacts(run_id, f.path) if f.is_dir else [f.path])
    return found
for r in c.search_runs([exp.experiment_id], max_results=1000):
    histories = {k: sorted([m.step, m.value] for m in c.get_metric_history(r.info.run_id, k))
                 for k in r.data.metrics}
    out["runs"].append({"run_id": r.info.run_id, "status": r.info.status,
                        "params": r.data.params, "tags": r.data.tags,
                        "metrics": r.data.metrics, "histories": histories,
                        "artifacts": sorted(artifacts(r.info.run_id))})
for m in c.search_registered_models():
    versions = [{"version": v.version, "tags": v.tags, "source": v.source, "run_id": v.run_id}
                for v in c.search_model_versions(f"name='{m.name}'")]
    out["models"][m.name] = {"aliases": dict(m.aliases), "versions": versions}
print(json.dumps(out))
"#;

fn read_back(dir: &Path, uri: &str, experiment: &str) -> Value {
    let script = dir.join("read_mlflow.py");
    std::fs::write(&script, READER).expect("script");
    let out = python()
        .arg(&script)
        .args([uri, experiment])
        .output()
        .expect("python3");
    ok_json(&out)
}

/// config.ron's fields as dotted names and text, as the push documents them.
fn flat_config(run_dir: &Path) -> BTreeMap<String, String> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
        match value {
            Value::Object(obj) => obj.iter().for_each(|(k, v)| {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&key, v, out)
            }),
            Value::String(s) => drop(out.insert(prefix.into(), s.clone())),
            Value::Null => drop(out.insert(prefix.into(), "None".into())),
            other => drop(out.insert(prefix.into(), other.to_string())),
        }
    }
    let text = std::fs::read_to_string(run_dir.join("config.ron")).expect("config");
    let config: lablens::train::config::TrainConfig = ron::from_str(&text).expect("ron");
    let mut out = BTreeMap::new();
    walk("", &serde_json::to_value(config).expect("json"), &mut out);
    out
}

/// metrics.jsonl as `{key: [[step, value], ...]}`.
fn histories(run_dir: &Path) -> BTreeMap<String, Vec<(i64, f64)>> {
    let text = std::fs::read_to_string(run_dir.join("metrics.jsonl")).expect("metrics");
    let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("line");
        for key in ["loss", "lr", "grad_norm", "tokens_per_s", "val_loss"] {
            if let Some(x) = v[key].as_f64() {
                out.entry(key.into())
                    .or_default()
                    .push((v["step"].as_i64().expect("step"), x));
            }
        }
    }
    out.values_mut()
        .for_each(|h| h.sort_by(|a, b| a.partial_cmp(b).expect("numbers")));
    out
}

fn counts(state: &Value) -> Value {
    let runs = state["runs"].as_array().expect("runs");
    let metric_points: usize = runs
        .iter()
        .flat_map(|r| r["histories"].as_object().expect("h").values())
        .map(|h| h.as_array().expect("points").len())
        .sum();
    json!({"runs": runs.len(), "metric_points": metric_points,
           "artifacts": runs.iter().map(|r| r["artifacts"].clone()).collect::<Vec<_>>(),
           "models": state["models"]})
}

#[test]
fn runs_and_registry_reach_mlflow_once() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_server(dir.path());
    let project = project(dir.path());
    let experiment = "Demo: discharge summaries";

    let first = push(&project, &server.uri);
    assert_eq!(first["experiment_created"], true);
    let state = read_back(dir.path(), &server.uri, experiment);
    let runs_dir = project.join("runs");
    let mut ids: Vec<String> = std::fs::read_dir(&runs_dir)
        .expect("runs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 2);
    let mlflow_runs = state["runs"].as_array().expect("runs");
    assert_eq!(mlflow_runs.len(), 2, "{state}");
    let mut mlflow_of = BTreeMap::new();
    for id in &ids {
        let tagged: Vec<&Value> = mlflow_runs
            .iter()
            .filter(|r| r["tags"]["lablens.run_id"] == json!(id))
            .collect();
        assert_eq!(tagged.len(), 1, "run {id} once: {state}");
        let run = tagged[0];
        let run_dir = runs_dir.join(id);
        mlflow_of.insert(id.clone(), run["run_id"].as_str().expect("id").to_string());
        assert_eq!(run["status"], "FINISHED");
        let params: BTreeMap<String, String> =
            serde_json::from_value(run["params"].clone()).expect("params");
        assert_eq!(params, flat_config(&run_dir));
        assert!(params.contains_key("lora.r"));
        let got: BTreeMap<String, Vec<(i64, f64)>> = run["histories"]
            .as_object()
            .expect("histories")
            .iter()
            .filter(|(k, _)| !k.starts_with("eval.") && !k.starts_with("bias."))
            .map(|(k, v)| {
                (
                    k.clone(),
                    serde_json::from_value(v.clone()).expect("points"),
                )
            })
            .collect();
        assert_eq!(got, histories(&run_dir));
        let eval: Value = serde_json::from_str(
            &std::fs::read_to_string(run_dir.join("eval.json")).expect("eval"),
        )
        .expect("json");
        let rouge1 = &eval["corpus"]["rouge1"]["fmeasure"];
        for (key, want) in [
            ("eval.rouge1", &rouge1["value"]),
            ("eval.rouge1.low", &rouge1["low"]),
            ("eval.rouge1.high", &rouge1["high"]),
            ("eval.bleu", &eval["corpus"]["bleu"]["value"]),
        ] {
            assert_eq!(run["metrics"][key].as_f64(), want.as_f64(), "{key}");
        }
        let bias: Value = serde_json::from_str(
            &std::fs::read_to_string(run_dir.join("bias.json")).expect("bias"),
        )
        .expect("json");
        let flagged = bias["slices"]
            .as_array()
            .expect("slices")
            .iter()
            .filter(|s| s["flagged"] == json!(true))
            .count();
        assert_eq!(
            run["metrics"]["bias.flagged_slices"].as_f64(),
            Some(flagged as f64)
        );
        let tags = &run["tags"];
        assert_eq!(tags["lablens.version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(tags["lablens.base_model"], json!(params["model"]));
        assert_eq!(tags["lablens.dataset_sha256"], eval["data_sha256"]);
        let artifacts = run["artifacts"].as_array().expect("artifacts");
        for want in [
            "adapter/adapter_config.json",
            "adapter/adapter_model.safetensors",
            "eval.json",
            "bias.json",
            "predictions.jsonl",
        ] {
            assert!(artifacts.contains(&json!(want)), "{want} in {artifacts:?}");
        }
    }

    // The registry: versions 1 and 2 of demo, tagged and sourced from their runs' adapters.
    let model = &state["models"]["demo"];
    let versions = model["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2, "{model}");
    let mut mlflow_version = BTreeMap::new();
    for (lablens_version, run) in [("1", &ids[0]), ("2", &ids[1])] {
        let v = versions
            .iter()
            .find(|v| v["tags"]["lablens.version"] == json!(lablens_version))
            .unwrap_or_else(|| panic!("version {lablens_version} in {model}"));
        assert_eq!(v["run_id"], json!(mlflow_of[run]));
        assert!(
            v["source"].as_str().expect("source").ends_with("/adapter"),
            "{v}"
        );
        mlflow_version.insert(lablens_version, v["version"].clone());
    }
    assert_eq!(
        model["aliases"],
        json!({"production": mlflow_version["1"], "staging": mlflow_version["2"]})
    );

    // Pushing again creates nothing and sends nothing.
    let before = counts(&state);
    let second = push(&project, &server.uri);
    for run in second["runs"].as_array().expect("runs") {
        assert_eq!(run["created"], false);
        for key in [
            "params_logged",
            "metrics_logged",
            "tags_set",
            "artifacts_uploaded",
        ] {
            assert_eq!(run[key], 0, "{key} on the second push: {run}");
        }
    }
    assert_eq!(second["models"][0]["versions_created"], 0);
    let again = read_back(dir.path(), &server.uri, experiment);
    assert_eq!(counts(&again), before);

    // An alias moved in lablens moves in MLflow.
    promote(&project, "2", "production");
    let third = push(&project, &server.uri);
    assert_eq!(third["models"][0]["aliases_set"], 1);
    let moved = read_back(dir.path(), &server.uri, experiment);
    assert_eq!(
        moved["models"]["demo"]["aliases"]["production"],
        mlflow_version["2"]
    );

    // A server that is not there: exit 1, naming the URI.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let out = lablens(&[
        "mlflow",
        "push",
        "--project",
        project.to_str().expect("utf8"),
        "--all",
        "--tracking-uri",
        &closed,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "cannot reach the MLflow tracking server at {closed}"
        )),
        "{}",
        stderr(&out)
    );
    // Bad input: exit 2.
    for args in [["--run", "no-such-run"], ["--tracking-uri", "ftp://x"]] {
        let mut all = vec![
            "mlflow",
            "push",
            "--project",
            project.to_str().expect("utf8"),
            "--tracking-uri",
            &server.uri,
        ];
        if args[0] == "--tracking-uri" {
            all[5] = args[1];
            all.push("--all");
        } else {
            all.extend(args);
        }
        let out = lablens(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    eprintln!("mlflow push test: {:.1} s", started.elapsed().as_secs_f64());
}
