use super::*;
use crate::model::adapters::{LoraConfig, attach};
use crate::model::loading::weights::{MemorySource, build_llama};
use candle_core::{DType, Var};

pub(crate) fn tiny_config() -> LlamaConfig {
    serde_json::from_str(
        r#"{"vocab_size":40,"hidden_size":32,"intermediate_size":48,"num_hidden_layers":2,
            "num_attention_heads":4,"num_key_value_heads":2,"rope_theta":10000.0,
            "tie_word_embeddings":true}"#,
    )
    .expect("tiny config")
}

/// Random weights for `cfg`, named as in a Hugging Face checkpoint: matrices normal with std
/// 0.2, norm weights near one.
pub(crate) fn random_weights(cfg: &LlamaConfig, seed: u64) -> MemorySource {
    let mut rng = crate::data::rng::SeededRng::new(seed);
    let tensors = crate::train::pretrain::trainer::parameter_shapes(cfg)
        .into_iter()
        .map(|(name, dims)| {
            let n: usize = dims.iter().product();
            let (center, std) = if dims.len() == 1 {
                (1.0, 0.02)
            } else {
                (0.0, 0.2)
            };
            let v: Vec<f32> = (0..n)
                .map(|_| (center + rng.normal() * std) as f32)
                .collect();
            (
                name,
                Tensor::from_vec(v, dims, &Device::Cpu).expect("tensor"),
            )
        })
        .collect();
    MemorySource {
        path: "random".into(),
        tensors,
    }
}

pub(crate) fn tiny_model(seed: u64) -> Llama {
    let cfg = tiny_config();
    build_llama(&mut random_weights(&cfg, seed), &cfg, 64, &Device::Cpu).expect("build")
}

