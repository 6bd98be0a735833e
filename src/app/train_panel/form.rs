//! The training configuration as a form: presets, one text box per number with a sentence of
//! help on hover, each bad value marked and explained beside its field (from `TrainConfig::check`
//! or a number that does not parse), and the steps and tokens the chosen data will take.

use super::fields::{Field, SECTIONS, fields};
use crate::data::dataset::DatasetView;
use crate::data::record::Split;
use crate::model::adapters::ALL_TARGETS;
use crate::project::OpenProject;
use crate::train::TrainConfig;
use crate::train::config::{LR_BY_SIZE, PRESETS, ScheduleKind, suited_lr};

/// A value the form will not start with.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub field: &'static str,
    pub message: String,
}

/// The form: a configuration whose numbers are edited as text.
pub struct ConfigForm {
    /// Everything the form does not hold as text (dataset, schedule, targets, model), and the
    /// numbers as of the last preset.
    base: TrainConfig,
    texts: Vec<String>,
    pub preset: String,
    /// The parameters of the model whose rate the learning rate box was given, while it holds
    /// that rate (an edited rate is the user's and stays).
    sized_for: Option<usize>,
}

impl Default for ConfigForm {
    fn default() -> Self {
        Self::from_preset("quick-demo")
    }
}

impl ConfigForm {
    pub fn from_preset(name: &str) -> Self {
        let mut form = Self {
            base: TrainConfig::default(),
            texts: Vec::new(),
            preset: name.to_string(),
            sized_for: None,
        };
        form.load(TrainConfig::preset(name).unwrap_or_default());
        form
    }

    /// Shows `cfg` in the form, replacing every value.
    pub fn load(&mut self, mut cfg: TrainConfig) {
        self.texts = fields().map(|f| f.slot.text(&mut cfg)).collect();
        self.base = cfg;
    }

    /// Sets the text of the field labelled `label` (as a person would type it).
    pub fn set_text(&mut self, label: &str, text: &str) {
        if let Some(i) = fields().position(|f| f.label == label) {
            self.texts[i] = text.to_string();
        }
    }

    /// The configuration the form describes and what is wrong with it; it may be started only
    /// when the list is empty.
    pub fn config(&self) -> (TrainConfig, Vec<Issue>) {
        let mut cfg = self.base.clone();
        let mut issues = Vec::new();
        for (field, text) in fields().zip(&self.texts) {
            if let Err(message) = field.slot.parse_into(text, &mut cfg) {
                issues.push(Issue {
                    field: field.key,
                    message,
                });
            }
        }
        // A field that did not parse keeps its earlier value, which must not be blamed as well.
        let unparsed: Vec<&str> = issues.iter().map(|i| i.field).collect();
        issues.extend(
            cfg.check()
                .into_iter()
                .filter(|e| !unparsed.contains(&e.field))
                .map(|e| Issue {
                    field: e.field,
                    message: e.message,
                }),
        );
        (cfg, issues)
    }

    /// Gives the learning rate box the presets' rate for a model of `parameters` parameters,
    /// unless the user typed a rate of their own since the last preset or model.
    pub fn suit_model(&mut self, parameters: usize) {
        if self.sized_for == Some(parameters) {
            return;
        }
        let Some(lr) = fields().position(|f| f.key == "lr") else {
            return;
        };
        let given = match self.sized_for {
            Some(p) => suited_lr(p),
            None => TrainConfig::preset(&self.preset).map_or(self.base.lr, |c| c.lr),
        };
        if self.texts[lr] == lr_text(given) {
            self.texts[lr] = lr_text(suited_lr(parameters));
            self.sized_for = Some(parameters);
        }
    }

    /// The line under the presets that says where the learning rate came from.
    fn lr_origin(&self) -> Option<String> {
        let p = self.sized_for?;
        let table: Vec<String> = LR_BY_SIZE
            .iter()
            .map(|(below, lr)| match below {
                &usize::MAX => format!("larger {}", lr_text(*lr)),
                b if b % 1_000_000_000 == 0 => {
                    format!("under {} B {}", b / 1_000_000_000, lr_text(*lr))
                }
                b => format!("under {} M {}", b / 1_000_000, lr_text(*lr)),
            })
            .collect();
        Some(format!(
            "Learning rate {}: the presets' rate for a model of {:.1} M parameters ({})",
            lr_text(suited_lr(p)),
            p as f64 / 1e6,
            table.join(", ")
        ))
    }

