//! Decoding on an NVIDIA GPU a token at a time, for a whole batch. A decode step of a model the
//! size of the ones tuned here is bound by kernel launches, not by the GPU: through candle every
//! step of every layer is some thirty ops, each allocating its output, checking layouts and
//! launching one or more kernels. Here a layer's step is twelve launches into buffers allocated
//! once: RMSNorm, the q, k and v products, one kernel that rotates q and k and stores k and v in
//! a preallocated cache, one attention kernel over every head and row, the output product adding
//! into the residual stream, RMSNorm, the gate and up products, SwiGLU and the down product adding
//! into the residual stream (gpu_kernels.cu; the products of batches above 4 rows are cuBLAS's).
//! A LoRA adapter adds two small products per projection. The first step's launches are captured
//! as a CUDA graph, and every later step replays it: one launch where a 30-layer model has some
//! 360 (the position the kernels read lives on the GPU and the step's last kernel advances it).
//!
//! It applies to a model on a GPU in bf16 or f32 with dense projections and output head (the
//! embedding lookup is the model's own, so a quantized embedding works), after the general path's
//! prefill; [`GpuDecoder::new`] says `None` otherwise and generation keeps the general path.

use crate::model::llama::{KvCache, Llama};
use crate::model::nn::device_ops::cuda::device_pointer;
use crate::model::nn::linear::LoraLinear;
use crate::model::nn::weight::BaseWeight;
use candle_core::cuda_backend::WrapErr;
use candle_core::cuda_backend::cudarc::cublas::{result as cublas, sys as blas};
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaGraph, CudaModule, CudaStream, LaunchArgs, LaunchConfig, PushKernelArg,
    result as driver, sys,
};
use candle_core::{CudaDevice, DType, Device, Result, Tensor, bail};
use std::sync::{Arc, Mutex};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/decode_kernels.ptx"));
/// gpu_kernels.cu's NORM_BLOCK and ATTENTION_WARPS, and the head dimensions its attention holds.
const NORM_BLOCK: u32 = 256;
const ATTENTION_WARPS: u32 = 8;
/// gpu_kernels.cu's MATVEC_WARPS and MATVEC_MAX_ROWS: up to this many rows the products are the
/// decoder's own kernel (one launch, the bias and the residual added in it), above it cuBLAS's
/// (faster at 16 rows: see docs/gpu.md).
const MATVEC_WARPS: u32 = 4;
const MATVEC_MAX_ROWS: usize = 4;
const MAX_HEAD_DIM: usize = 256;

/// A frozen dense projection `[out, in]`, its active adapter (in the model's dtype) and its bias.
struct Projection {
    w: u64,
    out: usize,
    inp: usize,
    lora: Option<Adapter>,
    bias: Option<Tensor>,
}

struct Adapter {
    /// `[rank, in]` and `[out, rank]`, owned (converted from the f32 variables).
    a: Tensor,
    b: Tensor,
    rank: usize,
    scale: f32,
}

impl Projection {
    fn new(l: &LoraLinear, dtype: DType) -> Result<Option<Projection>> {
        let BaseWeight::Dense(w) = &l.base else {
            return Ok(None);
        };
        if w.dtype() != dtype || !w.is_contiguous() {
            return Ok(None);
        }
        let (out, inp) = w.dims2()?;
        let lora = match l.lora.as_ref().filter(|_| l.lora_enabled) {
            Some(lora) => Some(Adapter {
                a: lora.a.as_tensor().to_dtype(dtype)?.contiguous()?,
                b: lora.b.as_tensor().to_dtype(dtype)?.contiguous()?,
                rank: lora.a.as_tensor().dim(0)?,
                scale: lora.scale as f32,
            }),
            None => None,
        };
        let bias = l
            .bias
            .as_ref()
            .map(|b| b.to_dtype(dtype)?.contiguous())
            .transpose()?;
        Ok(Some(Projection {
            w: device_pointer(w, "decode")?,
            out,
            inp,
            lora,
            bias,
        }))
    }
}

struct Layer {
    /// q, k, v, o, gate, up, down.
    proj: [Projection; 7],
    input_norm: u64,
    post_norm: u64,
    /// `[rows, kv heads, capacity, head_dim]` each.
    k_cache: Tensor,
    v_cache: Tensor,
}

