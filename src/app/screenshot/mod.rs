//! Saving what the window shows as PNG: one panel on request ("Save PNG"), or every panel of a
//! project in turn for `lablens screenshots`, which starts a virtual display when there is none.

use super::{AppState, LabLensApp};
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

mod showcase;

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

    /// Every panel and tab of the project, for the README (see [`showcase::shots`]).
    pub fn all_panels(out: &Path) -> Self {
        Self::new(showcase::shots(out), true, true)
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
            ..super::window::native_options("Lab Lens", size, false)
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
    crate::store::write_atomic(&report, text.as_bytes())
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
