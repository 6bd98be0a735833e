//! The Bias panel's heatmap: rows are groups, columns metrics or the groups of a second
//! dimension; each cell is coloured by its gap to overall on a diverging scale (red worse, blue
//! better), shows its value and n, explains itself on hover, is greyed when small and outlined
//! when flagged; and the legend that says so.

use crate::analysis::bias::{SliceKey, SliceReport};
use crate::eval::names::metric_label;
use egui::{Color32, Rect, Sense, Stroke, StrokeKind, vec2};

/// One cell: a slice of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub metric: String,
    pub higher_is_worse: bool,
    pub overall: f64,
    pub slice: SliceReport,
}

impl Cell {
    /// The gap to overall with "better" positive whatever the metric's direction.
    pub fn goodness(&self) -> Option<f64> {
        let g = self.slice.relative_gap?;
        Some(if self.higher_is_worse { -g } else { g })
    }

    pub fn key(&self) -> &SliceKey {
        &self.slice.dims
    }

    fn hover(&self, min_size: usize) -> String {
        let s = &self.slice;
        let mut text = format!(
            "{}\n{} {:.3} ({}), overall {:.3}\nn = {}",
            s.dims.describe(),
            metric_label(&self.metric),
            s.mean,
            crate::analysis::bias::interval_text(s.ci, |x| format!("{x:.3}")),
            self.overall,
            s.n
        );
        if let Some(g) = s.relative_gap {
            text.push_str(&format!("\ngap to overall {:+.1}%", g * 100.0));
        }
        if let Some(id) = &s.driven_by {
            text.push_str(&format!(
                "\none record makes this gap: without {id} it is within the threshold"
            ));
        }
        match (s.q, s.small) {
            (_, true) => text.push_str(&format!(
                "\nfewer than {min_size} records: not tested, never flagged"
            )),
            (Some(q), false) => {
                text.push_str(&format!("\np = {:.4}, q = {q:.4}", s.p.unwrap_or(f64::NAN)))
            }
            (None, false) => text.push_str("\nnot tested (no other records to compare with)"),
        }
        if s.flagged {
            text.push_str("\nFLAGGED");
        }
        text.push_str("\nClick to read these records in Compare");
        text
    }
}

/// What the heatmap shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grid {
    pub row_title: String,
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    /// `cells[row][column]`; `None` where the slice has no records.
    pub cells: Vec<Vec<Option<Cell>>>,
}

const WORSE: Color32 = Color32::from_rgb(215, 48, 39);
const BETTER: Color32 = Color32::from_rgb(49, 104, 176);
const FLAG: Color32 = Color32::from_rgb(250, 190, 20);

fn lerp(a: Color32, b: Color32, t: f32) -> Color32 {
    let mix = |x: u8, y: u8| (f32::from(x) + (f32::from(y) - f32::from(x)) * t).round() as u8;
    Color32::from_rgb(mix(a.r(), b.r()), mix(a.g(), b.g()), mix(a.b(), b.b()))
}

fn neutral(dark: bool) -> Color32 {
    if dark {
        Color32::from_gray(70)
    } else {
        Color32::from_gray(232)
    }
}

fn small_fill(dark: bool) -> Color32 {
    if dark {
        Color32::from_gray(38)
    } else {
        Color32::from_gray(200)
    }
}

/// The colour of a gap (better positive) on a scale saturating at `scale`.
pub fn color_of(goodness: f64, scale: f64, dark: bool) -> Color32 {
    let t = (goodness / scale).clamp(-1.0, 1.0) as f32;
    if t < 0.0 {
        lerp(neutral(dark), WORSE, -t)
    } else {
        lerp(neutral(dark), BETTER, t)
    }
}

fn text_on(fill: Color32) -> Color32 {
    let luminance =
        0.299 * f32::from(fill.r()) + 0.587 * f32::from(fill.g()) + 0.114 * f32::from(fill.b());
    if luminance > 140.0 {
        Color32::BLACK
    } else {
        Color32::WHITE
    }
}

/// Where the colour scale saturates: three thresholds, at least 5%.
pub fn scale_for(threshold: f64) -> f64 {
    (threshold * 3.0).max(0.05)
}

/// Draws the grid; returns the cell clicked.
pub fn show(ui: &mut egui::Ui, grid: &Grid, threshold: f64, min_size: usize) -> Option<SliceKey> {
    let dark = ui.visuals().dark_mode;
    let scale = scale_for(threshold);
    let label_w = 130.0;
    let width =
        ((ui.available_width() - label_w) / grid.columns.len().max(1) as f32).clamp(78.0, 150.0);
    let height = 46.0;
    let mut clicked = None;
    egui::Grid::new("bias_heatmap")
        .spacing(vec2(3.0, 3.0))
        .show(ui, |ui| {
            ui.strong(&grid.row_title);
            for c in &grid.columns {
                ui.add_sized(
                    [width, 20.0],
                    egui::Label::new(egui::RichText::new(c).strong()).truncate(),
                );
            }
            ui.end_row();
            for (r, name) in grid.rows.iter().enumerate() {
                ui.add_sized([label_w, height], egui::Label::new(name).truncate());
                for (c, column) in grid.columns.iter().enumerate() {
                    let cell = grid
                        .cells
                        .get(r)
                        .and_then(|row| row.get(c))
                        .and_then(Option::as_ref);
                    let label = format!("{name} × {column}");
                    if cell_ui(ui, cell, &label, [width, height], scale, dark, min_size) {
                        clicked = cell.map(|c| c.key().clone());
                    }
                }
                ui.end_row();
            }
        });
    clicked
}

