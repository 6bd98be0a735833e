//! The Llama-family decoder (Llama 3.x, SmolLM2, TinyLlama, Mistral, Qwen2): grouped-query
//! attention, RoPE (with Llama-3 scaling), RMSNorm, SwiGLU, tied or separate output head, optional
//! q/k/v bias. Two paths share the weights: the training path uses only ops that pass gradients,
//! the inference path the fused kernels and a KV cache.

use super::config::LlamaConfig;
use super::nn::attention::DecodeAttention;
use super::nn::device_ops::{self, AttentionShape};
use super::nn::linear::LoraLinear;
use super::nn::ops::{CausalSoftmax, RmsNorm, Rotary, SwiGlu};
use super::nn::weight::BaseWeight;
use super::nn::{Path, fused};
use candle_core::{D, DType, Device, Module, Result, Tensor};

/// `x` in f32 for a reduction that bf16 would round away (softmax, norms), as PyTorch does.
fn widened(x: &Tensor) -> Result<Tensor> {
    x.to_dtype(DType::F32)
}

/// Precomputed RoPE tables `[max_len, head_dim / 2]`.
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
}

/// Inverse frequencies, with Llama-3 scaling when the config asks for it.
pub fn inverse_frequencies(cfg: &LlamaConfig) -> Vec<f64> {
    let d = cfg.head_dim();
    let base: Vec<f64> = (0..d / 2)
        .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / d as f64))
        .collect();
    let Some(s) = cfg
        .rope_scaling
        .as_ref()
        .filter(|s| s.rope_type == "llama3")
    else {
        return base;
    };
    let old = s.original_max_position_embeddings as f64;
    let low_wavelen = old / s.low_freq_factor;
    let high_wavelen = old / s.high_freq_factor;
    base.into_iter()
        .map(|f| {
            let wavelen = 2.0 * std::f64::consts::PI / f;
            if wavelen < high_wavelen {
                f
            } else if wavelen > low_wavelen {
                f / s.factor
            } else {
                let smooth =
                    (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * f / s.factor + smooth * f
            }
        })
        .collect()
}

impl Rope {
    pub fn new(cfg: &LlamaConfig, max_len: usize, device: &Device) -> Result<Rope> {
        let inv: Vec<f32> = inverse_frequencies(cfg).iter().map(|f| *f as f32).collect();
        let half = inv.len();
        let inv = Tensor::from_vec(inv, (1, half), device)?;
        let pos = Tensor::arange(0u32, max_len as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max_len, 1))?;
        let angles = pos.broadcast_mul(&inv)?;
        Ok(Rope {
            cos: angles.cos()?,
            sin: angles.sin()?,
        })
    }

    fn apply(&self, x: &Tensor, offset: usize, path: Path) -> Result<Tensor> {
        let t = x.dim(2)?;
        let cos = self.cos.narrow(0, offset, t)?;
        let sin = self.sin.narrow(0, offset, t)?;
        match path {
            Path::Train if fused(x) => x.apply_op1(Rotary { cos, sin }),
            Path::Train => device_ops::rotary(x, &cos, &sin),
            Path::Infer => candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin),
        }
    }

    pub fn max_len(&self) -> usize {
        self.cos.dims()[0]
    }

    /// The tables `(cos, sin)`, `[max_len, head_dim / 2]`.
    pub(super) fn tables(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
    }

    fn to_dtype(&self, dtype: DType) -> Result<Rope> {
        Ok(Rope {
            cos: self.cos.to_dtype(dtype)?,
            sin: self.sin.to_dtype(dtype)?,
        })
    }
}

fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64, path: Path) -> Result<Tensor> {
    match path {
        Path::Infer => candle_nn::ops::rms_norm(&x.contiguous()?, weight, eps as f32),
        Path::Train if fused(x) && !weight.is_variable() => x.contiguous()?.apply_op1(RmsNorm {
            weight: weight.to_vec1()?,
            eps: eps as f32,
        }),
        Path::Train if !weight.is_variable() => device_ops::rms_norm(x, weight, eps),
        Path::Train => {
            let wide = widened(x)?;
            let mean_sq = wide.sqr()?.mean_keepdim(D::Minus1)?;
            wide.broadcast_div(&(mean_sq + eps)?.sqrt()?)?
                .to_dtype(x.dtype())?
                .broadcast_mul(weight)
        }
    }
}

