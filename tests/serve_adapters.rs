//! `lablens serve` with several adapters on one base model (the embedded tiny model, two runs of
//! a copy of the demo project): `/v1/models` lists the base and each run, a request's `model`
//! picks its adapter, and each answers what `lablens generate --adapter` answers with that
//! adapter, alone, one after another in any order, and sent together, without reading the
//! adapters' files again.

mod common;
mod local;
#[path = "local/server.rs"]
mod server;
use common::lablens;
use local::demo_project;
use serde_json::{Value, json};
use std::path::Path;

const PROMPT: &str = "The patient was admitted with";

/// Trains a run of `project` for `steps` steps; its id.
fn train(project: &Path, steps: &str) -> String {
    let out = lablens(&[
        "train",
        "--project",
        project.to_str().expect("utf8"),
        "--max-steps",
        steps,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "train: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("train --json");
    report["run_id"].as_str().expect("run_id").to_string()
}

/// The greedy completion of PROMPT by served model `model`: the id it answered as, and its text.
fn complete(url: &str, model: &str) -> (String, String) {
    let body = json!({"model": model, "prompt": PROMPT, "max_tokens": 12, "temperature": 0});
    let v = server::completion(url, &body);
    (
        v["model"].as_str().expect("model").to_string(),
        v["choices"][0]["text"].as_str().expect("text").to_string(),
    )
}

/// What `lablens generate` answers to PROMPT with `adapter` on the tiny model.
fn generated(adapter: Option<&Path>) -> String {
    let mut args = vec!["generate", "--model", "tiny", "--prompt", PROMPT, "--raw"];
    args.extend(["--greedy", "--max-new-tokens", "12", "--json"]);
    let dir;
    if let Some(adapter) = adapter {
        dir = adapter.display().to_string();
        args.extend(["--adapter", dir.as_str()]);
    }
    let out = lablens(&args);
    assert!(
        out.status.success(),
        "generate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("generate --json");
    v["outputs"][0]["text"].as_str().expect("text").to_string()
}

#[test]
fn a_request_s_model_picks_its_adapter_among_several() {
    let dir = tempfile::tempdir().expect("temp dir");
    let project = demo_project(dir.path());
    let first = train(&project, "3");
    let second = train(&project, "8");
    assert_ne!(first, second);

    // Asking for a run twice, or for one the project lacks, is refused before loading.
    let project_arg = project.to_str().expect("utf8");
    let twice = lablens(&[
        "serve",
        "--project",
        project_arg,
        "--run",
        &first,
        "--run",
        &first,
    ]);
    assert_eq!(twice.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&twice.stderr).contains("asked for twice"));
    let unknown = lablens(&["serve", "--project", project_arg, "--run", "no-such-run"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no-such-run"));

    let args = ["--project", project_arg, "--run", &first, "--run", &second];
    let server = server::spawn(&[&args[..], &["--max-batch", "4"]].concat());
    server::ready(&server);
    let mut listed = ureq::get(format!("{}/v1/models", server.1))
        .call()
        .expect("models");
    let listed: Value =
        serde_json::from_str(&listed.body_mut().read_to_string().expect("body")).expect("json");
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["tiny", first.as_str(), second.as_str()]);

    let want = [
        generated(None),
        generated(Some(&project.join("runs").join(&first).join("adapter"))),
        generated(Some(&project.join("runs").join(&second).join("adapter"))),
    ];
    assert_ne!(
        want[1], want[2],
        "the two runs' adapters answer differently"
    );
    // The server read each adapter once, when it started: it switches between them without
    // their files.
    for run in [&first, &second] {
        let adapter = project.join("runs").join(run).join("adapter");
        std::fs::rename(&adapter, adapter.with_file_name("adapter-moved")).expect("move");
    }
    // One after another, coming back to each adapter after another one was used.
    for i in [2, 1, 0, 2, 1] {
        assert_eq!(
            complete(&server.1, ids[i]),
            (ids[i].to_string(), want[i].clone())
        );
    }
    // Together, every adapter at once.
    let url = server.1.clone();
    let together: Vec<(String, String)> = std::thread::scope(|s| {
        let asks: Vec<_> = [0, 1, 2, 2, 1, 0]
            .iter()
            .map(|&i| {
                let (url, id) = (&url, ids[i]);
                s.spawn(move || complete(url, id))
            })
            .collect();
        asks.into_iter()
            .map(|a| a.join().expect("request"))
            .collect()
    });
    for ((id, text), i) in together.iter().zip([0, 1, 2, 2, 1, 0]) {
        assert_eq!((id.as_str(), text), (ids[i], &want[i]));
    }
    // A request naming no model gets the first adapter.
    let body = json!({"prompt": PROMPT, "max_tokens": 12, "temperature": 0});
    assert_eq!(
        server::completion(&server.1, &body)["model"],
        first.as_str()
    );
}
