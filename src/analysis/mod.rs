//! Audits of a model's outputs beyond its overall scores: whether it serves every demographic
//! group equally (`bias`), and which parts of the input drove an output (`explain`).

pub mod bias;
pub mod explain;
