//! Tests of column mapping, run through whole files so each asserts what a user would load.

use crate::data::load::test_support::{GOOD_A, GOOD_B, ids, issue_at, load, load_bytes};
use crate::data::load::{LoadOptions, MISSING_FIELD};
use crate::data::record::Task;

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
