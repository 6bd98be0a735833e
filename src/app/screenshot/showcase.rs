//! The showcase `lablens screenshots` takes of a project: what each shot sets up and waits for.

use super::{Ready, Region, Setup, Shot, at_once, noop};
use crate::app::Panel;
use crate::app::train_panel::ConfigForm;
use crate::app::{DatasetPanel, DatasetTab, Filters, LabLensApp, PanelKind, TrainTab};
use crate::data::record::Split;
use std::path::Path;

/// Every panel and tab of the project: the Train shots train two runs, the newer one and the
/// base model are evaluated, and Compare shows the two side by side.
pub(super) fn shots(out: &Path) -> Vec<Shot> {
    let shot = |name: &str, region: Region, setup: Setup| Shot {
        path: Some(out.join(name)),
        setup,
        ready: at_once,
        region,
    };
    let mut shots = vec![
        shot("dataset-records.png", Region::Window, |app| {
            app.state.dark = true;
            let panel = &mut app.dataset;
            panel.state.filters = Filters::default();
            panel.state.tab = DatasetTab::Records;
            panel.state.scrubbed = false;
            select_showcase(panel);
        }),
        shot("model-sidebar.png", Region::Sidebar, noop),
        shot("dataset-validation.png", Region::Window, |app| {
            app.dataset.state.tab = DatasetTab::Validation;
        }),
        shot("dataset-distributions.png", Region::Window, |app| {
            app.dataset.state.tab = DatasetTab::Distributions;
        }),
        shot("dataset-filtered-light.png", Region::Window, |app| {
            app.state.dark = false;
            let panel = &mut app.dataset;
            panel.state.tab = DatasetTab::Records;
            panel.state.filters = Filters {
                split: Some(Split::Test),
                text: "heart failure".into(),
                ..Filters::default()
            };
            panel.refresh_rows();
            if let Some(&first) = panel.rows.first() {
                panel.select(first);
            }
        }),
    ];
    shots.extend(train_shots(out));
    shots.extend(eval_shots());
    shots.extend(compare_shots(out));
    shots.extend(bias_shots(out));
    shots.extend(explain_shots(out));
    shots.extend(registry_shots(out));
    // `LABLENS_SHOTS=registry` renders only the shots whose file names start with it (and the
    // steps they need), for a quick look at one panel.
    if let Some(only) = std::env::var("LABLENS_SHOTS")
        .ok()
        .filter(|s| !s.is_empty())
    {
        shots.retain(|s| {
            s.path
                .as_ref()
                .and_then(|p| p.file_name())
                .is_some_and(|n| n.to_string_lossy().starts_with(&only))
        });
    }
    shots
}

/// Steps the Train panel's screenshot runs take: short, so that `lablens screenshots` finishes
/// in minutes on two cores, long enough for curves worth reading.
const SHOWCASE_STEPS: &str = "40";

/// Starts a short quick-demo run on the Live tab, at learning rate `lr`.
fn start_showcase_run(app: &mut LabLensApp, lr: &str) {
    app.state.dark = true;
    app.state.panel = PanelKind::Train;
    app.train.state.tab = TrainTab::Live;
    app.train.form = ConfigForm::from_preset("quick-demo");
    for (label, text) in [
        ("max steps", SHOWCASE_STEPS),
        ("max sequence length", "256"),
        ("validate every", "8"),
        ("learning rate", lr),
    ] {
        app.train.form.set_text(label, text);
    }
    app.start_training();
}

fn training_idle(app: &LabLensApp) -> bool {
    !app.train.is_training() && !app.engine.is_busy()
}

