//! Each op against the composite of candle ops it replaces: the same output and the same
//! gradients, in f32 (to rounding) and in bf16 (to bf16's rounding). `LABLENS_TEST_DEVICE=cuda:0`
//! runs them on a GPU.

use super::*;
use crate::model::loading::DeviceChoice;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Var};
use std::sync::Arc;

fn device() -> Device {
    let choice = std::env::var("LABLENS_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    DeviceChoice::parse(&choice)
        .and_then(|c| c.device())
        .expect("LABLENS_TEST_DEVICE")
}

/// Seeded values in [-1, 1), `shape`, as a variable.
fn var(shape: &[usize], seed: u64, dtype: DType, dev: &Device) -> Var {
    let n: usize = shape.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let values: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let t = Tensor::from_vec(values, shape, dev)
        .and_then(|t| t.to_dtype(dtype))
        .expect("tensor");
    Var::from_tensor(&t).expect("var")
}

/// The largest difference between two tensors, relative to the largest magnitude of `want`.
fn rel_diff(got: &Tensor, want: &Tensor) -> f32 {
    let got = got.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
    let want = want.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
    let scale = want
        .abs()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let diff = (got - want).unwrap().abs().unwrap().max(0).unwrap();
    diff.to_scalar::<f32>().unwrap() / scale.max(1e-12)
}

/// Output and input gradients of `f` under a fixed random weighting of its output.
fn run(f: &dyn Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Var]) -> (Tensor, Vec<Tensor>) {
    let xs: Vec<Tensor> = inputs.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&xs).expect("forward");
    let weights = var(y.dims(), 99, DType::F32, y.device());
    let loss = (y.to_dtype(DType::F32).unwrap() * weights.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().expect("backward");
    let g = xs
        .iter()
        .map(|x| grads.get(x).expect("grad").clone())
        .collect();
    (y, g)
}

/// `ours` against `reference` on the same inputs: output and every gradient within `tol`.
fn agree(
    ours: &dyn Fn(&[Tensor]) -> Result<Tensor>,
    reference: &dyn Fn(&[Tensor]) -> Result<Tensor>,
    shapes: &[&[usize]],
    dtype: DType,
    tol: f32,
) {
    agree_mixed(ours, reference, shapes, &vec![dtype; shapes.len()], tol);
}

/// [`agree`] with each input in its own precision.
fn agree_mixed(
    ours: &dyn Fn(&[Tensor]) -> Result<Tensor>,
    reference: &dyn Fn(&[Tensor]) -> Result<Tensor>,
    shapes: &[&[usize]],
    dtypes: &[DType],
    tol: f32,
) {
    let dev = device();
    let dtype = dtypes[0];
    let inputs: Vec<Var> = shapes
        .iter()
        .zip(dtypes)
        .enumerate()
        .map(|(i, (s, d))| var(s, i as u64 + 1, *d, &dev))
        .collect();
    let (y1, g1) = run(ours, &inputs);
    let (y2, g2) = run(reference, &inputs);
    assert_eq!(y1.dims(), y2.dims());
    let d = rel_diff(&y1, &y2);
    assert!(d <= tol, "{dtype:?} output differs by {d}");
    for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
        assert_eq!(a.dims(), b.dims(), "gradient {i}");
        let d = rel_diff(a, b);
        assert!(d <= tol, "{dtype:?} gradient {i} differs by {d}");
    }
}

/// f32 to rounding; bf16 to its rounding of the inputs' products.
const CASES: [(DType, f32); 2] = [(DType::F32, 2e-5), (DType::BF16, 3e-2)];

#[test]
fn frozen_matmul_matches_matmul_and_gives_the_weight_no_gradient() {
    for (dtype, tol) in CASES {
        let w = var(&[24, 16], 7, dtype, &device()).as_tensor().detach();
        let base = BaseWeight::Dense(w.clone());
        agree(
            &|x| frozen_matmul(&x[0], &base),
            &|x| x[0].broadcast_matmul(&w.t()?),
            &[&[3, 5, 16]],
            dtype,
            tol,
        );
    }
}

#[test]
fn lora_matmul_matches_the_composite_with_and_without_dropout() {
    for (dtype, tol) in CASES {
        let dev = device();
        let w = var(&[24, 16], 7, dtype, &dev).as_tensor().detach();
        let base = BaseWeight::Dense(w.clone());
        let like = Tensor::ones((3, 5, 16), dtype, &dev).unwrap();
        let mask = crate::model::nn::dropout::mask_like(&like, 9, 0.3).unwrap();
        for mask in [None, Some(mask)] {
            let composite = |x: &[Tensor]| -> Result<Tensor> {
                let adapter_in = match &mask {
                    Some(m) => (&x[0] * m)?,
                    None => x[0].clone(),
                };
                let (a, b) = (x[1].to_dtype(dtype)?, x[2].to_dtype(dtype)?);
                let low = (adapter_in.broadcast_matmul(&a.t()?)? * 0.5)?;
                x[0].broadcast_matmul(&w.t()?)? + low.broadcast_matmul(&b.t()?)?
            };
            // A and B train in f32, whatever the model's precision.
            let ours = |x: &[Tensor]| -> Result<Tensor> {
                lora_matmul(&x[0], &base, &x[1], &x[2], 0.5, mask.clone())
            };
            agree_mixed(
                &ours,
                &composite,
                &[&[3, 5, 16], &[4, 16], &[24, 4]],
                &[dtype, DType::F32, DType::F32],
                tol,
            );
        }
    }
}

