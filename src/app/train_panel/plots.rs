//! The curves of a run (training loss, validation loss, learning rate, tokens/s) and their plots:
//! loss raw and smoothed with validation points, optionally on a log scale, and the learning
//! rate and throughput below it on the same step axis, with hover showing step and value.

use super::series::{Series, Smoothed};
use crate::train::TrainEvent;
use egui_plot::{
    ColorConflictHandling, Legend, Line, MarkerShape, Plot, PlotPoint, PlotPoints, Points,
};

/// One run's curves, bounded however long the run.
#[derive(Debug, Clone, Default)]
pub struct Curves {
    pub loss: Series,
    pub val_loss: Series,
    pub lr: Series,
    pub tokens_per_s: Series,
    smoothed: Smoothed,
}

impl Curves {
    /// Adds what a training event carries; other events change nothing.
    pub fn record(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::Step(m) => {
                let x = m.step as f64;
                self.loss.push(x, m.loss);
                self.lr.push(x, m.lr);
                self.tokens_per_s.push(x, m.tokens_per_s);
            }
            TrainEvent::Eval { step, val_loss, .. } => self.val_loss.push(*step as f64, *val_loss),
            TrainEvent::Started { .. }
            | TrainEvent::Validating { .. }
            | TrainEvent::Checkpoint { .. } => {}
        }
    }

    /// The curves of a run's `metrics.jsonl` lines (steps and evaluations).
    pub fn from_metrics(lines: &[serde_json::Value]) -> Curves {
        let mut curves = Curves::default();
        for line in lines {
            let Some(step) = line["step"].as_u64().map(|s| s as f64) else {
                continue;
            };
            let number = |key: &str| line[key].as_f64();
            if let Some(val) = number("val_loss") {
                curves.val_loss.push(step, val);
                continue;
            }
            if let Some(loss) = number("loss") {
                curves.loss.push(step, loss);
            }
            if let Some(lr) = number("lr") {
                curves.lr.push(step, lr);
            }
            if let Some(rate) = number("tokens_per_s") {
                curves.tokens_per_s.push(step, rate);
            }
        }
        curves
    }

    /// Brings the smoothed training loss up to date for `weight`.
    pub fn refresh_smoothed(&mut self, weight: f32) {
        self.smoothed.update(&self.loss, weight);
    }

    /// The smoothed training loss as of the last `refresh_smoothed`.
    pub fn smoothed(&self) -> &[PlotPoint] {
        self.smoothed.points()
    }
}

/// How the loss is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossStyle {
    /// EMA weight, 0 for none.
    pub smoothing: f32,
    pub log_y: bool,
}

/// The smoothing slider and the log-scale switch; returns the style they set.
pub fn style_controls(ui: &mut egui::Ui, smoothing: &mut f32, log_y: &mut bool) -> LossStyle {
    ui.horizontal(|ui| {
        ui.add(egui::Slider::new(smoothing, 0.0..=0.99).text("smoothing"))
            .on_hover_text("Weight of the exponential moving average drawn over the raw loss");
        ui.checkbox(log_y, "log scale");
    });
    LossStyle {
        smoothing: *smoothing,
        log_y: *log_y,
    }
}

/// One run on a plot: its name in the legend and its colour.
pub struct Trace<'a> {
    pub name: &'a str,
    pub color: egui::Color32,
    pub curves: &'a mut Curves,
}

/// Distinct colours for runs overlaid on one plot, readable on dark and light backgrounds.
pub const RUN_COLORS: [egui::Color32; 6] = [
    egui::Color32::from_rgb(0x61, 0xaf, 0xef),
    egui::Color32::from_rgb(0xe5, 0x8e, 0x4c),
    egui::Color32::from_rgb(0x98, 0xc3, 0x79),
    egui::Color32::from_rgb(0xc6, 0x78, 0xdd),
    egui::Color32::from_rgb(0xe0, 0x6c, 0x75),
    egui::Color32::from_rgb(0x56, 0xb6, 0xc2),
];

const VAL_COLOR: egui::Color32 = egui::Color32::from_rgb(0xf0, 0xc0, 0x40);

/// `points`, or their base-10 logarithms (non-positive values dropped) on a log scale.
fn scaled(points: &[PlotPoint], log_y: bool) -> PlotPoints<'_> {
    if log_y {
        PlotPoints::Owned(
            points
                .iter()
                .filter(|p| p.y > 0.0)
                .map(|p| PlotPoint::new(p.x, p.y.log10()))
                .collect(),
        )
    } else {
        PlotPoints::Borrowed(points)
    }
}

fn unscale(y: f64, log_y: bool) -> f64 {
    if log_y { 10f64.powf(y) } else { y }
}

/// `step 120` and the hovered item's value, read in the plot's units.
fn hover_text(name: &str, point: PlotPoint, log_y: bool) -> String {
    let value = unscale(point.y, log_y);
    format!("step {:.0}\n{name}: {}", point.x, format_value(value))
}