/// The Train panel's shots: a run in progress, then two finished runs overlaid and compared,
/// then the newer one's adapter beside the base model in the playground.
fn train_shots(out: &Path) -> Vec<Shot> {
    vec![
        Shot {
            path: Some(out.join("train-live.png")),
            setup: |app| start_showcase_run(app, "0.005"),
            ready: |app| app.train.live.as_ref().is_some_and(|l| l.step() >= 26),
            region: Region::Window,
        },
        Shot {
            path: None,
            setup: noop,
            ready: training_idle,
            region: Region::Window,
        },
        Shot {
            path: None,
            setup: |app| start_showcase_run(app, "0.0015"),
            ready: training_idle,
            region: Region::Window,
        },
        Shot {
            path: Some(out.join("train-runs-overlay.png")),
            setup: |app| {
                let runs = &mut app.train.runs;
                let newest: Vec<String> = runs
                    .rows
                    .iter()
                    .rev()
                    .take(2)
                    .map(|r| r.summary.id.clone())
                    .collect();
                runs.ticked = newest.iter().cloned().collect();
                runs.compare = [newest.get(1).cloned(), newest.first().cloned()];
                app.train.state.tab = TrainTab::Runs;
            },
            ready: |app| app.train.runs.curves_ready(),
            region: Region::Window,
        },
        Shot {
            path: Some(out.join("train-playground.png")),
            setup: |app| {
                app.train.state.tab = TrainTab::Playground;
                app.generate_in_playground();
            },
            ready: |app| !app.train.playground.is_generating() && !app.engine.is_busy(),
            region: Region::Window,
        },
    ]
}

/// How much of the test split the screenshots evaluate: enough rows to sort and filter.
const SHOWCASE_EVAL_RECORDS: usize = 24;

