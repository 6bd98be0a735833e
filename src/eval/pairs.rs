//! Reads a JSONL file of `{"id", "prediction", "reference", "source"?, "task"?}` for `lablens
//! metrics`. Other common names are accepted: `output`, `generated`, `generation`, `hypothesis`
//! for the prediction; `target`, `summary`, `gold` for the reference; `input`, `text` for the
//! source. A bad line (not UTF-8, not JSON, a field missing or not a string) is reported with
//! file, line and field and left out; the rest is kept.

use crate::data::load::{DEFAULT_MAX_FILE_BYTES, LoadError, LoadIssue, read_bounded};
use crate::data::record::Task;
use serde_json::{Map, Value};
use std::path::Path;

pub const PREDICTION_NAMES: &[&str] = &[
    "prediction",
    "output",
    "generated",
    "generation",
    "hypothesis",
];
pub const REFERENCE_NAMES: &[&str] = &["reference", "target", "summary", "gold"];
pub const SOURCE_NAMES: &[&str] = &["source", "input", "text"];

/// One scorable line.
#[derive(Debug, Clone, PartialEq)]
pub struct PairRow {
    pub id: String,
    pub line: usize,
    pub prediction: String,
    pub reference: String,
    pub source: Option<String>,
    pub task: Option<Task>,
}

/// The rows of a file and the problems of the lines left out (or scored with a warning).
#[derive(Debug, Default)]
pub struct PairsFile {
    pub rows: Vec<PairRow>,
    pub issues: Vec<LoadIssue>,
}

/// The first of `names` present in `obj`: its name and value.
fn field<'a>(
    obj: &'a Map<String, Value>,
    names: &[&'static str],
) -> Option<(&'static str, &'a Value)> {
    names.iter().find_map(|n| obj.get(*n).map(|v| (*n, v)))
}

/// Reads `path`; fails only when the file cannot be read.
pub fn read_pairs(path: &Path) -> Result<PairsFile, LoadError> {
    let bytes = read_bounded(path, DEFAULT_MAX_FILE_BYTES)?;
    let mut out = PairsFile::default();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let issue = |field: Option<&str>, message: String| LoadIssue {
            file: path.to_path_buf(),
            line,
            field: field.map(String::from),
            message,
        };
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t.trim(),
            Err(e) => {
                out.issues.push(issue(
                    None,
                    format!(
                        "not valid UTF-8 (byte {}); line skipped",
                        e.valid_up_to() + 1
                    ),
                ));
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        match parse_row(text, line) {
            Ok((row, warning)) => {
                if let Some((f, m)) = warning {
                    out.issues.push(issue(Some(f), m));
                }
                out.rows.push(row);
            }
            Err((f, m)) => out.issues.push(issue(f, m)),
        }
    }
    Ok(out)
}

type RowProblem = (Option<&'static str>, String);
/// A field name and a problem that still lets the line be scored.
type Warning = (&'static str, String);

/// One line as a row, with a warning that does not stop it from being scored.
fn parse_row(text: &str, line: usize) -> Result<(PairRow, Option<Warning>), RowProblem> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| (None, format!("not JSON: {e}; line skipped")))?;
    let Value::Object(obj) = value else {
        return Err((None, "not a JSON object; line skipped".to_string()));
    };
    let string = |names: &[&'static str]| -> Result<Option<(&'static str, String)>, RowProblem> {
        match field(&obj, names) {
            None | Some((_, Value::Null)) => Ok(None),
            Some((n, Value::String(s))) => Ok(Some((n, s.clone()))),
            Some((n, other)) => Err((
                Some(n),
                format!("must be a string, found {other}; line skipped"),
            )),
        }
    };
    let missing = |names: &[&'static str]| {
        let found: Vec<&str> = obj.keys().map(String::as_str).collect();
        (
            Some(names[0]),
            format!(
                "missing (accepted names: {}; the line has: {}); line skipped",
                names.join(", "),
                found.join(", ")
            ),
        )
    };
    let (pred_name, prediction) =
        string(PREDICTION_NAMES)?.ok_or_else(|| missing(PREDICTION_NAMES))?;
    let (_, reference) = string(REFERENCE_NAMES)?.ok_or_else(|| missing(REFERENCE_NAMES))?;
    let source = string(SOURCE_NAMES)?.map(|(_, s)| s);
    let id = match obj.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => format!("line-{line}"),
    };
    let task = match obj.get("task") {
        Some(Value::String(t)) => Some(
            Task::parse(t)
                .ok_or_else(|| (Some("task"), format!("unknown task {t:?}; line skipped")))?,
        ),
        _ => None,
    };
    let warning = prediction
        .trim()
        .is_empty()
        .then(|| (pred_name, "is empty; scored as an empty output".to_string()));
    Ok((
        PairRow {
            id,
            line,
            prediction,
            reference,
            source,
            task,
        },
        warning,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_reported_and_the_rest_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.jsonl");
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"{\"id\":\"a\",\"prediction\":\"x\",\"reference\":\"y\"}\n");
        bytes.extend_from_slice(
            b"{\"id\":\"b\",\"output\":\"x\",\"target\":\"y\",\"input\":\"s\"}\n",
        );
        bytes.extend_from_slice(b"{\"id\":\"c\",\"hyp\":\"x\",\"ref\":\"y\"}\n");
        bytes.extend_from_slice(b"{\"id\":\"d\",\"prediction\":\"\xff\",\"reference\":\"y\"}\n");
        bytes.extend_from_slice(b"{\"id\":\"e\",\"prediction\":\"\",\"reference\":\"y\"}\n");
        bytes.extend_from_slice(b"{\"id\":\"f\",\"prediction\":\"x\"}\n\n");
        std::fs::write(&path, bytes).expect("write");
        let f = read_pairs(&path).expect("read");
        let ids: Vec<&str> = f.rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "e"]);
        assert_eq!(f.rows[1].source.as_deref(), Some("s"));
        let issues: Vec<String> = f.issues.iter().map(|i| i.to_string()).collect();
        assert_eq!(issues.len(), 4, "{issues:?}");
        assert!(
            issues[0].contains(":3: field \"prediction\": missing")
                && issues[0].contains("hyp, id, ref")
        );
        assert!(issues[1].contains(":4: not valid UTF-8"));
        assert!(issues[2].contains(":5: field \"prediction\": is empty"));
        assert!(issues[3].contains(":6: field \"reference\": missing"));
    }
}
