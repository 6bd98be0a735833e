//! The Live tab: the form with start / pause / resume / stop beside the plots of the run on
//! screen, headed by its latest numbers.

use super::TrainPanel;
use super::form::{self, Issue};
use super::plots::{self, Curves, Trace};
use crate::app::panel::PanelContext;
use crate::train::{StepMetrics, TrainEvent};
use crossbeam_channel::Receiver;
use std::path::Path;

/// The run the Live tab shows.
#[derive(Debug, Clone)]
pub struct LiveRun {
    pub run_id: String,
    pub total_steps: usize,
    pub resumed_from: Option<usize>,
    pub notes: Vec<String>,
    pub curves: Curves,
    pub last: Option<StepMetrics>,
    pub best_val: Option<(usize, f64)>,
    pub last_checkpoint: Option<usize>,
    /// A validation pass under way: its step, examples done and in all, seconds left.
    pub validating: Option<(usize, usize, usize, Option<f64>)>,
    /// A resumed run's earlier curves, read off the UI thread, and the events that arrive
    /// meanwhile, replayed over them.
    earlier: Option<(Receiver<Curves>, Vec<TrainEvent>)>,
}

impl LiveRun {
    pub fn new(
        run_id: String,
        run_dir: &Path,
        total_steps: usize,
        resumed_from: Option<usize>,
        notes: Vec<String>,
    ) -> Self {
        // A resumed run continues its curves from what the run folder holds.
        let earlier = resumed_from.map(|_| {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let path = run_dir.join(crate::train::run::METRICS_FILE);
            std::thread::spawn(move || {
                let lines = crate::train::run::read_jsonl(&path);
                tx.send(Curves::from_metrics(&lines)).ok();
            });
            (rx, Vec::new())
        });
        Self {
            run_id,
            total_steps,
            resumed_from,
            notes,
            curves: Curves::default(),
            earlier,
            last: None,
            best_val: None,
            last_checkpoint: None,
            validating: None,
        }
    }

    /// Takes a resumed run's earlier curves once they have been read.
    pub fn poll_earlier(&mut self) {
        let Some((rx, pending)) = &mut self.earlier else {
            return;
        };
        match rx.try_recv() {
            Ok(mut curves) => {
                for e in pending.drain(..) {
                    curves.record(&e);
                }
                self.curves = curves;
                self.earlier = None;
            }
            // The reader is gone without a result: the curves start at the resumed step.
            Err(crossbeam_channel::TryRecvError::Disconnected) => self.earlier = None,
            Err(crossbeam_channel::TryRecvError::Empty) => {}
        }
    }

    pub fn record(&mut self, event: &TrainEvent) {
        // Also here, not only when the Live tab draws: the run may train behind another tab.
        self.poll_earlier();
        if let Some((_, pending)) = &mut self.earlier {
            pending.push(event.clone());
        }
        self.curves.record(event);
        if !matches!(event, TrainEvent::Validating { .. }) {
            self.validating = None;
        }
        match event {
            TrainEvent::Step(m) => self.last = Some(m.clone()),
            TrainEvent::Validating {
                step,
                done,
                total,
                eta_s,
            } => self.validating = Some((*step, *done, *total, *eta_s)),
            TrainEvent::Eval {
                step,
                val_loss,
                best: true,
            } => self.best_val = Some((*step, *val_loss)),
            TrainEvent::Checkpoint { step } => self.last_checkpoint = Some(*step),
            TrainEvent::Eval { .. } | TrainEvent::Started { .. } => {}
        }
    }

    pub fn step(&self) -> usize {
        self.last
            .as_ref()
            .map(|m| m.step)
            .or(self.resumed_from)
            .unwrap_or(0)
    }
}

pub fn show(ui: &mut egui::Ui, panel: &mut TrainPanel, ctx: &PanelContext<'_>) {
    egui::Panel::left("train_form_column")
        .resizable(true)
        .default_size(340.0)
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("train_form_scroll")
                .show(ui, |ui| {
                    if let Some((_, info)) = ctx.model {
                        panel.form.suit_model(info.parameters);
                    }
                    let (_, issues) = panel.form.config();
                    controls(ui, panel, ctx, &issues);
                    ui.separator();
                    form::show(ui, &mut panel.form, ctx.project, ctx.dataset, &issues);
                });
        });
    egui::CentralPanel::default().show(ui, |ui| plots_area(ui, panel));
}

/// Why Start is disabled, if it is.
fn start_blocker(panel: &TrainPanel, ctx: &PanelContext<'_>, issues: &[Issue]) -> Option<String> {
    if ctx.project.is_none() {
        return Some("Open a project first".into());
    }
    if ctx.model.is_none() {
        return Some("Load a model in the sidebar first".into());
    }
    if !issues.is_empty() {
        return Some(format!(
            "Fix the {} marked value{} first",
            issues.len(),
            if issues.len() == 1 { "" } else { "s" }
        ));
    }
    if panel.is_training() || ctx.engine.is_busy() {
        return Some("The engine is busy; wait for the running job or stop it".into());
    }
    None
}

