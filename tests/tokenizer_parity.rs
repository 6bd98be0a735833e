//! The SmolLM2 tokenizer rebuilt from the GGUF metadata against llama.cpp's own tokenization
//! (tests/fixtures/tokenizer_smollm2.jsonl, written by scripts/make-tokenizer-fixture.py), and
//! the GGUF's chat template rendered as the model expects.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use lablens::model::tokenizer::Tokenizer;
use lablens::model::tokenizer::chat::{ChatMessage, ChatTemplate};

const MODEL: &str = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
const FIXTURE: &str = "tests/fixtures/tokenizer_smollm2.jsonl";

/// The model is not in the repository; CI fetches it first, so a missing file is a failure.
fn smollm2() -> (HashMap<String, Value>, PathBuf) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(MODEL);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. The SmolLM2 GGUF is not in the repository: run scripts/fetch-smollm2.sh",
            path.display()
        )
    });
    let content = Content::read(&mut std::io::BufReader::new(file))
        .unwrap_or_else(|e| panic!("{}: not a readable GGUF file: {e}", path.display()));
    (content.metadata, path)
}

fn fixture() -> Vec<(String, Vec<u32>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let text = std::fs::read_to_string(&path).expect("the tokenizer fixture is committed");
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let row: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{FIXTURE} line {}: {e}", i + 1));
            let text = row["text"].as_str().expect("text is a string").to_owned();
            let ids = serde_json::from_value(row["ids"].clone()).expect("ids are integers");
            (text, ids)
        })
        .collect()
}

fn pieces(tokenizer: &Tokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&id| {
            tokenizer
                .id_to_piece(id)
                .unwrap_or_else(|| format!("<{id}?>"))
        })
        .collect()
}

#[test]
fn encodes_every_fixture_text_exactly_as_llama_cpp() {
    let (metadata, path) = smollm2();
    let tokenizer = Tokenizer::from_gguf_metadata(&metadata, &path).expect("SmolLM2 tokenizer");
    let cases = fixture();
    assert!(cases.len() >= 220, "fixture has only {} texts", cases.len());
    let mut mismatches = 0;
    for (text, expected) in &cases {
        let got = tokenizer.encode(text, true).expect("encodes");
        if &got != expected {
            if mismatches == 0 {
                eprintln!(
                    "first mismatch for {text:?}\n  llama.cpp: {expected:?}\n             {:?}\n  ours:      {got:?}\n             {:?}",
                    pieces(&tokenizer, expected),
                    pieces(&tokenizer, &got),
                );
            }
            mismatches += 1;
        }
    }
    assert_eq!(
        mismatches,
        0,
        "{mismatches} of {} texts differ",
        cases.len()
    );
}

#[test]
fn decoding_gives_back_every_fixture_text() {
    let (metadata, path) = smollm2();
    let tokenizer = Tokenizer::from_gguf_metadata(&metadata, &path).expect("SmolLM2 tokenizer");
    for (text, _) in fixture() {
        let ids = tokenizer.encode(&text, true).expect("encodes");
        assert_eq!(tokenizer.decode(&ids, false).expect("decodes"), text);
    }
}

#[test]
fn exposes_smollm2_special_tokens() {
    let (metadata, path) = smollm2();
    let tokenizer = Tokenizer::from_gguf_metadata(&metadata, &path).expect("SmolLM2 tokenizer");
    assert_eq!(tokenizer.vocab_size(), 49152);
    assert_eq!(tokenizer.bos_id(), Some(1));
    assert_eq!(tokenizer.eos_id(), Some(2));
    assert_eq!(tokenizer.pad_id(), Some(2));
    assert!(!tokenizer.add_bos());
    // <|im_end|> is EOS; <|endoftext|> also ends generation.
    assert_eq!(tokenizer.eos_ids(), vec![2, 0]);
    assert_eq!(tokenizer.id_to_piece(1).as_deref(), Some("<|im_start|>"));
    assert_eq!(tokenizer.token_id("Ġthe"), Some(260));
    // Without `special`, a control token written in the text is spelled out.
    let spelled = tokenizer.encode("<|im_end|>", false).expect("encodes");
    assert!(spelled.len() > 1 && !spelled.contains(&2), "{spelled:?}");
    let ids = tokenizer.encode("Hi<|im_end|>", true).expect("encodes");
    assert_eq!(tokenizer.decode(&ids, true).expect("decodes"), "Hi");
}

#[test]
fn smollm2_template_renders_chatml_with_generation_prompt() {
    let (metadata, path) = smollm2();
    let tokenizer = Tokenizer::from_gguf_metadata(&metadata, &path).expect("SmolLM2 tokenizer");
    let template = ChatTemplate::from_gguf_metadata(&metadata, &path, &tokenizer)
        .expect("template compiles")
        .expect("SmolLM2 carries a chat template");
    let messages = [
        ChatMessage::new("system", "Explain for a patient."),
        ChatMessage::new("user", "Hgb 11.1, Cr 1.1."),
    ];
    assert_eq!(
        template.render(&messages, true).expect("renders"),
        "<|im_start|>system\nExplain for a patient.<|im_end|>\n\
         <|im_start|>user\nHgb 11.1, Cr 1.1.<|im_end|>\n<|im_start|>assistant\n"
    );
}
