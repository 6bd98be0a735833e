//! Decoding one sequence on the CPU a token at a time, straight on slices. A decode step of a
//! small model is hundreds of tiny operations; as candle ops each allocates, checks layouts and
//! wakes the thread pool, which costs about as much as the arithmetic. Here the step runs with
//! one team of threads for the whole step ([`crate::model::decode::team`]): the same block-quantized products,
//! RMSNorm, RoPE and SwiGLU as the general path, and attention over a cache laid out for
//! vector units ([`crate::model::decode::head_cache`]), whose roundings differ from the general path's within
//! float precision.
//!
//! It applies to a model on the CPU in f32 whose seven projections and output head are
//! block-quantized (Q4_0, Q4_1, Q8_0, as GGUF files hold them), with or without LoRA adapters;
//! [`Decoder::new`] says `None` otherwise and generation keeps the general path.

mod head_cache;
mod team;
use crate::model::decode::head_cache::{HeadCache, combine};
use crate::model::decode::team::{Disjoint, Team, with_team};
use crate::model::llama::{KvCache, Llama};
use crate::model::nn::linear::LoraLinear;
use crate::model::nn::weight::BaseWeight;
use crate::model::quant::products::Kernel;
use crate::model::quant::{BlockMatrix, GROUP, QuantizedRow};
use candle_core::{DType, Result, Tensor, bail};

/// A product is split into about this many chunks per thread, each of at least
/// `MIN_CHUNK_GROUPS` groups of rows: long runs of rows stream better than short ones.
const CHUNKS_PER_THREAD: usize = 4;
const MIN_CHUNK_GROUPS: usize = 4;

#[cfg(feature = "cuda")]
pub mod gpu;

/// The fast decode path that applies to a model after its prefill, if one does: slices on the
/// CPU for one sequence of a block-quantized model ([`Decoder`]), launches into preallocated
/// buffers on a GPU for a whole batch ([`gpu::GpuDecoder`]).
pub enum FastDecoder<'m> {
    Cpu(Box<Decoder<'m>>),
    #[cfg(feature = "cuda")]
    Gpu(Box<gpu::GpuDecoder<'m>>),
}

impl<'m> FastDecoder<'m> {
    /// For `model` after the steps that filled `cache`, with room for `capacity` positions.
    pub fn new(
        model: &'m Llama,
        cache: &KvCache,
        capacity: usize,
    ) -> Result<Option<FastDecoder<'m>>> {
        #[cfg(feature = "cuda")]
        if let Some(d) = gpu::GpuDecoder::new(model, cache, capacity)? {
            return Ok(Some(FastDecoder::Gpu(Box::new(d))));
        }
        Ok(Decoder::new(model, cache, capacity)?.map(|d| FastDecoder::Cpu(Box::new(d))))
    }

    /// Feeds one token per row; returns each row's logits.
    pub fn step(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        match self {
            FastDecoder::Cpu(d) => {
                let [token] = tokens else {
                    bail!("decoder: {} tokens for one sequence", tokens.len());
                };
                Ok(vec![with_team(|team| d.step(team, *token))?])
            }
            #[cfg(feature = "cuda")]
            FastDecoder::Gpu(d) => d.step(tokens),
        }
    }
}

/// A frozen block-quantized projection, its active LoRA adapter and its bias.
struct Projection<'m> {
    w: &'m BlockMatrix,
    lora: Option<Adapter>,
    bias: Option<Vec<f32>>,
}

