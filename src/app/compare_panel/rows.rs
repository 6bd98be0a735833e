//! The Compare panel's rows: one or two prediction sets matched by record id, filtered by
//! problem and demographic group and sorted by any metric, worst first.

use crate::data::record::AgeGroup;
use crate::project::predictions::{PredictionRow, PredictionSet, higher_is_worse};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Which of the compared outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Side {
    #[default]
    A,
    B,
}

/// A problem an output may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ProblemFilter {
    #[default]
    All,
    AnyProblem,
    Hallucinated,
    Omitted,
    DoseMismatch,
    Safety,
    /// Stopped at the new-token limit, not where the model ended it.
    Cut,
}

impl ProblemFilter {
    pub const ALL: [ProblemFilter; 7] = [
        ProblemFilter::All,
        ProblemFilter::AnyProblem,
        ProblemFilter::Hallucinated,
        ProblemFilter::Omitted,
        ProblemFilter::DoseMismatch,
        ProblemFilter::Safety,
        ProblemFilter::Cut,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ProblemFilter::All => "all rows",
            ProblemFilter::AnyProblem => "any problem",
            ProblemFilter::Hallucinated => "medication not in source",
            ProblemFilter::Omitted => "medication left out",
            ProblemFilter::DoseMismatch => "dose differs",
            ProblemFilter::Safety => "safety flag",
            ProblemFilter::Cut => "output cut at the length limit",
        }
    }

    fn passes(self, row: &PredictionRow) -> bool {
        let meds = row.meds.as_ref();
        let hallucinated = meds.is_some_and(|m| !m.hallucinated.is_empty());
        let omitted = meds.is_some_and(|m| !m.omitted.is_empty());
        let mismatched = meds.is_some_and(|m| !m.mismatched.is_empty());
        let safety = !row.safety.is_empty();
        match self {
            ProblemFilter::All => true,
            ProblemFilter::AnyProblem => {
                hallucinated || omitted || mismatched || safety || row.output_cut
            }
            ProblemFilter::Hallucinated => hallucinated,
            ProblemFilter::Omitted => omitted,
            ProblemFilter::DoseMismatch => mismatched,
            ProblemFilter::Safety => safety,
            ProblemFilter::Cut => row.output_cut,
        }
    }
}

/// Which rows the table shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RowFilters {
    /// A row passes when either shown output has the problem.
    pub problem: ProblemFilter,
    pub gender: Option<String>,
    pub age_group: Option<AgeGroup>,
    pub ethnicity: Option<String>,
    /// Case-insensitive text searched in the id, source, reference and outputs.
    pub text: String,
}

/// The order of the rows: by a metric of one output, worst first unless `best_first`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SortKey {
    /// None: file order.
    pub metric: Option<String>,
    pub side: Side,
    pub best_first: bool,
}

/// Set A's rows, each with set B's row of the same record id when B is compared.
#[derive(Debug, Clone)]
pub struct Compared {
    pub a: Arc<PredictionSet>,
    pub b: Option<Arc<PredictionSet>>,
    /// For each row of A, the index of B's row with the same id.
    b_of_a: Vec<Option<usize>>,
}

impl Compared {
    pub fn new(a: Arc<PredictionSet>, b: Option<Arc<PredictionSet>>) -> Self {
        let b_of_a = match &b {
            Some(b) => {
                let by_id: HashMap<&str, usize> = b
                    .rows
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.id.as_str(), i))
                    .collect();
                a.rows
                    .iter()
                    .map(|r| by_id.get(r.id.as_str()).copied())
                    .collect()
            }
            None => vec![None; a.rows.len()],
        };
        Self { a, b, b_of_a }
    }

    pub fn len(&self) -> usize {
        self.a.rows.len()
    }

    pub fn row(&self, i: usize, side: Side) -> Option<&PredictionRow> {
        match side {
            Side::A => self.a.rows.get(i),
            Side::B => {
                let j = (*self.b_of_a.get(i)?)?;
                self.b.as_ref()?.rows.get(j)
            }
        }
    }

    /// The outputs shown for row `i`: A's, and B's when it has one.
    pub fn outputs(&self, i: usize) -> impl Iterator<Item = &PredictionRow> {
        [Side::A, Side::B]
            .into_iter()
            .filter_map(move |s| self.row(i, s))
    }

    /// Record ids both sets have, in A's order.
    pub fn shared_ids(&self) -> Vec<String> {
        (0..self.len())
            .filter(|&i| self.row(i, Side::B).is_some())
            .map(|i| self.a.rows[i].id.clone())
            .collect()
    }

    /// Metric names found in either set.
    pub fn metric_names(&self) -> Vec<String> {
        let mut names = self.a.metric_names();
        if let Some(b) = &self.b {
            names.extend(b.metric_names());
            names.sort();
            names.dedup();
        }
        names
    }
}

