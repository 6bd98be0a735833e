//! What the Explain panel draws from an explanation: the input with each word's background
//! coloured by its weight (diverging colours, a legend, the number on hover), the strongest
//! features as a bar list, the section bars and the input-length curves.

use crate::analysis::explain::{FeatureWeight, LengthResult, SectionsResult};
use egui::{Color32, RichText};
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};

/// Supports the target (raises its likelihood).
const POSITIVE: Color32 = Color32::from_rgb(0x2b, 0x83, 0xba);
/// Works against it.
const NEGATIVE: Color32 = Color32::from_rgb(0xd7, 0x19, 0x1c);

/// A weight's colour: transparent at 0, full at `±scale`.
pub fn weight_color(weight: f64, scale: f64) -> Color32 {
    let t = if scale > 0.0 {
        (weight.abs() / scale).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let base = if weight >= 0.0 { POSITIVE } else { NEGATIVE };
    Color32::from_rgba_unmultiplied(base.r(), base.g(), base.b(), (t * 200.0) as u8)
}

/// The largest absolute weight, the colour scale's end.
pub fn scale_of(weights: &[FeatureWeight]) -> f64 {
    weights.iter().fold(0.0, |m, w| m.max(w.weight.abs()))
}

/// The colour legend: negative to positive with the scale's numbers.
pub fn legend(ui: &mut egui::Ui, scale: f64) {
    ui.horizontal(|ui| {
        ui.label(format!("{:+.3}", -scale));
        let (rect, _) = ui.allocate_exact_size(egui::vec2(160.0, 14.0), egui::Sense::hover());
        let steps = 32;
        for i in 0..steps {
            let x0 = rect.left() + rect.width() * i as f32 / steps as f32;
            let x1 = rect.left() + rect.width() * (i + 1) as f32 / steps as f32;
            let w = (i as f64 + 0.5) / steps as f64 * 2.0 - 1.0;
            let r =
                egui::Rect::from_min_max(egui::pos2(x0, rect.top()), egui::pos2(x1, rect.bottom()));
            ui.painter().rect_filled(r, 0.0, weight_color(w, 1.0));
        }
        ui.painter().rect_stroke(
            rect,
            0.0,
            egui::Stroke::new(1.0, ui.visuals().weak_text_color()),
            egui::StrokeKind::Inside,
        );
        ui.label(format!("{scale:+.3}"));
    });
    ui.add(
        egui::Label::new(
            RichText::new("red: lowers the target's likelihood · blue: raises it").weak(),
        )
        .wrap(),
    );
}

/// `text` with each word of `words` (byte spans, in order) on its weight's colour; line breaks
/// of the text are kept; hovering a word shows its weight.
pub fn highlighted_text(ui: &mut egui::Ui, text: &str, words: &[FeatureWeight], scale: f64) {
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing = egui::vec2(0.0, 2.0);
        let mut at = 0;
        for w in words {
            if w.start < at || w.end > text.len() {
                continue;
            }
            for _ in text[at..w.start].matches('\n') {
                ui.end_row();
            }
            let word = &text[w.start..w.end];
            // Sized before placing (no wrapping inside a word), so that a word that does not
            // fit the row starts the next one instead of running past the column.
            ui.add(
                egui::Label::new(
                    RichText::new(word).background_color(weight_color(w.weight, scale)),
                )
                .wrap_mode(egui::TextWrapMode::Extend),
            )
            .on_hover_text(format!("{word}: {:+.4}", w.weight));
            ui.add(egui::Label::new(" ").wrap_mode(egui::TextWrapMode::Extend));
            at = w.end;
        }
    });
}

/// The strongest `n` weights as bars, strongest first.
pub fn top_bars(ui: &mut egui::Ui, weights: &[FeatureWeight], n: usize) {
    let mut sorted: Vec<&FeatureWeight> = weights.iter().collect();
    sorted.sort_by(|a, b| b.weight.abs().total_cmp(&a.weight.abs()));
    sorted.truncate(n);
    let scale = sorted.first().map_or(0.0, |w| w.weight.abs());
    let rows: Vec<(String, f64)> = sorted
        .iter()
        .map(|w| (w.label.chars().take(40).collect(), w.weight))
        .collect();
    bar_rows(ui, &rows, scale, 3);
}

