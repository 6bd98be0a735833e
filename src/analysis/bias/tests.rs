use super::*;
use crate::project::predictions::parse_predictions;
use serde_json::{Value, json};

/// A record's gender, age, ethnicity and metric value.
type Item<'a> = (Option<&'a str>, Option<u32>, Option<&'a str>, Option<f64>);

/// Rows with one metric `score` and the given demographics.
fn rows_of(items: &[Item]) -> Vec<PredictionRow> {
    let text: String = items
        .iter()
        .enumerate()
        .map(|(i, (g, a, e, v))| {
            let metrics = v.map_or(json!({}), |v| json!({"score": v, "loss": 1.0}));
            let line = json!({"id": format!("r{i}"), "input": "i", "reference": "r",
                "prediction": "p", "gender": g, "age": a, "ethnicity": e, "metrics": metrics});
            format!("{line}\n")
        })
        .collect();
    let (rows, issues) = parse_predictions(text.as_bytes());
    assert!(issues.is_empty(), "{issues:?}");
    rows
}

fn key(parts: &[(Demographic, &str)]) -> SliceKey {
    SliceKey(parts.iter().map(|(d, v)| (*d, v.to_string())).collect())
}

fn options(metric: &str) -> BiasOptions {
    BiasOptions {
        metric: metric.into(),
        permutations: 1_999,
        ..BiasOptions::default()
    }
}

#[test]
fn a_worse_group_is_flagged_a_small_one_is_not_and_numbers_add_up() {
    // 60 F at 0.5 ± 0.05, 60 M at 0.3 ± 0.05; among them 9 "Other" ethnicity records at 0.0,
    // spread over genders and ages.
    let mut items = Vec::new();
    for i in 0..120u32 {
        let f = i % 2 == 0;
        let jitter = f64::from(i % 5) * 0.025 - 0.05;
        let other = i % 13 == 5;
        let v = if other {
            0.0
        } else if f {
            0.5 + jitter
        } else {
            0.3 + jitter
        };
        let ethnicity = if other { "Other" } else { "White" };
        items.push((
            Some(if f { "F" } else { "M" }),
            Some(20 + i % 60),
            Some(ethnicity),
            Some(v),
        ));
    }
    items.push((None, None, None, None));
    let rows = rows_of(&items);
    let report = audit(&rows, &options("score")).expect("audit");
    assert_eq!(report.missing, 1);
    assert_eq!(report.overall.n, 120);
    let values: Vec<f64> = rows.iter().filter_map(|r| r.metric("score")).collect();
    let overall = values.iter().sum::<f64>() / 120.0;
    assert!((report.overall.mean - overall).abs() < 1e-12);
    assert!(report.overall.ci[0] < overall && overall < report.overall.ci[1]);

    let m = report
        .slice(&key(&[(Demographic::Gender, "M")]))
        .expect("M");
    assert_eq!(m.n, 60);
    assert!((m.diff_to_overall - (m.mean - overall)).abs() < 1e-12);
    assert!((m.ratio_to_overall.expect("ratio") - m.mean / overall).abs() < 1e-12);
    assert!(m.relative_gap.expect("gap") < -0.10 && m.q.expect("q") < 0.01);
    assert!(m.flagged, "{m:?}");
    let f = report
        .slice(&key(&[(Demographic::Gender, "F")]))
        .expect("F");
    assert!(
        !f.flagged,
        "better than overall is not a disparity against F"
    );
    let other = report
        .slice(&key(&[(Demographic::Ethnicity, "Other")]))
        .expect("Other");
    assert!(other.small && other.p.is_none() && other.q.is_none() && !other.flagged);
    assert_eq!(other.mean, 0.0);
    // Intersections exist with the dimensions in the given order.
    let fm = key(&[
        (Demographic::Gender, "M"),
        (Demographic::Ethnicity, "White"),
    ]);
    assert!(report.slice(&fm).is_some_and(|s| s.flagged));
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.starts_with("Flagged: gender M"))
    );
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.contains("within a flagged group") && f.contains("M × White")),
        "{:?}",
        report.findings
    );
    assert_eq!(report.mitigations.len(), 1);
    assert!(report.mitigations[0].contains("check the references"));
}

