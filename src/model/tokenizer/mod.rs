//! The tokenizer every model source shares: byte-level BPE rebuilt from GGUF metadata or read
//! from a Hugging Face `tokenizer.json`, with the special tokens generation and chat need.

pub mod chat;
pub mod example;
mod gguf;

#[cfg(test)]
pub(crate) use gguf::tests::tiny_metadata;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;

/// Tokens that end an assistant turn in the chat formats Lab Lens knows; generation stops on
/// any of them that the vocabulary holds as a special token.
const END_OF_TURN: &[&str] = &[
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<end_of_turn>",
    "<|end|>",
];

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: metadata key `{key}` is missing")]
    MissingKey { path: PathBuf, key: String },
    #[error("{path}: metadata key `{key}` should be {expected}, found {found}")]
    WrongType {
        path: PathBuf,
        key: String,
        expected: String,
        found: String,
    },
    #[error("{path}: `{key}` {problem}")]
    Malformed {
        path: PathBuf,
        key: String,
        problem: String,
    },
    #[error("{path}: tokenizer model `{model}` is not supported (only byte-level BPE, `gpt2`, is)")]
    UnsupportedModel { path: PathBuf, model: String },
    #[error(
        "{path}: pre-tokenizer `{name}` (tokenizer.ggml.pre) is not supported; \
         known: smollm, starcoder, refact, llama-bpe, llama3, llama-v3, gpt2, default"
    )]
    UnknownPreTokenizer { path: PathBuf, name: String },
    #[error("{path}: merge {index} `{merge}` {problem}")]
    BadMerge {
        path: PathBuf,
        index: usize,
        merge: String,
        problem: String,
    },
    #[error("{path}: token id {id} is outside the vocabulary of {vocab_size} tokens")]
    UnknownId {
        path: PathBuf,
        id: u32,
        vocab_size: usize,
    },
    #[error("{path}: {detail}")]
    Library { path: PathBuf, detail: String },
}

/// Each token's byte span `(start, end)` in the encoded text.
pub type TokenSpans = Vec<(usize, usize)>;

