//! Whether a micro-batch's activations fit the memory of the CPU that trains it, checked before
//! the first step: a run that outgrows it is killed by the system (or swaps the machine to a
//! standstill) rather than failing with a message. On a GPU an allocation that fails is an error
//! the run reports, keeping its last checkpoint, so no estimate stands in its way there.

use super::config::FieldError;
use crate::model::config::LlamaConfig;

/// The activations a training step of the CPU path keeps per token, in f32 values, for a
/// model of `cfg`'s shape at sequences of `seq` tokens: the logits, their softmax and gradient
/// (4 a vocabulary entry), six hidden-sized and four intermediate-sized vectors a layer, and
/// the attention probabilities and their gradient (2 a head and position). Calibrated against
/// the peak resident memory of `lablens train` on SmolLM2-135M (sequences 128 and 256, micro-
/// batches 4 and 16: within 2%) and the embedded model (within 10%); see docs/training.md.
pub fn values_per_token(cfg: &LlamaConfig, seq: usize) -> usize {
    let layer = 6 * cfg.hidden_size + 4 * cfg.intermediate_size + 2 * cfg.num_attention_heads * seq;
    4 * cfg.vocab_size + cfg.num_hidden_layers * layer
}

/// The bytes a micro-batch of `rows` examples padded to `seq` tokens keeps.
pub fn activation_bytes(cfg: &LlamaConfig, rows: usize, seq: usize) -> u64 {
    (rows as u64)
        .saturating_mul(seq as u64)
        .saturating_mul(values_per_token(cfg, seq) as u64 * 4)
}

/// `Err` naming `micro_batch` when its largest micro-batch (`rows` examples of up to `seq`
/// tokens) needs more than `available` bytes, with the largest micro-batch that fits.
pub fn check_fits(
    cfg: &LlamaConfig,
    rows: usize,
    seq: usize,
    available: u64,
) -> Result<(), FieldError> {
    let need = activation_bytes(cfg, rows, seq);
    if need <= available {
        return Ok(());
    }
    let per_row = activation_bytes(cfg, 1, seq).max(1);
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    Err(FieldError {
        field: "micro_batch",
        message: format!(
            "{rows} examples of up to {seq} tokens need about {:.1} GiB for a step's \
             activations and this machine has {:.1} GiB available: at most {} fit at these \
             lengths (or lower max_seq_len)",
            gib(need),
            gib(available),
            available / per_row
        ),
    })
}

/// The memory the system could give this process now (`MemAvailable` of /proc/meminfo), where
/// the system says.
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm2() -> LlamaConfig {
        serde_json::from_str(
            r#"{"vocab_size":49152,"hidden_size":576,"intermediate_size":1536,
                "num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3}"#,
        )
        .expect("config")
    }

    /// The estimate against the peak resident memory measured for SmolLM2-135M (less the
    /// 0.66 GB the model and the process hold): micro-batch 16 at 256 tokens 10.9 GB, 4 at 256
    /// 3.22 GB, 16 at 128 5.23 GB.
    #[test]
    fn the_estimate_is_near_what_training_smollm2_held() {
        for (rows, seq, measured) in [(16, 256, 10.90e9), (4, 256, 3.22e9), (16, 128, 5.23e9)] {
            let estimate = activation_bytes(&smollm2(), rows, seq) as f64;
            let ratio = estimate / (measured - 0.66e9);
            assert!((0.95..1.05).contains(&ratio), "{rows}×{seq}: {ratio}");
        }
    }

    #[test]
    fn a_micro_batch_beyond_the_memory_is_refused_with_the_largest_that_fits() {
        let cfg = smollm2();
        let available = 20u64 << 30;
        assert!(check_fits(&cfg, 16, 256, available).is_ok());
        let err = check_fits(&cfg, 100_000, 256, available).expect_err("too big");
        assert_eq!(err.field, "micro_batch");
        let fits = available / activation_bytes(&cfg, 1, 256);
        assert!(
            err.message.contains(&format!("at most {fits} fit")),
            "{}",
            err.message
        );
        assert!(check_fits(&cfg, fits as usize, 256, available).is_ok());
        assert!(check_fits(&cfg, fits as usize + 1, 256, available).is_err());
    }

    #[test]
    fn this_machine_says_what_memory_it_has() {
        if cfg!(target_os = "linux") {
            assert!(available_bytes().is_some_and(|b| b > 0));
        }
    }
}
