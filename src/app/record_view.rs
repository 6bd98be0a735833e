//! One record in full: demographics, the source note with its clinical sections coloured, PHI
//! found in it highlighted and placeholders shown as chips, and the reference output.

use crate::data::phi::{PhiKind, find_phi, scrub};
use crate::data::record::{Record, Split};
use crate::data::sections::{SectionKind, parse_sections};
use egui::text::LayoutJob;
use egui::{Color32, FontId, Stroke, TextFormat};
use std::ops::Range;
use std::sync::LazyLock;

/// De-identification placeholders: ours (`[NAME]`) and MIMIC's (`[** ... **]`).
static PLACEHOLDER: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"\[\*\*[^\]]{0,80}\*\*\]|\[(?:NAME|DATE|ID|PHONE|EMAIL|ADDRESS|AGE)\]")
        .expect("static placeholder pattern")
});

pub fn section_color(kind: SectionKind, dark: bool) -> Color32 {
    let (r, g, b) = match kind {
        SectionKind::ChiefComplaint => (0x8e, 0x9a, 0xaf),
        SectionKind::Diagnosis => (0xe0, 0x6c, 0x75),
        SectionKind::HistoryOfPresentIllness => (0x61, 0xaf, 0xef),
        SectionKind::PastMedicalHistory => (0x56, 0xb6, 0xc2),
        SectionKind::Allergies => (0xd1, 0x9a, 0x66),
        SectionKind::Results => (0xab, 0xb2, 0xbf),
        SectionKind::HospitalCourse => (0xc6, 0x78, 0xdd),
        SectionKind::Medications => (0x98, 0xc3, 0x79),
        SectionKind::Instructions => (0xe5, 0xc0, 0x7b),
        SectionKind::FollowUp => (0x4e, 0xc9, 0xb0),
    };
    if dark {
        Color32::from_rgb(r, g, b)
    } else {
        // Darker shades stay readable on a light background.
        Color32::from_rgb(r / 2 + 10, g / 2 + 10, b / 2 + 10)
    }
}

/// How each byte range of the note is drawn.
#[derive(Clone, Copy, PartialEq)]
struct Style {
    section: Option<SectionKind>,
    header: bool,
    phi: Option<PhiKind>,
    placeholder: bool,
}

/// Splits `text` into runs of equal style; boundaries come from sections, PHI and placeholders.
fn styled_runs(text: &str, phi: &[(PhiKind, Range<usize>)]) -> Vec<(Range<usize>, Style)> {
    let sections = parse_sections(text);
    let placeholders: Vec<Range<usize>> = PLACEHOLDER.find_iter(text).map(|m| m.range()).collect();
    let mut cuts: Vec<usize> = vec![0, text.len()];
    for s in &sections {
        cuts.extend([s.header.start, s.header.end, s.body.start, s.body.end]);
    }
    cuts.extend(phi.iter().flat_map(|(_, r)| [r.start, r.end]));
    cuts.extend(placeholders.iter().flat_map(|r| [r.start, r.end]));
    cuts.retain(|c| text.is_char_boundary(*c));
    cuts.sort_unstable();
    cuts.dedup();
    let inside = |r: &Range<usize>, at: usize| r.start <= at && at < r.end;
    cuts.windows(2)
        .map(|w| {
            let at = w[0];
            let section = sections
                .iter()
                .find(|s| s.header.start <= at && at < s.body.end.max(s.header.end));
            let style = Style {
                section: section.map(|s| s.kind),
                header: section.is_some_and(|s| inside(&s.header, at)),
                phi: phi.iter().find(|(_, r)| inside(r, at)).map(|(k, _)| *k),
                placeholder: placeholders.iter().any(|r| inside(r, at)),
            };
            (w[0]..w[1], style)
        })
        .collect()
}

/// The note as a layout job with coloured sections, PHI and placeholders.
pub fn note_layout(text: &str, dark: bool, highlight_phi: bool) -> LayoutJob {
    let phi: Vec<(PhiKind, Range<usize>)> = if highlight_phi {
        find_phi(text)
            .into_iter()
            .map(|s| (s.kind, s.start..s.end))
            .collect()
    } else {
        Vec::new()
    };
    let base = if dark {
        Color32::from_gray(220)
    } else {
        Color32::from_gray(30)
    };
    let mut job = LayoutJob::default();
    for (range, style) in styled_runs(text, &phi) {
        let mut format = TextFormat {
            font_id: FontId::proportional(14.0),
            color: base,
            ..Default::default()
        };
        if let Some(kind) = style.section {
            let c = section_color(kind, dark);
            if style.header {
                format.color = c;
                format.font_id = FontId::proportional(15.0);
                format.underline = Stroke::new(1.0, c);
            } else {
                format.background = c.gamma_multiply(0.10);
            }
        }
        if style.placeholder {
            format.background = Color32::from_rgb(0x6f, 0x42, 0xc1).gamma_multiply(0.55);
            format.color = Color32::WHITE;
            format.font_id = FontId::monospace(13.0);
        }
        if style.phi.is_some() {
            format.background = Color32::from_rgb(0xd7, 0x3a, 0x49).gamma_multiply(0.6);
            format.color = Color32::WHITE;
            format.underline = Stroke::new(1.5, Color32::from_rgb(0xff, 0x55, 0x55));
        }
        job.append(&text[range], 0.0, format);
    }
    job
}

