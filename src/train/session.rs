//! What a run needs before its first step: the configuration checked, the project's dataset
//! split by patient and encoded, the model loaded with a fresh adapter (or the checkpoint's
//! adapter and optimizer when resuming).

use super::TrainError;
use super::config::TrainConfig;
use super::optim::{AdamSettings, AdamW};
use super::run::{LoopState, OPTIMIZER_FILE, RunDir, STATE_FILE, run_err};
use crate::data::load::load_path;
use crate::data::record::Split;
use crate::data::split::{assign_splits, partition};
use crate::model::adapters::{attach, load_peft};
use crate::model::loading::{DeviceChoice, LoadedModel, ModelSpec, Precision, load};
use crate::model::tokenizer::example::{Example, encode_records};
use crate::project::OpenProject;
use std::path::Path;

/// Training and validation examples, with what encoding had to cut.
pub struct Data {
    pub train: Vec<Example>,
    pub val: Vec<Example>,
    pub notes: Vec<String>,
    pub dataset_sha256: String,
}

pub fn load_model(cfg: &TrainConfig) -> Result<LoadedModel, TrainError> {
    let mut spec = ModelSpec::new(&cfg.model);
    spec.dequantize = cfg.dequantize;
    spec.device = DeviceChoice::parse(&cfg.device).map_err(|e| TrainError::Model(e.to_string()))?;
    spec.precision = Precision::parse(&cfg.dtype).map_err(|e| TrainError::Model(e.to_string()))?;
    spec.max_len = cfg.max_seq_len;
    load(&spec).map_err(|e| TrainError::Model(e.to_string()))
}

pub fn load_data(
    project: &OpenProject,
    cfg: &TrainConfig,
    model: &LoadedModel,
) -> Result<Data, TrainError> {
    let entry = project
        .project
        .datasets
        .iter()
        .find(|d| d.name == cfg.dataset)
        .ok_or_else(|| {
            let names: Vec<&str> = project
                .project
                .datasets
                .iter()
                .map(|d| d.name.as_str())
                .collect();
            TrainError::Config(vec![super::config::FieldError {
                field: "dataset",
                message: format!(
                    "no dataset {:?} in the project (it has {names:?})",
                    cfg.dataset
                ),
            }])
        })?;
    let path = project.dataset_path(entry);
    let loaded = load_path(&path, &project.load_options(&path))
        .map_err(|e| TrainError::Data(e.to_string()))?;
    let splits = assign_splits(&loaded.records, &project.project.split);
    let [train, val, _test] = partition(&loaded.records, &splits);
    let encode = |records: &[crate::data::record::Record]| {
        encode_records(records, &model.tokenizer, &model.template, cfg.max_seq_len)
            .map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))
    };
    let train_enc = encode(&train)?;
    let val_records: Vec<_> = match cfg.eval_records {
        0 => val,
        n => val.into_iter().take(n).collect(),
    };
    let val_enc = encode(&val_records)?;
    if train_enc.examples.is_empty() {
        return Err(TrainError::Data(format!(
            "{}: no training examples (the {:?} split has {} records, none with a usable target)",
            path.display(),
            Split::Train,
            train.len()
        )));
    }
    let mut notes = vec![format!(
        "{}: {} training and {} validation examples ({} load issues)",
        path.display(),
        train_enc.examples.len(),
        val_enc.examples.len(),
        loaded.issues.len()
    )];
    let cut = train_enc.cut_input + val_enc.cut_input;
    let cut_target = train_enc.cut_target + val_enc.cut_target;
    if cut + cut_target > 0 {
        notes.push(format!(
            "{cut} examples had their input cut and {cut_target} their target's end cut to fit {} tokens",
            cfg.max_seq_len
        ));
    }
    for issue in loaded.issues.iter().take(5) {
        notes.push(format!("load issue: {issue}"));
    }
    for (id, why) in train_enc.skipped.iter().chain(&val_enc.skipped).take(5) {
        notes.push(format!("skipped record {id}: {why}"));
    }
    Ok(Data {
        train: train_enc.examples,
        val: val_enc.examples,
        notes,
        dataset_sha256: loaded.sha256,
    })
}

/// On the CPU, refuses a micro-batch whose activations outgrow the memory available now (the
/// longest examples padded to the longest of them), naming the largest that fits.
pub fn check_memory(cfg: &TrainConfig, model: &LoadedModel, data: &Data) -> Result<(), TrainError> {
    if !model.llama.device().is_cpu() {
        return Ok(());
    }
    let Some(available) = super::memory::available_bytes() else {
        return Ok(());
    };
    let rows = cfg.micro_batch.min(data.train.len());
    let seq = data.train.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    super::memory::check_fits(&model.llama.cfg, rows, seq, available)
        .map_err(|e| TrainError::Config(vec![e]))
}

/// A fresh adapter and optimizer, or those of the checkpoint `step` of `run`, with its loop state.
pub fn adapter_and_optimizer(
    model: &mut LoadedModel,
    cfg: &TrainConfig,
    resume: Option<(&RunDir, usize)>,
) -> Result<(AdamW, Option<LoopState>), TrainError> {
    let Some((run, step)) = resume else {
        let vars = attach(&mut model.llama, &cfg.lora, cfg.seed).map_err(TrainError::compute)?;
        return Ok((
            AdamW::new(vars, AdamSettings::of(cfg)).map_err(TrainError::compute)?,
            None,
        ));
    };
    let dir = run.checkpoint_dir(step);
    let (_, vars) =
        load_peft(&mut model.llama, &dir).map_err(|e| TrainError::Model(e.to_string()))?;
    let mut opt = AdamW::new(vars, AdamSettings::of(cfg)).map_err(TrainError::compute)?;
    let opt_path = dir.join(OPTIMIZER_FILE);
    let state = candle_core::safetensors::load(&opt_path, model.llama.device())
        .map_err(|e| TrainError::Run(run_err(&opt_path, e)))?;
    opt.load_state(&state)
        .map_err(|e| TrainError::Run(run_err(&opt_path, e)))?;
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path)
        .map_err(|e| TrainError::Run(run_err(&state_path, e)))?;
    let state: LoopState = serde_json::from_str(&text)
        .map_err(|e| TrainError::Run(run_err(&state_path, format!("line {}: {e}", e.line()))))?;
    Ok((opt, Some(state)))
}

/// Reads a run's `config.ron`, naming the line of a parse error.
pub fn read_config(path: &Path) -> Result<TrainConfig, TrainError> {
    read_config_noting(path).map(|(cfg, _)| cfg)
}

/// [`read_config`], with the fields the file has that a configuration does not (ignored,
/// perhaps misspelt): `train.ron: unknown field lora.rank (ignored)`.
pub fn read_config_noting(path: &Path) -> Result<(TrainConfig, Vec<String>), TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::Run(run_err(path, e)))?;
    let (cfg, unknown) = crate::project::from_ron(&text).map_err(|e| {
        TrainError::Run(run_err(
            path,
            format!(
                "line {}, column {}: {}",
                e.span.start.line, e.span.start.col, e.code
            ),
        ))
    })?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let warnings = unknown
        .iter()
        .map(|field| format!("{name}: unknown field {field} (ignored)"))
        .collect();
    Ok((cfg, warnings))
}
