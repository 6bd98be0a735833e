//! The bias report in words: which groups are flagged and why, which flagged intersections only
//! follow from a flagged group, and what to do about each (more data, reweighting, checking
//! the group's references).

use super::{BiasReport, SliceReport};
use crate::eval::names::metric_label;

fn value(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

fn percent(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |g| format!("{:+.0}%", g * 100.0))
}

fn q_text(q: Option<f64>) -> String {
    match q {
        Some(q) if q < 0.001 => "q < 0.001".into(),
        Some(q) => format!("q = {q:.3}"),
        None => "not tested".into(),
    }
}

/// A flagged slice all of whose single groups are flagged too: it adds nothing new.
fn follows_from_a_flagged_group(r: &BiasReport, s: &SliceReport) -> bool {
    s.dims.0.len() > 1
        && s.dims.0.iter().any(|part| {
            r.slices
                .iter()
                .any(|o| o.flagged && o.dims.0.len() == 1 && o.dims.0[0] == *part)
        })
}

/// What the audit found, in sentences: one per flagged group, then the intersections.
pub fn findings(r: &BiasReport) -> Vec<String> {
    let label = metric_label(&r.metric);
    let direction = if r.higher_is_worse { "higher" } else { "lower" };
    let mut out = vec![format!(
        "Overall {label}: {} over {} records ({}).",
        value(r.overall.mean),
        r.overall.n,
        super::interval_text(r.overall.ci, value)
    )];
    let (primary, following): (Vec<&SliceReport>, Vec<&SliceReport>) = r
        .flagged()
        .partition(|s| !follows_from_a_flagged_group(r, s));
    if primary.is_empty() {
        out.push(format!(
            "No group is flagged: no slice of at least {} records has a {label} more than {:.0}% \
             {direction} than overall with q < {}.",
            r.min_size,
            r.threshold * 100.0,
            r.alpha
        ));
    }
    for s in &primary {
        out.push(format!(
            "Flagged: {} (n = {}) has a {label} of {} against {} overall ({}, {}).",
            s.dims.describe(),
            s.n,
            value(s.mean),
            value(r.overall.mean),
            percent(s.relative_gap),
            q_text(s.q)
        ));
    }
    if !following.is_empty() {
        let names: Vec<String> = following.iter().map(|s| s.dims.label()).collect();
        out.push(format!(
            "Also flagged, within a flagged group: {}.",
            names.join(", ")
        ));
    }
    // A group's difference that one record makes, flagged or not (the heatmap colours it).
    for s in r.slices.iter().filter(|s| s.dims.0.len() == 1 && !s.small) {
        if let Some(id) = &s.driven_by {
            out.push(format!(
                "One record makes the {label} gap of {} ({}): without {id} it is within {:.0}%.",
                s.dims.describe(),
                percent(s.relative_gap),
                r.threshold * 100.0
            ));
        }
    }
    let small = r.slices.iter().filter(|s| s.small).count();
    if small > 0 {
        out.push(format!(
            "{small} slices have fewer than {} records: shown greyed, never flagged.",
            r.min_size
        ));
    }
    out
}

/// What to do about each flagged group (those within a flagged group are covered by it).
pub fn mitigations(r: &BiasReport) -> Vec<String> {
    r.flagged()
        .filter(|s| !follows_from_a_flagged_group(r, s))
        .map(|s| {
            let who = s.dims.describe();
            let share = s.n as f64 / r.overall.n.max(1) as f64 * 100.0;
            format!(
                "For {who}: check the references of its records first (noisy or jargon-laden \
                 references lower its scores without the model being worse); collect more \
                 training records of the group (it is {share:.0}% of the evaluated records); \
                 or reweight / oversample its records when training."
            )
        })
        .collect()
}
