//! The sidebar's *Serve* switch: the open project's model, and the adapter of a run or of a
//! registry alias picked beside it, behind the OpenAI-compatible API of `lablens serve`
//! ([`crate::serve`]), on this machine only, started and stopped from the window.
//! The server runs on a thread of its own with a model of its own (the engine's jobs go on);
//! the status line shows its address and the requests it answers per second.

use crate::project::OpenProject;
use crate::registry::aliases::read_state;
use crate::registry::{RegisteredModel, models};
use crate::serve::metrics::Metrics;
use crate::serve::models::{AdapterSource, plan};
use crate::serve::{MAX_BODY_BYTES, ServeEvent, ServeOptions, serve};
use crate::train::run::{ADAPTER_DIR, list_runs};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the requests/s of the status line are measured.
const RATE_EVERY: Duration = Duration::from_secs(1);

/// What the server thread has said.
#[derive(Debug, Default)]
struct Said {
    address: Option<SocketAddr>,
    metrics: Option<Arc<Metrics>>,
    error: Option<String>,
    ended: bool,
}

#[derive(Debug)]
struct Running {
    stop: Arc<AtomicBool>,
    /// Asked to stop: it finishes the requests in flight, off the UI thread.
    stopping: bool,
    said: Arc<Mutex<Said>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
pub struct ServeSwitch {
    pub port: u16,
    /// The adapter served beside the base model (its name in the sidebar, and where it is).
    pub adapter: Option<(String, AdapterSource)>,
    /// What the sidebar's list offers, read from the project when the list is opened.
    choices: Vec<(String, AdapterSource)>,
    running: Option<Running>,
    /// Why the last server could not start or stopped.
    error: Option<String>,
    /// The last count of requests answered, when, and the rate since the one before.
    rate: Option<(Instant, u64, f64)>,
}

impl Default for ServeSwitch {
    fn default() -> Self {
        ServeSwitch {
            port: 8080,
            adapter: None,
            choices: Vec::new(),
            running: None,
            error: None,
            rate: None,
        }
    }
}

impl ServeSwitch {
    pub fn is_on(&self) -> bool {
        self.running.as_ref().is_some_and(|r| !r.stopping)
    }

    /// Asks the server to stop without waiting: it finishes the requests in flight while the
    /// window goes on; [`Self::status`] says so until it has stopped.
    fn request_stop(&mut self) {
        if let Some(running) = &mut self.running {
            running.stop.store(true, Ordering::SeqCst);
            running.stopping = true;
        }
    }

