use super::*;
use crate::data::record::AgeGroup;
use crate::project::predictions::tests::sample_project;
use crate::project::reviews::{REVIEWS_FILE, ReviewFlag, read_reviews};
use crate::test_support::draw_alone;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

const RUN: &str = "20260101-000000";

fn harness(project: &Path, state: CompareUiState) -> Harness<'static, ComparePanel> {
    let mut panel = ComparePanel::new(state);
    panel.set_project(project);
    let mut h = Harness::builder()
        .with_size(egui::vec2(1500.0, 950.0))
        .build_ui_state(|ui, panel: &mut ComparePanel| draw_alone(ui, panel), panel);
    // Generous: the files are read on a thread, and the whole suite may be loading the CPU.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        h.step();
        if h.state().compared.as_ref().is_some_and(|c| c.b.is_some()) {
            h.run();
            return h;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the predictions did not load");
}

fn selected_id(h: &Harness<'_, ComparePanel>) -> Option<String> {
    h.state().state.selected_id.clone()
}

#[test]
fn the_newest_run_is_compared_with_the_base_and_rows_select_by_click_and_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = sample_project(dir.path(), 12);
    let mut h = harness(&project, CompareUiState::default());
    assert_eq!(h.state().state.a.as_deref(), Some(RUN));
    assert_eq!(h.state().state.b.as_deref(), Some("base"));
    assert_eq!(h.state().rows.len(), 12);
    assert!(h.query_by_label_contains("Select a row").is_some());

    h.get_by_label("d-0002").click();
    h.run();
    assert_eq!(selected_id(&h).as_deref(), Some("d-0002"));
    assert!(h.query_by_label("Record d-0002").is_some());
    assert!(h.query_by_label(&format!("Output A: {RUN}")).is_some());
    assert!(h.query_by_label("Output B: base").is_some());
    // The base's output names warfarin, which the source does not: a finding in words; the
    // run's output of an even record is faithful.
    assert!(h.query_by_label("Not in the source: warfarin").is_some());
    assert!(
        h.query_by_label("furosemide dose differs: source 40 mg, output 20 mg")
            .is_some()
    );

    for (key, expected) in [
        (egui::Key::ArrowDown, "d-0003"),
        (egui::Key::J, "d-0004"),
        (egui::Key::K, "d-0003"),
        (egui::Key::ArrowUp, "d-0002"),
    ] {
        h.key_press(key);
        h.run();
        assert_eq!(selected_id(&h).as_deref(), Some(expected), "{key:?}");
    }
}

#[test]
fn rows_sort_worst_first_and_filter_by_group_and_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = sample_project(dir.path(), 12);
    let mut h = harness(&project, CompareUiState::default());
    h.state_mut().state.sort.metric = Some("rougeL.fmeasure".into());
    h.run();
    let first = |h: &Harness<'_, ComparePanel>| {
        let p = h.state();
        let c = p.compared.as_ref().expect("compared");
        p.rows
            .iter()
            .map(|&i| c.a.rows[i].id.clone())
            .collect::<Vec<_>>()
    };
    // The run is perfect on even records; on odd ones its ROUGE-L falls with the index.
    assert_eq!(first(&h)[..3], ["d-0011", "d-0009", "d-0007"]);
    h.key_press(egui::Key::ArrowDown);
    h.run();
    assert_eq!(
        selected_id(&h).as_deref(),
        Some("d-0011"),
        "keys follow the sorted order"
    );

    h.state_mut().state.sort.side = Side::B;
    h.run();
    assert_eq!(first(&h)[..2], ["d-0011", "d-0010"], "the base's scores");

    h.state_mut().state.filters.ethnicity = Some("Hispanic".into());
    h.state_mut().state.filters.age_group = Some(AgeGroup::From50To65);
    h.run();
    assert_eq!(first(&h), ["d-0003"]);
    assert!(h.query_by_label("Clear filters").is_some());
    h.get_by_label("Clear filters").click();
    h.run();
    assert_eq!(first(&h).len(), 12);

    h.state_mut().state.filters.problem = ProblemFilter::Safety;
    h.state_mut().state.sort = SortKey::default();
    h.run();
    // Safety flags: the base on records divisible by 3, the run on odd ones among them.
    assert_eq!(first(&h), ["d-0000", "d-0003", "d-0006", "d-0009"]);
}

