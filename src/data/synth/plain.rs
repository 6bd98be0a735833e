//! The patient's explanation of a discharge: short sentences and everyday words, every
//! discharge medicine with its dose and schedule, the warning signs and the follow-up visits.

use super::plan::{Plan, Writer, time_text};

/// Section headings, one pair of wordings per section.
const HEADINGS: [[&str; 2]; 6] = [
    [
        "Why you were in the hospital:",
        "Why you came to the hospital:",
    ],
    ["What we did:", "What happened in the hospital:"],
    ["Your medicines:", "Medicines to take at home:"],
    ["When to get help:", "When to call for help:"],
    [
        "Taking care of yourself at home:",
        "Things you can do at home:",
    ],
    ["Your follow-up visits:", "Your next visits:"],
];

/// Writes the explanation from the same plan (and template variables) as the note.
pub(super) fn explanation(writer: &mut Writer, plan: &Plan) -> String {
    let condition = plan.condition;
    let cause = writer.pick(&condition.causes);
    let why = writer.pick(&condition.explanations);
    let reason = writer.fill(&format!("You came to the hospital because {cause}. {why}"));
    let treatments: Vec<String> = condition
        .treatments
        .iter()
        .map(|t| writer.fill(t))
        .collect();
    let mut sections = vec![
        (0, reason),
        (1, treatments.join(" ")),
        (2, medicines(writer, plan)),
        (3, warnings(writer, plan)),
    ];
    if !plan.tips.is_empty() {
        let tips: Vec<String> = plan.tips.iter().map(|t| format!("- {}", t.plain)).collect();
        sections.push((4, tips.join("\n")));
    }
    sections.push((5, visits(writer, plan)));
    let parts: Vec<String> = sections
        .into_iter()
        .map(|(heading, body)| format!("{}\n{body}", writer.pick(&HEADINGS[heading])))
        .collect();
    parts.join("\n\n")
}

fn medicines(writer: &mut Writer, plan: &Plan) -> String {
    if plan.prescriptions.is_empty() {
        return "You do not need any new medicines. Keep taking your usual medicines.".to_string();
    }
    let lines: Vec<String> = plan
        .prescriptions
        .iter()
        .map(|p| format!("- {}", p.plain(&mut writer.rng)))
        .collect();
    lines.join("\n")
}

fn warnings(writer: &mut Writer, plan: &Plan) -> String {
    let lead = writer.pick(&[
        "Call your doctor or come back to the hospital if:",
        "Come back to the emergency room or call 911 if:",
        "Get help right away if:",
    ]);
    let lines: Vec<String> = plan
        .warnings
        .iter()
        .map(|w| format!("- {}", w.plain))
        .collect();
    format!("{lead}\n{}", lines.join("\n"))
}

fn visits(writer: &mut Writer, plan: &Plan) -> String {
    let mut lines = Vec::new();
    for visit in &plan.visits {
        let purpose = writer.pick(&[
            "to check how you are doing",
            "so they can check on your progress",
            "to make sure you are getting better",
        ]);
        lines.push(format!(
            "- See {} in {} {purpose}.",
            visit.plain,
            time_text(visit.days)
        ));
    }
    if writer.rng.chance(0.7) {
        lines.push(
            writer
                .pick(&[
                    "If you have any questions about your medicines, call your doctor or your pharmacist.",
                    "Bring this paper and all of your medicine bottles to your next visit.",
                ])
                .to_string(),
        );
    }
    lines.join("\n")
}
