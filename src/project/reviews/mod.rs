//! Clinician reviews: `reviews.jsonl` in a run's folder, append-only, one line per saved review
//! (flushed and synced before the save returns, so a crash or a closed window loses nothing).
//! A correction appends a newer line for the same reviewer, record and pair of outputs, which
//! supersedes the older one. Which output a reviewer sees as A is drawn from a generator seeded
//! by the reviewer's name and the record, so it is random yet the same on every reopening.

mod agreement;
mod set;

pub use agreement::{Agreement, ReviewSummary, SourceSummary, cohen_kappa, summarize, write_csv};
pub use set::{
    REVIEW_SET_FILE, ReviewSetError, chosen_items, clear_review_set, read_review_set,
    review_set_path, write_review_set,
};

use crate::data::rng::SeededRng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const REVIEWS_FILE: &str = "reviews.jsonl";

/// What a reviewer can mark on an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewFlag {
    FactualError,
    Omission,
    Harmful,
    Jargon,
    HardToRead,
}

impl ReviewFlag {
    pub const ALL: [ReviewFlag; 5] = [
        ReviewFlag::FactualError,
        ReviewFlag::Omission,
        ReviewFlag::Harmful,
        ReviewFlag::Jargon,
        ReviewFlag::HardToRead,
    ];

    /// The words a reviewer sees.
    pub fn label(self) -> &'static str {
        match self {
            ReviewFlag::FactualError => "Factual error",
            ReviewFlag::Omission => "Leaves out something important",
            ReviewFlag::Harmful => "Could harm the patient",
            ReviewFlag::Jargon => "Medical jargon",
            ReviewFlag::HardToRead => "Hard to read",
        }
    }

    /// The name in files and reports.
    pub fn name(self) -> &'static str {
        match self {
            ReviewFlag::FactualError => "factual_error",
            ReviewFlag::Omission => "omission",
            ReviewFlag::Harmful => "harmful",
            ReviewFlag::Jargon => "jargon",
            ReviewFlag::HardToRead => "hard_to_read",
        }
    }
}

/// The judgement of one output: which prediction set it came from, a rating 1–5 and flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputReview {
    pub source: String,
    #[serde(default)]
    pub rating: Option<u8>,
    #[serde(default)]
    pub flags: BTreeSet<ReviewFlag>,
}

impl OutputReview {
    pub fn blank(source: &str) -> Self {
        Self {
            source: source.to_string(),
            rating: None,
            flags: BTreeSet::new(),
        }
    }
}

/// One line of `reviews.jsonl`: a reviewer's judgement of two outputs for one record, `a`
/// being the one shown first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub reviewer: String,
    /// The record's id.
    pub id: String,
    pub a: OutputReview,
    pub b: OutputReview,
    #[serde(default)]
    pub comment: String,
    /// Seconds since 1970 (UTC) when it was saved.
    #[serde(default)]
    pub at: u64,
}

impl Review {
    /// Both outputs rated.
    pub fn is_complete(&self) -> bool {
        self.a.rating.is_some() && self.b.rating.is_some()
    }

    /// What a newer line replaces: the same reviewer, record and pair of outputs.
    fn key(&self) -> (String, String, [String; 2]) {
        (
            self.reviewer.clone(),
            self.id.clone(),
            pair(&self.a.source, &self.b.source),
        )
    }

    /// The output of prediction set `source`.
    pub fn of(&self, source: &str) -> Option<&OutputReview> {
        [&self.a, &self.b].into_iter().find(|o| o.source == source)
    }
}