#[test]
fn higher_is_worse_metrics_flag_the_higher_group_and_results_are_seeded() {
    let items: Vec<_> = (0..80u32)
        .map(|i| {
            let old = i % 2 == 0;
            let v = if old { 2.0 } else { 1.0 } + f64::from(i % 4) * 0.1;
            (
                Some("F"),
                Some(if old { 70 } else { 30 }),
                Some("White"),
                Some(v),
            )
        })
        .collect();
    let rows: Vec<PredictionRow> = rows_of(&items)
        .into_iter()
        .map(|mut r| {
            let v = r.metric("score").expect("score");
            r.metrics = vec![("loss".into(), v)];
            r
        })
        .collect();
    let report = audit(&rows, &options("loss")).expect("audit");
    assert!(report.higher_is_worse);
    let old = report
        .slice(&key(&[(Demographic::AgeGroup, "65+")]))
        .expect("65+");
    let young = report
        .slice(&key(&[(Demographic::AgeGroup, "18-35")]))
        .expect("18-35");
    assert!(old.flagged && !young.flagged);
    // Age groups come youngest first.
    let ages: Vec<String> = report
        .slices
        .iter()
        .filter(|s| s.dims.dims() == [Demographic::AgeGroup])
        .map(|s| s.dims.label())
        .collect();
    assert_eq!(ages, ["18-35", "65+"]);
    assert_eq!(report, audit(&rows, &options("loss")).expect("again"));
    let other_seed = BiasOptions {
        seed: 99,
        ..options("loss")
    };
    assert_ne!(
        report.overall.ci,
        audit(&rows, &other_seed).expect("seed 99").overall.ci
    );
}

#[test]
fn bad_options_and_unknown_metrics_are_named() {
    let rows = rows_of(&[(Some("F"), Some(30), Some("White"), Some(0.5))]);
    let err = audit(&rows, &options("rouge9")).unwrap_err().to_string();
    assert!(
        err.contains("\"rouge9\"") && err.contains("loss, score"),
        "{err}"
    );
    let none = BiasOptions {
        dims: vec![],
        ..options("score")
    };
    assert_eq!(audit(&rows, &none), Err(BiasError::NoDimensions));
    let wide = BiasOptions {
        threshold: 10.0,
        ..options("score")
    };
    assert!(audit(&rows, &wide).is_err());
    assert_eq!(
        parse_dims("gender, Age ,race,gender"),
        Ok(vec![
            Demographic::Gender,
            Demographic::AgeGroup,
            Demographic::Ethnicity
        ])
    );
    assert!(parse_dims("income").unwrap_err().contains("income"));
    let found = vec![
        "fkgl".to_string(),
        "rougeL.fmeasure".into(),
        "meds.hallucinated".into(),
    ];
    assert_eq!(
        resolve_metric("rougeL", &found).as_deref(),
        Some("rougeL.fmeasure")
    );
    assert_eq!(resolve_metric("grade", &found).as_deref(), Some("fkgl"));
    assert_eq!(
        resolve_metric("hallucinated", &found).as_deref(),
        Some("meds.hallucinated")
    );
}

#[test]
fn report_serializes_as_the_contract_says() {
    let items: Vec<_> = (0..30u32)
        .map(|i| (Some("F"), Some(40), Some("Asian"), Some(f64::from(i))))
        .collect();
    let report = audit(&rows_of(&items), &options("score")).expect("audit");
    let v = serde_json::to_value(&report).expect("json");
    for k in [
        "metric",
        "overall",
        "slices",
        "between_groups",
        "to_overall",
        "findings",
    ] {
        assert!(v.get(k).is_some(), "{k} missing");
    }
    let slice = &v["slices"][0];
    assert_eq!(slice["dims"], json!({"gender": "F"}));
    for k in [
        "n",
        "mean",
        "ci",
        "diff_to_overall",
        "ratio_to_overall",
        "p",
        "q",
        "flagged",
    ] {
        assert!(slice.get(k).is_some(), "{k} missing in {slice}");
    }
    assert_eq!(
        v["slices"][3]["dims"],
        json!({"gender": "F", "age_group": "35-50"})
    );
    // One group only: everything in it, nothing left to test against.
    assert_eq!(slice["p"], Value::Null);
    assert_eq!(v["between_groups"]["gender"]["difference"], json!(0.0));
}