    /// Points the run at the model the sidebar loaded.
    pub fn use_model(&mut self, model: String, dequantize: bool, device: String, dtype: String) {
        self.base.model = model;
        self.base.dequantize = dequantize;
        self.base.device = device;
        self.base.dtype = dtype;
    }
}

/// A learning rate as its box shows it.
fn lr_text(lr: f64) -> String {
    let mut cfg = TrainConfig {
        lr,
        ..TrainConfig::default()
    };
    fields()
        .find(|f| f.key == "lr")
        .map(|f| f.slot.text(&mut cfg))
        .unwrap_or_default()
}

/// What the chosen data will take: records, steps and tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    pub train_records: usize,
    pub steps: usize,
    pub epochs: f64,
    pub tokens: f64,
}

/// Subword tokens per word of clinical English for the tokenizers Lab Lens ships with, and the
/// tokens the chat template and system prompt add to each example.
const TOKENS_PER_WORD: f64 = 1.4;
const TEMPLATE_TOKENS: f64 = 40.0;

/// Steps as the trainer counts them, and tokens from the records' word counts.
pub fn estimate(cfg: &TrainConfig, view: &DatasetView) -> Option<Estimate> {
    if cfg.micro_batch == 0 || cfg.grad_accum == 0 {
        return None;
    }
    let train: Vec<usize> = (0..view.records().len())
        .filter(|&i| view.splits[i] == Split::Train)
        .collect();
    if train.is_empty() {
        return None;
    }
    let per_example: f64 = train
        .iter()
        .map(|&i| {
            let words = f64::from(view.input_words[i] + view.target_words[i]);
            (words * TOKENS_PER_WORD + TEMPLATE_TOKENS).min(cfg.max_seq_len as f64)
        })
        .sum::<f64>()
        / train.len() as f64;
    let steps_per_epoch = train
        .len()
        .div_ceil(cfg.micro_batch)
        .div_ceil(cfg.grad_accum);
    // Typed values may be absurd; the estimate saturates rather than overflows.
    let steps = cfg
        .max_steps
        .unwrap_or(cfg.epochs.saturating_mul(steps_per_epoch));
    let examples = steps as f64 * cfg.micro_batch as f64 * cfg.grad_accum as f64;
    Some(Estimate {
        train_records: train.len(),
        steps,
        epochs: steps as f64 / steps_per_epoch as f64,
        tokens: examples * per_example,
    })
}

/// `1.2k`, `3.4M`.
pub fn short_count(n: f64) -> String {
    match n {
        n if n >= 1e6 => format!("{:.1}M", n / 1e6),
        n if n >= 1e3 => format!("{:.1}k", n / 1e3),
        n => format!("{n:.0}"),
    }
}

/// Draws the form; `view` is the open dataset, used for the estimate when it is the chosen one.
pub fn show(
    ui: &mut egui::Ui,
    form: &mut ConfigForm,
    project: Option<&OpenProject>,
    view: Option<&DatasetView>,
    issues: &[Issue],
) {
    presets_row(ui, form);
    choices(ui, form, project);
    let mut index = 0;
    for (title, fields) in SECTIONS {
        ui.add_space(6.0);
        ui.strong(title);
        egui::Grid::new(("train_form", title))
            .num_columns(2)
            .spacing([10.0, 4.0])
            .show(ui, |ui| {
                for field in fields {
                    number_row(ui, field, &mut form.texts[index], issues);
                    index += 1;
                }
                if title == "Optimizer" {
                    schedule_row(ui, &mut form.base);
                }
            });
        if title == "LoRA" {
            targets_row(ui, &mut form.base);
        }
    }
    ui.add_space(6.0);
    estimate_line(ui, form, project, view);
}

fn presets_row(ui: &mut egui::Ui, form: &mut ConfigForm) {
    ui.horizontal(|ui| {
        let label = ui.label("Preset").id;
        egui::ComboBox::from_id_salt("train_preset")
            .selected_text(form.preset.clone())
            .show_ui(ui, |ui| {
                for name in PRESETS {
                    if ui.selectable_label(form.preset == name, name).clicked() {
                        let keep = form.base.clone();
                        *form = ConfigForm::from_preset(name);
                        form.use_model(keep.model, keep.dequantize, keep.device, keep.dtype);
                    }
                }
            })
            .response
            .labelled_by(label)
            .on_hover_text("Replaces every value with the preset's");
    });
    if let Some(origin) = form.lr_origin() {
        ui.add(egui::Label::new(egui::RichText::new(origin).weak()).wrap());
    }
}

