//! Pretraining the embedded tiny model: a byte-level BPE tokenizer and a small Llama-architecture
//! decoder, both trained from scratch on task records rendered as ChatML conversations, written
//! as a Hugging Face model folder that `load` reads like any other.

pub mod bpe;
pub mod trainer;

use super::config::ScheduleKind;
use super::optim::Schedule;
use crate::data::load::{LoadIssue, LoadOptions, load_path};
use crate::data::record::Record;
use crate::data::rng::SeededRng;
use crate::job::{Job, JobError};
use crate::model::tokenizer::Tokenizer;
use crate::model::tokenizer::chat::{ChatMessage, ChatTemplate};
use crate::model::tokenizer::example::encode_example;
use crate::store::write_atomic;
use bpe::{tokenizer_config, train_tokenizer};
use candle_core::{DType, Device, Tensor};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;
use trainer::{TinyShape, Trainer, init_weights, model_over, sample_windows};

/// Above this many bytes of f32 weights, `model.safetensors` is stored in bf16 (the loader
/// converts back to f32), so the embedded model stays small enough to commit.
const MAX_F32_BYTES: usize = 6_000_000;

/// Points of the loss curve kept in `training.json`.
pub const CURVE_POINTS: usize = 200;

/// How to pretrain.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainOptions {
    pub steps: usize,
    pub seed: u64,
    pub vocab_size: usize,
    pub shape: TinyShape,
    pub batch_size: usize,
    /// Tokens per training window: long enough to hold most of a conversation, so the model
    /// learns to answer from an input it has seen whole.
    pub seq_len: usize,
    pub peak_lr: f64,
    pub warmup: usize,
    pub weight_decay: f64,
    pub clip_norm: f64,
}

impl Default for PretrainOptions {
    fn default() -> Self {
        PretrainOptions {
            steps: 300,
            seed: 42,
            vocab_size: 4096,
            shape: TinyShape::default(),
            batch_size: 4,
            seq_len: 512,
            peak_lr: 3e-3,
            warmup: 30,
            weight_decay: 0.01,
            clip_norm: 1.0,
        }
    }
}

/// What a pretraining run wrote; also the content of `training.json` (with `loss_curve`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PretrainReport {
    pub out: PathBuf,
    pub steps: usize,
    /// Mean loss of the last ten steps (none when no step ran).
    pub final_loss: Option<f64>,
    pub tokens_per_s: f64,
    pub parameters: usize,
    /// Bytes of the model files (weights, config, tokenizer), `training.json` aside.
    pub bytes: u64,
    pub seed: u64,
    /// SHA-256 of the corpus files' own SHA-256 digests, one a line, in the order given.
    pub corpus_sha256: String,
    pub records: usize,
    pub corpus_tokens: usize,
    pub elapsed_s: f64,
    /// `[step, loss]`, thinned to at most [`CURVE_POINTS`] points.
    pub loss_curve: Vec<(usize, f32)>,
}

/// The records of the corpus files and their digests.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub records: Vec<Record>,
    /// Lines of the files that were skipped, with the reason.
    pub issues: Vec<LoadIssue>,
    pub sha256: String,
}

impl Corpus {
    /// Reads dataset files (JSONL or CSV, as `load_path` does); an unreadable file or a corpus
    /// without records is an error.
    pub fn load(paths: &[PathBuf]) -> Result<Corpus, JobError> {
        let mut records = Vec::new();
        let mut issues = Vec::new();
        let mut digests = String::new();
        for path in paths {
            let loaded = load_path(path, &LoadOptions::default())
                .map_err(|e| JobError::Usage(e.to_string()))?;
            records.extend(loaded.records);
            issues.extend(loaded.issues);
            digests.push_str(&loaded.sha256);
            digests.push('\n');
        }
        if records.is_empty() {
            return Err(JobError::Usage("the corpus holds no usable records".into()));
        }
        Ok(Corpus {
            records,
            issues,
            sha256: hex(&Sha256::digest(digests.as_bytes())),
        })
    }
}

