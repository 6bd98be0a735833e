//! LIME's local surrogate, as `lime.lime_base.LimeBase` fits it: perturbation masks drawn as
//! `lime_text` draws them, cosine distance x 100 to the unperturbed input, the kernel
//! exp(-d^2 / w^2), and a ridge regression (alpha 1, with intercept) weighted by the kernel.
//! Pure: no model here; the caller scores the perturbed inputs.

use crate::data::rng::SeededRng;
use serde::{Deserialize, Serialize};

/// The kernel width LIME's text explainer uses.
pub const KERNEL_WIDTH: f64 = 25.0;

/// The surrogate's ridge penalty (sklearn's `Ridge()` default, which LimeBase uses).
pub const RIDGE_ALPHA: f64 = 1.0;

/// A fitted surrogate: one weight per feature, the intercept and the weighted R^2 of the fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Surrogate {
    pub weights: Vec<f64>,
    pub intercept: f64,
    pub r2: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimeError {
    #[error("LIME needs at least 2 samples and 1 feature (got {samples} samples of {features})")]
    TooSmall { samples: usize, features: usize },
    #[error("sample {row} has {found} mask entries, expected {expected}")]
    Ragged {
        row: usize,
        found: usize,
        expected: usize,
    },
    #[error("{what} has {found} values for {expected} samples")]
    Length {
        what: &'static str,
        found: usize,
        expected: usize,
    },
    #[error("the weighted ridge system is not positive definite (kernel weights all zero?)")]
    Singular,
}

/// `samples` masks over `features` (true: the feature is kept). The first is the unperturbed
/// input; each other removes k features, k uniform in 1..=features, chosen without replacement.
pub fn sample_masks(features: usize, samples: usize, seed: u64) -> Vec<Vec<bool>> {
    let mut rng = SeededRng::new(seed);
    let mut masks = vec![vec![true; features]];
    let mut order: Vec<usize> = (0..features).collect();
    for _ in 1..samples {
        let k = 1 + rng.below(features.max(1));
        rng.shuffle(&mut order);
        let mut mask = vec![true; features];
        for &f in order.iter().take(k) {
            mask[f] = false;
        }
        masks.push(mask);
    }
    masks.truncate(samples);
    masks
}

/// Cosine distance x 100 between a mask and the all-kept mask: `1 - sqrt(kept / features)`;
/// 100 when nothing is kept (sklearn's convention for a zero vector).
pub fn distance(mask: &[bool]) -> f64 {
    let kept = mask.iter().filter(|k| **k).count();
    if mask.is_empty() {
        return 0.0;
    }
    (1.0 - (kept as f64 / mask.len() as f64).sqrt()) * 100.0
}

/// The exponential kernel `exp(-d^2 / w^2)`.
pub fn kernel(d: f64, width: f64) -> f64 {
    (-(d * d) / (width * width)).exp()
}

/// Ridge regression of `targets` on the masks (as 0/1), each sample weighted by `weights`,
/// with an unpenalised intercept: sklearn's `Ridge(alpha).fit(X, y, sample_weight)`.
pub fn weighted_ridge(
    masks: &[Vec<bool>],
    targets: &[f64],
    weights: &[f64],
    alpha: f64,
) -> Result<Surrogate, LimeError> {
    let n = masks.len();
    let d = masks.first().map_or(0, Vec::len);
    if n < 2 || d == 0 {
        return Err(LimeError::TooSmall {
            samples: n,
            features: d,
        });
    }
    for (what, len) in [("targets", targets.len()), ("weights", weights.len())] {
        if len != n {
            return Err(LimeError::Length {
                what,
                found: len,
                expected: n,
            });
        }
    }
    if let Some((row, m)) = masks.iter().enumerate().find(|(_, m)| m.len() != d) {
        return Err(LimeError::Ragged {
            row,
            found: m.len(),
            expected: d,
        });
    }
    let x = |i: usize, j: usize| if masks[i][j] { 1.0 } else { 0.0 };
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return Err(LimeError::Singular);
    }
    let x_mean: Vec<f64> = (0..d)
        .map(|j| (0..n).map(|i| weights[i] * x(i, j)).sum::<f64>() / total)
        .collect();
    let y_mean = (0..n).map(|i| weights[i] * targets[i]).sum::<f64>() / total;
    // Normal equations of the centred, weighted problem: (Xc' W Xc + alpha I) b = Xc' W yc.
    let mut a = vec![0.0; d * d];
    let mut rhs = vec![0.0; d];
    let mut row = vec![0.0; d];
    for i in 0..n {
        for (j, r) in row.iter_mut().enumerate() {
            *r = x(i, j) - x_mean[j];
        }
        let w = weights[i];
        let yc = targets[i] - y_mean;
        for j in 0..d {
            let wr = w * row[j];
            rhs[j] += wr * yc;
            for k in j..d {
                a[j * d + k] += wr * row[k];
            }
        }
    }
    for j in 0..d {
        a[j * d + j] += alpha;
        for k in 0..j {
            a[j * d + k] = a[k * d + j];
        }
    }
    let coef = cholesky_solve(&mut a, &rhs, d).ok_or(LimeError::Singular)?;
    let intercept = y_mean - coef.iter().zip(&x_mean).map(|(c, m)| c * m).sum::<f64>();
    let predict = |i: usize| intercept + (0..d).map(|j| coef[j] * x(i, j)).sum::<f64>();
    let residual: f64 = (0..n)
        .map(|i| weights[i] * (targets[i] - predict(i)).powi(2))
        .sum();
    let spread: f64 = (0..n)
        .map(|i| weights[i] * (targets[i] - y_mean).powi(2))
        .sum();
    let r2 = if spread > 0.0 {
        1.0 - residual / spread
    } else {
        // sklearn's r2_score for a constant target: 1 for a perfect fit, else 0.
        if residual == 0.0 { 1.0 } else { 0.0 }
    };
    Ok(Surrogate {
        weights: coef,
        intercept,
        r2,
    })
}

