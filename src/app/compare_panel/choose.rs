//! Choosing the records that go to review: a coordinator filters and sorts the table (the worst
//! outputs, a group, those with problems), takes the first rows shown, and reviewers of the
//! pair then see only those, in that order.

use super::rows::Compared;
use crate::project::reviews::{
    clear_review_set, read_review_set, review_set_path, reviews_path, write_review_set,
};
use std::collections::HashSet;
use std::path::Path;

pub struct ReviewChoice {
    /// The chosen set of the pair shown as last read (`None`: read it again).
    pub(super) read: Option<Result<Option<Vec<String>>, String>>,
    /// How many of the rows shown to choose.
    pub(super) take: usize,
}

impl Default for ReviewChoice {
    fn default() -> Self {
        Self {
            read: None,
            take: 20,
        }
    }
}

impl ReviewChoice {
    /// Reads the set again on the next frame (the pair or the files changed).
    pub fn forget(&mut self) {
        self.read = None;
    }

    /// The line under the filters: what reviewers of this pair see, and the choice of the rows
    /// shown (`rows`: A's row indices in table order). Returns whether the choice changed.
    pub fn ui(&mut self, ui: &mut egui::Ui, project: &Path, c: &Compared, rows: &[usize]) -> bool {
        let Some(b) = &c.b else { return false };
        let Some(path) = reviews_path(project, &c.a.source.name, &b.source.name) else {
            return false;
        };
        let path = review_set_path(&path);
        let read = self
            .read
            .get_or_insert_with(|| read_review_set(&path).map_err(|e| e.to_string()))
            .clone();
        let shared: Vec<String> = c.shared_ids();
        let reviewable: HashSet<&str> = shared.iter().map(String::as_str).collect();
        let shown: Vec<String> = rows
            .iter()
            .map(|&i| c.a.rows[i].id.clone())
            .filter(|id| reviewable.contains(id.as_str()))
            .collect();
        let mut change: Option<Option<Vec<String>>> = None;
        ui.horizontal_wrapped(|ui| {
            match &read {
                Ok(None) => ui.label(format!(
                    "Review: every record both outputs have ({})",
                    shared.len()
                )),
                Ok(Some(ids)) => ui.label(format!("Review: {} chosen records", ids.len())),
                Err(e) => ui.colored_label(ui.visuals().error_fg_color, e),
            };
            ui.separator();
            let label = ui.label("Choose the first").id;
            self.take = self.take.clamp(1, shown.len().max(1));
            ui.add_enabled(
                !shown.is_empty(),
                egui::DragValue::new(&mut self.take).range(1..=shown.len().max(1)),
            )
            .labelled_by(label);
            ui.label(format!("of the {} rows shown", shown.len()));
            if ui
                .add_enabled(!shown.is_empty(), egui::Button::new("for review"))
                .on_hover_text(
                    "Reviewers of these outputs will see only these records, in the table's order",
                )
                .clicked()
            {
                change = Some(Some(shown.iter().take(self.take).cloned().collect()));
            }
            if !matches!(read, Ok(None)) && ui.button("Review every record").clicked() {
                change = Some(None);
            }
        });
        let Some(change) = change else { return false };
        let written = match change {
            Some(ids) => write_review_set(&path, &ids),
            None => clear_review_set(&path),
        };
        self.read = written.err().map(|e| Err(e.to_string()));
        true
    }
}
