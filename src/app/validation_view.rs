//! The validation report of the open dataset: the pass/fail checks first, then the details a
//! person needs to fix the data (bad lines, duplicates, length outliers, coverage, PHI).

use super::charts::text_width;
use crate::data::dataset::DatasetView;
use crate::data::validate::{Groups, IdList, LengthStats};

const GOOD: egui::Color32 = egui::Color32::from_rgb(0x4c, 0xaf, 0x50);

/// Draws the report; returns the index of a record the user clicked.
pub fn show(ui: &mut egui::Ui, view: &DatasetView) -> Option<usize> {
    let report = &view.report;
    let mut clicked: Option<String> = None;
    egui::ScrollArea::vertical()
        .id_salt("validation")
        .show(ui, |ui| {
            ui.heading("Checks");
            // Rows rather than a grid: a long detail wraps within the pane instead of running
            // under the record view beside it.
            let name_width = report
                .checks
                .iter()
                .map(|c| text_width(ui, &c.name))
                .fold(0.0, f32::max);
            for c in &report.checks {
                ui.horizontal(|ui| {
                    let (mark, color) = if c.passed {
                        ("pass", GOOD)
                    } else {
                        ("fail", ui.visuals().error_fg_color)
                    };
                    ui.add_sized(
                        [text_width(ui, "pass").max(text_width(ui, "fail")), 0.0],
                        egui::Label::new(egui::RichText::new(mark).color(color).strong()),
                    );
                    ui.add_sized(
                        [name_width, 0.0],
                        egui::Label::new(egui::RichText::new(&c.name).strong()),
                    );
                    ui.add(egui::Label::new(&c.detail).wrap());
                });
            }
            ui.add_space(6.0);
            ui.label(format!(
                "{} records from {} lines · {} schema errors · sha256 {}",
                report.records,
                report.lines_read,
                report.schema_errors,
                report.sha256.get(..12).unwrap_or(&report.sha256)
            ));

            section(ui, "Skipped lines", report.issues.len(), |ui| {
                for issue in report.issues.iter().take(200) {
                    ui.label(egui::RichText::new(issue.to_string()).monospace());
                }
            });
            section(ui, "Missing fields", report.missing.values().sum(), |ui| {
                egui::Grid::new("missing").show(ui, |ui| {
                    for (field, n) in &report.missing {
                        ui.label(field);
                        ui.label(n.to_string());
                        ui.end_row();
                    }
                });
            });
            lengths(ui, report, &mut clicked);
            groups(
                ui,
                "Exact duplicates",
                &report.exact_duplicates,
                &mut clicked,
            );
            groups(
                ui,
                "Duplicates after normalising case and spaces",
                &report.normalized_duplicates,
                &mut clicked,
            );
            groups(
                ui,
                "Same input, different targets",
                &report.conflicts,
                &mut clicked,
            );
            coverage(ui, report);
            phi(ui, report, &mut clicked);
        });
    clicked.and_then(|id| view.records().iter().position(|r| r.id == id))
}

fn section(ui: &mut egui::Ui, title: &str, count: usize, body: impl FnOnce(&mut egui::Ui)) {
    egui::CollapsingHeader::new(format!("{title} ({count})"))
        .default_open(count > 0)
        .show(ui, body);
}

fn id_links(ui: &mut egui::Ui, ids: &[String], clicked: &mut Option<String>) {
    ui.horizontal_wrapped(|ui| {
        for id in ids {
            if ui.link(id).clicked() {
                *clicked = Some(id.clone());
            }
        }
    });
}

fn stats_row(ui: &mut egui::Ui, name: &str, s: &LengthStats, limits: (usize, usize)) {
    ui.label(name);
    ui.label(s.min.to_string());
    ui.label(format!("{:.1}", s.mean));
    ui.label(format!("{:.0}", s.median));
    ui.label(format!("{:.0}", s.p95));
    ui.label(s.max.to_string());
    ui.label(format!("{}–{}", limits.0, limits.1));
    ui.end_row();
}

fn lengths(
    ui: &mut egui::Ui,
    report: &crate::data::validate::ValidationReport,
    clicked: &mut Option<String>,
) {
    let outliers = [
        ("Input too short", &report.input_too_short),
        ("Input too long", &report.input_too_long),
        ("Target too short", &report.target_too_short),
        ("Target too long", &report.target_too_long),
    ];
    let total: usize = outliers.iter().map(|(_, l)| l.count).sum();
    section(ui, "Lengths in words", total, |ui| {
        egui::Grid::new("lengths").striped(true).show(ui, |ui| {
            for h in ["", "min", "mean", "median", "p95", "max", "allowed"] {
                ui.strong(h);
            }
            ui.end_row();
            stats_row(ui, "input", &report.input_words, report.limits.input_words);
            stats_row(
                ui,
                "target",
                &report.target_words,
                report.limits.target_words,
            );
        });
        for (name, list) in outliers {
            outlier_list(ui, name, list, clicked);
        }
    });
}

fn outlier_list(ui: &mut egui::Ui, name: &str, list: &IdList, clicked: &mut Option<String>) {
    if list.count > 0 {
        ui.label(format!("{name}: {}", list.count));
        id_links(ui, &list.ids, clicked);
    }
}

fn groups(ui: &mut egui::Ui, title: &str, g: &Groups, clicked: &mut Option<String>) {
    section(ui, title, g.count, |ui| {
        ui.label(format!(
            "{} groups, {} records beyond the first of each",
            g.count, g.extra_records
        ));
        for ids in &g.groups {
            id_links(ui, ids, clicked);
        }
    });
}

fn coverage(ui: &mut egui::Ui, report: &crate::data::validate::ValidationReport) {
    let missing: usize = report.coverage.values().map(|c| c.missing).sum();
    section(ui, "Demographic coverage", report.coverage.len(), |ui| {
        for (field, cov) in &report.coverage {
            ui.horizontal_wrapped(|ui| {
                ui.strong(field);
                for (value, n) in &cov.values {
                    ui.label(format!("{value}: {n}"));
                }
                if cov.missing > 0 {
                    ui.colored_label(
                        ui.visuals().warn_fg_color,
                        format!("missing: {}", cov.missing),
                    );
                }
            });
        }
        if missing == 0 {
            ui.colored_label(GOOD, "Every record has every demographic field.");
        }
    });
}

fn phi(
    ui: &mut egui::Ui,
    report: &crate::data::validate::ValidationReport,
    clicked: &mut Option<String>,
) {
    let p = &report.phi;
    section(
        ui,
        "Protected health information found",
        p.records_with_phi,
        |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.label(format!("{} records contain PHI:", p.records_with_phi));
                for (kind, n) in &p.by_kind {
                    ui.label(format!("{kind} {n}"));
                }
            });
            for f in &p.findings {
                ui.horizontal(|ui| {
                    if ui.link(&f.id).clicked() {
                        *clicked = Some(f.id.clone());
                    }
                    ui.label(&f.field);
                    ui.label(f.kind.name());
                    // Cut to the pane with an ellipsis, whole on hover.
                    ui.add(
                        egui::Label::new(egui::RichText::new(&f.snippet).monospace()).truncate(),
                    );
                });
            }
        },
    );
}