/// The committed fixture of scripts/make-bias-fixture.py: per-example values with groups and
/// Fairlearn's MetricFrame results for every dimension and pair.
#[test]
fn difference_and_ratio_equal_fairlearns_on_the_committed_fixture() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bias/fairlearn.json");
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    let items: Vec<_> = fixture["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                r["gender"].as_str(),
                r["age"].as_u64().map(|a| a as u32),
                r["ethnicity"].as_str(),
                r["value"].as_f64(),
            )
        })
        .collect();
    let rows = rows_of(&items);
    let report = audit(
        &rows,
        &BiasOptions {
            permutations: 0,
            ..options("score")
        },
    )
    .expect("audit");
    let close = |a: f64, b: &Value, what: &str| {
        let b = b.as_f64().unwrap_or_else(|| panic!("{what}: {b}"));
        assert!((a - b).abs() < 1e-9, "{what}: {a} vs Fairlearn {b}");
    };
    let frames = fixture["frames"].as_object().expect("frames");
    assert_eq!(frames.len(), 6);
    for (name, frame) in frames {
        close(report.overall.mean, &frame["overall"], "overall");
        let groups = frame["by_group"].as_object().expect("by_group");
        let ours: Vec<&SliceReport> = report
            .slices
            .iter()
            .filter(|s| dims_name(&s.dims.dims()) == *name)
            .collect();
        assert_eq!(ours.len(), groups.len(), "{name}: groups");
        for s in ours {
            close(
                s.mean,
                &groups[&s.dims.label()],
                &format!("{name} {}", s.dims.label()),
            );
        }
        for (method, ours) in [
            ("between_groups", &report.between_groups),
            ("to_overall", &report.to_overall),
        ] {
            let d = ours[name.as_str()];
            close(
                d.difference,
                &frame[method]["difference"],
                &format!("{name} {method} difference"),
            );
            close(
                d.ratio.expect("ratio"),
                &frame[method]["ratio"],
                &format!("{name} {method} ratio"),
            );
        }
    }
}

/// A group of fewer than five records has no interval (null in JSON, "not estimable" in
/// words); a group of five or more has one.
#[test]
fn intervals_of_groups_under_five_records_are_not_estimable() {
    let items: Vec<Item> = (0..40)
        .map(|i| {
            let gender = if i < 3 {
                "X"
            } else if i % 2 == 0 {
                "F"
            } else {
                "M"
            };
            (
                Some(gender),
                Some(40),
                Some("White"),
                Some((i % 7) as f64 / 7.0),
            )
        })
        .collect();
    let report = audit(&rows_of(&items), &options("score")).expect("audit");
    let tiny = report
        .slice(&key(&[(Demographic::Gender, "X")]))
        .expect("the three-record group");
    assert_eq!(tiny.n, 3);
    assert!(tiny.ci.iter().all(|b| b.is_nan()), "{:?}", tiny.ci);
    assert_eq!(
        interval_text(tiny.ci, |x| format!("{x:.2}")),
        "not estimable (n < 5)"
    );
    let json = serde_json::to_value(tiny).expect("json");
    assert_eq!(json["ci"], json!([null, null]));
    let big = report
        .slice(&key(&[(Demographic::Gender, "F")]))
        .expect("F");
    assert!(big.ci.iter().all(|b| b.is_finite()));
    assert!(interval_text(big.ci, |x| format!("{x:.2}")).starts_with("95% interval "));
}

/// A group whose gap comes from one record says so, naming the record: without it (in the
/// group and overall) the gap is within the threshold.
#[test]
fn a_gap_made_by_one_record_says_so() {
    let items: Vec<Item> = (0..200)
        .map(|i| {
            let gender = if i % 2 == 0 { "F" } else { "M" };
            // Everyone scores about 0.5; one F record scores -40 (a broken reference, say).
            let v = if i == 0 {
                -40.0
            } else {
                0.5 + (i % 5) as f64 * 0.01
            };
            (Some(gender), Some(40), Some("White"), Some(v))
        })
        .collect();
    let rows = rows_of(&items);
    let report = audit(&rows, &options("score")).expect("audit");
    let f = report
        .slice(&key(&[(Demographic::Gender, "F")]))
        .expect("F");
    assert_eq!(f.driven_by.as_deref(), Some("r0"));
    let m = report
        .slice(&key(&[(Demographic::Gender, "M")]))
        .expect("M");
    assert_eq!(m.driven_by, None);
    let said: Vec<&String> = report
        .findings
        .iter()
        .filter(|l| l.starts_with("One record makes"))
        .collect();
    assert_eq!(said.len(), 1, "{:?}", report.findings);
    assert!(said[0].contains("without r0 it is within 10%"), "{said:?}");
}
