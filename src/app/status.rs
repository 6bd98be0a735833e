//! The bottom status line: what the engine is doing, which model it holds on which device, how
//! far along it is, and the last message or error in words a person can act on.

use crate::engine::{Engine, Event, ModelInfo};
use crate::model::gpu::{self, thousands};
use crate::train::{TrainEvent, TrainSummary};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Info(String),
    Error(String),
}

#[derive(Debug, Default)]
pub struct StatusLine {
    running: Option<String>,
    stage: String,
    fraction: f32,
    eta: Option<Duration>,
    /// Of the running training job's last step.
    tokens_per_s: Option<f64>,
    /// How the running training job ended, for the message when it finishes.
    outcome: Option<String>,
    /// The running training job is paused (the Train panel knows; the engine does not say).
    pub paused: bool,
    pub notice: Option<Notice>,
    /// The sidebar's Serve switch, whose server the line reports.
    pub serve: super::serve_switch::ServeSwitch,
    /// GPU memory in use `(used, total)` MiB, and when it was read (at most once a second).
    gpu_memory: Option<(Instant, (f64, f64))>,
}

/// How often the status line asks the driver for the GPU's memory while a job runs.
const GPU_MEMORY_EVERY: Duration = Duration::from_secs(1);

impl StatusLine {
    pub fn info(&mut self, text: String) {
        self.notice = Some(Notice::Info(text));
    }

    pub fn error(&mut self, text: String) {
        self.notice = Some(Notice::Error(text));
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// GPU memory in use on the model's GPU, read again when the last reading is a second old.
    fn gpu_memory(&mut self, model: Option<&ModelInfo>) -> Option<(f64, f64)> {
        let index = model?.gpu.as_ref()?.facts.index;
        match self.gpu_memory {
            Some((at, reading)) if at.elapsed() < GPU_MEMORY_EVERY => Some(reading),
            _ => {
                let reading = gpu::memory_in_use(index)?;
                self.gpu_memory = Some((Instant::now(), reading));
                Some(reading)
            }
        }
    }

    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::Started { name, .. } => {
                self.running = Some(name.clone());
                self.stage.clear();
                self.fraction = 0.0;
                self.eta = None;
                self.tokens_per_s = None;
                self.outcome = None;
            }
            Event::Progress {
                stage,
                done,
                total,
                eta,
                ..
            } => {
                self.stage = stage.clone();
                self.fraction = if *total > 0 {
                    *done as f32 / *total as f32
                } else {
                    0.0
                };
                self.eta = *eta;
            }
            Event::Finished { elapsed, .. } => {
                if let Some(name) = self.running.take() {
                    let outcome = self.outcome.take().unwrap_or_else(|| "done".into());
                    self.info(format!(
                        "{name}: {outcome} in {:.2} s",
                        elapsed.as_secs_f64()
                    ));
                }
            }
            Event::Train {
                event: TrainEvent::Step(m),
                ..
            } => self.tokens_per_s = Some(m.tokens_per_s),
            Event::Trained { summary, .. } => self.outcome = Some(describe_outcome(summary)),
            Event::Evaluated { summary, .. } => {
                self.outcome = Some(format!(
                    "{} records scored, ROUGE-L F1 {:.3}, written to {}",
                    summary.n,
                    summary.corpus.rouge_l.fmeasure.value,
                    summary.out_dir.display()
                ))
            }
            Event::BiasAudited { outcome, .. } => {
                let flagged = outcome.report.flagged().count();
                self.outcome = Some(format!(
                    "{flagged} slices flagged, written to {}",
                    outcome.written.display()
                ))
            }
            Event::Explained { path, .. } => {
                self.outcome = Some(format!("written to {}", path.display()))
            }
            Event::Failed { name, error, .. } => {
                self.running = None;
                self.error(format!("{name} failed: {error}"));
            }
            Event::Cancelled { .. } => {
                if let Some(name) = self.running.take() {
                    self.info(format!("{name}: cancelled"));
                }
            }
            Event::Busy { running, refused } => {
                self.error(format!(
                    "{refused} was not started: {running} is still running. Cancel it or wait."
                ));
            }
            Event::Message { text, .. } => self.info(text.clone()),
            Event::DatasetOpened { .. }
            | Event::ModelLoaded { .. }
            | Event::Train { .. }
            | Event::Token { .. }
            | Event::Generated { .. } => {}
        }
    }
}

