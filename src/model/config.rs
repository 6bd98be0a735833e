//! The decoder's hyper-parameters, read from a Hugging Face `config.json` as it is or from the
//! `llama.*` keys of a GGUF file.

use candle_core::quantized::gguf_file::Value;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Llama-3 style frequency scaling of RoPE (`rope_scaling` with `rope_type: llama3`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    #[serde(default, alias = "type")]
    pub rope_type: String,
    #[serde(default = "one")]
    pub factor: f64,
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    #[serde(default = "default_original_context")]
    pub original_max_position_embeddings: usize,
}

fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}
fn default_original_context() -> usize {
    8192
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_eps() -> f64 {
    1e-5
}
fn default_context() -> usize {
    2048
}

/// The architectures the decoder implements; Mistral and Qwen2 differ from Llama only in
/// details this config captures (sliding window is not used for training lengths; q/k/v bias).
pub const SUPPORTED_ARCHITECTURES: &[&str] =
    &["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "default_context")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Qwen2 puts a bias on q, k and v; Llama-family configs call it `attention_bias`.
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl LlamaConfig {
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// Reads and checks a `config.json`.
    pub fn from_json_file(path: &Path) -> Result<LlamaConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        let mut config: LlamaConfig =
            serde_json::from_str(&text).map_err(|e| invalid(format!("line {}: {e}", e.line())))?;
        if text.contains("\"Qwen2ForCausalLM\"") {
            config.attention_bias = true;
        }
        config
            .read_rope_parameters(&text)
            .map_err(|e| invalid(format!("rope_parameters: {e}")))?;
        if let Some(arch) = config
            .architectures
            .iter()
            .find(|a| !SUPPORTED_ARCHITECTURES.contains(&a.as_str()))
        {
            return Err(invalid(format!(
                "unsupported architecture {arch:?}; Lab Lens loads {}",
                SUPPORTED_ARCHITECTURES.join(", ")
            )));
        }
        config.check().map_err(invalid)?;
        Ok(config)
    }

    /// transformers 5 writes `rope_theta` and the scaling together under `rope_parameters`
    /// instead of the top-level keys; without this, such a config would silently get the
    /// default theta.
    fn read_rope_parameters(&mut self, text: &str) -> Result<(), serde_json::Error> {
        let json: serde_json::Value = serde_json::from_str(text)?;
        let Some(params) = json.get("rope_parameters").filter(|p| p.is_object()) else {
            return Ok(());
        };
        if let Some(theta) = params.get("rope_theta").and_then(serde_json::Value::as_f64) {
            self.rope_theta = theta;
        }
        let scaling: RopeScaling = serde_json::from_value(params.clone())?;
        if self.rope_scaling.is_none() && !matches!(scaling.rope_type.as_str(), "" | "default") {
            self.rope_scaling = Some(scaling);
        }
        Ok(())
    }

    /// Builds the config from GGUF metadata (`general.architecture` must be `llama`).
    pub fn from_gguf(
        metadata: &HashMap<String, Value>,
        path: &Path,
    ) -> Result<LlamaConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        };
        let arch = match metadata.get("general.architecture") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(invalid("missing general.architecture".into())),
        };
        if arch != "llama" && arch != "qwen2" && arch != "mistral" {
            return Err(invalid(format!(
                "unsupported architecture {arch:?}; Lab Lens loads GGUF files of the llama, mistral and qwen2 architectures"
            )));
        }
        let int = |key: &str| -> Result<usize, ConfigError> {
            let full = format!("{arch}.{key}");
            metadata
                .get(&full)
                .and_then(|v| v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from)))
                .map(|v| v as usize)
                .ok_or_else(|| invalid(format!("missing or non-integer {full}")))
        };
        let float = |key: &str, default: f64| -> f64 {
            metadata
                .get(&format!("{arch}.{key}"))
                .and_then(|v| v.to_f32().ok())
                .map_or(default, f64::from)
        };
        let heads = int("attention.head_count")?;
        let hidden = int("embedding_length")?;
        let vocab = match metadata.get("tokenizer.ggml.tokens") {
            Some(Value::Array(a)) => a.len(),
            _ => int("vocab_size")?,
        };
        let config = LlamaConfig {
            architectures: Vec::new(),
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: int("feed_forward_length")?,
            num_hidden_layers: int("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: Some(int("attention.head_count_kv").unwrap_or(heads)),
            head_dim: int("rope.dimension_count").ok(),
            rms_norm_eps: float("attention.layer_norm_rms_epsilon", 1e-5),
            rope_theta: float("rope.freq_base", 10_000.0),
            rope_scaling: None,
            max_position_embeddings: int("context_length").unwrap_or(2048),
            tie_word_embeddings: false,
            attention_bias: arch == "qwen2",
            bos_token_id: None,
            eos_token_id: None,
        };
        config.check().map_err(invalid)?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if let Some(s) = &self.rope_scaling
            && !matches!(s.rope_type.as_str(), "llama3" | "default" | "")
        {
            return Err(format!(
                "rope_scaling type {:?} is not supported (Lab Lens implements llama3 scaling)",
                s.rope_type
            ));
        }
        let heads = self.num_attention_heads;
        if heads == 0
            || self.hidden_size == 0
            || self.num_hidden_layers == 0
            || self.vocab_size == 0
        {
            return Err("hidden_size, num_attention_heads, num_hidden_layers and vocab_size must be positive".into());
        }
        if !heads.is_multiple_of(self.kv_heads()) {
            return Err(format!(
                "num_attention_heads ({heads}) is not a multiple of num_key_value_heads ({})",
                self.kv_heads()
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "head dimension {} must be even for RoPE",
                self.head_dim()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rope_parameters_of_transformers_5() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        let write = |rope: &str| {
            std::fs::write(
                &path,
                format!(
                    r#"{{"vocab_size":100,"hidden_size":64,"intermediate_size":128,
                       "num_hidden_layers":2,"num_attention_heads":4,"rope_parameters":{rope}}}"#
                ),
            )
            .expect("write");
        };
        write(r#"{"rope_theta":1000000.0,"rope_type":"default"}"#);
        let c = LlamaConfig::from_json_file(&path).expect("config");
        assert_eq!((c.rope_theta, c.rope_scaling), (1e6, None));

        write(
            r#"{"rope_theta":500000.0,"rope_type":"llama3","factor":32.0,"low_freq_factor":1.0,
                "high_freq_factor":4.0,"original_max_position_embeddings":8192}"#,
        );
        let c = LlamaConfig::from_json_file(&path).expect("config");
        assert_eq!(c.rope_theta, 5e5);
        assert_eq!(c.rope_scaling.as_ref().map(|s| s.factor), Some(32.0));

        write(r#"{"rope_theta":1.0,"factor":"big"}"#);
        let err = LlamaConfig::from_json_file(&path)
            .expect_err("bad factor")
            .to_string();
        assert!(err.contains("rope_parameters"), "{err}");
    }

    #[test]
    fn reads_a_hf_config_and_rejects_unknown_architectures() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"architectures":["LlamaForCausalLM"],"vocab_size":100,"hidden_size":64,
               "intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,
               "num_key_value_heads":2,"rope_theta":500000.0,"tie_word_embeddings":true,
               "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
               "high_freq_factor":4.0,"original_max_position_embeddings":8192}}"#,
        )
        .expect("write");
        let c = LlamaConfig::from_json_file(&path).expect("config");
        assert_eq!((c.kv_heads(), c.head_dim()), (2, 16));
        assert_eq!(c.rope_scaling.as_ref().map(|s| s.factor), Some(8.0));

        std::fs::write(&path, r#"{"architectures":["GPT2LMHeadModel"],"vocab_size":1,"hidden_size":1,"intermediate_size":1,"num_hidden_layers":1,"num_attention_heads":1}"#).expect("write");
        let err = LlamaConfig::from_json_file(&path)
            .expect_err("gpt2")
            .to_string();
        assert!(
            err.contains("config.json") && err.contains("GPT2LMHeadModel"),
            "{err}"
        );

        std::fs::write(&path, r#"{"vocab_size":10,"hidden_size":64,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":3}"#).expect("write");
        let err = LlamaConfig::from_json_file(&path)
            .expect_err("heads")
            .to_string();
        assert!(err.contains("not a multiple"), "{err}");
    }
}
