//! The model layer, by capability, lowest first: `config`; `quant` (GGUF's legacy block types and
//! their products); `nn` (the frozen base weight, LoRA linear layers, dropout, attention and the
//! fused training ops, on the CPU and the GPU); `llama` (the decoder); `adapters` (attaching,
//! saving, loading and merging LoRA adapters); `tokenizer` (tokenizers, chat templates and the
//! encoded examples built from records); `decode` (the fast single-sequence decoders);
//! `generation` (generation and scoring); `loading` (where weights come from and how a model is
//! put together); `gpu`, `runtime` and `doctor` (the machine it runs on).

pub mod adapters;
pub mod config;
pub mod decode;
pub mod doctor;
pub mod generation;
pub mod gpu;
pub mod llama;
pub mod loading;
pub mod nn;
pub mod quant;
pub mod runtime;
pub mod tokenizer;