impl<'m> Projection<'m> {
    fn new(l: &'m LoraLinear) -> Result<Option<Projection<'m>>> {
        let BaseWeight::Blocks(w) = &l.base else {
            return Ok(None);
        };
        let lora = match l.lora.as_ref().filter(|_| l.lora_enabled) {
            Some(lora) => Some(Adapter {
                rank: lora.a.as_tensor().dim(0)?,
                a: lora.a.as_tensor().flatten_all()?.to_vec1::<f32>()?,
                b: lora.b.as_tensor().flatten_all()?.to_vec1::<f32>()?,
                scale: lora.scale as f32,
            }),
            None => None,
        };
        let bias = l.bias.as_ref().map(|b| b.to_vec1::<f32>()).transpose()?;
        Ok(Some(Projection { w, lora, bias }))
    }

    fn rows(&self) -> usize {
        self.w.dims().0
    }

    /// The adapter's rank-r product of the input, if there is an adapter.
    fn low(&self, x: &[f32]) -> Option<Vec<f32>> {
        let l = self.lora.as_ref()?;
        Some(
            l.a.chunks_exact(x.len())
                .map(|a| a.iter().zip(x).map(|(a, x)| a * x).sum::<f32>() * l.scale)
                .collect(),
        )
    }

    /// Output `row` of the layer from its base value: `+ B low`, then the bias.
    fn finish(&self, row: usize, base: f32, low: Option<&[f32]>) -> f32 {
        let mut y = base;
        if let (Some(l), Some(low)) = (&self.lora, low) {
            let b = &l.b[row * l.rank..(row + 1) * l.rank];
            y += b.iter().zip(low).map(|(b, x)| b * x).sum::<f32>();
        }
        match &self.bias {
            Some(bias) => y + bias[row],
            None => y,
        }
    }
}

/// A LoRA adapter's matrices: A `[rank, in]`, B `[out, rank]`, and its scale alpha / r.
struct Adapter {
    rank: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    scale: f32,
}

struct Layer<'m> {
    qkv: [Projection<'m>; 3],
    o: Projection<'m>,
    gate_up: [Projection<'m>; 2],
    down: Projection<'m>,
    input_norm: Vec<f32>,
    post_norm: Vec<f32>,
    /// Per key/value head.
    cache: Vec<HeadCache>,
}

/// The activations of one step, kept between steps to spare the allocations.
#[derive(Default)]
struct Scratch {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attention: Vec<f32>,
    /// Partial attentions, `[kv heads, splits, n_rep, head_dim + 2]`.
    parts: Vec<f32>,
    projected: Vec<f32>,
    gate: Vec<f32>,
}

/// A single sequence's decoder, continuing from a cache that the general path filled (the
/// prompt's prefill, where batched matrix products are the fast way).
pub struct Decoder<'m> {
    model: &'m Llama,
    layers: Vec<Layer<'m>>,
    head: &'m BlockMatrix,
    norm: Vec<f32>,
    eps: f32,
    /// RoPE tables, `[max_len, head_dim / 2]`.
    cos: Vec<f32>,
    sin: Vec<f32>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// Positions in the cache.
    position: usize,
    kernel: Kernel,
    scratch: Scratch,
}

impl<'m> Decoder<'m> {
    /// The decoder for `model` after the steps that filled `cache` (one sequence, no padding),
    /// its cache sized for `capacity` positions; `None` where the model is not one this path
    /// runs.
    pub fn new(model: &'m Llama, cache: &KvCache, capacity: usize) -> Result<Option<Decoder<'m>>> {
        if !model.device().is_cpu() || model.dtype() != DType::F32 {
            return Ok(None);
        }
        if cache.pads().iter().any(|p| *p > 0) {
            return Ok(None);
        }
        let BaseWeight::Blocks(head) = &model.lm_head else {
            return Ok(None);
        };
        let mut layers = Vec::with_capacity(model.layers.len());
        let mut position = None;
        for (i, block) in model.layers.iter().enumerate() {
            let projections = block.projections().map(Projection::new);
            let mut ready = Vec::with_capacity(7);
            for p in projections {
                match p? {
                    Some(p) => ready.push(p),
                    None => return Ok(None),
                }
            }
            let Ok([q, k, v, o, gate, up, down]) = <[Projection; 7]>::try_from(ready) else {
                bail!("decoder: seven projections expected in layer {i}");
            };
            let Some((keys, values)) = cache.layer(i)? else {
                bail!("decoder: layer {i} has nothing cached");
            };
            let (b, _, len, _) = keys.dims4()?;
            if b != 1 {
                return Ok(None);
            }
            if *position.get_or_insert(len) != len {
                bail!("decoder: layer {i} caches {len} positions, layer 0 {position:?}");
            }
            let (keys, values) = (
                keys.squeeze(0)?.to_vec3::<f32>()?,
                values.squeeze(0)?.to_vec3::<f32>()?,
            );
            let cache = keys
                .iter()
                .zip(&values)
                .map(|(k, v)| {
                    let mut head = HeadCache::with_capacity(block.attn.head_dim, capacity);
                    k.iter().zip(v).for_each(|(k, v)| head.push(k, v));
                    head
                })
                .collect();
            layers.push(Layer {
                qkv: [q, k, v],
                o,
                gate_up: [gate, up],
                down,
                input_norm: block.input_norm.to_vec1()?,
                post_norm: block.post_attention_norm.to_vec1()?,
                cache,
            });
        }
        let (cos, sin) = model.rope.tables();
        let Some(attn) = model.layers.first().map(|l| &l.attn) else {
            return Ok(None);
        };
        Ok(Some(Decoder {
            model,
            layers,
            head,
            norm: model.norm.to_vec1()?,
            eps: model.cfg.rms_norm_eps as f32,
            cos: cos.flatten_all()?.to_vec1()?,
            sin: sin.flatten_all()?.to_vec1()?,
            heads: attn.n_heads,
            kv_heads: attn.n_kv_heads,
            head_dim: attn.head_dim,
            position: position.unwrap_or(0),
            kernel: Kernel::detect(),
            scratch: Scratch::default(),
        }))
    }

    /// Feeds `token` at the next position; returns the logits over the vocabulary after it.
    pub fn step(&mut self, team: &Team, token: u32) -> Result<Vec<f32>> {
        let pos = self.position;
        if pos >= self.model.rope.max_len() {
            bail!(
                "sequence of {} tokens is longer than the model's context of {}",
                pos + 1,
                self.model.rope.max_len()
            );
        }
        let ids = Tensor::new(&[token], self.model.device())?;
        let mut x = self
            .model
            .embed
            .gather_rows(&ids)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let (heads, kv, d) = (self.heads, self.kv_heads, self.head_dim);
        let half = d / 2;
        let (cos, sin) = (
            &self.cos[pos * half..(pos + 1) * half],
            &self.sin[pos * half..(pos + 1) * half],
        );
        let s = &mut self.scratch;
        let (kernel, eps) = (self.kernel, self.eps);
        for layer in &mut self.layers {
            let h = rms_norm(&x, &layer.input_norm, eps);
            let [q, k, v] = &layer.qkv;
            product(team, kernel, &[q, k, v], &h, [&mut s.q, &mut s.k, &mut s.v]);
            rope(&mut s.q, d, cos, sin);
            rope(&mut s.k, d, cos, sin);
            for (head, (k, v)) in layer
                .cache
                .iter_mut()
                .zip(s.k.chunks_exact(d).zip(s.v.chunks_exact(d)))
            {
                head.push(k, v);
            }
            s.attention.clear();
            s.attention.resize(heads * d, 0.0);
            // Each key/value head's positions in as many parts as threads: a chunk's queries
            // read their head's cache once, and every core gets a share.
            let splits = team.size().min(layer.cache[0].blocks());
            let n_rep = heads / kv;
            let part = n_rep * (d + 2);
            s.parts.clear();
            s.parts.resize(kv * splits * part, 0.0);
            {
                let parts = Disjoint::new(&mut s.parts);
                let (q, cache) = (&s.q, &layer.cache);
                let scale = (1.0 / (d as f64).sqrt()) as f32;
                team.run(kv * splits, &|c| {
                    let (g, i) = (c / splits, c % splits);
                    let blocks = cache[g].blocks();
                    let range = i * blocks / splits..(i + 1) * blocks / splits;
                    // SAFETY: chunk c writes its own part.
                    let out = unsafe { parts.range(c * part, part) };
                    cache[g].attend_part(&q[g * n_rep * d..(g + 1) * n_rep * d], scale, range, out);
                });
            }
            for (g, out) in s.attention.chunks_exact_mut(n_rep * d).enumerate() {
                let group: Vec<&[f32]> = s.parts[g * splits * part..(g + 1) * splits * part]
                    .chunks_exact(part)
                    .collect();
                combine(&group, d, out);
            }
            product(team, kernel, &[&layer.o], &s.attention, [&mut s.projected]);
            add(&mut x, &s.projected);
            let h = rms_norm(&x, &layer.post_norm, eps);
            swiglu(team, kernel, &layer.gate_up, &h, &mut s.gate);
            product(team, kernel, &[&layer.down], &s.gate, [&mut s.projected]);
            add(&mut x, &s.projected);
        }
        self.position += 1;
        let h = rms_norm(&x, &self.norm, eps);
        let head = Projection {
            w: self.head,
            lora: None,
            bias: None,
        };
        let mut logits = Vec::new();
        product(team, kernel, &[&head], &h, [&mut logits]);
        Ok(logits)
    }
}

/// `x += y`, as candle adds.
fn add(x: &mut [f32], y: &[f32]) {
    for (x, y) in x.iter_mut().zip(y) {
        *x += y;
    }
}

/// RMSNorm as candle-nn computes it on the CPU.
fn rms_norm(x: &[f32], weight: &[f32], eps: f32) -> Vec<f32> {
    let sum2 = x.iter().map(|v| v * v).sum::<f32>();
    let m = (sum2 / x.len() as f32 + eps).sqrt();
    x.iter().zip(weight).map(|(v, w)| v / m * w).collect()
}

/// RoPE at one position on every head of `x` (halves rotated, as candle-nn's `rope`).
fn rope(x: &mut [f32], d: usize, cos: &[f32], sin: &[f32]) {
    let half = d / 2;
    for head in x.chunks_exact_mut(d) {
        let (a, b) = head.split_at_mut(half);
        for (((a, b), c), s) in a.iter_mut().zip(b.iter_mut()).zip(cos).zip(sin) {
            let (x1, x2) = (*a, *b);
            *a = x1 * c - x2 * s;
            *b = x1 * s + x2 * c;
        }
    }
}

/// `outs[i] = x W_i^T + adapter_i(x) + b_i` for each projection, the row groups of all of them
/// split into chunks that the team shares.
fn product<const N: usize>(
    team: &Team,
    kernel: Kernel,
    projections: &[&Projection; N],
    x: &[f32],
    mut outs: [&mut Vec<f32>; N],
) {
    let a = QuantizedRow::new(x);
    let lows: [Option<Vec<f32>>; N] = std::array::from_fn(|i| projections[i].low(x));
    let total: usize = projections.iter().map(|p| p.w.groups()).sum();
    let chunk = (total / (CHUNKS_PER_THREAD * team.size())).max(MIN_CHUNK_GROUPS);
    let counts: [usize; N] = std::array::from_fn(|i| projections[i].w.groups().div_ceil(chunk));
    for (out, p) in outs.iter_mut().zip(projections) {
        out.clear();
        out.resize(p.rows(), 0.0);
    }
    {
        let targets: Vec<Disjoint> = outs.iter_mut().map(|o| Disjoint::new(o)).collect();
        team.run(counts.iter().sum(), &|mut i| {
            let mut p = 0;
            while i >= counts[p] {
                i -= counts[p];
                p += 1;
            }
            let (w, rows) = (projections[p].w, projections[p].rows());
            let groups = i * chunk..((i + 1) * chunk).min(w.groups());
            let first = groups.start * GROUP;
            let last = (groups.end * GROUP).min(rows);
            // SAFETY: chunk i of projection p writes its own rows.
            let out = unsafe { targets[p].range(first, last - first) };
            for (g, out) in groups.zip(out.chunks_mut(GROUP)) {
                let y = w.dot_group(kernel, g, &a);
                for (l, (o, y)) in out.iter_mut().zip(y).enumerate() {
                    *o = projections[p].finish(g * GROUP + l, y, lows[p].as_deref());
                }
            }
        });
    }
}

/// `silu(gate(x)) · up(x)` into `out` (each with its adapter and bias): each chunk takes the same
/// rows of the gate and up projections and combines them, so that the activation runs on every
/// core.
fn swiglu(
    team: &Team,
    kernel: Kernel,
    [gate, up]: &[Projection; 2],
    x: &[f32],
    out: &mut Vec<f32>,
) {
    let a = QuantizedRow::new(x);
    let (gate_low, up_low) = (gate.low(x), up.low(x));
    let rows = gate.rows();
    let groups = gate.w.groups();
    let chunk = (2 * groups / (CHUNKS_PER_THREAD * team.size())).max(MIN_CHUNK_GROUPS);
    out.clear();
    out.resize(rows, 0.0);
    let target = Disjoint::new(out);
    team.run(groups.div_ceil(chunk), &|i| {
        let range = i * chunk..((i + 1) * chunk).min(groups);
        let (first, last) = (range.start * GROUP, (range.end * GROUP).min(rows));
        // SAFETY: chunk i writes its own rows.
        let out = unsafe { target.range(first, last - first) };
        for (g, out) in range.zip(out.chunks_mut(GROUP)) {
            let (x, u) = (
                gate.w.dot_group(kernel, g, &a),
                up.w.dot_group(kernel, g, &a),
            );
            for (l, (o, (x, u))) in out.iter_mut().zip(x.iter().zip(u)).enumerate() {
                let row = g * GROUP + l;
                let x = gate.finish(row, *x, gate_low.as_deref());
                let u = up.finish(row, u, up_low.as_deref());
                // As the fused SwiGLU op computes it.
                *o = x / (1.0 + (-x).exp()) * u;
            }
        }
    });
}

#[cfg(test)]
mod tests;
