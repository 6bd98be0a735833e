//! Reading `predictions.jsonl` (one evaluated record a line: source, reference, model output,
//! demographics and per-example metrics) and finding the prediction sets a project has: the
//! base model's and each run's. Lenient: extra fields are ignored, a bad line is reported with
//! its line and field and the others are kept; metrics are read generically as JSON numbers.

use serde_json::{Map, Value};
use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub const PREDICTIONS_FILE: &str = "predictions.jsonl";
/// The folder (beside `runs/`) holding the base model's evaluation.
pub const BASE_DIR: &str = "base";
/// The name of the base model's prediction set.
pub const BASE: &str = "base";
const RUNS_DIR: &str = "runs";

/// A medication named in a text; `start..end` are byte offsets into that text.
#[derive(Debug, Clone, PartialEq)]
pub struct Mention {
    pub name: String,
    pub generic: String,
    pub start: usize,
    pub end: usize,
}

/// A dose, unit, route or frequency of the output that differs from the source's.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub generic: String,
    pub field: String,
    pub source: String,
    pub output: String,
    /// Byte offsets into the prediction.
    pub start: usize,
    pub end: usize,
}

/// Medication faithfulness of one output against its source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meds {
    /// In the output but not supported by the source (offsets into the prediction).
    pub hallucinated: Vec<Mention>,
    /// In the source but left out of the output (offsets into the source).
    pub omitted: Vec<Mention>,
    pub mismatched: Vec<Mismatch>,
}

/// A safety problem of an output, in one readable sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct SafetyFlag {
    pub kind: String,
    pub message: String,
    /// Byte offsets into the prediction, when the problem sits at a place in it.
    pub span: Option<(usize, usize)>,
}

/// One evaluated record.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionRow {
    pub id: String,
    pub input: String,
    pub reference: String,
    pub prediction: String,
    pub task: Option<String>,
    pub gender: Option<String>,
    pub age: Option<u32>,
    pub ethnicity: Option<String>,
    /// The output stopped at the new-token limit or the model's context, not where the model
    /// ended it (`output_cut: true`).
    pub output_cut: bool,
    /// Every number found under `metrics`, named by its path (`rouge1.fmeasure`, `bleu`), plus
    /// the counts `meds.hallucinated`, `meds.omitted`, `meds.mismatched` and `safety`;
    /// sorted by name. A metric written as null is absent.
    pub metrics: Vec<(String, f64)>,
    pub meds: Option<Meds>,
    pub safety: Vec<SafetyFlag>,
}

impl PredictionRow {
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.metrics[i].1)
    }

    pub fn age_group(&self) -> Option<crate::data::record::AgeGroup> {
        self.age.map(crate::data::record::AgeGroup::of)
    }
}

/// `start..end` when it lies inside `text` on character boundaries.
pub fn span_in(text: &str, start: usize, end: usize) -> Option<Range<usize>> {
    (start <= end && text.is_char_boundary(start) && text.is_char_boundary(end))
        .then_some(start..end)
}

/// Whether a larger value of metric `name` is the worse one (reading grade, error counts).
pub fn higher_is_worse(name: &str) -> bool {
    ["fkgl", "smog", "meds.", "safety", "perplexity", "loss"]
        .iter()
        .any(|w| name.contains(w))
}

/// A line of the file that was skipped or a field of it that was ignored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}{}: {message}", field.as_deref().map(|f| format!(", field {f:?}")).unwrap_or_default())]
pub struct LineIssue {
    pub line: usize,
    pub field: Option<String>,
    pub message: String,
    /// The whole line was left out (else only the field).
    pub skipped: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct PredictionsError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Where a prediction set lives and what it is called (`base` or the run's id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictionSource {
    pub name: String,
    pub path: PathBuf,
}

/// When a file was last written, to tell whether what was read from it is stale.
pub fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The set to show: `current` while the project still has it, else the newest one.
pub fn keep_or_newest(sources: &[PredictionSource], current: Option<&str>) -> Option<String> {
    match current {
        Some(name) if sources.iter().any(|s| s.name == name) => Some(name.to_string()),
        _ => sources.last().map(|s| s.name.clone()),
    }
}

/// A read prediction file.
#[derive(Debug, Clone)]
pub struct PredictionSet {
    pub source: PredictionSource,
    pub rows: Vec<PredictionRow>,
    pub issues: Vec<LineIssue>,
}

impl PredictionSet {
    pub fn read(source: PredictionSource) -> Result<PredictionSet, PredictionsError> {
        let bytes = std::fs::read(&source.path).map_err(|e| PredictionsError {
            path: source.path.clone(),
            source: e,
        })?;
        let (rows, issues) = parse_predictions(&bytes);
        Ok(PredictionSet {
            source,
            rows,
            issues,
        })
    }

