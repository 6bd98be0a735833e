//! The training configuration (stored as `config.ron` in each run folder), its presets, and the
//! checks that reject impossible values with a message naming the field.

use crate::model::adapters::{ALL_TARGETS, LoraConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    Constant,
    Linear,
    Cosine,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// A Hugging Face folder, a `.gguf` file, or `tiny` for the embedded model.
    pub model: String,
    /// Load a GGUF base as f32 instead of training over its quantized weights (QLoRA).
    pub dequantize: bool,
    /// `auto`, `cpu` or `cuda:N`.
    pub device: String,
    /// `auto` (bf16 on a GPU, f32 on the CPU), `f32` or `bf16`: the base model's precision; the
    /// adapter trains in f32 either way.
    pub dtype: String,
    /// The project dataset to train on, by name.
    pub dataset: String,
    /// Longest example in tokens; longer ones lose input text, never the start of the target.
    pub max_seq_len: usize,
    pub micro_batch: usize,
    pub grad_accum: usize,
    pub epochs: usize,
    /// Stops earlier than `epochs` when set.
    pub max_steps: Option<usize>,
    pub lr: f64,
    pub schedule: ScheduleKind,
    pub warmup_steps: usize,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    /// Global gradient norm limit; 0 turns clipping off.
    pub max_grad_norm: f64,
    pub lora: LoraConfig,
    /// Validation loss every this many steps (and at the end); 0 only at the end.
    pub eval_every: usize,
    /// Validation records used per evaluation; 0 means all.
    pub eval_records: usize,
    /// A checkpoint every this many steps (and at the end); 0 only at the end.
    pub checkpoint_every: usize,
    /// Stop after this many evaluations without a better validation loss.
    pub early_stopping_patience: Option<usize>,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig::quick_demo()
    }
}

/// Bounds on the size fields beyond any model or machine: longer sequences than the longest
/// context of the models trained here, more examples a micro-batch (or micro-batches a step)
/// than a GPU of today holds, more passes than any recipe makes. Within them the trainer checks
/// the model's context and, on the CPU, the memory a micro-batch needs (`train::memory`).
pub const MAX_SEQ_LEN: usize = 131_072;
pub const MAX_BATCH: usize = 4096;
pub const MAX_EPOCHS: usize = 1000;

/// The presets' names, for the CLI and the GUI.
pub const PRESETS: [&str; 2] = ["discharge", "quick-demo"];

/// The learning rate the presets take for a model, by its parameters (LoRA on a small model
/// wants larger steps than on a large one): below each bound, its rate.
/// - under 1 B: 5e-3, with which quick-demo lowers the embedded model's validation loss by more
///   than 40% in 80 steps, and which lowered SmolLM2-135M's on the demo project faster than
///   2e-3 and 1e-3 did (docs/training.md);
/// - from 1 B: 2e-4, the discharge recipe of the Python pipeline for its 2.7–8 B models.
pub const LR_BY_SIZE: [(usize, f64); 2] = [(1_000_000_000, 5e-3), (usize::MAX, 2e-4)];

/// The presets' learning rate for a model of `parameters` parameters.
pub fn suited_lr(parameters: usize) -> f64 {
    LR_BY_SIZE
        .iter()
        .find(|(below, _)| parameters < *below)
        .map_or(2e-4, |(_, lr)| *lr)
}

impl TrainConfig {
    /// The discharge-summary recipe of the Python pipeline Lab Lens replaces.
    fn discharge() -> TrainConfig {
        TrainConfig {
            model: crate::model::loading::TINY.into(),
            dequantize: true,
            device: "auto".into(),
            dtype: "auto".into(),
            dataset: "discharge".into(),
            max_seq_len: 2048,
            micro_batch: 1,
            grad_accum: 1,
            epochs: 1,
            max_steps: None,
            lr: 2e-4,
            schedule: ScheduleKind::Linear,
            warmup_steps: 0,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            lora: LoraConfig::default(),
            eval_every: 100,
            eval_records: 64,
            checkpoint_every: 100,
            early_stopping_patience: None,
            seed: 42,
        }
    }

