//! The data layer: records and their loaders, validation, PHI scrubbing, clinical sections,
//! patient-level splits, prompt templates and the synthetic sample data generators.

pub mod dataset;
pub mod load;
pub mod phi;
pub mod record;
pub mod rng;
pub mod sections;
pub mod split;
pub mod synth;
pub mod template;
pub mod validate;
