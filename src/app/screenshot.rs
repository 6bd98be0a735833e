//! Saving what the window shows as PNG: one panel on request ("Save PNG"), or every panel of a
//! project in turn for `lablens screenshots`, which starts a virtual display when there is none.

use super::train_panel::ConfigForm;
use super::{AppState, DatasetPanel, DatasetTab, Filters, LabLensApp, PanelKind, TrainTab};
use crate::data::record::Split;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The file of `out` that lists the shots' layout problems, one a line (empty when none).
pub const LAYOUT_REPORT: &str = "layout-problems.txt";

/// Frames to let layout, fonts and plots settle before a shot.
const SETTLE_FRAMES: u32 = 12;

/// The longest a shot waits for what it shows (a training run included).
const READY_TIMEOUT: Duration = Duration::from_secs(900);

type Setup = fn(&mut LabLensApp);
type Ready = fn(&LabLensApp) -> bool;

/// The part of the window a shot keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    Window,
    Sidebar,
}

/// A step of a script: a setup, a wait until `ready`, then a picture unless `path` is `None`.
struct Shot {
    path: Option<PathBuf>,
    setup: Setup,
    ready: Ready,
    region: Region,
}

/// A sequence of shots driven one frame at a time from `App::logic`.
pub struct Script {
    shots: VecDeque<Shot>,
    frames: u32,
    set_up: bool,
    /// How many results existed when the current shot was requested.
    requested: Option<usize>,
    /// When the current shot was set up.
    set_up_at: Instant,
    wait_for_data: bool,
    close_when_done: bool,
    started: Instant,
    results: Arc<Mutex<Vec<Result<PathBuf, String>>>>,
    /// The shot whose frame is being drawn, for its legibility check at the frame's end.
    checking: Option<String>,
    /// `shot: problem` for each of [`super::legibility::problems`]' findings.
    layout: Arc<Mutex<Vec<String>>>,
}

fn noop(_: &mut LabLensApp) {}