/// One cell; true when clicked.
fn cell_ui(
    ui: &mut egui::Ui,
    cell: Option<&Cell>,
    label: &str,
    size: [f32; 2],
    scale: f64,
    dark: bool,
    min_size: usize,
) -> bool {
    let sense = if cell.is_some() {
        Sense::click()
    } else {
        Sense::hover()
    };
    let (rect, response) = ui.allocate_exact_size(vec2(size[0], size[1]), sense);
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, cell.is_some(), label));
    let painter = ui.painter_at(rect.expand(3.0));
    let Some(cell) = cell else {
        painter.rect_stroke(
            rect,
            3.0,
            Stroke::new(1.0, ui.visuals().weak_text_color()),
            StrokeKind::Inside,
        );
        painter.text(
            rect.center(),
            egui::Align2::CENTER_CENTER,
            "—",
            egui::FontId::proportional(13.0),
            ui.visuals().weak_text_color(),
        );
        return false;
    };
    let s = &cell.slice;
    let fill = if s.small {
        small_fill(dark)
    } else {
        cell.goodness()
            .map_or(neutral(dark), |g| color_of(g, scale, dark))
    };
    painter.rect_filled(rect, 3.0, fill);
    let ink = if s.small {
        ui.visuals().weak_text_color()
    } else {
        text_on(fill)
    };
    let value = if s.mean.abs() >= 100.0 {
        format!("{:.1}", s.mean)
    } else {
        format!("{:.3}", s.mean)
    };
    painter.text(
        rect.center() - vec2(0.0, 8.0),
        egui::Align2::CENTER_CENTER,
        value,
        egui::FontId::proportional(15.0),
        ink,
    );
    painter.text(
        rect.center() + vec2(0.0, 11.0),
        egui::Align2::CENTER_CENTER,
        format!("n = {}", s.n),
        egui::FontId::proportional(11.0),
        ink,
    );
    if s.flagged {
        painter.rect_stroke(rect, 3.0, Stroke::new(3.0, FLAG), StrokeKind::Inside);
    }
    if response.hovered() {
        painter.rect_stroke(
            rect,
            3.0,
            Stroke::new(1.5, ui.visuals().strong_text_color()),
            StrokeKind::Outside,
        );
    }
    response.on_hover_text(cell.hover(min_size)).clicked()
}

/// The colour scale, the small-slice swatch and the flag outline, explained.
pub fn legend(ui: &mut egui::Ui, threshold: f64, min_size: usize) {
    let dark = ui.visuals().dark_mode;
    let scale = scale_for(threshold);
    ui.horizontal_wrapped(|ui| {
        ui.label(format!("worse by {:.0}%", scale * 100.0));
        let (rect, _) = ui.allocate_exact_size(vec2(180.0, 14.0), Sense::hover());
        let steps = 36;
        for i in 0..steps {
            let t = i as f64 / (steps - 1) as f64 * 2.0 - 1.0;
            let w = rect.width() / steps as f32;
            let r = Rect::from_min_size(
                rect.min + vec2(w * i as f32, 0.0),
                vec2(w + 0.5, rect.height()),
            );
            ui.painter()
                .rect_filled(r, 0.0, color_of(t * scale, scale, dark));
        }
        ui.label(format!("better by {:.0}% than overall", scale * 100.0));
        ui.separator();
        swatch(ui, small_fill(dark), None);
        ui.label(format!("fewer than {min_size} records"));
        ui.separator();
        swatch(ui, neutral(dark), Some(FLAG));
        ui.label(format!(
            "flagged: worse by more than {:.0}% with q < 0.05",
            threshold * 100.0
        ));
    });
}

fn swatch(ui: &mut egui::Ui, fill: Color32, outline: Option<Color32>) {
    let (rect, _) = ui.allocate_exact_size(vec2(22.0, 14.0), Sense::hover());
    ui.painter().rect_filled(rect, 2.0, fill);
    if let Some(o) = outline {
        ui.painter()
            .rect_stroke(rect, 2.0, Stroke::new(2.5, o), StrokeKind::Inside);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_diverges_from_neutral_and_saturates() {
        assert_eq!(color_of(0.0, 0.3, true), neutral(true));
        assert_eq!(color_of(-0.3, 0.3, true), WORSE);
        assert_eq!(color_of(-3.0, 0.3, false), WORSE);
        assert_eq!(color_of(0.9, 0.3, false), BETTER);
        let half = color_of(-0.15, 0.3, false);
        assert!(half.r() > half.b() && half != WORSE);
        assert_eq!(scale_for(0.1), 0.30000000000000004);
        assert_eq!(scale_for(0.0), 0.05);
    }
}