#[test]
fn a_project_without_predictions_says_how_to_make_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut panel = ComparePanel::new(CompareUiState::default());
    panel.set_project(dir.path());
    let mut h = Harness::builder()
        .with_size(egui::vec2(1200.0, 800.0))
        .build_ui_state(|ui, panel: &mut ComparePanel| draw_alone(ui, panel), panel);
    h.run();
    assert!(h.query_by_label("No predictions yet").is_some());
    let command = format!("lablens eval --project {} --run R", dir.path().display());
    assert!(h.query_by_label(&command).is_some());
    // Or from here: the window sends the request to the engine.
    h.get_by_label("Evaluate…").click();
    h.run();
    h.get_by_label("the base model").click();
    h.run();
    let asked: Vec<Target> = h
        .state_mut()
        .take_requests()
        .into_iter()
        .filter_map(|r| match r {
            Request::Evaluate(target) => Some(target),
            _ => None,
        })
        .collect();
    assert_eq!(asked, [Target::Base]);

    let project = sample_project(dir.path(), 3);
    h.get_by_label("Look again").click();
    for _ in 0..300 {
        h.step();
        if h.state().compared.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    h.run();
    assert_eq!(h.state().rows.len(), 3, "{}", project.display());
}

fn review_state(reviewer: &str) -> CompareUiState {
    CompareUiState {
        review_mode: true,
        reviewer: reviewer.into(),
        ..CompareUiState::default()
    }
}

fn saved(project: &Path) -> Vec<crate::project::reviews::Review> {
    let path = project.join("runs").join(RUN).join(REVIEWS_FILE);
    let (lines, issues) = read_reviews(&path).expect("read");
    assert!(issues.is_empty(), "{issues:?}");
    lines
}

/// Clicks the `nth` widget labelled `label` (0: Version A's, 1: Version B's).
fn click_nth(h: &mut Harness<'_, ComparePanel>, label: &str, nth: usize) {
    h.get_all_by_label(label)
        .nth(nth)
        .unwrap_or_else(|| panic!("no {label} #{nth}"))
        .click();
    h.run();
}

#[test]
fn review_ratings_are_saved_at_once_and_survive_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = sample_project(dir.path(), 6);
    let mut h = harness(&project, review_state(""));
    h.get_by_label("Your name").click();
    h.run();
    h.get_by_label("Your name").type_text("Dr Ames");
    h.run();
    h.get_by_label("Start reviewing").click();
    h.run();
    assert_eq!(h.state().state.reviewer, "Dr Ames");
    assert!(h.query_by_label("Record 1 of 6 · 0 of 6 rated").is_some());
    assert!(h.query_by_label("Version A").is_some());
    assert!(
        h.query_by_label_contains(RUN).is_none(),
        "blinded: no model names"
    );
    assert!(
        h.query_by_label(detail::CUT_NOTE).is_none(),
        "neither is cut"
    );

    click_nth(&mut h, "4", 0);
    let lines = saved(&project);
    assert_eq!(lines.len(), 1, "saved with the first click");
    assert_eq!(lines[0].a.rating, Some(4));
    assert_eq!(lines[0].b.rating, None);
    click_nth(&mut h, "Could harm the patient", 1);
    click_nth(&mut h, "2", 1);
    let lines = saved(&project);
    assert_eq!(lines.len(), 3);
    let last = &lines[2];
    assert_eq!((last.a.rating, last.b.rating), (Some(4), Some(2)));
    assert!(last.b.flags.contains(&ReviewFlag::Harmful));
    assert_eq!(last.id, "d-0000");
    assert!(h.query_by_label("Record 1 of 6 · 1 of 6 rated").is_some());

    h.get_by_label("Next").click();
    h.run();
    click_nth(&mut h, "5", 0);
    assert_eq!(saved(&project).len(), 4);
    drop(h);

    // Reopened: the second record is half rated, so the reviewer continues there.
    let h = harness(&project, review_state("Dr Ames"));
    assert_eq!(h.state().review.position, 1);
    assert!(h.query_by_label("Record 2 of 6 · 1 of 6 rated").is_some());
    assert!(
        h.query_by_label("5 of 5, excellent").is_some(),
        "the saved rating is shown"
    );
    assert_eq!(
        h.get_all_by_label("1 very poor · 2 poor · 3 acceptable · 4 good · 5 excellent")
            .count(),
        2,
        "the scale's words in sight under each version"
    );
    assert!(h.query_by_label("not rated yet").is_some());
    assert_eq!(
        h.get_all_by_label(detail::CUT_NOTE).count(),
        1,
        "the base model's output of d-0001 stopped at the length limit"
    );
}

