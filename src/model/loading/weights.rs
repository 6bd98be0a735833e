//! Where a decoder's weights come from: a Hugging Face folder of safetensors, a GGUF file (kept
//! quantized and frozen, or dequantized on request), or tensors in memory. Every source answers
//! by Hugging Face name, so the decoder is built one way.

use crate::model::config::LlamaConfig;
use crate::model::llama::{Attention, Block, Llama, Mlp, Rope};
use crate::model::nn::linear::LoraLinear;
use crate::model::nn::weight::BaseWeight;
use crate::model::quant::BlockMatrix;
use candle_core::quantized::{QMatMul, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}: tensor {name}: {message}")]
    Tensor {
        path: PathBuf,
        name: String,
        message: String,
    },
}

/// Tensors by Hugging Face name (`model.layers.0.self_attn.q_proj.weight`).
pub trait TensorSource {
    fn path(&self) -> &Path;
    fn contains(&self, name: &str) -> bool;
    /// A tensor as dense f32 on `device`.
    fn dense(&mut self, name: &str, device: &Device) -> Result<Tensor, WeightsError>;
    /// A linear layer's weight `[out, in]`, quantized where the source is and it was asked for.
    fn linear(&mut self, name: &str, device: &Device) -> Result<BaseWeight, WeightsError> {
        self.dense(name, device).map(BaseWeight::Dense)
    }
}

fn tensor_error(path: &Path, name: &str, e: impl std::fmt::Display) -> WeightsError {
    WeightsError::Tensor {
        path: path.to_path_buf(),
        name: name.to_string(),
        message: e.to_string(),
    }
}

/// Tensors already in memory (tests, the embedded model).
pub struct MemorySource {
    pub path: PathBuf,
    pub tensors: HashMap<String, Tensor>,
}

impl TensorSource for MemorySource {
    fn path(&self) -> &Path {
        &self.path
    }
    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
    fn dense(&mut self, name: &str, device: &Device) -> Result<Tensor, WeightsError> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| tensor_error(&self.path, name, "missing"))?;
        t.to_dtype(DType::F32)
            .and_then(|t| t.to_device(device))
            .map_err(|e| tensor_error(&self.path, name, e))
    }
}

impl MemorySource {
    /// Reads one or more safetensors files (a sharded checkpoint is several).
    pub fn from_safetensors(files: &[PathBuf], label: &Path) -> Result<MemorySource, WeightsError> {
        let mut tensors = HashMap::new();
        for f in files {
            let part = candle_core::safetensors::load(f, &Device::Cpu).map_err(|e| {
                WeightsError::File {
                    path: f.clone(),
                    message: format!("not a readable safetensors file: {e}"),
                }
            })?;
            tensors.extend(part);
        }
        Ok(MemorySource {
            path: label.to_path_buf(),
            tensors,
        })
    }
}

/// A GGUF file of the llama family. Its q/k rows are stored in the interleaved RoPE order of
/// llama.cpp; they are put back in Hugging Face order on load so that one decoder and one
/// adapter layout serve every source.
pub struct GgufSource {
    path: PathBuf,
    content: gguf_file::Content,
    file: std::fs::File,
    dequantize: bool,
    permuted_qk: bool,
    heads: usize,
    kv_heads: usize,
}

