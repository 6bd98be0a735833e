//! A byte-level BPE tokenizer trained on the corpus, with the ChatML control tokens, written as
//! a Hugging Face `tokenizer.json` + `tokenizer_config.json` pair that our loader and
//! `transformers` both read.

use crate::model::tokenizer::chat::CHATML;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// Separates documents in the training stream; also the BOS of every sequence.
pub const END_OF_TEXT: &str = "<|endoftext|>";
pub const IM_START: &str = "<|im_start|>";
/// Ends a chat turn; generation stops on it.
pub const IM_END: &str = "<|im_end|>";

/// Trains a tokenizer of at most `vocab_size` tokens on `texts`. The control tokens take ids
/// 0, 1 and 2 and are never split or learnt from the text.
pub fn train_tokenizer(texts: &[String], vocab_size: usize) -> Result<Tokenizer, String> {
    let specials: Vec<AddedToken> = [END_OF_TEXT, IM_START, IM_END]
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials.clone())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = TrainerWrapper::from(trainer);
    let mut tokenizer = Tokenizer::new(BPE::default());
    // GPT-2 style: no prefix space, so " word" and "word" stay distinct tokens.
    let byte_level = ByteLevel::default().add_prefix_space(false);
    tokenizer.with_pre_tokenizer(Some(byte_level));
    tokenizer.with_decoder(Some(byte_level));
    tokenizer
        .add_special_tokens(specials.clone())
        .map_err(|e| e.to_string())?;
    tokenizer
        .train(&mut trainer, texts.iter())
        .map_err(|e| e.to_string())?;
    Ok(tokenizer)
}

/// The `tokenizer_config.json` that names the special tokens and carries the chat template.
/// Every sequence starts with `<|endoftext|>`, which is how the training stream separates
/// conversations.
pub fn tokenizer_config(context: usize) -> serde_json::Value {
    serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": END_OF_TEXT,
        "eos_token": IM_END,
        "pad_token": END_OF_TEXT,
        "unk_token": null,
        "add_bos_token": true,
        "add_prefix_space": false,
        "model_max_length": context,
        "chat_template": CHATML,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tokenizer::chat::{ChatMessage, ChatTemplate};

    fn corpus() -> Vec<String> {
        (0..40)
            .map(|i| format!("Take aspirin {i} mg by mouth once a day. Call your doctor if the pain gets worse."))
            .collect()
    }

    #[test]
    fn trained_tokenizer_round_trips_and_loads_with_its_template() {
        let trained = train_tokenizer(&corpus(), 600).unwrap();
        assert_eq!(trained.token_to_id(END_OF_TEXT), Some(0));
        assert_eq!(trained.token_to_id(IM_END), Some(2));
        let vocab = trained.get_vocab_size(true);
        assert!(vocab > 256 + 3 && vocab <= 600, "{vocab}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        trained.save(&path, false).unwrap();
        let config = serde_json::to_string(&tokenizer_config(512)).unwrap();
        std::fs::write(dir.path().join("tokenizer_config.json"), config).unwrap();

        let tokenizer = crate::model::tokenizer::Tokenizer::from_file(&path).unwrap();
        assert_eq!((tokenizer.bos_id(), tokenizer.eos_id()), (Some(0), Some(2)));
        assert!(tokenizer.add_bos());
        // Merges learnt from the corpus make its words single tokens.
        let common = tokenizer.encode("Take aspirin by mouth", true).unwrap();
        assert_eq!(common.len(), 4, "{common:?}");
        // Bytes never seen in training still round-trip.
        let text = "Ünïcode stays: 5 °C";
        let ids = tokenizer.encode(text, true).unwrap();
        assert_eq!(tokenizer.decode(&ids, false).unwrap(), text);

        let template = ChatTemplate::from_hf_folder(dir.path(), &tokenizer)
            .unwrap()
            .unwrap();
        let rendered = template
            .render(&[ChatMessage::new("user", "hi")], true)
            .unwrap();
        let ids = tokenizer.encode(&rendered, true).unwrap();
        assert_eq!(ids.first(), Some(&1));
        assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 1);
    }
}
