//! The model layer: the Llama-family decoder with LoRA adapters, its configuration, the sources
//! its weights load from, the tokenizer and chat template that turn text into its input, and
//! scoring and generation on top.

mod attention;
pub mod blocks;
pub mod chat;
pub mod config;
mod decode;
pub mod device_ops;
pub mod doctor;
pub mod dropout;
pub mod example;
pub mod generate;
pub mod gpu;
mod head_cache;
pub mod linear;
pub mod llama;
pub mod load;
pub mod lora;
mod matmul;
pub mod ops;
pub mod pretrain;
pub mod runtime;
pub mod score;
mod team;
pub mod tokenizer;
pub mod weights;
