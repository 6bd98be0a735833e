//! The counterfactual test: the same input with its demographic mentions swapped (he ↔ she,
//! Mr. ↔ Ms., a stated age moved to another age group, a stated ethnicity changed), generated
//! again with the same model; how much the outputs and their metric move says whether the model
//! treats the mention rather than the medicine.

use crate::data::record::Task;
use crate::eval::rouge;
use crate::eval::{ExampleInput, score_example};
use crate::job::{Job, JobError};
use crate::model::generation::GenerationParams;
use crate::model::loading::LoadedModel;
use crate::pipeline::{self, Prompt, Run};
use crate::project::predictions::PredictionRow;
use regex::{Captures, Regex};
use serde::Serialize;
use std::sync::LazyLock;

/// Which mentions a counterfactual input swaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapKind {
    Gender,
    Age,
    Ethnicity,
}

impl SwapKind {
    pub const ALL: [SwapKind; 3] = [SwapKind::Gender, SwapKind::Age, SwapKind::Ethnicity];

    pub fn name(self) -> &'static str {
        match self {
            SwapKind::Gender => "gender",
            SwapKind::Age => "age",
            SwapKind::Ethnicity => "ethnicity",
        }
    }
}

/// Gendered words and their counterparts; `her` is decided by what follows it.
const GENDER_PAIRS: [(&str, &str); 22] = [
    ("he", "she"),
    ("him", "her"),
    ("his", "her"),
    ("himself", "herself"),
    ("man", "woman"),
    ("men", "women"),
    ("male", "female"),
    ("gentleman", "lady"),
    ("boy", "girl"),
    ("husband", "wife"),
    ("father", "mother"),
    ("son", "daughter"),
    ("brother", "sister"),
    ("mr", "ms"),
    ("mr", "mrs"),
    ("sir", "madam"),
    ("males", "females"),
    ("boyfriend", "girlfriend"),
    ("uncle", "aunt"),
    ("nephew", "niece"),
    ("grandfather", "grandmother"),
    ("fiance", "fiancee"),
];

/// Words after which `her` is an object (`him`), not a possessive (`his`).
const AFTER_OBJECT_HER: [&str; 22] = [
    "to", "for", "with", "and", "at", "in", "on", "that", "about", "from", "by", "up", "home",
    "out", "the", "a", "an", "this", "some", "any", "no", "if",
];

/// Stated ethnicities and the one a counterfactual input states instead.
const ETHNICITY_SWAPS: [(&str, &str); 8] = [
    ("White", "Black"),
    ("Black", "White"),
    ("Hispanic", "White"),
    ("Latino", "White"),
    ("Latina", "White"),
    ("Asian", "White"),
    ("Caucasian", "African American"),
    ("African American", "Caucasian"),
];

static WORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z]+").unwrap_or_else(|e| panic!("word regex: {e}")));
static AGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(\d{1,3})([- ]year[- ]old|[- ]yo\b|\s*y/o\b|\s+years\s+old)")
        .unwrap_or_else(|e| panic!("age regex: {e}"))
});
static ETHNICITY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b(White|Black|Hispanic|Latino|Latina|Asian|Caucasian|African American)(\s+)(man|woman|male|female|patient|gentleman|lady|boy|girl|person)\b",
    )
    .unwrap_or_else(|e| panic!("ethnicity regex: {e}"))
});

/// `to` with the capitalization of `like` (first letter, or all capitals).
fn same_case(like: &str, to: &str) -> String {
    if like.len() > 1 && like.chars().all(|c| c.is_ascii_uppercase()) {
        return to.to_ascii_uppercase();
    }
    let mut chars = to.chars();
    match (like.chars().next(), chars.next()) {
        (Some(f), Some(t)) if f.is_ascii_uppercase() => {
            t.to_ascii_uppercase().to_string() + chars.as_str()
        }
        _ => to.to_string(),
    }
}

fn swap_gender_word(word: &str, next: Option<&str>) -> Option<String> {
    let lower = word.to_ascii_lowercase();
    // Titles only as titles: "MS" may be multiple sclerosis.
    let title_case = word.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && word.chars().skip(1).all(|c| c.is_ascii_lowercase());
    if ["mr", "ms", "mrs"].contains(&lower.as_str()) && !title_case {
        return None;
    }
    if lower == "her" {
        let object =
            next.is_none_or(|n| AFTER_OBJECT_HER.contains(&n.trim().to_ascii_lowercase().as_str()));
        return Some(same_case(word, if object { "him" } else { "his" }));
    }
    GENDER_PAIRS
        .iter()
        .find_map(|(m, f)| match lower.as_str() {
            l if l == *m => Some(*f),
            l if l == *f => Some(*m),
            _ => None,
        })
        .map(|to| same_case(word, to))
}

