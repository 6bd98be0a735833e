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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::tokenizer::{Tokenizer, TokenizerError};
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer as _};

    /// A vocabulary just big enough to see pre-tokenization and merges at work: two control
    /// tokens, one user-defined token, single characters, and a few merged words.
    const TOKENS: &[(&str, i32)] = &[
        ("<|im_start|>", 3),
        ("<|im_end|>", 3),
        ("<note>", 4),
        ("a", 1),
        ("b", 1),
        ("c", 1),
        ("1", 1),
        ("2", 1),
        ("3", 1),
        ("4", 1),
        ("Ġ", 1),
        ("<", 1),
        (">", 1),
        ("|", 1),
        ("_", 1),
        ("ab", 1),
        ("Ġab", 1),
        ("abc", 1),
        ("12", 1),
        ("123", 1),
    ];
    const MERGES: &[&str] = &["a b", "Ġ ab", "1 2", "12 3"];

    pub(crate) fn tiny_metadata(pre: &str) -> HashMap<String, Value> {
        let strings = |items: Vec<&str>| {
            Value::Array(
                items
                    .into_iter()
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            )
        };
        HashMap::from([
            (
                "tokenizer.ggml.model".to_owned(),
                Value::String("gpt2".to_owned()),
            ),
            (
                "tokenizer.ggml.pre".to_owned(),
                Value::String(pre.to_owned()),
            ),
            (
                "tokenizer.ggml.tokens".to_owned(),
                strings(TOKENS.iter().map(|t| t.0).collect()),
            ),
            (
                "tokenizer.ggml.token_type".to_owned(),
                Value::Array(TOKENS.iter().map(|t| Value::I32(t.1)).collect()),
            ),
            ("tokenizer.ggml.merges".to_owned(), strings(MERGES.to_vec())),
            ("tokenizer.ggml.bos_token_id".to_owned(), Value::U32(0)),
            ("tokenizer.ggml.eos_token_id".to_owned(), Value::U32(1)),
        ])
    }

    fn words(pre: PreTokenizer, text: &str) -> Vec<String> {
        let mut pretokenized = PreTokenizedString::from(text);
        pre.build()
            .unwrap()
            .pre_tokenize(&mut pretokenized)
            .unwrap();
        pretokenized
            .get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(word, _, _)| word.to_owned())
            .collect()
    }

    fn tiny(pre: &str) -> Tokenizer {
        Tokenizer::from_gguf_metadata(&tiny_metadata(pre), Path::new("tiny.gguf")).unwrap()
    }

    fn error(metadata: &HashMap<String, Value>) -> String {
        let err = Tokenizer::from_gguf_metadata(metadata, Path::new("bad.gguf")).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("bad.gguf: "), "{message}");
        message
    }

    #[test]
    fn smollm_splits_every_digit() {
        assert_eq!(
            words(PreTokenizer::Smollm, "ab 1234"),
            ["ab", "Ġ", "1", "2", "3", "4"]
        );
    }

    #[test]
    fn llama3_groups_digits_by_three() {
        assert_eq!(
            words(PreTokenizer::Llama3, "ab 1234"),
            ["ab", "Ġ", "123", "4"]
        );
    }

    #[test]
    fn gpt2_keeps_a_number_with_its_space() {
        assert_eq!(words(PreTokenizer::Gpt2, "ab 1234"), ["ab", "Ġ1234"]);
    }

    #[test]
    fn default_isolates_punctuation_and_cuts_digit_runs() {
        assert_eq!(
            words(PreTokenizer::Default, "ab 1234!?"),
            ["ab", "Ġ", "123", "4", "!?"]
        );
    }

    #[test]
    fn only_llama3_contractions_ignore_case() {
        assert_eq!(words(PreTokenizer::Llama3, "I'LL"), ["I", "'LL"]);
        assert_eq!(words(PreTokenizer::Smollm, "I'LL"), ["I", "'", "LL"]);
        assert_eq!(words(PreTokenizer::Smollm, "I'll"), ["I", "'ll"]);
    }

    #[test]
    fn merges_build_words_and_digits_stay_apart_for_smollm() {
        let tokenizer = tiny("smollm");
        let id = |piece: &str| tokenizer.token_id(piece).unwrap();
        assert_eq!(
            tokenizer.encode("ab ab 123", false).unwrap(),
            [id("ab"), id("Ġab"), id("Ġ"), id("1"), id("2"), id("3")]
        );
        assert_eq!(tiny("llama-bpe").encode("123", false).unwrap(), [id("123")]);
    }

    #[test]
    fn llama3_takes_a_whole_word_from_the_vocabulary_without_merging() {
        let abc = tiny("smollm").token_id("abc").unwrap();
        assert_eq!(tiny("llama-bpe").encode("abc", false).unwrap(), [abc]);
        let smollm = tiny("smollm");
        let merged = [
            smollm.token_id("ab").unwrap(),
            smollm.token_id("c").unwrap(),
        ];
        assert_eq!(smollm.encode("abc", false).unwrap(), merged);
    }

    #[test]
    fn control_tokens_match_only_when_special_and_user_tokens_always() {
        let tokenizer = tiny("smollm");
        assert_eq!(tokenizer.encode("<|im_start|>ab", true).unwrap()[0], 0);
        let spelled = tokenizer.encode("<|im_start|>", false).unwrap();
        assert!(spelled.len() > 1 && !spelled.contains(&0), "{spelled:?}");
        assert_eq!(tokenizer.encode("<note>", false).unwrap(), [2]);
        assert_eq!(tokenizer.decode(&[0, 15, 1, 2], true).unwrap(), "ab<note>");
        assert_eq!(tokenizer.decode(&[0, 15], false).unwrap(), "<|im_start|>ab");
    }

    #[test]
    fn add_bos_follows_the_file_then_llama_cpp_defaults() {
        assert!(!tiny("smollm").add_bos());
        assert!(tiny("llama-bpe").add_bos());
        let mut metadata = tiny_metadata("llama-bpe");
        metadata.insert(
            "tokenizer.ggml.add_bos_token".to_owned(),
            Value::Bool(false),
        );
        let tokenizer = Tokenizer::from_gguf_metadata(&metadata, Path::new("t.gguf")).unwrap();
        assert!(!tokenizer.add_bos());
    }

    #[test]
    fn missing_tokens_are_named() {
        let mut metadata = tiny_metadata("smollm");
        metadata.remove("tokenizer.ggml.tokens");
        assert!(error(&metadata).contains("`tokenizer.ggml.tokens` is missing"));
    }

    #[test]
    fn tokens_of_the_wrong_type_are_named() {
        let mut metadata = tiny_metadata("smollm");
        metadata.insert("tokenizer.ggml.tokens".to_owned(), Value::U32(3));
        let message = error(&metadata);
        assert!(
            message.contains("`tokenizer.ggml.tokens` should be an array"),
            "{message}"
        );
    }

    #[test]
    fn merge_with_an_unknown_token_is_named() {
        let mut metadata = tiny_metadata("smollm");
        metadata.insert(
            "tokenizer.ggml.merges".to_owned(),
            Value::Array(vec![
                Value::String("a b".to_owned()),
                Value::String("a zz".to_owned()),
            ]),
        );
        let message = error(&metadata);
        assert!(message.contains("merge 1 `a zz` needs `zz`"), "{message}");
    }

    #[test]
    fn merge_without_a_space_is_rejected() {
        let mut metadata = tiny_metadata("smollm");
        metadata.insert(
            "tokenizer.ggml.merges".to_owned(),
            Value::Array(vec![Value::String("ab".to_owned())]),
        );
        assert!(error(&metadata).contains("has no space"));
    }

    #[test]
    fn unknown_pre_tokenizer_names_file_and_value() {
        let message = error(&tiny_metadata("klingon"));
        assert!(message.contains("pre-tokenizer `klingon`"), "{message}");
    }

    #[test]
    fn other_tokenizer_models_are_refused() {
        let mut metadata = tiny_metadata("smollm");
        metadata.insert(
            "tokenizer.ggml.model".to_owned(),
            Value::String("llama".to_owned()),
        );
        assert!(error(&metadata).contains("tokenizer model `llama`"));
    }

    #[test]
    fn token_types_must_cover_the_vocabulary() {
        let mut metadata = tiny_metadata("smollm");
        metadata.insert("tokenizer.ggml.token_type".to_owned(), Value::Array(vec![]));
        assert!(error(&metadata).contains("has 0 entries for 20 tokens"));
    }

    #[test]
    fn special_ids_outside_the_vocabulary_are_refused() {
        let mut metadata = tiny_metadata("smollm");
        metadata.insert("tokenizer.ggml.eos_token_id".to_owned(), Value::U32(999));
        assert!(error(&metadata).contains("token id 999 is outside the vocabulary of 20"));
    }

    #[test]
    fn decoding_an_unknown_id_is_an_error() {
        let err = tiny("smollm").decode(&[3, 20], false).unwrap_err();
        assert!(
            matches!(err, TokenizerError::UnknownId { id: 20, .. }),
            "{err}"
        );
    }
}
