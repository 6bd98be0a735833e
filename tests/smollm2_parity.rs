//! SmolLM2-135M-Instruct against Hugging Face transformers (fixture made by
//! scripts/make-model-fixture.py): per-token NLL of the dequantized GGUF within 1e-4, the
//! quantized (QLoRA-style) weights within 2e-2, and 32 greedy tokens identical.
//! The model file comes from scripts/fetch-smollm2.sh (CI runs it before the tests).

use candle_core::Device;
use lablens::model::generate::{Flow, GenerationParams, generate};
use lablens::model::llama::Llama;
use lablens::model::score::{mean, token_nll};
use lablens::model::weights::{GgufSource, build_llama};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize)]
struct Reference {
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    ids: Vec<u32>,
    nll: Vec<f64>,
    mean_nll: f64,
    greedy_32: Vec<u32>,
}

fn gguf_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-smollm2.sh first",
        path.display()
    );
    path
}

fn load(dequantize: bool) -> Llama {
    let path = gguf_path();
    let (mut src, cfg) = GgufSource::open(&path, dequantize).expect("open gguf");
    build_llama(&mut src, &cfg, 2048, &Device::Cpu).expect("build")
}

fn reference() -> Reference {
    serde_json::from_str(include_str!("fixtures/smollm2_reference.json")).expect("fixture")
}

#[test]
fn dequantized_nll_matches_transformers_within_1e_4() {
    let model = load(true);
    let mut worst = 0.0f64;
    for r in reference().records {
        let nll = token_nll(&model, &r.ids, 1).expect("score");
        assert_eq!(nll.len(), r.nll.len());
        let ours = mean(&nll).expect("tokens");
        worst = worst.max((ours - r.mean_nll).abs());
        let per_token = nll
            .iter()
            .zip(&r.nll)
            .map(|(a, b)| (f64::from(*a) - b).abs())
            .fold(0.0, f64::max);
        assert!(per_token < 2e-3, "per-token difference {per_token}");
    }
    eprintln!("largest mean-NLL difference to transformers: {worst:.2e}");
    assert!(worst < 1e-4, "mean NLL differs by {worst}");
}

#[test]
fn quantized_nll_is_within_2e_2() {
    let model = load(false);
    let mut worst = 0.0f64;
    for r in reference().records {
        let ours = mean(&token_nll(&model, &r.ids, 1).expect("score")).expect("tokens");
        worst = worst.max((ours - r.mean_nll).abs());
    }
    eprintln!("largest mean-NLL difference, quantized Q4_1 vs dequantized reference: {worst:.2e}");
    assert!(worst < 2e-2, "quantized mean NLL differs by {worst}");
}

#[test]
fn greedy_generation_matches_transformers_for_32_tokens() {
    let model = load(true);
    let params = GenerationParams {
        max_new_tokens: 32,
        ..GenerationParams::default()
    };
    for r in reference().records {
        let out =
            generate(&model, &r.ids, &params, &[], &mut |_| Flow::Continue).expect("generate");
        assert_eq!(out.ids, r.greedy_32, "after {} prompt tokens", r.ids.len());
    }
}
