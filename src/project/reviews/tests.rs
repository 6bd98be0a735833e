use super::*;

/// `n` copies of the pair `(x, y)`.
fn repeat<T: Clone>(n: usize, x: T, y: T) -> Vec<(T, T)> {
    vec![(x, y); n]
}

fn table(yy: usize, yn: usize, ny: usize, nn: usize) -> Vec<(bool, bool)> {
    [
        repeat(yy, true, true),
        repeat(yn, true, false),
        repeat(ny, false, true),
        repeat(nn, false, false),
    ]
    .concat()
}

#[test]
fn kappa_matches_the_textbook_examples() {
    // Wikipedia, "Cohen's kappa": 50 applications read by two readers, κ = 0.4.
    let k = cohen_kappa(&table(20, 5, 10, 15)).expect("kappa");
    assert!((k - 0.4).abs() < 1e-12, "{k}");
    // The same 60% observed agreement with different marginals: κ 0.1304 and 0.2593.
    let k = cohen_kappa(&table(45, 15, 25, 15)).expect("kappa");
    assert!(
        (k - 0.06 / 0.46).abs() < 1e-12 && (k - 0.1304).abs() < 5e-5,
        "{k}"
    );
    let k = cohen_kappa(&table(25, 35, 5, 35)).expect("kappa");
    assert!(
        (k - 0.14 / 0.54).abs() < 1e-12 && (k - 0.2593).abs() < 5e-5,
        "{k}"
    );
    // scikit-learn's `cohen_kappa_score` docstring example, three labels: 0.6875.
    let a = ["negative", "positive", "negative", "neutral", "positive"];
    let b = ["negative", "positive", "negative", "neutral", "negative"];
    let pairs: Vec<_> = a.into_iter().zip(b).collect();
    let k = cohen_kappa(&pairs).expect("kappa");
    assert!((k - 0.6875).abs() < 1e-12, "{k}");
    assert_eq!(cohen_kappa::<u8>(&[]), None);
    assert_eq!(
        cohen_kappa(&repeat(4, 3u8, 3u8)),
        None,
        "chance agreement is certain"
    );
    assert_eq!(cohen_kappa(&[(1u8, 2u8), (2, 1)]), Some(-1.0));
}

fn review(reviewer: &str, id: &str, a: (&str, u8), b: (&str, u8), flags: &[ReviewFlag]) -> Review {
    Review {
        reviewer: reviewer.into(),
        id: id.into(),
        a: OutputReview {
            source: a.0.into(),
            rating: Some(a.1),
            flags: flags.iter().copied().collect(),
        },
        b: OutputReview {
            source: b.0.into(),
            rating: Some(b.1),
            flags: BTreeSet::new(),
        },
        comment: String::new(),
        at: 1,
    }
}

#[test]
fn a_newer_line_supersedes_and_summaries_unblind_per_model() {
    let lines = vec![
        review(
            "Ann",
            "r1",
            ("base", 2),
            ("run", 4),
            &[ReviewFlag::Omission],
        ),
        review("Ann", "r2", ("run", 5), ("base", 3), &[]),
        review("Ann", "r1", ("run", 4), ("base", 1), &[ReviewFlag::Jargon]),
        review("Bo", "r1", ("base", 1), ("run", 5), &[]),
    ];
    let kept = latest(&lines);
    assert_eq!(kept.len(), 3, "Ann's second r1 line replaces the first");
    assert_eq!(kept[0].of("base").and_then(|o| o.rating), Some(1));
    let s = summarize(&lines);
    assert_eq!((s.lines, s.reviews, s.complete, s.records), (4, 3, 3, 2));
    assert_eq!(s.reviewers, ["Ann", "Bo"]);
    let base = &s.sources[0];
    assert_eq!(base.source, "base");
    assert_eq!(base.rated, 3);
    assert!((base.mean_rating.expect("mean") - 5.0 / 3.0).abs() < 1e-12);
    assert_eq!(base.flag_rates[&ReviewFlag::Omission], 0.0);
    let run = &s.sources[1];
    assert!((run.mean_rating.expect("mean") - 14.0 / 3.0).abs() < 1e-12);
    assert!((run.flag_rates[&ReviewFlag::Jargon] - 1.0 / 3.0).abs() < 1e-12);
    let a = &s.agreement[0];
    assert_eq!(a.outputs, 2, "both rated r1's two outputs");
    assert_eq!(a.exact, Some(0.5));
}

#[test]
fn blinded_order_is_fixed_per_reviewer_and_random_across_records() {
    let ids: Vec<String> = (0..400).map(|i| format!("d-{i}")).collect();
    let first = |who: &str| -> Vec<bool> {
        ids.iter()
            .map(|id| blinded_order(who, id, ["run", "base"])[0] == "base")
            .collect()
    };
    let ann = first("Ann");
    assert_eq!(ann, first("Ann"));
    assert_eq!(
        blinded_order("Ann", "d-1", ["run", "base"]),
        blinded_order("Ann", "d-1", ["base", "run"])
    );
    let base_first = ann.iter().filter(|b| **b).count();
    assert!((160..240).contains(&base_first), "{base_first} of 400");
    let same = ann
        .iter()
        .zip(first("Bo"))
        .filter(|(a, b)| **a == *b)
        .count();
    assert!(
        (160..240).contains(&same),
        "another reviewer gets another order: {same}"
    );
}