fn at_once(_: &LabLensApp) -> bool {
    true
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
        params: crate::model::generate::GenerationParams {
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
            setup: |app| app.evaluate(crate::eval::job::Target::Base, showcase_eval()),
            ready: idle,
            region: Region::Window,
        },
        Shot {
            path: None,
            setup: |app| {
                if let Some(run) = app.train.runs.rows.last() {
                    let target = crate::eval::job::Target::Run(run.summary.id.clone());
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
                panel.state.sort = super::compare_panel::SortKey {
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
            panel.columns = super::bias_panel::Columns::Metrics;
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
    app.send_explain_commands();
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
                app.explain.state.highlight = super::Highlight::Lime;
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

impl Script {
    fn new(shots: Vec<Shot>, wait_for_data: bool, close_when_done: bool) -> Self {
        Self {
            shots: shots.into(),
            frames: 0,
            set_up: false,
            requested: None,
            set_up_at: Instant::now(),
            wait_for_data,
            close_when_done,
            started: Instant::now(),
            results: Arc::new(Mutex::new(Vec::new())),
            checking: None,
            layout: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// At the end of a frame's drawing: the legibility problems of the frame a shot was just
    /// asked for (what its picture shows).
    pub fn after_frame(&mut self, ctx: &egui::Context) {
        if let Some(shot) = self.checking.take() {
            let found = super::legibility::frame_problems(ctx);
            if let Ok(mut layout) = self.layout.lock() {
                layout.extend(found.into_iter().map(|p| format!("{shot}: {p}")));
            }
        }
    }

    /// The legibility problems of the shots taken so far.
    pub fn layout_problems(&self) -> Arc<Mutex<Vec<String>>> {
        Arc::clone(&self.layout)
    }

    /// One shot of the window as it is now.
    pub fn single_panel(path: PathBuf) -> Self {
        Self::new(
            vec![Shot {
                path: Some(path),
                setup: noop,
                ready: at_once,
                region: Region::Window,
            }],
            false,
            false,
        )
    }

    /// Every panel and tab of the project, for the README: the Train shots train two runs,
    /// the newer one and the base model are evaluated, and Compare shows the two side by side.
    pub fn all_panels(out: &Path) -> Self {
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
        Self::new(shots, true, true)
    }

    pub fn results(&self) -> Arc<Mutex<Vec<Result<PathBuf, String>>>> {
        Arc::clone(&self.results)
    }

    fn record(&self, r: Result<PathBuf, String>) {
        if let Ok(mut v) = self.results.lock() {
            v.push(r);
        }
    }

    /// Advances the script by one frame; returns true when it is finished.
    pub fn step(&mut self, ctx: &egui::Context, app: &mut LabLensApp) -> bool {
        ctx.request_repaint();
        if self.wait_for_data {
            let limit = Duration::from_secs(120);
            let what = "the demo dataset and model did not load";
            if let Some(done) = self.wait(ctx, demo_ready(app), self.started, limit, what) {
                return done;
            }
            // Only at the start: later shots run jobs of their own.
            self.wait_for_data = false;
        }
        let Some(shot) = self.shots.front() else {
            return self.finish(ctx);
        };
        let (setup, ready, path, region) = (shot.setup, shot.ready, shot.path.clone(), shot.region);
        if !self.set_up {
            setup(app);
            app.apply_theme(ctx);
            self.set_up = true;
            self.set_up_at = Instant::now();
            self.frames = 0;
            return false;
        }
        let what = "a screenshot step did not get ready";
        if let Some(done) = self.wait(ctx, ready(app), self.set_up_at, READY_TIMEOUT, what) {
            return done;
        }
        let Some(path) = path else {
            self.next_shot();
            return false;
        };
        self.frames += 1;
        let taken = self.results.lock().map(|v| v.len()).unwrap_or(0);
        match self.requested {
            None if self.frames >= SETTLE_FRAMES => {
                self.requested = Some(taken);
                let crop = (region == Region::Sidebar).then_some(app.sidebar);
                self.checking = path.file_name().map(|n| n.to_string_lossy().into_owned());
                self.request_png(ctx, path, crop);
            }
            Some(before) if taken > before => self.next_shot(),
            _ => {}
        }
        false
    }

    /// `None` once `ready`; else what `step` answers: still waiting, or finished with an error
    /// once `limit` has passed `since`.
    fn wait(
        &mut self,
        ctx: &egui::Context,
        ready: bool,
        since: Instant,
        limit: Duration,
        what: &str,
    ) -> Option<bool> {
        if ready {
            return None;
        }
        if since.elapsed() > limit {
            self.record(Err(format!("{what} within {} s", limit.as_secs())));
            return Some(self.finish(ctx));
        }
        Some(false)
    }

    fn next_shot(&mut self) {
        self.shots.pop_front();
        self.set_up = false;
        self.requested = None;
    }

    /// Asks the renderer for the window's pixels, saved to `path` (cropped to `crop`).
    fn request_png(&self, ctx: &egui::Context, path: PathBuf, crop: Option<egui::Rect>) {
        let results = Arc::clone(&self.results);
        let pixels_per_point = ctx.pixels_per_point();
        ctx.request_screenshot(move |image: Arc<egui::ColorImage>| {
            let image = match crop {
                Some(rect) => Arc::new(image.region(&rect, Some(pixels_per_point))),
                None => image,
            };
            let saved = save_png(&path, &image).map(|()| path.clone());
            if let Ok(mut v) = results.lock() {
                v.push(saved);
            }
        });
    }

    fn finish(&mut self, ctx: &egui::Context) -> bool {
        if self.close_when_done {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        true
    }
}

/// The demo's dataset and model are loaded and no job runs.
fn demo_ready(app: &LabLensApp) -> bool {
    app.dataset.view().is_some()
        && app.model.loaded().is_some()
        && !app.model.is_busy()
        && !app.status.is_running()
}

fn save_png(path: &Path, image: &egui::ColorImage) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let [w, h] = image.size;
    let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
    image::save_buffer(path, &bytes, w as u32, h as u32, image::ColorType::Rgba8)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Renders every panel of `project` (default: the demo project) into `out`, in a window of
/// `size` points (the workbench's default window is [`super::DEFAULT_SIZE`]).
pub fn screenshots(project: Option<PathBuf>, out: &Path, size: [f32; 2]) -> Result<(), String> {
    let has_display = std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty())
        || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty());
    if !has_display {
        return with_virtual_display(project, out, size);
    }
    let project = project.unwrap_or_else(super::default_project_dir);
    let fresh_store =
        std::env::temp_dir().join(format!("lablens-screenshots-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&fresh_store);
    let script = Script::all_panels(out);
    let results = script.results();
    let layout = script.layout_problems();
    let mut script = Some(script);
    eframe::run_native(
        "lablens-screenshots",
        eframe::NativeOptions {
            // A fresh store each time: panel widths and the like from an earlier run would
            // make the pictures (and their layout check) depend on it.
            persistence_path: Some(fresh_store.clone()),
            ..super::native_options("Lab Lens", size, false)
        },
        Box::new(move |cc| {
            let mut app = LabLensApp::new(
                &cc.egui_ctx,
                AppState::default(),
                Some(project),
                super::default_models_dir(),
            );
            app.screenshot = script.take();
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| format!("could not open the window: {e}"))?;
    let _ = std::fs::remove_dir_all(&fresh_store);
    let results = results.lock().map(|v| v.clone()).unwrap_or_default();
    let mut saved = 0;
    for r in &results {
        match r {
            Ok(p) => {
                eprintln!("saved {}", p.display());
                saved += 1;
            }
            Err(e) => return Err(e.clone()),
        }
    }
    if saved == 0 {
        return Err("no screenshot was taken".into());
    }
    // What a reader could not read in them: said, and kept beside them for scripts.
    let layout = layout.lock().map(|v| v.clone()).unwrap_or_default();
    let report = out.join(LAYOUT_REPORT);
    let text: String = layout.iter().map(|p| format!("{p}\n")).collect();
    crate::project::write_atomic(&report, text.as_bytes())
        .map_err(|e| format!("{}: {e}", report.display()))?;
    for p in &layout {
        eprintln!("layout: {p}");
    }
    eprintln!(
        "{} layout problem(s) at {}x{} (listed in {})",
        layout.len(),
        size[0],
        size[1],
        report.display()
    );
    Ok(())
}

/// Starts Xvfb on a free display and runs this command again inside it.
fn with_virtual_display(
    project: Option<PathBuf>,
    out: &Path,
    size: [f32; 2],
) -> Result<(), String> {
    let display = (90..120)
        .find(|n| !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists())
        .ok_or("no free X display number between :90 and :119")?;
    let mut xvfb = std::process::Command::new("Xvfb")
        .args([format!(":{display}").as_str(), "-screen", "0", "1920x1080x24", "-nolisten", "tcp"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("there is no display and Xvfb could not be started ({e}); install it (apt-get install xvfb) or set DISPLAY")
        })?;
    let socket = PathBuf::from(format!("/tmp/.X11-unix/X{display}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("screenshots").arg("--out").arg(out);
    cmd.arg("--size").arg(format!("{}x{}", size[0], size[1]));
    if let Some(p) = project {
        cmd.arg("--project").arg(p);
    }
    let status = cmd.env("DISPLAY", format!(":{display}")).status();
    xvfb.kill().ok();
    xvfb.wait().ok();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("rendering under Xvfb failed ({s})")),
        Err(e) => Err(format!("could not run the renderer: {e}")),
    }
}
