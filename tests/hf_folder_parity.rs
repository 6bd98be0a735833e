//! Hugging Face model folders against transformers (fixtures made by
//! scripts/make-tiny-hf-fixture.py): a tiny Llama and a tiny Qwen2 (q/k/v bias, rope_theta in
//! transformers 5's `rope_parameters`) give per-token NLL within 1e-4 and the same 16 greedy
//! tokens; a sharded copy gives the same numbers as the single file; the CLI's tokenize and
//! score print the JSON their contract promises.

mod common;
use common::lablens;

use lablens::model::generation::score::token_nll;
use lablens::model::generation::{Flow, GenerationParams, generate};
use lablens::model::loading::{LoadedModel, ModelSpec, load};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Output;

#[derive(Deserialize)]
struct Reference {
    vocab_size: usize,
    models: HashMap<String, Vec<Record>>,
}

#[derive(Deserialize)]
struct Record {
    text: String,
    ids: Vec<u32>,
    nll: Vec<f64>,
    mean_nll: f64,
    greedy_16: Vec<u32>,
}

fn reference() -> Reference {
    serde_json::from_str(include_str!("fixtures/tiny_hf_reference.json")).expect("fixture")
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn open(name: &str) -> LoadedModel {
    load(&ModelSpec::new(fixture(name))).unwrap_or_else(|e| panic!("load {name}: {e}"))
}

/// Largest per-token NLL difference to transformers over every reference sequence.
fn worst_nll_difference(model: &LoadedModel, records: &[Record]) -> f64 {
    let mut worst = 0.0f64;
    for r in records {
        let nll = token_nll(&model.llama, &r.ids, 1).expect("score");
        assert_eq!(nll.len(), r.nll.len(), "{:?}", r.text);
        for (ours, theirs) in nll.iter().zip(&r.nll) {
            worst = worst.max((f64::from(*ours) - theirs).abs());
        }
    }
    worst
}

fn check_against_transformers(name: &str) {
    let reference = reference();
    let records = &reference.models[name];
    let model = open(name);
    assert_eq!(model.llama.cfg.vocab_size, reference.vocab_size);
    assert_eq!(model.tokenizer.vocab_size(), reference.vocab_size);
    let worst = worst_nll_difference(&model, records);
    eprintln!("{name}: largest per-token NLL difference to transformers {worst:.2e}");
    assert!(worst < 1e-4, "{name}: per-token NLL differs by {worst}");
    let params = GenerationParams {
        max_new_tokens: 16,
        ..GenerationParams::default()
    };
    for r in records {
        let out = generate(&model.llama, &r.ids, &params, &[], &mut |_| Flow::Continue)
            .expect("generate");
        assert_eq!(out.ids, r.greedy_16, "{name}: greedy after {:?}", r.text);
    }
}

#[test]
fn tiny_llama_folder_matches_transformers() {
    check_against_transformers("tiny-llama-hf");
}

#[test]
fn tiny_qwen2_folder_with_bias_matches_transformers() {
    check_against_transformers("tiny-qwen2-hf");
}

#[test]
fn sharded_folder_gives_the_numbers_of_the_single_file() {
    let reference = reference();
    let single = open("tiny-llama-hf");
    let sharded = open("tiny-llama-hf-sharded");
    assert_eq!(single.info.parameters, sharded.info.parameters);
    for r in &reference.models["tiny-llama-hf"] {
        let a = token_nll(&single.llama, &r.ids, 1).expect("score single");
        let b = token_nll(&sharded.llama, &r.ids, 1).expect("score sharded");
        assert_eq!(a, b, "{:?}", r.text);
    }
}

fn json_stdout(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn model_arg() -> String {
    fixture("tiny-llama-hf").display().to_string()
}

#[test]
fn cli_tokenize_prints_the_ids_transformers_gives() {
    let reference = reference();
    let model = model_arg();
    for r in &reference.models["tiny-llama-hf"] {
        let json = json_stdout(&lablens(&[
            "tokenize", "--model", &model, "--text", &r.text, "--json",
        ]));
        let ids: Vec<u32> = serde_json::from_value(json["ids"].clone()).expect("ids");
        assert_eq!(ids, r.ids, "{:?}", r.text);
        let tokens = json["tokens"].as_array().expect("tokens array");
        assert_eq!(tokens.len(), ids.len());
        assert!(
            tokens
                .iter()
                .all(|t| t.as_str().is_some_and(|s| !s.is_empty()))
        );
    }
}

#[test]
fn cli_score_raw_prints_records_and_mean_nll() {
    let reference = reference();
    let records = &reference.models["tiny-llama-hf"];
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("raw.jsonl");
    let lines: Vec<String> = records
        .iter()
        .enumerate()
        .map(|(k, r)| serde_json::json!({"id": format!("r{k}"), "text": r.text}).to_string())
        .collect();
    std::fs::write(&data, lines.join("\n") + "\n").expect("write data");
    let json = json_stdout(&lablens(&[
        "score",
        "--model",
        &model_arg(),
        "--raw",
        "--data",
        data.to_str().expect("utf8 path"),
        "--json",
    ]));
    let rows = json["records"].as_array().expect("records array");
    assert_eq!(rows.len(), records.len());
    for (k, (row, r)) in rows.iter().zip(records).enumerate() {
        assert_eq!(row["id"], format!("r{k}"));
        assert_eq!(row["tokens"].as_u64(), Some(r.nll.len() as u64));
        let nll = row["nll"].as_f64().expect("nll");
        assert!((nll - r.mean_nll).abs() < 1e-4, "{nll} vs {}", r.mean_nll);
        let ppl = row["ppl"].as_f64().expect("ppl");
        assert!((ppl - nll.exp()).abs() < 1e-6 * ppl);
    }
    let all: Vec<f64> = records.iter().flat_map(|r| r.nll.iter().copied()).collect();
    let expected = all.iter().sum::<f64>() / all.len() as f64;
    let mean_nll = json["mean_nll"].as_f64().expect("mean_nll");
    assert!(
        (mean_nll - expected).abs() < 1e-4,
        "{mean_nll} vs {expected}"
    );
}