    pub fn preset(name: &str) -> Option<TrainConfig> {
        match name {
            "discharge" => Some(TrainConfig::discharge()),
            "quick-demo" => Some(TrainConfig::quick_demo()),
            _ => None,
        }
    }

    /// Finishes on the embedded model in two to three minutes on two cores, the validation loss
    /// down by more than 40%.
    fn quick_demo() -> TrainConfig {
        TrainConfig {
            max_seq_len: 384,
            micro_batch: 8,
            max_steps: Some(80),
            lr: 5e-3,
            schedule: ScheduleKind::Cosine,
            warmup_steps: 5,
            eval_every: 20,
            eval_records: 32,
            checkpoint_every: 20,
            ..TrainConfig::discharge()
        }
    }

    /// Every problem with the values, each naming its field.
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut need = |ok: bool, field: &'static str, message: &str| {
            if !ok {
                errors.push(FieldError {
                    field,
                    message: message.to_string(),
                });
            }
        };
        need(!self.model.trim().is_empty(), "model", "name a model");
        need(!self.dataset.trim().is_empty(), "dataset", "name a dataset");
        need(
            (16..=MAX_SEQ_LEN).contains(&self.max_seq_len),
            "max_seq_len",
            &format!("must be between 16 and {MAX_SEQ_LEN} tokens"),
        );
        need(
            (1..=MAX_BATCH).contains(&self.micro_batch),
            "micro_batch",
            &format!("must be between 1 and {MAX_BATCH}"),
        );
        need(
            (1..=MAX_BATCH).contains(&self.grad_accum),
            "grad_accum",
            &format!("must be between 1 and {MAX_BATCH}"),
        );
        need(
            (self.epochs >= 1 || self.max_steps.is_some_and(|s| s > 0))
                && self.epochs <= MAX_EPOCHS,
            "epochs",
            &format!("must be between 1 and {MAX_EPOCHS} (or 0 with max_steps set)"),
        );
        need(
            self.max_steps != Some(0),
            "max_steps",
            "must be at least 1 when set",
        );
        need(
            self.lr > 0.0 && self.lr.is_finite() && self.lr < 1.0,
            "lr",
            "must be above 0 and below 1",
        );
        let (b1, b2) = self.betas;
        need(
            (0.0..1.0).contains(&b1) && (0.0..1.0).contains(&b2),
            "betas",
            "both must be in [0, 1)",
        );
        need(
            self.eps > 0.0 && self.eps.is_finite(),
            "eps",
            "must be above 0",
        );
        need(
            (0.0..1.0).contains(&self.weight_decay),
            "weight_decay",
            "must be in [0, 1)",
        );
        need(
            self.max_grad_norm >= 0.0 && self.max_grad_norm.is_finite(),
            "max_grad_norm",
            "must be 0 (off) or above",
        );
        need(
            (1..=1024).contains(&self.lora.r),
            "lora.r",
            "must be between 1 and 1024",
        );
        need(
            self.lora.alpha > 0.0 && self.lora.alpha.is_finite(),
            "lora.alpha",
            "must be above 0",
        );
        need(
            (0.0..1.0).contains(&self.lora.dropout),
            "lora.dropout",
            "must be at least 0 and below 1",
        );
        need(
            !self.lora.target_modules.is_empty()
                && self
                    .lora
                    .target_modules
                    .iter()
                    .all(|t| ALL_TARGETS.contains(&t.as_str())),
            "lora.target_modules",
            "must be some of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj",
        );
        need(
            self.early_stopping_patience != Some(0),
            "early_stopping_patience",
            "must be at least 1 when set",
        );
        errors
    }

    pub fn to_ron(&self) -> String {
        ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default()).unwrap_or_default()
    }
}