    /// Metric names found in any row, sorted.
    pub fn metric_names(&self) -> Vec<String> {
        self.rows
            .iter()
            .flat_map(|r| r.metrics.iter().map(|(n, _)| n.clone()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

/// The prediction sets of the project in `project_dir`: the base model's first, then each
/// run's that has a `predictions.jsonl`, oldest run first.
pub fn prediction_sources(project_dir: &Path) -> Vec<PredictionSource> {
    let mut found = Vec::new();
    let base = project_dir.join(BASE_DIR).join(PREDICTIONS_FILE);
    if base.is_file() {
        found.push(PredictionSource {
            name: BASE.into(),
            path: base,
        });
    }
    let mut runs: Vec<PredictionSource> = std::fs::read_dir(project_dir.join(RUNS_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| PredictionSource {
            name: e.file_name().to_string_lossy().into_owned(),
            path: e.path().join(PREDICTIONS_FILE),
        })
        .filter(|s| s.path.is_file())
        .collect();
    runs.sort_by(|a, b| a.name.cmp(&b.name));
    found.extend(runs);
    found
}

/// The folder of run `run` of a project (where its reviews are kept).
pub fn run_dir(project_dir: &Path, run: &str) -> PathBuf {
    project_dir.join(RUNS_DIR).join(run)
}

/// The rows of a predictions file and the problems of its bad lines.
pub fn parse_predictions(bytes: &[u8]) -> (Vec<PredictionRow>, Vec<LineIssue>) {
    let mut rows = Vec::new();
    let mut issues = Vec::new();
    let mut ids = HashSet::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let skip = |field: Option<&str>, message: String| LineIssue {
            line,
            field: field.map(String::from),
            message,
            skipped: true,
        };
        let Ok(text) = std::str::from_utf8(raw) else {
            issues.push(skip(None, "not valid UTF-8".into()));
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                issues.push(skip(None, format!("not a JSON object: {e}")));
                continue;
            }
        };
        let Value::Object(obj) = value else {
            issues.push(skip(None, "not a JSON object".into()));
            continue;
        };
        match parse_row(&obj, line, &mut issues) {
            Ok(row) if !ids.insert(row.id.clone()) => issues.push(skip(
                Some("id"),
                format!("duplicate id {:?}: the earlier line is kept", row.id),
            )),
            Ok(row) => rows.push(row),
            Err((field, message)) => issues.push(skip(Some(field), message)),
        }
    }
    (rows, issues)
}

/// The first of `names` present in `obj` as a string.
fn text_field(
    obj: &Map<String, Value>,
    names: &[&'static str],
) -> Result<String, (&'static str, String)> {
    for name in names {
        match obj.get(*name) {
            Some(Value::String(s)) => return Ok(s.clone()),
            Some(Value::Number(n)) if *name == "id" => return Ok(n.to_string()),
            Some(Value::Null) | None => continue,
            Some(other) => return Err((name, format!("expected text, found {other}"))),
        }
    }
    let also = if names.len() > 1 {
        format!(" (or {})", names[1..].join(", "))
    } else {
        String::new()
    };
    Err((names[0], format!("missing{also}")))
}

fn parse_row(
    obj: &Map<String, Value>,
    line: usize,
    issues: &mut Vec<LineIssue>,
) -> Result<PredictionRow, (&'static str, String)> {
    let id = text_field(obj, &["id"])?;
    let input = text_field(obj, &["input", "source"])?;
    let reference = text_field(obj, &["reference", "target"])?;
    let prediction = text_field(obj, &["prediction", "output"])?;
    let mut note = |field: &str, message: String| {
        issues.push(LineIssue {
            line,
            field: Some(field.into()),
            message,
            skipped: false,
        })
    };
    let mut optional_text = |field: &str| match obj.get(field) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(other) => {
            note(
                field,
                format!("expected text or null, found {other}; ignored"),
            );
            None
        }
    };
    let task = optional_text("task");
    let gender = optional_text("gender");
    let ethnicity = optional_text("ethnicity");
    let age = match obj.get("age") {
        Some(Value::Number(n)) => match n.as_f64() {
            Some(a) if (0.0..=150.0).contains(&a) => Some(a.round() as u32),
            _ => {
                note("age", format!("{n} is not an age; ignored"));
                None
            }
        },
        Some(Value::Null) | None => None,
        Some(other) => {
            note("age", format!("expected a number, found {other}; ignored"));
            None
        }
    };
    let output_cut = match obj.get("output_cut") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Null) | None => false,
        Some(other) => {
            note(
                "output_cut",
                format!("expected true or false, found {other}; ignored"),
            );
            false
        }
    };
    let mut row = PredictionRow {
        id,
        input,
        reference,
        prediction,
        task,
        gender,
        age,
        ethnicity,
        output_cut,
        metrics: Vec::new(),
        meds: None,
        safety: Vec::new(),
    };
    match obj.get("metrics") {
        Some(Value::Object(m)) => read_metrics(&mut row, m, &mut note),
        Some(Value::Null) | None => {}
        Some(other) => note(
            "metrics",
            format!("expected an object, found {other}; ignored"),
        ),
    }
    Ok(row)
}

/// Fills the row's metrics, medication findings and safety flags from the `metrics` object.
fn read_metrics(
    row: &mut PredictionRow,
    metrics: &Map<String, Value>,
    note: &mut impl FnMut(&str, String),
) {
    let mut numbers = Vec::new();
    for (key, value) in metrics {
        match key.as_str() {
            "meds" => {
                let meds = read_meds(value, note);
                numbers.push(("meds.hallucinated".into(), meds.hallucinated.len() as f64));
                numbers.push(("meds.omitted".into(), meds.omitted.len() as f64));
                numbers.push(("meds.mismatched".into(), meds.mismatched.len() as f64));
                row.meds = Some(meds);
            }
            "safety" => {
                row.safety = list(value, "metrics.safety", note)
                    .iter()
                    .filter_map(|f| read_flag(f).map_err(|e| note("metrics.safety", e)).ok())
                    .collect();
                numbers.push(("safety".into(), row.safety.len() as f64));
            }
            _ => flatten(key, value, &mut numbers),
        }
    }
    numbers.sort_by(|a, b| a.0.cmp(&b.0));
    row.metrics = numbers;
}

/// Every number under `value`, named by its dotted path; `true`/`false` count as 1/0.
fn flatten(path: &str, value: &Value, out: &mut Vec<(String, f64)>) {
    match value {
        Value::Number(n) => {
            if let Some(x) = n.as_f64().filter(|x| x.is_finite()) {
                out.push((path.to_string(), x));
            }
        }
        Value::Bool(b) => out.push((path.to_string(), f64::from(u8::from(*b)))),
        Value::Object(m) => {
            for (k, v) in m {
                flatten(&format!("{path}.{k}"), v, out);
            }
        }
        _ => {}
    }
}

fn list<'v>(value: &'v Value, field: &str, note: &mut impl FnMut(&str, String)) -> &'v [Value] {
    match value {
        Value::Array(items) => items,
        Value::Null => &[],
        other => {
            note(field, format!("expected a list, found {other}; ignored"));
            &[]
        }
    }
}

