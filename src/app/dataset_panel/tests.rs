use super::*;
use crate::data::dataset::{OpenOptions, open_dataset, to_jsonl};
use crate::data::record::Task;
use crate::data::synth::generate;
use crate::job::Job;
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

fn view(n: usize) -> Arc<DatasetView> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notes.jsonl");
    std::fs::write(&path, to_jsonl(&generate(Task::Discharge, n, 11, None))).expect("write");
    let v = open_dataset(
        &path,
        &OpenOptions::default(),
        &mut Job::unstopped(&mut |_| {}),
    )
    .expect("open");
    Arc::new(v)
}

fn harness(n: usize) -> Harness<'static, DatasetPanel> {
    harness_over(view(n))
}

fn harness_over(view: Arc<DatasetView>) -> Harness<'static, DatasetPanel> {
    let mut panel = DatasetPanel::new(DatasetUiState::default());
    panel.set_dataset(view);
    let mut h = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(
            |ui, panel: &mut DatasetPanel| crate::test_support::draw_alone(ui, panel),
            panel,
        );
    h.run();
    h
}

#[test]
fn text_filter_narrows_the_rows() {
    let mut h = harness(60);
    assert_eq!(h.state().rows.len(), 60);
    let wanted = h.state().view().expect("view").records()[17].id.clone();
    h.get_by_role(Role::TextInput).focus();
    h.run();
    h.get_by_role(Role::TextInput).type_text(&wanted);
    h.run();
    let rows = &h.state().rows;
    assert_eq!(rows, &vec![17], "search for {wanted}");
}

#[test]
fn clicking_a_row_shows_the_record_and_arrows_move() {
    let mut h = harness(30);
    let id = h.state().view().expect("view").records()[3].id.clone();
    assert!(h.query_by_label(&format!("Record {id}")).is_none());
    h.get_by_label(&id).click();
    h.run();
    assert_eq!(h.state().selected, Some(3));
    assert!(h.query_by_label(&format!("Record {id}")).is_some());
    h.key_press(egui::Key::ArrowDown);
    h.run();
    assert_eq!(h.state().selected, Some(4));
}

#[test]
fn demographic_and_split_filters_combine() {
    let v = view(200);
    let filters = Filters {
        split: Some(Split::Train),
        gender: Some("F".into()),
        age_group: Some(AgeGroup::Over65),
        ..Filters::default()
    };
    let rows = filters.apply(&v);
    assert!(!rows.is_empty() && rows.len() < 200);
    for &i in &rows {
        let r = &v.records()[i];
        assert_eq!(v.splits[i], Split::Train);
        assert_eq!(r.gender.as_deref(), Some("F"));
        assert!(r.age.is_some_and(|a| a >= 65));
    }
    let expected = (0..200)
        .filter(|&i| {
            let r = &v.records()[i];
            v.splits[i] == Split::Train
                && r.gender.as_deref() == Some("F")
                && r.age.is_some_and(|a| a >= 65)
        })
        .count();
    assert_eq!(rows.len(), expected);
}

/// A dataset of `n` short records, written and opened the way the app opens files.
fn big_view(n: usize) -> Arc<DatasetView> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big.jsonl");
    let mut text = String::with_capacity(n * 200);
    for i in 0..n {
        text.push_str(&format!(
            "{{\"id\":\"r{i}\",\"patient_id\":\"p{}\",\"task\":\"discharge\",\"input\":\"Discharge Diagnosis: case {i} of pneumonia\",\"target\":\"You had a lung infection.\",\"gender\":\"{}\",\"age\":{}}}\n",
            i / 2,
            if i % 2 == 0 { "F" } else { "M" },
            20 + i % 70
        ));
    }
    std::fs::write(&path, text).expect("write");
    Arc::new(
        open_dataset(
            &path,
            &OpenOptions::default(),
            &mut Job::unstopped(&mut |_| {}),
        )
        .expect("open"),
    )
}

#[test]
fn table_stays_smooth_at_100k_rows() {
    let mut h = harness_over(big_view(100_000));
    assert_eq!(h.state().rows.len(), 100_000);
    let mut frames = Vec::new();
    for i in 0..120 {
        // Scroll down through the table, then jump far with a selection.
        h.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Line,
            delta: egui::vec2(0.0, -40.0),
            modifiers: egui::Modifiers::NONE,
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Wheel,
        });
        if i == 60 {
            h.state_mut().select(90_000);
        }
        let t = std::time::Instant::now();
        h.step();
        frames.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    frames.sort_by(f64::total_cmp);
    let p50 = frames[frames.len() / 2];
    let p95 = frames[frames.len() * 95 / 100];
    eprintln!("Dataset panel, 100k rows: frame build p50 {p50:.2} ms, p95 {p95:.2} ms");
    assert_eq!(h.state().selected, Some(90_000));
    assert!(p95 < 30.0, "p95 frame build {p95:.1} ms");
}