fn compute(e: impl std::fmt::Display) -> JobError {
    JobError::Model(e.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<u64, JobError> {
    write_atomic(path, bytes).map_err(|e| JobError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(bytes.len() as u64)
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<u64, JobError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| JobError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_file(path, text.as_bytes())
}

/// Trains the tokenizer on the rendered conversations, writes it into `out` and reads it back
/// through the loader the model will be used with.
fn make_tokenizer(
    corpus: &Corpus,
    out: &Path,
    opts: &PretrainOptions,
) -> Result<(Tokenizer, ChatTemplate, u64), JobError> {
    let template = ChatTemplate::chatml();
    let texts = corpus
        .records
        .iter()
        .map(|r| {
            let system = crate::data::template::system_prompt(r.task);
            let messages = [
                ChatMessage::new("system", system),
                ChatMessage::new("user", r.input.as_str()),
                ChatMessage::new("assistant", r.target.as_str()),
            ];
            template.render(&messages, false).map_err(compute)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let trained = train_tokenizer(&texts, opts.vocab_size).map_err(JobError::Model)?;
    let path = out.join("tokenizer.json");
    let json = trained.to_string(false).map_err(compute)?;
    let mut bytes = write_file(&path, json.as_bytes())?;
    bytes += write_json(
        &out.join("tokenizer_config.json"),
        &tokenizer_config(opts.shape.context),
    )?;
    let tokenizer = Tokenizer::from_file(&path).map_err(compute)?;
    let template = ChatTemplate::from_hf_folder(out, &tokenizer)
        .map_err(compute)?
        .unwrap_or_else(ChatTemplate::chatml);
    Ok((tokenizer, template, bytes))
}

/// Every record as one token sequence (`<|endoftext|>` system, user, assistant), back to back.
fn token_stream(
    corpus: &Corpus,
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
) -> Result<Vec<u32>, JobError> {
    let mut stream = Vec::new();
    for r in &corpus.records {
        let ex = encode_example(tokenizer, template, Some(r.task), &r.input, Some(&r.target))
            .map_err(|e| JobError::Usage(format!("record {}: {e}", r.id)))?;
        stream.extend(ex.ids);
    }
    Ok(stream)
}

/// The stage pretraining reports its steps in.
pub const PRETRAINING: &str = "pretraining";

/// Steps between the lines that say a step's loss.
pub const NOTE_EVERY: usize = 10;

/// Trains a tokenizer and a decoder on `corpus` and writes the model folder `out`.
/// Every step is reported, with its loss, rate and throughput at the first, every
/// [`NOTE_EVERY`] and the last; a stop ends the run early and what was trained so far is saved.
pub fn pretrain(
    corpus: &Corpus,
    out: &Path,
    opts: &PretrainOptions,
    job: &mut Job,
) -> Result<PretrainReport, JobError> {
    let started = Instant::now();
    let device = Device::Cpu;
    let (tokenizer, template, mut bytes) = make_tokenizer(corpus, out, opts)?;
    let stream = token_stream(corpus, &tokenizer, &template)?;
    let cfg = opts.shape.config(
        tokenizer.vocab_size(),
        tokenizer.bos_id(),
        tokenizer.eos_id(),
    );
    let vars = init_weights(&cfg, opts.seed, &device)?;
    let model = model_over(&vars, &cfg, &device).map_err(compute)?;
    let schedule = Schedule {
        kind: ScheduleKind::Cosine,
        peak: opts.peak_lr,
        warmup: opts.warmup.min(opts.steps / 5),
        total: opts.steps,
        floor: opts.peak_lr * 0.1,
    };
    let mut trainer = Trainer::new(&vars, schedule, opts.weight_decay, opts.clip_norm)?;
    let mut rng = SeededRng::new(opts.seed).fork(1);
    let mut loss_curve = Vec::new();
    let mut tokens = 0usize;
    let train_started = Instant::now();
    for step in 1..=opts.steps {
        let windows = sample_windows(&stream, opts.batch_size, opts.seq_len, &mut rng, &device)?;
        let stats = trainer.step(&model, &windows, step)?;
        tokens += windows.elem_count() - opts.batch_size;
        loss_curve.push((step, stats.loss));
        let (done, total) = (step as u64, opts.steps as u64);
        if step == 1 || step % NOTE_EVERY == 0 || step == opts.steps {
            let tokens_per_s = tokens as f64 / train_started.elapsed().as_secs_f64();
            let line = format!(
                "step {step}/{}  loss {:.4}  lr {:.2e}  {tokens_per_s:.0} tokens/s",
                opts.steps, stats.loss, stats.lr
            );
            job.note(PRETRAINING, done, total, line);
        } else {
            job.progress(PRETRAINING, done, total);
        }
        if job.is_stopping() {
            break;
        }
    }
    let train_secs = train_started.elapsed().as_secs_f64();
    bytes += save_weights(out, &cfg, &vars)?;
    let tail = &loss_curve[loss_curve.len().saturating_sub(10)..];
    let every = loss_curve.len().div_ceil(CURVE_POINTS).max(1);
    let last = loss_curve.len();
    let report = PretrainReport {
        out: out.to_path_buf(),
        steps: loss_curve.len(),
        final_loss: crate::model::generation::score::mean(
            &tail.iter().map(|(_, l)| *l).collect::<Vec<_>>(),
        ),
        tokens_per_s: if tokens == 0 {
            0.0
        } else {
            tokens as f64 / train_secs
        },
        parameters: model.parameter_count(),
        bytes,
        seed: opts.seed,
        corpus_sha256: corpus.sha256.clone(),
        records: corpus.records.len(),
        corpus_tokens: stream.len(),
        elapsed_s: started.elapsed().as_secs_f64(),
        loss_curve: loss_curve
            .into_iter()
            .filter(|(step, _)| *step == 1 || step % every == 0 || *step == last)
            .collect(),
    };
    write_json(&out.join("training.json"), &report)?;
    Ok(report)
}

/// Writes `config.json` and `model.safetensors`; returns the bytes written.
fn save_weights(
    out: &Path,
    cfg: &crate::model::config::LlamaConfig,
    vars: &[(String, candle_core::Var)],
) -> Result<u64, JobError> {
    let f32_bytes: usize = vars.iter().map(|(_, v)| v.elem_count() * 4).sum();
    let dtype = if f32_bytes > MAX_F32_BYTES {
        DType::BF16
    } else {
        DType::F32
    };
    let tensors = vars
        .iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().to_dtype(dtype)?)))
        .collect::<Result<Vec<(String, Tensor)>, candle_core::Error>>()?;
    let path = out.join("model.safetensors");
    let st = crate::model::adapters::safetensors_bytes(&tensors).map_err(|e| JobError::File {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let mut bytes = write_file(&path, &st)?;
    let mut config = serde_json::to_value(cfg).map_err(compute)?;
    if let Some(map) = config.as_object_mut() {
        map.insert("model_type".into(), "llama".into());
        map.insert("hidden_act".into(), "silu".into());
        map.insert(
            "torch_dtype".into(),
            if dtype == DType::BF16 {
                "bfloat16"
            } else {
                "float32"
            }
            .into(),
        );
    }
    bytes += write_json(&out.join("config.json"), &config)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Progress;
    use crate::model::generation::score::{mean, token_nll};
    use crate::model::loading::{ModelSpec, load};

    fn small_options(steps: usize) -> PretrainOptions {
        PretrainOptions {
            steps,
            seed: 7,
            vocab_size: 400,
            shape: TinyShape {
                hidden: 32,
                layers: 2,
                heads: 4,
                kv_heads: 2,
                intermediate: 64,
                context: 512,
            },
            batch_size: 4,
            seq_len: 96,
            peak_lr: 1e-2,
            warmup: 3,
            ..PretrainOptions::default()
        }
    }

    /// Mean NLL of the answers of the corpus under the model in `dir`.
    fn answer_nll(dir: &Path, corpus: &Corpus) -> f64 {
        let m = load(&ModelSpec::new(dir)).unwrap();
        let mut all = Vec::new();
        for r in &corpus.records {
            let ex = encode_example(
                &m.tokenizer,
                &m.template,
                Some(r.task),
                &r.input,
                Some(&r.target),
            )
            .unwrap();
            all.extend(token_nll(&m.llama, &ex.ids, ex.prompt_len).unwrap());
        }
        mean(&all).unwrap()
    }

    #[test]
    fn pretraining_writes_a_loadable_folder_that_fits_its_corpus_better_than_at_init() {
        let dir = tempfile::tempdir().unwrap();
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data/qa.jsonl");
        let lines: Vec<String> = std::fs::read_to_string(sample)
            .unwrap()
            .lines()
            .take(24)
            .map(str::to_string)
            .collect();
        let data = dir.path().join("qa.jsonl");
        std::fs::write(&data, lines.join("\n")).unwrap();
        let corpus = Corpus::load(std::slice::from_ref(&data)).unwrap();
        assert_eq!(corpus.records.len(), 24);

        let (init, trained) = (dir.path().join("init"), dir.path().join("trained"));
        let mut quiet = |_: &Progress| {};
        let at_init = pretrain(
            &corpus,
            &init,
            &small_options(0),
            &mut Job::unstopped(&mut quiet),
        )
        .unwrap();
        assert_eq!((at_init.steps, at_init.final_loss), (0, None));
        let mut seen = 0;
        let mut count = |p: &Progress| seen = p.done;
        let report = pretrain(
            &corpus,
            &trained,
            &small_options(30),
            &mut Job::unstopped(&mut count),
        )
        .unwrap();
        assert_eq!((report.steps, seen), (30, 30));
        let curve = &report.loss_curve;
        assert!(curve[curve.len() - 1].1 < curve[0].1 - 1.0, "{curve:?}");
        for file in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "training.json",
        ] {
            assert!(trained.join(file).is_file(), "{file}");
        }
        // Small enough to stay f32; the same corpus gives the same tokenizer.
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(trained.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["torch_dtype"], "float32");
        assert_eq!(
            std::fs::read(init.join("tokenizer.json")).unwrap(),
            std::fs::read(trained.join("tokenizer.json")).unwrap()
        );

        let (before, after) = (answer_nll(&init, &corpus), answer_nll(&trained, &corpus));
        assert!(after < before - 1.0, "{before} -> {after}");
    }

    #[test]
    fn a_corpus_without_records_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("empty.jsonl");
        std::fs::write(&data, "").unwrap();
        let err = Corpus::load(&[data]).unwrap_err();
        assert!(matches!(err, JobError::Usage(_)), "{err}");
    }
}
