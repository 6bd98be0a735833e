//! The model layer: what turns text into token ids and conversations into prompts for the
//! language models Lab Lens loads.

pub mod chat;
pub mod tokenizer;
