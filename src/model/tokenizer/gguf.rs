//! Rebuilds a byte-level BPE tokenizer from a GGUF file's `tokenizer.ggml.*` metadata, with the
//! pre-tokenizer llama.cpp would pick for the file's `tokenizer.ggml.pre` name.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use super::TokenizerError;

/// GPT-2's word pattern as llama.cpp writes it (without the trailing `\s+`, which changes
/// nothing because text between matches is kept as its own piece).
const GPT2_WORDS: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's word pattern: case-insensitive contractions, a leading non-letter glued to a word,
/// digits in groups of at most three, newlines kept with the punctuation before them.
const LLAMA3_WORDS: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token types (llama.cpp's `llama_token_type`) that need more than plain BPE.
const TYPE_UNKNOWN: i64 = 2;
const TYPE_CONTROL: i64 = 3;
const TYPE_USER_DEFINED: i64 = 4;

/// How text is cut into words before BPE; one variant per distinct llama.cpp definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PreTokenizer {
    /// llama.cpp's fallback when `tokenizer.ggml.pre` is absent or `default`.
    Default,
    Gpt2,
    /// Every digit alone, then GPT-2 words (also StarCoder and Refact).
    Smollm,
    Llama3,
}

impl PreTokenizer {
    pub(super) fn from_gguf_name(name: &str) -> Option<PreTokenizer> {
        match name {
            "default" => Some(PreTokenizer::Default),
            "gpt2" | "gpt-2" => Some(PreTokenizer::Gpt2),
            "smollm" | "starcoder" | "refact" => Some(PreTokenizer::Smollm),
            "llama-bpe" | "llama3" | "llama-v3" => Some(PreTokenizer::Llama3),
            _ => None,
        }
    }

    /// The regular expressions llama.cpp applies in turn; each splits the pieces left by the
    /// previous one, and the text between matches stays a piece of its own.
    fn patterns(self) -> &'static [&'static str] {
        match self {
            PreTokenizer::Default => &[
                r"[\p{P}\$\+<=>\^~\|]+",
                GPT2_WORDS,
                r"\p{N}+",
                "[0-9][0-9][0-9]",
            ],
            PreTokenizer::Gpt2 => &[GPT2_WORDS],
            PreTokenizer::Smollm => &[r"\p{N}", GPT2_WORDS],
            PreTokenizer::Llama3 => &[LLAMA3_WORDS],
        }
    }

    /// Llama 3 takes a word that is itself in the vocabulary as one token without merging.
    fn ignores_merges(self) -> bool {
        self == PreTokenizer::Llama3
    }

    /// llama.cpp's default for `add_bos_token` when the file does not say.
    fn adds_bos_by_default(self) -> bool {
        self == PreTokenizer::Llama3
    }

    pub(super) fn build(self) -> Result<Sequence, tokenizers::Error> {
        let mut steps = Vec::new();
        for pattern in self.patterns() {
            let split = Split::new(
                SplitPattern::Regex((*pattern).to_owned()),
                SplitDelimiterBehavior::Isolated,
                false,
            )?;
            steps.push(PreTokenizerWrapper::Split(split));
        }
        // The words are already cut, so byte-level only maps bytes to its printable alphabet.
        steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
            false, false, false,
        )));
        Ok(Sequence::new(steps))
    }
}

/// What a GGUF file says about its tokenizer, ready to wrap.
pub(super) struct GgufVocab {
    pub(super) tokenizer: tokenizers::Tokenizer,
    pub(super) bos: Option<u32>,
    pub(super) eos: Option<u32>,
    pub(super) eot: Option<u32>,
    pub(super) pad: Option<u32>,
    pub(super) add_bos: bool,
}

pub(super) fn build(
    metadata: &HashMap<String, Value>,
    source: &Path,
) -> Result<GgufVocab, TokenizerError> {
    let keys = Keys { metadata, source };
    let model = keys.string("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(TokenizerError::UnsupportedModel {
            path: source.to_path_buf(),
            model: model.to_owned(),
        });
    }
    let pre_name = keys
        .optional_string("tokenizer.ggml.pre")?
        .unwrap_or("default");
    let pre = PreTokenizer::from_gguf_name(pre_name).ok_or_else(|| {
        TokenizerError::UnknownPreTokenizer {
            path: source.to_path_buf(),
            name: pre_name.to_owned(),
        }
    })?;
    let tokens = keys.strings("tokenizer.ggml.tokens")?;
    let vocab: Vocab = tokens.iter().map(|t| (*t).to_owned()).zip(0u32..).collect();
    let merges = parse_merges(&keys.strings("tokenizer.ggml.merges")?, &vocab, source)?;
    let types = keys.token_types(tokens.len())?;

    let library = |e: tokenizers::Error| TokenizerError::Library {
        path: source.to_path_buf(),
        detail: e.to_string(),
    };
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(pre.ignores_merges())
        .build()
        .map_err(library)?;
    let mut tokenizer = tokenizers::Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre.build().map_err(library)?));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    tokenizer
        .add_special_tokens(added_tokens(&tokens, &types, true))
        .map_err(library)?;
    // llama.cpp matches user-defined tokens in any text, as Hugging Face does with its
    // non-special added tokens; only control tokens wait for `special = true`.
    tokenizer
        .add_tokens(added_tokens(&tokens, &types, false))
        .map_err(library)?;

    let id = |key: &str| keys.token_id(key, tokens.len());
    Ok(GgufVocab {
        tokenizer,
        bos: id("tokenizer.ggml.bos_token_id")?,
        eos: id("tokenizer.ggml.eos_token_id")?,
        eot: id("tokenizer.ggml.eot_token_id")?,
        pad: id("tokenizer.ggml.padding_token_id")?,
        add_bos: keys
            .optional_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(pre.adds_bos_by_default()),
    })
}

