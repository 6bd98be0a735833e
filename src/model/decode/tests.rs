use super::*;
use crate::model::adapters::{LoraConfig, attach};
use crate::model::generation::argmax;
use crate::model::llama::tests::random_weights;
use crate::model::loading::weights::build_llama;
use crate::model::nn::Path;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, IndexOp};
use std::sync::Arc;

/// A small model whose projections are Q4_1 and Q4_0 blocks and whose embedding (the tied
/// head) is Q8_0, as in a GGUF file; with q/k/v biases when `bias`.
fn quantized_model(bias: bool) -> Llama {
    let cfg: crate::model::config::LlamaConfig = serde_json::from_str(&format!(
        r#"{{"vocab_size":96,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,
            "num_attention_heads":4,"num_key_value_heads":2,"rope_theta":10000.0,
            "tie_word_embeddings":true,"attention_bias":{bias}}}"#
    ))
    .expect("config");
    let mut weights = random_weights(&cfg, 11);
    if bias {
        for i in 0..cfg.num_hidden_layers {
            for (name, n) in [("q", 64), ("k", 32), ("v", 32)] {
                let values: Vec<f32> = (0..n).map(|j| ((i + j) % 7) as f32 * 0.1 - 0.3).collect();
                let t = Tensor::from_vec(values, n, &Device::Cpu).expect("bias");
                weights
                    .tensors
                    .insert(format!("model.layers.{i}.self_attn.{name}_proj.bias"), t);
            }
        }
    }
    let mut m = build_llama(&mut weights, &cfg, 64, &Device::Cpu).expect("build");
    let blocks = |w: &BaseWeight, kind: GgmlDType| -> BaseWeight {
        let dense = w.to_dense(&Device::Cpu).expect("dense");
        let q = QTensor::quantize(&dense, kind).expect("quantize");
        let b = BlockMatrix::from_qtensor(&q)
            .expect("blocks")
            .expect("a block type");
        BaseWeight::Blocks(Arc::new(b))
    };
    for (i, (_, l)) in m.linears_mut().into_iter().enumerate() {
        let kind = if i % 2 == 0 {
            GgmlDType::Q4_1
        } else {
            GgmlDType::Q4_0
        };
        l.base = blocks(&l.base, kind);
        assert_eq!(
            l.bias.is_some(),
            bias && i % 7 < 3,
            "bias of projection {i}"
        );
    }
    m.embed = blocks(&m.embed, GgmlDType::Q8_0);
    m.lm_head = m.embed.clone();
    m
}

/// Logits per step.
type Steps = Vec<Vec<f32>>;

/// The general path's logits for each of `tokens` after `prompt`, and the decoder's.
fn both_paths(m: &Llama, prompt: &[u32], tokens: &[u32]) -> Result<(Steps, Steps)> {
    let ids = |v: &[u32]| Tensor::new(v, &Device::Cpu)?.unsqueeze(0);
    let mut cache = KvCache::new();
    m.hidden(&ids(prompt)?, 0, Some(&mut cache), Path::Infer)?;
    let mut decoder = Decoder::new(m, &cache, 64)?.expect("the decoder applies");
    let mut general = Vec::new();
    let mut fast = Vec::new();
    for (i, &t) in tokens.iter().enumerate() {
        let h = m.hidden(&ids(&[t])?, prompt.len() + i, Some(&mut cache), Path::Infer)?;
        general.push(m.logits(&h, Path::Infer)?.i((0, 0))?.to_vec1::<f32>()?);
        fast.push(with_team(|team| decoder.step(team, t))?);
    }
    Ok((general, fast))
}

#[test]
fn decoding_agrees_with_the_general_path() -> Result<()> {
    for (bias, adapter) in [(false, false), (true, false), (false, true)] {
        let mut m = quantized_model(bias);
        if adapter {
            // On every projection, with B non-zero (attached, it starts at zero).
            for (_, var) in attach(&mut m, &LoraConfig::default(), 1)? {
                if var.dims()[1] == 16 {
                    let t = var.as_tensor();
                    var.set(&((t.ones_like()? * 0.05)? + t.sin()?)?)?;
                }
            }
        }
        let tokens: Vec<u32> = (0..20).map(|i| (i * 37 + 5) % 96).collect();
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            let (general, fast) = pool.install(|| both_paths(&m, &[3, 1, 4, 1, 5], &tokens))?;
            for (step, (g, f)) in general.iter().zip(&fast).enumerate() {
                let diff = g
                    .iter()
                    .zip(f)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    diff < 1e-4,
                    "bias {bias}, adapter {adapter}, {threads} threads, step {step}: {diff}"
                );
                assert_eq!(
                    argmax(g),
                    argmax(f),
                    "bias {bias}, adapter {adapter}, step {step}"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn models_it_does_not_run_keep_the_general_path() -> Result<()> {
    let ids = Tensor::new(&[[1u32, 2, 3]], &Device::Cpu)?;
    let prefill = |m: &Llama| -> Result<KvCache> {
        let mut cache = KvCache::new();
        m.hidden(&ids, 0, Some(&mut cache), Path::Infer)?;
        Ok(cache)
    };
    // Dense weights.
    let dense = crate::model::llama::tests::tiny_model(3);
    assert!(Decoder::new(&dense, &prefill(&dense)?, 64)?.is_none());
    // bf16 activations.
    let m = quantized_model(false).to_dtype(DType::BF16)?;
    assert!(Decoder::new(&m, &prefill(&m)?, 64)?.is_none());
    // A padded batch.
    let m = quantized_model(false);
    let mut cache = KvCache::with_left_padding(vec![1]);
    m.hidden(&ids, 0, Some(&mut cache), Path::Infer)?;
    assert!(Decoder::new(&m, &cache, 64)?.is_none());
    Ok(())
}

#[test]
fn a_step_past_the_context_is_refused() -> Result<()> {
    let m = quantized_model(false);
    let prompt: Vec<u32> = (0..63).collect();
    let mut cache = KvCache::new();
    let ids = Tensor::new(prompt.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
    m.hidden(&ids, 0, Some(&mut cache), Path::Infer)?;
    let mut decoder = Decoder::new(&m, &cache, 64)?.expect("applies");
    with_team(|team| decoder.step(team, 1))?;
    let err = with_team(|team| decoder.step(team, 1))
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("longer than the model's context of 64")));
    Ok(())
}
