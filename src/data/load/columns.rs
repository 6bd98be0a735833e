//! Maps one object's columns onto a `Record`: the names clinical NLP datasets use for each role,
//! multiple-choice options rendered into the input and answer, and gender and age normalised.

use super::{Context, LoadIssue, MISSING_FIELD};
use crate::data::record::{Record, Task};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[cfg(test)]
mod tests;

/// The role a column plays in a `Record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Id,
    Patient,
    Input,
    Instruction,
    Question,
    Dialogue,
    Note,
    Target,
    Answer,
    Options,
    Gender,
    Age,
    Ethnicity,
    Task,
    Meta,
}

const COLUMN_COUNT: usize = Column::Meta as usize + 1;

/// Recognised column names, compared without case; when a file has several names for one role,
/// the one listed first here wins and the others go to `meta`.
const COLUMN_NAMES: &[(&str, Column)] = &[
    ("id", Column::Id),
    ("record_id", Column::Id),
    ("note_id", Column::Id),
    ("row_id", Column::Id),
    ("hadm_id", Column::Id),
    ("patient_id", Column::Patient),
    ("subject_id", Column::Patient),
    ("patient", Column::Patient),
    ("input", Column::Input),
    ("text", Column::Input),
    ("source", Column::Input),
    ("document", Column::Input),
    ("instruction", Column::Instruction),
    ("question", Column::Question),
    ("dialogue", Column::Dialogue),
    ("note", Column::Note),
    ("target", Column::Target),
    ("summary", Column::Target),
    ("output", Column::Target),
    ("reference", Column::Target),
    ("simplified", Column::Target),
    ("answer", Column::Answer),
    ("options", Column::Options),
    ("gender", Column::Gender),
    ("sex", Column::Gender),
    ("age", Column::Age),
    ("anchor_age", Column::Age),
    ("ethnicity", Column::Ethnicity),
    ("race", Column::Ethnicity),
    ("task", Column::Task),
    ("meta", Column::Meta),
];

/// One object's fields with the column each role was found in.
struct Row {
    fields: Vec<(String, Value)>,
    used: Vec<bool>,
    /// For each role: (rank in `COLUMN_NAMES`, index in `fields`).
    slots: [Option<(usize, usize)>; COLUMN_COUNT],
}

/// A text field: the column name it came from and its text.
type Text = (String, String);

impl Row {
    fn new(fields: Vec<(String, Value)>) -> Row {
        let mut slots = [None; COLUMN_COUNT];
        for (index, (key, _)) in fields.iter().enumerate() {
            let known = COLUMN_NAMES
                .iter()
                .position(|(name, _)| name.eq_ignore_ascii_case(key));
            if let Some(rank) = known {
                let slot: &mut Option<(usize, usize)> = &mut slots[COLUMN_NAMES[rank].1 as usize];
                if slot.is_none_or(|(best, _)| rank < best) {
                    *slot = Some((rank, index));
                }
            }
        }
        let used = vec![false; fields.len()];
        Row {
            fields,
            used,
            slots,
        }
    }

    fn has(&self, column: Column) -> bool {
        self.slots[column as usize].is_some()
    }

    /// Takes a role's value out of the row; nulls count as absent.
    fn take(&mut self, column: Column) -> Option<(String, Value)> {
        let (_, index) = self.slots[column as usize]?;
        if self.used[index] {
            return None;
        }
        self.used[index] = true;
        let (key, value) = &mut self.fields[index];
        (!value.is_null()).then(|| (key.clone(), std::mem::take(value)))
    }

    /// Takes a role's value as text; numbers and booleans are written out, anything else is an issue.
    fn take_text(&mut self, column: Column, issues: &mut FieldIssues) -> Option<Text> {
        let (key, value) = self.take(column)?;
        match value {
            Value::String(text) => Some((key, text)),
            Value::Number(n) => Some((key, n.to_string())),
            Value::Bool(b) => Some((key, b.to_string())),
            other => {
                issues.push(&key, format!("expected text, got {}", json_kind(&other)));
                None
            }
        }
    }

    /// Every column no role took, for `meta`; a `meta` object is merged rather than nested.
    fn into_meta(mut self) -> BTreeMap<String, Value> {
        let mut meta = BTreeMap::new();
        if let Some((key, value)) = self.take(Column::Meta) {
            match value {
                Value::Object(map) => meta.extend(map),
                Value::String(text) => match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(map)) => meta.extend(map),
                    _ => {
                        meta.insert(key, Value::String(text));
                    }
                },
                other => {
                    meta.insert(key, other);
                }
            }
        }
        let unused = self
            .fields
            .into_iter()
            .zip(self.used)
            .filter(|(_, used)| !used);
        for ((key, value), _) in unused {
            if !value.is_null() {
                meta.insert(key, value);
            }
        }
        meta
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Issues found in one record, all on the record's line.
struct FieldIssues<'a> {
    ctx: &'a Context<'a>,
    line: usize,
    issues: &'a mut Vec<LoadIssue>,
}

