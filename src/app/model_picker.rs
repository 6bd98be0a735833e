//! The sidebar's model section: choose the embedded model, SmolLM2 or any Hugging Face folder or
//! GGUF file, watch it load on the engine, and read what was loaded.

use crate::engine::{JobId, ModelInfo, device_choices};
use crate::model::gpu::thousands;
use crate::model::loading::is_gguf;
use crate::model::loading::{DeviceChoice, Precision};
use crate::project::{ModelEntry, ModelSource};
use std::path::{Path, PathBuf};

/// Where `scripts/fetch-smollm2.sh` puts SmolLM2, inside the models folder.
pub const SMOLLM2_FILE: &str = "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
const SMOLLM2_LABEL: &str = "SmolLM2-135M-Instruct (Q4_1 GGUF)";
const TINY_LABEL: &str = "Embedded tiny model";
const FETCH_HINT: &str = "run: bash scripts/fetch-smollm2.sh";

/// A model load the app asked for.
#[derive(Debug, Clone)]
pub struct ModelRequest {
    pub entry: ModelEntry,
    /// The user chose it, so the project records it (a project's own model is already there).
    pub chosen: bool,
}

/// What the model section knows: the settings for the next load, the load under way and the
/// model the engine holds.
pub struct ModelPicker {
    models_dir: PathBuf,
    pub dequantize: bool,
    pub device: DeviceChoice,
    pub dtype: Precision,
    /// Asked for while the engine was busy; started once it is idle.
    waiting: Option<ModelRequest>,
    loading: Option<(JobId, ModelRequest)>,
    /// The model the engine holds and the entry it was loaded from.
    loaded: Option<(ModelEntry, ModelInfo)>,
    /// Why the last load failed (the model before it stays loaded).
    pub error: Option<String>,
}

impl ModelPicker {
    /// A picker offering the models found in `models_dir` (where the fetch script puts them).
    pub fn new(models_dir: PathBuf) -> Self {
        Self {
            models_dir,
            dequantize: false,
            device: DeviceChoice::Auto,
            dtype: Precision::Auto,
            waiting: None,
            loading: None,
            loaded: None,
            error: None,
        }
    }

    pub fn loaded(&self) -> Option<&ModelInfo> {
        self.loaded.as_ref().map(|(_, info)| info)
    }

    /// The model the engine holds with the entry it was loaded from.
    pub fn loaded_entry(&self) -> Option<(&ModelEntry, &ModelInfo)> {
        self.loaded.as_ref().map(|(entry, info)| (entry, info))
    }

    /// A load is waiting for the engine or running on it.
    pub fn is_busy(&self) -> bool {
        self.waiting.is_some() || self.loading.is_some()
    }

    /// Queues `request`, replacing one that has not started yet.
    pub fn wait(&mut self, request: ModelRequest) {
        self.dequantize = request.entry.dequantize;
        self.device = request.entry.device.clone();
        self.dtype = request.entry.dtype;
        self.waiting = Some(request);
    }

    pub fn take_waiting(&mut self) -> Option<ModelRequest> {
        self.waiting.take()
    }

    pub fn started(&mut self, job: JobId, request: ModelRequest) {
        self.loading = Some((job, request));
    }

    /// Records a loaded model; returns its request when `job` was this picker's load.
    pub fn finished(&mut self, job: JobId, info: ModelInfo) -> Option<ModelRequest> {
        let request = self.take_job(job)?;
        self.loaded = Some((request.entry.clone(), info));
        self.error = None;
        Some(request)
    }

    /// Records that this picker's load `job` failed or was cancelled (`error` is `None`).
    pub fn ended(&mut self, job: JobId, error: Option<String>) {
        if self.take_job(job).is_some() {
            self.error = error;
        }
    }

    fn take_job(&mut self, job: JobId) -> Option<ModelRequest> {
        match self.loading.take() {
            Some((j, request)) if j == job => Some(request),
            other => {
                self.loading = other;
                None
            }
        }
    }

