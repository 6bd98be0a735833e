//! A reviewer's session killed with SIGKILL between two ratings, several times, loses no
//! saved rating, leaves `reviews.jsonl` whole, and each reopening continues where it stopped.
//! The writer is this test binary run again as a child (`review_writer`, ignored otherwise).

use lablens::project::reviews::{ReviewSession, blinded_order, latest, read_reviews};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const ITEMS: usize = 30;
const CHILD_ENV: &str = "LABLENS_REVIEW_WRITER";

fn items() -> Vec<String> {
    (0..ITEMS).map(|i| format!("d-{i:04}")).collect()
}

fn ratings(i: usize) -> (u8, u8) {
    ((i % 5) as u8 + 1, ((i + 2) % 5) as u8 + 1)
}

/// The child: rates the records from where the reviewer stopped, printing each saved rating.
#[test]
#[ignore = "run by a_review_session_killed_between_ratings_loses_nothing"]
fn review_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut s = ReviewSession::open(Path::new(&path), "Ann", ["run", "base"], items())
        .expect("open the reviews");
    while let Some(i) = s.first_unfinished() {
        let id = s.items[i].clone();
        let (a, b) = ratings(i);
        let mut r = s.review(&id);
        if r.a.rating.is_none() {
            r.a.rating = Some(a);
            s.save(r.clone()).expect("save a");
            println!("saved {id} a");
            std::thread::sleep(Duration::from_millis(15));
        }
        r.b.rating = Some(b);
        s.save(r).expect("save b");
        println!("saved {id} b");
        std::thread::sleep(Duration::from_millis(15));
    }
}

/// Runs the writer until it has acknowledged `acks` more ratings (then SIGKILL), or to the end.
fn run_writer(path: &Path, acks: Option<usize>) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "review_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the writer");
    let stdout = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if let Some(saved) = line.strip_prefix("saved ") {
            seen.push(saved.to_string());
            if Some(seen.len()) == acks {
                child.kill().expect("SIGKILL");
                break;
            }
        }
    }
    child.wait().expect("reap");
    seen
}

#[test]
fn a_review_session_killed_between_ratings_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("runs").join("run").join("reviews.jsonl");
    let mut acknowledged = Vec::new();
    for acks in [5, 8, 3, 11] {
        let seen = run_writer(&path, Some(acks));
        assert_eq!(seen.len(), acks, "the writer ended early");
        acknowledged.extend(seen);
        let (lines, issues) = read_reviews(&path).expect("read");
        assert!(issues.is_empty(), "a line was torn: {issues:?}");
        let kept = latest(&lines);
        for ack in &acknowledged {
            let (id, side) = ack.split_once(' ').expect("id and side");
            let review = kept
                .iter()
                .find(|r| r.id == id)
                .expect("acknowledged review");
            let out = if side == "a" { &review.a } else { &review.b };
            assert!(out.rating.is_some(), "{ack} was acknowledged, then lost");
        }
    }
    run_writer(&path, None);
    let (lines, issues) = read_reviews(&path).expect("read");
    assert!(issues.is_empty(), "{issues:?}");
    let kept = latest(&lines);
    assert_eq!(kept.len(), ITEMS);
    for (i, r) in kept.iter().enumerate() {
        assert_eq!(r.id, format!("d-{i:04}"));
        assert_eq!((r.a.rating, r.b.rating), {
            let (a, b) = ratings(i);
            (Some(a), Some(b))
        });
        let order = blinded_order("Ann", &r.id, ["run", "base"]);
        assert_eq!([r.a.source.clone(), r.b.source.clone()], order);
    }
    let again = ReviewSession::open(&path, "Ann", ["base", "run"], items()).expect("open");
    assert_eq!((again.done(), again.first_unfinished()), (ITEMS, None));
}