/// `finished after 80 steps, best validation loss 2.314` and the like.
fn describe_outcome(summary: &TrainSummary) -> String {
    let how = match summary.status {
        crate::train::run::RunStatus::Finished => "finished after",
        crate::train::run::RunStatus::Stopped => "stopped at a checkpoint after",
        crate::train::run::RunStatus::Running | crate::train::run::RunStatus::Failed => {
            "ended after"
        }
    };
    let best = summary
        .final_val_loss
        .map(|v| format!(", validation loss {v:.3}"))
        .unwrap_or_default();
    format!("{how} {} steps{best}", summary.steps)
}

/// `1h 02m`, `1m 15s`, `4.2s`.
pub(super) fn format_eta(eta: Duration) -> String {
    let s = eta.as_secs();
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", eta.as_secs_f64())
    }
}

/// `model` is the model the engine holds, if any.
pub fn show(
    ui: &mut egui::Ui,
    status: &mut StatusLine,
    engine: &Engine,
    model: Option<&ModelInfo>,
) {
    let serving = status.serve.status();
    egui::Panel::bottom("status_line").show(ui, |ui| {
        ui.horizontal(|ui| {
            match &status.running {
                Some(name) => {
                    ui.spinner();
                    let paused = if status.paused { " (paused)" } else { "" };
                    ui.label(format!("{name} — {}{paused}", status.stage));
                    let mut bar = egui::ProgressBar::new(status.fraction)
                        .desired_width(220.0)
                        .show_percentage();
                    if let Some(eta) = status.eta {
                        bar = bar.text(format!(
                            "{:.0}% · ETA {}",
                            status.fraction * 100.0,
                            format_eta(eta)
                        ));
                    }
                    ui.add(bar);
                    if let Some(rate) = status.tokens_per_s {
                        ui.label(format!("{rate:.0} tokens/s"));
                    }
                    if let Some((used, total)) = status.gpu_memory(model) {
                        ui.label(format!(
                            "GPU {} / {} MiB",
                            thousands(used),
                            thousands(total)
                        ))
                        .on_hover_text("Memory in use on the GPU, by every process");
                        ui.ctx().request_repaint_after(GPU_MEMORY_EVERY);
                    }
                    if ui.button("Cancel").clicked() {
                        engine.cancel();
                    }
                }
                None => {
                    ui.label("Engine idle");
                }
            }
            ui.separator();
            match model {
                Some(m) => ui.label(format!("Model: {} on {}", m.name, m.device)),
                None => ui.label("No model loaded"),
            };
            ui.separator();
            if let Some(line) = serving {
                ui.label(line);
                // The requests/s move while nobody touches the window.
                ui.ctx()
                    .request_repaint_after(std::time::Duration::from_secs(1));
                ui.separator();
            }
            let mut dismiss = false;
            // A notice longer than the line ends in an ellipsis; the whole of it on hover.
            match &status.notice {
                Some(Notice::Info(text)) => {
                    ui.add(egui::Label::new(text).truncate());
                }
                Some(Notice::Error(text)) => {
                    dismiss = ui.small_button("Dismiss").clicked();
                    let error = egui::RichText::new(text).color(ui.visuals().error_fg_color);
                    ui.add(egui::Label::new(error).truncate());
                }
                None => {}
            }
            if dismiss {
                status.notice = None;
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_clears_the_job_and_keeps_a_readable_error() {
        let mut s = StatusLine::default();
        s.on_event(&Event::Started {
            job: 1,
            name: "Open notes.jsonl".into(),
        });
        assert!(s.is_running());
        s.on_event(&Event::Failed {
            job: 1,
            name: "Open notes.jsonl".into(),
            error: "notes.jsonl: file not found".into(),
        });
        assert!(!s.is_running());
        assert_eq!(
            s.notice,
            Some(Notice::Error(
                "Open notes.jsonl failed: notes.jsonl: file not found".into()
            ))
        );
    }

    #[test]
    fn eta_is_human() {
        assert_eq!(format_eta(Duration::from_secs(3725)), "1h 02m");
        assert_eq!(format_eta(Duration::from_secs(75)), "1m 15s");
        assert_eq!(format_eta(Duration::from_millis(4200)), "4.2s");
    }
}