    fn smollm2(&self) -> PathBuf {
        self.models_dir.join(SMOLLM2_FILE)
    }

    /// `source` with the current settings.
    fn entry(&self, source: ModelSource) -> ModelEntry {
        ModelEntry {
            source,
            dequantize: self.dequantize,
            device: self.device.clone(),
            dtype: self.dtype,
        }
    }

    /// A model at `path` (a folder or file the user picked) with the current settings.
    pub fn entry_for_path(&self, path: &Path) -> ModelEntry {
        self.entry(ModelSource::Path(
            std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
        ))
    }

    /// The source shown as chosen: the one loading, else the one loaded.
    fn current(&self) -> Option<&ModelSource> {
        self.waiting
            .as_ref()
            .or(self.loading.as_ref().map(|(_, r)| r))
            .map(|r| &r.entry.source)
            .or(self.loaded.as_ref().map(|(e, _)| &e.source))
    }

    fn label(&self, source: &ModelSource) -> String {
        match source {
            ModelSource::Tiny => TINY_LABEL.to_string(),
            ModelSource::Path(p) if same_file(p, &self.smollm2()) => SMOLLM2_LABEL.to_string(),
            ModelSource::Path(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || a.canonicalize()
            .ok()
            .is_some_and(|a| b.canonicalize().ok() == Some(a))
}

/// What the user asked of the model section.
pub enum ModelAction {
    Load(ModelEntry),
    PickFolder,
    PickFile,
}

/// Draws the section; returns what the user asked for.
pub fn section(ui: &mut egui::Ui, picker: &mut ModelPicker) -> Option<ModelAction> {
    let mut action = None;
    let heading = ui.strong("Model").id;
    choice_combo(ui, picker, heading, &mut action);
    settings(ui, picker, &mut action);
    if let Some((_, request)) = &picker.loading {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(format!("Loading {}…", picker.label(&request.entry.source)));
        });
    } else if picker.waiting.is_some() {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label("Waiting for the running job…");
        });
    }
    if let Some(error) = &picker.error {
        ui.colored_label(ui.visuals().error_fg_color, format!("Not loaded: {error}"));
    }
    if let Some(info) = picker.loaded() {
        info_grid(ui, info);
    }
    action
}

/// The list of models, named for screen readers by the section's `heading`.
fn choice_combo(
    ui: &mut egui::Ui,
    picker: &ModelPicker,
    heading: egui::Id,
    action: &mut Option<ModelAction>,
) {
    let selected = picker
        .current()
        .map_or("No model loaded".to_string(), |s| picker.label(s));
    let smollm2 = picker.smollm2();
    egui::ComboBox::from_id_salt("model_choice")
        .selected_text(selected)
        .width(ui.available_width())
        .show_ui(ui, |ui| {
            let current = picker.current();
            let is_tiny = current == Some(&ModelSource::Tiny);
            if ui.selectable_label(is_tiny, TINY_LABEL).clicked() {
                *action = Some(ModelAction::Load(picker.entry(ModelSource::Tiny)));
            }
            if smollm2.is_file() {
                let is_smollm2 =
                    matches!(current, Some(ModelSource::Path(p)) if same_file(p, &smollm2));
                if ui.selectable_label(is_smollm2, SMOLLM2_LABEL).clicked() {
                    *action = Some(ModelAction::Load(picker.entry_for_path(&smollm2)));
                }
            } else {
                ui.add_enabled(false, egui::Button::selectable(false, SMOLLM2_LABEL))
                    .on_disabled_hover_text(format!("Not found: {}", smollm2.display()));
                ui.weak(FETCH_HINT);
            }
            ui.separator();
            if ui.selectable_label(false, "Open HF folder…").clicked() {
                *action = Some(ModelAction::PickFolder);
            }
            if ui.selectable_label(false, "Open GGUF file…").clicked() {
                *action = Some(ModelAction::PickFile);
            }
        })
        .response
        .labelled_by(heading);
}

