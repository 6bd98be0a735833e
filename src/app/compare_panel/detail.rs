//! The selected record in the Compare panel: source, reference and one or two outputs side by
//! side, each output with its word diff against the reference, medication and safety marks,
//! and its metrics as badges.

use super::super::diff::WordDiff;
use super::marks::{self, ADDED, HALLUCINATED, MISMATCHED, OMITTED, Piece, SAFETY};
use super::rows::{Compared, Side};
use crate::eval::names::{metric_label, metric_short_label};
use crate::project::predictions::{PredictionRow, higher_is_worse};
use egui::text::LayoutJob;
use egui::{Color32, RichText, Stroke, TextFormat};

/// The diffs of one row's outputs, computed once when the row is selected.
pub struct Detail {
    pub row: usize,
    diffs: Vec<(Side, WordDiff)>,
}

/// The metrics shown as badges first when an output has them, in this order.
const BADGES: [&str; 6] = [
    "rougeL.fmeasure",
    "rouge1.fmeasure",
    "bleu",
    "fkgl",
    "fre",
    "correct",
];

pub fn format_metric(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e6 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

fn badge(ui: &mut egui::Ui, text: String, fill: Color32, hover: &str) {
    // A widget whose size is known before it is placed, so that a wrapped row wraps it whole.
    let chip = egui::Button::new(RichText::new(text).small().color(Color32::WHITE))
        .fill(fill)
        .corner_radius(4.0)
        .wrap_mode(egui::TextWrapMode::Extend)
        .sense(egui::Sense::hover());
    ui.add(chip).on_hover_text(hover);
}

const RED: Color32 = Color32::from_rgb(0xc6, 0x28, 0x28);
const AMBER: Color32 = Color32::from_rgb(0xb2, 0x6a, 0x00);
const BLUE: Color32 = Color32::from_rgb(0x15, 0x65, 0xc0);
const GREY: Color32 = Color32::from_rgb(0x54, 0x5b, 0x64);

/// Small coloured counts of an output's problems, for the table.
pub fn problem_chips(ui: &mut egui::Ui, row: &PredictionRow) {
    let count = |name: &str| row.metric(name).unwrap_or(0.0) as usize;
    let chips = [
        (
            count("meds.hallucinated"),
            "H",
            RED,
            "medications not in the source",
        ),
        (count("meds.omitted"), "O", AMBER, "medications left out"),
        (count("meds.mismatched"), "D", AMBER, "doses that differ"),
        (row.safety.len(), "S", RED, "safety flags"),
    ];
    ui.spacing_mut().item_spacing.x = 3.0;
    for (n, letter, colour, what) in chips {
        if n > 0 {
            badge(ui, format!("{letter}{n}"), colour, &format!("{n} {what}"));
        }
    }
    if row.output_cut {
        badge(ui, "cut".into(), GREY, CUT_NOTE);
    }
}

/// What a cut output is, for a reader.
pub const CUT_NOTE: &str =
    "Cut: stopped at the length limit, not where the program ended it; the text stops mid-way";

impl Detail {
    pub fn new(c: &Compared, row: usize) -> Self {
        let reference = &c.a.rows[row].reference;
        let diffs = [Side::A, Side::B]
            .into_iter()
            .filter_map(|s| Some((s, WordDiff::new(reference, &c.row(row, s)?.prediction))))
            .collect();
        Self { row, diffs }
    }

    pub fn show(&self, ui: &mut egui::Ui, c: &Compared, show_removed: &mut bool) {
        let a = &c.a.rows[self.row];
        ui.horizontal_wrapped(|ui| {
            ui.heading(format!("Record {}", a.id));
            let demo = [
                a.gender.clone(),
                a.age.map(|x| format!("age {x}")),
                a.ethnicity.clone(),
            ];
            ui.label(demo.into_iter().flatten().collect::<Vec<_>>().join(" · "));
            ui.separator();
            ui.checkbox(show_removed, "show dropped reference words");
            legend(ui);
        });
        let columns = 2 + self.diffs.len();
        ui.columns(columns, |cols| {
            text_column(&mut cols[0], "Source", "source", |ui| {
                let pieces = marks::source_pieces(&a.input, c.outputs(self.row));
                ui.label(layout(ui, &a.input, "", &pieces));
            });
            text_column(&mut cols[1], "Reference", "reference", |ui| {
                ui.label(RichText::new(&a.reference));
            });
            for (k, (side, diff)) in self.diffs.iter().enumerate() {
                let Some(row) = c.row(self.row, *side) else {
                    continue;
                };
                let set = match side {
                    Side::A => &c.a,
                    Side::B => c.b.as_ref().unwrap_or(&c.a),
                };
                let title = format!("Output {side:?}: {}", set.source.name);
                let show = *show_removed;
                text_column(&mut cols[2 + k], &title, &format!("output{k}"), |ui| {
                    output(ui, row, diff, show, k);
                });
            }
        });
    }
}

fn legend(ui: &mut egui::Ui) {
    let visuals = ui.visuals().clone();
    let mut job = LayoutJob::default();
    let items = [
        ("added to the reference", ADDED),
        ("medication not in the source", HALLUCINATED),
        ("dose differs", MISMATCHED),
        ("safety", SAFETY),
        ("left out (in the source)", OMITTED),
    ];
    for (i, (text, mark)) in items.into_iter().enumerate() {
        if i > 0 {
            job.append("  ", 0.0, plain(&visuals));
        }
        job.append(text, 0.0, format_for(&visuals, mark));
    }
    ui.label(job);
}

fn text_column(ui: &mut egui::Ui, title: &str, salt: &str, body: impl FnOnce(&mut egui::Ui)) {
    ui.strong(title);
    // Badges and long words must wrap inside the column, not widen it over the next one.
    egui::ScrollArea::vertical()
        .id_salt(("compare_column", salt))
        .auto_shrink([false, false])
        .show(ui, |ui| {
            // The width inside the scroll bar, not the column's.
            ui.set_max_width(ui.available_width());
            body(ui);
        });
}

fn output(
    ui: &mut egui::Ui,
    row: &PredictionRow,
    diff: &WordDiff,
    show_removed: bool,
    column: usize,
) {
    ui.horizontal_wrapped(|ui| {
        for name in BADGES {
            if let Some(x) = row.metric(name) {
                let text = format!("{} {}", metric_short_label(name), format_metric(x));
                badge(ui, text, BLUE, &metric_label(name));
            }
        }
        if let Some(kept) = diff.kept_share() {
            badge(
                ui,
                format!("{:.0}% words kept", kept * 100.0),
                GREY,
                "share of this output's words that the reference has, in order",
            );
        }
        problem_chips(ui, row);
    });
    let pieces = marks::output_pieces(row, diff, show_removed);
    ui.label(layout(ui, &row.prediction, &row.reference, &pieces));
    findings(ui, row);
    egui::CollapsingHeader::new("All metrics")
        .id_salt(("metrics", column))
        .show(ui, |ui| {
            egui::Grid::new(("metric_grid", column))
                .striped(true)
                .show(ui, |ui| {
                    for (name, value) in &row.metrics {
                        ui.label(metric_label(name)).on_hover_text(name);
                        let worse = if higher_is_worse(name) {
                            "higher is worse"
                        } else {
                            "lower is worse"
                        };
                        ui.label(format_metric(*value)).on_hover_text(worse);
                        ui.end_row();
                    }
                });
        });
}

/// The medication findings and safety flags of an output, as sentences.
fn findings(ui: &mut egui::Ui, row: &PredictionRow) {
    let error = ui.visuals().error_fg_color;
    let warn = ui.visuals().warn_fg_color;
    if let Some(meds) = &row.meds {
        for m in &meds.hallucinated {
            ui.colored_label(
                error,
                format!("Not in the source: {}", med_name(&m.name, &m.generic)),
            );
        }
        for m in &meds.omitted {
            ui.colored_label(warn, format!("Left out: {}", med_name(&m.name, &m.generic)));
        }
        for m in &meds.mismatched {
            ui.colored_label(
                warn,
                format!(
                    "{} {} differs: source {}, output {}",
                    m.generic, m.field, m.source, m.output
                ),
            );
        }
    }
    for f in &row.safety {
        ui.colored_label(error, format!("Safety: {} ({})", f.message, f.kind));
    }
}

fn med_name(name: &str, generic: &str) -> String {
    if name.eq_ignore_ascii_case(generic) || generic.is_empty() {
        name.to_string()
    } else {
        format!("{name} ({generic})")
    }
}

fn plain(visuals: &egui::Visuals) -> TextFormat {
    TextFormat {
        font_id: egui::FontId::proportional(14.0),
        color: visuals.text_color(),
        ..Default::default()
    }
}

/// How a stretch with `mark` looks.
fn format_for(visuals: &egui::Visuals, mark: u8) -> TextFormat {
    let mut f = plain(visuals);
    if mark & ADDED != 0 {
        f.background = if visuals.dark_mode {
            Color32::from_rgb(0x1f, 0x4d, 0x3a)
        } else {
            Color32::from_rgb(0xc8, 0xec, 0xd4)
        };
    }
    if mark & OMITTED != 0 {
        f.underline = Stroke::new(2.0, AMBER);
    }
    if mark & MISMATCHED != 0 {
        f.underline = Stroke::new(2.0, visuals.warn_fg_color);
    }
    if mark & SAFETY != 0 {
        f.underline = Stroke::new(2.0, visuals.error_fg_color);
        f.italics = true;
    }
    if mark & HALLUCINATED != 0 {
        f.background = RED;
        f.color = Color32::WHITE;
    }
    f
}

/// The pieces of `text` as one layout; dropped words of `other` are struck through.
fn layout(ui: &egui::Ui, text: &str, other: &str, pieces: &[Piece]) -> LayoutJob {
    let visuals = ui.visuals();
    let mut job = LayoutJob {
        wrap: egui::text::TextWrapping {
            max_width: ui.available_width(),
            ..Default::default()
        },
        ..Default::default()
    };
    for p in pieces {
        match p {
            Piece::Text { range, marks } => {
                job.append(&text[range.clone()], 0.0, format_for(visuals, *marks));
            }
            Piece::Removed(range) => {
                let mut f = plain(visuals);
                f.color = visuals.weak_text_color();
                f.strikethrough = Stroke::new(1.0, visuals.weak_text_color());
                job.append(&format!("{} ", &other[range.clone()]), 0.0, f);
            }
        }
    }
    job
}
