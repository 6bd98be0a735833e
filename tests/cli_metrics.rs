//! `lablens metrics` end to end: JSON shape of the contract, the numbers of the reference tools,
//! and bad input reported by file, line and field while the rest is scored.

mod common;
use common::lablens;

use serde_json::Value;
use std::process::Output;

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn metrics_json_has_the_contract_shape_and_reference_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pred.jsonl");
    // The first fixture pairs, whose rouge-score and sacrebleu values are known.
    let fixture = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/eval/text_pairs.jsonl"),
    )
    .expect("fixture");
    let rows: Vec<Value> = fixture
        .lines()
        .take(40)
        .map(|l| serde_json::from_str(l).expect("row"))
        .collect();
    let mut lines: Vec<String> = rows
        .iter()
        .map(|r| {
            serde_json::json!({"id": r["id"], "prediction": r["prediction"], "reference": r["reference"]})
                .to_string()
        })
        .collect();
    lines.push(
        serde_json::json!({
            "id": "with-source",
            "prediction": "Take Lasix 20 mg by mouth once a day. Take ibuprofen 400 mg.",
            "reference": "Take furosemide 40 mg once a day.",
            "source": "Discharge Medications:\nFurosemide 40 mg PO daily\nLisinopril 10 mg PO daily\n"
        })
        .to_string(),
    );
    std::fs::write(&path, lines.join("\n")).expect("write");

    let out = lablens(&["metrics", "--pred", path.to_str().expect("utf8"), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json_of(&out);
    let examples = doc["examples"].as_array().expect("examples");
    assert_eq!(examples.len(), 41);
    for (row, got) in rows.iter().zip(examples) {
        assert_eq!(got["id"], row["id"]);
        let want = row["rouge"]["rougeLsum"][2].as_f64().expect("f");
        let have = got["rougeLsum"]["fmeasure"].as_f64().expect("f");
        assert!(
            (want - have).abs() < 1e-9,
            "{}: {have} vs {want}",
            row["id"]
        );
        let bleu = got["bleu"].as_f64().expect("bleu");
        assert!((bleu - row["bleu"].as_f64().expect("bleu")).abs() < 1e-6);
    }
    let last = &examples[40];
    assert_eq!(last["meds"]["hallucinated"][0]["generic"], "ibuprofen");
    assert_eq!(last["meds"]["omitted"][0]["name"], "Lisinopril");
    assert_eq!(last["meds"]["mismatched"][0]["field"], "dose");
    let corpus = &doc["corpus"];
    for key in ["rouge1", "rouge2", "rougeL", "rougeLsum"] {
        let f = &corpus[key]["fmeasure"];
        assert!(
            f["low"].as_f64() <= f["value"].as_f64() && f["value"].as_f64() <= f["high"].as_f64()
        );
    }
    assert!(corpus["bleu"]["value"].is_number() && corpus["fkgl"]["low"].is_number());
    assert!(corpus["meds"]["hallucinated_per_example"]["value"].is_number());

    let table = lablens(&["metrics", "--pred", path.to_str().expect("utf8")]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("ROUGE-Lsum F1") && text.contains("with-source"),
        "{text}"
    );
}

#[test]
fn bad_lines_are_named_and_the_rest_scored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.jsonl");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"{\"id\":\"ok\",\"prediction\":\"Answer: B\",\"reference\":\"Answer: B. Gout\",\"task\":\"qa\"}\n");
    bytes.extend_from_slice(b"{\"id\":\"alias\",\"output\":\"Answer: C\",\"target\":\"Answer: B. Gout\",\"task\":\"qa\"}\n");
    bytes.extend_from_slice(b"{\"id\":\"noref\",\"prediction\":\"x\"}\n");
    bytes
        .extend_from_slice(b"{\"id\":\"latin1\",\"prediction\":\"caf\xe9\",\"reference\":\"x\"}\n");
    bytes.extend_from_slice(b"{\"id\":\"names\",\"hyp\":\"x\",\"ref\":\"y\"}\n");
    bytes.extend_from_slice(
        b"{\"id\":\"empty\",\"prediction\":\"\",\"reference\":\"Answer: A\",\"task\":\"qa\"}\n",
    );
    std::fs::write(&path, bytes).expect("write");
    let p = path.to_str().expect("utf8");
    let out = lablens(&["metrics", "--pred", p, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{p}:3: field \"reference\": missing")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{p}:4: not valid UTF-8")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{p}:5: field \"prediction\": missing")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{p}:6: field \"prediction\": is empty")),
        "{stderr}"
    );
    let doc = json_of(&out);
    let ids: Vec<&str> = doc["examples"]
        .as_array()
        .expect("examples")
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["ok", "alias", "empty"]);
    assert_eq!(doc["issues"].as_array().map(Vec::len), Some(4));
    assert!(doc["examples"][2]["fkgl"].is_null());
    assert_eq!(doc["examples"][0]["correct"], true);
    assert_eq!(doc["examples"][1]["correct"], false);
    let acc = doc["corpus"]["accuracy"]["value"]
        .as_f64()
        .expect("accuracy");
    assert!((acc - 1.0 / 3.0).abs() < 1e-12);

    let none = dir.path().join("none.jsonl");
    std::fs::write(&none, "{\"a\": 1}\n").expect("write");
    let out = lablens(&["metrics", "--pred", none.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    let missing = lablens(&["metrics", "--pred", "/nonexistent/p.jsonl"]);
    assert_eq!(missing.status.code(), Some(2));
}
