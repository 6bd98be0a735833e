//! `lablens tokenize`, `score` and `generate`: the model engine from the command line.

use super::CliError;
use super::commands::load_reported;
use crate::data::load::{DEFAULT_MAX_FILE_BYTES, LoadOptions, read_bounded};
use crate::data::record::Task;
use crate::model::adapters::{load_peft, merge};
use crate::model::generation::score::{mean, token_nll};
use crate::model::generation::{GenerationParams, Timing};
use crate::model::loading::{DeviceChoice, LoadedModel, ModelSpec, Precision, load};
use crate::model::tokenizer::example::encode_example;
use crate::pipeline::{self, GenerateError, Prompt, Run};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How the model is chosen on the command line.
pub struct ModelArgs {
    pub model: PathBuf,
    pub dequantize: bool,
    pub device: String,
    pub dtype: String,
    pub adapter: Option<PathBuf>,
    pub merge: bool,
}

fn open_model(args: &ModelArgs) -> Result<LoadedModel, CliError> {
    let mut spec = ModelSpec::new(&args.model);
    spec.dequantize = args.dequantize;
    spec.device = DeviceChoice::parse(&args.device).map_err(|e| CliError::usage(e.to_string()))?;
    spec.precision = Precision::parse(&args.dtype).map_err(|e| CliError::usage(e.to_string()))?;
    let started = std::time::Instant::now();
    let mut model = load(&spec).map_err(|e| CliError::usage(format!("--model: {e}")))?;
    if let Some(dir) = &args.adapter {
        let (cfg, vars) = load_peft(&mut model.llama, dir)
            .map_err(|e| CliError::usage(format!("--adapter: {e}")))?;
        eprintln!(
            "adapter {}: r={}, alpha={}, {} matrices",
            dir.display(),
            cfg.r,
            cfg.lora_alpha,
            vars.len()
        );
        if args.merge {
            let layers =
                merge(&mut model.llama).map_err(|e| CliError::usage(format!("--merge: {e}")))?;
            eprintln!("merged the adapter into {layers} layers of the base");
        }
    }
    eprintln!(
        "loaded {} ({:.1}M parameters, {}, {}, {}) in {:.1}s",
        model.info.path.display(),
        model.info.parameters as f64 / 1e6,
        model.info.weights,
        model.info.device,
        model.info.dtype,
        started.elapsed().as_secs_f64()
    );
    Ok(model)
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::failed(e.to_string())
}

fn print(value: serde_json::Value) -> Result<(), CliError> {
    println!("{}", serde_json::to_string_pretty(&value).map_err(failed)?);
    Ok(())
}

pub fn tokenize(args: &ModelArgs, text: &str, json_out: bool) -> Result<(), CliError> {
    let model = open_model(args)?;
    let ids = model.tokenizer.encode(text, true).map_err(failed)?;
    let tokens: Vec<String> = ids
        .iter()
        .map(|i| model.tokenizer.id_to_piece(*i).unwrap_or_default())
        .collect();
    if json_out {
        print(json!({"ids": ids, "tokens": tokens}))
    } else {
        for (id, tok) in ids.iter().zip(&tokens) {
            println!("{id}\t{tok:?}");
        }
        Ok(())
    }
}

/// `{"id", "text"}` lines for `--raw`.
fn raw_records(path: &Path) -> Result<Vec<(String, String)>, CliError> {
    let bytes =
        read_bounded(path, DEFAULT_MAX_FILE_BYTES).map_err(|e| CliError::usage(e.to_string()))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| CliError::usage(format!("{}:{}: {e}", path.display(), n + 1)))?;
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let text = field("text").ok_or_else(|| {
            CliError::usage(format!(
                "{}:{}: field \"text\" is missing",
                path.display(),
                n + 1
            ))
        })?;
        out.push((
            field("id").unwrap_or_else(|| format!("line-{}", n + 1)),
            text,
        ));
    }
    Ok(out)
}

