//! The clinician's side of a discharge: the MIMIC-style summary with its required sections
//! in order, optional ones placed where real notes put them, and the occasional leaked identifier.

use super::conditions::Condition;
use super::fill::{capitalize, join_list, lower_first};
use super::plan::{Phi, Plan, Writer, time_text};

const SURNAMES: [&str; 10] = [
    "Okafor",
    "Lindqvist",
    "Brennan",
    "Castillo",
    "Nakamura",
    "Hoffman",
    "Duarte",
    "Kowalski",
    "Mensah",
    "Abernathy",
];

impl Writer {
    pub(super) fn note(&mut self, plan: &Plan, allergy: &str) -> String {
        let hpi = self.hpi(plan);
        let pmh = self.pmh(plan);
        let results = self.results(plan.condition);
        let course = self.course(plan.condition);
        let meds = self.med_list(plan);
        let instructions = self.instructions(plan);
        let followup = self.followup(plan);
        let complaint = self.fill_any(&plan.condition.complaints);
        let mut sections: Vec<(&str, String)> =
            vec![("Discharge Diagnosis:", self.diagnosis(plan))];
        if self.rng.chance(0.5) {
            let at = self.rng.below(2);
            sections.insert(at, ("Chief Complaint:", complaint));
        }
        if self.rng.chance(0.3) {
            sections.insert(0, ("Allergies:", allergy.to_string()));
        }
        sections.push(("History of Present Illness:", hpi));
        if self.rng.chance(0.5) {
            sections.push(("Past Medical History:", pmh));
        }
        let results_first = self.rng.chance(0.7);
        if let Some(text) = results.as_ref().filter(|_| results_first) {
            sections.push(("Pertinent Results:", text.clone()));
        }
        sections.push(("Brief Hospital Course:", course));
        if let Some(text) = results.filter(|_| !results_first) {
            sections.push(("Pertinent Results:", text));
        }
        if self.rng.chance(0.25) {
            sections.push(("Allergies:", allergy.to_string()));
        }
        sections.push(("Discharge Medications:", meds));
        sections.push(("Discharge Instructions:", instructions));
        sections.push(("Followup Instructions:", followup));
        let body: Vec<String> = sections.iter().map(|(h, b)| format!("{h}\n{b}")).collect();
        let mut note = body.join("\n\n");
        if self.phi == Some(Phi::Mrn) {
            note = format!("MRN: {}\n\n{note}", self.rng.range(10_000_000, 99_999_999));
        }
        note
    }

    fn diagnosis(&mut self, plan: &Plan) -> String {
        if plan.history.is_empty() || self.rng.chance(0.5) {
            return plan.diagnosis.clone();
        }
        let secondary: Vec<String> = plan.history.iter().map(|h| capitalize(h)).collect();
        format!(
            "Primary: {}\nSecondary: {}",
            plan.diagnosis,
            secondary.join(", ")
        )
    }

    fn hpi(&mut self, plan: &Plan) -> String {
        let history = match plan.history.as_slice() {
            [] => "with no significant past medical history".to_string(),
            items => {
                let joined = join_list(items, "and");
                let lead = self.pick(&["with a history of", "with PMH notable for", "with"]);
                format!("{lead} {joined}")
            }
        };
        let letter = self.gender;
        let age = super::fill::age_in_text(self.age);
        let opening = match self.rng.below(3) {
            0 => format!("{age}-year-old {{sex}} {history} who presents with "),
            1 => format!(
                "Patient is {{a}} {age} y/o {letter} {history} who presented to the ED with "
            ),
            _ => format!("This is {{a}} {age}-year-old {{sex}} {history}, admitted with "),
        };
        let condition = plan.condition;
        let mut text = capitalize(&self.fill(&opening));
        text.push_str(&self.fill_any(&condition.presentations));
        for detail in self.some(&condition.details, 0.7, 1) {
            text.push(' ');
            text.push_str(&self.fill(detail));
        }
        if self.visit > 1 {
            let nth = if self.visit == 2 { "second" } else { "third" };
            text.push_str(&self.fill(&format!(" This is {{his}} {nth} admission this year.")));
        }
        if self.phi == Some(Phi::Date) {
            let date = format!(
                "{:02}/{:02}/{}",
                self.rng.range(1, 12),
                self.rng.range(1, 28),
                self.rng.range(2015, 2024)
            );
            text.push_str(&self.fill(&format!(" {{He}} was last seen in clinic on {date}.")));
        }
        for part in [&condition.vitals, &condition.labs] {
            text.push(' ');
            text.push_str(&self.fill_any(part));
        }
        text
    }

