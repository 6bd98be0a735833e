//! A `lablens serve` a test starts on a free local port, killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server and its URL.
pub struct Server(Child, pub String);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Waits until `server` answers `/health` with 200.
pub fn ready(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ureq::get(format!("{}/health", server.1))
        .call()
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "no /health 200 in 120 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `lablens serve ARGS --port P` on a free port P, started.
pub fn spawn(args: &[&str]) -> Server {
    let port = crate::local::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_lablens"))
        .arg("serve")
        .args(args)
        .args(["--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lablens serve");
    Server(child, format!("http://127.0.0.1:{port}"))
}

/// The answer of `POST /v1/completions` with `body`.
pub fn completion(url: &str, body: &serde_json::Value) -> serde_json::Value {
    let mut reply = ureq::post(format!("{url}/v1/completions"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .expect("completion");
    serde_json::from_str(&reply.body_mut().read_to_string().expect("body")).expect("json")
}
