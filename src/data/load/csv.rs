//! Reads CSV and TSV files with a header row into raw rows; quoted fields may span lines, and a
//! row with the wrong number of fields is reported with the lines it covers.

use super::json::RawRow;
use super::{Context, LoadIssue, Parsed};
use ::csv::{ByteRecord, ReaderBuilder};
use serde_json::Value;

/// Reads CSV or TSV with a header row; quoted fields may span lines.
pub(super) fn load_csv(body: &[u8], delimiter: u8, ctx: &Context) -> Parsed {
    let mut parsed = Parsed::default();
    let mut reader = ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut header = ByteRecord::new();
    match reader.read_byte_record(&mut header) {
        Ok(true) => {}
        Ok(false) => return parsed,
        Err(error) => {
            parsed
                .issues
                .push(ctx.issue(1, None, format!("unreadable header: {error}")));
            return parsed;
        }
    }
    let columns = csv_columns(&header, ctx, &mut parsed.issues);
    let mut row = ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut row) {
            Ok(true) => {}
            Ok(false) => break,
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line() as usize);
                let message = format!("unreadable CSV ({error}); the rest of the file was skipped");
                parsed.issues.push(ctx.issue(line, None, message));
                break;
            }
        }
        let line = row.position().map_or(0, |p| p.line() as usize);
        if row.len() != header.len() {
            let last_line = reader.position().line().saturating_sub(1) as usize;
            let message = format!(
                "has {} fields but the header has {} (lines {line}-{}; an unclosed quote causes this)",
                row.len(),
                header.len(),
                last_line.max(line)
            );
            parsed.issues.push(ctx.issue(line, None, message));
            continue;
        }
        if let Some(fields) = csv_fields(&row, &columns, line, ctx, &mut parsed.issues) {
            parsed.add(ctx, line, RawRow::Object(fields));
        }
    }
    parsed
}

/// The header's names, with `None` for a column that a later one of the same name replaces.
fn csv_columns(
    header: &ByteRecord,
    ctx: &Context,
    issues: &mut Vec<LoadIssue>,
) -> Vec<Option<String>> {
    let names: Vec<String> = header
        .iter()
        .map(|name| String::from_utf8_lossy(name).trim().to_string())
        .collect();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if names[i + 1..].contains(name) {
                let message = "appears more than once in the header; the last column is used";
                issues.push(ctx.issue(1, Some(name), message.to_string()));
                None
            } else {
                Some(name.clone())
            }
        })
        .collect()
}

fn csv_fields(
    row: &ByteRecord,
    columns: &[Option<String>],
    line: usize,
    ctx: &Context,
    issues: &mut Vec<LoadIssue>,
) -> Option<Vec<(String, Value)>> {
    let mut fields = Vec::with_capacity(columns.len());
    for (cell, column) in row.iter().zip(columns) {
        let Some(name) = column else { continue };
        match std::str::from_utf8(cell) {
            Ok("") => fields.push((name.clone(), Value::Null)),
            Ok(text) => fields.push((name.clone(), Value::String(text.to_string()))),
            Err(error) => {
                let message = format!("invalid UTF-8 at byte {}", error.valid_up_to() + 1);
                issues.push(ctx.issue(line, Some(name), message));
                return None;
            }
        }
    }
    Some(fields)
}

#[cfg(test)]
mod tests {
    use crate::data::load::test_support::{ids, issue_at, load};

    #[test]
    fn broken_csv_quoting_names_the_line() {
        let extra_field =
            "id,input,target\n1,first input,t1\n2,an input, with a comma,t2\n3,third input,t3\n";
        let ds = load("data.csv", extra_field);
        assert_eq!(ids(&ds), ["1", "3"]);
        assert!(
            issue_at(&ds, 3)
                .message
                .contains("has 4 fields but the header has 3")
        );

        let unclosed =
            "id,input,target\n1,first input,t1\n2,\"never closed,t2\n3,third,t3\n4,fourth,t4\n";
        let ds = load("data.csv", unclosed);
        assert_eq!(ids(&ds), ["1"]);
        let issue = issue_at(&ds, 3);
        assert!(issue.message.contains("lines 3-5"), "{issue}");
        assert!(issue.message.contains("unclosed quote"), "{issue}");
    }

    #[test]
    fn csv_with_quoted_newlines_matches_jsonl() {
        let csv = "id,patient_id,task,input,target,gender,age,ethnicity,ward\n\
                   r1,p1,discharge,\"Line one.\nLine \"\"two\"\".\",Plain words.,f,54,Black,3B\n\
                   r2,p2,discharge,Second input,Second target,m,30,White,\n";
        let jsonl = concat!(
            r#"{"id": "r1", "patient_id": "p1", "task": "discharge", "input": "Line one.\nLine \"two\".", "target": "Plain words.", "gender": "f", "age": 54, "ethnicity": "Black", "ward": "3B"}"#,
            "\n",
            r#"{"id": "r2", "patient_id": "p2", "task": "discharge", "input": "Second input", "target": "Second target", "gender": "m", "age": "30", "ethnicity": "White"}"#,
        );
        let from_csv = load("d.csv", csv);
        let from_jsonl = load("d.jsonl", jsonl);
        assert_eq!(from_csv.records, from_jsonl.records);
        assert_eq!(from_csv.records[0].gender.as_deref(), Some("F"));
        let bad = csv.replace("r2,p2,discharge,Second input", "r2,p2,discharge,");
        let ds = load("d.csv", &bad);
        assert_eq!(issue_at(&ds, 4).field.as_deref(), Some("input"));
    }
}
