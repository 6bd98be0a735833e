//! The safety report of an answer against its source: the medication comparison, the
//! interaction, maximum-dose and emergency flags and the reading level, as `lablens metrics`
//! scores an example (the same function, without a reference).

use crate::data::record::Task;
use crate::eval::meds::MedReport;
use crate::eval::safety::Flag;
use crate::eval::{ExampleInput, score_example};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SafetyReport {
    /// Medications of the answer not in the source, of the source left out, and doses, units,
    /// routes or frequencies that differ.
    pub meds: MedReport,
    /// Interaction, max_dose and emergency flags.
    pub flags: Vec<Flag>,
    /// Reading level of the answer (Flesch-Kincaid grade, reading ease, SMOG); null without words.
    pub fkgl: Option<f64>,
    pub fre: Option<f64>,
    pub smog: Option<f64>,
}

pub fn report(source: &str, output: &str, task: Option<Task>) -> SafetyReport {
    let scored = score_example(&ExampleInput {
        prediction: output,
        reference: "",
        source: Some(source),
        task,
    })
    .metrics;
    SafetyReport {
        meds: scored.meds.unwrap_or_default(),
        flags: scored.safety,
        fkgl: scored.fkgl,
        fre: scored.fre,
        smog: scored.smog,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_medication_not_in_the_source_and_a_dose_over_the_maximum_are_reported() {
        let source =
            "Discharge Medications:\n1. Metformin 500 mg PO BID\n2. Lisinopril 10 mg PO daily";
        let output = "Take metformin 500 mg twice a day and acetaminophen 5000 mg every day.";
        let r = report(source, output, Some(Task::Discharge));
        let names = |m: &[crate::eval::meds::Mention]| -> Vec<String> {
            m.iter().map(|x| x.generic.clone()).collect()
        };
        assert_eq!(names(&r.meds.hallucinated), ["acetaminophen"]);
        assert_eq!(names(&r.meds.omitted), ["lisinopril"]);
        assert!(
            r.flags.iter().any(|f| f.kind == "max_dose"),
            "{:?}",
            r.flags
        );
        assert!(r.fkgl.is_some());
    }
}