fn controls(ui: &mut egui::Ui, panel: &mut TrainPanel, ctx: &PanelContext<'_>, issues: &[Issue]) {
    match ctx.model {
        Some((_, info)) => {
            ui.label(format!(
                "Model: {} · {} · {:.2} M parameters · {} · {}",
                info.name,
                info.architecture,
                info.parameters as f64 / 1e6,
                info.quantization,
                info.device
            ))
            .on_hover_text("Runs train the model loaded in the sidebar; change it there.");
        }
        None => {
            ui.weak("No model loaded: choose one in the sidebar.");
        }
    }
    let blocker = start_blocker(panel, ctx, issues);
    ui.horizontal(|ui| {
        let start = ui.add_enabled(blocker.is_none(), egui::Button::new("Start"));
        if let Some(why) = &blocker {
            start.clone().on_disabled_hover_text(why);
        }
        if start.clicked() {
            panel.start(ctx);
        }
        let training = panel.is_training() && !panel.is_stopping();
        if panel.is_paused() {
            if ui.button("Resume").clicked() {
                panel.resume();
            }
        } else if ui
            .add_enabled(training, egui::Button::new("Pause"))
            .clicked()
        {
            panel.pause();
        }
        if panel.is_stopping() {
            // Until the run ends: its step and checkpoint take a moment, and a button that
            // looks unpressed would be pressed again.
            ui.add_enabled(false, egui::Button::new("Stopping…"))
                .on_disabled_hover_text("Finishing the current step and writing a checkpoint");
        } else if ui
            .add_enabled(training, egui::Button::new("Stop"))
            .on_hover_text("Stops after the current step and keeps a checkpoint to resume from")
            .clicked()
        {
            panel.stop();
        }
    });
    if let Some(issue) = issues.first() {
        ui.colored_label(
            ui.visuals().error_fg_color,
            format!("Start is disabled: {} ({})", issue.message, issue.field),
        );
    }
}

/// The run's latest numbers in one line.
fn headline(live: &LiveRun, paused: bool) -> String {
    let mut parts = vec![format!("run {}", live.run_id)];
    parts.push(format!("step {}/{}", live.step(), live.total_steps));
    if let Some(m) = &live.last {
        parts.push(format!("loss {:.4}", m.loss));
        parts.push(format!("lr {}", plots::format_value(m.lr)));
        parts.push(format!("{:.0} tokens/s", m.tokens_per_s));
    }
    if let Some((step, v)) = live.best_val {
        parts.push(format!("best validation {v:.4} at step {step}"));
    }
    if let Some(step) = live.last_checkpoint {
        parts.push(format!("checkpoint at step {step}"));
    }
    if paused {
        parts.push("paused".into());
    }
    parts.join(" · ")
}

/// The validation pass under way, its progress and time left; the first one (before any step)
/// says what it is for, since the curves stay empty meanwhile.
fn validating_line(live: &LiveRun) -> Option<String> {
    let (step, done, total, eta_s) = live.validating?;
    let mut line = crate::train::validating_text(step, done, total);
    if let Some(eta) = eta_s {
        line.push_str(&format!(
            ", about {} left",
            crate::app::status::format_eta(std::time::Duration::from_secs_f64(eta))
        ));
    }
    if step == 0 {
        line.push_str(" (the untrained adapter's loss, which training must beat)");
    }
    Some(line)
}

fn plots_area(ui: &mut egui::Ui, panel: &mut TrainPanel) {
    let paused = panel.is_paused();
    let Some(live) = &mut panel.live else {
        ui.centered_and_justified(|ui| {
            ui.weak("Start a run to see its loss, learning rate and throughput here.");
        });
        return;
    };
    live.poll_earlier();
    ui.strong(headline(live, paused));
    if let Some(s) = panel.summary.as_ref().filter(|s| s.run_id == live.run_id) {
        ui.label(format!(
            "{:?} after {} steps · {:.0} tokens/s overall",
            s.status, s.steps, s.tokens_per_s
        ));
    }
    for note in &live.notes {
        ui.weak(note);
    }
    if let Some(line) = validating_line(live) {
        let (_, done, total, _) = live.validating.unwrap_or_default();
        ui.horizontal(|ui| {
            ui.add(egui::ProgressBar::new(done as f32 / total.max(1) as f32).desired_width(160.0));
            ui.label(line);
        });
    }
    let style = plots::style_controls(ui, &mut panel.state.smoothing, &mut panel.state.log_y);
    run_plots(ui, live, style);
}

/// The loss above, learning rate and throughput below, on one step axis.
fn run_plots(ui: &mut egui::Ui, live: &mut LiveRun, style: plots::LossStyle) {
    let available = ui.available_height();
    let small = (available * 0.3).clamp(90.0, 220.0);
    let mut traces = [Trace {
        name: &live.run_id,
        color: plots::RUN_COLORS[0],
        curves: &mut live.curves,
    }];
    let tall = (available - small - 40.0).max(160.0);
    plots::loss_plot(ui, "live_loss", &mut traces, style, tall);
    let curves = &live.curves;
    ui.columns(2, |cols| {
        plots::curve_plot(
            &mut cols[0],
            "live_lr",
            "learning rate",
            &[("", plots::RUN_COLORS[2], &curves.lr)],
            small,
        );
        plots::curve_plot(
            &mut cols[1],
            "live_tokens",
            "tokens/s",
            &[("", plots::RUN_COLORS[3], &curves.tokens_per_s)],
            small,
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validation_pass_is_its_own_phase_with_progress_and_time_left() {
        let mut live = LiveRun::new("r".into(), Path::new(""), 80, None, Vec::new());
        assert_eq!(validating_line(&live), None);
        live.record(&TrainEvent::Validating {
            step: 0,
            done: 8,
            total: 32,
            eta_s: Some(75.0),
        });
        assert_eq!(
            validating_line(&live).as_deref(),
            Some(
                "validating before training: 8 of 32 examples, about 1m 15s left (the untrained \
                 adapter's loss, which training must beat)"
            )
        );
        live.record(&TrainEvent::Eval {
            step: 0,
            val_loss: 2.0,
            best: true,
        });
        assert_eq!(validating_line(&live), None, "over once its loss is in");
        live.record(&TrainEvent::Validating {
            step: 40,
            done: 0,
            total: 32,
            eta_s: None,
        });
        assert_eq!(
            validating_line(&live).as_deref(),
            Some("validating at step 40: 0 of 32 examples")
        );
    }
}
