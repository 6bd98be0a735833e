//! `lablens serve` on SmolLM2 (block-quantized, on the CPU: continuous batching): requests sent
//! together, greedy and seeded-sampled, some joining while others decode, get the text each gets
//! alone, and `/metrics` counts their tokens.
//!
//! Needs models/smollm2-135m-instruct (scripts/fetch-smollm2.sh; CI fetches it).

mod local;
#[path = "local/server.rs"]
mod server;
use local::demo_project;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

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
    let server = server::start(&[
        "--project",
        project,
        "--model",
        model,
        "--max-batch",
        "4",
        "--max-concurrency",
        "16",
    ]);
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