#[test]
fn rms_norm_matches_the_composite() {
    for (dtype, tol) in CASES {
        let w = (var(&[32], 5, dtype, &device()).as_tensor().detach() + 1.5).unwrap();
        let eps = 1e-5;
        agree(
            &|x| rms_norm(&x[0], &w, eps),
            &|x| {
                let f = x[0].to_dtype(DType::F32)?;
                let ms = f.sqr()?.mean_keepdim(D::Minus1)?;
                f.broadcast_div(&(ms + eps)?.sqrt()?)?
                    .broadcast_mul(&w.to_dtype(DType::F32)?)?
                    .to_dtype(dtype)
            },
            &[&[2, 7, 32]],
            dtype,
            tol,
        );
    }
}

#[test]
fn rotary_matches_rope_slow() {
    for (dtype, tol) in CASES {
        let dev = device();
        let angles = var(&[6, 8], 3, DType::F32, &dev).as_tensor().detach();
        let (cos, sin) = (
            angles.cos().unwrap().to_dtype(dtype).unwrap(),
            angles.sin().unwrap().to_dtype(dtype).unwrap(),
        );
        agree(
            &|x| rotary(&x[0], &cos, &sin),
            &|x| candle_nn::rotary_emb::rope_slow(&x[0], &cos, &sin),
            &[&[2, 3, 6, 16]],
            dtype,
            tol,
        );
    }
}

#[test]
fn swiglu_matches_silu_times_up() {
    for (dtype, tol) in CASES {
        agree(
            &|x| swiglu(&(&x[0] * 4.0)?, &x[1]),
            &|x| (&x[0] * 4.0)?.silu()? * &x[1],
            &[&[3, 40], &[3, 40]],
            dtype,
            tol,
        );
    }
}

/// The attention of the training path's composite: scores widened to f32, scaled, masked,
/// softmax, times v.
fn composite_attention(q: &Tensor, k: &Tensor, v: &Tensor, s: AttentionShape) -> Result<Tensor> {
    let scores = (q.matmul(&k.t()?)?.to_dtype(DType::F32)? * s.scale)?;
    let (b, kv, rows, keys) = scores.dims4()?;
    let scores = match s.mask {
        Some(m) => scores
            .reshape((b, kv, s.n_rep, s.queries, keys))?
            .broadcast_add(m)?
            .reshape((b, kv, rows, keys))?,
        None => scores,
    };
    candle_nn::ops::softmax(&scores, D::Minus1)?
        .to_dtype(v.dtype())?
        .matmul(v)
}

#[test]
fn attention_matches_the_composite_with_causal_and_padding_masks() {
    let dev = device();
    let (b, kv, n_rep, t, d) = (2, 2, 3, 5, 8);
    let mask = crate::model::llama::attention_mask(b, t, 0, &[0, 2], &dev)
        .unwrap()
        .expect("a mask");
    for (dtype, tol) in CASES {
        for mask in [None, Some(&mask)] {
            let shape = AttentionShape {
                n_rep,
                queries: t,
                scale: 1.0 / (d as f64).sqrt(),
                mask,
            };
            agree(
                &|x| attention(&(&x[0] * 3.0)?, &x[1], &x[2], shape),
                &|x| composite_attention(&(&x[0] * 3.0)?, &x[1], &x[2], shape),
                &[&[b, kv, n_rep * t, d], &[b, kv, t, d], &[b, kv, t, d]],
                dtype,
                tol,
            );
        }
    }
}

#[test]
fn nll_at_labels_matches_log_softmax_over_chunks() {
    let dev = device();
    // More rows than one chunk, so that the chunks' seams are crossed.
    let n = LOSS_CHUNK_ROWS + 37;
    let labels: Vec<u32> = (0..n as u32).map(|i| (i * 7919) % 50).collect();
    let labels = Tensor::new(labels.as_slice(), &dev).unwrap();
    for (dtype, tol) in CASES {
        let w = (var(&[50, 12], 11, dtype, &dev).as_tensor().detach() * 4.0).unwrap();
        let base = BaseWeight::Dense(w.clone());
        agree(
            &|x| nll_at_labels(&x[0], &base, &labels),
            &|x| {
                let logits = x[0].matmul(&w.t()?)?.to_dtype(DType::F32)?;
                let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
                logp.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?.neg()
            },
            &[&[n, 12]],
            dtype,
            tol,
        );
    }
}

