use super::*;
use crate::model::adapters::{LoraConfig, attach};
use crate::model::generation::{argmax, left_padded};
use crate::model::llama::tests::random_weights;
use crate::model::loading::DeviceChoice;
use crate::model::loading::weights::build_llama;
use crate::model::nn::Path;

fn device() -> Device {
    let choice = std::env::var("LABLENS_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    DeviceChoice::parse(&choice)
        .and_then(|c| c.device())
        .expect("LABLENS_TEST_DEVICE")
}

/// A small model on `dev`: head dimension `hidden / 4`, q/k/v biases when `bias`, and an
/// adapter with non-zero B on every projection when `adapter`.
fn model(hidden: usize, bias: bool, adapter: bool, dtype: DType, dev: &Device) -> Llama {
    let cfg: crate::model::config::LlamaConfig = serde_json::from_str(&format!(
        r#"{{"vocab_size":96,"hidden_size":{hidden},"intermediate_size":{},"num_hidden_layers":2,
            "num_attention_heads":4,"num_key_value_heads":2,"rope_theta":10000.0,
            "tie_word_embeddings":true,"attention_bias":{bias}}}"#,
        2 * hidden
    ))
    .expect("config");
    let mut weights = random_weights(&cfg, 5);
    if bias {
        for i in 0..cfg.num_hidden_layers {
            for (name, n) in [("q", hidden), ("k", hidden / 2), ("v", hidden / 2)] {
                let values: Vec<f32> = (0..n).map(|j| ((i + j) % 7) as f32 * 0.1 - 0.3).collect();
                let t = Tensor::from_vec(values, n, &Device::Cpu).expect("bias");
                weights
                    .tensors
                    .insert(format!("model.layers.{i}.self_attn.{name}_proj.bias"), t);
            }
        }
    }
    let mut m = build_llama(&mut weights, &cfg, 256, dev).expect("build");
    if adapter {
        for (_, var) in attach(&mut m, &LoraConfig::default(), 1).expect("attach") {
            if var.dims()[1] == 16 {
                let t = var.as_tensor();
                let b = ((t.ones_like().expect("ones") * 0.05).expect("scaled")
                    + t.sin().expect("sin"))
                .expect("sum");
                var.set(&b).expect("set");
            }
        }
    }
    m.to_dtype(dtype).expect("dtype")
}

/// Logits per step, per row.
type Steps = Vec<Vec<Vec<f32>>>;

/// The general path's logits for each step of `tokens` (one id per row) after the
/// left-padded `prompts`, and the decoder's.
fn both_paths(m: &Llama, prompts: &[Vec<u32>], tokens: &[Vec<u32>]) -> Result<(Steps, Steps)> {
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let (pads, padded) = left_padded(prompts);
    let b = prompts.len();
    let mut cache = KvCache::with_left_padding(pads);
    let ids = Tensor::from_vec(padded, (b, longest), m.device())?;
    m.hidden(&ids, 0, Some(&mut cache), Path::Infer)?;
    let mut decoder =
        GpuDecoder::new(m, &cache, longest + tokens.len())?.expect("the decoder applies");
    let (mut general, mut fast) = (Vec::new(), Vec::new());
    for (i, step) in tokens.iter().enumerate() {
        let ids = Tensor::from_vec(step.clone(), (b, 1), m.device())?;
        let h = m.hidden(&ids, longest + i, Some(&mut cache), Path::Infer)?;
        general.push(m.logits(&h, Path::Infer)?.squeeze(1)?.to_vec2::<f32>()?);
        fast.push(decoder.step(step)?);
    }
    assert!(
        decoder.replays_a_graph(),
        "the steps replay a captured graph"
    );
    Ok((general, fast))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max)
}