/// Softmax over the last dimension, computed in f32, returned in `dtype`.
fn softmax(x: Tensor, path: Path, dtype: DType) -> Result<Tensor> {
    let x = widened(&x)?;
    match path {
        Path::Train => candle_nn::ops::softmax(&x, D::Minus1),
        Path::Infer => candle_nn::ops::softmax_last_dim(&x),
    }?
    .to_dtype(dtype)
}

/// Additive attention mask for `t` new positions after `offset` cached ones, `[b | 1, 1, 1, t,
/// offset + t]`: causal, and no query attends to its row's left padding (a padding position
/// attends to itself only, so that its softmax stays finite). `None` when nothing is masked.
pub(super) fn attention_mask(
    b: usize,
    t: usize,
    offset: usize,
    pads: &[usize],
    device: &Device,
) -> Result<Option<Tensor>> {
    if t == 1 && pads.iter().all(|p| *p == 0) {
        return Ok(None);
    }
    let total = offset + t;
    let rows: Vec<usize> = if pads.is_empty() {
        vec![0]
    } else {
        pads.to_vec()
    };
    let values: Vec<f32> = rows
        .iter()
        .flat_map(|&pad| {
            (0..t).flat_map(move |i| {
                let q = offset + i;
                (0..total).map(move |j| {
                    if j <= q && (j >= pad || j == q) {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
        })
        .collect();
    let n = rows.len();
    if n != 1 && n != b {
        candle_core::bail!("left padding given for {n} rows of a batch of {b}");
    }
    Tensor::from_vec(values, (n, 1, 1, t, total), device).map(Some)
}

/// Keys and values of the positions seen so far, per layer, and the left padding of each row
/// of a batch (positions that the row's queries must not attend to).
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<candle_nn::kv_cache::KvCache>,
    pads: Vec<usize>,
}

/// Up to this many new positions per row, CPU inference runs attention as one fused op.
const DECODE_MAX_QUERIES: usize = 8;

/// The cache grows by this many positions at a time.
const KV_CHUNK: usize = 256;

impl KvCache {
    pub fn new() -> KvCache {
        KvCache::default()
    }

    /// For a batch whose row `i` starts with `pads[i]` padding positions.
    pub fn with_left_padding(pads: Vec<usize>) -> KvCache {
        KvCache {
            layers: Vec::new(),
            pads,
        }
    }

    /// The left padding of each row.
    #[cfg(feature = "cuda")]
    pub(super) fn pads(&self) -> &[usize] {
        &self.pads
    }

    /// Keys and values cached for layer `i`, `[b, kv, positions, d]` each; `None` before the
    /// first step.
    #[cfg(feature = "cuda")]
    pub(super) fn layer(&self, i: usize) -> Result<Option<(Tensor, Tensor)>> {
        let Some(c) = self.layers.get(i) else {
            return Ok(None);
        };
        Ok(c.k()?.zip(c.v()?))
    }
}

/// What a batch's queries must not see: the additive mask of the general path, and the left
/// padding of each row for the fused decode path.
#[derive(Clone, Copy)]
struct Masking<'a> {
    mask: Option<&'a Tensor>,
    pads: &'a [usize],
}

#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: LoraLinear,
    pub k_proj: LoraLinear,
    pub v_proj: LoraLinear,
    pub o_proj: LoraLinear,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl Attention {
    /// Query heads are grouped under their key/value head (`[b, kv, n_rep · t, d]`), so that
    /// grouped-query attention needs no copies of the keys and values.
    fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        offset: usize,
        masking: Masking,
        cache: Option<&mut candle_nn::kv_cache::KvCache>,
        path: Path,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (kv, d) = (self.n_kv_heads, self.head_dim);
        let n_rep = self.n_heads / kv;
        let heads = |y: Tensor, n: usize| y.reshape((b, t, n, d))?.transpose(1, 2);
        let [q, k, v]: [Tensor; 3] =
            LoraLinear::forward_many(&[&self.q_proj, &self.k_proj, &self.v_proj], x, path)?
                .try_into()
                .map_err(|_| candle_core::Error::Msg("q/k/v: three outputs expected".into()))?;
        let q = rope.apply(&heads(q, self.n_heads)?, offset, path)?;
        let k = rope.apply(&heads(k, kv)?, offset, path)?;
        let v = heads(v, kv)?.contiguous()?;
        let (k, v) = match cache {
            Some(c) => c.append(&k.contiguous()?, &v)?,
            None => (k, v),
        };
        let total = k.dim(2)?;
        let q = q.contiguous()?.reshape((b, kv, n_rep * t, d))?;
        let scale = 1.0 / (d as f64).sqrt();
        if path == Path::Infer && t <= DECODE_MAX_QUERIES && fused(&q) {
            let op = DecodeAttention {
                scale: scale as f32,
                queries: t,
                offset,
                pads: masking.pads,
            };
            let y = q.apply_op3_no_bwd(&k, &v, &op)?;
            return self.o_proj.forward(&merge_heads(y, b, t)?, path);
        }
        if path == Path::Train && !fused(&q) {
            let shape = AttentionShape {
                n_rep,
                queries: t,
                scale,
                mask: masking.mask,
            };
            let y = device_ops::attention(&q, &k, &v, shape)?;
            return self.o_proj.forward(&merge_heads(y, b, t)?, path);
        }
        let scores = q.matmul(&k.t()?)?;
        let att = match masking.mask {
            None if fused(&scores) => scores.contiguous()?.apply_op1(CausalSoftmax {
                scale,
                queries: t,
                offset,
            })?,
            None => softmax((scores * scale)?, path, v.dtype())?,
            Some(m) => {
                let masked = (widened(&scores)? * scale)?
                    .reshape((b, kv, n_rep, t, total))?
                    .broadcast_add(m)?
                    .reshape((b, kv, n_rep * t, total))?;
                softmax(masked, path, v.dtype())?
            }
        };
        let y = merge_heads(att.matmul(&v)?, b, t)?;
        self.o_proj.forward(&y, path)
    }
}

/// Attention outputs `[b, kv, n_rep · t, d]` back to `[b, t, heads · d]`.
fn merge_heads(y: Tensor, b: usize, t: usize) -> Result<Tensor> {
    let (_, kv, rows, d) = y.dims4()?;
    let heads = kv * rows / t;
    y.reshape((b, heads, t, d))?
        .transpose(1, 2)?
        .reshape((b, t, heads * d))
}

#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate_proj: LoraLinear,
    pub up_proj: LoraLinear,
    pub down_proj: LoraLinear,
}

impl Mlp {
    fn forward(&self, x: &Tensor, path: Path) -> Result<Tensor> {
        let [gate, up]: [Tensor; 2] =
            LoraLinear::forward_many(&[&self.gate_proj, &self.up_proj], x, path)?
                .try_into()
                .map_err(|_| candle_core::Error::Msg("gate/up: two outputs expected".into()))?;
        let h = if fused(&gate) {
            gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu)?
        } else if path == Path::Train {
            device_ops::swiglu(&gate, &up)?
        } else {
            (gate.silu()? * up)?
        };
        self.down_proj.forward(&h, path)
    }
}