    /// Starts serving `project`'s model on 127.0.0.1 at `port` (0: any free port); `repaint`
    /// runs when the server has news.
    pub fn start(&mut self, project: &OpenProject, repaint: impl Fn() + Send + 'static) {
        self.stop();
        self.error = None;
        let sources: Vec<AdapterSource> = self.adapter.iter().map(|(_, s)| s.clone()).collect();
        let plan = match plan(project, None, &sources) {
            Ok(plan) => plan,
            Err(e) => {
                self.error = Some(e.to_string());
                return;
            }
        };
        let options = ServeOptions {
            host: "127.0.0.1".into(),
            port: self.port,
            api_key: None,
            max_concurrency: 8,
            max_batch: 8,
            max_body_bytes: MAX_BODY_BYTES,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let said = Arc::new(Mutex::new(Said::default()));
        let (thread_stop, thread_said) = (Arc::clone(&stop), Arc::clone(&said));
        let thread = std::thread::Builder::new()
            .name("serve".into())
            .spawn(move || {
                let tell = |f: &dyn Fn(&mut Said)| {
                    if let Ok(mut s) = thread_said.lock() {
                        f(&mut s);
                    }
                    repaint();
                };
                let result = serve(plan, options, &thread_stop, &mut |event| match event {
                    ServeEvent::Listening(address) => tell(&|s| s.address = Some(address)),
                    ServeEvent::Ready { metrics, .. } => {
                        tell(&|s| s.metrics = Some(Arc::clone(metrics)))
                    }
                    ServeEvent::Stopping { .. } => {}
                });
                let error = result.err().map(|e| e.to_string());
                tell(&|s| {
                    s.error = error.clone();
                    s.ended = true;
                });
            });
        match thread {
            Ok(thread) => {
                self.running = Some(Running {
                    stop,
                    stopping: false,
                    said,
                    thread: Some(thread),
                })
            }
            Err(e) => self.error = Some(format!("cannot start the server: {e}")),
        }
    }

    /// Stops the server and waits for it: it finishes the requests in flight first.
    pub fn stop(&mut self) {
        if let Some(mut running) = self.running.take() {
            running.stop.store(true, Ordering::SeqCst);
            if let Some(thread) = running.thread.take() {
                thread.join().ok();
            }
        }
        self.rate = None;
    }

    /// The server's state in a line (`None` when off): loading, ready with its address and
    /// requests/s, or why it stopped (the switch turns off then).
    pub fn status(&mut self) -> Option<String> {
        let running = self.running.as_ref()?;
        let (address, metrics, error, ended) = match running.said.lock() {
            Ok(s) => (s.address, s.metrics.clone(), s.error.clone(), s.ended),
            Err(_) => (None, None, Some("the server stopped".into()), true),
        };
        if ended {
            let asked = running.stopping;
            self.stop();
            if !asked {
                self.error = error.or_else(|| Some("the server stopped".into()));
            }
            return None;
        }
        if running.stopping {
            return Some("Serve: stopping (finishing the requests in flight)".into());
        }
        let Some(address) = address else {
            return Some("Serve: starting…".into());
        };
        let Some(metrics) = metrics else {
            return Some(format!("Serve: http://{address} (loading the model)"));
        };
        let now = Instant::now();
        let answered = metrics.answered();
        let rate = match self.rate {
            Some((at, count, rate)) if now.duration_since(at) < RATE_EVERY => {
                self.rate = Some((at, count, rate));
                rate
            }
            Some((at, count, _)) => {
                let rate = (answered - count) as f64 / now.duration_since(at).as_secs_f64();
                self.rate = Some((now, answered, rate));
                rate
            }
            None => {
                self.rate = Some((now, answered, 0.0));
                0.0
            }
        };
        Some(format!("Serve: http://{address} · {rate:.1} requests/s"))
    }

    /// The sidebar's section: the switch, the port, and why the last server stopped.
    pub fn section(
        &mut self,
        ui: &mut egui::Ui,
        project: Option<&OpenProject>,
        repaint: impl Fn() + Send + 'static,
    ) {
        ui.strong("Serve");
        ui.horizontal(|ui| {
            let mut on = self.is_on();
            let toggle = ui
                .add_enabled(
                    project.is_some(),
                    egui::Checkbox::new(&mut on, "OpenAI API"),
                )
                .on_hover_text(
                    "The project's model at http://127.0.0.1:PORT/v1 (chat and text \
                     completions, the clinical endpoints); /docs lists them",
                );
            let label = ui.label("port");
            ui.add_enabled(
                self.running.is_none(),
                egui::DragValue::new(&mut self.port).range(0..=65535),
            )
            .labelled_by(label.id);
            if toggle.changed() {
                match (on, project) {
                    (true, Some(p)) => self.start(p, repaint),
                    _ => self.request_stop(),
                }
            }
        });
        if let Some(project) = project {
            self.adapter_choice(ui, project);
        }
        if let Some(error) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, error);
        }
    }

    /// The adapter served with the base model: none, a registry alias or a run with an adapter,
    /// read from the project's files when the list is opened (not every frame); fixed while
    /// the server runs.
    fn adapter_choice(&mut self, ui: &mut egui::Ui, project: &OpenProject) {
        let shown = self
            .adapter
            .as_ref()
            .map_or("base model only", |(name, _)| name.as_str())
            .to_string();
        let opened = ui.add_enabled_ui(self.running.is_none(), |ui| {
            egui::ComboBox::from_label("served adapter")
                .selected_text(shown)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut self.adapter, None, "base model only");
                    for choice in &self.choices {
                        ui.selectable_value(&mut self.adapter, Some(choice.clone()), &choice.0);
                    }
                })
                .response
                .clicked()
        });
        if opened.inner {
            self.choices = adapter_choices(project);
        }
    }
}

