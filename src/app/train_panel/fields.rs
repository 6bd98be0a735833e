//! The numbers of the training form: where each lives in `TrainConfig`, its label, the sentence
//! of help its tooltip shows, and how its text is read back.

use crate::train::TrainConfig;

/// Where a field's value lives in the configuration, and of which kind it is.
#[derive(Clone, Copy)]
pub enum Slot {
    Count(fn(&mut TrainConfig) -> &mut usize),
    /// Empty text means `None`.
    OptionalCount(fn(&mut TrainConfig) -> &mut Option<usize>),
    Real(fn(&mut TrainConfig) -> &mut f64),
    Seed(fn(&mut TrainConfig) -> &mut u64),
}

/// A number of the form: `key` is the name `TrainConfig::check` gives its errors.
pub struct Field {
    pub key: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    pub slot: Slot,
}

/// The form's sections, each a heading over its fields.
pub const SECTIONS: [(&str, &[Field]); 4] = [
    (
        "Data and batches",
        &[
            Field {
                key: "max_seq_len",
                label: "max sequence length",
                help: "The longest example in tokens; longer ones lose input text, never the start of the target.",
                slot: Slot::Count(|c| &mut c.max_seq_len),
            },
            Field {
                key: "micro_batch",
                label: "micro-batch",
                help: "Examples run through the model together; more is faster per example but needs more memory.",
                slot: Slot::Count(|c| &mut c.micro_batch),
            },
            Field {
                key: "grad_accum",
                label: "gradient accumulation",
                help: "Micro-batches whose gradients add up before one optimizer step (effective batch = micro-batch × this).",
                slot: Slot::Count(|c| &mut c.grad_accum),
            },
            Field {
                key: "epochs",
                label: "epochs",
                help: "Passes over the training split, unless max steps stops the run earlier.",
                slot: Slot::Count(|c| &mut c.epochs),
            },
            Field {
                key: "max_steps",
                label: "max steps",
                help: "Stops after this many optimizer steps; leave empty to train for the epochs.",
                slot: Slot::OptionalCount(|c| &mut c.max_steps),
            },
        ],
    ),
    (
        "Optimizer",
        &[
            Field {
                key: "lr",
                label: "learning rate",
                help: "The peak step size of AdamW; LoRA usually wants 1e-4 to 5e-3.",
                slot: Slot::Real(|c| &mut c.lr),
            },
            Field {
                key: "warmup_steps",
                label: "warm-up steps",
                help: "Steps over which the learning rate rises linearly from 0 to its peak.",
                slot: Slot::Count(|c| &mut c.warmup_steps),
            },
            Field {
                key: "betas",
                label: "beta 1",
                help: "AdamW's decay of the gradient average; 0.9 is the usual value.",
                slot: Slot::Real(|c| &mut c.betas.0),
            },
            Field {
                key: "betas",
                label: "beta 2",
                help: "AdamW's decay of the squared-gradient average; 0.999 is the usual value.",
                slot: Slot::Real(|c| &mut c.betas.1),
            },
            Field {
                key: "eps",
                label: "epsilon",
                help: "Keeps AdamW's division finite where gradients are near zero.",
                slot: Slot::Real(|c| &mut c.eps),
            },
            Field {
                key: "weight_decay",
                label: "weight decay",
                help: "Pulls the adapter weights toward zero each step, in [0, 1).",
                slot: Slot::Real(|c| &mut c.weight_decay),
            },
            Field {
                key: "max_grad_norm",
                label: "gradient clipping",
                help: "Scales the gradients down when their global norm exceeds this; 0 turns clipping off.",
                slot: Slot::Real(|c| &mut c.max_grad_norm),
            },
        ],
    ),
    (
        "LoRA",
        &[
            Field {
                key: "lora.r",
                label: "rank r",
                help: "The rank of each adapter: more capacity and more parameters as it grows.",
                slot: Slot::Count(|c| &mut c.lora.r),
            },
            Field {
                key: "lora.alpha",
                label: "alpha",
                help: "Scales the adapter's output by alpha / r; twice the rank is a common choice.",
                slot: Slot::Real(|c| &mut c.lora.alpha),
            },
            Field {
                key: "lora.dropout",
                label: "dropout",
                help: "Probability of zeroing each input of the adapter while training (PEFT's lora_dropout); 0 turns it off.",
                slot: Slot::Real(|c| &mut c.lora.dropout),
            },
        ],
    ),
    (
        "Evaluation and checkpoints",
        &[
            Field {
                key: "eval_every",
                label: "validate every",
                help: "Steps between validation losses (one is always taken at the end); 0 only at the end.",
                slot: Slot::Count(|c| &mut c.eval_every),
            },
            Field {
                key: "eval_records",
                label: "validation records",
                help: "Validation records scored each time; 0 uses the whole validation split.",
                slot: Slot::Count(|c| &mut c.eval_records),
            },
            Field {
                key: "checkpoint_every",
                label: "checkpoint every",
                help: "Steps between checkpoints a stopped or crashed run resumes from; 0 only at the end.",
                slot: Slot::Count(|c| &mut c.checkpoint_every),
            },
            Field {
                key: "early_stopping_patience",
                label: "early-stopping patience",
                help: "Stops after this many validations without a better loss; leave empty to never stop early.",
                slot: Slot::OptionalCount(|c| &mut c.early_stopping_patience),
            },
            Field {
                key: "seed",
                label: "seed",
                help: "Fixes adapter initialisation and batch order, so a run can be repeated exactly.",
                slot: Slot::Seed(|c| &mut c.seed),
            },
        ],
    ),
];

pub fn fields() -> impl Iterator<Item = &'static Field> {
    SECTIONS.iter().flat_map(|(_, fields)| fields.iter())
}

impl Slot {
    pub fn text(self, cfg: &mut TrainConfig) -> String {
        match self {
            Slot::Count(get) => get(cfg).to_string(),
            Slot::OptionalCount(get) => get(cfg).map(|v| v.to_string()).unwrap_or_default(),
            // 1e-8 reads better than 0.00000001.
            Slot::Real(get) => match *get(cfg) {
                v if v != 0.0 && v.abs() < 1e-4 => format!("{v:e}"),
                v => v.to_string(),
            },
            Slot::Seed(get) => get(cfg).to_string(),
        }
    }

    /// Writes `text` into `cfg`, or says why it is not a value of this kind.
    pub fn parse_into(self, text: &str, cfg: &mut TrainConfig) -> Result<(), String> {
        let text = text.trim();
        let whole = || "must be a whole number".to_string();
        match self {
            Slot::Count(get) => *get(cfg) = text.parse().map_err(|_| whole())?,
            Slot::OptionalCount(get) => {
                *get(cfg) = match text {
                    "" => None,
                    t => Some(t.parse().map_err(|_| whole())?),
                }
            }
            Slot::Real(get) => {
                *get(cfg) = text
                    .parse()
                    .map_err(|_| "must be a number (like 0.001 or 1e-3)".to_string())?
            }
            Slot::Seed(get) => *get(cfg) = text.parse().map_err(|_| whole())?,
        }
        Ok(())
    }
}
