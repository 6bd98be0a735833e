//! `lablens serve` driven by the real `openai` Python client (PyPI `openai`): the binary serves
//! a copy of the demo project (the embedded tiny model) with a registered adapter, on a free
//! local port and with an API key; `tests/serve/openai_client.py` talks to it and reports what
//! it got, and this test checks it: chat and text completions whole and streamed, stop strings,
//! the model list, the safety report, the clinical endpoints, metrics, the OpenAPI document,
//! and each error in OpenAI's shape. SIGTERM then ends the server with exit 0.
//!
//! Needs `python3 -m pip install openai` (CI installs it); LABLENS_TEST_PYTHONPATH, when set,
//! is put on the client's PYTHONPATH.

mod common;
mod local;
#[path = "local/python.rs"]
mod python;
use common::lablens;
use local::{demo_project, free_port};
use python::python;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "test-key-1";

/// A copy of the demo project with one pipeline run registered as version 1 of `demo`, staged.
fn project(dir: &Path) -> PathBuf {
    let project = demo_project(dir);
    let out = lablens(&[
        "pipeline",
        "--project",
        project.to_str().expect("utf8"),
        "--max-steps",
        "3",
        "--limit",
        "4",
        "--max-new-tokens",
        "16",
        "--register",
        "demo",
        "--promote-to",
        "staging",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "pipeline: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    project
}

/// The server, killed when dropped if it is still running.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

fn start(project: &Path) -> Server {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_lablens"))
        .args(["serve", "--project"])
        .arg(project)
        .args(["--registry", "demo@staging", "--port", &port.to_string()])
        .args([
            "--api-key",
            KEY,
            "--max-concurrency",
            "8",
            "--max-batch",
            "4",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lablens serve");
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let health = ureq::get(format!("{}/health", server.url))
            .header("Authorization", format!("Bearer {KEY}"))
            .call();
        if health.is_ok_and(|r| r.status() == 200) {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "lablens serve did not answer /health with 200 in 120 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn client_report(url: &str) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve/openai_client.py");
    let out = python()
        .arg(script)
        .args([url, KEY])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the openai client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the client's report is JSON")
}

fn assert_error(report: &Value, name: &str, status: u64, code: &str, param: Option<&str>) {
    let e = &report["errors"][name];
    assert_eq!(e["status"], status, "{name}: {e}");
    assert_eq!(e["code"], code, "{name}: {e}");
    if let Some(param) = param {
        assert_eq!(e["param"], param, "{name}: {e}");
        let message = e["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(param),
            "{name}: the message names {param}: {e}"
        );
    }
}

fn check_generation(r: &Value) {
    assert_eq!(r["models"][0], "tiny");
    assert_eq!(r["models"][1], "demo@staging");
    let chat = &r["chat"];
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["model"], "demo@staging");
    assert_eq!(chat["role"], "assistant");
    assert_eq!(chat["finish_reason"], "length", "24 tokens cut it: {chat}");
    let usage = &chat["usage"];
    assert_eq!(usage["completion_tokens"], 24);
    assert!(usage["prompt_tokens"].as_u64() > Some(30), "{usage}");
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap_or(0) + 24)
    );
    let answer = chat["content"].as_str().expect("content");
    assert!(!answer.is_empty());
    let stream = &r["stream"];
    assert_eq!(stream["objects"][0], "chat.completion.chunk");
    assert_eq!(stream["first_role"], "assistant");
    assert_eq!(stream["content"], answer, "streamed text = whole text");
    assert!(stream["content_chunks"].as_u64() > Some(5), "{stream}");
    assert_eq!(stream["finish_reasons"], serde_json::json!(["length"]));
    assert_eq!(stream["usage"], *usage);
    let stop = &r["stop"];
    let word = stop["stop"].as_str().expect("stop");
    let before = &answer[..answer.find(word).expect("the stop word is in the answer")];
    assert_eq!(stop["content"], before, "{stop}");
    assert_eq!(stop["finish_reason"], "stop");
    assert!(stop["completion_tokens"].as_u64() < Some(24), "{stop}");
    for other in r["concurrent"].as_array().expect("list") {
        assert_eq!(other, answer, "batched requests get what they get alone");
    }
    let completion = &r["completion"];
    assert_eq!(completion["object"], "text_completion");
    assert_eq!(completion["model"], "tiny");
    assert_eq!(completion["usage"]["completion_tokens"], 8);
    assert_eq!(completion["stream_text"], completion["text"]);
    assert_eq!(completion["stream_finish"], completion["finish_reason"]);
}

fn check_clinical(r: &Value) {
    let safety = &r["safety_extension"];
    assert!(safety["meds"]["omitted"].is_array(), "{safety}");
    assert!(safety["flags"].is_array(), "{safety}");
    for task in ["simplify", "qa"] {
        let t = &r[task];
        assert_eq!(t["status"], 200, "{t}");
        let body = &t["body"];
        assert!(
            body["output"].as_str().is_some_and(|o| !o.is_empty()),
            "{t}"
        );
        assert!(body["inference_time_ms"].as_f64() > Some(0.0), "{t}");
        assert!(body["usage"]["completion_tokens"].as_u64() > Some(0), "{t}");
        let meds = &body["safety"]["meds"];
        for key in ["hallucinated", "omitted", "mismatched"] {
            assert!(meds[key].is_array(), "{task}: {key}: {body}");
        }
        assert!(body["safety"].get("fkgl").is_some(), "{t}");
    }
    let unknown = &r["soap_unknown_field"];
    assert_eq!(unknown["status"], 400);
    assert_eq!(unknown["body"]["error"]["param"], "stream");
}

fn check_errors(r: &Value) {
    assert_error(r, "unknown_model", 404, "model_not_found", Some("model"));
    assert_eq!(r["errors"]["unknown_model"]["class"], "NotFoundError");
    assert_error(r, "bad_type", 400, "invalid_type", Some("temperature"));
    assert_eq!(r["errors"]["bad_type"]["class"], "BadRequestError");
    assert_error(
        r,
        "bad_role",
        400,
        "invalid_value",
        Some("messages[0].role"),
    );
    assert_error(r, "wrong_key", 401, "invalid_api_key", None);
    assert_eq!(r["errors"]["wrong_key"]["class"], "AuthenticationError");
    assert_error(r, "oversized", 413, "request_too_large", None);
    assert_error(
        r,
        "over_context",
        400,
        "context_length_exceeded",
        Some("messages"),
    );
    let malformed = &r["errors"]["malformed_json"];
    assert_eq!(malformed["status"], 400);
    assert_eq!(malformed["body"]["error"]["code"], "invalid_json");
    assert_eq!(r["errors"]["health_without_key"]["status"], 401);
    let absurd = r["errors"]["absurd_length"]["head"]
        .as_str()
        .unwrap_or_default();
    assert!(absurd.starts_with("HTTP/1.1 413"), "{absurd}");
}

fn check_operations(r: &Value) {
    assert_eq!(r["health"]["body"]["status"], "ready");
    let metrics = &r["metrics"];
    assert!(
        metrics["content_type"]
            .as_str()
            .is_some_and(|c| c.starts_with("text/plain")),
        "{metrics}"
    );
    let text = metrics["text"].as_str().expect("metrics");
    let series = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    // chat: whole, streamed, stop, safety, four together.
    assert!(series("lablens_requests_total{endpoint=\"chat_completions\",status=\"200\"}") >= 8.0);
    assert!(series("lablens_requests_total{endpoint=\"chat_completions\",status=\"404\"}") >= 1.0);
    assert!(series("lablens_requests_total{endpoint=\"chat_completions\",status=\"413\"}") >= 1.0);
    assert!(series("lablens_generated_tokens_total") >= 24.0 * 8.0);
    assert!(series("lablens_generation_tokens_per_second") > 0.0);
    assert_eq!(series("lablens_queue_length"), 0.0);
    assert!(
        series("lablens_requests_in_flight") >= 1.0,
        "the metrics request itself"
    );
    assert!(text.contains(
        "lablens_request_duration_seconds_bucket{endpoint=\"chat_completions\",le=\"+Inf\"}"
    ));
    let doc = &r["openapi"]["body"];
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for path in [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/models",
        "/v1/lablens/simplify",
        "/health",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    let docs = &r["docs"];
    assert_eq!(docs["status"], 200);
    assert!(
        docs["content_type"]
            .as_str()
            .is_some_and(|c| c.starts_with("text/html"))
    );
    assert!(
        docs["text"]
            .as_str()
            .is_some_and(|t| t.contains("/v1/chat/completions") && !t.contains("https://"))
    );
}

#[test]
fn the_openai_client_talks_to_lablens_serve() {
    let probe = python()
        .args(["-c", "import openai; print(openai.__version__)"])
        .output()
        .expect("python3 runs");
    assert!(
        probe.status.success(),
        "this test needs the openai package: python3 -m pip install openai (or set \
         LABLENS_TEST_PYTHONPATH to where it is installed); importing it failed: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let project = project(dir.path());
    let mut server = start(&project);
    let report = client_report(&server.url);
    check_generation(&report);
    check_clinical(&report);
    check_errors(&report);
    check_operations(&report);
    // SAFETY: signals the child the test started; no memory is touched.
    unsafe {
        libc::kill(server.child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit 30 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM ends the server with exit 0"
    );
}
