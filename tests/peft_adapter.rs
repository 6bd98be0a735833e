//! PEFT adapters: one made by Python PEFT (scripts/make-peft-fixture.py) loads here and gives
//! transformers + PEFT's NLL within 1e-4; an adapter saved here has PEFT's layout and reloads
//! to the same numbers; adapters that do not fit the model are refused with the key named.

use candle_core::Device;
use lablens::model::adapters::{ALL_TARGETS, LoraConfig, load_peft, merge, save_peft, set_enabled};
use lablens::model::generation::score::{mean, token_nll};
use lablens::model::llama::Llama;
use lablens::model::loading::weights::{GgufSource, build_llama};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct Reference {
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    ids: Vec<u32>,
    mean_nll: f64,
    base_mean_nll: f64,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model() -> Llama {
    let path = root().join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-smollm2.sh first",
        path.display()
    );
    let (mut src, cfg) = GgufSource::open(&path, true).expect("open gguf");
    build_llama(&mut src, &cfg, 512, &Device::Cpu).expect("build")
}

fn adapter_dir() -> PathBuf {
    root().join("tests/fixtures/peft-adapter-smollm2")
}

fn reference() -> Reference {
    serde_json::from_str(include_str!("fixtures/peft_reference.json")).expect("fixture")
}

fn nll(m: &Llama, ids: &[u32]) -> f64 {
    mean(&token_nll(m, ids, 1).expect("score")).expect("tokens")
}

#[test]
fn python_peft_adapter_gives_the_same_nll_here() {
    let mut m = model();
    let (cfg, vars) = load_peft(&mut m, &adapter_dir()).expect("load adapter");
    assert_eq!((cfg.r, cfg.lora_alpha), (8, 16.0));
    assert_eq!(vars.len(), 4 * 7 * 2, "four layers, seven modules, A and B");
    let mut worst = 0.0f64;
    for r in reference().records {
        worst = worst.max((nll(&m, &r.ids) - r.mean_nll).abs());
    }
    set_enabled(&mut m, false);
    for r in reference().records {
        worst = worst.max((nll(&m, &r.ids) - r.base_mean_nll).abs());
    }
    eprintln!("largest NLL difference to transformers + PEFT: {worst:.2e}");
    assert!(worst < 1e-4, "{worst}");
}

fn safetensors_layout(dir: &Path) -> Vec<(String, Vec<usize>)> {
    let tensors =
        candle_core::safetensors::load(dir.join("adapter_model.safetensors"), &Device::Cpu)
            .expect("read adapter");
    let mut layout: Vec<(String, Vec<usize>)> = tensors
        .into_iter()
        .map(|(k, t)| (k, t.dims().to_vec()))
        .collect();
    layout.sort();
    layout
}

#[test]
fn saved_adapter_has_peft_layout_and_reloads_identically() {
    let mut m = model();
    load_peft(&mut m, &adapter_dir()).expect("load adapter");
    let out = tempfile::tempdir().expect("tempdir");
    let cfg = LoraConfig {
        r: 8,
        alpha: 16.0,
        dropout: 0.0,
        target_modules: ALL_TARGETS.iter().map(|s| s.to_string()).collect(),
    };
    save_peft(&m, &cfg, "HuggingFaceTB/SmolLM2-135M-Instruct", out.path()).expect("save");
    assert_eq!(
        safetensors_layout(out.path()),
        safetensors_layout(&adapter_dir())
    );
    let written: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("adapter_config.json")).expect("config"),
    )
    .expect("json");
    assert_eq!(written["peft_type"], "LORA");
    assert_eq!(written["r"], 8);
    assert_eq!(written["lora_alpha"], 16.0);
    let ids = &reference().records[0].ids;
    let before = nll(&m, ids);
    let mut fresh = model();
    load_peft(&mut fresh, out.path()).expect("reload");
    assert_eq!(nll(&fresh, ids), before);
}

