//! The four methods over one loaded model and one record: each builds the answer to score,
//! perturbs or cuts the input, and scores (and for ROUGE, regenerates) through `scoring`.

use super::features::{self, Feature, FeatureKind};
use super::lime::{self, KERNEL_WIDTH, RIDGE_ALPHA};
use super::scoring::{self, Answer};
use super::{
    ExplainSettings, FeatureWeight, LengthPoint, LengthResult, LimeResult, SaliencyResult,
    SectionImpact, SectionsResult, TargetText, Throughput,
};
use crate::data::record::Task;
use crate::eval::rouge::rouge;
use crate::job::{Job, JobError};
use crate::model::generation::GenerationParams;
use crate::model::loading::LoadedModel;
use crate::model::tokenizer::example::{encode_example, render_example};
use crate::pipeline::{self, Prompt, Run};
use std::time::Instant;

/// One record explained by one model.
pub struct Explainer<'a> {
    pub model: &'a LoadedModel,
    pub task: Option<Task>,
    pub input: &'a str,
    pub reference: &'a str,
    /// The model's output for the whole input.
    pub output: &'a str,
    pub settings: &'a ExplainSettings,
    /// Polled during generation.
    pub cancelled: &'a dyn Fn() -> bool,
}

fn model_err(e: impl std::fmt::Display) -> JobError {
    JobError::Model(e.to_string())
}

/// Per word of `input`, the sum of the weights of the items overlapping it: a token's
/// saliency adds to its word, a sentence's or section's LIME weight goes to each of its words.
pub fn word_weights_of(input: &str, items: &[FeatureWeight]) -> Vec<FeatureWeight> {
    features::words(input)
        .into_iter()
        .map(|w| FeatureWeight {
            weight: items
                .iter()
                .filter(|i| i.start < w.end && i.end > w.start)
                .map(|i| i.weight)
                .sum(),
            label: w.label,
            start: w.start,
            end: w.end,
        })
        .collect()
}