/// The kernels of one dtype.
struct Kernels {
    matvec: CudaFunction,
    matvec_logits: CudaFunction,
    rms_norm: CudaFunction,
    rope_store: CudaFunction,
    attention: CudaFunction,
    add_bias: CudaFunction,
    swiglu: CudaFunction,
    advance: CudaFunction,
}

/// The kernels' module per GPU (by ordinal), loaded on the GPU's first decoder (the driver
/// compiles the PTX then, or takes it from its cache). A module keeps its context alive.
static MODULES: Mutex<Vec<(usize, Arc<CudaModule>)>> = Mutex::new(Vec::new());

impl Kernels {
    fn load(dev: &CudaDevice, dtype: DType) -> Result<Kernels> {
        let module = {
            let mut modules = MODULES.lock().unwrap_or_else(|e| e.into_inner());
            let context = dev.cuda_stream().context().clone();
            match modules.iter().find(|(gpu, _)| *gpu == context.ordinal()) {
                Some((_, m)) => m.clone(),
                None => {
                    let m = context.load_module(PTX.into()).w()?;
                    modules.push((context.ordinal(), m.clone()));
                    m
                }
            }
        };
        let suffix = if dtype == DType::BF16 { "bf16" } else { "f32" };
        let load = |base: &str| module.load_function(&format!("decode_{base}_{suffix}")).w();
        Ok(Kernels {
            matvec: load("matvec")?,
            matvec_logits: load("matvec_logits")?,
            rms_norm: load("rms_norm")?,
            rope_store: load("rope_store")?,
            attention: load("attention")?,
            add_bias: load("add_bias")?,
            swiglu: load("swiglu")?,
            advance: module.load_function("decode_advance").w()?,
        })
    }
}

/// The activations of a step, `[rows, ..]` each, allocated once.
struct Buffers {
    x: Tensor,
    h: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attention: Tensor,
    gate: Tensor,
    up: Tensor,
    act: Tensor,
    /// An adapter's rank-r product.
    low: Tensor,
    /// f32 `[rows, vocab]`.
    logits: Tensor,
    /// Each row's left padding, u32.
    pads: Tensor,
    /// The position this step writes and attends to, u32 `[1]`.
    position: Tensor,
}

/// How a step's launches after the embedding run.
enum Replay {
    /// The next step captures them; `failed` captures were tried before (work of another thread
    /// on the GPU during a capture spoils it).
    NotCaptured {
        failed: u32,
    },
    Graph(CudaGraph),
    /// Launched one by one: the driver refused to capture them CAPTURE_ATTEMPTS times.
    Eager,
}

/// Captures tried before the steps launch one by one for good.
const CAPTURE_ATTEMPTS: u32 = 3;

/// A batch's decoder on a GPU, continuing from a cache that the general path filled.
pub struct GpuDecoder<'m> {
    model: &'m Llama,
    dev: CudaDevice,
    /// candle's stream for the device (its products and copies run on it too).
    stream: Arc<CudaStream>,
    data_type: blas::cudaDataType,
    elem: usize,
    rows: usize,
    layers: Vec<Layer>,
    head: Projection,
    norm: u64,
    cos: u64,
    sin: u64,
    eps: f32,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    intermediate: usize,
    /// Positions in the cache, and how many it holds.
    position: usize,
    capacity: usize,
    kernels: Kernels,
    buffers: Buffers,
    replay: Replay,
}

