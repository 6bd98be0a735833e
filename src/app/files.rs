//! Files the user picks in a dialog or drops on the window: projects, datasets and models.

use super::LabLensApp;
use crossbeam_channel::unbounded;
use std::path::PathBuf;

/// What a file dialog is asked to pick.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pick {
    Dataset,
    Project,
    ModelFolder,
    ModelFile,
}

/// What a file dialog picked.
pub(super) enum PickedFile {
    Dataset(PathBuf),
    Project(PathBuf),
    Model(PathBuf),
}

impl LabLensApp {
    /// Opens a native file dialog on its own thread so the window keeps drawing.
    pub(super) fn pick(&mut self, what: Pick) {
        let (tx, rx) = unbounded();
        self.picked_files = Some(rx);
        std::thread::spawn(move || {
            let dialog = rfd::FileDialog::new();
            let picked = match what {
                Pick::Project => dialog
                    .add_filter("Lab Lens project", &["ron"])
                    .pick_file()
                    .map(PickedFile::Project),
                Pick::Dataset => dialog
                    .add_filter("Datasets", &["jsonl", "json", "ndjson", "csv", "tsv"])
                    .pick_file()
                    .map(PickedFile::Dataset),
                Pick::ModelFolder => dialog
                    .set_title("Hugging Face model folder")
                    .pick_folder()
                    .map(PickedFile::Model),
                Pick::ModelFile => dialog
                    .add_filter("GGUF model", &["gguf"])
                    .pick_file()
                    .map(PickedFile::Model),
            };
            if let Some(p) = picked {
                tx.send(p).ok();
            }
        });
    }

    /// Acts on what a file dialog picked.
    pub(super) fn handle_picked(&mut self, picked: PickedFile) {
        match picked {
            PickedFile::Dataset(path) => self.add_and_open_dataset(path),
            PickedFile::Project(path) => self.open_project(&path),
            PickedFile::Model(path) => {
                let entry = self.model.entry_for_path(&path);
                self.request_model(entry, true);
            }
        }
    }

    pub(super) fn handle_dropped_files(&mut self, ctx: &egui::Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        for path in dropped {
            if path.extension().is_some_and(|e| e == "ron") || path.is_dir() {
                self.open_project(&path);
            } else {
                self.add_and_open_dataset(path);
            }
        }
    }
}