#[derive(Debug, Clone)]
pub struct Block {
    pub attn: Attention,
    pub mlp: Mlp,
    pub input_norm: Tensor,
    pub post_attention_norm: Tensor,
}

impl Block {
    /// q, k, v, o, gate, up and down, in that order.
    pub fn projections(&self) -> [&LoraLinear; 7] {
        let (a, m) = (&self.attn, &self.mlp);
        [
            &a.q_proj,
            &a.k_proj,
            &a.v_proj,
            &a.o_proj,
            &m.gate_proj,
            &m.up_proj,
            &m.down_proj,
        ]
    }
}

#[derive(Debug, Clone)]
pub struct Llama {
    pub cfg: LlamaConfig,
    /// `[vocab, hidden]`; quantized where the checkpoint is (rows are dequantized on lookup).
    pub embed: BaseWeight,
    pub layers: Vec<Block>,
    pub norm: Tensor,
    pub lm_head: BaseWeight,
    /// The output head is the embedding matrix.
    pub tied_head: bool,
    pub rope: Rope,
}

impl Llama {
    pub fn device(&self) -> &Device {
        self.norm.device()
    }

    /// What the activations are computed in (the dense weights are stored in it too).
    pub fn dtype(&self) -> DType {
        self.norm.dtype()
    }