impl Explainer<'_> {
    /// The scored answer and the text it stands for.
    fn answer(&self) -> Result<(Answer, String), JobError> {
        let text = match &self.settings.target {
            TargetText::Reference => self.reference,
            TargetText::Output | TargetText::Medication(_) => self.output,
        };
        if text.trim().is_empty() {
            return Err(JobError::Usage(format!(
                "the {} is empty: there is nothing to explain",
                self.settings.target.name()
            )));
        }
        let (_, completion) =
            render_example(&self.model.template, self.task, self.input, Some(text))
                .map_err(model_err)?;
        let (ids, offsets) = self
            .model
            .tokenizer
            .encode_with_offsets(&completion, true)
            .map_err(model_err)?;
        let TargetText::Medication(name) = &self.settings.target else {
            return Ok((
                Answer {
                    scored: 0..ids.len(),
                    ids,
                },
                text.to_string(),
            ));
        };
        let at = completion.find(text).unwrap_or(0);
        let found = text
            .to_ascii_lowercase()
            .find(&name.to_ascii_lowercase())
            .ok_or_else(|| {
                JobError::Usage(format!(
                    "--target: medication {name:?} is not mentioned in the model's output"
                ))
            })?;
        let (start, end) = (at + found, at + found + name.len());
        let inside: Vec<usize> = (0..ids.len())
            .filter(|&i| offsets[i].0 < end && offsets[i].1 > start)
            .collect();
        let (Some(&first), Some(&last)) = (inside.first(), inside.last()) else {
            return Err(JobError::Model(format!(
                "no token of the output covers the mention of {name:?}"
            )));
        };
        let mention = text[found..found + name.len()].to_string();
        Ok((
            Answer {
                ids,
                scored: first..last + 1,
            },
            mention,
        ))
    }

    fn prompt(&self, input: &str) -> Result<Vec<u32>, JobError> {
        encode_example(
            &self.model.tokenizer,
            &self.model.template,
            self.task,
            input,
            None,
        )
        .map(|e| e.ids)
        .map_err(model_err)
    }

    /// Scores the answer after each input (templated), reporting progress under `stage`.
    fn score(
        &self,
        inputs: &[String],
        answer: &Answer,
        stage: &str,
        job: &mut Job,
    ) -> Result<scoring::Scores, JobError> {
        let prompts = inputs
            .iter()
            .map(|i| self.prompt(i))
            .collect::<Result<Vec<_>, _>>()?;
        let total = prompts.len();
        let batch = self.settings.batch;
        scoring::score_prompts(&self.model.llama, &prompts, answer, batch, &mut |done| {
            job.progress(stage, done as u64, total as u64);
            !job.is_stopping()
        })?
        .ok_or(JobError::Cancelled { done: 0, total })
    }

    /// Greedy output for `input`.
    pub fn generate(&self, input: &str) -> Result<String, JobError> {
        let cancelled = self.cancelled;
        let params = GenerationParams {
            max_new_tokens: self.settings.max_new_tokens,
            ..GenerationParams::default()
        };
        let run = Run::new(&params, cancelled);
        let prompt = Prompt::Chat {
            task: self.task,
            input,
        };
        let out = pipeline::generate(self.model, &[prompt], run).map_err(model_err)?;
        if cancelled() {
            return Err(JobError::Cancelled { done: 0, total: 1 });
        }
        Ok(out
            .outputs
            .into_iter()
            .next()
            .map_or_else(String::new, |o| o.text.trim().to_string()))
    }

    /// LIME over the chosen features.
    pub fn lime(&self, job: &mut Job) -> Result<(LimeResult, String), JobError> {
        let s = self.settings;
        let feats: Vec<Feature> = features::features(self.input, s.features);
        if feats.is_empty() {
            return Err(JobError::Usage(format!(
                "the input has no {} to weigh",
                s.features.name()
            )));
        }
        if s.samples < 2 {
            return Err(JobError::Usage("--samples must be at least 2".into()));
        }
        let (answer, target_text) = self.answer()?;
        let masks = lime::sample_masks(feats.len(), s.samples, s.seed);
        let inputs: Vec<String> = masks
            .iter()
            .map(|m| features::remove(self.input, &feats, m))
            .collect();
        if let Some(path) = &s.samples_out {
            self.write_samples(path, &inputs, &target_text)?;
        }
        let scores = self.score(&inputs, &answer, "scoring perturbed inputs", job)?;
        let kernel: Vec<f64> = masks
            .iter()
            .map(|m| lime::kernel(lime::distance(m), KERNEL_WIDTH))
            .collect();
        let fit = lime::weighted_ridge(&masks, &scores.loglik, &kernel, RIDGE_ALPHA)
            .map_err(model_err)?;
        let weights = feats
            .iter()
            .zip(&fit.weights)
            .map(|(f, w)| FeatureWeight {
                label: f.label.clone(),
                start: f.start,
                end: f.end,
                weight: *w,
            })
            .collect();
        let result = LimeResult {
            features: s.features,
            samples: s.samples,
            seed: s.seed,
            kernel_width: KERNEL_WIDTH,
            weights,
            intercept: fit.intercept,
            r2: fit.r2,
            full_loglik: scores.loglik[0],
            scoring: Throughput {
                sequences: inputs.len(),
                tokens: scores.tokens,
                seconds: scores.elapsed.as_secs_f64(),
                tokens_per_s: scores.tokens_per_s(),
            },
        };
        Ok((result, target_text))
    }

    /// The perturbed inputs as dataset records whose reference is the scored text.
    fn write_samples(
        &self,
        path: &std::path::Path,
        inputs: &[String],
        target: &str,
    ) -> Result<(), JobError> {
        let task = self.task.unwrap_or(Task::Discharge);
        let mut text = String::new();
        for (k, input) in inputs.iter().enumerate() {
            let line = serde_json::json!({"id": format!("sample-{k}"), "task": task.name(), "input": input, "target": target});
            text.push_str(&line.to_string());
            text.push('\n');
        }
        crate::store::write_atomic(path, text.as_bytes()).map_err(|e| JobError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Gradient x input per token of the input, and per word.
    pub fn saliency(&self) -> Result<(SaliencyResult, String), JobError> {
        let started = Instant::now();
        let (answer, target_text) = self.answer()?;
        let (prompt_text, _) =
            render_example(&self.model.template, self.task, self.input, None).map_err(model_err)?;
        let tokenizer = &self.model.tokenizer;
        let (mut ids, mut offsets) = tokenizer
            .encode_with_offsets(&prompt_text, true)
            .map_err(model_err)?;
        if tokenizer.add_bos()
            && let Some(bos) = tokenizer.bos_id()
        {
            ids.insert(0, bos);
            offsets.insert(0, (0, 0));
        }
        let at = prompt_text
            .rfind(self.input)
            .ok_or_else(|| JobError::Model("the chat template changed the input text".into()))?;
        let (per_token, loglik) = scoring::saliency(&self.model.llama, &ids, &answer)?;
        let end = at + self.input.len();
        let mut tokens = Vec::new();
        for ((&(s, e), id), w) in offsets.iter().zip(&ids).zip(&per_token) {
            if s < end && e > at {
                tokens.push(FeatureWeight {
                    label: tokenizer.decode(&[*id], false).unwrap_or_default(),
                    start: s.max(at) - at,
                    end: e.min(end) - at,
                    weight: *w,
                });
            }
        }
        let words = word_weights_of(self.input, &tokens);
        let result = SaliencyResult {
            tokens,
            words,
            loglik,
            seconds: started.elapsed().as_secs_f64(),
        };
        Ok((result, target_text))
    }

    /// ROUGE-L F1 of the output generated greedily for `input`. The whole input is generated
    /// again too rather than taking the known output: that one may come from an evaluation that
    /// cut the input to the run's context, and the changes must compare like with like.
    fn rouge_after(&self, input: &str) -> Result<(f64, String), JobError> {
        let output = self.generate(input)?;
        Ok((rouge(self.reference, &output).rouge_l.fmeasure, output))
    }

    /// Removes each clinical section in turn.
    pub fn sections(&self, job: &mut Job) -> Result<(SectionsResult, String), JobError> {
        let sections = features::features(self.input, FeatureKind::Sections);
        if sections.is_empty() {
            return Err(JobError::Usage(
                "the input has no clinical sections (headers such as \"Discharge Medications:\")"
                    .into(),
            ));
        }
        let (answer, target_text) = self.answer()?;
        let mut inputs = vec![self.input.to_string()];
        for k in 0..sections.len() {
            let keep: Vec<bool> = (0..sections.len()).map(|j| j != k).collect();
            inputs.push(features::remove(self.input, &sections, &keep));
        }
        let scores = self.score(&inputs, &answer, "scoring without each section", job)?;
        let (full_rouge, full_output) = self.rouge_after(self.input)?;
        let mut impacts = Vec::new();
        for (k, s) in sections.iter().enumerate() {
            job.step("generating without each section", k, sections.len())?;
            let (r, output) = self.rouge_after(&inputs[k + 1])?;
            impacts.push(SectionImpact {
                section: s.label.clone(),
                start: s.start,
                end: s.end,
                loglik_change: scores.loglik[k + 1] - scores.loglik[0],
                rouge_l_change: r - full_rouge,
                output,
            });
        }
        let result = SectionsResult {
            full_loglik: scores.loglik[0],
            full_rouge_l: full_rouge,
            output_rouge_l: rouge(self.reference, self.output).rouge_l.fmeasure,
            regenerated_differs: full_output.trim() != self.output.trim(),
            sections: impacts,
        };
        Ok((result, target_text))
    }

    /// The input cut to each fraction of its words.
    pub fn length(&self, job: &mut Job) -> Result<(LengthResult, String), JobError> {
        let fractions = &self.settings.fractions;
        if fractions.is_empty() || fractions.iter().any(|f| !(*f > 0.0 && *f <= 1.0)) {
            return Err(JobError::Usage(
                "input-length fractions must lie in (0, 1]".into(),
            ));
        }
        let (answer, target_text) = self.answer()?;
        let inputs: Vec<String> = fractions
            .iter()
            .map(|f| features::truncate_words(self.input, *f))
            .collect();
        let scores = self.score(&inputs, &answer, "scoring truncated inputs", job)?;
        let mut points = Vec::new();
        for (k, (f, input)) in fractions.iter().zip(&inputs).enumerate() {
            job.step("generating for each length", k, inputs.len())?;
            let (r, _) = self.rouge_after(input)?;
            points.push(LengthPoint {
                fraction: *f,
                words: features::words(input).len(),
                loglik_per_token: scores.loglik[k] / answer.scored.len() as f64,
                rouge_l: r,
            });
        }
        Ok((LengthResult { points }, target_text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::loading::{ModelSpec, TINY, load};

    #[test]
    fn an_input_longer_than_the_context_is_trimmed_for_its_output() {
        let model = load(&ModelSpec::new(TINY)).expect("the embedded model");
        // Some 4,000 tokens: four times the embedded model's context.
        let long = "The patient was admitted with chest pain and treated. ".repeat(400);
        let settings = ExplainSettings {
            max_new_tokens: 4,
            ..ExplainSettings::default()
        };
        let explainer = Explainer {
            model: &model,
            task: Some(Task::Discharge),
            input: &long,
            reference: "",
            output: "",
            settings: &settings,
            cancelled: &|| false,
        };
        let output = explainer.generate(&long).expect("generated, not refused");
        assert!(output.len() < 200, "{output}");
    }
}
