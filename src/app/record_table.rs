//! The table the Dataset and Compare panels list their records in: striped rows that a click
//! selects, the arrow keys (or j / k) move the selection when no text field has the keyboard,
//! and the table scrolls to the selected row when it was chosen elsewhere.

use egui_extras::{Column, TableBuilder, TableRow};

/// What the table shows: `rows`, indices of the panel's records in display order; the selected
/// record; and whether the table should bring it into view on its next frame.
pub struct Rows<'a> {
    pub rows: &'a [usize],
    pub selected: Option<usize>,
    pub scroll_to_selected: &'a mut bool,
}

/// Draws the table: `columns` with their `header` titles (and a hover text where one helps), a
/// row per entry of `rows.rows` filled by `cells` from the record index. Returns the record the
/// user selected this frame, by a click or a key.
pub fn show(
    ui: &mut egui::Ui,
    rows: Rows<'_>,
    columns: &[Column],
    header: &[(String, Option<&str>)],
    mut cells: impl FnMut(&mut TableRow<'_, '_>, usize),
) -> Option<usize> {
    let keyed = key_target(ui, rows.rows, rows.selected);
    let scroll_row = std::mem::take(rows.scroll_to_selected)
        .then(|| {
            rows.selected
                .and_then(|s| rows.rows.iter().position(|&r| r == s))
        })
        .flatten();
    // Selectable labels would take the click that selects the row.
    ui.style_mut().interaction.selectable_labels = false;
    let mut table = TableBuilder::new(ui)
        .striped(true)
        .sense(egui::Sense::click())
        .cell_layout(egui::Layout::left_to_right(egui::Align::Center));
    for column in columns {
        table = table.column(*column);
    }
    if let Some(row) = scroll_row {
        table = table.scroll_to_row(row, Some(egui::Align::Center));
    }
    let mut clicked = None;
    table
        .header(22.0, |mut h| {
            for (title, hover) in header {
                h.col(|ui| {
                    let title = ui.strong(title);
                    if let Some(hover) = hover {
                        title.on_hover_text(*hover);
                    }
                });
            }
        })
        .body(|body| {
            body.rows(20.0, rows.rows.len(), |mut row| {
                let i = rows.rows[row.index()];
                row.set_selected(rows.selected == Some(i));
                cells(&mut row, i);
                if row.response().clicked() {
                    clicked = Some(i);
                }
            });
        });
    clicked.or(keyed)
}

/// The record the arrow keys (or j / k) move the selection to, when no widget has the keyboard.
fn key_target(ui: &egui::Ui, rows: &[usize], selected: Option<usize>) -> Option<usize> {
    if ui.ctx().memory(|m| m.focused().is_some()) || rows.is_empty() {
        return None;
    }
    let (down, up) = ui.input(|i| {
        (
            i.key_pressed(egui::Key::ArrowDown) || i.key_pressed(egui::Key::J),
            i.key_pressed(egui::Key::ArrowUp) || i.key_pressed(egui::Key::K),
        )
    });
    if !(down || up) {
        return None;
    }
    let pos = selected.and_then(|s| rows.iter().position(|&r| r == s));
    let next = match (pos, down) {
        (None, _) => 0,
        (Some(p), true) => (p + 1).min(rows.len() - 1),
        (Some(p), false) => p.saturating_sub(1),
    };
    Some(rows[next])
}

/// A label for a value a record may lack: the value, or a dash.
pub fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "—".to_string(), |v| v.to_string())
}
