//! Reads a dataset file (JSON lines, a JSON array, CSV or TSV) into `Record`s, mapping the column
//! names common in clinical NLP datasets and reporting each bad line by file, line and field.

mod columns;
mod csv;
mod json;

use crate::data::record::{Record, Task};
use crate::store::sha256_hex;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

use self::json::RawRow;

/// The largest text field a record may carry unless the caller says otherwise.
pub const DEFAULT_MAX_FIELD_BYTES: usize = 16 * 1024 * 1024;

/// The largest data file read unless the caller says otherwise (the file is held whole while it
/// parses).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// The message of an issue for a record dropped because its input or target is absent or null;
/// validation counts these issues as missing values.
pub const MISSING_FIELD: &str = "is missing or null; the record was skipped";

/// The bounds on what reading a dataset holds, in MiB, as a user sets them (`read_limits` in
/// `project.ron`, `--max-file-mb` and `--max-field-mb` on the commands that read a file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReadLimits {
    /// The largest file read (held whole while it parses).
    pub max_file_mb: u64,
    /// The largest text field of a record; a record with a larger one is reported and skipped.
    pub max_field_mb: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_file_mb: DEFAULT_MAX_FILE_BYTES >> 20,
            max_field_mb: (DEFAULT_MAX_FIELD_BYTES >> 20) as u64,
        }
    }
}

impl ReadLimits {
    /// The first field at 0, which would refuse every file or record, named as `project.ron`
    /// names it.
    pub fn zero_field(&self) -> Option<&'static str> {
        [
            ("read_limits.max_file_mb", self.max_file_mb),
            ("read_limits.max_field_mb", self.max_field_mb),
        ]
        .into_iter()
        .find(|(_, v)| *v == 0)
        .map(|(name, _)| name)
    }

    /// `options` with these bounds.
    pub fn apply(&self, options: LoadOptions) -> LoadOptions {
        LoadOptions {
            max_file_bytes: self.max_file_mb.saturating_mul(1 << 20),
            max_field_bytes: usize::try_from(self.max_field_mb.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
            ..options
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// The task of records that name none; when `None` it is inferred from the columns.
    pub default_task: Option<Task>,
    pub max_field_bytes: usize,
    pub max_file_bytes: u64,
    pub duplicate_ids: DuplicateIds,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            default_task: None,
            max_field_bytes: DEFAULT_MAX_FIELD_BYTES,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            duplicate_ids: DuplicateIds::Refuse,
        }
    }
}

/// Part of the message of an issue for a record whose id an earlier record has; validation
/// counts these issues as repeated ids.
pub const REPEATED_ID: &str = "is also the id of the record on line";
/// How such a message goes on when the record was kept under a new id.
pub const RENAMED: &str = "; renamed ";

/// What loading does with a record whose id an earlier record of the file has: ids key
/// predictions, reviews, explanations and bias slices, so two records never share one. Either
/// way each repeat is reported at its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DuplicateIds {
    /// The repeat is kept out, as a bad line is.
    #[default]
    Refuse,
    /// The repeat is kept under a new id: `ID~2` for the second record of id `ID`, `ID~3` for
    /// the third (skipping any the file already has).
    Rename,
}

impl DuplicateIds {
    pub fn parse(text: &str) -> Option<DuplicateIds> {
        match text {
            "refuse" => Some(DuplicateIds::Refuse),
            "rename" => Some(DuplicateIds::Rename),
            _ => None,
        }
    }
}

/// The records of one file, the problems met while reading it, and its content hash.
#[derive(Debug, Clone)]
pub struct LoadedDataset {
    pub path: PathBuf,
    pub records: Vec<Record>,
    /// The 1-based line each record starts on, index-aligned with `records`.
    pub record_lines: Vec<usize>,
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

/// The bytes of the regular file at `path`, at most `limit` of them: a FIFO, a device (such as
/// /dev/zero) or a folder is refused before anything is read, and so is a file over the limit
/// (also one that grows past it while it is read).
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, LoadError> {
    use std::io::Read;
    let refuse = |reason: String| LoadError::NotADataset {
        path: path.to_path_buf(),
        reason,
    };
    let read_err = |source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a folder"
        } else {
            "not a regular file (a pipe, a device or a socket)"
        };
        return Err(refuse(format!("it is {kind}")));
    }
    let too_big = |n: u64| {
        refuse(format!(
            "it is {n} bytes or more, over the limit of {limit} bytes (raise it with \
             --max-file-mb, or read_limits in project.ron)"
        ))
    };
    if meta.len() > limit {
        return Err(too_big(meta.len()));
    }
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Loads a dataset, choosing the format by extension and falling back on the content.
pub fn load_path(path: &Path, opts: &LoadOptions) -> Result<LoadedDataset, LoadError> {
    let bytes = read_bounded(path, opts.max_file_bytes)?;
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
            issues: vec![ctx.issue(1, None, "file is empty".to_string())],
            ..Parsed::default()
        }
    } else {
        match format_of(path, body)? {
            Format::Json => json::load_json(body, &ctx)?,
            Format::Csv(delimiter) => csv::load_csv(body, delimiter, &ctx),
        }
    };
    resolve_duplicate_ids(&mut parsed, &ctx);
    // A header alone or `[]` is no error, but a person should hear that nothing loaded.
    if parsed.records.is_empty() && parsed.issues.is_empty() {
        parsed
            .issues
            .push(ctx.issue(1, None, "no records found".to_string()));
    }
    parsed.issues.sort_by_key(|i| i.line);
    Ok(LoadedDataset {
        path: path.to_path_buf(),
        records: parsed.records,
        record_lines: parsed.lines,
        issues: parsed.issues,
        lines_read: count_lines(&bytes),
        sha256: sha256_hex(&bytes),
    })
}