/// Indices of A's rows that pass `filters`, in the order of `sort` (rows without the metric
/// last, ties in file order).
pub fn visible_rows(c: &Compared, filters: &RowFilters, sort: &SortKey) -> Vec<usize> {
    let query = filters.text.trim().to_lowercase();
    let mut rows: Vec<usize> = (0..c.len())
        .filter(|&i| {
            let a = &c.a.rows[i];
            filters
                .gender
                .as_ref()
                .is_none_or(|g| a.gender.as_ref() == Some(g))
                && filters.age_group.is_none_or(|g| a.age_group() == Some(g))
                && filters
                    .ethnicity
                    .as_ref()
                    .is_none_or(|e| a.ethnicity.as_ref() == Some(e))
                && c.outputs(i).any(|r| filters.problem.passes(r))
                && (query.is_empty()
                    || a.id.to_lowercase().contains(&query)
                    || [&a.input, &a.reference]
                        .into_iter()
                        .chain(c.outputs(i).map(|r| &r.prediction))
                        .any(|t| t.to_lowercase().contains(&query)))
        })
        .collect();
    if let Some(metric) = &sort.metric {
        let worse_high = higher_is_worse(metric);
        let descending = worse_high != sort.best_first;
        let value = |i: usize| c.row(i, sort.side).and_then(|r| r.metric(metric));
        rows.sort_by(|&x, &y| match (value(x), value(y)) {
            (Some(p), Some(q)) if descending => q.total_cmp(&p),
            (Some(p), Some(q)) => p.total_cmp(&q),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::predictions::tests::sample_line;
    use crate::project::predictions::{BASE, PredictionSource, parse_predictions};

    fn set(name: &str, ids: &[usize]) -> Arc<PredictionSet> {
        let text: String = ids
            .iter()
            .map(|&i| format!("{}\n", sample_line(i, name)))
            .collect();
        let (rows, issues) = parse_predictions(text.as_bytes());
        assert!(issues.is_empty());
        Arc::new(PredictionSet {
            source: PredictionSource {
                name: name.into(),
                path: "p.jsonl".into(),
            },
            rows,
            issues,
        })
    }

    fn ids(c: &Compared, rows: &[usize]) -> Vec<String> {
        rows.iter().map(|&i| c.a.rows[i].id.clone()).collect()
    }

    #[test]
    fn matches_by_id_and_sorts_worst_first() {
        let c = Compared::new(set("run", &[0, 1, 2, 3]), Some(set(BASE, &[3, 2, 1])));
        assert_eq!(c.row(1, Side::B).map(|r| r.id.as_str()), Some("d-0001"));
        assert!(c.row(0, Side::B).is_none());
        assert_eq!(c.shared_ids(), ["d-0001", "d-0002", "d-0003"]);
        let worst = |metric: &str, side| SortKey {
            metric: Some(metric.into()),
            side,
            best_first: false,
        };
        let rows = visible_rows(
            &c,
            &RowFilters::default(),
            &worst("rougeL.fmeasure", Side::A),
        );
        // The run is perfect on even records; on odd ones its ROUGE falls with the index.
        assert_eq!(ids(&c, &rows), ["d-0003", "d-0001", "d-0000", "d-0002"]);
        let rows = visible_rows(&c, &RowFilters::default(), &worst("fkgl", Side::A));
        assert_eq!(
            ids(&c, &rows),
            ["d-0003", "d-0002", "d-0001", "d-0000"],
            "higher grade is worse"
        );
        let rows = visible_rows(&c, &RowFilters::default(), &worst("bleu", Side::B));
        assert_eq!(
            ids(&c, &rows),
            ["d-0003", "d-0002", "d-0001", "d-0000"],
            "no B row: last"
        );
        let best = SortKey {
            best_first: true,
            ..worst("rougeL.fmeasure", Side::A)
        };
        let rows = visible_rows(&c, &RowFilters::default(), &best);
        assert_eq!(ids(&c, &rows), ["d-0000", "d-0002", "d-0001", "d-0003"]);
    }

    #[test]
    fn filters_by_problem_group_and_text() {
        let c = Compared::new(set("run", &(0..12).collect::<Vec<_>>()), None);
        let only = |filters: RowFilters| ids(&c, &visible_rows(&c, &filters, &SortKey::default()));
        let safety = only(RowFilters {
            problem: ProblemFilter::Safety,
            ..RowFilters::default()
        });
        assert_eq!(safety, ["d-0003", "d-0009"], "odd and divisible by 3");
        let hallucinated = only(RowFilters {
            problem: ProblemFilter::Hallucinated,
            ..RowFilters::default()
        });
        assert_eq!(hallucinated.len(), 6);
        assert!(
            only(RowFilters {
                problem: ProblemFilter::Omitted,
                ..RowFilters::default()
            })
            .is_empty()
        );
        let older = only(RowFilters {
            age_group: Some(AgeGroup::Over65),
            gender: Some("M".into()),
            ..RowFilters::default()
        });
        // Ages cycle 15, 30, 45, 60, 80 and genders F, M: index 4 mod 5, odd.
        assert_eq!(older, ["d-0009"]);
        let hispanic = only(RowFilters {
            ethnicity: Some("Hispanic".into()),
            ..RowFilters::default()
        });
        assert_eq!(hispanic, ["d-0000", "d-0003", "d-0006", "d-0009"]);
        let text = only(RowFilters {
            text: "HEART FAILURE 11".into(),
            ..RowFilters::default()
        });
        assert_eq!(text, ["d-0011"]);
    }
}
