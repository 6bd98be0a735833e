use super::*;
use serde_json::json;

/// A test project with the base model's and one run's predictions for the same `n` records
/// (run id `20260101-000000`); the run is better on even records. Returns the project folder.
pub(crate) fn sample_project(dir: &Path, n: usize) -> PathBuf {
    std::fs::write(
        dir.join(crate::project::PROJECT_FILE),
        "(name: \"cmp\", task: discharge)",
    )
    .expect("project file");
    for (name, folder) in [
        (BASE, dir.join(BASE_DIR)),
        ("20260101-000000", run_dir(dir, "20260101-000000")),
    ] {
        std::fs::create_dir_all(&folder).expect("mkdir");
        let lines: Vec<String> = (0..n).map(|i| sample_line(i, name).to_string()).collect();
        std::fs::write(folder.join(PREDICTIONS_FILE), lines.join("\n") + "\n").expect("write");
    }
    std::fs::write(run_dir(dir, "20260101-000000").join("config.ron"), "()").expect("config");
    dir.to_path_buf()
}

/// Record `i` as evaluated by `model`: demographics cycle, ROUGE-L falls with `i` for the base.
pub(crate) fn sample_line(i: usize, model: &str) -> Value {
    let input = format!("Diagnosis: heart failure {i}.\nMedications: furosemide 40 mg daily.");
    let reference = format!("You were treated for heart failure {i}. Take furosemide 40 mg daily.");
    let better = model != BASE && i.is_multiple_of(2);
    let prediction = if better {
        format!("You were treated for heart failure {i}. Take furosemide 40 mg daily.")
    } else {
        format!("You had heart failure {i}. Take Lasix 20 mg and warfarin daily.")
    };
    let rouge = if better { 1.0 } else { 0.9 - i as f64 / 100.0 };
    let meds = if better {
        json!({"hallucinated": [], "omitted": [], "mismatched": []})
    } else {
        let warfarin = prediction.find("warfarin").expect("warfarin");
        let dose = prediction.find("20 mg").expect("dose");
        json!({
            "hallucinated": [{"name": "warfarin", "generic": "warfarin", "start": warfarin, "end": warfarin + 8}],
            "omitted": [],
            "mismatched": [{"generic": "furosemide", "field": "dose", "source": "40 mg",
                            "output": "20 mg", "start": dose, "end": dose + 5}]
        })
    };
    let safety = if !better && i.is_multiple_of(3) {
        json!([{"kind": "interaction", "message": "Warfarin with furosemide needs monitoring.",
                "start": null, "end": null}])
    } else {
        json!([])
    };
    let genders = ["F", "M"];
    let ages = [15, 30, 45, 60, 80];
    let ethnicities = ["Hispanic", "White", "Black"];
    json!({
        "id": format!("d-{i:04}"), "input": input, "reference": reference, "prediction": prediction,
        "task": "discharge", "gender": genders[i % 2], "age": ages[i % 5],
        "ethnicity": ethnicities[i % 3], "extra": {"ignored": true},
        "output_cut": model == BASE && i == 1,
        "metrics": {
            "rouge1": {"precision": rouge, "recall": rouge, "fmeasure": rouge},
            "rougeL": {"precision": rouge, "recall": rouge, "fmeasure": rouge},
            "bleu": rouge * 100.0, "fkgl": 6.0 + i as f64 / 10.0, "fre": null, "smog": 8.0,
            "meds": meds, "safety": safety
        }
    })
}

#[test]
fn reads_rows_metrics_and_marks() {
    let (rows, issues) = parse_predictions(sample_line(3, BASE).to_string().as_bytes());
    assert!(issues.is_empty(), "{issues:?}");
    let row = &rows[0];
    assert_eq!(row.id, "d-0003");
    assert_eq!(row.age, Some(60));
    assert_eq!(row.metric("rougeL.fmeasure"), Some(0.87));
    assert_eq!(row.metric("bleu"), Some(87.0));
    assert_eq!(row.metric("fre"), None, "null is absent, never NaN");
    assert_eq!(row.metric("meds.hallucinated"), Some(1.0));
    assert_eq!(row.metric("safety"), Some(1.0));
    assert!(!row.output_cut);
    let meds = row.meds.as_ref().expect("meds");
    let h = &meds.hallucinated[0];
    assert_eq!(&row.prediction[h.start..h.end], "warfarin");
    let m = &meds.mismatched[0];
    assert_eq!(&row.prediction[m.start..m.end], "20 mg");
    assert_eq!(row.safety[0].span, None);
    assert!(row.safety[0].message.starts_with("Warfarin"));
}

