//! The statistics of a bias audit as pure functions: a seeded two-sided permutation test of one
//! slice's mean against the rest, Benjamini-Hochberg q-values, and Fairlearn's `MetricFrame`
//! disparities (`difference()` / `ratio()` with `between_groups` and `to_overall`).

use crate::data::rng::SeededRng;
use serde::Serialize;

/// The two-sided permutation p-value of the gap between the mean of `values[members]` and the
/// mean of the other values: the share of `permutations` random relabellings (plus the observed
/// one) whose gap is at least as large. `None` when there is no rest to compare with.
pub fn permutation_p(
    values: &[f64],
    members: &[usize],
    permutations: usize,
    rng: &mut SeededRng,
) -> Option<f64> {
    let (n, k) = (values.len(), members.len());
    if k == 0 || k >= n || permutations == 0 {
        return None;
    }
    let total: f64 = values.iter().sum();
    let gap = |slice_sum: f64| (slice_sum / k as f64 - (total - slice_sum) / (n - k) as f64).abs();
    let observed = gap(members.iter().map(|&i| values[i]).sum());
    // Sums in another order differ in the last bits: an equal gap must count as extreme.
    let bar = observed - 1e-9 * (observed.abs() + total.abs() / n as f64);
    // Drawing the smaller side is enough: the other is the rest.
    let draw = k.min(n - k);
    let mut order: Vec<usize> = (0..n).collect();
    let mut extreme = 0usize;
    for _ in 0..permutations {
        let mut sum = 0.0;
        for j in 0..draw {
            let pick = j + rng.below(n - j);
            order.swap(j, pick);
            sum += values[order[j]];
        }
        let slice_sum = if draw == k { sum } else { total - sum };
        if gap(slice_sum) >= bar {
            extreme += 1;
        }
    }
    Some((1 + extreme) as f64 / (1 + permutations) as f64)
}

/// Benjamini-Hochberg adjusted p-values (q-values), in the order of `p`: `q_(i)` is the least
/// `p_(j) m / j` over `j >= i` in ascending order of p, at most 1 (statsmodels' `fdr_bh`).
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut q = vec![1.0; m];
    let mut least = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        least = least.min(p[i] * m as f64 / (rank + 1) as f64);
        q[i] = least;
    }
    q
}

/// A metric's disparity across the groups of one dimension (or pair of dimensions), as
/// Fairlearn's `MetricFrame` defines it over the groups' values (empty groups left out).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Disparity {
    /// `difference()`: the largest group value minus the smallest (`between_groups`), or the
    /// largest distance of a group value to the overall value (`to_overall`).
    pub difference: f64,
    /// `ratio()`: the smallest group value over the largest (`between_groups`), or the smallest
    /// of each group's value over the overall value, folded below 1 (`to_overall`). `None`
    /// where Fairlearn would divide by zero.
    pub ratio: Option<f64>,
}

/// The `between_groups` and `to_overall` disparities of groups' values; `None` without groups.
pub fn disparities(groups: &[f64], overall: f64) -> Option<(Disparity, Disparity)> {
    let max = groups.iter().copied().reduce(f64::max)?;
    let min = groups.iter().copied().reduce(f64::min)?;
    let between = Disparity {
        difference: max - min,
        ratio: (max != 0.0).then(|| min / max),
    };
    let to_overall = Disparity {
        difference: groups
            .iter()
            .map(|g| (g - overall).abs())
            .fold(0.0, f64::max),
        ratio: (overall != 0.0).then(|| {
            groups
                .iter()
                .map(|g| {
                    let r = g / overall;
                    if r > 1.0 { 1.0 / r } else { r }
                })
                .fold(f64::INFINITY, f64::min)
        }),
    };
    Some((between, to_overall))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_p_of_a_hand_checkable_case() {
        // Four values, the slice {3, 4} against {1, 2}: of the 6 ways to pick two, only
        // {3, 4} and {1, 2} give a gap of 2, so the exact two-sided p is 2/6.
        let values = [1.0, 2.0, 3.0, 4.0];
        let mut rng = SeededRng::new(7);
        let p = permutation_p(&values, &[2, 3], 20_000, &mut rng).expect("p");
        assert!((p - 1.0 / 3.0).abs() < 0.01, "{p}");
        // A slice equal to the rest in mean is never unusual.
        let mut rng = SeededRng::new(7);
        let p = permutation_p(&values, &[0, 3], 2_000, &mut rng).expect("p");
        assert_eq!(p, 1.0);
        // The smallest p possible is 1/(permutations + 1).
        let far: Vec<f64> = (0..60).map(|i| if i < 30 { 0.0 } else { 1.0 }).collect();
        let members: Vec<usize> = (0..30).collect();
        let p = permutation_p(&far, &members, 999, &mut SeededRng::new(1)).expect("p");
        assert_eq!(p, 1.0 / 1000.0);
        assert_eq!(permutation_p(&values, &[0, 1, 2, 3], 99, &mut rng), None);
        assert_eq!(permutation_p(&values, &[], 99, &mut rng), None);
    }

    #[test]
    fn permutation_p_is_seeded_and_the_large_side_is_drawn_as_the_rest() {
        let values: Vec<f64> = (0..50).map(|i| ((i * 37) % 11) as f64).collect();
        let big: Vec<usize> = (0..40).collect();
        let small: Vec<usize> = (40..50).collect();
        let run = |m: &[usize]| permutation_p(&values, m, 5_000, &mut SeededRng::new(3));
        assert_eq!(run(&big), run(&big));
        // The slice and its complement have the same gap, so the same p.
        assert_eq!(run(&big), run(&small));
    }

    #[test]
    fn benjamini_hochberg_by_hand() {
        // Sorted p 0.01, 0.02, 0.03, 0.04, 0.20 (m = 5): p*m/rank = 0.05, 0.05, 0.05, 0.05,
        // 0.20; the running minimum from the top keeps them. Given in shuffled order.
        let q = benjamini_hochberg(&[0.04, 0.20, 0.01, 0.03, 0.02]);
        let expected = [0.05, 0.20, 0.05, 0.05, 0.05];
        for (a, b) in q.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
        // A later smaller ratio lowers the earlier ones: 0.01*3/1 = 0.03, 0.04*3/2 = 0.06,
        // 0.045*3/3 = 0.045, so q = 0.03, 0.045, 0.045; and q never exceeds 1.
        let q = benjamini_hochberg(&[0.045, 0.01, 0.04]);
        for (a, b) in q.iter().zip([0.045, 0.03, 0.045]) {
            assert!((a - b).abs() < 1e-12, "{q:?}");
        }
        assert_eq!(benjamini_hochberg(&[0.9, 0.8]), [0.9, 0.9]);
        assert!(benjamini_hochberg(&[]).is_empty());
    }

    #[test]
    fn disparities_as_fairlearn_defines_them() {
        let (between, to_overall) = disparities(&[0.5, 0.4, 0.8], 0.6).expect("groups");
        assert!((between.difference - 0.4).abs() < 1e-12);
        assert_eq!(between.ratio, Some(0.5));
        assert!((to_overall.difference - 0.2).abs() < 1e-12);
        // 0.4/0.6 = 0.667, 0.6/0.8 = 0.75 (folded), 0.5/0.6 = 0.833: the least.
        assert!((to_overall.ratio.expect("ratio") - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(disparities(&[], 1.0), None);
        assert_eq!(disparities(&[0.0, 0.0], 0.0).map(|d| d.0.ratio), Some(None));
    }
}
