//! What the tests that start a server share: a free port, and a copy of the demo project.

use std::path::{Path, PathBuf};

/// A local port nothing listens on now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}

/// `projects/demo/project.ron` copied into `dir/project` (its datasets read from the checkout's
/// `sample_data/`); returns the project folder.
pub fn demo_project(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo = std::fs::read_to_string(root.join("projects/demo/project.ron")).expect("demo");
    let sample = root.join("sample_data").display().to_string();
    let project = dir.join("project");
    std::fs::create_dir_all(&project).expect("mkdir");
    std::fs::write(
        project.join("project.ron"),
        demo.replace("../../sample_data", &sample),
    )
    .expect("project");
    project
}