/// The dataset to train on (the project's) and the model (the sidebar's).
fn choices(ui: &mut egui::Ui, form: &mut ConfigForm, project: Option<&OpenProject>) {
    egui::Grid::new("train_choices")
        .num_columns(2)
        .spacing([10.0, 4.0])
        .show(ui, |ui| {
            let label = ui
                .label("dataset")
                .on_hover_text("The project dataset to train on; its training split is used.")
                .id;
            egui::ComboBox::from_id_salt("train_dataset")
                .selected_text(form.base.dataset.clone())
                .show_ui(ui, |ui| {
                    for d in project.iter().flat_map(|p| &p.project.datasets) {
                        ui.selectable_value(&mut form.base.dataset, d.name.clone(), &d.name);
                    }
                })
                .response
                .labelled_by(label);
            ui.end_row();
        });
}

fn number_row(ui: &mut egui::Ui, field: &Field, text: &mut String, issues: &[Issue]) {
    let label = ui.label(field.label).on_hover_text(field.help);
    let response = ui
        .add(egui::TextEdit::singleline(text).desired_width(90.0))
        .labelled_by(label.id)
        .on_hover_text(field.help);
    ui.end_row();
    // Both betas share one key: both are marked, the message shows once, under the second.
    let own = issues
        .iter()
        .find(|i| i.field == field.key && (field.key != "betas" || field.label == "beta 2"));
    let marked = issues.iter().any(|i| i.field == field.key);
    if marked {
        let color = ui.visuals().error_fg_color;
        ui.painter().rect_stroke(
            response.rect.expand(1.0),
            2.0,
            egui::Stroke::new(1.5, color),
            egui::StrokeKind::Outside,
        );
    }
    if let Some(issue) = own {
        ui.label("");
        ui.colored_label(
            ui.visuals().error_fg_color,
            format!("{}: {}", field.label, issue.message),
        );
        ui.end_row();
    }
}

fn schedule_row(ui: &mut egui::Ui, cfg: &mut TrainConfig) {
    let label = ui
        .label("schedule")
        .on_hover_text(
            "How the learning rate falls after warm-up: not at all, linearly, or along a cosine.",
        )
        .id;
    egui::ComboBox::from_id_salt("train_schedule")
        .selected_text(format!("{:?}", cfg.schedule).to_lowercase())
        .show_ui(ui, |ui| {
            for kind in [
                ScheduleKind::Constant,
                ScheduleKind::Linear,
                ScheduleKind::Cosine,
            ] {
                let name = format!("{kind:?}").to_lowercase();
                ui.selectable_value(&mut cfg.schedule, kind, name);
            }
        })
        .response
        .labelled_by(label);
    ui.end_row();
}

fn targets_row(ui: &mut egui::Ui, cfg: &mut TrainConfig) {
    ui.label("target modules").on_hover_text(
        "The linear layers that get an adapter: attention (q, k, v, o) and MLP (gate, up, down).",
    );
    ui.horizontal_wrapped(|ui| {
        for target in ALL_TARGETS {
            let mut on = cfg.lora.target_modules.iter().any(|t| t == target);
            let short = target.trim_end_matches("_proj");
            if ui.checkbox(&mut on, short).changed() {
                cfg.lora.target_modules.retain(|t| t != target);
                if on {
                    cfg.lora.target_modules.push(target.to_string());
                }
            }
        }
    });
}