impl<'m> GpuDecoder<'m> {
    /// The decoder for `model` after the steps that filled `cache`, with room for `capacity`
    /// positions in all (at most the model's context); `None` where the model is not one this
    /// path runs.
    pub fn new(model: &'m Llama, cache: &KvCache, capacity: usize) -> Result<Option<Self>> {
        let Device::Cuda(dev) = model.device() else {
            return Ok(None);
        };
        let dtype = model.dtype();
        let (data_type, elem) = match dtype {
            DType::BF16 => (blas::cudaDataType::CUDA_R_16BF, 2),
            DType::F32 => (blas::cudaDataType::CUDA_R_32F, 4),
            _ => return Ok(None),
        };
        let cfg = &model.cfg;
        let Some(attn) = model.layers.first().map(|l| &l.attn) else {
            return Ok(None);
        };
        let (heads, kv_heads, head_dim) = (attn.n_heads, attn.n_kv_heads, attn.head_dim);
        if head_dim > MAX_HEAD_DIM || head_dim % 2 != 0 || heads % kv_heads != 0 {
            return Ok(None);
        }
        let Some((first_k, _)) = cache.layer(0)? else {
            return Ok(None);
        };
        let (rows, _, position, _) = first_k.dims4()?;
        let capacity = capacity.min(model.rope.max_len());
        if capacity <= position {
            return Ok(None);
        }
        let Some(head) =
            Projection::new(&LoraLinear::new(model.lm_head.clone(), None), model.dtype())?
        else {
            return Ok(None);
        };
        let mut layers = Vec::with_capacity(model.layers.len());
        for (i, block) in model.layers.iter().enumerate() {
            let mut proj = Vec::with_capacity(7);
            for l in block.projections() {
                match Projection::new(l, dtype)? {
                    Some(p) => proj.push(p),
                    None => return Ok(None),
                }
            }
            let Some((k, v)) = cache.layer(i)? else {
                bail!("decode: layer {i} has no cached keys");
            };
            let zeros =
                || Tensor::zeros((rows, kv_heads, capacity, head_dim), dtype, model.device());
            let (k_cache, v_cache) = (zeros()?, zeros()?);
            k_cache.slice_set(&k.contiguous()?, 2, 0)?;
            v_cache.slice_set(&v.contiguous()?, 2, 0)?;
            layers.push(Layer {
                proj: proj
                    .try_into()
                    .map_err(|_| candle_core::Error::Msg("seven projections expected".into()))?,
                input_norm: device_pointer(&block.input_norm, "decode")?,
                post_norm: device_pointer(&block.post_attention_norm, "decode")?,
                k_cache,
                v_cache,
            });
        }
        let intermediate = layers.first().map_or(0, |l| l.proj[4].out);
        let rank = layers
            .iter()
            .flat_map(|l| &l.proj)
            .filter_map(|p| p.lora.as_ref().map(|a| a.rank))
            .max()
            .unwrap_or(1);
        let d = model.device();
        let buffer = |n: usize| Tensor::zeros((rows, n), dtype, d);
        let hidden = cfg.hidden_size;
        let pads: Vec<u32> = match cache.pads() {
            [] => vec![0; rows],
            p => p.iter().map(|&p| p as u32).collect(),
        };
        let buffers = Buffers {
            x: buffer(hidden)?,
            h: buffer(hidden)?,
            q: buffer(heads * head_dim)?,
            k: buffer(kv_heads * head_dim)?,
            v: buffer(kv_heads * head_dim)?,
            attention: buffer(heads * head_dim)?,
            gate: buffer(intermediate)?,
            up: buffer(intermediate)?,
            act: buffer(intermediate)?,
            low: buffer(rank)?,
            logits: Tensor::zeros((rows, head.out), DType::F32, d)?,
            pads: Tensor::from_vec(pads, rows, d)?,
            position: Tensor::from_vec(vec![count(position)?], 1, d)?,
        };
        let kernels = Kernels::load(dev, dtype)?;
        let (cos, sin) = model.rope.tables();
        Ok(Some(GpuDecoder {
            model,
            dev: dev.clone(),
            stream: dev.cuda_stream(),
            data_type,
            elem,
            rows,
            layers,
            head,
            norm: device_pointer(&model.norm, "decode")?,
            cos: device_pointer(cos, "decode")?,
            sin: device_pointer(sin, "decode")?,
            eps: cfg.rms_norm_eps as f32,
            heads,
            kv_heads,
            head_dim,
            intermediate,
            position,
            capacity,
            kernels,
            buffers,
            replay: Replay::NotCaptured { failed: 0 },
        }))
    }

    /// Feeds one token per row; returns each row's logits over the vocabulary.
    pub fn step(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        let pos = self.position;
        if pos >= self.model.rope.max_len() {
            bail!(
                "sequence of {} tokens is longer than the model's context of {}",
                pos + 1,
                self.model.rope.max_len()
            );
        }
        if pos >= self.capacity {
            bail!(
                "decode: position {pos} is past the cache's {}",
                self.capacity
            );
        }
        if tokens.len() != self.rows {
            bail!("decode: {} tokens for {} rows", tokens.len(), self.rows);
        }
        let ids = Tensor::from_vec(tokens.to_vec(), (self.rows, 1), self.model.device())?;
        let embedded = self.model.embed_ids(&ids)?.contiguous()?;
        let hidden = self.model.cfg.hidden_size;
        // SAFETY: both buffers hold rows · hidden elements of the model's dtype.
        unsafe {
            driver::memcpy_dtod_async(
                device_pointer(&self.buffers.x, "decode")?,
                device_pointer(&embedded, "decode")?,
                self.rows * hidden * self.elem,
                self.stream.cu_stream(),
            )
        }
        .w()?;
        self.replay()?;
        drop(embedded);
        self.position += 1;
        self.buffers.logits.to_vec2::<f32>()
    }

