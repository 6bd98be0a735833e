use super::test_support::{GOOD_A, GOOD_B, ids, load};
use super::*;
use serde_json::Value;
use std::collections::BTreeMap;

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
fn a_pipe_a_device_a_folder_and_a_file_over_the_limit_are_refused_unread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo.jsonl");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());
    let mut refused = vec![
        (PathBuf::from("/dev/zero"), "not a regular file"),
        (dir.path().to_path_buf(), "a folder"),
    ];
    if made {
        // Opening a FIFO with no writer would block forever; it is refused before that.
        refused.push((fifo, "not a regular file"));
    }
    for (path, why) in refused {
        let err = load_path(&path, &LoadOptions::default()).expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains(&path.display().to_string()) && text.contains(why),
            "{text}"
        );
    }
    let big = dir.path().join("big.jsonl");
    std::fs::write(&big, GOOD_A.repeat(10)).expect("write");
    let small = LoadOptions {
        max_file_bytes: 100,
        ..LoadOptions::default()
    };
    let text = load_path(&big, &small).expect_err("too big").to_string();
    assert!(text.contains("over the limit of 100 bytes"), "{text}");
}

#[test]
fn a_repeated_id_is_refused_or_renamed_at_its_line() {
    let row = |id: &str, input: &str| {
        format!(r#"{{"id": "{id}", "input": "{input}", "target": "a target"}}"#)
    };
    let content = [
        row("a", "first"),
        row("b", "second"),
        row("a", "third"),
        row("a~2", "fourth"),
        row("a", "fifth"),
    ]
    .join("\n");
    let refused = load("d.jsonl", &content);
    assert_eq!(ids(&refused), ["a", "b", "a~2"]);
    assert_eq!(refused.record_lines, [1, 2, 4]);
    let messages: Vec<String> = refused.issues.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[0].starts_with(
            "d.jsonl:3: field \"id\": id \"a\" is also the id of the record on line 1; the \
             record was skipped"
        ),
        "{}",
        messages[0]
    );
    assert!(messages[1].starts_with("d.jsonl:5: "), "{}", messages[1]);
    assert!(
        messages[1].contains("--duplicate-ids rename"),
        "{}",
        messages[1]
    );

    let opts = LoadOptions {
        duplicate_ids: DuplicateIds::Rename,
        ..LoadOptions::default()
    };
    let renamed = super::test_support::load_bytes("d.jsonl", content.as_bytes(), &opts);
    // "a~2" is the file's own, so the first repeat of "a" becomes "a~3".
    assert_eq!(ids(&renamed), ["a", "b", "a~3", "a~2", "a~4"]);
    assert_eq!(renamed.record_lines, [1, 2, 3, 4, 5]);
    assert_eq!(
        renamed.issues[0].to_string(),
        "d.jsonl:3: field \"id\": id \"a\" is also the id of the record on line 1; renamed \"a~3\""
    );
    assert_eq!(renamed.issues.len(), 2);
    // CSV and a JSON array are checked the same way.
    let csv = load("d.csv", "id,input,target\nx,one,t\nx,two,t\n");
    assert_eq!((ids(&csv), csv.issues[0].line), (vec!["x"], 3));
    let array = load(
        "d.json",
        &format!("[\n{},\n{}\n]", row("y", "one"), row("y", "two")),
    );
    assert_eq!((ids(&array), array.issues[0].line), (vec!["y"], 3));
}