#[test]
fn adapters_that_do_not_fit_are_refused_with_the_key_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        adapter_dir().join("adapter_model.safetensors"),
        dir.path().join("adapter_model.safetensors"),
    )
    .expect("copy");
    let config =
        std::fs::read_to_string(adapter_dir().join("adapter_config.json")).expect("config");
    std::fs::write(
        dir.path().join("adapter_config.json"),
        config.replace("\"r\": 8", "\"r\": 4"),
    )
    .expect("write");
    let mut m = model();
    let err = load_peft(&mut m, dir.path())
        .expect_err("rank mismatch")
        .to_string();
    assert!(
        err.contains("lora_A.weight") && err.contains("shape"),
        "{err}"
    );

    std::fs::write(dir.path().join("adapter_config.json"), "{\"r\": 8").expect("write");
    let err = load_peft(&mut m, dir.path())
        .expect_err("bad json")
        .to_string();
    assert!(err.contains("adapter_config.json"), "{err}");

    let err = load_peft(&mut m, &dir.path().join("missing"))
        .expect_err("missing")
        .to_string();
    assert!(err.contains("missing"), "{err}");
}

/// Merged into the base (PEFT's merge_and_unload), the Python adapter still gives transformers +
/// PEFT's NLL, with no adapter left; on a quantized base the merged layers become dense.
#[test]
fn a_merged_adapter_gives_the_adapters_nll_without_it() {
    for dequantize in [true, false] {
        let path = root().join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
        let (mut src, cfg) = GgufSource::open(&path, dequantize).expect("open gguf");
        let mut m = build_llama(&mut src, &cfg, 512, &Device::Cpu).expect("build");
        load_peft(&mut m, &adapter_dir()).expect("load adapter");
        let before: Vec<f64> = reference()
            .records
            .iter()
            .map(|r| nll(&m, &r.ids))
            .collect();
        assert_eq!(merge(&mut m).expect("merge"), 4 * 7);
        assert!(m.linears().iter().all(|(_, l)| l.lora.is_none()));
        let mut worst = 0.0f64;
        for (r, before) in reference().records.iter().zip(before) {
            let merged = nll(&m, &r.ids);
            worst = worst.max((merged - before).abs());
            if dequantize {
                worst = worst.max((merged - r.mean_nll).abs());
            }
        }
        eprintln!("merged adapter (dequantize {dequantize}): largest NLL difference {worst:.2e}");
        // A quantized base merges into its dequantized weights: the products no longer round
        // the activations to 8 bits, so its tolerance is the quantized path's (2e-2).
        let bound = if dequantize { 1e-4 } else { 2e-2 };
        assert!(worst < bound, "dequantize {dequantize}: {worst}");
    }
}

#[test]
fn score_with_merge_matches_score_with_the_adapter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("texts.jsonl");
    std::fs::write(
        &data,
        "{\"id\": \"a\", \"text\": \"Discharge summary: the patient was admitted with chest pain.\"}\n\
         {\"id\": \"b\", \"text\": \"Take aspirin 81 mg daily and follow up in two weeks.\"}\n",
    )
    .expect("write data");
    let model = root().join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let score = |extra: &[&str]| -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_lablens"))
            .args(["score", "--model"])
            .arg(&model)
            .args(["--dequantize", "--raw", "--json", "--data"])
            .arg(&data)
            .args(extra)
            .output()
            .expect("run lablens")
    };
    let adapter = adapter_dir();
    let adapter = adapter.to_str().expect("utf8 path");
    let mean_nll = |out: std::process::Output| -> f64 {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        doc["mean_nll"].as_f64().expect("mean_nll")
    };
    let with_adapter = mean_nll(score(&["--adapter", adapter]));
    let merged = mean_nll(score(&["--adapter", adapter, "--merge"]));
    assert!(
        (with_adapter - merged).abs() < 1e-4,
        "{with_adapter} vs {merged}"
    );
    let alone = score(&["--merge"]);
    assert_eq!(alone.status.code(), Some(2), "--merge without --adapter");
    assert!(String::from_utf8_lossy(&alone.stderr).contains("--adapter"));
}