/// A loaded tokenizer. `encode` never adds BOS: callers prepend [`Tokenizer::bos_id`] when
/// [`Tokenizer::add_bos`] says the model expects it.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// Control tokens written in the text become the control token.
    literal: tokenizers::Tokenizer,
    /// Control tokens written in the text are tokenized as ordinary text.
    plain: tokenizers::Tokenizer,
    source: PathBuf,
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
    eos_ids: Vec<u32>,
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes; `source` is the file, named in errors.
    pub fn from_gguf_metadata(
        metadata: &HashMap<String, Value>,
        source: &Path,
    ) -> Result<Tokenizer, TokenizerError> {
        let vocab = gguf::build(metadata, source)?;
        let extra_eos: Vec<u32> = vocab.eot.into_iter().collect();
        Ok(Tokenizer::assemble(
            vocab.tokenizer,
            source,
            SpecialIds {
                bos: vocab.bos,
                eos: vocab.eos,
                pad: vocab.pad,
                add_bos: vocab.add_bos,
            },
            &extra_eos,
        ))
    }

    /// Reads a Hugging Face `tokenizer.json`, and the special tokens from a
    /// `tokenizer_config.json` beside it when there is one.
    pub fn from_file(path: &Path) -> Result<Tokenizer, TokenizerError> {
        let tokenizer =
            tokenizers::Tokenizer::from_file(path).map_err(|e| TokenizerError::Library {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
        let config_path = path.with_file_name("tokenizer_config.json");
        let ids = if config_path.is_file() {
            SpecialIds::from_hf_config(&config_path, &tokenizer)?
        } else {
            SpecialIds::from_post_processor(&tokenizer, None, None)
        };
        Ok(Tokenizer::assemble(tokenizer, path, ids, &[]))
    }

    fn assemble(
        literal: tokenizers::Tokenizer,
        source: &Path,
        ids: SpecialIds,
        extra_eos: &[u32],
    ) -> Tokenizer {
        let mut plain = literal.clone();
        plain.set_encode_special_tokens(true);
        let added = literal.get_added_tokens_decoder();
        let named_ends = END_OF_TURN.iter().filter_map(|name| {
            let id = literal.token_to_id(name)?;
            added.get(&id).filter(|t| t.special).map(|_| id)
        });
        let mut eos_ids: Vec<u32> = Vec::new();
        for id in ids
            .eos
            .into_iter()
            .chain(extra_eos.iter().copied())
            .chain(named_ends)
        {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
        Tokenizer {
            literal,
            plain,
            source: source.to_path_buf(),
            bos: ids.bos,
            eos: ids.eos,
            pad: ids.pad,
            add_bos: ids.add_bos,
            eos_ids,
        }
    }

    /// Token ids for `text`. With `special`, control tokens written in the text (such as
    /// `<|im_start|>`) become those tokens; without it they are spelled out as text.
    pub fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>, TokenizerError> {
        let tokenizer = if special { &self.literal } else { &self.plain };
        let encoding = tokenizer.encode(text, false).map_err(|e| self.library(e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids for `text` (as [`Tokenizer::encode`] gives them) with each token's byte span
    /// in `text`.
    pub fn encode_with_offsets(
        &self,
        text: &str,
        special: bool,
    ) -> Result<(Vec<u32>, TokenSpans), TokenizerError> {
        let tokenizer = if special { &self.literal } else { &self.plain };
        let encoding = tokenizer.encode(text, false).map_err(|e| self.library(e))?;
        Ok((encoding.get_ids().to_vec(), encoding.get_offsets().to_vec()))
    }

    /// The text of `ids`; with `skip_special`, control tokens are left out.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        let vocab_size = self.vocab_size();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(TokenizerError::UnknownId {
                path: self.source.clone(),
                id,
                vocab_size,
            });
        }
        self.literal
            .decode(ids, skip_special)
            .map_err(|e| self.library(e))
    }

    /// The vocabulary's own spelling of a token, e.g. `Ġthe` for " the".
    pub fn id_to_piece(&self, id: u32) -> Option<String> {
        self.literal.id_to_token(id)
    }

    pub fn token_id(&self, piece: &str) -> Option<u32> {
        self.literal.token_to_id(piece)
    }

    pub fn vocab_size(&self) -> usize {
        self.literal.get_vocab_size(true)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }

    /// Whether the model was trained with BOS at the start of every sequence.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Every token that ends generation: EOS, then end-of-turn tokens such as `<|im_end|>`.
    pub fn eos_ids(&self) -> Vec<u32> {
        self.eos_ids.clone()
    }

    fn library(&self, e: tokenizers::Error) -> TokenizerError {
        TokenizerError::Library {
            path: self.source.clone(),
            detail: e.to_string(),
        }
    }
}

struct SpecialIds {
    bos: Option<u32>,
    eos: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
}

impl SpecialIds {
    fn from_hf_config(
        path: &Path,
        tokenizer: &tokenizers::Tokenizer,
    ) -> Result<SpecialIds, TokenizerError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let config: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| TokenizerError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        let id = |key: &str| -> Result<Option<u32>, TokenizerError> {
            let name = match config.get(key) {
                None | Some(serde_json::Value::Null) => return Ok(None),
                Some(serde_json::Value::String(s)) => s.as_str(),
                Some(entry) => entry
                    .get("content")
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(|| TokenizerError::Malformed {
                        path: path.to_path_buf(),
                        key: key.to_owned(),
                        problem: "is neither a string nor an object with `content`".to_owned(),
                    })?,
            };
            tokenizer
                .token_to_id(name)
                .map(Some)
                .ok_or_else(|| TokenizerError::Malformed {
                    path: path.to_path_buf(),
                    key: key.to_owned(),
                    problem: format!("names `{name}`, which is not in the vocabulary"),
                })
        };
        let mut ids =
            SpecialIds::from_post_processor(tokenizer, id("bos_token")?, id("eos_token")?);
        ids.pad = id("pad_token")?;
        if let Some(flag) = config
            .get("add_bos_token")
            .and_then(serde_json::Value::as_bool)
        {
            ids.add_bos = flag;
        }
        Ok(ids)
    }

    /// Without a config flag, BOS is expected when the file's post-processor adds it.
    fn from_post_processor(
        tokenizer: &tokenizers::Tokenizer,
        bos: Option<u32>,
        eos: Option<u32>,
    ) -> SpecialIds {
        let first = tokenizer
            .encode("", true)
            .ok()
            .and_then(|e| e.get_ids().first().copied());
        let add_bos = bos.is_some() && first == bos;
        SpecialIds {
            bos,
            eos,
            pad: None,
            add_bos,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes the tiny GGUF-built tokenizer as a Hugging Face folder with `config` beside it.
    fn hf_folder(config: Option<&str>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let gguf = Tokenizer::from_gguf_metadata(&tiny_metadata("smollm"), Path::new("t.gguf"));
        let path = dir.path().join("tokenizer.json");
        gguf.unwrap().literal.save(&path, false).unwrap();
        if let Some(config) = config {
            std::fs::write(dir.path().join("tokenizer_config.json"), config).unwrap();
        }
        (dir, path)
    }

    #[test]
    fn tokenizer_json_takes_special_tokens_from_its_config() {
        let config = r#"{"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"},
                         "add_bos_token": true}"#;
        let (_dir, path) = hf_folder(Some(config));
        let tokenizer = Tokenizer::from_file(&path).unwrap();
        assert_eq!((tokenizer.bos_id(), tokenizer.eos_id()), (Some(0), Some(1)));
        assert!(tokenizer.add_bos());
        assert_eq!(tokenizer.eos_ids(), [1]);
        let ab = tokenizer.token_id("ab").unwrap();
        assert_eq!(tokenizer.encode("<|im_start|>ab", true).unwrap(), [0, ab]);
    }

    #[test]
    fn tokenizer_json_without_config_has_no_bos() {
        let (_dir, path) = hf_folder(None);
        let tokenizer = Tokenizer::from_file(&path).unwrap();
        assert_eq!(tokenizer.bos_id(), None);
        assert!(!tokenizer.add_bos());
    }

    #[test]
    fn config_naming_an_unknown_token_is_an_error() {
        let (_dir, path) = hf_folder(Some(r#"{"eos_token": "</s>"}"#));
        let message = Tokenizer::from_file(&path).unwrap_err().to_string();
        assert!(
            message.contains("tokenizer_config.json: `eos_token` names `</s>`"),
            "{message}"
        );
    }

    #[test]
    fn unreadable_tokenizer_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, "{ not json").unwrap();
        let message = Tokenizer::from_file(&path).unwrap_err().to_string();
        assert!(
            message.starts_with(&path.display().to_string()),
            "{message}"
        );
    }
}
