use super::*;
use crate::model::adapters::{LoraConfig, attach};
use crate::model::generation::argmax;
use crate::model::llama::KvCache;
use crate::model::llama::tests::random_weights;
use crate::model::loading::weights::build_llama;
use crate::model::nn::Path;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, IndexOp};
use std::sync::Arc;

/// A small model whose projections are Q4_1 and Q4_0 blocks and whose embedding (the tied
/// head) is Q8_0, as in a GGUF file; with q/k/v biases when `bias`.
/// The test model's context.
pub(crate) const CONTEXT: usize = 512;

pub(crate) fn quantized_model(bias: bool) -> Llama {
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
    let mut m = build_llama(&mut weights, &cfg, CONTEXT, &Device::Cpu).expect("build");
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

/// The general path's logits after `prompt` and after each of `tokens`, and the decoder's
/// (which prefills the prompt itself).
fn both_paths(m: &Llama, prompt: &[u32], tokens: &[u32]) -> Result<(Steps, Steps)> {
    let ids = |v: &[u32]| Tensor::new(v, &Device::Cpu)?.unsqueeze(0);
    let mut cache = KvCache::new();
    let h = m.hidden(&ids(prompt)?, 0, Some(&mut cache), Path::Infer)?;
    let last = m.logits(&h, Path::Infer)?.i((0, prompt.len() - 1))?;
    let mut general = vec![last.to_vec1::<f32>()?];
    let mut decoder = Decoder::new(m, Vec::new())?.expect("the decoder applies");
    let mut seq = decoder.sequence(0, 64)?;
    let mut fast = one_step(&mut decoder, &mut seq, prompt)?;
    for (i, &t) in tokens.iter().enumerate() {
        let h = m.hidden(&ids(&[t])?, prompt.len() + i, Some(&mut cache), Path::Infer)?;
        general.push(m.logits(&h, Path::Infer)?.i((0, 0))?.to_vec1::<f32>()?);
        fast.extend(one_step(&mut decoder, &mut seq, &[t])?);
    }
    Ok((general, fast))
}

/// The decoder's logits after feeding `tokens` to `seq` alone.
fn one_step(decoder: &mut Decoder, seq: &mut Sequence, tokens: &[u32]) -> Result<Steps> {
    with_team(|team| {
        decoder.step(
            team,
            &mut [Feed {
                sequence: seq,
                tokens,
            }],
        )
    })
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
    // Dense weights.
    let dense = crate::model::llama::tests::tiny_model(3);
    assert!(Decoder::new(&dense, Vec::new())?.is_none());
    // bf16 activations.
    let m = quantized_model(false).to_dtype(DType::BF16)?;
    assert!(Decoder::new(&m, Vec::new())?.is_none());
    Ok(())
}

#[test]
fn a_step_past_the_context_is_refused() -> Result<()> {
    let m = quantized_model(false);
    let prompt: Vec<u32> = (0..CONTEXT as u32 - 1).map(|t| t % 96).collect();
    let mut decoder = Decoder::new(&m, Vec::new())?.expect("applies");
    let mut seq = decoder.sequence(0, CONTEXT)?;
    one_step(&mut decoder, &mut seq, &prompt)?;
    one_step(&mut decoder, &mut seq, &[1])?;
    let err = one_step(&mut decoder, &mut seq, &[1])
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("longer than the model's context of 512")));
    assert_eq!(seq.positions(), CONTEXT);
    Ok(())
}

/// The bits of each row of logits.
fn bits(steps: &Steps) -> Vec<Vec<u32>> {
    steps
        .iter()
        .map(|l| l.iter().map(|v| v.to_bits()).collect())
        .collect()
}

#[test]
fn sequences_stepped_together_get_the_bits_they_get_alone() -> Result<()> {
    let mut m = quantized_model(true);
    // A second adapter set: the model's own adapter, taken out before it goes back to base.
    for (_, var) in attach(&mut m, &LoraConfig::default(), 4)? {
        let t = var.as_tensor();
        var.set(&((t.ones_like()? * 0.03)? + t.cos()?)?)?;
    }
    let tuned = AdapterSet::of(&m)?;
    crate::model::adapters::remove(&mut m);
    let prompts: [Vec<u32>; 3] = [
        (0..41).map(|i| (i * 7 + 3) % 96).collect(),
        vec![5, 9, 2],
        (0..70).map(|i| (i * 11 + 1) % 96).collect(),
    ];
    let adapters = [0, 1, 1];
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        pool.install(|| -> Result<()> {
            let mut decoder = Decoder::new(&m, vec![tuned.clone()])?.expect("applies");
            // Alone: each prompt in one step, then three tokens.
            let mut alone = Vec::new();
            for (p, &a) in prompts.iter().zip(&adapters) {
                let mut seq = decoder.sequence(a, 128)?;
                let mut steps = one_step(&mut decoder, &mut seq, p)?;
                for t in [4, 17, 33] {
                    steps.extend(one_step(&mut decoder, &mut seq, &[t])?);
                }
                alone.push(bits(&steps));
            }
            // Together: the first two prefill in one step while the third joins later, its
            // prompt in two stretches beside the others' decoding.
            let mut seqs: Vec<Sequence> = adapters
                .iter()
                .map(|&a| decoder.sequence(a, 128))
                .collect::<Result<_>>()?;
            let mut got: Vec<Steps> = vec![Vec::new(); 3];
            let [s0, s1, s2] = &mut seqs[..] else {
                unreachable!("three sequences")
            };
            let out = with_team(|team| {
                decoder.step(
                    team,
                    &mut [
                        Feed {
                            sequence: s0,
                            tokens: &prompts[0],
                        },
                        Feed {
                            sequence: s1,
                            tokens: &prompts[1],
                        },
                    ],
                )
            })?;
            got[0].push(out[0].clone());
            got[1].push(out[1].clone());
            for (step, t) in [4u32, 17, 33].into_iter().enumerate() {
                let third: &[u32] = match step {
                    0 => &prompts[2][..30],
                    1 => &prompts[2][30..],
                    _ => &[4],
                };
                let out = with_team(|team| {
                    decoder.step(
                        team,
                        &mut [
                            Feed {
                                sequence: s0,
                                tokens: &[t],
                            },
                            Feed {
                                sequence: s2,
                                tokens: third,
                            },
                            Feed {
                                sequence: s1,
                                tokens: &[t],
                            },
                        ],
                    )
                })?;
                got[0].push(out[0].clone());
                got[1].push(out[2].clone());
                if step >= 1 {
                    got[2].push(out[1].clone());
                }
            }
            for t in [17u32, 33] {
                got[2].extend(one_step(&mut decoder, s2, &[t])?);
            }
            for (i, (got, alone)) in got.iter().zip(&alone).enumerate() {
                assert_eq!(&bits(got), alone, "sequence {i}, {threads} threads");
            }
            // The adapter changes the outputs.
            assert_ne!(alone[1], {
                let mut seq = decoder.sequence(0, 128)?;
                let mut steps = one_step(&mut decoder, &mut seq, &prompts[1])?;
                for t in [4, 17, 33] {
                    steps.extend(one_step(&mut decoder, &mut seq, &[t])?);
                }
                bits(&steps)
            });
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn an_adapter_set_that_does_not_fit_is_refused() -> Result<()> {
    let m = quantized_model(false);
    let mut other = crate::model::llama::tests::tiny_model(2);
    attach(&mut other, &LoraConfig::default(), 1)?;
    let err = Decoder::new(&m, vec![AdapterSet::of(&other)?])
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_ref().is_some_and(|e| e.contains("adapter set 1")),
        "{err:?}"
    );
    Ok(())
}
