use super::*;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use status::Notice;

fn wait_until(h: &mut Harness<'_, LabLensApp>, done: impl Fn(&LabLensApp) -> bool) {
    for _ in 0..500 {
        h.step();
        if done(h.state()) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("condition not reached within 5 s");
}

#[test]
fn opens_the_demo_project_and_survives_a_failed_job() {
    let demo = default_project_dir();
    let mut h = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_eframe(|cc| LabLensApp::new(&cc.egui_ctx, AppState::default(), Some(demo)));
    wait_until(&mut h, |app| app.dataset.view().is_some());
    h.run();
    assert_eq!(h.state().dataset.rows.len(), 2000);
    assert!(h.query_by_label("discharge.jsonl").is_some());

    h.state_mut()
        .open_dataset(PathBuf::from("/nonexistent/ward-notes.jsonl"));
    wait_until(&mut h, |app| {
        matches!(app.status.notice, Some(Notice::Error(_)))
    });
    h.run();
    let Some(Notice::Error(message)) = &h.state().status.notice else {
        unreachable!("checked by wait_until")
    };
    assert!(message.contains("ward-notes.jsonl"), "{message}");
    assert!(h.query_by_label_contains("ward-notes.jsonl").is_some());
    // The dataset that was open stays open and the engine takes new work.
    assert_eq!(h.state().dataset.rows.len(), 2000);
    assert!(!h.state().engine.is_busy());
}