impl FieldIssues<'_> {
    fn push(&mut self, field: &str, message: String) {
        self.issues
            .push(self.ctx.issue(self.line, Some(field), message));
    }
}

/// Maps one object's fields onto a `Record`; `None` (with an issue) when the record is unusable.
pub(super) fn build_record(
    mut fields: Vec<(String, Value)>,
    line: usize,
    ctx: &Context,
    issues: &mut Vec<LoadIssue>,
) -> Option<Record> {
    let mut issues = FieldIssues { ctx, line, issues };
    drop_repeated_keys(&mut fields, &mut issues);
    if has_oversized_field(&fields, ctx.opts.max_field_bytes, &mut issues) {
        return None;
    }
    let mut row = Row::new(fields);
    let inferred = inferred_task(&row);
    let (input, options) = take_input(&mut row, &mut issues);
    let target = take_target(&mut row, &options, &mut issues);
    let (Some(input), Some(target)) = (input, target) else {
        return None;
    };
    let task = take_task(&mut row, &mut issues)
        .or(ctx.opts.default_task)
        .unwrap_or(inferred);
    let id = row
        .take_text(Column::Id, &mut issues)
        .map(|(_, id)| id.trim().to_string())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| format!("{}-{line}", ctx.stem));
    let trimmed = |text: Option<Text>| {
        text.map(|(_, t)| t.trim().to_string())
            .filter(|t| !t.is_empty())
    };
    Some(Record {
        id,
        patient_id: trimmed(row.take_text(Column::Patient, &mut issues)),
        task,
        input,
        target,
        gender: trimmed(row.take_text(Column::Gender, &mut issues)).map(normalise_gender),
        age: take_age(&mut row, &mut issues),
        ethnicity: trimmed(row.take_text(Column::Ethnicity, &mut issues)),
        meta: row.into_meta(),
    })
}

/// Reports the first text field longer than `limit` bytes, which makes the record be skipped.
fn has_oversized_field(fields: &[(String, Value)], limit: usize, issues: &mut FieldIssues) -> bool {
    let oversized = fields.iter().find_map(|(key, value)| {
        let len = value.as_str().map_or(0, str::len);
        (len > limit).then_some((key, len))
    });
    if let Some((key, len)) = oversized {
        issues.push(
            key,
            format!(
                "is {len} bytes, over the limit of {limit} (--max-field-mb, or read_limits in \
                 project.ron); the record was skipped"
            ),
        );
    }
    oversized.is_some()
}

/// The task a record's columns suggest, for records that name none and files loaded without one.
fn inferred_task(row: &Row) -> Task {
    if row.has(Column::Options) || row.has(Column::Answer) {
        Task::Qa
    } else if row.has(Column::Dialogue) {
        Task::Soap
    } else {
        Task::Discharge
    }
}

/// Keeps the last of repeated keys, as Python's `json` does, and says so.
fn drop_repeated_keys(fields: &mut Vec<(String, Value)>, issues: &mut FieldIssues) {
    let repeated = |i: usize| {
        fields[i + 1..]
            .iter()
            .any(|(later, _)| *later == fields[i].0)
    };
    if !(0..fields.len()).any(repeated) {
        return;
    }
    let mut flags = (0..fields.len())
        .map(repeated)
        .collect::<Vec<_>>()
        .into_iter();
    fields.retain(|(key, _)| {
        let drop = flags.next().unwrap_or(false);
        if drop {
            issues.push(
                key,
                "appears more than once; the last value is used".to_string(),
            );
        }
        !drop
    });
}

