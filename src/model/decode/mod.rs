//! Decoding on the CPU straight on slices, for several sequences at once. A decode step of a
//! small model is hundreds of tiny operations; as candle ops each allocates, checks layouts and
//! wakes the thread pool, which costs about as much as the arithmetic. Here a step runs with one
//! team of threads for the whole step ([`crate::model::decode::team`]): the same block-quantized
//! products, RMSNorm, RoPE and SwiGLU as the general path, and attention over a cache laid out
//! for vector units ([`crate::model::decode::head_cache`]), whose roundings differ from the
//! general path's within float precision.
//!
//! A step takes rows from any number of sequences: the next token of each decoding sequence and
//! a stretch of a new sequence's prompt (its prefill), each sequence with its own cache,
//! positions and adapter. The products read each group of weights once for all the step's rows,
//! which is what makes several sequences cheaper per token than one; every row's arithmetic is
//! that of the row alone, so a sequence gets the same bits in any batch and in any split of its
//! prompt (rows attend causally within their own sequence).
//!
//! It applies to a model on the CPU in f32 whose seven projections and output head are
//! block-quantized (Q4_0, Q4_1, Q8_0, as GGUF files hold them), with or without LoRA adapters;
//! [`Decoder::new`] says `None` otherwise and generation keeps the general path.

mod head_cache;
mod team;
use crate::model::decode::head_cache::{HeadCache, combine};
use crate::model::decode::team::Disjoint;
pub use crate::model::decode::team::{Team, with_team};
use crate::model::llama::Llama;
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

/// One decode step of a left-padded batch: a token per row in, each row's logits out.
pub type BatchStep<'m> = Box<dyn FnMut(&[u32]) -> Result<Vec<Vec<f32>>> + 'm>;

/// The decode steps of a left-padded batch after the prefill that filled `cache`, with room for
/// `capacity` positions, where `model` is on a GPU (its own decoder); `None` elsewhere.
#[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
pub fn gpu_batch<'m>(
    model: &'m Llama,
    cache: &crate::model::llama::KvCache,
    capacity: usize,
) -> Result<Option<BatchStep<'m>>> {
    #[cfg(feature = "cuda")]
    if let Some(mut d) = gpu::GpuDecoder::new(model, cache, capacity)? {
        return Ok(Some(Box::new(move |tokens: &[u32]| d.step(tokens))));
    }
    Ok(None)
}

/// A frozen block-quantized projection and its bias.
struct Projection<'m> {
    w: &'m BlockMatrix,
    bias: Option<Vec<f32>>,
}