/// Solves `A x = b` for a symmetric positive definite `A` (`d x d`, row-major, overwritten by
/// its Cholesky factor); `None` when `A` is not positive definite.
fn cholesky_solve(a: &mut [f64], b: &[f64], d: usize) -> Option<Vec<f64>> {
    for j in 0..d {
        let mut diag = a[j * d + j];
        for k in 0..j {
            diag -= a[j * d + k] * a[j * d + k];
        }
        if diag <= 0.0 || !diag.is_finite() {
            return None;
        }
        let diag = diag.sqrt();
        a[j * d + j] = diag;
        for i in j + 1..d {
            let mut v = a[i * d + j];
            for k in 0..j {
                v -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = v / diag;
        }
    }
    let mut y = vec![0.0; d];
    for i in 0..d {
        let s: f64 = (0..i).map(|k| a[i * d + k] * y[k]).sum();
        y[i] = (b[i] - s) / a[i * d + i];
    }
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        let s: f64 = (i + 1..d).map(|k| a[k * d + i] * x[k]).sum();
        x[i] = (y[i] - s) / a[i * d + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Case {
        name: String,
        kernel_width: f64,
        masks: Vec<Vec<u8>>,
        targets: Vec<f64>,
        distances: Vec<f64>,
        kernel_weights: Vec<f64>,
        weights: Vec<f64>,
        intercept: f64,
        score: f64,
    }

    #[derive(Deserialize)]
    struct Fixture {
        cases: Vec<Case>,
    }

    /// Reference values from `lime.lime_base.LimeBase` (scripts/make-lime-fixture.py).
    #[test]
    fn surrogate_agrees_with_lime_base() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/lime/limebase_reference.json"
        );
        let text = std::fs::read_to_string(path).expect("fixture");
        let fixture: Fixture = serde_json::from_str(&text).expect("fixture JSON");
        assert_eq!(fixture.cases.len(), 2);
        for case in fixture.cases {
            let masks: Vec<Vec<bool>> = case
                .masks
                .iter()
                .map(|m| m.iter().map(|v| *v == 1).collect())
                .collect();
            for (m, (d, k)) in masks
                .iter()
                .zip(case.distances.iter().zip(&case.kernel_weights))
            {
                assert!((distance(m) - d).abs() < 1e-9, "{}: distance", case.name);
                assert!((kernel(*d, case.kernel_width) - k).abs() < 1e-12);
            }
            let w: Vec<f64> = case
                .distances
                .iter()
                .map(|d| kernel(*d, KERNEL_WIDTH))
                .collect();
            let fit = weighted_ridge(&masks, &case.targets, &w, RIDGE_ALPHA).expect("fit");
            for (j, (got, want)) in fit.weights.iter().zip(&case.weights).enumerate() {
                assert!(
                    (got - want).abs() < 1e-6,
                    "{}: weight {j}: {got} vs {want}",
                    case.name
                );
            }
            assert!(
                (fit.intercept - case.intercept).abs() < 1e-6,
                "{}",
                case.name
            );
            assert!((fit.r2 - case.score).abs() < 1e-6, "{}", case.name);
        }
    }

    #[test]
    fn masks_start_unperturbed_and_remove_at_least_one_feature() {
        let masks = sample_masks(10, 50, 3);
        assert_eq!(masks.len(), 50);
        assert!(masks[0].iter().all(|k| *k));
        assert!(masks[1..].iter().all(|m| m.iter().any(|k| !k)));
        assert_eq!(masks, sample_masks(10, 50, 3));
        assert_ne!(masks, sample_masks(10, 50, 4));
        assert_eq!(distance(&[true, true]), 0.0);
        assert_eq!(distance(&[false, false]), 100.0);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let masks = vec![vec![true, false], vec![false]];
        assert!(matches!(
            weighted_ridge(&masks, &[1.0, 2.0], &[1.0, 1.0], 1.0),
            Err(LimeError::Ragged { row: 1, .. })
        ));
        assert!(matches!(
            weighted_ridge(&masks[..1], &[1.0], &[1.0], 1.0),
            Err(LimeError::TooSmall { .. })
        ));
    }
}
