//! Analyses of a trained model's behaviour beyond its metrics: which parts of the input drove
//! an output (`explain`).

pub mod explain;