fn estimate_line(
    ui: &mut egui::Ui,
    form: &ConfigForm,
    project: Option<&OpenProject>,
    view: Option<&DatasetView>,
) {
    let chosen = project.and_then(|p| {
        let entry = p
            .project
            .datasets
            .iter()
            .find(|d| d.name == form.base.dataset)?;
        Some(p.dataset_path(entry))
    });
    let open = view.filter(|v| chosen.as_deref() == Some(v.path()));
    let (cfg, _) = form.config();
    match open.and_then(|v| estimate(&cfg, v)) {
        Some(e) => {
            ui.label(format!(
                "{} training records · {} steps ({:.2} epochs) · ≈ {} tokens",
                e.train_records,
                e.steps,
                e.epochs,
                short_count(e.tokens)
            ))
            .on_hover_text(
                "Tokens are estimated from word counts; the run reports the exact numbers.",
            );
        }
        None => {
            ui.weak(format!(
                "Open {} in the Dataset panel to see the steps and tokens it takes.",
                form.base.dataset
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_and_an_impossible_value_are_both_named() {
        let mut form = ConfigForm::from_preset("quick-demo");
        assert!(form.config().1.is_empty());
        form.set_text("learning rate", "0.0o1");
        form.set_text("micro-batch", "0");
        form.set_text("max steps", "");
        let (cfg, issues) = form.config();
        let named: Vec<(&str, &str)> = issues
            .iter()
            .map(|i| (i.field, i.message.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                ("lr", "must be a number (like 0.001 or 1e-3)"),
                ("micro_batch", "must be between 1 and 4096"),
            ]
        );
        assert_eq!(cfg.max_steps, None);
    }

    #[test]
    fn the_learning_rate_follows_the_model_until_the_user_types_one() {
        let mut form = ConfigForm::from_preset("quick-demo");
        assert_eq!(form.lr_origin(), None);
        form.suit_model(3_212_749_824);
        assert_eq!(form.config().0.lr, 2e-4, "a 3B model");
        assert!(
            form.lr_origin()
                .is_some_and(|o| o.contains("a model of 3212.7 M parameters (under 1 B 0.005")),
            "{:?}",
            form.lr_origin()
        );
        form.suit_model(134_515_008);
        assert_eq!(form.config().0.lr, 5e-3, "SmolLM2-135M");
        form.set_text("learning rate", "3e-4");
        form.suit_model(3_212_749_824);
        assert_eq!(form.config().0.lr, 3e-4, "the user's rate stays");
        let mut again = ConfigForm::from_preset("discharge");
        again.suit_model(20_000_000);
        assert_eq!(
            again.config().0.lr,
            5e-3,
            "a new preset takes the model's rate"
        );
    }

    #[test]
    fn values_round_trip_through_the_text_boxes() {
        let mut form = ConfigForm::from_preset("discharge");
        assert!(
            form.texts.iter().any(|t| t == "1e-8"),
            "epsilon reads as 1e-8"
        );
        form.set_text("beta 2", "0.95");
        form.set_text("early-stopping patience", "3");
        let (cfg, issues) = form.config();
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(cfg.betas, (0.9, 0.95));
        assert_eq!(cfg.early_stopping_patience, Some(3));
        assert_eq!(cfg.lr, 2e-4);
        form.set_text("beta 1", "1.5");
        assert_eq!(form.config().1[0].field, "betas");
    }

    #[test]
    fn the_estimated_steps_are_the_trainers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let project_dir = crate::engine::tests::small_project(dir.path());
        let project = OpenProject::open(&project_dir).expect("project");
        let options = crate::data::dataset::OpenOptions {
            split: project.project.split,
            ..Default::default()
        };
        let data = project_dir.join("discharge.jsonl");
        let view = crate::data::dataset::open_dataset(
            &data,
            &options,
            &mut crate::job::Job::unstopped(&mut |_| {}),
        )
        .expect("dataset");
        let cfg = TrainConfig {
            max_seq_len: 96,
            micro_batch: 3,
            grad_accum: 2,
            epochs: 2,
            max_steps: None,
            eval_records: 2,
            ..TrainConfig::default()
        };
        let estimate = estimate(&cfg, &view).expect("an estimate");
        let control = crate::job::Control::default();
        let mut total_steps = None;
        let opts = crate::train::RunOptions::default();
        crate::train::train(&project, &cfg, &opts, &control, &mut |e| {
            if let crate::train::TrainEvent::Started { total_steps: t, .. } = e {
                total_steps = Some(t);
                control.stop();
            }
        })
        .expect("the run starts");
        assert_eq!(Some(estimate.steps), total_steps);
        assert_eq!(estimate.epochs, 2.0);
        assert!(estimate.tokens > 0.0);
    }

    #[test]
    fn short_counts_read_at_a_glance() {
        assert_eq!(short_count(950.0), "950");
        assert_eq!(short_count(31_400.0), "31.4k");
        assert_eq!(short_count(2_500_000.0), "2.5M");
    }
}