fn swap_gender(text: &str) -> String {
    let words: Vec<regex::Match> = WORD.find_iter(text).collect();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (i, w) in words.iter().enumerate() {
        // The next word counts only when nothing but space stands between them.
        let next = words
            .get(i + 1)
            .filter(|n| text[w.end()..n.start()].trim().is_empty())
            .map(|n| n.as_str());
        out.push_str(&text[last..w.start()]);
        match swap_gender_word(w.as_str(), next) {
            Some(to) => out.push_str(&to),
            None => out.push_str(w.as_str()),
        }
        last = w.end();
    }
    out.push_str(&text[last..]);
    out
}

/// A stated age moved 40 years into another age group (adults under 50 older, others younger).
fn swap_age(text: &str) -> String {
    AGE.replace_all(text, |c: &Captures| {
        let age: u32 = c[1].parse().unwrap_or(0);
        let to = if age < 50 {
            age + 40
        } else {
            (age - 40).max(18)
        };
        format!("{to}{}", &c[2])
    })
    .into_owned()
}

fn swap_ethnicity(text: &str) -> String {
    ETHNICITY
        .replace_all(text, |c: &Captures| {
            let to = ETHNICITY_SWAPS
                .iter()
                .find(|(from, _)| *from == &c[1])
                .map_or(&c[1], |(_, to)| *to);
            format!("{to}{}{}", &c[2], &c[3])
        })
        .into_owned()
}

/// The input with mentions of `kind` swapped; `None` when it has none.
pub fn swap(input: &str, kind: SwapKind) -> Option<String> {
    let out = match kind {
        SwapKind::Gender => swap_gender(input),
        SwapKind::Age => swap_age(input),
        SwapKind::Ethnicity => swap_ethnicity(input),
    };
    (out != input).then_some(out)
}

/// How much one kind of swap moved the outputs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SwapEffect {
    pub kind: SwapKind,
    /// Records whose input had a mention of this kind (and were generated again).
    pub records: usize,
    /// Share of those whose output changed at all.
    pub changed: f64,
    /// Mean ROUGE-L F1 between the original and the counterfactual output (1: the same).
    pub output_similarity: f64,
    /// Mean of counterfactual − original metric, and of its absolute value.
    pub metric_shift: f64,
    pub metric_abs_shift: f64,
}

/// What the counterfactual test found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CounterfactualReport {
    pub metric: String,
    pub records: usize,
    pub effects: Vec<SwapEffect>,
    /// One example per kind: the record id, the swapped input's first changed line and both outputs.
    pub examples: Vec<CounterfactualExample>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CounterfactualExample {
    pub id: String,
    pub kind: SwapKind,
    pub original_output: String,
    pub counterfactual_output: String,
}

/// Generates one output per input with `model` (greedy under `params`); `None` when cancelled.
fn generate_outputs(
    model: &LoadedModel,
    task: Option<Task>,
    inputs: &[&str],
    params: &GenerationParams,
    cancelled: &dyn Fn() -> bool,
) -> Result<Option<Vec<String>>, JobError> {
    let prompts: Vec<Prompt> = inputs
        .iter()
        .map(|input| Prompt::Chat { task, input })
        .collect();
    let batch = pipeline::generate(model, &prompts, Run::new(params, cancelled))
        .map_err(|e| JobError::Model(e.to_string()))?;
    if cancelled() {
        return Ok(None);
    }
    Ok(Some(
        batch
            .outputs
            .into_iter()
            .map(|o| o.text.trim().to_string())
            .collect(),
    ))
}

fn metric_of(row: &PredictionRow, prediction: &str, metric: &str) -> Option<f64> {
    let score = score_example(&ExampleInput {
        prediction,
        reference: &row.reference,
        source: Some(&row.input),
        task: row.task.as_deref().and_then(Task::parse),
    });
    let value = serde_json::to_value(&score.metrics).ok()?;
    let (rows, _) = crate::project::predictions::parse_predictions(
        serde_json::json!({"id": "x", "input": "", "reference": "", "prediction": "", "metrics": value})
            .to_string()
            .as_bytes(),
    );
    rows.first()?.metric(metric)
}