#[test]
fn bad_lines_are_reported_with_line_and_field_and_the_rest_kept() {
    let good = sample_line(0, BASE).to_string();
    let mut no_reference = sample_line(1, BASE);
    no_reference
        .as_object_mut()
        .expect("object")
        .remove("reference");
    let mut bad_mention = sample_line(2, BASE);
    bad_mention["metrics"]["meds"]["hallucinated"][0]["start"] = json!("x");
    bad_mention["age"] = json!("old");
    let other_names = json!({"id": 7, "source": "note", "target": "ref", "output": "out"});
    let mut bytes = Vec::new();
    for line in [
        good.as_bytes(),
        no_reference.to_string().as_bytes(),
        b"{\"id\": \"x\", \"input\": \"caf\xe9\"}",
        b"",
        b"{not json",
        bad_mention.to_string().as_bytes(),
        other_names.to_string().as_bytes(),
        good.as_bytes(),
        b"[1, 2]",
    ] {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    let (rows, issues) = parse_predictions(&bytes);
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["d-0000", "d-0002", "7"]);
    assert_eq!(rows[2].input, "note");
    assert_eq!(rows[2].prediction, "out");
    assert!(rows[1].meds.as_ref().expect("meds").hallucinated.is_empty());
    assert_eq!(rows[1].age, None);
    let shown: Vec<String> = issues.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "line 2, field \"reference\": missing (or target)",
            "line 3: not valid UTF-8",
            &shown[2],
            "line 6, field \"age\": expected a number, found \"old\"; ignored",
            &shown[4],
            "line 8, field \"id\": duplicate id \"d-0000\": the earlier line is kept",
            "line 9: not a JSON object",
        ]
    );
    assert!(
        shown[2].starts_with("line 5: not a JSON object: "),
        "{}",
        shown[2]
    );
    let mention = "line 6, field \"metrics.meds.hallucinated\": start: expected a byte offset";
    assert!(shown[4].starts_with(mention), "{}", shown[4]);
    assert_eq!(
        issues.iter().map(|i| i.skipped).collect::<Vec<_>>(),
        [true, true, true, false, false, true, true]
    );
}

#[test]
fn spans_outside_the_text_or_inside_a_character_are_refused() {
    let text = "café au lait";
    assert_eq!(span_in(text, 0, 5), Some(0..5));
    assert_eq!(span_in(text, 0, 4), None, "inside é");
    assert_eq!(span_in(text, 3, 2), None);
    assert_eq!(span_in(text, 10, 40), None);
}

#[test]
fn lists_the_base_and_each_evaluated_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = sample_project(dir.path(), 4);
    std::fs::create_dir_all(run_dir(&project, "20250101-000000")).expect("run without eval");
    let names: Vec<String> = prediction_sources(&project)
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["base", "20260101-000000"]);
    let set = PredictionSet::read(prediction_sources(&project).remove(1)).expect("read");
    assert_eq!(set.rows.len(), 4);
    assert!(set.metric_names().contains(&"rougeL.fmeasure".to_string()));
    let missing = PredictionSet::read(PredictionSource {
        name: "gone".into(),
        path: project.join("gone.jsonl"),
    })
    .expect_err("missing file");
    assert!(missing.to_string().contains("gone.jsonl"), "{missing}");
}

#[test]
fn an_output_cut_at_the_length_limit_is_read_and_a_wrong_mark_is_named() {
    let (rows, issues) = parse_predictions(sample_line(1, BASE).to_string().as_bytes());
    assert!(issues.is_empty(), "{issues:?}");
    assert!(rows[0].output_cut);
    let mut line = sample_line(1, BASE);
    line["output_cut"] = json!("yes");
    let (rows, issues) = parse_predictions(line.to_string().as_bytes());
    assert_eq!(rows.len(), 1, "the row is kept");
    assert!(!rows[0].output_cut);
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].field.as_deref(), Some("output_cut"));
    assert_eq!(issues[0].line, 1);
}