    fn pmh(&mut self, plan: &Plan) -> String {
        if plan.history.is_empty() {
            return "None.".to_string();
        }
        let lines: Vec<String> = plan
            .history
            .iter()
            .map(|h| format!("- {}", capitalize(h)))
            .collect();
        lines.join("\n")
    }

    fn results(&mut self, condition: &Condition) -> Option<String> {
        if condition.results.is_empty() || self.rng.chance(0.4) {
            return None;
        }
        let chosen = self.some(&condition.results, 0.6, 1);
        let lines: Vec<String> = chosen.iter().map(|r| self.fill(r)).collect();
        Some(lines.join("\n"))
    }

    fn course(&mut self, condition: &Condition) -> String {
        let mut sentences: Vec<String> = condition.course.iter().map(|c| self.fill(c)).collect();
        for extra in self.some(&condition.extras, 0.4, 0) {
            sentences.push(self.fill(extra));
        }
        sentences.push(self.fill_any(&[
            "{He} was discharged home in stable condition.",
            "On the day of discharge {he} was ambulating, tolerating a regular diet and {his} vital signs were stable.",
            "{He} was felt to be medically stable for discharge {home|home with services}.",
            "{His} symptoms had resolved and {he} was discharged home with close follow-up.",
        ]));
        let text = sentences.join(" ");
        if self.rng.chance(0.4) {
            format!("# {}: {text}", condition.name)
        } else {
            text
        }
    }

    fn med_list(&mut self, plan: &Plan) -> String {
        if plan.prescriptions.is_empty() {
            return "None.".to_string();
        }
        let numbered = self.rng.chance(0.7);
        let mut lines = Vec::new();
        for (i, prescription) in plan.prescriptions.iter().enumerate() {
            let line = prescription.clinical(&mut self.rng);
            lines.push(if numbered {
                format!("{}. {line}", i + 1)
            } else {
                line
            });
        }
        lines.join("\n")
    }

    fn instructions(&mut self, plan: &Plan) -> String {
        let dx = lower_first(&plan.diagnosis);
        let opening = self.pick(&[
            "You were admitted to the hospital for",
            "You were hospitalized with",
            "It was a pleasure taking care of you. You were admitted for",
        ]);
        let mut text = format!("{opening} {dx}.");
        for tip in &plan.tips {
            text.push(' ');
            text.push_str(tip.clinical);
        }
        if self.rng.chance(0.5) {
            text.push_str(" Please take all medications as prescribed.");
        }
        let lead = self.pick(&[
            "Please return to the emergency department or call your doctor if you have:",
            "Seek medical attention for any of the following:",
            "Call your physician or return to the ED if you develop:",
        ]);
        text.push('\n');
        text.push_str(lead);
        for warning in &plan.warnings {
            text.push_str(&format!("\n- {}", warning.clinical));
        }
        text
    }

    fn followup(&mut self, plan: &Plan) -> String {
        let mut lines = Vec::new();
        for (i, visit) in plan.visits.iter().enumerate() {
            let when = time_text(visit.days);
            let clinic = match self.phi {
                Some(Phi::Name) if i == 0 => {
                    format!("Dr. {} ({})", self.pick(&SURNAMES), visit.clinic)
                }
                _ => visit.clinic.to_string(),
            };
            let template = self.pick(&[
                "Please follow up with {c} in {t}.",
                "Follow up with {c} within {t}.",
            ]);
            lines.push(template.replace("{c}", &clinic).replace("{t}", &when));
        }
        if self.phi == Some(Phi::Phone) {
            let number = format!(
                "({}) {}-{:04}",
                self.rng.range(201, 989),
                self.rng.range(201, 989),
                self.rng.range(0, 9999)
            );
            lines.push(format!("Call the clinic at {number} to schedule."));
        }
        lines.join("\n")
    }
}
