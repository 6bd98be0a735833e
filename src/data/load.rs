//! Reads a dataset file (JSON lines, a JSON array, CSV or TSV) into `Record`s, mapping the column
//! names common in clinical NLP datasets and reporting each bad line by file, line and field.

use crate::data::record::{Record, Task};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

/// The largest text field a record may carry unless the caller says otherwise.
pub const DEFAULT_MAX_FIELD_BYTES: usize = 16 * 1024 * 1024;

/// The message of an issue for a record dropped because its input or target is absent or null;
/// validation counts these issues as missing values.
pub const MISSING_FIELD: &str = "is missing or null; the record was skipped";

#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// The task of records that name none; when `None` it is inferred from the columns.
    pub default_task: Option<Task>,
    pub max_field_bytes: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            default_task: None,
            max_field_bytes: DEFAULT_MAX_FIELD_BYTES,
        }
    }
}

/// The records of one file, the problems met while reading it, and its content hash.
#[derive(Debug, Clone)]
pub struct LoadedDataset {
    pub path: PathBuf,
    pub records: Vec<Record>,
    pub issues: Vec<LoadIssue>,
    pub lines_read: usize,
    /// Hex SHA-256 of the file's bytes, so reports can be traced to the exact data.
    pub sha256: String,
}

/// A problem with one line (or record) of a file; the line is kept out, the rest still loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadIssue {
    pub file: PathBuf,
    /// 1-based physical line where the record starts.
    pub line: usize,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for LoadIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if let Some(field) = &self.field {
            write!(f, "field \"{field}\": ")?;
        }
        f.write_str(&self.message)
    }
}

/// A failure of the whole file; problems with single lines are `LoadIssue`s instead.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a dataset: {reason}", path.display())]
    NotADataset { path: PathBuf, reason: String },
}

/// Loads a dataset, choosing the format by extension and falling back on the content.
pub fn load_path(path: &Path, opts: &LoadOptions) -> Result<LoadedDataset, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let ctx = Context {
        file: path,
        stem: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "record".to_string()),
        opts,
    };
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut parsed = if body.iter().all(u8::is_ascii_whitespace) {
        Parsed {
            records: Vec::new(),
            issues: vec![ctx.issue(1, None, "file is empty".to_string())],
        }
    } else {
        match format_of(path, body)? {
            Format::Json => load_json(body, &ctx)?,
            Format::Csv(delimiter) => load_csv(body, delimiter, &ctx),
        }
    };
    // A header alone or `[]` is no error, but a person should hear that nothing loaded.
    if parsed.records.is_empty() && parsed.issues.is_empty() {
        parsed
            .issues
            .push(ctx.issue(1, None, "no records found".to_string()));
    }
    Ok(LoadedDataset {
        path: path.to_path_buf(),
        records: parsed.records,
        issues: parsed.issues,
        lines_read: count_lines(&bytes),
        sha256: sha256_hex(&bytes),
    })
}

fn count_lines(bytes: &[u8]) -> usize {
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
    newlines + usize::from(bytes.last().is_some_and(|&b| b != b'\n'))
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Runs `work` on each job in its own scoped thread and returns the results in job order.
pub(crate) fn map_in_parallel<T: Sync, R: Send>(
    jobs: &[T],
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    if jobs.len() <= 1 {
        return jobs.iter().map(&work).collect();
    }
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|job| scope.spawn(move || work(job)))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// How many threads the costly passes (parsing, PHI scanning) split their work over.
pub(crate) fn worker_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Json,
    Csv(u8),
}