/// Control (and unknown) tokens when `special`, user-defined tokens otherwise.
fn added_tokens(tokens: &[&str], types: &[i64], special: bool) -> Vec<AddedToken> {
    tokens
        .iter()
        .zip(types)
        .filter(|(_, kind)| match **kind {
            TYPE_CONTROL | TYPE_UNKNOWN => special,
            TYPE_USER_DEFINED => !special,
            _ => false,
        })
        .map(|(token, _)| AddedToken::from((*token).to_owned(), special).normalized(false))
        .collect()
}

/// Merges are stored as "left right"; the left part may itself start with a space-like
/// character, so the separator is the first space after the first byte.
fn parse_merges(
    merges: &[&str],
    vocab: &Vocab,
    source: &Path,
) -> Result<Vec<(String, String)>, TokenizerError> {
    merges
        .iter()
        .enumerate()
        .map(|(index, merge)| {
            let bad = |problem: String| TokenizerError::BadMerge {
                path: source.to_path_buf(),
                index,
                merge: (*merge).to_owned(),
                problem,
            };
            let split = merge
                .char_indices()
                .skip(1)
                .find(|(_, c)| *c == ' ')
                .map(|(at, _)| at);
            let at = split.ok_or_else(|| bad("has no space between its two parts".to_owned()))?;
            let (left, right) = (&merge[..at], &merge[at + 1..]);
            for part in [left, right, &format!("{left}{right}")] {
                if !vocab.contains_key(part) {
                    return Err(bad(format!(
                        "needs `{part}`, which is not in the vocabulary"
                    )));
                }
            }
            Ok((left.to_owned(), right.to_owned()))
        })
        .collect()
}

/// Typed access to the metadata map, with errors that name the file and the key.
struct Keys<'a> {
    metadata: &'a HashMap<String, Value>,
    source: &'a Path,
}

impl<'a> Keys<'a> {
    fn wrong_type(&self, key: &str, expected: &str, found: &Value) -> TokenizerError {
        TokenizerError::WrongType {
            path: self.source.to_path_buf(),
            key: key.to_owned(),
            expected: expected.to_owned(),
            found: format!("{:?}", found.value_type()),
        }
    }

    fn string(&self, key: &str) -> Result<&'a str, TokenizerError> {
        self.optional_string(key)?
            .ok_or_else(|| TokenizerError::MissingKey {
                path: self.source.to_path_buf(),
                key: key.to_owned(),
            })
    }

    fn optional_string(&self, key: &str) -> Result<Option<&'a str>, TokenizerError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong_type(key, "a string", other)),
        }
    }

    fn optional_bool(&self, key: &str) -> Result<Option<bool>, TokenizerError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong_type(key, "a boolean", other)),
        }
    }

    fn array(&self, key: &str) -> Result<Option<&'a [Value]>, TokenizerError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(other) => Err(self.wrong_type(key, "an array", other)),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<&'a str>, TokenizerError> {
        let items = self.array(key)?.ok_or_else(|| TokenizerError::MissingKey {
            path: self.source.to_path_buf(),
            key: key.to_owned(),
        })?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.as_str()),
                other => Err(self.wrong_type(&format!("{key}[{i}]"), "a string", other)),
            })
            .collect()
    }

    /// Token types, or all "normal" when the file has none.
    fn token_types(&self, n_tokens: usize) -> Result<Vec<i64>, TokenizerError> {
        let key = "tokenizer.ggml.token_type";
        let Some(items) = self.array(key)? else {
            return Ok(vec![1; n_tokens]);
        };
        if items.len() != n_tokens {
            return Err(TokenizerError::Malformed {
                path: self.source.to_path_buf(),
                key: key.to_owned(),
                problem: format!("has {} entries for {n_tokens} tokens", items.len()),
            });
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                integer(item)
                    .ok_or_else(|| self.wrong_type(&format!("{key}[{i}]"), "an integer", item))
            })
            .collect()
    }

    fn token_id(&self, key: &str, n_tokens: usize) -> Result<Option<u32>, TokenizerError> {
        let Some(value) = self.metadata.get(key) else {
            return Ok(None);
        };
        let id = integer(value).ok_or_else(|| self.wrong_type(key, "an integer", value))?;
        match u32::try_from(id) {
            Ok(id) if (id as usize) < n_tokens => Ok(Some(id)),
            _ => Err(TokenizerError::Malformed {
                path: self.source.to_path_buf(),
                key: key.to_owned(),
                problem: format!("token id {id} is outside the vocabulary of {n_tokens} tokens"),
            }),
        }
    }
}

fn integer(value: &Value) -> Option<i64> {
    match *value {
        Value::U8(v) => Some(v.into()),
        Value::I8(v) => Some(v.into()),
        Value::U16(v) => Some(v.into()),
        Value::I16(v) => Some(v.into()),
        Value::U32(v) => Some(v.into()),
        Value::I32(v) => Some(v.into()),
        Value::U64(v) => i64::try_from(v).ok(),
        Value::I64(v) => Some(v),
        _ => None,
    }
}