impl<'m> Projection<'m> {
    fn new(l: &'m LoraLinear) -> Result<Option<Projection<'m>>> {
        let BaseWeight::Blocks(w) = &l.base else {
            return Ok(None);
        };
        let bias = l.bias.as_ref().map(|b| b.to_vec1::<f32>()).transpose()?;
        Ok(Some(Projection { w, bias }))
    }

    fn rows(&self) -> usize {
        self.w.dims().0
    }

    /// Output `row` of the layer from its base value: `+ B low` (the row's adapter), then the
    /// bias.
    fn finish(&self, row: usize, base: f32, lora: Option<(&Adapter, &[f32])>) -> f32 {
        let mut y = base;
        if let Some((l, low)) = lora {
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
#[derive(Clone)]
struct Adapter {
    rank: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    scale: f32,
}

impl Adapter {
    /// `scale · A x` into `low` (`rank` values).
    fn low(&self, x: &[f32], low: &mut [f32]) {
        for (l, a) in low.iter_mut().zip(self.a.chunks_exact(x.len())) {
            *l = a.iter().zip(x).map(|(a, x)| a * x).sum::<f32>() * self.scale;
        }
    }
}

/// The seven projections of a layer in the order of [`crate::model::llama::Block::projections`].
const PROJECTIONS: usize = 7;

/// One set of LoRA adapters for every layer: the adapters a model has switched on, taken out of
/// it so that a decoder can serve several sets over one copy of the base weights.
#[derive(Clone)]
pub struct AdapterSet {
    /// `[layer][projection]`.
    layers: Vec<[Option<Adapter>; PROJECTIONS]>,
}

impl AdapterSet {
    /// The adapters switched on in `model` (none for a base model).
    pub fn of(model: &Llama) -> Result<AdapterSet> {
        let mut layers = Vec::with_capacity(model.layers.len());
        for block in &model.layers {
            let mut set: [Option<Adapter>; PROJECTIONS] = Default::default();
            for (slot, l) in set.iter_mut().zip(block.projections()) {
                if let Some(lora) = l.lora.as_ref().filter(|_| l.lora_enabled) {
                    *slot = Some(Adapter {
                        rank: lora.a.as_tensor().dim(0)?,
                        a: lora.a.as_tensor().flatten_all()?.to_vec1::<f32>()?,
                        b: lora.b.as_tensor().flatten_all()?.to_vec1::<f32>()?,
                        scale: lora.scale as f32,
                    });
                }
            }
            layers.push(set);
        }
        Ok(AdapterSet { layers })
    }

    /// Why this set does not fit `layers` of the decoder, if it does not.
    fn check(&self, layers: &[Layer]) -> Result<()> {
        if self.layers.len() != layers.len() {
            bail!(
                "adapter for {} layers, the model has {}",
                self.layers.len(),
                layers.len()
            );
        }
        for (i, (set, layer)) in self.layers.iter().zip(layers).enumerate() {
            for (p, (a, w)) in set.iter().zip(layer.projections()).enumerate() {
                if let Some(a) = a {
                    let (out, inp) = w.w.dims();
                    if a.a.len() != a.rank * inp || a.b.len() != out * a.rank {
                        bail!("adapter of layer {i}, projection {p} does not fit [{out}, {inp}]");
                    }
                }
            }
        }
        Ok(())
    }
}

struct Layer<'m> {
    qkv: [Projection<'m>; 3],
    o: Projection<'m>,
    gate_up: [Projection<'m>; 2],
    down: Projection<'m>,
    input_norm: Vec<f32>,
    post_norm: Vec<f32>,
}

impl Layer<'_> {
    fn projections(&self) -> [&Projection<'_>; PROJECTIONS] {
        let ([q, k, v], [g, u]) = (&self.qkv, &self.gate_up);
        [q, k, v, &self.o, g, u, &self.down]
    }
}

/// One sequence's state: its keys and values in every layer, its length and its adapter.
pub struct Sequence {
    /// `[layer][key/value head]`.
    caches: Vec<Vec<HeadCache>>,
    position: usize,
    adapter: usize,
}

impl Sequence {
    /// Positions cached so far.
    pub fn positions(&self) -> usize {
        self.position
    }
}

/// What a step feeds one sequence: its next tokens (one when decoding, a stretch of the prompt
/// when prefilling).
pub struct Feed<'s> {
    pub sequence: &'s mut Sequence,
    pub tokens: &'s [u32],
}

/// The activations of one step, kept between steps to spare the allocations.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attention: Vec<f32>,
    /// Partial attentions, `[attention task, n_rep, head_dim + 2]`.
    parts: Vec<f32>,
    projected: Vec<f32>,
    gate: Vec<f32>,
}

/// The decoder of a block-quantized model on the CPU: the model's weights as slices, and the
/// adapter sets its sequences may use (set 0 is the model as it is).
pub struct Decoder<'m> {
    model: &'m Llama,
    layers: Vec<Layer<'m>>,
    adapters: Vec<AdapterSet>,
    head: &'m BlockMatrix,
    norm: Vec<f32>,
    eps: f32,
    /// RoPE tables, `[max_len, head_dim / 2]`.
    cos: Vec<f32>,
    sin: Vec<f32>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    kernel: Kernel,
    scratch: Scratch,
}

/// One attention task of a step: a row's queries of one key/value head over a share of its
/// sequence's positions.
#[derive(Clone, Copy)]
struct AttentionTask {
    row: usize,
    head: usize,
    /// This share and how many the row's positions are split into.
    share: usize,
    shares: usize,
}

impl<'m> Decoder<'m> {
    /// The decoder for `model`, serving the model as it is (adapter set 0) and `extra` adapter
    /// sets (1, 2, ...); `None` where the model is not one this path runs.
    pub fn new(model: &'m Llama, extra: Vec<AdapterSet>) -> Result<Option<Decoder<'m>>> {
        if !model.device().is_cpu() || model.dtype() != DType::F32 {
            return Ok(None);
        }
        let BaseWeight::Blocks(head) = &model.lm_head else {
            return Ok(None);
        };
        let mut layers = Vec::with_capacity(model.layers.len());
        for (i, block) in model.layers.iter().enumerate() {
            let mut ready = Vec::with_capacity(PROJECTIONS);
            for p in block.projections().map(Projection::new) {
                match p? {
                    Some(p) => ready.push(p),
                    None => return Ok(None),
                }
            }
            let Ok([q, k, v, o, gate, up, down]) = <[Projection; PROJECTIONS]>::try_from(ready)
            else {
                bail!("decoder: seven projections expected in layer {i}");
            };
            layers.push(Layer {
                qkv: [q, k, v],
                o,
                gate_up: [gate, up],
                down,
                input_norm: block.input_norm.to_vec1()?,
                post_norm: block.post_attention_norm.to_vec1()?,
            });
        }
        let Some(attn) = model.layers.first().map(|l| &l.attn) else {
            return Ok(None);
        };
        let mut adapters = vec![AdapterSet::of(model)?];
        for (i, set) in extra.into_iter().enumerate() {
            set.check(&layers)
                .map_err(|e| candle_core::Error::Msg(format!("adapter set {}: {e}", i + 1)))?;
            adapters.push(set);
        }
        let (cos, sin) = model.rope.tables();
        Ok(Some(Decoder {
            model,
            layers,
            adapters,
            head,
            norm: model.norm.to_vec1()?,
            eps: model.cfg.rms_norm_eps as f32,
            cos: cos.flatten_all()?.to_vec1()?,
            sin: sin.flatten_all()?.to_vec1()?,
            heads: attn.n_heads,
            kv_heads: attn.n_kv_heads,
            head_dim: attn.head_dim,
            kernel: Kernel::detect(),
            scratch: Scratch::default(),
        }))
    }

    /// The model's context: positions a sequence may hold.
    pub fn context(&self) -> usize {
        self.model.rope.max_len()
    }

    /// An empty sequence using adapter set `adapter`, with room for `capacity` positions before
    /// its caches reallocate.
    pub fn sequence(&self, adapter: usize, capacity: usize) -> Result<Sequence> {
        if adapter >= self.adapters.len() {
            bail!(
                "adapter set {adapter}: the decoder has {}",
                self.adapters.len()
            );
        }
        let capacity = capacity.min(self.context());
        Ok(Sequence {
            caches: (0..self.layers.len())
                .map(|_| {
                    (0..self.kv_heads)
                        .map(|_| HeadCache::with_capacity(self.head_dim, capacity))
                        .collect()
                })
                .collect(),
            position: 0,
            adapter,
        })
    }

    /// Feeds each sequence its tokens at its next positions; returns, per feed, the logits
    /// over the vocabulary after its last token.
    pub fn step(&mut self, team: &Team, feeds: &mut [Feed]) -> Result<Vec<Vec<f32>>> {
        let context = self.context();
        // Per row: its feed and position.
        let mut rows: Vec<(usize, usize)> = Vec::new();
        let mut tokens: Vec<u32> = Vec::new();
        for (f, feed) in feeds.iter().enumerate() {
            if feed.tokens.is_empty() {
                bail!("decoder: a feed without tokens");
            }
            let start = feed.sequence.position;
            if start + feed.tokens.len() > context {
                bail!(
                    "sequence of {} tokens is longer than the model's context of {context}",
                    start + feed.tokens.len()
                );
            }
            rows.extend((0..feed.tokens.len()).map(|i| (f, start + i)));
            tokens.extend_from_slice(feed.tokens);
        }
        let n = rows.len();
        let ids = Tensor::new(tokens.as_slice(), self.model.device())?;
        let s = &mut self.scratch;
        s.x = self
            .model
            .embed
            .gather_rows(&ids)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let (heads, kv, d) = (self.heads, self.kv_heads, self.head_dim);
        let (half, n_rep) = (d / 2, heads / kv);
        let (kernel, eps) = (self.kernel, self.eps);
        let scale = (1.0 / (d as f64).sqrt()) as f32;
        let part = n_rep * (d + 2);
        // Each row's positions in as many shares as threads (at most one per key block): a
        // task's queries read their head's cache once, and every core gets a share.
        let tasks: Vec<AttentionTask> = rows
            .iter()
            .enumerate()
            .flat_map(|(row, &(_, pos))| {
                let shares = team.size().min(HeadCache::blocks_for(pos + 1));
                (0..kv).flat_map(move |head| {
                    (0..shares).map(move |share| AttentionTask {
                        row,
                        head,
                        share,
                        shares,
                    })
                })
            })
            .collect();
        let row_adapters: Vec<&AdapterSet> = rows
            .iter()
            .map(|&(f, _)| &self.adapters[feeds[f].sequence.adapter])
            .collect();
        for (li, layer) in self.layers.iter().enumerate() {
            let lora = |p: usize| -> Vec<Option<&Adapter>> {
                row_adapters
                    .iter()
                    .map(|set| set.layers[li][p].as_ref())
                    .collect()
            };
            rms_norm_rows(&s.x, &layer.input_norm, eps, &mut s.h);
            let [q, k, v] = &layer.qkv;
            product(
                team,
                kernel,
                [q, k, v],
                [&lora(0), &lora(1), &lora(2)],
                &s.h,
                [&mut s.q, &mut s.k, &mut s.v],
            );
            for (r, &(_, pos)) in rows.iter().enumerate() {
                let (cos, sin) = (
                    &self.cos[pos * half..(pos + 1) * half],
                    &self.sin[pos * half..(pos + 1) * half],
                );
                rope(&mut s.q[r * heads * d..(r + 1) * heads * d], d, cos, sin);
                rope(&mut s.k[r * kv * d..(r + 1) * kv * d], d, cos, sin);
            }
            for (r, &(f, _)) in rows.iter().enumerate() {
                let keys = s.k[r * kv * d..(r + 1) * kv * d].chunks_exact(d);
                let values = s.v[r * kv * d..(r + 1) * kv * d].chunks_exact(d);
                for (head, (k, v)) in feeds[f].sequence.caches[li]
                    .iter_mut()
                    .zip(keys.zip(values))
                {
                    head.push(k, v);
                }
            }
            s.parts.clear();
            s.parts.resize(tasks.len() * part, 0.0);
            {
                let caches: Vec<&[HeadCache]> = feeds
                    .iter()
                    .map(|f| f.sequence.caches[li].as_slice())
                    .collect();
                let parts = Disjoint::new(&mut s.parts);
                let q = &s.q;
                team.run(tasks.len(), &|c| {
                    let t = tasks[c];
                    let (f, pos) = rows[t.row];
                    let cache = &caches[f][t.head];
                    let blocks = HeadCache::blocks_for(pos + 1);
                    let range = t.share * blocks / t.shares..(t.share + 1) * blocks / t.shares;
                    let at = (t.row * heads + t.head * n_rep) * d;
                    // SAFETY: task c writes its own part.
                    let out = unsafe { parts.range(c * part, part) };
                    cache.attend_part(&q[at..at + n_rep * d], scale, range, pos + 1, out);
                });
            }
            s.attention.clear();
            s.attention.resize(n * heads * d, 0.0);
            let mut first = 0;
            for group in tasks.chunk_by(|a, b| a.row == b.row && a.head == b.head) {
                let t = group[0];
                let parts: Vec<&[f32]> = s.parts[first * part..(first + group.len()) * part]
                    .chunks_exact(part)
                    .collect();
                let at = (t.row * heads + t.head * n_rep) * d;
                combine(&parts, d, &mut s.attention[at..at + n_rep * d]);
                first += group.len();
            }
            product(
                team,
                kernel,
                [&layer.o],
                [&lora(3)],
                &s.attention,
                [&mut s.projected],
            );
            add(&mut s.x, &s.projected);
            rms_norm_rows(&s.x, &layer.post_norm, eps, &mut s.h);
            swiglu(
                team,
                kernel,
                &layer.gate_up,
                [&lora(4), &lora(5)],
                &s.h,
                &mut s.gate,
            );
            product(
                team,
                kernel,
                [&layer.down],
                [&lora(6)],
                &s.gate,
                [&mut s.projected],
            );
            add(&mut s.x, &s.projected);
        }
        for feed in feeds.iter_mut() {
            feed.sequence.position += feed.tokens.len();
        }
        // The logits of each feed's last row.
        let hidden = self.model.cfg.hidden_size;
        let mut last = Vec::with_capacity(feeds.len() * hidden);
        let mut end = 0;
        for feed in feeds.iter() {
            end += feed.tokens.len();
            last.extend_from_slice(&s.x[(end - 1) * hidden..end * hidden]);
        }
        rms_norm_rows(&last, &self.norm, eps, &mut s.h);
        let head = Projection {
            w: self.head,
            bias: None,
        };
        let mut logits = Vec::new();
        product(
            team,
            kernel,
            [&head],
            [&vec![None; feeds.len()]],
            &s.h,
            [&mut logits],
        );
        Ok(logits
            .chunks_exact(self.head.dims().0)
            .map(<[f32]>::to_vec)
            .collect())
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

/// RMSNorm of each row of `x` (rows as long as `weight`) into `out`.
fn rms_norm_rows(x: &[f32], weight: &[f32], eps: f32, out: &mut Vec<f32>) {
    out.clear();
    for row in x.chunks_exact(weight.len()) {
        out.extend(rms_norm(row, weight, eps));
    }
}

/// Each row of `x` (rows of `cols`) rounded to 8 bits, the rows shared by the team.
fn quantize_rows(team: &Team, x: &[f32], cols: usize) -> Vec<QuantizedRow> {
    let rows: Vec<&[f32]> = x.chunks_exact(cols).collect();
    if rows.len() == 1 {
        return rows.into_iter().map(QuantizedRow::new).collect();
    }
    let slots: Vec<std::sync::OnceLock<QuantizedRow>> =
        rows.iter().map(|_| std::sync::OnceLock::new()).collect();
    team.run(rows.len(), &|r| {
        slots[r].get_or_init(|| QuantizedRow::new(rows[r]));
    });
    slots
        .into_iter()
        .zip(rows)
        .map(|(slot, row)| slot.into_inner().unwrap_or_else(|| QuantizedRow::new(row)))
        .collect()
}

/// Each row's adapter product `scale · A x`, row `r`'s at `r · stride` (`stride` the largest
/// rank; nothing for rows without an adapter).
struct Lows {
    values: Vec<f32>,
    stride: usize,
}

impl Lows {
    fn new(team: &Team, adapters: &[Option<&Adapter>], x: &[f32]) -> Lows {
        let stride = adapters.iter().flatten().map(|a| a.rank).max().unwrap_or(0);
        let mut values = vec![0f32; adapters.len() * stride];
        if stride > 0 {
            let cols = x.len() / adapters.len();
            let target = Disjoint::new(&mut values);
            team.run(adapters.len(), &|r| {
                if let Some(a) = adapters[r] {
                    // SAFETY: row r writes its own values.
                    let low = unsafe { target.range(r * stride, a.rank) };
                    a.low(&x[r * cols..(r + 1) * cols], low);
                }
            });
        }
        Lows { values, stride }
    }

    /// Row `r`'s adapter and its low-rank product, if it has an adapter.
    fn of<'a>(
        &'a self,
        adapter: Option<&'a Adapter>,
        r: usize,
    ) -> Option<(&'a Adapter, &'a [f32])> {
        adapter.map(|a| (a, &self.values[r * self.stride..r * self.stride + a.rank]))
    }
}

/// `outs[i] = x W_i^T + adapter_i(x) + b_i` for each projection and each row of `x` (row `r`
/// with its adapter `loras[i][r]`), the row groups of all the projections split into chunks
/// that the team shares; each chunk reads its groups once for every row.
fn product<const N: usize>(
    team: &Team,
    kernel: Kernel,
    projections: [&Projection; N],
    loras: [&[Option<&Adapter>]; N],
    x: &[f32],
    mut outs: [&mut Vec<f32>; N],
) {
    let n = loras[0].len();
    let cols = x.len() / n.max(1);
    let acts = quantize_rows(team, x, cols);
    let acts: Vec<&QuantizedRow> = acts.iter().collect();
    let lows: [Lows; N] = std::array::from_fn(|i| Lows::new(team, loras[i], x));
    let total: usize = projections.iter().map(|p| p.w.groups()).sum();
    let chunk = (total / (CHUNKS_PER_THREAD * team.size())).max(MIN_CHUNK_GROUPS);
    let counts: [usize; N] = std::array::from_fn(|i| projections[i].w.groups().div_ceil(chunk));
    for (out, p) in outs.iter_mut().zip(&projections) {
        out.clear();
        out.resize(n * p.rows(), 0.0);
    }
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
        // SAFETY: chunk i of projection p writes its own rows of every activation row.
        let mut out: Vec<&mut [f32]> = (0..n)
            .map(|r| unsafe { targets[p].range(r * rows + first, last - first) })
            .collect();
        let mut y = vec![[0f32; GROUP]; n];
        for g in groups.clone() {
            w.dot_group(kernel, g, &acts, &mut y);
            for (r, (out, y)) in out.iter_mut().zip(&y).enumerate() {
                let lora = lows[p].of(loras[p][r], r);
                let at = (g - groups.start) * GROUP;
                for (l, (o, y)) in out[at..].iter_mut().zip(y).enumerate() {
                    *o = projections[p].finish(g * GROUP + l, *y, lora);
                }
            }
        }
    });
}

/// `silu(gate(x)) · up(x)` into `out` for each row of `x` (each with its adapter and bias):
/// each chunk takes the same rows of the gate and up projections and combines them, so that the
/// activation runs on every core.
fn swiglu(
    team: &Team,
    kernel: Kernel,
    [gate, up]: &[Projection; 2],
    [gate_lora, up_lora]: [&[Option<&Adapter>]; 2],
    x: &[f32],
    out: &mut Vec<f32>,
) {
    let n = gate_lora.len();
    let cols = x.len() / n.max(1);
    let acts = quantize_rows(team, x, cols);
    let acts: Vec<&QuantizedRow> = acts.iter().collect();
    let (gate_low, up_low) = (Lows::new(team, gate_lora, x), Lows::new(team, up_lora, x));
    let rows = gate.rows();
    let groups = gate.w.groups();
    let chunk = (2 * groups / (CHUNKS_PER_THREAD * team.size())).max(MIN_CHUNK_GROUPS);
    out.clear();
    out.resize(n * rows, 0.0);
    let target = Disjoint::new(out);
    team.run(groups.div_ceil(chunk), &|i| {
        let range = i * chunk..((i + 1) * chunk).min(groups);
        let (first, last) = (range.start * GROUP, (range.end * GROUP).min(rows));
        // SAFETY: chunk i writes its own rows of every activation row.
        let mut out: Vec<&mut [f32]> = (0..n)
            .map(|r| unsafe { target.range(r * rows + first, last - first) })
            .collect();
        let (mut xs, mut us) = (vec![[0f32; GROUP]; n], vec![[0f32; GROUP]; n]);
        for g in range.clone() {
            gate.w.dot_group(kernel, g, &acts, &mut xs);
            up.w.dot_group(kernel, g, &acts, &mut us);
            for (r, out) in out.iter_mut().enumerate() {
                let gl = gate_low.of(gate_lora[r], r);
                let ul = up_low.of(up_lora[r], r);
                let at = (g - range.start) * GROUP;
                for (l, (o, (x, u))) in out[at..]
                    .iter_mut()
                    .zip(xs[r].iter().zip(&us[r]))
                    .enumerate()
                {
                    let row = g * GROUP + l;
                    let x = gate.finish(row, *x, gl);
                    let u = up.finish(row, *u, ul);
                    // As the fused SwiGLU op computes it.
                    *o = x / (1.0 + (-x).exp()) * u;
                }
            }
        }
    });
}

#[cfg(test)]
pub(crate) mod tests;