fn format_of(path: &Path, body: &[u8]) -> Result<Format, LoadError> {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match extension.as_deref() {
        Some("jsonl" | "ndjson" | "json") => return Ok(Format::Json),
        Some("csv") => return Ok(Format::Csv(b',')),
        Some("tsv") => return Ok(Format::Csv(b'\t')),
        _ => {}
    }
    let not_a_dataset = |reason: &str| LoadError::NotADataset {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    if matches!(body.get(start), Some(b'{' | b'[')) {
        return Ok(Format::Json);
    }
    if body.iter().take(8192).any(|&b| b == 0) {
        return Err(not_a_dataset("it holds binary data"));
    }
    let first_line = body[start..]
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or_default();
    if first_line.contains(&b'\t') {
        Ok(Format::Csv(b'\t'))
    } else if first_line.contains(&b',') {
        Ok(Format::Csv(b','))
    } else {
        Err(not_a_dataset(
            "it is neither JSON (one object per line, or an array) nor CSV with a header",
        ))
    }
}

/// What every record built from one file shares.
struct Context<'a> {
    file: &'a Path,
    stem: String,
    opts: &'a LoadOptions,
}

impl Context<'_> {
    fn issue(&self, line: usize, field: Option<&str>, message: String) -> LoadIssue {
        LoadIssue {
            file: self.file.to_path_buf(),
            line,
            field: field.map(str::to_string),
            message,
        }
    }
}

#[derive(Default)]
struct Parsed {
    records: Vec<Record>,
    issues: Vec<LoadIssue>,
}

impl Parsed {
    fn add(&mut self, ctx: &Context, line: usize, row: RawRow) {
        match row {
            RawRow::Object(fields) => {
                if let Some(record) = build_record(fields, line, ctx, &mut self.issues) {
                    self.records.push(record);
                }
            }
            RawRow::Other(what) => self.issues.push(ctx.issue(
                line,
                None,
                format!("expected a JSON object, got {what}"),
            )),
        }
    }
}