/// The dequantize, device and precision settings; changing one that applies to the current model
/// reloads it with the new setting (dequantize applies to GGUF files only).
fn settings(ui: &mut egui::Ui, picker: &mut ModelPicker, action: &mut Option<ModelAction>) {
    let (dequantize, device, dtype) = (picker.dequantize, picker.device.clone(), picker.dtype);
    ui.checkbox(&mut picker.dequantize, "dequantize")
        .on_hover_text("Load GGUF weights as f32 instead of keeping them quantized and frozen");
    // One setting a row: the sidebar stays narrow enough for the panels beside it.
    egui::Grid::new("model_settings").show(ui, |ui| {
        let label = ui.label("device").id;
        egui::ComboBox::from_id_salt("model_device")
            .selected_text(picker.device.to_string())
            .show_ui(ui, |ui| {
                for choice in device_choices() {
                    let text = choice.to_string();
                    ui.selectable_value(&mut picker.device, choice, text);
                }
            })
            .response
            .labelled_by(label);
        ui.end_row();
        let label = ui.label("precision").id;
        egui::ComboBox::from_id_salt("model_dtype")
            .selected_text(picker.dtype.to_string())
            .show_ui(ui, |ui| {
                for choice in [Precision::Auto, Precision::F32, Precision::Bf16] {
                    let text = choice.to_string();
                    ui.selectable_value(&mut picker.dtype, choice, text);
                }
            })
            .response
            .on_hover_text("auto: bf16 on a GPU, f32 on the CPU. Adapters train in f32 either way.")
            .labelled_by(label);
        ui.end_row();
    });
    let Some(source) = picker.current().cloned() else {
        return;
    };
    let gguf = matches!(&source, ModelSource::Path(p) if is_gguf(p));
    if picker.device != device || picker.dtype != dtype || (gguf && picker.dequantize != dequantize)
    {
        *action = Some(ModelAction::Load(picker.entry(source)));
    }
}

fn info_grid(ui: &mut egui::Ui, info: &ModelInfo) {
    let rows = [
        ("Name", info.name.clone()),
        (
            "Parameters",
            format!("{:.2} M", info.parameters as f64 / 1e6),
        ),
        ("Architecture", info.architecture.clone()),
        ("Layers", info.layers.to_string()),
        ("Heads", format!("{} ({} kv)", info.heads, info.kv_heads)),
        ("Weights", info.quantization.clone()),
        ("Device", info.device.clone()),
        ("Precision", info.dtype.clone()),
        ("Context", format!("{} tokens", info.context)),
        (
            "Load time",
            format!("{:.2} s", info.load_time.as_secs_f64()),
        ),
    ];
    let gpu_rows = info.gpu.iter().flat_map(|g| {
        let f = &g.facts;
        [
            ("GPU", f.name.clone()),
            (
                "GPU memory",
                format!(
                    "{} MiB ({} free at load)",
                    thousands(f.memory_total_mib),
                    thousands(f.memory_free_mib)
                ),
            ),
            (
                "Compute capability",
                format!(
                    "{}.{}{}",
                    f.compute_capability.0,
                    f.compute_capability.1,
                    if f.has_bf16() {
                        " (bf16)"
                    } else {
                        " (no bf16)"
                    }
                ),
            ),
            ("Driver", g.driver.clone()),
        ]
    });
    let rows: Vec<(&str, String)> = rows.into_iter().chain(gpu_rows).collect();
    egui::Grid::new("model_info")
        .num_columns(2)
        .striped(true)
        .show(ui, |ui| {
            for (name, value) in rows {
                ui.weak(name);
                ui.label(value);
                ui.end_row();
            }
        })
        .response
        .on_hover_text(format!(
            "{}\n{} · vocabulary {} · hidden size {} · {}",
            info.path.display(),
            info.source.label(),
            info.vocab_size,
            info.hidden_size,
            if info.chat_template_found {
                "chat template from the model"
            } else {
                "no chat template in the model: a built-in one is used"
            }
        ));
}