/// The two source names in a fixed order.
fn pair(x: &str, y: &str) -> [String; 2] {
    let mut p = [x.to_string(), y.to_string()];
    p.sort();
    p
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct ReviewError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Why a review session could not open: its reviews or its chosen set could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Reviews(#[from] ReviewError),
    #[error(transparent)]
    Set(#[from] ReviewSetError),
}

/// A bad line of a reviews file, skipped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ReviewLineIssue {
    pub line: usize,
    pub message: String,
}

/// Every line of a reviews file in order (a missing file has none) and its bad lines.
pub fn read_reviews(path: &Path) -> Result<(Vec<Review>, Vec<ReviewLineIssue>), ReviewError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(ReviewError {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    Ok(parse_reviews(&bytes))
}

pub fn parse_reviews(bytes: &[u8]) -> (Vec<Review>, Vec<ReviewLineIssue>) {
    let mut reviews = Vec::new();
    let mut issues = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let issue = |message: String| ReviewLineIssue {
            line: i + 1,
            message,
        };
        let Ok(text) = std::str::from_utf8(raw) else {
            issues.push(issue("not valid UTF-8".into()));
            continue;
        };
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Review>(text) {
            Ok(r) => match check(&r) {
                Ok(()) => reviews.push(r),
                Err(m) => issues.push(issue(m)),
            },
            Err(e) => issues.push(issue(e.to_string())),
        }
    }
    (reviews, issues)
}

fn check(r: &Review) -> Result<(), String> {
    if r.reviewer.trim().is_empty() {
        return Err("reviewer: empty".into());
    }
    if r.a.source == r.b.source {
        return Err(format!("a and b: both are {:?}", r.a.source));
    }
    for (side, o) in [("a", &r.a), ("b", &r.b)] {
        if let Some(x) = o.rating.filter(|x| !(1..=5).contains(x)) {
            return Err(format!("{side}.rating: {x} is not between 1 and 5"));
        }
    }
    Ok(())
}

/// The newest line of each review, in the order the reviews were first saved.
pub fn latest(reviews: &[Review]) -> Vec<Review> {
    let mut index: HashMap<_, usize> = HashMap::new();
    let mut out: Vec<Review> = Vec::new();
    for r in reviews {
        match index.get(&r.key()) {
            Some(&i) => out[i] = r.clone(),
            None => {
                index.insert(r.key(), out.len());
                out.push(r.clone());
            }
        }
    }
    out
}

/// Appends `review` as one line and syncs it to disk before returning. A line left without its
/// end by an earlier crash gets one first, so the new line stays whole.
pub fn append_review(path: &Path, review: &Review) -> Result<(), ReviewError> {
    let err = |source| ReviewError {
        path: path.to_path_buf(),
        source,
    };
    let existed = path.exists();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(err)?;
    let mut line = serde_json::to_string(review).map_err(|e| err(e.into()))?;
    line.push('\n');
    let len = file.metadata().map_err(err)?.len();
    if len > 0 {
        let mut last = [0u8];
        file.seek(SeekFrom::Start(len - 1)).map_err(err)?;
        file.read_exact(&mut last).map_err(err)?;
        if last[0] != b'\n' {
            line.insert(0, '\n');
        }
    }
    // One write: a kill lands before or after it, never inside the line.
    file.write_all(line.as_bytes()).map_err(err)?;
    file.sync_data().map_err(err)?;
    if !existed && let Some(dir) = path.parent() {
        // The new file's entry in its folder must be durable too.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
    }
    Ok(())
}

/// 64-bit FNV-1a: a hash that stays the same across platforms and Rust versions.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The order in which `reviewer` sees the two outputs of record `id`: random per reviewer and
/// record, the same every time, whatever order `sources` come in.
pub fn blinded_order(reviewer: &str, id: &str, sources: [&str; 2]) -> [String; 2] {
    let [x, y] = pair(sources[0], sources[1]);
    let mut rng = SeededRng::new(fnv1a(reviewer.trim())).fork(fnv1a(id));
    if rng.next_u64() & 1 == 1 {
        [y, x]
    } else {
        [x, y]
    }
}

/// One reviewer's pass over the records two prediction sets share (those a coordinator chose,
/// where one did).
#[derive(Debug, Clone)]
pub struct ReviewSession {
    pub path: PathBuf,
    pub reviewer: String,
    pub sources: [String; 2],
    /// Record ids in review order.
    pub items: Vec<String>,
    /// A coordinator chose the records (`review-set.json`).
    pub chosen: bool,
    /// Chosen records that the two outputs do not share, left out.
    pub chosen_missing: usize,
    /// This reviewer's newest review of each record for these two sources.
    mine: HashMap<String, Review>,
    /// Every line of the file, newest last (all reviewers).
    pub all: Vec<Review>,
    pub issues: Vec<ReviewLineIssue>,
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl ReviewSession {
    /// Reads what `reviewer` saved earlier in `path` for outputs of `sources`; reviews the
    /// `shared` records, or those of them a coordinator chose beside `path`.
    pub fn open(
        path: &Path,
        reviewer: &str,
        sources: [&str; 2],
        shared: Vec<String>,
    ) -> Result<Self, OpenError> {
        let (all, issues) = read_reviews(path)?;
        let chosen = read_review_set(&review_set_path(path))?;
        let (items, chosen_missing) = chosen_items(shared, chosen.as_deref());
        let mut session = Self {
            path: path.to_path_buf(),
            reviewer: reviewer.trim().to_string(),
            sources: pair(sources[0], sources[1]),
            items,
            chosen: chosen.is_some(),
            chosen_missing,
            mine: HashMap::new(),
            all: Vec::new(),
            issues,
        };
        for r in all {
            session.take(r);
        }
        Ok(session)
    }

    fn take(&mut self, r: Review) {
        if r.reviewer == self.reviewer && pair(&r.a.source, &r.b.source) == self.sources {
            self.mine.insert(r.id.clone(), r.clone());
        }
        self.all.push(r);
    }

    /// The review of record `id` as saved, else a blank one in this reviewer's blinded order.
    pub fn review(&self, id: &str) -> Review {
        self.mine.get(id).cloned().unwrap_or_else(|| {
            let [a, b] = blinded_order(&self.reviewer, id, [&self.sources[0], &self.sources[1]]);
            Review {
                reviewer: self.reviewer.clone(),
                id: id.to_string(),
                a: OutputReview::blank(&a),
                b: OutputReview::blank(&b),
                comment: String::new(),
                at: 0,
            }
        })
    }

    /// Saves `review` at once (appended and synced); it supersedes the earlier one.
    pub fn save(&mut self, mut review: Review) -> Result<(), ReviewError> {
        review.at = now_s();
        append_review(&self.path, &review)?;
        self.take(review);
        Ok(())
    }

    pub fn is_saved(&self, id: &str) -> bool {
        self.mine.contains_key(id)
    }

    /// Records with both outputs rated.
    pub fn done(&self) -> usize {
        self.items
            .iter()
            .filter(|id| self.mine.get(*id).is_some_and(Review::is_complete))
            .count()
    }

    /// The position of the first record not yet fully rated (where a reopening continues).
    pub fn first_unfinished(&self) -> Option<usize> {
        self.items
            .iter()
            .position(|id| !self.mine.get(id).is_some_and(Review::is_complete))
    }
}

/// Where the reviews of outputs `a` and `b` are kept: in the folder of the run among them.
pub fn reviews_path(project_dir: &Path, a: &str, b: &str) -> Option<PathBuf> {
    [a, b]
        .into_iter()
        .find(|s| *s != super::predictions::BASE)
        .map(|run| super::predictions::run_dir(project_dir, run).join(REVIEWS_FILE))
}

#[cfg(test)]
mod tests;