/// Four significant digits, trailing zeros dropped; scientific notation for tiny rates and huge
/// counts.
pub fn format_value(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    if v.abs() < 1e-3 || v.abs() >= 1e6 {
        return format!("{v:.3e}");
    }
    let decimals = (3 - v.abs().log10().floor() as i32).max(0) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// The legend names of a trace's raw, smoothed and validation loss: plain words when the plot
/// shows one run; the run's name for all three when it compares several, so that the legend has
/// one entry per run, which hides or shows the run whole.
fn loss_names(name: &str, single: bool) -> [String; 3] {
    if single {
        ["training loss", "smoothed", "validation loss"].map(String::from)
    } else {
        [name, name, name].map(String::from)
    }
}

/// Draws the loss of every trace: the raw line faint, the smoothed one strong, validation as
/// points. Returns how many traces had something to draw.
pub fn loss_plot(
    ui: &mut egui::Ui,
    id: &str,
    traces: &mut [Trace<'_>],
    style: LossStyle,
    height: f32,
) -> usize {
    for t in traces.iter_mut() {
        t.curves.refresh_smoothed(style.smoothing);
    }
    let shown: Vec<&Trace<'_>> = traces
        .iter()
        .filter(|t| !(t.curves.loss.is_empty() && t.curves.val_loss.is_empty()))
        .collect();
    let log_y = style.log_y;
    let single = shown.len() == 1;
    let mut plot = Plot::new(id)
        .height(height)
        .link_axis(link_group(id), [true, false])
        .link_cursor(link_group(id), [true, false])
        .x_axis_label("step")
        .y_axis_label(if log_y { "loss (log scale)" } else { "loss" })
        // An overlaid run's three items share its name; its legend entry takes the run's colour,
        // which the validation points (drawn last) carry, not the faint raw line's.
        .legend(Legend::default().color_conflict_handling(ColorConflictHandling::PickLast))
        .label_formatter(move |hover| {
            let (item, position) = hovered(hover, "loss");
            Some(hover_text(item, position, log_y))
        });
    if log_y {
        plot = plot.y_axis_formatter(|mark, _| format_value(10f64.powf(mark.value)));
    }
    plot.show(ui, |p| {
        for t in &shown {
            let [raw, smooth, val] = loss_names(t.name, single);
            let curves = &*t.curves;
            p.line(
                Line::new(raw, scaled(curves.loss.points(), log_y))
                    .color(t.color.gamma_multiply(0.35))
                    .width(1.0),
            );
            p.line(
                Line::new(smooth, scaled(curves.smoothed(), log_y))
                    .color(t.color)
                    .width(2.0),
            );
            p.points(
                Points::new(val, scaled(curves.val_loss.points(), log_y))
                    .color(if single { VAL_COLOR } else { t.color })
                    .shape(MarkerShape::Diamond)
                    .radius(4.5)
                    .filled(true),
            );
        }
    });
    shown.len()
}

/// The hovered item's name and position; `fallback` names the plot away from any item.
fn hovered<'h>(hover: &egui_plot::HoverPosition<'h>, fallback: &'h str) -> (&'h str, PlotPoint) {
    match hover {
        egui_plot::HoverPosition::NearDataPoint {
            plot_name,
            position,
            ..
        } => (plot_name, *position),
        egui_plot::HoverPosition::Elsewhere { position } => (fallback, *position),
    }
}

/// Plots whose ids share the part before the first `_` (`live_loss`, `live_lr`) pan and zoom
/// along one step axis.
fn link_group(id: &str) -> egui::Id {
    egui::Id::unique("train_step_axis").with(id.split('_').next().unwrap_or(id))
}

/// A small plot of one curve per trace on the shared step axis.
pub fn curve_plot(
    ui: &mut egui::Ui,
    id: &str,
    label: &str,
    traces: &[(&str, egui::Color32, &Series)],
    height: f32,
) {
    let name = label.to_string();
    Plot::new(id)
        .height(height)
        .link_axis(link_group(id), [true, false])
        .link_cursor(link_group(id), [true, false])
        .y_axis_label(label)
        .y_axis_formatter(|mark, _| format_value(mark.value))
        .label_formatter(move |hover| {
            let (item, position) = hovered(hover, &name);
            Some(hover_text(item, position, false))
        })
        .show(ui, |p| {
            for (trace, color, series) in traces {
                let name = if trace.is_empty() {
                    label.to_string()
                } else {
                    format!("{trace} {label}")
                };
                p.line(
                    Line::new(name, PlotPoints::Borrowed(series.points()))
                        .color(*color)
                        .width(1.5),
                );
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_lines_become_curves_with_validation_apart() {
        let lines: Vec<serde_json::Value> = [
            r#"{"step":0,"val_loss":3.0,"best":true}"#,
            r#"{"step":1,"loss":2.9,"lr":0.001,"grad_norm":1.0,"tokens":10,"tokens_per_s":500.0,"elapsed_s":1.0}"#,
            r#"{"step":2,"loss":2.5,"lr":0.002,"grad_norm":1.0,"tokens":10,"tokens_per_s":520.0,"elapsed_s":2.0}"#,
            r#"{"step":2,"val_loss":2.6,"best":true}"#,
        ]
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
        let c = Curves::from_metrics(&lines);
        assert_eq!(
            c.loss.points(),
            [PlotPoint::new(1.0, 2.9), PlotPoint::new(2.0, 2.5)]
        );
        assert_eq!(c.val_loss.len(), 2);
        assert_eq!(c.lr.points().last(), Some(&PlotPoint::new(2.0, 0.002)));
        assert_eq!(c.tokens_per_s.len(), 2);
    }

    #[test]
    fn values_read_well_at_every_scale() {
        assert_eq!(format_value(2.34567), "2.346");
        assert_eq!(format_value(0.2219), "0.2219");
        assert_eq!(format_value(0.005), "0.005");
        assert_eq!(format_value(1000.0), "1000");
        assert_eq!(format_value(812.46), "812.5");
        assert_eq!(format_value(0.0002), "2.000e-4");
        assert_eq!(
            hover_text("loss", PlotPoint::new(12.0, 0.0), true),
            "step 12\nloss: 1"
        );
    }
}
