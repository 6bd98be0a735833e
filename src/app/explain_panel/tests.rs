use super::*;
use crate::analysis::explain::{
    LengthPoint, LengthResult, LimeResult, SectionImpact, SectionsResult, Targeted, Throughput,
    features::words,
};
use crate::project::predictions::run_dir;
use crate::project::predictions::tests::sample_project;
use crate::test_support::{draw_alone, submitted_jobs};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

const RUN: &str = "20260101-000000";

fn targeted<T>(result: T) -> Targeted<T> {
    Targeted {
        target: "output".into(),
        target_text: "the output".into(),
        elapsed_s: 1.5,
        result,
    }
}

/// A saved explanation of record d-0000 whose LIME weight grows with the word's position,
/// "furosemide" the strongest.
fn saved_explanation(project: &Path) -> Explanation {
    let input = "Diagnosis: heart failure 0.\nMedications: furosemide 40 mg daily.".to_string();
    let weights: Vec<FeatureWeight> = words(&input)
        .into_iter()
        .enumerate()
        .map(|(i, w)| FeatureWeight {
            weight: if w.label == "furosemide" {
                2.5
            } else {
                (i as f64 - 3.0) * 0.25
            },
            label: w.label,
            start: w.start,
            end: w.end,
        })
        .collect();
    let e = Explanation {
        record: "d-0000".into(),
        model: RUN.into(),
        input,
        reference: "ref".into(),
        output: "You were treated for heart failure 0. Take furosemide 40 mg daily.".into(),
        output_source: "predictions.jsonl".into(),
        lime: Some(targeted(LimeResult {
            features: FeatureKind::Words,
            samples: 64,
            seed: 1,
            kernel_width: 25.0,
            weights,
            intercept: -30.0,
            r2: 0.8,
            full_loglik: -20.0,
            scoring: Throughput {
                sequences: 64,
                tokens: 6400,
                seconds: 2.0,
                tokens_per_s: 3200.0,
            },
        })),
        saliency: None,
        sections: Some(targeted(SectionsResult {
            full_loglik: -20.0,
            full_rouge_l: 0.9,
            output_rouge_l: 0.9,
            regenerated_differs: false,
            sections: vec![SectionImpact {
                section: "Medications".into(),
                start: 28,
                end: 64,
                loglik_change: -12.5,
                rouge_l_change: -0.4,
                output: "You had heart failure.".into(),
            }],
        })),
        length: Some(targeted(LengthResult {
            points: vec![
                LengthPoint {
                    fraction: 0.5,
                    words: 4,
                    loglik_per_token: -3.0,
                    rouge_l: 0.4,
                },
                LengthPoint {
                    fraction: 1.0,
                    words: 8,
                    loglik_per_token: -1.0,
                    rouge_l: 0.9,
                },
            ],
        })),
    };
    let path = explanation_path(&run_dir(project, RUN), "d-0000");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, serde_json::to_vec(&e).expect("json")).expect("write");
    e
}

fn harness(project: &Path) -> Harness<'static, ExplainPanel> {
    let mut panel = ExplainPanel::new(ExplainUiState::default());
    panel.set_project(project);
    let mut h = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, panel: &mut ExplainPanel| draw_alone(ui, panel), panel);
    h.run();
    h
}

#[test]
fn a_saved_explanation_shows_coloured_words_bars_sections_and_length() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = sample_project(dir.path(), 3);
    let saved = saved_explanation(&project);
    let mut h = harness(&project);
    assert_eq!(h.state().state.source.as_deref(), Some(RUN));
    assert_eq!(h.state().state.record.as_deref(), Some("d-0000"));
    assert_eq!(h.state().explanation.as_ref(), Some(&saved));
    assert!(h.query_by_label("Input").is_some());
    assert!(h.query_by_label("Top features").is_some());
    assert!(h.query_by_label("Section importance").is_some());
    assert!(h.query_by_label("Input length").is_some());
    assert!(
        h.query_by_label_contains("LIME on words for the output")
            .is_some()
    );
    // The legend's ends are the largest absolute weight.
    assert_eq!(
        h.query_all_by_label("+2.500").count(),
        2,
        "the legend's end and the top bar"
    );
    assert!(h.query_by_label("-2.500").is_some());
    // Hovering a word shows its weight.
    h.get_all_by_label("furosemide")
        .next()
        .expect("word")
        .hover();
    h.run();
    assert!(h.query_by_label("furosemide: +2.5000").is_some());

    // Another record has no explanation yet.
    h.state_mut().state.record = Some("d-0001".into());
    h.state_mut().load_explanation();
    h.run();
    assert!(h.state().explanation.is_none());
    assert!(
        h.query_by_label_contains("No explanation of this record yet")
            .is_some()
    );
}

#[test]
fn explain_requests_the_chosen_method_and_progress_offers_cancel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = sample_project(dir.path(), 3);
    let mut h = harness(&project);
    h.state_mut().state.settings.samples = 64;
    h.get_by_label("Explain").click();
    h.run();
    let request = submitted_jobs(h.state_mut())
        .into_iter()
        .find_map(|c| match c {
            Command::Explain(request) => Some(*request),
            _ => None,
        })
        .expect("a request");
    assert_eq!(request.record, "d-0000");
    assert_eq!(request.target, Target::Run(RUN.into()));
    assert_eq!(request.settings.method, Method::Lime);
    assert_eq!(request.settings.samples, 64);

    h.state_mut().submitted(Some(7));
    h.state_mut().on_event(&Event::Progress {
        job: 7,
        stage: "scoring perturbed inputs".into(),
        done: 16,
        total: 64,
        eta: None,
    });
    h.run();
    assert!(
        h.query_by_label_contains("scoring perturbed inputs 16/64")
            .is_some()
    );
    assert!(h.query_by_label("Explain").is_none());
    h.get_by_label("Cancel").click();
    h.run();
    assert!(
        h.state_mut()
            .take_requests()
            .iter()
            .any(|r| matches!(r, Request::Cancel))
    );
    h.state_mut().on_event(&Event::Cancelled { job: 7 });
    h.run();
    assert!(!h.state().is_running());
    assert!(h.query_by_label("Cancelled.").is_some());
}

#[test]
fn targets_offer_the_medications_the_output_names() {
    let names: Vec<String> = targets("Take furosemide 40 mg and Lasix daily; furosemide again.")
        .iter()
        .map(TargetText::name)
        .collect();
    assert_eq!(
        names,
        [
            "output",
            "reference",
            "medication:furosemide",
            "medication:Lasix"
        ]
    );
}