/// Every field of a configuration (as JSON, e.g. `serde_json::to_value(&config)`) as text, nested
/// fields named with dots (`lora.r`): strings as they are, numbers, booleans and lists as JSON
/// text, an absent value (`null`) as `None`. What the Train panel's and the Registry panel's
/// configuration diffs and MLflow's params show.
pub fn flat_fields(value: &serde_json::Value) -> BTreeMap<String, Option<String>> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, Option<String>>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            serde_json::Value::String(s) => {
                out.insert(prefix.to_string(), Some(s.clone()));
            }
            serde_json::Value::Null => {
                out.insert(prefix.to_string(), None);
            }
            other => {
                out.insert(prefix.to_string(), Some(other.to_string()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out
}

/// A value the trainer cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_the_discharge_recipe_is_the_pipelines() {
        for name in PRESETS {
            let cfg = TrainConfig::preset(name).expect("preset");
            assert!(cfg.check().is_empty(), "{name}: {:?}", cfg.check());
        }
        let d = TrainConfig::preset("discharge").expect("discharge");
        assert_eq!((d.lora.r, d.lora.alpha, d.lora.dropout), (16, 32.0, 0.0));
        assert_eq!(d.lora.target_modules.len(), 7);
        assert_eq!(
            (d.lr, d.micro_batch, d.grad_accum, d.epochs, d.max_seq_len),
            (2e-4, 1, 1, 1, 2048)
        );
        assert!(TrainConfig::preset("nope").is_none());
    }

    #[test]
    fn presets_take_the_learning_rate_of_the_models_size() {
        use crate::model::loading::{ModelSpec, TINY, load};
        let tiny = load(&ModelSpec::new(TINY)).expect("tiny").info.parameters;
        assert_eq!(suited_lr(tiny), 5e-3, "the embedded model");
        assert_eq!(suited_lr(134_515_008), 5e-3, "SmolLM2-135M");
        assert_eq!(
            suited_lr(3_212_749_824),
            2e-4,
            "a 3B model: the pipeline's rate"
        );
    }

    #[test]
    fn impossible_values_are_named() {
        let cfg = TrainConfig {
            lr: -1.0,
            micro_batch: 0,
            betas: (0.9, 1.5),
            lora: LoraConfig {
                dropout: 1.0,
                target_modules: vec!["qkv".into()],
                ..LoraConfig::default()
            },
            ..TrainConfig::default()
        };
        let fields: Vec<&str> = cfg.check().iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "micro_batch",
                "lr",
                "betas",
                "lora.dropout",
                "lora.target_modules"
            ]
        );
    }

    #[test]
    fn sizes_beyond_any_machine_are_refused_with_the_bound() {
        let cfg = TrainConfig {
            micro_batch: 100_000,
            grad_accum: 5000,
            max_seq_len: 1 << 20,
            epochs: 1_000_000,
            ..TrainConfig::default()
        };
        let errors = cfg.check();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            ["max_seq_len", "micro_batch", "grad_accum", "epochs"]
        );
        assert!(
            errors[1].message.contains("between 1 and 4096"),
            "{errors:?}"
        );
    }

    #[test]
    fn the_config_round_trips_through_ron_and_missing_fields_take_defaults() {
        let cfg = TrainConfig::preset("discharge").expect("discharge");
        let back: TrainConfig = ron::from_str(&cfg.to_ron()).expect("parse");
        assert_eq!(back, cfg);
        let partial: TrainConfig = ron::from_str("(lr: 0.01, micro_batch: 2)").expect("parse");
        assert_eq!((partial.lr, partial.micro_batch), (0.01, 2));
        assert_eq!(partial.seed, TrainConfig::default().seed);
        // A partial lora block, too.
        let lora: TrainConfig = ron::from_str("(lora: (r: 8))").expect("parse");
        assert_eq!(lora.lora.r, 8);
        assert_eq!(lora.lora.alpha, LoraConfig::default().alpha);
        assert_eq!(
            lora.lora.target_modules,
            LoraConfig::default().target_modules
        );
    }
}