/// A recorded op hands its output over once; a second forward is an error, not a wrong value.
#[test]
fn a_recorded_output_is_taken_once() {
    let x = var(&[2, 3], 1, DType::F32, &Device::Cpu);
    let op = Recorded::new(x.as_tensor().detach(), SwiGluBackward);
    assert!(op.take().is_ok());
    let second = op.take().expect_err("second take");
    assert!(second.to_string().contains("ran twice"), "{second}");
}

/// A seeded weight `[rows, cols]` quantized to `dtype` on `dev`, and its dequantized values in
/// `like`'s precision.
fn quantized(rows: usize, cols: usize, dtype: GgmlDType, like: DType) -> (BaseWeight, Tensor) {
    let dev = device();
    let w = var(&[rows, cols], 17, DType::F32, &Device::Cpu)
        .as_tensor()
        .detach();
    let q = QTensor::quantize_onto(&w, dtype, &dev).expect("quantize");
    let dense = q
        .dequantize(&dev)
        .and_then(|d| d.to_dtype(like))
        .expect("dequantize");
    (BaseWeight::Quantized(QMatMul::QTensor(Arc::new(q))), dense)
}

/// Whether a frozen weight's products dequantize it tile by tile inside the GPU kernel.
fn tiled(frozen: Result<Frozen>) -> bool {
    match frozen.expect("frozen") {
        Frozen::Dense(_) => false,
        #[cfg(feature = "cuda")]
        Frozen::Tiles(_) => true,
    }
}

/// Whether the GPU of `dev` runs the warpgroup tile kernels.
fn warpgroup_kernels(dev: &Device) -> bool {
    match dev {
        #[cfg(feature = "cuda")]
        Device::Cuda(gpu) => super::cuda::Kernels::best(gpu) == super::cuda::Kernels::Warpgroup,
        _ => false,
    }
}

/// A quantized weight read in tiles on a GPU gives, forward and for the input's gradient, what
/// the whole dequantized weight gives, in every format the kernels read and in shapes that
/// leave partial tiles (300 rows, 224 and 160 outputs, 288 inputs), by every kernel the GPU runs
/// (the warp kernels, and on a Hopper GPU the warpgroup kernels). A layer's weight is read in
/// tiles where the warpgroup kernels run, else dequantized whole; on the CPU, and in f32, every
/// weight is dequantized whole.
#[test]
fn quantized_products_dequantize_tile_by_tile_on_a_gpu() {
    let dev = device();
    let formats = [
        (GgmlDType::Q4_0, 224, 512),
        (GgmlDType::Q4_0, 160, 288),
        (GgmlDType::Q4_1, 224, 512),
        (GgmlDType::Q8_0, 224, 512),
        (GgmlDType::Q4K, 224, 512),
    ];
    for (format, rows, cols) in formats {
        let (base, dense) = quantized(rows, cols, format, DType::BF16);
        let x = var(&[3, 100, cols], 1, DType::BF16, &dev)
            .as_tensor()
            .detach();
        let g = var(&[3, 100, rows], 2, DType::BF16, &dev)
            .as_tensor()
            .detach();
        assert_eq!(tiled(Frozen::head(&base, &x)), dev.is_cuda(), "{format:?}");
        let layer = tiled(Frozen::layer(&base, &x));
        assert_eq!(layer, warpgroup_kernels(&dev), "{format:?}: a layer");
        let f32_x = x.to_dtype(DType::F32).expect("f32");
        assert!(!tiled(Frozen::head(&base, &f32_x)), "{format:?} in f32");
        let frozen = Frozen::head(&base, &x).expect("frozen");
        let forward = frozen.times_transposed(&x).expect("x Wᵀ");
        let want = x.broadcast_matmul(&dense.t().unwrap()).unwrap();
        let d = rel_diff(&forward, &want);
        assert!(d <= 1e-2, "{format:?} [{rows}, {cols}] x Wᵀ differs by {d}");
        let gradient = frozen.times(&g).expect("g W");
        let want_gradient = g.broadcast_matmul(&dense).unwrap();
        let d = rel_diff(&gradient, &want_gradient);
        assert!(d <= 1e-2, "{format:?} [{rows}, {cols}] g W differs by {d}");
        #[cfg(feature = "cuda")]
        if let (Device::Cuda(gpu), BaseWeight::Quantized(QMatMul::QTensor(q))) = (&dev, &base) {
            use super::cuda::{Kernels, Side, tile_product_by};
            let mut kernels = vec![Kernels::Warp];
            if Kernels::best(gpu) == Kernels::Warpgroup {
                kernels.push(Kernels::Warpgroup);
            }
            for k in kernels {
                for (side, input, want) in [
                    (Side::Transposed, &x, &want),
                    (Side::Plain, &g, &want_gradient),
                ] {
                    let got = tile_product_by(input, q, side, Some(k)).expect("tile product");
                    let d = rel_diff(&got, want);
                    assert!(
                        d <= 1e-2,
                        "{format:?} [{rows}, {cols}] {side:?} by {k:?}: {d}"
                    );
                }
            }
        }
        agree(
            &|x| frozen_matmul(&x[0], &base),
            &|x| x[0].broadcast_matmul(&dense.t()?),
            &[&[3, 100, cols]],
            DType::BF16,
            1e-2,
        );
    }
}

