//! The embedded tiny model through the CLI: `--model tiny` tokenizes, generates and scores with
//! the JSON shapes scripts rely on.

mod common;
use common::lablens;

use serde_json::Value;

fn lablens_json(args: &[&str]) -> Value {
    let out = lablens(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

#[test]
fn tiny_model_tokenizes_generates_and_scores() {
    let text = "Take your medicine once a day.";
    let t = lablens_json(&["tokenize", "--model", "tiny", "--text", text, "--json"]);
    let ids = t["ids"].as_array().expect("ids");
    let tokens = t["tokens"].as_array().expect("tokens");
    assert_eq!(ids.len(), tokens.len());
    // A tokenizer trained on clinical text keeps its common words whole.
    assert!(ids.len() <= 8, "{t}");
    assert!(tokens.iter().any(|p| p == "Ġmedicine"), "{t}");

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("discharge.jsonl");
    let sample = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data/discharge.jsonl"),
    )
    .expect("sample data");
    std::fs::write(&data, sample.lines().take(2).collect::<Vec<_>>().join("\n")).expect("write");
    let data = data.to_str().expect("utf8 path");

    let g = lablens_json(&[
        "generate",
        "--model",
        "tiny",
        "--data",
        data,
        "--max-new-tokens",
        "12",
        "--json",
    ]);
    let outputs = g["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 2);
    for o in outputs {
        assert!(o["id"].as_str().is_some_and(|id| id.starts_with("dis-")));
        let n = o["ids"].as_array().expect("ids").len();
        assert!((1..=12).contains(&n), "{o}");
        assert!(o["text"].is_string());
    }

    let s = lablens_json(&["score", "--model", "tiny", "--data", data, "--json"]);
    let nll = s["mean_nll"].as_f64().expect("mean_nll");
    // Far below the uniform guess over 4096 tokens (ln 4096 ≈ 8.3): the model was trained.
    assert!(nll < 2.0, "{s}");
    assert_eq!(s["records"].as_array().map(Vec::len), Some(2));
}