/// The section legend, coloured like the note.
fn legend(ui: &mut egui::Ui, text: &str, dark: bool) {
    let kinds: Vec<SectionKind> = {
        let mut k: Vec<SectionKind> = parse_sections(text).iter().map(|s| s.kind).collect();
        k.sort();
        k.dedup();
        k
    };
    if kinds.is_empty() {
        return;
    }
    ui.horizontal_wrapped(|ui| {
        ui.small("Sections:");
        for k in kinds {
            ui.label(
                egui::RichText::new(k.label())
                    .color(section_color(k, dark))
                    .strong(),
            );
        }
    });
}

/// Shows `record`; `scrubbed` toggles between the note as stored and with PHI replaced.
pub fn show(ui: &mut egui::Ui, record: &Record, split: Split, scrubbed: &mut bool) {
    let dark = ui.visuals().dark_mode;
    ui.heading(format!("Record {}", record.id));
    ui.horizontal_wrapped(|ui| {
        let chip = |ui: &mut egui::Ui, label: &str, value: String| {
            ui.label(
                egui::RichText::new(format!("{label}: {value}"))
                    .small()
                    .strong(),
            );
        };
        chip(
            ui,
            "Patient",
            record.patient_id.clone().unwrap_or_else(|| "—".into()),
        );
        chip(ui, "Split", split.name().into());
        chip(ui, "Task", record.task.name().into());
        chip(
            ui,
            "Sex",
            record.gender.clone().unwrap_or_else(|| "—".into()),
        );
        chip(
            ui,
            "Age",
            record
                .age
                .map(|a| format!("{a} ({})", crate::data::record::AgeGroup::of(a).label()))
                .unwrap_or_else(|| "—".into()),
        );
        chip(
            ui,
            "Ethnicity",
            record.ethnicity.clone().unwrap_or_else(|| "—".into()),
        );
    });
    if !record.meta.is_empty() {
        ui.horizontal_wrapped(|ui| {
            for (k, v) in &record.meta {
                if k == "clean_target" {
                    continue;
                }
                let value = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                ui.small(format!("{k} = {value}"));
            }
        });
    }
    ui.separator();
    let phi_count = find_phi(&record.input).len();
    ui.horizontal(|ui| {
        ui.strong("Source");
        ui.checkbox(scrubbed, "Show with PHI replaced");
        if phi_count > 0 {
            ui.colored_label(
                ui.visuals().error_fg_color,
                format!("{phi_count} PHI item(s) found"),
            );
        }
    });
    legend(ui, &record.input, dark);
    let text = if *scrubbed {
        scrub(&record.input)
    } else {
        record.input.clone()
    };
    ui.label(note_layout(&text, dark, !*scrubbed));
    ui.separator();
    ui.strong("Reference");
    ui.label(note_layout(&record.target, dark, true));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_the_text_and_mark_headers_phi_and_placeholders() {
        let text = "Discharge Diagnosis: CHF\nSeen by Dr. Alvarez on [DATE].\n";
        let at = text.find("Alvarez").unwrap_or(0);
        let phi = vec![(PhiKind::Name, at..at + "Alvarez".len())];
        let runs = styled_runs(text, &phi);
        let joined: String = runs.iter().map(|(r, _)| &text[r.clone()]).collect();
        assert_eq!(joined, text);
        let style_of = |needle: &str| {
            let at = text.find(needle).unwrap_or(usize::MAX);
            runs.iter()
                .find(|(r, _)| r.start <= at && at < r.end)
                .map(|(_, s)| *s)
        };
        let header = style_of("Discharge").expect("header run");
        assert!(header.header && header.section == Some(SectionKind::Diagnosis));
        let name = style_of("Alvarez").expect("phi run");
        assert_eq!(name.phi, Some(PhiKind::Name));
        assert!(!name.header);
        assert!(style_of("[DATE]").expect("placeholder run").placeholder);
    }
}