/// With `LABLENS_TEST_DEVICE=cuda:N`: head dimensions 16 and 64, with biases, with an
/// adapter; one row, a left-padded batch of three (the decoder's products), of eighteen
/// (cuBLAS's) and two rows of 150 and 70 positions (attention over several warps' chunks of 32
/// positions). The steps replay a captured graph. In f32 the decoder gives the general path's
/// logits to rounding and the same argmax; in bf16 it is no further from the f32 logits than
/// twice the general path's bf16 is. On the CPU the decoder does not apply.
#[test]
fn decoding_on_the_test_gpu_agrees_with_the_general_path() -> Result<()> {
    let dev = device();
    if dev.is_cpu() {
        let m = model(64, false, false, DType::F32, &dev);
        let mut cache = KvCache::new();
        let ids = Tensor::new(&[[1u32, 2]], &dev)?;
        m.hidden(&ids, 0, Some(&mut cache), Path::Infer)?;
        assert!(GpuDecoder::new(&m, &cache, 8)?.is_none());
        return Ok(());
    }
    let one = vec![vec![3u32, 1, 4, 1, 5]];
    let three = vec![vec![3u32, 1, 4, 1, 5], vec![9, 2], vec![6, 5, 3, 5]];
    let eighteen: Vec<Vec<u32>> = (0..18)
        .map(|r| {
            (0..2 + r % 5)
                .map(|i| ((r * 7 + i * 3) % 96) as u32)
                .collect()
        })
        .collect();
    let long: Vec<Vec<u32>> = [150, 70]
        .iter()
        .map(|&n| (0..n).map(|i| ((i * 13 + n) % 96) as u32).collect())
        .collect();
    for (hidden, bias, adapter) in [(64, false, false), (64, true, false), (256, false, true)] {
        let m32 = model(hidden, bias, adapter, DType::F32, &dev);
        let m16 = model(hidden, bias, adapter, DType::BF16, &dev);
        for prompts in [&one, &three, &eighteen, &long] {
            let tokens: Vec<Vec<u32>> = (0..12)
                .map(|i| {
                    (0..prompts.len())
                        .map(|r| ((i * 37 + r * 11 + 5) % 96) as u32)
                        .collect()
                })
                .collect();
            let (general32, fast32) = both_paths(&m32, prompts, &tokens)?;
            let (general16, fast16) = both_paths(&m16, prompts, &tokens)?;
            let what = format!(
                "hidden {hidden}, bias {bias}, adapter {adapter}, {} rows",
                prompts.len()
            );
            // bf16's error, the mean over steps and rows of the largest difference from
            // the f32 logits (one step's largest is noise: bf16 rounds 1 in 256).
            let (mut ours, mut general, mut scale) = (0f32, 0f32, 0f32);
            for step in 0..tokens.len() {
                for row in 0..prompts.len() {
                    let want = &general32[step][row];
                    let at = format!("{what}, step {step}, row {row}");
                    let row_scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
                    let f32_diff = max_diff(want, &fast32[step][row]);
                    assert!(
                        f32_diff <= 1e-4 * row_scale,
                        "{at}: f32 {f32_diff} of {row_scale}"
                    );
                    assert_eq!(argmax(want), argmax(&fast32[step][row]), "{at}");
                    ours += max_diff(want, &fast16[step][row]);
                    general += max_diff(want, &general16[step][row]);
                    scale = scale.max(row_scale);
                }
            }
            let n = (tokens.len() * prompts.len()) as f32;
            let (ours, general) = (ours / n, general / n);
            assert!(
                ours <= 2.0 * general + 1e-2 * scale,
                "{what}: bf16 {ours} from f32 on average, the general path's bf16 {general}"
            );
        }
    }
    Ok(())
}

#[test]
fn a_step_past_the_cache_is_refused() -> Result<()> {
    let dev = device();
    if dev.is_cpu() {
        return Ok(());
    }
    let m = model(64, false, false, DType::F32, &dev);
    let mut cache = KvCache::new();
    m.hidden(
        &Tensor::new(&[[1u32, 2]], &dev)?,
        0,
        Some(&mut cache),
        Path::Infer,
    )?;
    let mut decoder = GpuDecoder::new(&m, &cache, 3)?.expect("applies");
    decoder.step(&[1])?;
    let err = decoder.step(&[1]).err().map(|e| e.to_string());
    assert!(
        err.as_ref()
            .is_some_and(|e| e.contains("past the cache's 3")),
        "{err:?}"
    );
    Ok(())
}
