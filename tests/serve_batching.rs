//! `lablens serve` on SmolLM2 (block-quantized, on the CPU: continuous batching): while the model
//! loads, `/health` and generations answer 503; then requests sent together, greedy and
//! seeded-sampled, some joining while others decode, get the text each gets alone, and
//! `/metrics` counts their tokens.
//!
//! Needs models/smollm2-135m-instruct (scripts/fetch-smollm2.sh; CI fetches it).

mod local;
#[path = "local/server.rs"]
mod server;
use local::demo_project;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The reply's text and finish reason.
fn complete(url: &str, body: &Value) -> (String, String) {
    let mut reply = ureq::post(format!("{url}/v1/chat/completions"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .expect("chat completion");
    let text = reply.body_mut().read_to_string().expect("body");
    let v: Value = serde_json::from_str(&text).expect("json");
    let choice = &v["choices"][0];
    (
        choice["message"]["content"]
            .as_str()
            .expect("content")
            .to_string(),
        choice["finish_reason"]
            .as_str()
            .expect("finish")
            .to_string(),
    )
}

/// A status and body, whatever the status.
fn get_any(url: &str) -> Option<(u16, String)> {
    let mut reply = ureq::get(url)
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .ok()?;
    Some((
        reply.status().as_u16(),
        reply.body_mut().read_to_string().ok()?,
    ))
}

/// The port answers before the model is loaded: `/health` and generations say 503 until it is
/// ready, then `/health` 200.
fn while_loading_503(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut loading = false;
    loop {
        match get_any(&format!("{url}/health")) {
            Some((200, _)) => break,
            Some((503, body)) if !loading => {
                assert!(body.contains("loading"), "{body}");
                let mut reply = ureq::post(format!("{url}/v1/completions"))
                    .config()
                    .http_status_as_error(false)
                    .build()
                    .header("Content-Type", "application/json")
                    .send(json!({"prompt": "Hi", "max_tokens": 2}).to_string())
                    .expect("completion");
                let text = reply.body_mut().read_to_string().expect("body");
                // Answered after the model may have become ready in between.
                if reply.status() == 503 {
                    assert!(text.contains("model_loading"), "{text}");
                    loading = true;
                }
            }
            _ => {}
        }
        assert!(Instant::now() < deadline, "no /health 200 in 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        loading,
        "never saw the server loading: /health and a generation answering 503"
    );
}

#[test]
fn requests_served_together_get_what_each_gets_alone() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model: PathBuf = root.join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.exists(),
        "{} is missing: run scripts/fetch-smollm2.sh",
        model.display()
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let project = demo_project(dir.path());
    let (project, model) = (
        project.to_str().expect("utf8"),
        model.to_str().expect("utf8"),
    );
    let server = server::spawn(&[
        "--project",
        project,
        "--model",
        model,
        "--max-batch",
        "4",
        "--max-concurrency",
        "16",
    ]);
    while_loading_503(&server.1);
    server::ready(&server);
    let questions = [
        "What does furosemide do?",
        "Explain in one sentence what a discharge summary is.",
        "My doctor said my blood pressure is 150 over 95. Is that high?",
        "List two side effects of metformin.",
        "What is a normal resting heart rate?",
        "Why should I finish my antibiotics?",
        "What does 'take with food' mean on a prescription?",
    ];
    let bodies: Vec<Value> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let mut body = json!({
                "messages": [{"role": "user", "content": q}],
                "max_tokens": 12 + 5 * i,
                "temperature": 0,
            });
            if i % 3 == 1 {
                body["temperature"] = json!(0.8);
                body["seed"] = json!(7 + i);
            }
            body
        })
        .collect();
    let alone: Vec<(String, String)> = bodies.iter().map(|b| complete(&server.1, b)).collect();
    assert!(alone.iter().all(|(text, _)| !text.is_empty()), "{alone:?}");
    // Seven at once into four places: three join as the first ones end.
    let together: Vec<(String, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|b| s.spawn(|| complete(&server.1, b)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    assert_eq!(together, alone);
    let mut metrics = ureq::get(format!("{}/metrics", server.1))
        .call()
        .expect("metrics");
    let text = metrics.body_mut().read_to_string().expect("text");
    let tokens: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("lablens_generated_tokens_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("generated tokens in /metrics");
    assert!(tokens >= 2.0 * 7.0, "{tokens} tokens counted");
}
