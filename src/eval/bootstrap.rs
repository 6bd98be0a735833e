//! 95% percentile bootstrap intervals over examples: seeded, 1000 resamples, the statistic
//! recomputed on each resample (so corpus BLEU resums its statistics, macro-F1 recounts).

use crate::data::rng::SeededRng;
use serde::{Deserialize, Serialize};

pub const RESAMPLES: usize = 1000;
pub const SEED: u64 = 12345;

/// A corpus value with its 95% bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

/// The `q` quantile (0..1) of sorted values, interpolating linearly (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// `statistic` over all `n` examples with its interval; `None` when it cannot be computed on
/// the whole set. Resamples where it cannot be computed are left out.
pub fn interval(n: usize, statistic: impl Fn(&[usize]) -> Option<f64>) -> Option<Interval> {
    interval_with_seed(n, SEED, statistic)
}

/// `interval` with the resamples drawn from `seed`.
pub fn interval_with_seed(
    n: usize,
    seed: u64,
    statistic: impl Fn(&[usize]) -> Option<f64>,
) -> Option<Interval> {
    let all: Vec<usize> = (0..n).collect();
    let value = statistic(&all)?;
    let mut rng = SeededRng::new(seed);
    let mut sample = vec![0; n];
    let mut stats = Vec::with_capacity(RESAMPLES);
    for _ in 0..RESAMPLES {
        for s in sample.iter_mut() {
            *s = rng.below(n);
        }
        if let Some(v) = statistic(&sample) {
            stats.push(v);
        }
    }
    stats.sort_by(f64::total_cmp);
    if stats.is_empty() {
        return Some(Interval {
            value,
            low: value,
            high: value,
        });
    }
    Some(Interval {
        value,
        low: quantile(&stats, 0.025),
        high: quantile(&stats, 0.975),
    })
}

/// The mean of the defined values among `indices`.
pub fn mean_of(values: &[Option<f64>], indices: &[usize]) -> Option<f64> {
    let (sum, count) = indices
        .iter()
        .filter_map(|&i| values[i])
        .fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    (count > 0).then(|| sum / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_brackets_the_mean_and_is_seeded() {
        let values: Vec<Option<f64>> = (0..200).map(|i| Some((i % 10) as f64)).collect();
        let a = interval(values.len(), |ix| mean_of(&values, ix)).expect("interval");
        let b = interval(values.len(), |ix| mean_of(&values, ix)).expect("interval");
        assert_eq!(a, b);
        assert!((a.value - 4.5).abs() < 1e-12);
        assert!(a.low < 4.5 && a.high > 4.5 && a.high - a.low < 1.5, "{a:?}");
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
    }

    #[test]
    fn nothing_defined_gives_no_interval() {
        assert_eq!(interval(3, |ix| mean_of(&[None, None, None], ix)), None);
    }
}