#[test]
fn results_unblind_and_compare_two_reviewers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = sample_project(dir.path(), 4);
    for (who, better) in [("Ann", 5), ("Bo", 4)] {
        let mut h = harness(&project, review_state(who));
        for item in 0..4 {
            let review = h
                .state()
                .review
                .session
                .as_ref()
                .expect("session")
                .review(&format!("d-{item:04}"));
            // Each reviewer rates the run's output higher, wherever it is shown.
            let (run_side, base_side) = if review.a.source == RUN {
                (0, 1)
            } else {
                (1, 0)
            };
            click_nth(&mut h, &better.to_string(), run_side);
            click_nth(&mut h, "2", base_side);
            if item < 3 {
                h.get_by_label("Next").click();
                h.run();
            }
        }
        assert!(h.query_by_label("Record 4 of 4 · 4 of 4 rated").is_some());
    }
    let mut h = harness(&project, review_state("Bo"));
    h.get_by_label("Show results").click();
    h.run();
    // Behind a confirmation: nothing is shown until it is given.
    assert!(h.query_by_label_contains("Version A was").is_none());
    h.get_by_label("Keep reviewing").click();
    h.run();
    assert!(h.query_by_label("Show results").is_some());
    h.get_by_label("Show results").click();
    h.run();
    h.get_by_label("Show them").click();
    h.run();
    assert!(h.query_by_label_contains("Version A was").is_some());
    assert!(
        h.query_by_label("4.50").is_some(),
        "the run's mean over both reviewers"
    );
    assert!(h.query_by_label("2.00").is_some(), "the base's");
    let agreement = h
        .query_by_label_contains("Ann and Bo: 8 versions rated by both, same rating 50%")
        .is_some();
    assert!(agreement);
    h.get_by_label("Save as CSV").click();
    h.run();
    let csv = project.join("runs").join(RUN).join("reviews.csv");
    let text = std::fs::read_to_string(&csv).expect("csv written");
    assert_eq!(text.lines().count(), 9, "a header and 8 reviews");
}

#[test]
fn a_set_that_appears_while_open_is_shown_against_the_one_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = sample_project(dir.path(), 4);
    let run_file = project
        .join("runs")
        .join(RUN)
        .join(crate::project::predictions::PREDICTIONS_FILE);
    let aside = dir.path().join("aside.jsonl");
    std::fs::rename(&run_file, &aside).expect("move the run's predictions away");
    let mut panel = ComparePanel::new(CompareUiState::default());
    panel.set_project(&project);
    assert_eq!(
        (panel.state.a.as_deref(), panel.state.b.as_deref()),
        (Some("base"), None)
    );

    // The run's evaluation finishes.
    std::fs::rename(&aside, &run_file).expect("the run's predictions appear");
    panel.refresh();
    assert_eq!(
        (panel.state.a.as_deref(), panel.state.b.as_deref()),
        (Some(RUN), Some("base"))
    );

    // A choice the user made stays when nothing new appears.
    panel.state.b = None;
    panel.refresh();
    assert_eq!(
        (panel.state.a.as_deref(), panel.state.b.as_deref()),
        (Some(RUN), None)
    );
}

#[test]
fn a_coordinator_sends_the_worst_rows_shown_to_review() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = sample_project(dir.path(), 12);
    let mut h = harness(&project, CompareUiState::default());
    h.state_mut().state.sort.metric = Some("rougeL.fmeasure".into());
    h.run();
    assert!(
        h.query_by_label("Review: every record both outputs have (12)")
            .is_some()
    );
    h.state_mut().choice.take = 3;
    h.run();
    h.get_by_label("for review").click();
    h.run();
    let set = project
        .join("runs")
        .join(RUN)
        .join(crate::project::reviews::REVIEW_SET_FILE);
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&set).expect("set written")).expect("json");
    assert_eq!(
        file["records"],
        serde_json::json!(["d-0011", "d-0009", "d-0007"]),
        "the three worst shown, in the table's order"
    );
    assert!(h.query_by_label("Review: 3 chosen records").is_some());

    h.state_mut().state.review_mode = true;
    h.state_mut().state.reviewer = "Dr Ames".into();
    h.run();
    assert!(
        h.query_by_label("Record 1 of 3 chosen · 0 of 3 rated")
            .is_some()
    );
    assert_eq!(h.state().review.current_id(), Some("d-0011"));

    h.state_mut().state.review_mode = false;
    h.run();
    h.get_by_label("Review every record").click();
    h.run();
    assert!(!set.exists());
    assert!(
        h.query_by_label("Review: every record both outputs have (12)")
            .is_some()
    );
}