    /// Whether the steps replay a captured graph.
    #[cfg(test)]
    fn replays_a_graph(&self) -> bool {
        matches!(self.replay, Replay::Graph(_))
    }

    /// Runs the step's launches after the embedding: replays the graph, captured on the first
    /// step; a step whose capture fails launches them one by one, and the next step tries again
    /// (one by one for good after CAPTURE_ATTEMPTS failures).
    fn replay(&mut self) -> Result<()> {
        let failed = match &self.replay {
            Replay::Graph(graph) => return graph.launch().w(),
            Replay::Eager => return self.launches(),
            Replay::NotCaptured { failed } => *failed,
        };
        match self.capture() {
            Ok(Some(graph)) => {
                self.replay = Replay::Graph(graph);
                self.replay()
            }
            Ok(None) | Err(_) => {
                self.replay = if failed + 1 >= CAPTURE_ATTEMPTS {
                    Replay::Eager
                } else {
                    Replay::NotCaptured { failed: failed + 1 }
                };
                self.launches()
            }
        }
    }

    /// The step's launches as a graph (none run yet).
    fn capture(&self) -> Result<Option<CudaGraph>> {
        self.stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .w()?;
        let launched = self.launches();
        let graph = self
            .stream
            .end_capture(sys::CUgraphInstantiate_flags(0))
            .w();
        launched?;
        let graph = graph?;
        if let Some(g) = &graph {
            g.upload().w()?;
        }
        Ok(graph)
    }

    /// Every layer, the final norm, the output head and the position's advance, from the
    /// embedded tokens in `x` to the logits.
    fn launches(&self) -> Result<()> {
        let b = &self.buffers;
        let p = |t: &Tensor| device_pointer(t, "decode");
        let (x, h, q, k, v) = (p(&b.x)?, p(&b.h)?, p(&b.q)?, p(&b.k)?, p(&b.v)?);
        let (attention, gate, up, act) = (p(&b.attention)?, p(&b.gate)?, p(&b.up)?, p(&b.act)?);
        let hidden = self.model.cfg.hidden_size;
        for layer in &self.layers {
            let [qp, kp, vp, op, gp, upp, dp] = &layer.proj;
            self.rms_norm(x, layer.input_norm, h, hidden)?;
            self.project(qp, h, q, false)?;
            self.project(kp, h, k, false)?;
            self.project(vp, h, v, false)?;
            let (kc, vc) = (p(&layer.k_cache)?, p(&layer.v_cache)?);
            self.rope_store(q, k, v, kc, vc)?;
            self.attention(q, kc, vc, attention)?;
            self.project(op, attention, x, true)?;
            self.rms_norm(x, layer.post_norm, h, hidden)?;
            self.project(gp, h, gate, false)?;
            self.project(upp, h, up, false)?;
            self.swiglu(gate, up, act)?;
            self.project(dp, act, x, true)?;
        }
        self.rms_norm(x, self.norm, h, hidden)?;
        let logits = p(&self.buffers.logits)?;
        self.product(
            &Product {
                w: self.head.w,
                x: h,
                y: logits,
                out: self.head.out,
                inp: self.head.inp,
                alpha: 1.0,
                accumulate: false,
                bias: None,
            },
            true,
        )?;
        let position = p(&self.buffers.position)?;
        let mut builder = self.launch(&self.kernels.advance);
        builder.arg(&position);
        // SAFETY: the position is one u32.
        unsafe { builder.launch(LaunchConfig::for_num_elems(1)) }.w()?;
        Ok(())
    }
}

/// One product of [`GpuDecoder::product`]: device addresses, sizes and coefficients.
struct Product {
    w: u64,
    x: u64,
    y: u64,
    out: usize,
    inp: usize,
    alpha: f32,
    accumulate: bool,
    bias: Option<u64>,
}

fn int(n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| candle_core::Error::Msg(format!("decode: {n} is too large")))
}

fn count(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| candle_core::Error::Msg(format!("decode: {n} is too large")))
}

mod launch;

#[cfg(test)]
mod tests;
