//! Word-count statistics (quantiles interpolated as numpy does) and the records outside the
//! configured length limits.

use super::{IdList, LengthStats, MAX_LISTED};
use crate::data::record::Record;

/// The records whose word count `outside` picks, in file order.
pub(super) fn outliers(
    records: &[Record],
    words: &[usize],
    outside: impl Fn(usize) -> bool,
) -> IdList {
    let mut list = IdList::default();
    for (record, _) in records.iter().zip(words).filter(|&(_, &w)| outside(w)) {
        list.count += 1;
        if list.ids.len() < MAX_LISTED {
            list.ids.push(record.id.clone());
        }
    }
    list
}

pub(super) fn length_stats(words: &[usize]) -> LengthStats {
    let mut sorted = words.to_vec();
    sorted.sort_unstable();
    let (Some(&min), Some(&max)) = (sorted.first(), sorted.last()) else {
        return LengthStats::default();
    };
    let quantile = |q: f64| {
        let position = q * (sorted.len() - 1) as f64;
        let (low, high) = (position.floor() as usize, position.ceil() as usize);
        let fraction = position - low as f64;
        sorted[low] as f64 + (sorted[high] as f64 - sorted[low] as f64) * fraction
    };
    LengthStats {
        min,
        mean: sorted.iter().sum::<usize>() as f64 / sorted.len() as f64,
        median: quantile(0.5),
        p95: quantile(0.95),
        max,
    }
}

#[cfg(test)]
mod tests {
    use crate::data::record::Record;
    use crate::data::validate::test_support::{dataset, record};
    use crate::data::validate::{Limits, validate};

    #[test]
    fn length_outliers_and_stats() {
        let words = |n: usize| vec!["word"; n].join(" ");
        let records: Vec<Record> = [1, 2, 3, 4, 100]
            .iter()
            .map(|&n| record(&format!("r{n}"), &words(n), &words(n)))
            .collect();
        let limits = Limits {
            input_words: (2, 50),
            target_words: (1, 3),
        };
        let report = validate(&dataset(records, Vec::new()), &limits);
        assert_eq!(report.input_too_short.ids, ["r1"]);
        assert_eq!(report.input_too_long.ids, ["r100"]);
        assert_eq!(report.target_too_long.ids, ["r4", "r100"]);
        assert_eq!(report.target_too_short.count, 0);
        // numpy.percentile([1, 2, 3, 4, 100], [50, 95]) == [3.0, 80.8]
        let stats = &report.input_words;
        assert_eq!(
            (stats.min, stats.max, stats.median, stats.mean),
            (1, 100, 3.0, 22.0)
        );
        assert!((stats.p95 - 80.8).abs() < 1e-9);
        assert!(!report.checks[3].passed);
    }
}