/// One JSON value before column mapping: an object's fields in file order, or what it was instead.
enum RawRow {
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

fn load_json(body: &[u8], ctx: &Context) -> Result<Parsed, LoadError> {
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

/// Reads CSV or TSV with a header row; quoted fields may span lines.
fn load_csv(body: &[u8], delimiter: u8, ctx: &Context) -> Parsed {
    let mut parsed = Parsed::default();
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut header = csv::ByteRecord::new();
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
    let mut row = csv::ByteRecord::new();
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
    header: &csv::ByteRecord,
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
    row: &csv::ByteRecord,
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
fn build_record(
    mut fields: Vec<(String, Value)>,
    line: usize,
    ctx: &Context,
    issues: &mut Vec<LoadIssue>,
) -> Option<Record> {
    let mut issues = FieldIssues { ctx, line, issues };
    drop_repeated_keys(&mut fields, &mut issues);
    let oversized = fields.iter().find_map(|(key, value)| {
        let len = value.as_str().map_or(0, str::len);
        (len > ctx.opts.max_field_bytes).then_some((key, len))
    });
    if let Some((key, len)) = oversized {
        let limit = ctx.opts.max_field_bytes;
        issues.push(
            key,
            format!("is {len} bytes, over the limit of {limit}; the record was skipped"),
        );
        return None;
    }
    let mut row = Row::new(fields);
    let inferred = if row.has(Column::Options) || row.has(Column::Answer) {
        Task::Qa
    } else if row.has(Column::Dialogue) {
        Task::Soap
    } else {
        Task::Discharge
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load_bytes(name: &str, content: &[u8], opts: &LoadOptions) -> LoadedDataset {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write fixture");
        let mut loaded = load_path(&path, opts).expect("loads");
        for issue in &mut loaded.issues {
            issue.file = PathBuf::from(name);
        }
        loaded
    }

    fn load(name: &str, content: &str) -> LoadedDataset {
        load_bytes(name, content.as_bytes(), &LoadOptions::default())
    }

    fn ids(ds: &LoadedDataset) -> Vec<&str> {
        ds.records.iter().map(|r| r.id.as_str()).collect()
    }

    fn issue_at(ds: &LoadedDataset, line: usize) -> &LoadIssue {
        let found = ds.issues.iter().find(|i| i.line == line);
        found.unwrap_or_else(|| panic!("no issue at line {line}: {:?}", ds.issues))
    }

    const GOOD_A: &str =
        r#"{"id": "a", "input": "chest pain resolved", "target": "your chest pain is gone"}"#;
    const GOOD_B: &str =
        r#"{"id": "b", "input": "fever treated", "target": "the fever was treated"}"#;

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
    fn bom_crlf_and_blank_lines_are_harmless() {
        let content = format!("\u{feff}{GOOD_A}\r\n\r\n   \r\n{GOOD_B}\r\n{{\"id\": \"c\"}}\r\n");
        let ds = load("data.jsonl", &content);
        assert_eq!(ids(&ds), ["a", "b"]);
        assert_eq!(ds.records[1].target, "the fever was treated");
        let issue = &ds.issues[0];
        assert_eq!((issue.line, issue.field.as_deref()), (5, Some("input")));
        let csv = load(
            "data.csv",
            "\u{feff}id,input,target\r\nr1,some input,a target\r\n",
        );
        assert_eq!(ids(&csv), ["r1"]);
        assert!(csv.issues.is_empty(), "{:?}", csv.issues);
    }

    #[test]
    fn empty_file_gives_no_records_and_one_issue() {
        for content in ["", "\n\n  \n", "\u{feff}"] {
            let ds = load("empty.jsonl", content);
            assert!(ds.records.is_empty());
            assert_eq!(ds.issues.len(), 1);
            assert_eq!(ds.issues[0].to_string(), "empty.jsonl:1: file is empty");
        }
        for (name, content) in [("empty.csv", "id,input,target\n"), ("empty.json", " [ ] ")] {
            let ds = load(name, content);
            assert!(ds.records.is_empty());
            assert_eq!(ds.issues[0].message, "no records found");
        }
    }

    #[test]
    fn a_ten_megabyte_field_loads_and_one_over_the_limit_is_an_issue() {
        let big = "word ".repeat(2_000_000);
        let content = format!(
            "{GOOD_A}\n{{\"id\": \"big\", \"input\": \"{big}\", \"target\": \"t\"}}\n{GOOD_B}\n"
        );
        let ds = load("big.jsonl", &content);
        assert_eq!(ids(&ds), ["a", "big", "b"]);
        assert_eq!(ds.records[1].input.len(), 10_000_000);
        let small = LoadOptions {
            max_field_bytes: 1_000_000,
            ..LoadOptions::default()
        };
        let ds = load_bytes("big.jsonl", content.as_bytes(), &small);
        assert_eq!(ids(&ds), ["a", "b"]);
        let issue = issue_at(&ds, 2);
        assert_eq!(issue.field.as_deref(), Some("input"));
        assert!(
            issue.message.contains("over the limit of 1000000"),
            "{issue}"
        );
    }

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
    fn duplicated_keys_keep_the_last_value_and_say_so() {
        let ds = load(
            "d.jsonl",
            r#"{"input": "first", "target": "t", "input": "second"}"#,
        );
        assert_eq!(ds.records[0].input, "second");
        assert_eq!(
            ds.issues[0].to_string(),
            r#"d.jsonl:1: field "input": appears more than once; the last value is used"#
        );
        let csv = load("d.csv", "input,target,input\nfirst,t,second\n");
        assert_eq!(csv.records[0].input, "second");
        assert_eq!(csv.issues[0].field.as_deref(), Some("input"));
    }

    #[test]
    fn nulls_drop_optional_fields_and_skip_records_without_input_or_target() {
        let content = format!(
            "{{\"id\": \"n\", \"input\": \"x y\", \"target\": null}}\n{}\n",
            r#"{"id": "k", "input": "x y", "target": "z", "gender": null, "age": null, "extra": null}"#
        );
        let ds = load("data.jsonl", &content);
        assert_eq!(ids(&ds), ["k"]);
        assert_eq!(
            (ds.records[0].gender.as_ref(), ds.records[0].age),
            (None, None)
        );
        assert!(ds.records[0].meta.is_empty());
        let issue = issue_at(&ds, 1);
        assert_eq!(
            (issue.field.as_deref(), issue.message.as_str()),
            (Some("target"), MISSING_FIELD)
        );
    }

    #[test]
    fn ages_are_parsed_floored_and_range_checked() {
        let rows = [r#""abc""#, "45.7", r#"" 62 ""#, "150", "-1"];
        let content: String = rows
            .iter()
            .map(|age| format!("{{\"input\": \"i\", \"target\": \"t\", \"age\": {age}}}\n"))
            .collect();
        let ds = load("data.jsonl", &content);
        let ages: Vec<Option<u32>> = ds.records.iter().map(|r| r.age).collect();
        assert_eq!(ages, [None, Some(45), Some(62), None, None]);
        assert_eq!(
            ds.issues[0].to_string(),
            r#"data.jsonl:1: field "age": expected a number 0-130, got "abc""#
        );
        assert_eq!(ds.issues[1].line, 4);
        assert_eq!(ds.issues.len(), 3);
    }

    #[test]
    fn whole_file_failures_are_errors_naming_the_file() {
        let missing = load_path(
            Path::new("/nonexistent/data.jsonl"),
            &LoadOptions::default(),
        );
        let message = missing.map(|_| ()).unwrap_err().to_string();
        assert!(message.contains("/nonexistent/data.jsonl"), "{message}");
        let dir = tempfile::tempdir().expect("tempdir");
        let prose = dir.path().join("notes.txt");
        std::fs::write(&prose, "just some prose\nwithout structure\n").expect("write");
        let error = load_path(&prose, &LoadOptions::default());
        assert!(matches!(error, Err(LoadError::NotADataset { .. })));
        let single = dir.path().join("one.json");
        std::fs::write(&single, "{\n \"input\": \"x\",\n \"target\": \"y\"\n}\n").expect("write");
        let error = load_path(&single, &LoadOptions::default());
        assert!(matches!(error, Err(LoadError::NotADataset { .. })));
    }

    #[test]
    fn unknown_extensions_are_sniffed() {
        let jsonl = load("data.txt", &format!("{GOOD_A}\n"));
        assert_eq!(ids(&jsonl), ["a"]);
        let tsv = load("data.dat", "id\tinput\ttarget\nq\ta, b\tc\n");
        assert_eq!(tsv.records[0].input, "a, b");
    }

    #[test]
    fn mimic_columns_map_and_the_rest_goes_to_meta() {
        let line = r#"{"ROW_ID": 12, "SUBJECT_ID": 99, "TEXT": "Admitted for CHF.", "summary": "You had heart failure.", "GENDER": "female", "AGE": 71, "ETHNICITY": " WHITE ", "CATEGORY": "Discharge summary"}"#;
        let ds = load("mimic.jsonl", line);
        let r = &ds.records[0];
        assert_eq!((r.id.as_str(), r.patient_id.as_deref()), ("12", Some("99")));
        assert_eq!(
            (r.input.as_str(), r.target.as_str()),
            ("Admitted for CHF.", "You had heart failure.")
        );
        assert_eq!(
            (r.gender.as_deref(), r.age, r.ethnicity.as_deref()),
            (Some("F"), Some(71), Some("WHITE"))
        );
        assert_eq!(r.task, Task::Discharge);
        assert_eq!(r.meta.keys().collect::<Vec<_>>(), ["CATEGORY"]);
    }

    #[test]
    fn alpaca_instruction_input_output() {
        let content = concat!(
            r#"{"instruction": "Explain simply.", "input": "Pt w/ CAP.", "output": "You had pneumonia."}"#,
            "\n",
            r#"{"instruction": "Define angina.", "input": "", "output": "Chest pain from the heart.", "sex": "M"}"#,
        );
        let ds = load("alpaca.jsonl", content);
        assert_eq!(ds.records[0].input, "Explain simply.\n\nPt w/ CAP.");
        assert_eq!(ds.records[0].target, "You had pneumonia.");
        assert_eq!(ds.records[1].input, "Define angina.");
        assert_eq!(ds.records[1].gender.as_deref(), Some("M"));
        assert_eq!(ids(&ds), ["alpaca-1", "alpaca-2"]);
    }

    #[test]
    fn qa_options_as_object_array_or_text() {
        let content = concat!(
            r#"{"question": "First-line drug?", "options": {"A": "Insulin", "B": "Metformin"}, "answer": "B"}"#,
            "\n",
            r#"{"question": "Which is a beta blocker?", "options": ["Lisinopril", "Amlodipine", "Metoprolol"], "answer": "Metoprolol"}"#,
            "\n",
            r#"{"question": "Pick one", "options": "A. yes\nB. no", "answer": "a", "explanation": "because"}"#,
        );
        let ds = load("qa.jsonl", content);
        let r = &ds.records;
        assert_eq!(r[0].input, "First-line drug?\nA. Insulin\nB. Metformin");
        assert_eq!(r[0].target, "Answer: B. Metformin");
        assert_eq!(
            r[1].input,
            "Which is a beta blocker?\nA. Lisinopril\nB. Amlodipine\nC. Metoprolol"
        );
        assert_eq!(r[1].target, "Answer: C. Metoprolol");
        assert_eq!(r[2].target, "Answer: A. yes");
        assert!(r.iter().all(|r| r.task == Task::Qa));
        assert!(r[2].meta.contains_key("explanation"));
    }

    #[test]
    fn soap_text_summary_and_task_sources() {
        let content = concat!(
            r#"{"dialogue": "Doctor: Hi. Patient: Cough.", "note": "S: cough"}"#,
            "\n",
            r#"{"note": "Long clinical note.", "summary": "Short note."}"#,
            "\n",
            r#"{"text": "Some text.", "summary": "Short.", "task": "medqa"}"#,
            "\n",
            r#"{"text": "Some text.", "summary": "Short.", "task": "poetry"}"#,
        );
        let ds = load("mixed.jsonl", content);
        let r = &ds.records;
        assert_eq!(
            (r[0].input.as_str(), r[0].target.as_str(), r[0].task),
            ("Doctor: Hi. Patient: Cough.", "S: cough", Task::Soap)
        );
        assert_eq!(
            (r[1].input.as_str(), r[1].target.as_str()),
            ("Long clinical note.", "Short note.")
        );
        assert_eq!(r[2].task, Task::Qa);
        assert_eq!(r[3].task, Task::Discharge);
        assert_eq!(issue_at(&ds, 4).field.as_deref(), Some("task"));
        let opts = LoadOptions {
            default_task: Some(Task::Soap),
            ..LoadOptions::default()
        };
        let ds = load_bytes(
            "d.jsonl",
            r#"{"text": "a", "summary": "b"}"#.as_bytes(),
            &opts,
        );
        assert_eq!(ds.records[0].task, Task::Soap);
    }

    #[test]
    fn records_round_trip_through_jsonl() {
        let record = Record {
            id: "r1".to_string(),
            patient_id: Some("p1".to_string()),
            task: Task::Soap,
            input: "Doctor: hello".to_string(),
            target: "S: none".to_string(),
            gender: Some("F".to_string()),
            age: Some(40),
            ethnicity: Some("Asian".to_string()),
            meta: BTreeMap::from([("source".to_string(), Value::from("synthetic"))]),
        };
        let line = serde_json::to_string(&record).expect("serialize");
        let ds = load("own.jsonl", &line);
        assert_eq!(ds.records, [record]);
        assert_eq!(ds.sha256, sha256_hex(line.as_bytes()));
        assert_eq!(ds.sha256.len(), 64);
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