fn count_lines(bytes: &[u8]) -> usize {
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
    newlines + usize::from(bytes.last().is_some_and(|&b| b != b'\n'))
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
    /// The line each record starts on.
    lines: Vec<usize>,
    issues: Vec<LoadIssue>,
}

impl Parsed {
    fn add(&mut self, ctx: &Context, line: usize, row: RawRow) {
        match row {
            RawRow::Object(fields) => {
                if let Some(record) = columns::build_record(fields, line, ctx, &mut self.issues) {
                    self.records.push(record);
                    self.lines.push(line);
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

/// Refuses or renames each record whose id an earlier record has, as the options say, with an
/// issue at its line naming the first record's line.
fn resolve_duplicate_ids(parsed: &mut Parsed, ctx: &Context) {
    use std::collections::{HashMap, HashSet};
    let mut first: HashMap<String, usize> = HashMap::with_capacity(parsed.records.len());
    let mut repeats = Vec::new();
    for (i, (record, &line)) in parsed.records.iter().zip(&parsed.lines).enumerate() {
        if let Some(&earlier) = first.get(&record.id) {
            repeats.push((i, earlier));
        } else {
            first.insert(record.id.clone(), line);
        }
    }
    if repeats.is_empty() {
        return;
    }
    let mut taken: HashSet<String> = parsed.records.iter().map(|r| r.id.clone()).collect();
    let mut next: HashMap<String, usize> = HashMap::new();
    let mut refused = HashSet::new();
    for (i, earlier) in repeats {
        let (id, line) = (parsed.records[i].id.clone(), parsed.lines[i]);
        let message = match ctx.opts.duplicate_ids {
            DuplicateIds::Refuse => {
                refused.insert(i);
                format!(
                    "id {id:?} {REPEATED_ID} {earlier}; the record was skipped (ids must be unique: change it, or keep repeats renamed with \
                     --duplicate-ids rename, or duplicate_ids: rename in project.ron)"
                )
            }
            DuplicateIds::Rename => {
                let n = next.entry(id.clone()).or_insert(1);
                let renamed = loop {
                    *n += 1;
                    let candidate = format!("{id}~{n}");
                    if taken.insert(candidate.clone()) {
                        break candidate;
                    }
                };
                parsed.records[i].id = renamed.clone();
                format!(
                    "id {id:?} is also the id of the record on line {earlier}; renamed {renamed:?}"
                )
            }
        };
        parsed.issues.push(ctx.issue(line, Some("id"), message));
    }
    if !refused.is_empty() {
        let mut i = 0;
        parsed.records.retain(|_| {
            i += 1;
            !refused.contains(&(i - 1))
        });
        let mut i = 0;
        parsed.lines.retain(|_| {
            i += 1;
            !refused.contains(&(i - 1))
        });
    }
}

/// Fixtures shared by the loader's tests: write content to a temporary file and load it, with
/// issue paths cut to the bare file name so messages can be compared whole.
#[cfg(test)]
mod test_support {
    use super::{LoadIssue, LoadOptions, LoadedDataset, load_path};
    use std::path::PathBuf;

    pub(super) fn load_bytes(name: &str, content: &[u8], opts: &LoadOptions) -> LoadedDataset {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write fixture");
        let mut loaded = load_path(&path, opts).expect("loads");
        for issue in &mut loaded.issues {
            issue.file = PathBuf::from(name);
        }
        loaded
    }

    pub(super) fn load(name: &str, content: &str) -> LoadedDataset {
        load_bytes(name, content.as_bytes(), &LoadOptions::default())
    }

    pub(super) fn ids(ds: &LoadedDataset) -> Vec<&str> {
        ds.records.iter().map(|r| r.id.as_str()).collect()
    }

    pub(super) fn issue_at(ds: &LoadedDataset, line: usize) -> &LoadIssue {
        let found = ds.issues.iter().find(|i| i.line == line);
        found.unwrap_or_else(|| panic!("no issue at line {line}: {:?}", ds.issues))
    }

    pub(super) const GOOD_A: &str =
        r#"{"id": "a", "input": "chest pain resolved", "target": "your chest pain is gone"}"#;
    pub(super) const GOOD_B: &str =
        r#"{"id": "b", "input": "fever treated", "target": "the fever was treated"}"#;
}

#[cfg(test)]
mod tests;
