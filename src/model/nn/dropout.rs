//! LoRA dropout as PEFT applies it: on the adapter's input only, `scale · B A dropout(x)`, while
//! training. Each mask comes from a counter-based hash of the round (the trainer's seed, step and
//! micro-batch), the layer and the element, so the backward pass and a resumed run draw the very
//! same masks without storing them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The dropout of one layer's adapter.
#[derive(Debug, Clone)]
pub struct LoraDropout {
    /// Probability that an input element is dropped.
    pub p: f32,
    /// A hash of the layer's path: every layer draws its own mask.
    layer: u64,
    /// The current round, shared by every layer of the model; 0 while not training.
    round: Arc<AtomicU64>,
}

impl LoraDropout {
    /// The key of this layer's mask in the current round; `None` outside training steps.
    pub fn key(&self) -> Option<u64> {
        match self.round.load(Ordering::Acquire) {
            0 => None,
            round => Some(mix(round ^ self.layer)),
        }
    }
}

/// Sets the round that every adapter's dropout draws its masks from.
#[derive(Debug, Clone, Default)]
pub struct DropoutRounds(Arc<AtomicU64>);

impl DropoutRounds {
    /// Rounds not started yet: no dropout until `start`.
    pub fn new() -> Self {
        DropoutRounds(Arc::new(AtomicU64::new(0)))
    }

    /// The dropout of probability `p` of the layer at `path`, drawing its masks from these
    /// rounds.
    pub fn layer(&self, path: &str, p: f32) -> LoraDropout {
        LoraDropout {
            p,
            layer: path_hash(path),
            round: Arc::clone(&self.0),
        }
    }

    /// Masks for the micro-batch `micro` of `step` in a run seeded `seed`.
    pub fn start(&self, seed: u64, step: usize, micro: usize) {
        let round = mix(mix(seed ^ 0x6c6f_7261) ^ step as u64) ^ ((micro as u64) << 48);
        // Zero means "off"; a round that hashes to it takes the next value.
        self.0.store(round.max(1), Ordering::Release);
    }

    /// No dropout from now on (validation, generation).
    pub fn stop(&self) {
        self.0.store(0, Ordering::Release);
    }
}

/// splitmix64's finalizer: a bijection that scatters nearby inputs.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a of a layer path.
fn path_hash(path: &str) -> u64 {
    path.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The factor of element `index` under mask `key`: 0 where dropped, `1 / (1 − p)` where kept
/// (the expected value stays that of the input).
pub fn factor(key: u64, index: usize, p: f32) -> f32 {
    // The top 24 bits as a uniform draw in [0, 1).
    let u = (mix(key ^ (index as u64).wrapping_mul(0xd1b5_4a32_d192_ed03)) >> 40) as f32
        / (1u64 << 24) as f32;
    if u < p { 0.0 } else { 1.0 / (1.0 - p) }
}

/// The factors of `len` elements under mask `key`.
pub fn mask(len: usize, key: u64, p: f32) -> Vec<f32> {
    (0..len).map(|i| factor(key, i, p)).collect()
}

/// The mask `key` for `x`, as a tensor of `x`'s shape, precision and device. On the CPU it is
/// [`mask`]; on a GPU it is drawn there from the device's generator seeded with `key` (as
/// repeatable, without building and copying a mask the size of every adapter input from the
/// CPU for every layer of every step).
pub fn mask_like(
    x: &candle_core::Tensor,
    key: u64,
    p: f32,
) -> candle_core::Result<candle_core::Tensor> {
    let device = x.device();
    if device.is_cpu() {
        let values = mask(x.elem_count(), key, p);
        return candle_core::Tensor::from_vec(values, x.shape(), device)?.to_dtype(x.dtype());
    }
    device.set_seed(key)?;
    let draws = candle_core::Tensor::rand(0f32, 1f32, x.shape(), device)?;
    draws.ge(f64::from(p))?.to_dtype(x.dtype())? * (1.0 / (1.0 - f64::from(p)))
}

/// `x` with the mask `key` applied.
pub fn apply(x: &[f32], key: u64, p: f32) -> Vec<f32> {
    x.iter()
        .enumerate()
        .map(|(i, v)| v * factor(key, i, p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_drop_about_p_are_repeatable_and_differ_between_keys() {
        let x = vec![1f32; 100_000];
        let (a, b) = (apply(&x, 7, 0.1), apply(&x, 8, 0.1));
        let dropped = a.iter().filter(|v| **v == 0.0).count() as f64 / x.len() as f64;
        assert!((dropped - 0.1).abs() < 0.005, "dropped {dropped}");
        assert!(a.iter().all(|v| *v == 0.0 || (*v - 1.0 / 0.9).abs() < 1e-6));
        assert_eq!(a, apply(&x, 7, 0.1));
        assert_ne!(a, b);
        let mean = a.iter().map(|v| f64::from(*v)).sum::<f64>() / x.len() as f64;
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
    }

    /// On the CPU the tensor mask is the hash mask; on `LABLENS_TEST_DEVICE` (a GPU) it drops
    /// about `p`, keeps the mean, and repeats for the same key.
    #[test]
    fn tensor_masks_repeat_per_key_on_the_test_device() {
        let choice = std::env::var("LABLENS_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
        let device = crate::model::loading::DeviceChoice::parse(&choice)
            .and_then(|c| c.device())
            .expect("device");
        let x = candle_core::Tensor::ones((100, 1000), candle_core::DType::F32, &device).unwrap();
        let values = |key| {
            let m = mask_like(&x, key, 0.1).unwrap();
            m.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        let a = values(7);
        if device.is_cpu() {
            assert_eq!(a, mask(x.elem_count(), 7, 0.1));
        }
        let dropped = a.iter().filter(|v| **v == 0.0).count() as f64 / a.len() as f64;
        assert!((dropped - 0.1).abs() < 0.005, "dropped {dropped}");
        let mean = a.iter().map(|v| f64::from(*v)).sum::<f64>() / a.len() as f64;
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
        assert_eq!(a, values(7));
        assert_ne!(a, values(8));
    }

    #[test]
    fn rounds_switch_the_masks_on_and_off() {
        let rounds = DropoutRounds(Arc::new(AtomicU64::new(0)));
        let d = LoraDropout {
            p: 0.1,
            layer: path_hash("model.layers.0.self_attn.q_proj"),
            round: Arc::clone(&rounds.0),
        };
        assert_eq!(d.key(), None);
        rounds.start(42, 3, 0);
        let first = d.key();
        assert!(first.is_some());
        rounds.start(42, 3, 1);
        assert_ne!(d.key(), first);
        rounds.start(42, 3, 0);
        assert_eq!(d.key(), first);
        rounds.stop();
        assert_eq!(d.key(), None);
    }
}