/// The GGUF name of a Hugging Face tensor name.
fn gguf_name(hf: &str) -> Option<String> {
    let direct = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(d) = direct {
        return Some(d.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, tail) = rest.split_once('.')?;
    let (module, kind) = tail.rsplit_once('.')?;
    let short = match module {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        _ => return None,
    };
    Some(format!("blk.{layer}.{short}.{kind}"))
}

/// Row order of llama.cpp's q/k permutation undone: Hugging Face row `h*d + half*d/2 + j` is
/// GGUF row `h*d + 2*j + half`.
fn unpermuted_rows(heads: usize, rows: usize) -> Vec<usize> {
    let d = rows / heads;
    (0..rows)
        .map(|r| {
            let (h, within) = (r / d, r % d);
            let (half, j) = (within / (d / 2), within % (d / 2));
            h * d + 2 * j + half
        })
        .collect()
}

impl GgufSource {
    pub fn open(path: &Path, dequantize: bool) -> Result<(GgufSource, LlamaConfig), WeightsError> {
        let file_error = |message: String| WeightsError::File {
            path: path.to_path_buf(),
            message,
        };
        let mut file = std::fs::File::open(path).map_err(|e| file_error(e.to_string()))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| file_error(format!("not a readable GGUF file: {e}")))?;
        let cfg = LlamaConfig::from_gguf(&content.metadata, path)
            .map_err(|e| file_error(e.to_string()))?;
        let arch = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok().cloned())
            .unwrap_or_default();
        let source = GgufSource {
            path: path.to_path_buf(),
            permuted_qk: arch == "llama",
            heads: cfg.num_attention_heads,
            kv_heads: cfg.kv_heads(),
            content,
            file,
            dequantize,
        };
        Ok((source, cfg))
    }

    pub fn metadata(&self) -> &HashMap<String, gguf_file::Value> {
        &self.content.metadata
    }

    fn qtensor(&mut self, hf: &str, device: &Device) -> Result<QTensor, WeightsError> {
        let name = gguf_name(hf).ok_or_else(|| tensor_error(&self.path, hf, "no GGUF name"))?;
        let q = self
            .content
            .tensor(&mut self.file, &name, device)
            .map_err(|e| tensor_error(&self.path, &name, e))?;
        let heads = if hf.ends_with("q_proj.weight") || hf.ends_with("q_proj.bias") {
            Some(self.heads)
        } else if hf.ends_with("k_proj.weight") || hf.ends_with("k_proj.bias") {
            Some(self.kv_heads)
        } else {
            None
        };
        match heads.filter(|_| self.permuted_qk) {
            Some(h) => {
                unpermute_qtensor(&q, h, device).map_err(|e| tensor_error(&self.path, &name, e))
            }
            None => Ok(q),
        }
    }
}

/// Moves whole rows of a (possibly quantized) tensor: each row is a run of complete blocks.
fn unpermute_qtensor(q: &QTensor, heads: usize, device: &Device) -> candle_core::Result<QTensor> {
    let dims = q.shape().dims().to_vec();
    let rows = dims[0];
    let data = q.data()?;
    let row_bytes = data.len() / rows;
    let mut out = Vec::with_capacity(data.len());
    for src in unpermuted_rows(heads, rows) {
        out.extend_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
    }
    candle_core::quantized::ggml_file::qtensor_from_ggml(q.dtype(), &out, dims, device)
}

impl TensorSource for GgufSource {
    fn path(&self) -> &Path {
        &self.path
    }
    fn contains(&self, name: &str) -> bool {
        gguf_name(name).is_some_and(|g| self.content.tensor_infos.contains_key(&g))
    }
    fn dense(&mut self, name: &str, device: &Device) -> Result<Tensor, WeightsError> {
        let q = self.qtensor(name, device)?;
        q.dequantize(device)
            .map_err(|e| tensor_error(&self.path, name, e))
    }
    fn linear(&mut self, name: &str, device: &Device) -> Result<BaseWeight, WeightsError> {
        let q = self.qtensor(name, device)?;
        if self.dequantize {
            return q
                .dequantize(device)
                .map(BaseWeight::Dense)
                .map_err(|e| tensor_error(&self.path, name, e));
        }
        let blocks = match device {
            Device::Cpu => BlockMatrix::from_qtensor(&q),
            _ => Ok(None),
        };
        match blocks {
            Ok(Some(b)) => Ok(BaseWeight::Blocks(Arc::new(b))),
            Ok(None) => QMatMul::from_qtensor(q).map(BaseWeight::Quantized),
            Err(e) => Err(e),
        }
        .map_err(|e| tensor_error(&self.path, name, e))
    }
}

fn check_shape(
    src: &dyn TensorSource,
    name: &str,
    got: (usize, usize),
    want: (usize, usize),
) -> Result<(), WeightsError> {
    if got == want {
        Ok(())
    } else {
        Err(tensor_error(
            src.path(),
            name,
            format!("shape {got:?} does not match the config, which implies {want:?}"),
        ))
    }
}

fn linear(
    src: &mut dyn TensorSource,
    prefix: &str,
    shape: (usize, usize),
    bias: bool,
    device: &Device,
) -> Result<LoraLinear, WeightsError> {
    let name = format!("{prefix}.weight");
    let w = src.linear(&name, device)?;
    let dims = w.dims().map_err(|e| tensor_error(src.path(), &name, e))?;
    check_shape(src, &name, dims, shape)?;
    let b = if bias {
        Some(src.dense(&format!("{prefix}.bias"), device)?)
    } else {
        None
    };
    Ok(LoraLinear::new(w, b))
}

