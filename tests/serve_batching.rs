//! `lablens serve` on SmolLM2 (block-quantized, on the CPU: continuous batching): while the model
//! loads, `/health` and generations answer 503; then requests sent together, greedy and
//! seeded-sampled, some joining while others decode, get the text each gets alone, and
//! `/metrics` counts their tokens; a client that closes its connection before its whole answer
//! frees its place and stops its generation.
//!
//! Needs models/smollm2-135m-instruct (scripts/fetch-smollm2.sh; CI fetches it).

mod local;
#[path = "local/server.rs"]
mod server;
use local::demo_project;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
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

/// SmolLM2's Q4_1 file, which must have been fetched.
fn smollm2() -> PathBuf {
    let model = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.exists(),
        "{} is missing: run scripts/fetch-smollm2.sh",
        model.display()
    );
    model
}

#[test]
fn requests_served_together_get_what_each_gets_alone() {
    let model = smollm2();
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
    let tokens = generated_tokens(&server.1);
    assert!(tokens >= 2.0 * 7.0, "{tokens} tokens counted");
}

/// A run of `project` on `model` (its blocks kept) with an adapter of seeded matrices on every
/// projection, as a finished run leaves it; its id.
fn run_with_adapter(project: &Path, model: &Path, seed: u64) -> String {
    use lablens::model::adapters::{LoraConfig, attach, save_peft};
    use lablens::model::loading::{ModelSpec, load};
    let id = format!("adapter-{seed}");
    let dir = project.join("runs").join(&id);
    std::fs::create_dir_all(&dir).expect("run folder");
    let config = lablens::train::config::TrainConfig {
        model: model.display().to_string(),
        dequantize: false,
        ..Default::default()
    };
    std::fs::write(
        dir.join("config.ron"),
        ron::ser::to_string(&config).expect("config"),
    )
    .expect("config.ron");
    let mut loaded = load(&ModelSpec::new(model)).expect("SmolLM2");
    let lora = LoraConfig::default();
    for (name, var) in attach(&mut loaded.llama, &lora, seed).expect("attach") {
        // B starts at zero; a constant of the seed's sign makes each adapter change the text
        // (A is seeded, so the adapters differ, the same way every run).
        if name.ends_with("lora_B.weight") {
            let sign = if seed % 2 == 1 { 1.0 } else { -1.0 };
            let t = var.as_tensor();
            var.set(&(t.ones_like().expect("ones") * (0.02 * sign)).expect("scale"))
                .expect("set");
        }
    }
    save_peft(&loaded.llama, &lora, "SmolLM2", &dir.join("adapter")).expect("save");
    id
}