pub fn score(args: &ModelArgs, data: &Path, raw: bool, json_out: bool) -> Result<(), CliError> {
    let model = open_model(args)?;
    let mut rows = Vec::new();
    let mut all = Vec::new();
    let items: Vec<(String, Vec<u32>, usize)> = if raw {
        raw_records(data)?
            .into_iter()
            .map(|(id, text)| {
                let ids = model.tokenizer.encode(&text, true).map_err(failed)?;
                Ok((id, ids, 1))
            })
            .collect::<Result<_, CliError>>()?
    } else {
        load_reported(data, &LoadOptions::default())?
            .records
            .iter()
            .map(|r| {
                let ex = encode_example(
                    &model.tokenizer,
                    &model.template,
                    Some(r.task),
                    &r.input,
                    Some(&r.target),
                )
                .map_err(|e| {
                    CliError::usage(format!("{}: record {}: {e}", data.display(), r.id))
                })?;
                Ok((r.id.clone(), ex.ids, ex.prompt_len))
            })
            .collect::<Result<_, CliError>>()?
    };
    let scoring = Instant::now();
    let sequence_tokens: usize = items.iter().map(|(_, ids, _)| ids.len()).sum();
    for (k, (id, ids, first)) in items.iter().enumerate() {
        let nll = token_nll(&model.llama, ids, *first).map_err(failed)?;
        let m = mean(&nll);
        eprintln!(
            "[{}/{}] {id}: {} tokens, nll {}",
            k + 1,
            items.len(),
            nll.len(),
            m.map_or("-".into(), |v| format!("{v:.4}"))
        );
        all.extend_from_slice(&nll);
        rows.push(json!({"id": id, "tokens": nll.len(), "nll": m, "ppl": m.map(f64::exp)}));
    }
    let mean_nll = mean(&all);
    let scoring_s = scoring.elapsed().as_secs_f64();
    // Every position of every sequence is forwarded: the throughput counts them all.
    let tokens_per_s = sequence_tokens as f64 / scoring_s.max(1e-9);
    eprintln!(
        "mean nll {} over {} tokens; {sequence_tokens} sequence tokens in {scoring_s:.2}s ({tokens_per_s:.0} tokens/s)",
        mean_nll.map_or("-".into(), |v| format!("{v:.4}")),
        all.len()
    );
    if json_out {
        print(json!({
            "records": rows,
            "mean_nll": mean_nll,
            "timing": {"sequence_tokens": sequence_tokens, "scoring_s": scoring_s, "tokens_per_s": tokens_per_s},
        }))?;
    }
    Ok(())
}

pub struct GenerateArgs {
    pub prompt: Option<String>,
    pub data: Option<PathBuf>,
    pub raw: bool,
    pub params: GenerationParams,
    pub ignore_eos: bool,
    pub batch_size: usize,
}

/// `(id, task, text)` of each prompt to generate after.
fn generation_inputs(g: &GenerateArgs) -> Result<Vec<(String, Option<Task>, String)>, CliError> {
    Ok(match (&g.prompt, &g.data) {
        (Some(p), None) => vec![("prompt".into(), None, p.clone())],
        (None, Some(path)) if g.raw => raw_records(path)?
            .into_iter()
            .map(|(id, t)| (id, None, t))
            .collect(),
        (None, Some(path)) => load_reported(path, &LoadOptions::default())?
            .records
            .into_iter()
            .map(|r| (r.id, Some(r.task), r.input))
            .collect(),
        _ => return Err(CliError::usage("give exactly one of --prompt and --data")),
    })
}

pub fn generate_cmd(args: &ModelArgs, g: &GenerateArgs, json_out: bool) -> Result<(), CliError> {
    if g.batch_size == 0 {
        return Err(CliError::usage("--batch-size must be at least 1"));
    }
    g.params.check().map_err(CliError::usage)?;
    let started = Instant::now();
    let model = open_model(args)?;
    let load_s = started.elapsed().as_secs_f64();
    let inputs = generation_inputs(g)?;
    let mut outputs = Vec::new();
    let mut timing = Timing::default();
    for chunk in inputs.chunks(g.batch_size) {
        let prompts: Vec<Prompt> = chunk
            .iter()
            .map(|(_, task, text)| match g.raw {
                true => Prompt::Raw(text),
                false => Prompt::Chat {
                    task: *task,
                    input: text,
                },
            })
            .collect();
        let run = Run {
            stop_at_eos: !g.ignore_eos,
            ..Run::new(&g.params, &|| false)
        };
        let batch = pipeline::generate(&model, &prompts, run).map_err(|e| match e {
            GenerateError::Prompt { index, source } => {
                CliError::usage(format!("{}: {source}", chunk[index].0))
            }
            e => failed(e),
        })?;
        let t = batch.timing;
        eprintln!(
            "{} prompt(s), {} prompt tokens in {:.2}s, {} new tokens in {:.2}s ({:.1} tokens/s)",
            prompts.len(),
            t.prompt_tokens,
            t.prefill.as_secs_f64(),
            t.new_tokens,
            t.decode.as_secs_f64(),
            t.new_tokens as f64 / (t.prefill + t.decode).as_secs_f64().max(1e-9),
        );
        timing.prompt_tokens += t.prompt_tokens;
        timing.new_tokens += t.new_tokens;
        timing.decoded_tokens += t.decoded_tokens;
        timing.prefill += t.prefill;
        timing.decode += t.decode;
        for ((id, _, _), out) in chunk.iter().zip(batch.outputs) {
            if out.input_cut {
                eprintln!(
                    "{id}: the input lost its end to leave room for --max-new-tokens {} in the \
                     model's context",
                    g.params.max_new_tokens
                );
            }
            if !json_out {
                println!("{}", out.text);
            }
            outputs.push(json!({
                "id": id, "text": out.text, "ids": out.ids, "stop": out.stop,
                "input_cut": out.input_cut,
            }));
        }
    }
    if json_out {
        print(json!({
            "outputs": outputs,
            "timing": {
                "load_s": load_s,
                "prompt_tokens": timing.prompt_tokens,
                "prefill_s": timing.prefill.as_secs_f64(),
                "new_tokens": timing.new_tokens,
                "decoded_tokens": timing.decoded_tokens,
                "decode_s": timing.decode.as_secs_f64(),
            }
        }))?;
    }
    Ok(())
}
