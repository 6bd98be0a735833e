//! Parses JSON lines (split over threads by contiguous chunks) and JSON arrays of objects,
//! keeping the physical line each record starts on.

use super::{Context, LoadError, Parsed, map_in_parallel, worker_count};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// One JSON value before column mapping: an object's fields in file order, or what it was instead.
pub(super) enum RawRow {
    Object(Vec<(String, Value)>),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for RawRow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawRowVisitor)
    }
}

struct RawRowVisitor;

impl<'de> Visitor<'de> for RawRowVisitor {
    type Value = RawRow;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    // A Vec keeps repeated keys, which a map would silently merge.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawRow, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(12));
        while let Some(key) = map.next_key::<String>()? {
            fields.push((key, map.next_value::<Value>()?));
        }
        Ok(RawRow::Object(fields))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawRow, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RawRow::Other("an array"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<RawRow, E> {
        Ok(RawRow::Other("a string"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawRow, E> {
        Ok(RawRow::Other("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<RawRow, E> {
        Ok(RawRow::Other("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<RawRow, E> {
        Ok(RawRow::Other("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawRow, E> {
        Ok(RawRow::Other("a number"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawRow, E> {
        Ok(RawRow::Other("null"))
    }
}

pub(super) fn load_json(body: &[u8], ctx: &Context) -> Result<Parsed, LoadError> {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    if body.get(start) == Some(&b'[')
        && let Some(parsed) = load_json_array(body, start, ctx)
    {
        return Ok(parsed);
    }
    let parsed = load_json_lines(body, ctx);
    let single_document = parsed.records.is_empty()
        && parsed.issues.len() > 1
        && serde_json::from_slice::<IgnoredAny>(body).is_ok();
    if single_document {
        return Err(LoadError::NotADataset {
            path: ctx.file.to_path_buf(),
            reason: "it holds a single JSON document; expected one object per line or an array of objects"
                .to_string(),
        });
    }
    Ok(parsed)
}

/// Parses the file as one JSON array of records, element by element so each keeps its line.
/// Returns `None` when the file is JSON lines whose first line merely starts with `[`.
fn load_json_array(body: &[u8], start: usize, ctx: &Context) -> Option<Parsed> {
    let mut parsed = Parsed::default();
    let mut cursor = Cursor {
        body,
        pos: start + 1,
        line: 1,
    };
    cursor.line += body[..start].iter().filter(|&&b| b == b'\n').count();
    let first_line = cursor.line;
    cursor.skip_whitespace();
    let mut closed = body.get(cursor.pos) == Some(&b']');
    while !closed {
        let mut stream =
            serde_json::Deserializer::from_slice(&body[cursor.pos..]).into_iter::<RawRow>();
        let error = match stream.next() {
            Some(Ok(row)) => {
                parsed.add(ctx, cursor.line, row);
                cursor.advance_to(cursor.pos + stream.byte_offset());
                cursor.skip_whitespace();
                match body.get(cursor.pos) {
                    Some(b',') => {
                        cursor.advance_to(cursor.pos + 1);
                        cursor.skip_whitespace();
                        continue;
                    }
                    Some(b']') => {
                        closed = true;
                        continue;
                    }
                    _ => (
                        cursor.line,
                        "expected `,` or `]` after an element".to_string(),
                    ),
                }
            }
            Some(Err(error)) => (
                cursor.line + error.line().saturating_sub(1),
                error.to_string(),
            ),
            None => (cursor.line, "the array is not closed".to_string()),
        };
        if error.0 == first_line {
            return None;
        }
        let message = format!(
            "invalid JSON in the array ({}); the rest of the file could not be read",
            error.1
        );
        parsed.issues.push(ctx.issue(error.0, None, message));
        return Some(parsed);
    }
    let rest = &body[cursor.pos + 1..];
    rest.iter().all(u8::is_ascii_whitespace).then_some(parsed)
}

/// A position in a file that keeps count of the line it is on.
struct Cursor<'a> {
    body: &'a [u8],
    pos: usize,
    line: usize,
}

impl Cursor<'_> {
    fn advance_to(&mut self, pos: usize) {
        self.line += self.body[self.pos..pos]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.pos = pos;
    }

    fn skip_whitespace(&mut self) {
        let skipped = self.body[self.pos..]
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
        self.advance_to(self.pos + skipped);
    }
}

/// Parses one JSON object per line, on several threads over contiguous chunks of lines.
fn load_json_lines(body: &[u8], ctx: &Context) -> Parsed {
    let chunk_size = body.len().div_ceil(worker_count()).max(1);
    let mut chunks = Vec::new();
    let (mut from, mut first_line) = (0, 1);
    while from < body.len() {
        let target = (from + chunk_size).min(body.len());
        let to = body[target..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |p| target + p + 1);
        chunks.push((first_line, &body[from..to]));
        first_line += body[from..to].iter().filter(|&&b| b == b'\n').count();
        from = to;
    }
    let results = map_in_parallel(&chunks, |&(first_line, chunk)| {
        let mut parsed = Parsed::default();
        for (offset, line) in chunk.split(|&b| b == b'\n').enumerate() {
            parse_json_line(line, first_line + offset, ctx, &mut parsed);
        }
        parsed
    });
    let mut all = Parsed::default();
    for part in results {
        all.records.extend(part.records);
        all.lines.extend(part.lines);
        all.issues.extend(part.issues);
    }
    all
}

fn parse_json_line(line: &[u8], number: usize, ctx: &Context, parsed: &mut Parsed) {
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let text = match std::str::from_utf8(line) {
        Ok(text) => text,
        Err(error) => {
            let message = format!("invalid UTF-8 at byte {}", error.valid_up_to() + 1);
            parsed.issues.push(ctx.issue(number, None, message));
            return;
        }
    };
    match serde_json::from_str::<RawRow>(text) {
        Ok(row) => parsed.add(ctx, number, row),
        Err(error) => {
            let message = format!("invalid JSON: {error}");
            parsed.issues.push(ctx.issue(number, None, message));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::data::load::LoadOptions;
    use crate::data::load::test_support::{GOOD_A, GOOD_B, ids, issue_at, load, load_bytes};

    #[test]
    fn invalid_utf8_line_is_reported_and_the_others_kept() {
        let mut content = format!("{GOOD_A}\n").into_bytes();
        content.extend_from_slice(b"{\"id\": \"x\", \"input\": \"caf\xC3\", \"target\": \"t\"}\n");
        content.extend_from_slice(format!("{GOOD_B}\n").as_bytes());
        let ds = load_bytes("data.jsonl", &content, &LoadOptions::default());
        assert_eq!(ids(&ds), ["a", "b"]);
        assert_eq!(ds.issues.len(), 1);
        assert_eq!(ds.issues[0].line, 2);
        assert!(
            ds.issues[0].message.contains("invalid UTF-8"),
            "{}",
            ds.issues[0]
        );
        assert_eq!(ds.lines_read, 3);
    }

    #[test]
    fn json_values_that_are_not_objects_are_issues() {
        let content = format!("[1, 2]\n{GOOD_A}\n42\n\"just text\"\nnull\n{GOOD_B}\n{{\"id\": \n");
        let ds = load("data.jsonl", &content);
        assert_eq!(ids(&ds), ["a", "b"]);
        let messages: Vec<(usize, &str)> = ds
            .issues
            .iter()
            .map(|i| (i.line, i.message.as_str()))
            .collect();
        assert_eq!(
            messages[..4],
            [
                (1, "expected a JSON object, got an array"),
                (3, "expected a JSON object, got a number"),
                (4, "expected a JSON object, got a string"),
                (5, "expected a JSON object, got null"),
            ]
        );
        assert_eq!(messages[4].0, 7);
        assert!(messages[4].1.starts_with("invalid JSON"));
    }

    #[test]
    fn a_json_array_file_loads_with_element_lines() {
        let content = format!("[\n  {GOOD_A},\n  {GOOD_B}\n]\n");
        let ds = load("data.json", &content);
        assert_eq!(ids(&ds), ["a", "b"]);
        assert!(ds.issues.is_empty(), "{:?}", ds.issues);
        let content = format!("[\n  {GOOD_A},\n  {{\"id\": \"c\", \"input\": \"x\"}},\n  [3]\n]");
        let ds = load("data.json", &content);
        assert_eq!(ids(&ds), ["a"]);
        assert_eq!(issue_at(&ds, 3).field.as_deref(), Some("target"));
        assert_eq!(
            issue_at(&ds, 4).message,
            "expected a JSON object, got an array"
        );
        let broken = format!("[\n  {GOOD_A},\n  {{\"id\": oops}},\n  {GOOD_B}\n]");
        let ds = load("data.json", &broken);
        assert_eq!(ids(&ds), ["a"]);
        assert!(
            issue_at(&ds, 3)
                .message
                .contains("the rest of the file could not be read")
        );
    }

    #[test]
    fn parallel_parsing_keeps_order_and_line_numbers() {
        let content: String = (1..=2000)
            .map(|i| match i % 500 {
                0 => "not json\n".to_string(),
                _ => format!("{{\"id\": \"{i}\", \"input\": \"in {i}\", \"target\": \"t\"}}\n"),
            })
            .collect();
        let ds = load("many.jsonl", &content);
        assert_eq!(ds.records.len(), 1996);
        assert_eq!(ds.records[1500].id, "1504");
        let lines: Vec<usize> = ds.issues.iter().map(|i| i.line).collect();
        assert_eq!(lines, [500, 1000, 1500, 2000]);
    }
}
