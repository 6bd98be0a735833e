//! Lab Lens: a workbench for fine-tuning, evaluating and auditing language models that turn
//! clinical text into something a patient or a clinician can use.
//!
//! Layers, lowest first (a layer imports only those before it, and no two files import each
//! other; `tests/architecture.rs` checks both): `store` (atomic writes, folder locks), `job`
//! (the contract of long jobs: progress, stop, errors) → `data` (records, datasets, templates) →
//! `model` (the decoder, adapters, tokenizers, decoding) → `pipeline` (prompt to text, the one
//! way anything generates) → `project` (the project folder, its outputs and reviews) → `train` →
//! `eval` → `analysis` (bias, explanations) → `registry` (versions, aliases and their history,
//! quality gates, the CI pipeline over them) → `engine` (the GUI's background jobs), `serve` (the
//! HTTP API, with a model worker of its own) → `app` (the GUI), `cli` (the command line; it runs
//! the same job functions as the engine, and starts the GUI).

pub mod analysis;
pub mod app;
pub mod cli;
pub mod data;
pub mod engine;
pub mod eval;
pub mod job;
pub mod model;
pub mod pipeline;
pub mod project;
pub mod registry;
pub mod serve;
pub mod store;
pub mod train;

#[cfg(test)]
mod test_support;
