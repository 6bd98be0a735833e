//! A small registry to look at: a project with three evaluated runs of made-up outputs,
//! registered as versions 1–3 with alias moves, for `lablens screenshots` (the demo project has
//! no registry of its own) and the panel's tests. Everything goes through the registry's own
//! functions, as `lablens registry` would write it.

use crate::eval::{ExampleInput, corpus, score_example};
use crate::project::{OpenProject, PROJECT_FILE};
use crate::registry::promote::{Promotion, promote, rollback};
use crate::registry::{RegisteredModel, register};
use crate::store::sha256_hex;
use crate::train::config::TrainConfig;
use serde_json::json;
use std::path::Path;

/// The registered model's name.
pub const MODEL: &str = "discharge-lora";

/// The gates of the fixture project: a ROUGE-1 floor on the low end of its interval, the reading
/// grade and hallucinated medications.
const GATES: &str = r#"[
    (metric: "rouge1", compare: ">=", threshold: 0.30, lower_bound: true),
    (metric: "fkgl", compare: "<=", threshold: 12),
    (metric: "meds.hallucinated_per_example", compare: "<=", threshold: 0.1),
]"#;

const REFERENCE: &str = "Take aspirin 81 mg every day. Rest at home and drink water. \
     Call your doctor if the chest pain comes back.";
const GOOD: &str = "Take aspirin 81 mg every day. Rest at home and drink water. \
     Call your doctor if the pain comes back.";
const FAIR: &str = "Take aspirin every day and rest at home. Call your doctor if you feel pain.";
const POOR: &str = "Rest at home and take warfarin.";

/// Writes a project with gates in `dir`.
pub fn project(dir: &Path) -> Result<OpenProject, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let text = format!(
        "(name: \"Registry demo\", task: discharge, gates: {GATES}, \
         registry: (primary_metric: \"rouge1\", max_relative_drop: 0.02))"
    );
    let file = dir.join(PROJECT_FILE);
    std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    OpenProject::open(dir).map_err(|e| e.to_string())
}

/// A finished, evaluated run `id` of `project` whose 12 outputs are taken in turn from `outputs`,
/// trained with learning rate `lr` and LoRA rank `rank`.
pub fn run(
    project: &OpenProject,
    id: &str,
    outputs: &[&str],
    (lr, rank): (f64, usize),
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{id}: {e}");
    let dir = project.dir.join("runs").join(id);
    std::fs::create_dir_all(dir.join("adapter")).map_err(io)?;
    let mut config = TrainConfig {
        lr,
        ..TrainConfig::default()
    };
    config.lora.r = rank;
    config.lora.alpha = 2.0 * rank as f64;
    let config = ron::ser::to_string(&config).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("config.ron"), config).map_err(io)?;
    std::fs::write(
        dir.join("adapter/adapter_config.json"),
        format!("{{\"r\": {rank}}}"),
    )
    .map_err(io)?;
    let weights = format!("weights of {id}");
    std::fs::write(dir.join("adapter/adapter_model.safetensors"), &weights).map_err(io)?;
    let mut lines = String::new();
    let mut scores = Vec::new();
    for i in 0..12 {
        let out = outputs[i % outputs.len()];
        let score = score_example(&ExampleInput {
            prediction: out,
            reference: REFERENCE,
            source: Some("Aspirin 81 mg daily. Chest pain resolved."),
            task: Some(crate::data::record::Task::Discharge),
        });
        let (gender, age) = if i % 2 == 0 { ("F", 44) } else { ("M", 67) };
        let line = json!({"id": format!("r{i}"), "input": "Aspirin 81 mg daily.",
            "reference": REFERENCE, "prediction": out, "task": "discharge", "gender": gender,
            "age": age, "ethnicity": null, "input_cut": false, "output_cut": false,
            "metrics": score.metrics});
        lines.push_str(&format!("{line}\n"));
        scores.push(score);
    }
    std::fs::write(dir.join("predictions.jsonl"), lines).map_err(io)?;
    let eval = json!({"run": id, "split": "test", "n": scores.len(), "task": "discharge",
        "corpus": corpus(&scores, None).ok_or("no corpus metrics")?, "model": {"source": "tiny", "sha256": null},
        "adapter_sha256": sha256_hex(weights.as_bytes()), "data_sha256": sha256_hex(b"demo")});
    std::fs::write(dir.join("eval.json"), eval.to_string()).map_err(io)
}

/// The fixture registry in `dir`: three versions (a good one, a better one, a poor one that
/// fails the ROUGE-1 and medication gates), production moved 1 → 2 and rolled back once to
/// 1 and forward again, staging on 3. Returns the project.
pub fn demo_registry(dir: &Path) -> Result<OpenProject, String> {
    let p = project(dir)?;
    let runs = [
        ("20261201-091500", [GOOD, FAIR, FAIR].as_slice(), (2e-4, 8)),
        ("20261203-140200", [GOOD, GOOD, FAIR].as_slice(), (3e-4, 16)),
        ("20261206-103000", [POOR, FAIR].as_slice(), (1e-3, 16)),
    ];
    let model = RegisteredModel::new(&p.dir, MODEL).map_err(|e| e.to_string())?;
    for (id, outputs, settings) in runs {
        run(&p, id, outputs, settings)?;
        register(&p, &model, id, Some("LoRA on the discharge set")).map_err(|e| e.to_string())?;
    }
    let moves = [
        (1, "production", "first model to pass the gates"),
        (2, "production", "higher ROUGE-1 on the same test records"),
        (3, "staging", "trying a higher learning rate"),
    ];
    for (version, alias, reason) in moves {
        let promotion = Promotion {
            version,
            alias,
            reason: Some(reason),
            force: false,
        };
        promote(&p, &model, &promotion).map_err(|e| e.to_string())?;
    }
    rollback(&p, &model, "production", "reading grade complaints").map_err(|e| e.to_string())?;
    let again = Promotion {
        version: 2,
        alias: "production",
        reason: Some("complaints were about the template"),
        force: false,
    };
    promote(&p, &model, &again).map_err(|e| e.to_string())?;
    Ok(p)
}