/// What the switch can serve beside the base model, by name: each alias of the project's
/// registry (`NAME@ALIAS`), then each run with a final adapter, newest first.
pub fn adapter_choices(project: &OpenProject) -> Vec<(String, AdapterSource)> {
    let mut choices = Vec::new();
    for name in models(&project.dir) {
        let Ok(state) = RegisteredModel::existing(&project.dir, &name).and_then(|m| read_state(&m))
        else {
            continue;
        };
        for alias in state.aliases.keys() {
            choices.push((
                format!("{name}@{alias}"),
                AdapterSource::Registry {
                    name: name.clone(),
                    alias: alias.clone(),
                },
            ));
        }
    }
    for run in list_runs(&project.dir).into_iter().rev() {
        if run.dir.join(ADAPTER_DIR).is_dir() {
            choices.push((format!("run {}", run.id), AdapterSource::Run(run.id)));
        }
    }
    choices
}

impl Drop for ServeSwitch {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_serves_the_project_until_it_is_turned_off() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let project = OpenProject::open(&root.join("projects/demo")).expect("demo project");
        let mut switch = ServeSwitch::default();
        switch.port = 0;
        switch.start(&project, || {});
        let address = ready(&mut switch);
        let health = ureq::get(format!("http://{address}/health"))
            .call()
            .expect("health");
        assert_eq!(health.status(), 200);
        std::thread::sleep(RATE_EVERY);
        let line = switch.status().expect("running");
        assert!(!line.contains(" 0.0 requests/s"), "{line}");
        switch.stop();
        assert!(!switch.is_on() && switch.status().is_none());
        assert!(
            ureq::get(format!("http://{address}/health"))
                .call()
                .is_err()
        );
    }

    /// The switch ready: its address.
    fn ready(switch: &mut ServeSwitch) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = switch.status().expect("running");
            if let Some(rest) = line.strip_prefix("Serve: http://")
                && line.contains("requests/s")
            {
                return rest.split(' ').next().expect("address").to_string();
            }
            assert!(Instant::now() < deadline, "not ready in 60 s: {line}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn the_switch_serves_the_adapter_picked_beside_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let project = crate::test_support::discharge_project(dir.path(), 12, (80.0, 20.0, 0.0));
        let cfg = crate::train::config::TrainConfig {
            max_seq_len: 96,
            micro_batch: 2,
            max_steps: Some(2),
            eval_every: 0,
            eval_records: 2,
            ..Default::default()
        };
        let control = crate::job::Control::default();
        let summary =
            crate::train::train(&project, &cfg, &Default::default(), &control, &mut |_| {})
                .expect("a run");
        let choices = adapter_choices(&project);
        let name = format!("run {}", summary.run_id);
        let choice = choices
            .iter()
            .find(|(n, _)| *n == name)
            .expect("the run is offered");
        let mut switch = ServeSwitch::default();
        switch.port = 0;
        switch.adapter = Some(choice.clone());
        switch.start(&project, || {});
        let address = ready(&mut switch);
        let mut listed = ureq::get(format!("http://{address}/v1/models"))
            .call()
            .expect("models");
        let listed = listed.body_mut().read_to_string().expect("body");
        assert!(
            listed.contains(&format!("\"{}\"", summary.run_id)),
            "{listed}"
        );
        let body = serde_json::json!({"model": summary.run_id, "prompt": "Hi", "max_tokens": 2});
        let reply = ureq::post(format!("http://{address}/v1/completions"))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .expect("a completion by the run's adapter");
        assert_eq!(reply.status(), 200);
        switch.stop();
    }

    #[test]
    fn turning_the_switch_off_does_not_wait_for_the_server() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let project = OpenProject::open(&root.join("projects/demo")).expect("demo project");
        let mut switch = ServeSwitch::default();
        switch.port = 0;
        switch.start(&project, || {});
        switch.request_stop();
        assert!(!switch.is_on());
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(line) = switch.status() {
            assert!(Instant::now() < deadline, "still running: {line}");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            switch.running.is_none() && switch.error.is_none(),
            "{:?}",
            switch.error
        );
    }

    #[test]
    fn a_port_in_use_turns_the_switch_off_saying_why() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let project = OpenProject::open(&root.join("projects/demo")).expect("demo project");
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let mut switch = ServeSwitch::default();
        switch.port = taken.local_addr().expect("address").port();
        switch.start(&project, || {});
        let deadline = Instant::now() + Duration::from_secs(10);
        while switch.status().is_some() {
            assert!(Instant::now() < deadline, "still on");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!switch.is_on());
        assert!(
            switch
                .error
                .as_deref()
                .is_some_and(|e| e.contains("cannot listen")),
            "{:?}",
            switch.error
        );
    }
}