fn block(
    src: &mut dyn TensorSource,
    cfg: &LlamaConfig,
    i: usize,
    device: &Device,
) -> Result<Block, WeightsError> {
    let p = format!("model.layers.{i}");
    let (h, hd, kv) = (cfg.hidden_size, cfg.head_dim(), cfg.kv_heads());
    let q_out = cfg.num_attention_heads * hd;
    let bias = cfg.attention_bias;
    let attn = Attention {
        q_proj: linear(
            src,
            &format!("{p}.self_attn.q_proj"),
            (q_out, h),
            bias,
            device,
        )?,
        k_proj: linear(
            src,
            &format!("{p}.self_attn.k_proj"),
            (kv * hd, h),
            bias,
            device,
        )?,
        v_proj: linear(
            src,
            &format!("{p}.self_attn.v_proj"),
            (kv * hd, h),
            bias,
            device,
        )?,
        o_proj: linear(
            src,
            &format!("{p}.self_attn.o_proj"),
            (h, q_out),
            false,
            device,
        )?,
        n_heads: cfg.num_attention_heads,
        n_kv_heads: kv,
        head_dim: hd,
    };
    let i_size = cfg.intermediate_size;
    let mlp = Mlp {
        gate_proj: linear(
            src,
            &format!("{p}.mlp.gate_proj"),
            (i_size, h),
            false,
            device,
        )?,
        up_proj: linear(src, &format!("{p}.mlp.up_proj"), (i_size, h), false, device)?,
        down_proj: linear(
            src,
            &format!("{p}.mlp.down_proj"),
            (h, i_size),
            false,
            device,
        )?,
    };
    Ok(Block {
        attn,
        mlp,
        input_norm: src.dense(&format!("{p}.input_layernorm.weight"), device)?,
        post_attention_norm: src.dense(&format!("{p}.post_attention_layernorm.weight"), device)?,
    })
}

/// Builds the decoder from `src`, checking every shape against `cfg`.
pub fn build_llama(
    src: &mut dyn TensorSource,
    cfg: &LlamaConfig,
    max_len: usize,
    device: &Device,
) -> Result<Llama, WeightsError> {
    let embed_name = "model.embed_tokens.weight";
    let embed = src.linear(embed_name, device)?;
    let dims = embed
        .dims()
        .map_err(|e| tensor_error(src.path(), embed_name, e))?;
    check_shape(src, embed_name, dims, (cfg.vocab_size, cfg.hidden_size))?;
    let layers = (0..cfg.num_hidden_layers)
        .map(|i| block(src, cfg, i, device))
        .collect::<Result<Vec<_>, _>>()?;
    let tied_head = cfg.tie_word_embeddings || !src.contains("lm_head.weight");
    let lm_head = if tied_head {
        embed.clone()
    } else {
        src.linear("lm_head.weight", device)?
    };
    let rope = Rope::new(cfg, max_len, device).map_err(|e| WeightsError::File {
        path: src.path().to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(Llama {
        cfg: cfg.clone(),
        embed,
        layers,
        norm: src.dense("model.norm.weight", device)?,
        lm_head,
        tied_head,
        rope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp: reshape (heads, 2, d/2) → swap → (heads, d/2, 2).
        let (heads, d) = (2, 8);
        let hf: Vec<usize> = (0..heads * d).collect();
        let mut gguf = vec![0; heads * d];
        for h in 0..heads {
            for half in 0..2 {
                for j in 0..d / 2 {
                    gguf[h * d + 2 * j + half] = hf[h * d + half * d / 2 + j];
                }
            }
        }
        let back: Vec<usize> = unpermuted_rows(heads, heads * d)
            .iter()
            .map(|&r| gguf[r])
            .collect();
        assert_eq!(back, hf);
    }

    #[test]
    fn names_map_to_gguf() {
        assert_eq!(
            gguf_name("model.layers.12.self_attn.o_proj.weight").as_deref(),
            Some("blk.12.attn_output.weight")
        );
        assert_eq!(
            gguf_name("model.layers.0.post_attention_layernorm.weight").as_deref(),
            Some("blk.0.ffn_norm.weight")
        );
        assert_eq!(gguf_name("model.rotary.inv_freq"), None);
    }
}
