//! Histograms of the (filtered) dataset: input and target lengths, and each demographic field.

use crate::data::dataset::DatasetView;
use crate::data::record::{AgeGroup, Demographic, Split};
use egui_plot::{Bar, BarChart, Plot};
use std::collections::BTreeMap;

/// Bars of a length histogram: bin centre, count, and the shared bin width.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub bars: Vec<(f64, f64)>,
    pub width: f64,
}

/// Equal-width bins over `[min, max]` of `values`.
pub fn histogram(values: impl Iterator<Item = u32> + Clone, bins: usize) -> Histogram {
    let (min, max) = values
        .clone()
        .fold((u32::MAX, 0), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if min > max {
        return Histogram {
            bars: Vec::new(),
            width: 1.0,
        };
    }
    let span = (max - min).max(1) as f64;
    let width = (span / bins as f64).max(1.0);
    let n = ((span / width).floor() as usize + 1).min(bins.max(1));
    let mut counts = vec![0.0; n];
    for v in values {
        let i = (((v - min) as f64 / width) as usize).min(n - 1);
        counts[i] += 1.0;
    }
    Histogram {
        bars: counts
            .into_iter()
            .enumerate()
            .map(|(i, c)| (min as f64 + (i as f64 + 0.5) * width, c))
            .collect(),
        width,
    }
}

/// Counts per category, in display order.
pub type Counts = Vec<(String, usize)>;

#[derive(Debug, Clone, PartialEq)]
pub struct ChartData {
    pub input_words: Histogram,
    pub target_words: Histogram,
    pub fields: Vec<(&'static str, Counts)>,
}

fn count_field(view: &DatasetView, rows: &[usize], field: Demographic) -> Counts {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for &i in rows {
        let value = view.records()[i]
            .demographic(field)
            .unwrap_or_else(|| "missing".into());
        *counts.entry(value).or_default() += 1;
    }
    if field == Demographic::AgeGroup {
        // Age groups read best in age order, not alphabetically.
        let order = |label: &str| {
            AgeGroup::ALL
                .iter()
                .position(|g| g.label() == label)
                .unwrap_or(usize::MAX)
        };
        let mut v: Counts = counts.into_iter().collect();
        v.sort_by_key(|(k, _)| order(k));
        return v;
    }
    let mut v: Counts = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

impl ChartData {
    pub fn compute(view: &DatasetView, rows: &[usize]) -> ChartData {
        let splits: Counts = Split::ALL
            .iter()
            .map(|s| {
                let n = rows.iter().filter(|&&i| view.splits[i] == *s).count();
                (s.name().to_string(), n)
            })
            .collect();
        ChartData {
            input_words: histogram(rows.iter().map(|&i| view.input_words[i]), 30),
            target_words: histogram(rows.iter().map(|&i| view.target_words[i]), 30),
            fields: vec![
                ("Split", splits),
                ("Sex", count_field(view, rows, Demographic::Gender)),
                ("Age group", count_field(view, rows, Demographic::AgeGroup)),
                ("Ethnicity", count_field(view, rows, Demographic::Ethnicity)),
            ],
        }
    }
}

const LENGTH_COLORS: [egui::Color32; 2] = [
    egui::Color32::from_rgb(0x61, 0xaf, 0xef),
    egui::Color32::from_rgb(0x98, 0xc3, 0x79),
];
const CATEGORY_COLOR: egui::Color32 = egui::Color32::from_rgb(0xc6, 0x78, 0xdd);

fn length_plot(ui: &mut egui::Ui, title: &str, h: &Histogram, color: egui::Color32) {
    ui.strong(title);
    let bars: Vec<Bar> = h
        .bars
        .iter()
        .map(|(x, c)| Bar::new(*x, *c).width(h.width * 0.95))
        .collect();
    Plot::new(title)
        .height(220.0)
        .allow_scroll(false)
        .x_axis_label("words")
        .y_axis_label("records")
        .show(ui, |p| p.bar_chart(BarChart::new(title, bars).color(color)));
}

/// The width `text` takes in the body font, unwrapped.
pub(super) fn text_width(ui: &egui::Ui, text: &str) -> f32 {
    let font = egui::TextStyle::Body.resolve(ui.style());
    ui.fonts_mut(|f| {
        f.layout_no_wrap(text.into(), font, egui::Color32::WHITE)
            .size()
            .x
    })
}

/// One bar per category, its name before it and its count after: names stay readable however
/// narrow the column (a plot's axis drops labels that would collide).
fn category_bars(ui: &mut egui::Ui, title: &'static str, counts: &Counts) {
    ui.strong(title);
    let name_width = counts
        .iter()
        .map(|(k, _)| text_width(ui, k))
        .fold(0.0, f32::max);
    let count_width = counts
        .iter()
        .map(|(_, c)| text_width(ui, &c.to_string()))
        .fold(0.0, f32::max);
    let spacing = ui.spacing().item_spacing.x;
    let bar_room = (ui.available_width() - name_width - count_width - 2.0 * spacing).max(20.0);
    let most = counts.iter().map(|(_, c)| *c).max().unwrap_or(0).max(1);
    for (name, count) in counts {
        ui.horizontal(|ui| {
            ui.add_sized([name_width, 16.0], egui::Label::new(name));
            let (rect, response) =
                ui.allocate_exact_size(egui::vec2(bar_room, 14.0), egui::Sense::hover());
            let filled = rect.width() * *count as f32 / most as f32;
            let bar = egui::Rect::from_min_size(rect.min, egui::vec2(filled, rect.height()));
            ui.painter().rect_filled(bar, 2.0, CATEGORY_COLOR);
            response.on_hover_text(format!("{name}: {count} records"));
            ui.label(count.to_string());
        });
    }
    ui.add_space(8.0);
}

pub fn show(ui: &mut egui::Ui, data: &ChartData) {
    egui::ScrollArea::vertical().show(ui, |ui| {
        ui.columns(2, |cols| {
            length_plot(
                &mut cols[0],
                "Input length",
                &data.input_words,
                LENGTH_COLORS[0],
            );
            length_plot(
                &mut cols[1],
                "Target length",
                &data.target_words,
                LENGTH_COLORS[1],
            );
        });
        ui.add_space(10.0);
        let n = data.fields.len().max(1);
        ui.columns(n.min(2), |cols| {
            for (i, (title, counts)) in data.fields.iter().enumerate() {
                category_bars(&mut cols[i % cols.len()], title, counts);
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_every_value_once() {
        let values = [10u32, 12, 15, 40, 41, 100];
        let h = histogram(values.iter().copied(), 9);
        let total: f64 = h.bars.iter().map(|(_, c)| c).sum();
        assert_eq!(total, 6.0);
        assert_eq!(h.bars.len(), 9);
        assert_eq!(h.width, 10.0);
        assert_eq!(h.bars[0], (15.0, 3.0));
        assert_eq!(h.bars[8].1, 1.0);
    }

    #[test]
    fn empty_histogram_has_no_bars() {
        assert!(histogram(std::iter::empty(), 10).bars.is_empty());
    }
}