/// Two adapters on SmolLM2's blocks: the decoder batches requests for the base model and both
/// adapters together, each row with its own adapter, and each gets what `lablens generate
/// --adapter` gives it alone.
#[test]
fn requests_for_different_adapters_decode_together() {
    let model = smollm2();
    let dir = tempfile::tempdir().expect("temp dir");
    let project = demo_project(dir.path());
    let runs = [
        run_with_adapter(&project, &model, 1),
        run_with_adapter(&project, &model, 2),
    ];
    let project_arg = project.to_str().expect("utf8");
    let server = server::spawn(&[
        "--project",
        project_arg,
        "--run",
        &runs[0],
        "--run",
        &runs[1],
        "--max-batch",
        "6",
    ]);
    server::ready(&server);
    let ids = [
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        runs[0].as_str(),
        runs[1].as_str(),
    ];
    let ask = |id: &str| {
        let body = json!({"model": id, "prompt": "The patient was admitted with",
            "max_tokens": 12, "temperature": 0});
        server::completion(&server.1, &body)["choices"][0]["text"]
            .as_str()
            .expect("text")
            .to_string()
    };
    let alone: Vec<String> = ids.iter().map(|id| ask(id)).collect();
    for (i, text) in alone.iter().enumerate() {
        let adapter = (i > 0).then(|| project.join("runs").join(ids[i]).join("adapter"));
        let mut args = vec!["generate", "--model", model.to_str().expect("utf8")];
        args.extend([
            "--prompt",
            "The patient was admitted with",
            "--raw",
            "--greedy",
        ]);
        args.extend(["--max-new-tokens", "12", "--json"]);
        let adapter = adapter.map(|a| a.display().to_string());
        if let Some(a) = &adapter {
            args.extend(["--adapter", a.as_str()]);
        }
        let out = Command::new(env!("CARGO_BIN_EXE_lablens"))
            .args(&args)
            .output()
            .expect("generate");
        let v: Value = serde_json::from_slice(&out.stdout).expect("generate --json");
        assert_eq!(v["outputs"][0]["text"], text.as_str(), "{}", ids[i]);
    }
    assert!(
        alone[0] != alone[1] && alone[1] != alone[2],
        "each adapter changes the text: {alone:?}"
    );
    let together: Vec<String> = std::thread::scope(|s| {
        let asks: Vec<_> = [0, 1, 2, 2, 1, 0]
            .iter()
            .map(|&i| {
                let ask = &ask;
                s.spawn(move || ask(ids[i]))
            })
            .collect();
        asks.into_iter()
            .map(|a| a.join().expect("request"))
            .collect()
    });
    for (text, i) in together.iter().zip([0, 1, 2, 2, 1, 0]) {
        assert_eq!(text, &alone[i], "{} sent with the others", ids[i]);
    }
}

/// `lablens_generated_tokens_total` of the server's `/metrics`.
fn generated_tokens(url: &str) -> f64 {
    let (_, text) = get_any(&format!("{url}/metrics")).expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix("lablens_generated_tokens_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("generated tokens in /metrics")
}

#[test]
fn a_client_that_closes_its_connection_frees_its_place() {
    use std::io::Write;
    let model = smollm2();
    let dir = tempfile::tempdir().expect("temp dir");
    let project = demo_project(dir.path());
    let server = server::spawn(&[
        "--project",
        project.to_str().expect("utf8"),
        "--model",
        model.to_str().expect("utf8"),
        "--max-concurrency",
        "1",
    ]);
    server::ready(&server);
    // A request answered whole that would count for about ten seconds (asking to close the
    // connection after it, which makes the server stop reading it at once)...
    let body = json!({"prompt": "1, 2, 3, 4, 5, 6,", "max_tokens": 3000, "temperature": 0});
    let body = body.to_string();
    let address = server.1.trim_start_matches("http://");
    let mut client = std::net::TcpStream::connect(address).expect("connect");
    write!(
        client,
        "POST /v1/completions HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let deadline = Instant::now() + Duration::from_secs(30);
    while generated_tokens(&server.1) < 20.0 {
        assert!(
            Instant::now() < deadline,
            "the long request never generated"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // ...whose client goes away: the one place is free again within a second or so, and the
    // generation stops.
    drop(client);
    let closed = Instant::now();
    let short = json!({"prompt": "The patient was", "max_tokens": 8, "temperature": 0});
    loop {
        let reply = ureq::post(format!("{}/v1/completions", server.1))
            .config()
            .http_status_as_error(false)
            .build()
            .header("Content-Type", "application/json")
            .send(short.to_string())
            .expect("short request");
        match reply.status().as_u16() {
            200 => break,
            429 => assert!(
                closed.elapsed() < Duration::from_secs(3),
                "the place was still taken {:?} after the client left",
                closed.elapsed()
            ),
            other => panic!("status {other}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = generated_tokens(&server.1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(generated_tokens(&server.1), after, "the generation went on");
    assert!(after < 1500.0, "{after} tokens generated");
    let (_, metrics) = get_any(&format!("{}/metrics", server.1)).expect("metrics");
    assert!(
        metrics.contains("status=\"499\""),
        "the closed request counted as 499:\n{metrics}"
    );
}