/// A quantized output head: the loss's chunked products read it tile by tile on a GPU (forward,
/// and again with the input's gradient backward) and give the log-softmax of the dequantized
/// head's logits.
#[test]
fn nll_at_labels_with_a_quantized_head() {
    let dev = device();
    let n = LOSS_CHUNK_ROWS + 37;
    let labels: Vec<u32> = (0..n as u32).map(|i| (i * 7919) % 96).collect();
    let labels = Tensor::new(labels.as_slice(), &dev).unwrap();
    let (base, dense) = quantized(96, 64, GgmlDType::Q4_0, DType::BF16);
    agree(
        &|x| nll_at_labels(&x[0], &base, &labels),
        &|x| {
            let logits = x[0].matmul(&dense.t()?)?.to_dtype(DType::F32)?;
            let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
            logp.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?.neg()
        },
        &[&[n, 64]],
        DType::BF16,
        3e-2,
    );
}

/// A measurement, not a check (`scripts/bench-tiles.sh` runs it on a GPU): the frozen products
/// of a Llama-3.2-3B layer for 4,096 rows with a Q4_0 weight, read tile by tile inside the
/// kernel (the warp kernels, and on a Hopper GPU the warpgroup kernels) against the weight
/// dequantized whole and multiplied by cuBLAS, forward and input gradient, in milliseconds and
/// TFLOPS.
#[test]
#[ignore = "a measurement for a GPU: scripts/bench-tiles.sh"]
#[cfg(feature = "cuda")]
fn tile_products_against_dequantize_and_cublas() -> Result<()> {
    use super::cuda::{Kernels, Side, tile_product_by};
    let dev = device();
    let Device::Cuda(gpu) = &dev else {
        candle_core::bail!("a measurement for a GPU: LABLENS_TEST_DEVICE=cuda:0");
    };
    let hopper = Kernels::best(gpu) == Kernels::Warpgroup;
    let time = |f: &dyn Fn() -> Result<Tensor>| -> Result<f64> {
        f()?;
        dev.synchronize()?;
        let start = std::time::Instant::now();
        for _ in 0..10 {
            f()?;
        }
        dev.synchronize()?;
        Ok(start.elapsed().as_secs_f64() * 100.0)
    };
    let m = 4096;
    println!(
        "{:<22} {:>9} {:>7} {:>9} {:>7} {:>9} {:>7}",
        "product", "warp ms", "TFLOPS", "wgroup ms", "TFLOPS", "dense ms", "TFLOPS"
    );
    for (out, inp) in [(3072, 3072), (8192, 3072), (3072, 8192), (49152, 3072)] {
        let (base, _) = quantized(out, inp, GgmlDType::Q4_0, DType::BF16);
        let BaseWeight::Quantized(QMatMul::QTensor(q)) = &base else {
            candle_core::bail!("a quantized weight");
        };
        let x = var(&[m, inp], 3, DType::BF16, &dev).as_tensor().detach();
        let g = var(&[m, out], 4, DType::BF16, &dev).as_tensor().detach();
        let dense = || Frozen::dense(&base, &x).expect("dense");
        let flops = 2.0 * (m * out * inp) as f64;
        for (name, side, input) in [("x Wᵀ", Side::Transposed, &x), ("g W", Side::Plain, &g)] {
            let warp = time(&|| tile_product_by(input, q, side, Some(Kernels::Warp)))?;
            let group = if hopper {
                time(&|| tile_product_by(input, q, side, Some(Kernels::Warpgroup)))?
            } else {
                f64::NAN
            };
            let whole = match side {
                Side::Transposed => time(&|| dense().times_transposed(input))?,
                Side::Plain => time(&|| dense().times(input))?,
            };
            println!(
                "{:<22} {warp:>9.3} {:>7.1} {group:>9.3} {:>7.1} {whole:>9.3} {:>7.1}",
                format!("{name} [{out}, {inp}]"),
                flops / warp / 1e9,
                flops / group / 1e9,
                flops / whole / 1e9
            );
        }
    }
    Ok(())
}