    /// Rebuilds the RoPE tables for `max_len` positions (within the model's own context), as a
    /// load with that length would have built them; returns the length they had.
    pub fn set_context(&mut self, max_len: usize) -> Result<usize> {
        let before = self.rope.max_len();
        let len = max_len.min(self.cfg.max_position_embeddings);
        if len != before {
            self.rope = Rope::new(&self.cfg, len, self.device())?.to_dtype(self.dtype())?;
        }
        Ok(before)
    }

    /// The model in `dtype`: dense weights, biases, norms and RoPE tables are converted;
    /// quantized weights stay as they are (their products convert the activations).
    pub fn to_dtype(self, dtype: DType) -> Result<Llama> {
        if dtype == self.dtype() {
            return Ok(self);
        }
        let norm = |t: Tensor| t.to_dtype(dtype);
        let layers = self
            .layers
            .into_iter()
            .map(|l| {
                let Block {
                    attn,
                    mlp,
                    input_norm,
                    post_attention_norm,
                } = l;
                Ok(Block {
                    attn: Attention {
                        q_proj: attn.q_proj.to_dtype(dtype)?,
                        k_proj: attn.k_proj.to_dtype(dtype)?,
                        v_proj: attn.v_proj.to_dtype(dtype)?,
                        o_proj: attn.o_proj.to_dtype(dtype)?,
                        ..attn
                    },
                    mlp: Mlp {
                        gate_proj: mlp.gate_proj.to_dtype(dtype)?,
                        up_proj: mlp.up_proj.to_dtype(dtype)?,
                        down_proj: mlp.down_proj.to_dtype(dtype)?,
                    },
                    input_norm: norm(input_norm)?,
                    post_attention_norm: norm(post_attention_norm)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embed = self.embed.to_dtype(dtype)?;
        let lm_head = if self.tied_head {
            embed.clone()
        } else {
            self.lm_head.to_dtype(dtype)?
        };
        Ok(Llama {
            embed,
            lm_head,
            norm: norm(self.norm)?,
            rope: self.rope.to_dtype(dtype)?,
            layers,
            ..self
        })
    }

    /// Hidden states after the final norm, `[b, t, hidden]`, for ids `[b, t]` at `offset`.
    pub fn hidden(
        &self,
        ids: &Tensor,
        offset: usize,
        cache: Option<&mut KvCache>,
        path: Path,
    ) -> Result<Tensor> {
        self.hidden_from_embeddings(self.embed_ids(ids)?, offset, cache, path)
    }

    /// The input embeddings `[b, t, hidden]` of ids `[b, t]`.
    pub fn embed_ids(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        self.embed
            .gather_rows(&ids.flatten_all()?)?
            .to_dtype(self.dtype())?
            .reshape((b, t, self.cfg.hidden_size))
    }

    /// [`Llama::hidden`] from input embeddings: on the training path gradients reach them
    /// (gradient x input saliency).
    pub fn hidden_from_embeddings(
        &self,
        embeddings: Tensor,
        offset: usize,
        mut cache: Option<&mut KvCache>,
        path: Path,
    ) -> Result<Tensor> {
        let (b, t, _) = embeddings.dims3()?;
        if offset + t > self.rope.max_len() {
            candle_core::bail!(
                "sequence of {} tokens is longer than the model's context of {}",
                offset + t,
                self.rope.max_len()
            );
        }
        let mut x = embeddings.to_dtype(self.dtype())?;
        let eps = self.cfg.rms_norm_eps;
        let pads = cache.as_ref().map_or(Vec::new(), |c| c.pads.clone());
        // On the CPU the causal part is fused into the softmax; a mask is built for padding.
        let padded = pads.iter().any(|p| *p > 0);
        let mask = if padded || !fused(&x) {
            attention_mask(b, t, offset, &pads, x.device())?
        } else {
            None
        };
        if let Some(c) = cache.as_deref_mut() {
            c.layers.resize(
                self.layers.len(),
                candle_nn::kv_cache::KvCache::new(2, KV_CHUNK),
            );
        }
        let masking = Masking {
            mask: mask.as_ref(),
            pads: &pads,
        };
        for (i, layer) in self.layers.iter().enumerate() {
            let h = rms_norm(&x, &layer.input_norm, eps, path)?;
            let slot = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            x = (x + layer
                .attn
                .forward(&h, &self.rope, offset, masking, slot, path)?)?;
            let h = rms_norm(&x, &layer.post_attention_norm, eps, path)?;
            x = (x + layer.mlp.forward(&h, path)?)?;
        }
        rms_norm(&x, &self.norm, eps, path)
    }

    /// Logits over the vocabulary for the given hidden states, in f32 whatever the model's
    /// precision (losses and sampling read them).
    pub fn logits(&self, hidden: &Tensor, path: Path) -> Result<Tensor> {
        self.lm_head.forward(hidden, path)?.to_dtype(DType::F32)
    }

    /// Parameters of the base model (adapters not counted).
    pub fn parameter_count(&self) -> usize {
        let linear = |l: &LoraLinear| {
            let (o, i) = l.base.dims().unwrap_or((0, 0));
            o * i + l.bias.as_ref().map_or(0, Tensor::elem_count)
        };
        let layers: usize = self
            .layers
            .iter()
            .map(|b| {
                b.projections().into_iter().map(linear).sum::<usize>()
                    + b.input_norm.elem_count()
                    + b.post_attention_norm.elem_count()
            })
            .sum();
        let head = if self.tied_head {
            0
        } else {
            let (o, i) = self.lm_head.dims().unwrap_or((0, 0));
            o * i
        };
        let (vocab, hidden) = self.embed.dims().unwrap_or((0, 0));
        vocab * hidden + layers + self.norm.elem_count() + head
    }

    /// Every LoRA-capable linear layer, named by its Hugging Face module path.
    pub fn linears(&self) -> Vec<(String, &LoraLinear)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let (a, m) = (&l.attn, &l.mlp);
            for (name, layer) in [
                ("self_attn.q_proj", &a.q_proj),
                ("self_attn.k_proj", &a.k_proj),
                ("self_attn.v_proj", &a.v_proj),
                ("self_attn.o_proj", &a.o_proj),
                ("mlp.gate_proj", &m.gate_proj),
                ("mlp.up_proj", &m.up_proj),
                ("mlp.down_proj", &m.down_proj),
            ] {
                out.push((format!("{p}.{name}"), layer));
            }
        }
        out
    }

    /// The same layers, mutable.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter_mut().enumerate() {
            let a = &mut l.attn;
            let m = &mut l.mlp;
            let p = format!("model.layers.{i}");
            out.push((format!("{p}.self_attn.q_proj"), &mut a.q_proj));
            out.push((format!("{p}.self_attn.k_proj"), &mut a.k_proj));
            out.push((format!("{p}.self_attn.v_proj"), &mut a.v_proj));
            out.push((format!("{p}.self_attn.o_proj"), &mut a.o_proj));
            out.push((format!("{p}.mlp.gate_proj"), &mut m.gate_proj));
            out.push((format!("{p}.mlp.up_proj"), &mut m.up_proj));
            out.push((format!("{p}.mlp.down_proj"), &mut m.down_proj));
        }
        out
    }
}

impl Module for Llama {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.logits(&self.hidden(ids, 0, None, Path::Infer)?, Path::Infer)
    }
}

#[cfg(test)]
pub(crate) mod tests;
