//! Audits of a model's outputs beyond its overall scores: whether it serves every demographic
//! group equally (`bias`).

pub mod bias;