#[test]
fn a_session_saves_at_once_and_continues_where_it_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run").join(REVIEWS_FILE);
    let items: Vec<String> = (0..5).map(|i| format!("d-{i}")).collect();
    let mut s = ReviewSession::open(&path, " Ann ", ["run", "base"], items.clone()).expect("open");
    assert_eq!(s.first_unfinished(), Some(0));
    for id in &items[..2] {
        let mut r = s.review(id);
        r.a.rating = Some(4);
        r.b.rating = Some(2);
        s.save(r).expect("save");
    }
    let mut half = s.review(&items[2]);
    half.a.rating = Some(3);
    s.save(half.clone()).expect("save");
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text.lines().count(), 3);

    let again = ReviewSession::open(&path, "Ann", ["base", "run"], items.clone()).expect("open");
    assert_eq!(again.done(), 2);
    assert_eq!(again.first_unfinished(), Some(2), "the half-rated record");
    assert_eq!(again.review(&items[2]).a.rating, Some(3));
    assert_eq!(
        again.review(&items[2]).a.source,
        half.a.source,
        "same blinding"
    );
    let other = ReviewSession::open(&path, "Bo", ["base", "run"], items).expect("open");
    assert_eq!(other.done(), 0);
}

#[test]
fn a_torn_last_line_is_reported_and_the_next_save_stays_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(REVIEWS_FILE);
    let r = review("Ann", "r1", ("base", 2), ("run", 4), &[]);
    append_review(&path, &r).expect("append");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(b"{\"reviewer\": \"Ann\", \"id\""))
        .expect("torn line");
    append_review(&path, &review("Ann", "r2", ("base", 9), ("run", 4), &[])).expect("append");
    append_review(&path, &review("Ann", "r3", ("base", 3), ("base", 4), &[])).expect("append");
    append_review(&path, &review("Ann", "r4", ("base", 3), ("run", 4), &[])).expect("append");
    let (reviews, issues) = read_reviews(&path).expect("read");
    assert_eq!(
        reviews.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["r1", "r4"]
    );
    let lines: Vec<usize> = issues.iter().map(|i| i.line).collect();
    assert_eq!(lines, [2, 3, 4], "{issues:?}");
    assert_eq!(issues[1].message, "a.rating: 9 is not between 1 and 5");
    assert_eq!(issues[2].message, "a and b: both are \"base\"");
}

#[test]
fn csv_export_has_one_row_per_review() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("reviews.csv");
    let mut corrected = review("Ann", "r1", ("base", 3), ("run", 4), &[ReviewFlag::Harmful]);
    corrected.comment = "Says \"stop\", the note says continue".into();
    let lines = [review("Ann", "r1", ("base", 2), ("run", 4), &[]), corrected];
    assert_eq!(write_csv(&path, &lines).expect("csv"), 1);
    let mut reader = csv::Reader::from_path(&path).expect("read csv");
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][3], "3");
    assert_eq!(&rows[0][4], "harmful");
    assert_eq!(&rows[0][8], "Says \"stop\", the note says continue");
}

#[test]
fn a_chosen_set_limits_and_orders_the_records_reviewed() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("run")).expect("mkdir");
    let path = dir.path().join("run").join(REVIEWS_FILE);
    let set = review_set_path(&path);
    assert_eq!(set, dir.path().join("run").join(REVIEW_SET_FILE));
    let shared: Vec<String> = (0..5).map(|i| format!("d-{i}")).collect();
    let open = || ReviewSession::open(&path, "Ann", ["run", "base"], shared.clone());
    let all = open().expect("open");
    assert_eq!((all.items.clone(), all.chosen), (shared.clone(), false));

    let chosen: Vec<String> = ["d-3", "d-9", "d-1"].map(String::from).to_vec();
    write_review_set(&set, &chosen).expect("write");
    let s = open().expect("open");
    assert_eq!(s.items, ["d-3", "d-1"], "chosen order, shared records only");
    assert!(s.chosen);
    assert_eq!(s.chosen_missing, 1, "d-9 has no pair of outputs");

    let twice = ["d-1", "d-1"].map(String::from).to_vec();
    let err = write_review_set(&set, &twice).expect_err("repeated id");
    assert!(err.message.contains("records[1]"), "{err}");
    assert_eq!(read_review_set(&set).expect("read"), Some(chosen), "kept");

    std::fs::write(&set, "{\"records\": [\"d-1\",]}").expect("write");
    let err = read_review_set(&set).expect_err("bad json");
    assert!(err.to_string().contains("line 1, column"), "{err}");
    assert!(err.to_string().contains(REVIEW_SET_FILE), "{err}");
    assert!(matches!(open(), Err(OpenError::Set(_))));

    clear_review_set(&set).expect("clear");
    assert_eq!(open().expect("open").items, shared);
    clear_review_set(&set).expect("clearing twice is fine");
}
