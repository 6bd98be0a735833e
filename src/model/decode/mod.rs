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
mod rows;
mod team;
use crate::model::decode::head_cache::{HeadCache, combine};
use crate::model::decode::rows::{Adapter, Projection, add, product, rms_norm_rows, rope, swiglu};
use crate::model::decode::team::Disjoint;
pub use crate::model::decode::team::{Team, with_team};
use crate::model::llama::Llama;
use crate::model::nn::weight::BaseWeight;
use crate::model::quant::BlockMatrix;
use crate::model::quant::products::Kernel;
use candle_core::{DType, Result, Tensor, bail};

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
    /// Whether this path runs `model`: on the CPU in f32, with every projection and the output
    /// head block-quantized.
    pub fn applies(model: &Llama) -> bool {
        let blocks = |base: &BaseWeight| matches!(base, BaseWeight::Blocks(_));
        model.device().is_cpu()
            && model.dtype() == DType::F32
            && blocks(&model.lm_head)
            && model
                .layers
                .iter()
                .all(|block| block.projections().iter().all(|l| blocks(&l.base)))
    }

    /// The decoder for `model`, serving the model as it is (adapter set 0) and `extra` adapter
    /// sets (1, 2, ...); `None` where the model is not one this path runs.
    pub fn new(model: &'m Llama, extra: Vec<AdapterSet>) -> Result<Option<Decoder<'m>>> {
        if !Decoder::applies(model) {
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
                let parts = &s.parts[first * part..(first + group.len()) * part];
                let at = (t.row * heads + t.head * n_rep) * d;
                combine(parts, d, &mut s.attention[at..at + n_rep * d]);
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

#[cfg(test)]
pub(crate) mod tests;
