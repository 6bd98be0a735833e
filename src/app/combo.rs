//! The labelled combo boxes the panels' filter and option bars are made of.

use crate::data::record::AgeGroup;

/// A labelled combo box choosing `value` among `choices`, each shown by `name`.
pub fn choice<T: Clone + PartialEq>(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut T,
    choices: &[T],
    name: impl Fn(&T) -> String,
) {
    let label_id = ui.label(label).id;
    egui::ComboBox::from_id_salt(("combo", label))
        .selected_text(name(value))
        .width(110.0)
        .show_ui(ui, |ui| {
            for c in choices {
                ui.selectable_value(value, c.clone(), name(c));
            }
        })
        .response
        .labelled_by(label_id);
}

/// A filter: `all`, or one of `choices`.
pub fn filter<T: Clone + PartialEq>(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut Option<T>,
    choices: &[T],
    name: impl Fn(&T) -> String,
) {
    let options: Vec<Option<T>> = std::iter::once(None)
        .chain(choices.iter().cloned().map(Some))
        .collect();
    choice(ui, label, value, &options, |v| {
        v.as_ref().map_or("all".into(), &name)
    });
}

/// The demographic filters of a record table: sex and ethnicity among the values its records
/// have, and the age group.
pub fn demographics(
    ui: &mut egui::Ui,
    gender: &mut Option<String>,
    age_group: &mut Option<AgeGroup>,
    ethnicity: &mut Option<String>,
    (genders, ethnicities): (&[String], &[String]),
) {
    filter(ui, "Sex", gender, genders, Clone::clone);
    filter(ui, "Age", age_group, &AgeGroup::ALL, |g| g.label().into());
    filter(ui, "Ethnicity", ethnicity, ethnicities, Clone::clone);
}