/// The stage the test reports its records in.
pub const COUNTERFACTUAL: &str = "counterfactual test";

/// Runs the test over the first `limit` rows: each row's input as is and with each kind of
/// mention swapped, generated with `model`; progress in records after each, and a stop seen
/// within a record's generations.
pub fn run(
    model: &LoadedModel,
    rows: &[PredictionRow],
    metric: &str,
    limit: usize,
    params: &GenerationParams,
    job: &mut Job,
) -> Result<CounterfactualReport, JobError> {
    let rows = &rows[..rows.len().min(limit)];
    let mut shifts: Vec<Vec<(bool, f64, Option<f64>)>> = vec![Vec::new(); SwapKind::ALL.len()];
    let mut examples = Vec::new();
    for (done, row) in rows.iter().enumerate() {
        let swapped: Vec<(usize, String)> = SwapKind::ALL
            .iter()
            .enumerate()
            .filter_map(|(k, kind)| swap(&row.input, *kind).map(|s| (k, s)))
            .collect();
        let mut inputs: Vec<&str> = vec![&row.input];
        inputs.extend(swapped.iter().map(|(_, s)| s.as_str()));
        let task = row.task.as_deref().and_then(Task::parse);
        let stopping = || job.is_stopping();
        let Some(outputs) = generate_outputs(model, task, &inputs, params, &stopping)? else {
            return Err(JobError::Cancelled {
                done,
                total: rows.len(),
            });
        };
        let original = &outputs[0];
        let base = metric_of(row, original, metric);
        for ((k, _), out) in swapped.iter().zip(&outputs[1..]) {
            let moved = match (base, metric_of(row, out, metric)) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            };
            let similarity = rouge::rouge(original, out).rouge_l.fmeasure;
            shifts[*k].push((out != original, similarity, moved));
            if !examples
                .iter()
                .any(|e: &CounterfactualExample| e.kind == SwapKind::ALL[*k])
                && out != original
            {
                examples.push(CounterfactualExample {
                    id: row.id.clone(),
                    kind: SwapKind::ALL[*k],
                    original_output: original.clone(),
                    counterfactual_output: out.clone(),
                });
            }
        }
        job.progress(COUNTERFACTUAL, done as u64 + 1, rows.len() as u64);
    }
    let effects = SwapKind::ALL
        .iter()
        .zip(&shifts)
        .filter(|(_, s)| !s.is_empty())
        .map(|(kind, s)| effect(*kind, s))
        .collect();
    Ok(CounterfactualReport {
        metric: metric.to_string(),
        records: rows.len(),
        effects,
        examples,
    })
}

fn effect(kind: SwapKind, s: &[(bool, f64, Option<f64>)]) -> SwapEffect {
    let n = s.len() as f64;
    let moved: Vec<f64> = s.iter().filter_map(|x| x.2).collect();
    let m = moved.len().max(1) as f64;
    SwapEffect {
        kind,
        records: s.len(),
        changed: s.iter().filter(|x| x.0).count() as f64 / n,
        output_similarity: s.iter().map(|x| x.1).sum::<f64>() / n,
        metric_shift: moved.iter().sum::<f64>() / m,
        metric_abs_shift: moved.iter().map(|x| x.abs()).sum::<f64>() / m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gender_mentions_swap_both_ways_keeping_case() {
        let text = "This is a 72-year-old man. He says his wife drove him here. Mr. Lee saw her brother and gave her the pills.";
        let out = swap(text, SwapKind::Gender).expect("swapped");
        assert_eq!(
            out,
            "This is a 72-year-old woman. She says her husband drove her here. Ms. Lee saw his sister and gave him the pills."
        );
        assert_eq!(swap("No mention here.", SwapKind::Gender), None);
        assert_eq!(swap("SHE", SwapKind::Gender).as_deref(), Some("HE"));
    }

    #[test]
    fn ages_move_to_another_group_and_ethnicity_changes_only_before_a_person() {
        assert_eq!(
            swap(
                "An 84-year-old woman and a 30 year old son, 16 yo.",
                SwapKind::Age
            )
            .as_deref(),
            Some("An 44-year-old woman and a 70 year old son, 56 yo.")
        );
        assert_eq!(
            swap("A Hispanic woman with black stools.", SwapKind::Ethnicity).as_deref(),
            Some("A White woman with black stools.")
        );
        assert_eq!(swap("Black stools, no melena.", SwapKind::Ethnicity), None);
    }
}
