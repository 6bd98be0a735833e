//! The model layer: the Llama-family decoder with LoRA adapters, its configuration and the
//! sources its weights load from.

pub mod config;
pub mod generate;
pub mod linear;
pub mod llama;
pub mod lora;
pub mod score;
pub mod weights;