/// One labelled bar per row, signed: negative bars are red, positive ones blue.
fn bar_rows(ui: &mut egui::Ui, rows: &[(String, f64)], scale: f64, decimals: usize) {
    egui::Grid::new(ui.next_auto_id())
        .num_columns(3)
        .spacing([8.0, 3.0])
        .show(ui, |ui| {
            for (label, value) in rows {
                ui.label(label);
                let (rect, resp) =
                    ui.allocate_exact_size(egui::vec2(180.0, 14.0), egui::Sense::hover());
                let mid = rect.center().x;
                let len = if scale > 0.0 {
                    (value.abs() / scale) as f32 * rect.width() / 2.0
                } else {
                    0.0
                };
                let bar = if *value >= 0.0 {
                    egui::Rect::from_min_max(
                        egui::pos2(mid, rect.top()),
                        egui::pos2(mid + len, rect.bottom()),
                    )
                } else {
                    egui::Rect::from_min_max(
                        egui::pos2(mid - len, rect.top()),
                        egui::pos2(mid, rect.bottom()),
                    )
                };
                let color = if *value >= 0.0 { POSITIVE } else { NEGATIVE };
                ui.painter().rect_filled(bar, 2.0, color);
                ui.painter().vline(
                    mid,
                    rect.y_range(),
                    egui::Stroke::new(1.0, ui.visuals().weak_text_color()),
                );
                resp.on_hover_text(format!("{label}: {value:+.decimals$}"));
                ui.monospace(format!("{value:+.decimals$}"));
                ui.end_row();
            }
        });
}

/// Each section's effect when removed: the target's log-likelihood change and the change of
/// the regenerated output's ROUGE-L.
pub fn section_bars(ui: &mut egui::Ui, result: &SectionsResult) {
    ui.add(egui::Label::new(result.summary()).wrap());
    let loglik: Vec<(String, f64)> = result
        .sections
        .iter()
        .map(|s| (s.section.clone(), s.loglik_change))
        .collect();
    let rouge: Vec<(String, f64)> = result
        .sections
        .iter()
        .map(|s| (s.section.clone(), s.rouge_l_change))
        .collect();
    ui.columns(2, |cols| {
        cols[0].strong("Log-likelihood change");
        let scale = loglik.iter().fold(0.0f64, |m, (_, v)| m.max(v.abs()));
        bar_rows(&mut cols[0], &loglik, scale, 2);
        cols[1].strong("ROUGE-L change");
        let scale = rouge.iter().fold(0.0f64, |m, (_, v)| m.max(v.abs()));
        bar_rows(&mut cols[1], &rouge, scale, 3);
    });
}

/// Likelihood per target token and ROUGE-L against the number of input words kept.
pub fn length_curves(ui: &mut egui::Ui, result: &LengthResult) {
    let series = |f: fn(&crate::analysis::explain::LengthPoint) -> f64| -> Vec<[f64; 2]> {
        result
            .points
            .iter()
            .map(|p| [p.words as f64, f(p)])
            .collect()
    };
    ui.columns(2, |cols| {
        for (ui, (title, points, color)) in cols.iter_mut().zip([
            (
                "Log-likelihood per target token",
                series(|p| p.loglik_per_token),
                POSITIVE,
            ),
            (
                "ROUGE-L F1 of the regenerated output",
                series(|p| p.rouge_l),
                Color32::from_rgb(0x98, 0xc3, 0x79),
            ),
        ]) {
            ui.strong(title);
            Plot::new(title)
                .height(160.0)
                .allow_scroll(false)
                .x_axis_label("input words kept")
                .legend(Legend::default())
                .show(ui, |p| {
                    p.line(Line::new(title, PlotPoints::from(points.clone())).color(color));
                    p.points(
                        Points::new(title, PlotPoints::from(points))
                            .radius(3.0)
                            .color(color),
                    );
                });
        }
    });
}
