//! Training agrees with transformers + PEFT: the per-step loss of 20 steps on SmolLM2-135M
//! (dequantized) is within 1e-3 of the loss `scripts/make-train-fixture.py` recorded replaying
//! the same batches from the same step-0 adapter in PyTorch.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

const GGUF: &str = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/train_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture JSON")
}

/// The fixture's configuration as a lablens TrainConfig.
fn config_ron(c: &Value, model: &Path) -> String {
    let targets: Vec<String> = c["target_modules"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| format!("{t}"))
        .collect();
    format!(
        r#"(model: "{}", dequantize: {}, device: "cpu", dataset: {}, max_seq_len: {},
    micro_batch: {}, grad_accum: {}, max_steps: Some({}), lr: {:?}, schedule: {},
    warmup_steps: {}, betas: ({:?}, {:?}), eps: {:?}, weight_decay: {:?}, max_grad_norm: {:?},
    lora: (r: {}, alpha: {:?}, dropout: {:?}, target_modules: [{}]),
    eval_every: 0, eval_records: 4, checkpoint_every: 0, seed: {})"#,
        model.display(),
        c["dequantize"],
        c["dataset"],
        c["max_seq_len"],
        c["micro_batch"],
        c["grad_accum"],
        c["max_steps"],
        c["lr"].as_f64().expect("lr"),
        c["schedule"].as_str().expect("schedule"),
        c["warmup_steps"],
        c["betas"][0].as_f64().expect("beta1"),
        c["betas"][1].as_f64().expect("beta2"),
        c["eps"].as_f64().expect("eps"),
        c["weight_decay"].as_f64().expect("weight_decay"),
        c["max_grad_norm"].as_f64().expect("max_grad_norm"),
        c["r"],
        c["alpha"].as_f64().expect("alpha"),
        c["dropout"].as_f64().expect("dropout"),
        targets.join(", "),
        c["seed"],
    )
}

/// The hash the fixture script takes of the recorded batches: per row of every micro-batch,
/// the input ids, `;`, the labels, a newline.
fn batch_hash(batches: &str) -> String {
    let mut h = Sha256::new();
    for line in batches.lines() {
        let step: Value = serde_json::from_str(line).expect("batches line");
        for mb in step["micro_batches"].as_array().expect("micro-batches") {
            let rows = mb["input_ids"].as_array().expect("ids").iter();
            for (ids, labels) in rows.zip(mb["labels"].as_array().expect("labels")) {
                let join = |v: &Value| -> String {
                    let items: Vec<String> = v
                        .as_array()
                        .expect("row")
                        .iter()
                        .map(|x| x.to_string())
                        .collect();
                    items.join(",")
                };
                h.update(format!("{};{}\n", join(ids), join(labels)));
            }
        }
    }
    format!("{:x}", h.finalize())
}

#[test]
fn twenty_steps_match_transformers_and_peft_within_1e_3() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join(GGUF);
    assert!(model.is_file(), "run scripts/fetch-smollm2.sh first");
    let f = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = std::fs::read_to_string(root.join("projects/demo/project.ron")).expect("demo");
    let sample = root.join("sample_data");
    let project = demo.replace("../../sample_data", &sample.display().to_string());
    std::fs::write(dir.path().join("project.ron"), project).expect("project");
    let cfg = dir.path().join("parity.ron");
    std::fs::write(&cfg, config_ron(&f["config"], &model)).expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_lablens"))
        .args(["train", "--record-batches", "--json", "--project"])
        .arg(dir.path())
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run lablens train");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary");
    let run = Path::new(summary["run_dir"].as_str().expect("run_dir")).to_path_buf();
    let batches = std::fs::read_to_string(run.join("batches.jsonl")).expect("batches");
    assert_eq!(
        batch_hash(&batches),
        f["batch_sha256"],
        "the batches drifted from the fixture's"
    );
    let losses: Vec<f64> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .expect("metrics")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["loss"].as_f64())
        .collect();
    let reference = f["steps"].as_array().expect("steps");
    assert_eq!(losses.len(), reference.len());
    let mut worst = 0f64;
    for (got, want) in losses.iter().zip(reference) {
        let want = want["loss"].as_f64().expect("loss");
        worst = worst.max((got - want).abs());
    }
    eprintln!(
        "max |lablens - torch| loss over {} steps: {worst:.2e}",
        losses.len()
    );
    assert!(worst < 1e-3, "max difference {worst}");
}