/// The source text: an instruction or question (followed by `input` when both exist), else the
/// first text-like column, with multiple-choice options appended.
fn take_input(row: &mut Row, issues: &mut FieldIssues) -> (Option<String>, Vec<(String, String)>) {
    let before = issues.issues.len();
    let body = row.take_text(Column::Input, issues);
    let prefix = row
        .take_text(Column::Instruction, issues)
        .or_else(|| row.take_text(Column::Question, issues));
    let mut input = match (prefix, body) {
        (Some((_, prefix)), Some((_, body))) if !body.trim().is_empty() => {
            Some(format!("{prefix}\n\n{body}"))
        }
        (Some((_, text)), _) | (None, Some((_, text))) => Some(text),
        (None, None) => row
            .take_text(Column::Dialogue, issues)
            .or_else(|| row.take_text(Column::Note, issues))
            .map(|(_, text)| text),
    };
    if input.is_none() && issues.issues.len() == before {
        issues.push("input", MISSING_FIELD.to_string());
    }
    let options = match row.take(Column::Options) {
        Some((key, value)) => parse_options(&key, value, issues),
        None => Vec::new(),
    };
    if let Some(text) = input.as_mut() {
        for (letter, option) in &options {
            if letter.is_empty() {
                let _ = write!(text, "\n{option}");
            } else {
                let _ = write!(text, "\n{letter}. {option}");
            }
        }
    }
    (input, options)
}

/// Options as (letter, text) pairs; an unlabelled string keeps an empty letter.
fn parse_options(key: &str, value: Value, issues: &mut FieldIssues) -> Vec<(String, String)> {
    let text_of = |v: Value| match v {
        Value::String(s) => s,
        other => other.to_string(),
    };
    match value {
        Value::Object(map) => map.into_iter().map(|(k, v)| (k, text_of(v))).collect(),
        Value::Array(items) if items.len() <= 26 => items
            .into_iter()
            .zip(b'A'..=b'Z')
            .map(|(v, letter)| (char::from(letter).to_string(), text_of(v)))
            .collect(),
        Value::String(text) => match serde_json::from_str::<Value>(text.trim()) {
            Ok(parsed @ (Value::Object(_) | Value::Array(_))) => parse_options(key, parsed, issues),
            _ => text.lines().map(split_option_line).collect(),
        },
        other => {
            let message = format!(
                "expected options as an object, array or text, got {}",
                json_kind(&other)
            );
            issues.push(key, message);
            Vec::new()
        }
    }
}

/// Splits `B. text`, `B) text` or `B: text`; other lines keep an empty letter.
fn split_option_line(line: &str) -> (String, String) {
    let mut chars = line.trim().chars();
    match (chars.next(), chars.next()) {
        (Some(letter), Some('.' | ')' | ':')) if letter.is_ascii_alphabetic() => {
            (letter.to_string(), chars.as_str().trim().to_string())
        }
        _ => (String::new(), line.trim().to_string()),
    }
}

/// The reference: a target-like column, else the SOAP `note`, else the QA answer written as
/// `Answer: X. text` when its letter is known.
fn take_target(
    row: &mut Row,
    options: &[(String, String)],
    issues: &mut FieldIssues,
) -> Option<String> {
    let before = issues.issues.len();
    if let Some((_, text)) = row
        .take_text(Column::Target, issues)
        .or_else(|| row.take_text(Column::Note, issues))
    {
        return Some(text);
    }
    if let Some((_, answer)) = row.take_text(Column::Answer, issues) {
        let answer = answer.trim();
        let chosen = options.iter().find(|(letter, text)| {
            (!letter.is_empty() && letter.eq_ignore_ascii_case(answer)) || text.trim() == answer
        });
        return Some(match chosen {
            Some((letter, text)) => format!("Answer: {letter}. {text}"),
            None if answer.len() == 1 && answer.chars().all(|c| c.is_ascii_alphabetic()) => {
                format!("Answer: {}.", answer.to_ascii_uppercase())
            }
            None => answer.to_string(),
        });
    }
    if issues.issues.len() == before {
        issues.push("target", MISSING_FIELD.to_string());
    }
    None
}

fn take_task(row: &mut Row, issues: &mut FieldIssues) -> Option<Task> {
    let (key, name) = row.take_text(Column::Task, issues)?;
    let task = Task::parse(&name);
    if task.is_none() {
        issues.push(
            &key,
            format!("unknown task {name:?}; expected discharge, soap or qa"),
        );
    }
    task
}

fn take_age(row: &mut Row, issues: &mut FieldIssues) -> Option<u32> {
    let (key, value) = row.take(Column::Age)?;
    let number = match &value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s.trim().is_empty() => return None,
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match number {
        Some(age) if age.is_finite() && (0.0..131.0).contains(&age) => Some(age.floor() as u32),
        _ => {
            let shown = match value {
                Value::String(s) => Value::String(s.trim().to_string()),
                other => other,
            };
            issues.push(&key, format!("expected a number 0-130, got {shown}"));
            None
        }
    }
}

fn normalise_gender(gender: String) -> String {
    match gender.to_ascii_lowercase().as_str() {
        "female" | "f" | "woman" => "F".to_string(),
        "male" | "m" | "man" => "M".to_string(),
        _ => gender,
    }
}
