//! What reviews add up to once unblinded: mean rating and flag rates per model, agreement
//! between reviewers (Cohen's kappa on ratings and on each flag), and the CSV export.

use super::{Review, ReviewError, ReviewFlag, latest};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Cohen's kappa of two raters' labels for the same items: observed agreement corrected for
/// the agreement their label frequencies give by chance. `None` with no items, or when chance
/// agreement is already certain (both raters always give the same single label).
pub fn cohen_kappa<T: Ord>(pairs: &[(T, T)]) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let mut first: BTreeMap<&T, f64> = BTreeMap::new();
    let mut second: BTreeMap<&T, f64> = BTreeMap::new();
    let mut agree = 0.0;
    for (x, y) in pairs {
        *first.entry(x).or_default() += 1.0;
        *second.entry(y).or_default() += 1.0;
        if x == y {
            agree += 1.0;
        }
    }
    let observed = agree / n;
    let chance: f64 = first
        .iter()
        .map(|(label, c)| c / n * second.get(label).copied().unwrap_or(0.0) / n)
        .sum();
    (chance < 1.0).then(|| (observed - chance) / (1.0 - chance))
}

/// Ratings and flags of one prediction set's outputs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceSummary {
    pub source: String,
    /// Outputs with a rating.
    pub rated: usize,
    pub mean_rating: Option<f64>,
    /// Share of rated outputs carrying each flag.
    pub flag_rates: BTreeMap<ReviewFlag, f64>,
}

/// How far two reviewers agree on the outputs both rated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    pub reviewers: [String; 2],
    /// Outputs both rated.
    pub outputs: usize,
    /// Share of those with the same rating.
    pub exact: Option<f64>,
    pub rating_kappa: Option<f64>,
    pub flag_kappa: BTreeMap<ReviewFlag, Option<f64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewSummary {
    /// Lines read, corrections included.
    pub lines: usize,
    /// Reviews after corrections.
    pub reviews: usize,
    /// Reviews with both outputs rated.
    pub complete: usize,
    pub reviewers: Vec<String>,
    pub records: usize,
    pub sources: Vec<SourceSummary>,
    /// Every pair of reviewers.
    pub agreement: Vec<Agreement>,
}

/// Unblinded totals of the lines of a reviews file.
pub fn summarize(lines: &[Review]) -> ReviewSummary {
    let reviews = latest(lines);
    let reviewers: BTreeSet<String> = reviews.iter().map(|r| r.reviewer.clone()).collect();
    let reviewers: Vec<String> = reviewers.into_iter().collect();
    let mut outputs: BTreeMap<&str, Vec<&super::OutputReview>> = BTreeMap::new();
    for r in &reviews {
        for o in [&r.a, &r.b] {
            outputs.entry(&o.source).or_default().push(o);
        }
    }
    let sources = outputs
        .into_iter()
        .map(|(source, outs)| {
            let rated: Vec<_> = outs
                .iter()
                .filter_map(|o| o.rating.map(|x| (x, o)))
                .collect();
            let n = rated.len();
            let mean_rating =
                (n > 0).then(|| rated.iter().map(|(x, _)| f64::from(*x)).sum::<f64>() / n as f64);
            let flag_rates = ReviewFlag::ALL
                .iter()
                .map(|f| {
                    let flagged = rated.iter().filter(|(_, o)| o.flags.contains(f)).count();
                    (
                        *f,
                        if n > 0 {
                            flagged as f64 / n as f64
                        } else {
                            0.0
                        },
                    )
                })
                .collect();
            SourceSummary {
                source: source.to_string(),
                rated: n,
                mean_rating,
                flag_rates,
            }
        })
        .collect();
    let mut agreement = Vec::new();
    for (i, x) in reviewers.iter().enumerate() {
        for y in &reviewers[i + 1..] {
            agreement.push(agree(&reviews, x, y));
        }
    }
    ReviewSummary {
        lines: lines.len(),
        complete: reviews.iter().filter(|r| r.is_complete()).count(),
        records: reviews
            .iter()
            .map(|r| r.id.as_str())
            .collect::<BTreeSet<_>>()
            .len(),
        reviews: reviews.len(),
        reviewers,
        sources,
        agreement,
    }
}

/// Agreement of reviewers `x` and `y` over the outputs both rated.
fn agree(reviews: &[Review], x: &str, y: &str) -> Agreement {
    let of = |who: &str| -> HashMap<(&str, &str), &super::OutputReview> {
        reviews
            .iter()
            .filter(|r| r.reviewer == who)
            .flat_map(|r| [&r.a, &r.b].map(|o| ((r.id.as_str(), o.source.as_str()), o)))
            .filter(|(_, o)| o.rating.is_some())
            .collect()
    };
    let (mx, my) = (of(x), of(y));
    // Sorted by record and source, so that sums run in the same order on every reading.
    let both: Vec<(&super::OutputReview, &super::OutputReview)> = mx
        .iter()
        .filter_map(|(k, ox)| my.get(k).map(|oy| (k, (*ox, *oy))))
        .collect::<BTreeMap<_, _>>()
        .into_values()
        .collect();
    let ratings: Vec<(u8, u8)> = both
        .iter()
        .filter_map(|(a, b)| Some((a.rating?, b.rating?)))
        .collect();
    let flag_kappa = ReviewFlag::ALL
        .iter()
        .map(|f| {
            let pairs: Vec<(bool, bool)> = both
                .iter()
                .map(|(a, b)| (a.flags.contains(f), b.flags.contains(f)))
                .collect();
            (*f, cohen_kappa(&pairs))
        })
        .collect();
    let n = ratings.len();
    Agreement {
        reviewers: [x.to_string(), y.to_string()],
        outputs: n,
        exact: (n > 0).then(|| ratings.iter().filter(|(a, b)| a == b).count() as f64 / n as f64),
        rating_kappa: cohen_kappa(&ratings),
        flag_kappa,
    }
}

/// Writes the newest line of each review as CSV (atomically), one row per review.
pub fn write_csv(path: &Path, lines: &[Review]) -> Result<usize, ReviewError> {
    let err = |source| ReviewError {
        path: path.to_path_buf(),
        source,
    };
    let reviews = latest(lines);
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = [
        "reviewer", "id", "a_source", "a_rating", "a_flags", "b_source", "b_rating", "b_flags",
        "comment", "saved_at",
    ];
    w.write_record(header).map_err(|e| err(e.into()))?;
    let flags = |o: &super::OutputReview| {
        o.flags
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(";")
    };
    let rating = |o: &super::OutputReview| o.rating.map(|x| x.to_string()).unwrap_or_default();
    for r in &reviews {
        w.write_record([
            r.reviewer.as_str(),
            &r.id,
            &r.a.source,
            &rating(&r.a),
            &flags(&r.a),
            &r.b.source,
            &rating(&r.b),
            &flags(&r.b),
            &r.comment,
            &r.at.to_string(),
        ])
        .map_err(|e| err(e.into()))?;
    }
    let bytes = w.into_inner().map_err(|e| err(e.into_error()))?;
    crate::store::write_atomic(path, &bytes).map_err(err)?;
    Ok(reviews.len())
}