fn ids(v: &[u32]) -> Tensor {
    Tensor::new(v, &Device::Cpu)
        .expect("ids")
        .unsqueeze(0)
        .expect("batch")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

#[test]
fn train_and_inference_paths_agree() -> Result<()> {
    let m = tiny_model(1);
    let x = ids(&[1, 5, 7, 2, 9, 30, 3]);
    let a = m.logits(&m.hidden(&x, 0, None, Path::Train)?, Path::Train)?;
    let b = m.logits(&m.hidden(&x, 0, None, Path::Infer)?, Path::Infer)?;
    assert!(max_abs_diff(&a, &b) < 1e-4, "{}", max_abs_diff(&a, &b));
    Ok(())
}

/// Logits of `seq` through the KV cache: its first `prefix` ids in one step, then one at a time.
fn incremental_logits(m: &Llama, seq: &[u32], prefix: usize) -> Result<Tensor> {
    let mut cache = KvCache::new();
    let mut steps = vec![m.logits(
        &m.hidden(&ids(&seq[..prefix]), 0, Some(&mut cache), Path::Infer)?,
        Path::Infer,
    )?];
    for (k, &tok) in seq.iter().enumerate().skip(prefix) {
        steps.push(m.logits(
            &m.hidden(&ids(&[tok]), k, Some(&mut cache), Path::Infer)?,
            Path::Infer,
        )?);
    }
    Tensor::cat(&steps, 1)
}

#[test]
fn kv_cache_decoding_matches_the_full_forward() -> Result<()> {
    let m = tiny_model(2);
    let seq = [4u32, 8, 15, 16, 23, 42 % 40, 7];
    let full = m.logits(&m.hidden(&ids(&seq), 0, None, Path::Infer)?, Path::Infer)?;
    let incremental = incremental_logits(&m, &seq, 4)?;
    assert!(max_abs_diff(&full, &incremental) < 1e-4);
    Ok(())
}

#[test]
fn gradients_reach_every_lora_matrix_of_every_layer() -> Result<()> {
    let mut m = tiny_model(3);
    let cfg = LoraConfig {
        r: 4,
        ..LoraConfig::default()
    };
    let vars = attach(&mut m, &cfg, 9)?;
    assert_eq!(vars.len(), 2 * 7 * m.layers.len());
    assert_every_var_has_a_gradient(&adapter_gradients(&m, &vars)?, &vars)
}

/// Gradients of a next-token loss on the training path, B set non-zero first (PEFT starts B at
/// zero, which leaves A without gradient at step 0).
fn adapter_gradients(
    m: &Llama,
    vars: &[(String, Var)],
) -> Result<candle_core::backprop::GradStore> {
    for (name, v) in vars {
        if name.contains("lora_B") {
            v.set(&(Tensor::ones(v.shape(), DType::F32, &Device::Cpu)? * 0.01)?)?;
        }
    }
    let x = ids(&[1, 2, 3, 4, 5, 6]);
    let logits = m
        .logits(&m.hidden(&x, 0, None, Path::Train)?, Path::Train)?
        .squeeze(0)?;
    let targets = Tensor::new(&[2u32, 3, 4, 5, 6, 7], &Device::Cpu)?;
    candle_nn::loss::cross_entropy(&logits, &targets)?.backward()
}

/// Fails unless each variable received a non-zero gradient.
pub(crate) fn assert_every_var_has_a_gradient(
    grads: &candle_core::backprop::GradStore,
    vars: &[(String, Var)],
) -> Result<()> {
    for (name, v) in vars {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let norm = g.sqr()?.sum_all()?.to_scalar::<f32>()?;
        assert!(norm > 0.0, "zero gradient for {name}");
    }
    Ok(())
}

#[test]
fn a_zero_b_adapter_leaves_outputs_unchanged_until_trained() -> Result<()> {
    let mut m = tiny_model(4);
    let x = ids(&[3, 1, 4, 1, 5]);
    let before = m.logits(&m.hidden(&x, 0, None, Path::Infer)?, Path::Infer)?;
    let vars = attach(&mut m, &LoraConfig::default(), 1)?;
    let after = m.logits(&m.hidden(&x, 0, None, Path::Infer)?, Path::Infer)?;
    assert!(max_abs_diff(&before, &after) < 1e-6);
    let b: &Var = &vars[1].1;
    b.set(&(Tensor::ones(b.shape(), DType::F32, &Device::Cpu)? * 0.05)?)?;
    let tuned = m.logits(&m.hidden(&x, 0, None, Path::Infer)?, Path::Infer)?;
    assert!(max_abs_diff(&before, &tuned) > 1e-4);
    crate::model::adapters::set_enabled(&mut m, false);
    let off = m.logits(&m.hidden(&x, 0, None, Path::Infer)?, Path::Infer)?;
    assert!(max_abs_diff(&before, &off) < 1e-6);
    Ok(())
}

/// The same model in bf16: the path a GPU takes (candle's ops instead of the fused f32 CPU ops),
/// checked on the CPU.
fn tiny_bf16(seed: u64) -> Llama {
    tiny_model(seed).to_dtype(DType::BF16).expect("bf16")
}

#[test]
fn bf16_follows_f32_within_bf16_rounding_on_both_paths() -> Result<()> {
    let (f32_model, bf16) = (tiny_model(1), tiny_bf16(1));
    assert_eq!(bf16.dtype(), DType::BF16);
    let x = ids(&[1, 5, 7, 2, 9, 30, 3]);
    let reference = f32_model.logits(&f32_model.hidden(&x, 0, None, Path::Infer)?, Path::Infer)?;
    let scale = reference.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    for path in [Path::Train, Path::Infer] {
        let got = bf16.logits(&bf16.hidden(&x, 0, None, path)?, path)?;
        assert_eq!(got.dtype(), DType::F32, "logits come back in f32");
        let diff = max_abs_diff(&reference, &got);
        // bf16 keeps 8 bits of mantissa: a few parts in a hundred after a few layers.
        assert!(diff < 0.05 * scale.max(1.0), "{path:?}: {diff} of {scale}");
    }
    Ok(())
}

#[test]
fn bf16_kv_cache_decoding_matches_its_full_forward() -> Result<()> {
    let m = tiny_bf16(2);
    let seq = [4u32, 8, 15, 16, 23, 2, 7];
    let full = m.logits(&m.hidden(&ids(&seq), 0, None, Path::Infer)?, Path::Infer)?;
    let incremental = incremental_logits(&m, &seq, 4)?;
    let scale = full.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    let diff = max_abs_diff(&full, &incremental);
    assert!(diff < 0.05 * scale.max(1.0), "{diff} of {scale}");
    Ok(())
}

#[test]
fn bf16_gradients_reach_every_f32_lora_matrix() -> Result<()> {
    let mut m = tiny_bf16(3);
    let vars = attach(
        &mut m,
        &LoraConfig {
            r: 4,
            ..LoraConfig::default()
        },
        9,
    )?;
    for (name, v) in &vars {
        assert_eq!(v.dtype(), DType::F32, "{name}: adapters train in f32");
    }
    let grads = adapter_gradients(&m, &vars)?;
    for (name, v) in &vars {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_eq!(g.dtype(), DType::F32, "{name}");
    }
    assert_every_var_has_a_gradient(&grads, &vars)
}