fn read_meds(value: &Value, note: &mut impl FnMut(&str, String)) -> Meds {
    let empty = Map::new();
    let obj = match value {
        Value::Object(m) => m,
        other => {
            note(
                "metrics.meds",
                format!("expected an object, found {other}; ignored"),
            );
            &empty
        }
    };
    let mut read_list = |name: &str| -> Vec<&Value> {
        let field = format!("metrics.meds.{name}");
        obj.get(name)
            .map(|v| list(v, &field, note).iter().collect())
            .unwrap_or_default()
    };
    let hallucinated = read_list("hallucinated");
    let omitted = read_list("omitted");
    let mismatched = read_list("mismatched");
    Meds {
        hallucinated: kept(
            hallucinated,
            "metrics.meds.hallucinated",
            read_mention,
            note,
        ),
        omitted: kept(omitted, "metrics.meds.omitted", read_mention, note),
        mismatched: kept(mismatched, "metrics.meds.mismatched", read_mismatch, note),
    }
}

/// The items `read` accepts; the others are noted under `field`.
fn kept<T>(
    items: Vec<&Value>,
    field: &str,
    read: fn(&Value) -> Result<T, String>,
    note: &mut impl FnMut(&str, String),
) -> Vec<T> {
    items
        .into_iter()
        .filter_map(|v| read(v).map_err(|e| note(field, e)).ok())
        .collect()
}

fn string_of(v: &Value, key: &str) -> Result<String, String> {
    match v.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Null) | None => Ok(String::new()),
        Some(other) => Err(format!("{key}: expected text, found {other}")),
    }
}

fn offset_of(v: &Value, key: &str) -> Result<usize, String> {
    v.get(key)
        .and_then(Value::as_u64)
        .map(|x| x as usize)
        .ok_or_else(|| format!("{key}: expected a byte offset in {v}"))
}

fn read_mention(v: &Value) -> Result<Mention, String> {
    Ok(Mention {
        name: string_of(v, "name")?,
        generic: string_of(v, "generic")?,
        start: offset_of(v, "start")?,
        end: offset_of(v, "end")?,
    })
}

fn read_mismatch(v: &Value) -> Result<Mismatch, String> {
    Ok(Mismatch {
        generic: string_of(v, "generic")?,
        field: string_of(v, "field")?,
        source: string_of(v, "source")?,
        output: string_of(v, "output")?,
        start: offset_of(v, "start")?,
        end: offset_of(v, "end")?,
    })
}

fn read_flag(v: &Value) -> Result<SafetyFlag, String> {
    let span = match (v.get("start"), v.get("end")) {
        (Some(Value::Null) | None, _) | (_, Some(Value::Null) | None) => None,
        _ => Some((offset_of(v, "start")?, offset_of(v, "end")?)),
    };
    Ok(SafetyFlag {
        kind: string_of(v, "kind")?,
        message: string_of(v, "message")?,
        span,
    })
}

#[cfg(test)]
pub(crate) mod tests;
