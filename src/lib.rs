//! Lab Lens: a workbench for fine-tuning, evaluating and auditing language models that turn
//! clinical text into something a patient or a clinician can use.
//!
//! Layers, top to bottom: `app` (GUI) and `cli` → `engine` → `train`, `eval`, `analysis` →
//! `pipeline` (prompt → text, the one way anything generates) → `model` → `data`; `project` is
//! the persistence layer.

pub mod analysis;
pub mod app;
pub mod cli;
pub mod data;
pub mod engine;
pub mod eval;
pub mod model;
pub mod pipeline;
pub mod project;
pub mod train;

#[cfg(test)]
mod test_support;