fn showcase_eval() -> crate::eval::job::EvalOptions {
    crate::eval::job::EvalOptions {
        limit: Some(SHOWCASE_EVAL_RECORDS),
        params: crate::model::generation::GenerationParams {
            max_new_tokens: 160,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Evaluates the base model and the newest run (the Train shots' second run) on the engine,
/// so that the Compare panel has two prediction sets to show.
fn eval_shots() -> Vec<Shot> {
    let idle: Ready = |app| !app.engine.is_busy();
    vec![
        Shot {
            path: None,
            setup: |app| app.evaluate(crate::eval::job::target::Target::Base, showcase_eval()),
            ready: idle,
            region: Region::Window,
        },
        Shot {
            path: None,
            setup: |app| {
                if let Some(run) = app.train.runs.rows.last() {
                    let target = crate::eval::job::target::Target::Run(run.summary.id.clone());
                    app.evaluate(target, showcase_eval());
                }
            },
            ready: idle,
            region: Region::Window,
        },
    ]
}

/// The Compare panel's shots over the project's own predictions: the worst row by ROUGE-L
/// side by side, then the review mode's blank form (nothing is rated, so nothing is written).
fn compare_shots(out: &Path) -> Vec<Shot> {
    vec![
        Shot {
            path: None,
            setup: |app| {
                app.state.dark = true;
                app.state.panel = PanelKind::Compare;
                app.compare.state.review_mode = false;
                app.compare.refresh();
            },
            ready: |app| app.compare.compared.is_some() && !app.compare.is_loading(),
            region: Region::Window,
        },
        Shot {
            path: Some(out.join("compare.png")),
            setup: |app| {
                let panel = &mut app.compare;
                panel.state.filters = Default::default();
                panel.state.sort = crate::app::compare_panel::SortKey {
                    metric: Some("rougeL.fmeasure".into()),
                    ..Default::default()
                };
                panel.refresh_rows();
                if let Some(&first) = panel.rows.first() {
                    panel.select(first);
                }
            },
            ready: at_once,
            region: Region::Window,
        },
        Shot {
            path: Some(out.join("compare-review.png")),
            setup: |app| {
                app.compare.state.review_mode = true;
                app.compare.state.reviewer = "Reviewer 1".into();
            },
            ready: |app| {
                app.compare.review.session.is_some()
                    || app.compare.compared.as_ref().is_some_and(|c| c.b.is_none())
            },
            region: Region::Window,
        },
    ]
}

/// The Bias panel over the newest evaluated set: sex by metric. The showcase evaluation has 24
/// records, so the minimum slice size is lowered for the picture to hold tested cells.
fn bias_shots(out: &Path) -> Vec<Shot> {
    vec![Shot {
        path: Some(out.join("bias.png")),
        setup: |app| {
            app.state.dark = true;
            app.state.panel = PanelKind::Bias;
            app.bias.refresh();
            let panel = &mut app.bias.state;
            panel.source = app.bias.sources.last().map(|s| s.name.clone());
            panel.rows = crate::data::record::Demographic::Gender;
            panel.columns = crate::app::bias_panel::Columns::Metrics;
            panel.min_size = 8;
        },
        ready: |app| app.bias.grid().is_some() && !app.bias.is_computing(),
        region: Region::Window,
    }]
}

/// Runs `method` of the Explain panel on its chosen record (the newest evaluated run's first
/// test record), with settings quick on the embedded model.
fn explain_with(app: &mut LabLensApp, method: crate::analysis::explain::Method) {
    app.state.dark = true;
    app.state.panel = PanelKind::Explain;
    let settings = &mut app.explain.state.settings;
    settings.method = method;
    settings.features = crate::analysis::explain::FeatureKind::Words;
    settings.target = crate::analysis::explain::TargetText::Output;
    settings.samples = 128;
    settings.max_new_tokens = 160;
    app.explain.request();
    app.act_on_requests(PanelKind::Explain);
}

/// The Explain panel's shot: LIME, section importance and the length curve of one record.
fn explain_shots(out: &Path) -> Vec<Shot> {
    use crate::analysis::explain::Method;
    let idle: Ready = |app| !app.explain.is_running() && !app.engine.is_busy();
    vec![
        Shot {
            path: None,
            setup: |app| {
                app.explain.refresh();
                app.explain.state.source = app.train.runs.rows.last().map(|r| r.summary.id.clone());
                app.explain.refresh();
                app.explain.state.highlight = crate::app::Highlight::Lime;
                explain_with(app, Method::Lime);
            },
            ready: idle,
            region: Region::Window,
        },
        Shot {
            path: None,
            setup: |app| explain_with(app, Method::Sections),
            ready: idle,
            region: Region::Window,
        },
        Shot {
            path: None,
            setup: |app| explain_with(app, Method::Length),
            ready: idle,
            region: Region::Window,
        },
        Shot {
            path: Some(out.join("explain.png")),
            setup: |app| app.explain.refresh(),
            ready: at_once,
            region: Region::Window,
        },
    ]
}

/// The first record whose source shows found PHI, else the fourth: a record worth showing.
fn select_showcase(panel: &mut DatasetPanel) {
    let index = panel.view().map(|v| {
        v.records()
            .iter()
            .position(|r| {
                r.meta
                    .get("phi_leak")
                    .is_some_and(|x| x.as_bool() == Some(true))
            })
            .unwrap_or(3.min(v.records().len().saturating_sub(1)))
    });
    if let Some(i) = index {
        panel.select(i);
    }
}

/// Where the Registry shots' fixture registry is written (the demo project has none of its own,
/// and the shots leave the demo project as it was); the last shot removes it.
fn registry_fixture_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("lablens-registry-shots-{}", std::process::id()))
}

/// The Registry panel over a fixture registry of three versions: the table, version 3's detail
/// and v2 against v3; then a promotion of version 3 to production, refused by its gates.
fn registry_shots(out: &Path) -> Vec<Shot> {
    let idle: Ready = |app| app.registry.loaded.is_some() && !app.registry.is_busy();
    vec![
        Shot {
            path: Some(out.join("registry.png")),
            setup: |app| {
                app.state.dark = true;
                app.state.panel = PanelKind::Registry;
                let dir = registry_fixture_dir();
                let _ = std::fs::remove_dir_all(&dir);
                match crate::app::registry_panel::fixture::demo_registry(&dir) {
                    Ok(_) => app.registry.set_project(&dir),
                    Err(e) => eprintln!("registry fixture: {e}"),
                }
                app.registry.state = Default::default();
            },
            ready: idle,
            region: Region::Window,
        },
        Shot {
            path: Some(out.join("registry-refused.png")),
            setup: |app| {
                use crate::app::registry_panel::{Action, Form};
                app.registry.form = Some(Form::promote(3));
                app.registry.perform(Action::Promote {
                    name: crate::app::registry_panel::fixture::MODEL.into(),
                    version: 3,
                    alias: crate::registry::PRODUCTION.into(),
                    reason: "try the new learning rate".into(),
                    force: false,
                });
            },
            ready: idle,
            region: Region::Window,
        },
        Shot {
            path: None,
            setup: |_| {
                let _ = std::fs::remove_dir_all(registry_fixture_dir());
            },
            ready: at_once,
            region: Region::Window,
        },
    ]
}
