use super::*;
use candle_core::{D, Var};

/// The unfused computation: scale, additive causal mask, softmax.
fn reference(x: &Tensor, op: &CausalSoftmax) -> Result<Tensor> {
    let (rows, keys) = x.dims2()?;
    let mask: Vec<f32> = (0..rows)
        .flat_map(|r| {
            let visible = op.offset + r % op.queries + 1;
            (0..keys).map(move |j| if j < visible { 0.0 } else { f32::NEG_INFINITY })
        })
        .collect();
    let mask = Tensor::from_vec(mask, (rows, keys), x.device())?;
    candle_nn::ops::softmax(&(x * op.scale)?.add(&mask)?, D::Minus1)
}

fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
}

#[test]
fn lora_matmul_matches_the_unfused_ops_and_their_gradients() -> Result<()> {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 6), &dev)?)?;
    let a = Var::from_tensor(&Tensor::randn(0f32, 0.5, (2, 6), &dev)?)?;
    let b = Var::from_tensor(&Tensor::randn(0f32, 0.5, (5, 2), &dev)?)?;
    let w = Tensor::randn(0f32, 1.0, (5, 6), &dev)?;
    for drop in [None, Some((0.3, 99))] {
        let fused = || {
            x.as_tensor().apply_op3(
                a.as_tensor(),
                b.as_tensor(),
                LoraMatmul {
                    w: BaseWeight::Dense(w.clone()),
                    scale: 1.5,
                    dropout: drop,
                },
            )
        };
        let unfused = || {
            let dropped = match drop {
                Some((p, key)) => {
                    let mask = Tensor::from_vec(dropout::mask(36, key, p), (2, 3, 6), &dev)?;
                    (x.as_tensor() * mask)?
                }
                None => x.as_tensor().clone(),
            };
            let low = (dropped.broadcast_matmul(&a.as_tensor().t()?)? * 1.5)?;
            x.as_tensor().broadcast_matmul(&w.t()?)? + low.broadcast_matmul(&b.as_tensor().t()?)?
        };
        assert_same(&[&x, &a, &b], fused, unfused)?;
    }
    Ok(())
}

/// Forward values and the gradients against a random probe agree between two computations.
fn assert_same(
    inputs: &[&Var],
    fused: impl Fn() -> Result<Tensor>,
    unfused: impl Fn() -> Result<Tensor>,
) -> Result<()> {
    let (f, u) = (fused()?, unfused()?);
    assert!(
        max_diff(&f, &u)? < 1e-5,
        "forward differs by {}",
        max_diff(&f, &u)?
    );
    let probe = Tensor::randn(0f32, 1.0, f.shape(), f.device())?;
    let g1 = (f * &probe)?.sum_all()?.backward()?;
    let g2 = (u * &probe)?.sum_all()?.backward()?;
    for v in inputs {
        let (Some(p), Some(q)) = (g1.get(v.as_tensor()), g2.get(v.as_tensor())) else {
            panic!("missing gradient");
        };
        assert!(
            max_diff(p, q)? < 1e-4,
            "gradient differs by {}",
            max_diff(p, q)?
        );
    }
    Ok(())
}

#[test]
fn rms_norm_rotary_swiglu_and_nll_match_the_unfused_ops() -> Result<()> {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 4, 8), &dev)?)?;
    let w: Vec<f32> = (0..8).map(|i| 0.5 + i as f32 / 8.0).collect();
    let wt = Tensor::from_slice(&w, 8, &dev)?;
    assert_same(
        &[&x],
        || {
            x.as_tensor().apply_op1(RmsNorm {
                weight: w.clone(),
                eps: 1e-5,
            })
        },
        || {
            let ms = (x.as_tensor().sqr()?.mean_keepdim(D::Minus1)? + 1e-5)?;
            x.as_tensor().broadcast_div(&ms.sqrt()?)?.broadcast_mul(&wt)
        },
    )?;
    let cos = Tensor::randn(0f32, 1.0, (4, 4), &dev)?;
    let sin = Tensor::randn(0f32, 1.0, (4, 4), &dev)?;
    assert_same(
        &[&x],
        || {
            x.as_tensor().apply_op1(Rotary {
                cos: cos.clone(),
                sin: sin.clone(),
            })
        },
        || candle_nn::rotary_emb::rope_slow(x.as_tensor(), &cos, &sin),
    )?;
    // Heads split off a `[b, t, heads, d]` projection: a strided view, read in place.
    let split = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 4, 3, 8), &dev)?)?;
    let heads = || split.as_tensor().transpose(1, 2);
    assert!(!heads()?.is_contiguous());
    assert_same(
        &[&split],
        || {
            heads()?.apply_op1(Rotary {
                cos: cos.clone(),
                sin: sin.clone(),
            })
        },
        || candle_nn::rotary_emb::rope_slow(&heads()?.contiguous()?, &cos, &sin),
    )?;
    let up = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 4, 8), &dev)?)?;
    assert_same(
        &[&x, &up],
        || x.as_tensor().apply_op2(up.as_tensor(), SwiGlu),
        || x.as_tensor().silu()? * up.as_tensor(),
    )?;
    let logits = Var::from_tensor(&Tensor::randn(0f32, 3.0, (5, 11), &dev)?)?;
    let labels = vec![0u32, 10, 3, 3, 7];
    let ids = Tensor::new(labels.as_slice(), &dev)?.unsqueeze(1)?;
    assert_same(
        &[&logits],
        || {
            logits.as_tensor().apply_op1(NllAtLabels {
                labels: labels.clone(),
            })
        },
        || {
            candle_nn::ops::log_softmax(logits.as_tensor(), D::Minus1)?
                .gather(&ids, 1)?
                .squeeze(1)?
                .neg()
        },
    )
}

#[test]
fn forward_and_gradient_match_the_unfused_ops() -> Result<()> {
    let dev = Device::Cpu;
    let op = || CausalSoftmax {
        scale: 0.35,
        queries: 3,
        offset: 2,
    };
    // Two query groups of 3 rows, 5 keys (2 cached + 3 new).
    let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (6, 5), &dev)?)?;
    let w = Tensor::randn(0f32, 1.0, (6, 5), &dev)?;
    let fused = x.as_tensor().apply_op1(op())?;
    let unfused = reference(x.as_tensor(), &op())?;
    let diff = (&fused - &unfused)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(diff < 1e-6, "forward differs by {diff}");
    assert_eq!(fused.to_vec2::<f32>()?[0][3..], [0.0, 0.0]);
    let g_fused = (fused * &w)?.sum_all()?.backward()?;
    let g_unfused = (unfused * &w)?.sum_all()?.backward()?;
    let (a, b) = (
        g_fused.get(x.as_tensor()).expect("fused gradient"),
        g_unfused.get(x.as_tensor()).expect("unfused gradient"),
    );
    let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(diff < 1e-6, "gradient differs by {diff}");
    Ok(())
}
