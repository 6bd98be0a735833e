//! The chips and small texts the Registry panel's views share: a gate's pass/fail chip, an
//! alias badge's colours, a time stamp shortened to the minute.

use crate::registry::gates::{GateResult, Outcome};
use egui::{Color32, RichText};

/// The chips' colours: a passed, failed and unmeasured gate, an alias.
pub(super) const PASS: Color32 = Color32::from_rgb(46, 125, 50);
pub(super) const FAIL: Color32 = Color32::from_rgb(183, 28, 28);
pub(super) const UNMEASURED: Color32 = Color32::from_rgb(110, 110, 110);
pub(super) const ALIAS: Color32 = Color32::from_rgb(21, 101, 192);

/// A small coloured label: a gate's chip or an alias badge.
pub(super) fn chip(ui: &mut egui::Ui, text: &str, fill: Color32) -> egui::Response {
    ui.label(
        RichText::new(format!(" {text} "))
            .small()
            .color(Color32::WHITE)
            .background_color(fill),
    )
}

/// A gate's metric in a few words, for its chip.
fn gate_short(metric: &str) -> String {
    match metric {
        "meds.hallucinated_per_example" => "hallucinated meds".into(),
        "meds.omitted_per_example" => "omitted meds".into(),
        "meds.mismatched_per_example" => "mismatched meds".into(),
        "safety.flags_per_example" => "safety flags".into(),
        "bias.flagged_slices" => "bias".into(),
        other => other.into(),
    }
}

/// A gate's result as a chip: its metric and pass, fail or n/a; the value and threshold on hover.
pub(super) fn gate_chip(ui: &mut egui::Ui, g: &GateResult) {
    let (mark, fill) = match g.outcome {
        Outcome::Pass => ("pass", PASS),
        Outcome::Fail => ("fail", FAIL),
        Outcome::NotMeasured => ("n/a", UNMEASURED),
    };
    chip(ui, &format!("{} {mark}", gate_short(&g.metric)), fill).on_hover_text(g.describe());
}

/// An RFC 3339 time to the minute, `2026-12-07 15:24`.
pub(super) fn short_time(rfc3339: &str) -> String {
    rfc3339.get(..16).unwrap_or(rfc3339).replace('T', " ")
}
