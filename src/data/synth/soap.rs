//! Outpatient visits: a doctor–patient dialogue with the vitals said aloud, and the SOAP note
//! a clinician would write from it, built from the same facts so the two agree.

use super::fill::Filler;
use super::lexicon::{self, Block, LexiconError};
use super::people;
use crate::data::record::{Record, Task};
use crate::data::rng::SeededRng;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// A question, the patient's answer and the line it adds to the Subjective section.
struct Exchange {
    question: &'static str,
    answer: &'static str,
    fact: &'static str,
}

/// Something the doctor says about the plan, its line in the note, and the drug it starts.
struct PlanItem {
    said: &'static str,
    note: &'static str,
    drug: Option<&'static str>,
}

struct Complaint {
    name: &'static str,
    age: (i64, i64),
    sex: Option<&'static str>,
    /// Temperature, heart rate, systolic and diastolic pressure ranges.
    vitals: [(f64, f64); 4],
    assessment: &'static str,
    openings: Vec<&'static str>,
    subjective: &'static str,
    exchanges: Vec<Exchange>,
    exam: Vec<(&'static str, &'static str)>,
    plan: Vec<PlanItem>,
}

/// The lexicon, bundled with the program.
const SOURCE: &str = include_str!("../../../assets/lexicons/complaints.txt");

static COMPLAINTS: LazyLock<Vec<Complaint>> = LazyLock::new(|| {
    // The file is compiled in and loaded by a test, so a failure here is a build defect.
    load(SOURCE).unwrap_or_else(|e| panic!("{e}"))
});

fn load(text: &'static str) -> Result<Vec<Complaint>, LexiconError> {
    lexicon::parse("complaints.txt", text)?
        .iter()
        .map(complaint)
        .collect()
}

fn complaint(block: &Block) -> Result<Complaint, LexiconError> {
    let age = block.numbers("age", 2)?;
    let v = block.numbers("vitals", 8)?;
    let mut exchanges = Vec::new();
    for value in block.list("ask", 3)? {
        if let [question, answer, fact] = block.split(value, "ask", 3)?[..] {
            exchanges.push(Exchange {
                question,
                answer,
                fact,
            });
        } else {
            return Err(block.error(
                "ask",
                &format!("'{value}' needs question => answer => note"),
            ));
        }
    }
    let mut exam = Vec::new();
    for value in block.list("exam", 1)? {
        if let [said, note] = block.split(value, "exam", 2)?[..] {
            exam.push((said, note));
        } else {
            return Err(block.error("exam", &format!("'{value}' needs said => note")));
        }
    }
    let mut plan = Vec::new();
    for value in block.list("plan", 2)? {
        match block.split(value, "plan", 3)?[..] {
            [said, note] => plan.push(PlanItem {
                said,
                note,
                drug: None,
            }),
            [said, note, drug] => plan.push(PlanItem {
                said,
                note,
                drug: Some(drug),
            }),
            _ => return Err(block.error("plan", &format!("'{value}' needs said => note"))),
        }
    }
    Ok(Complaint {
        name: block.name,
        age: (age[0] as i64, age[1] as i64),
        sex: block.optional("sex"),
        vitals: [(v[0], v[1]), (v[2], v[3]), (v[4], v[5]), (v[6], v[7])],
        assessment: block.one("dx")?,
        openings: block.list("open", 1)?,
        subjective: block.one("subj")?,
        exchanges,
        exam,
        plan,
    })
}

/// The vital signs of one visit, said in the room and written in the note.
struct Vitals {
    temperature: String,
    heart_rate: i64,
    pressure: (i64, i64),
    respiratory_rate: i64,
    saturation: i64,
}

impl Vitals {
    fn draw(rng: &mut SeededRng, ranges: &[(f64, f64); 4]) -> Vitals {
        let [t, hr, sys, dia] = *ranges;
        let int = |rng: &mut SeededRng, (lo, hi): (f64, f64)| rng.range(lo as i64, hi as i64);
        Vitals {
            temperature: format!("{:.1}", t.0 + rng.f64() * (t.1 - t.0)),
            heart_rate: int(rng, hr),
            pressure: (int(rng, sys), int(rng, dia)),
            respiratory_rate: rng.range(12, 18),
            saturation: rng.range(96, 100),
        }
    }

    fn said(&self, rng: &mut SeededRng) -> String {
        let Vitals {
            temperature: t,
            heart_rate: hr,
            pressure: (s, d),
            saturation: o,
            ..
        } = self;
        match rng.below(2) {
            0 => format!(
                "Let me check your vitals. Your blood pressure is {s}/{d}, your heart rate is {hr}, your temperature is {t}, and your oxygen level is {o} percent."
            ),
            _ => format!(
                "Your vitals today are a blood pressure of {s} over {d}, pulse {hr}, temperature {t}, and oxygen {o} percent."
            ),
        }
    }

    fn note(&self) -> String {
        let Vitals {
            temperature: t,
            heart_rate: hr,
            pressure: (s, d),
            respiratory_rate: rr,
            saturation: o,
        } = self;
        format!("Vitals: BP {s}/{d}, HR {hr}, T {t} F, RR {rr}, SpO2 {o}% on room air.")
    }
}

/// SOAP record `index` of the dataset seeded by `root`.
pub(super) fn record(root: &SeededRng, index: usize) -> Record {
    let mut rng = root.fork(0x50a9).fork(index as u64);
    let complaint = rng.pick(&COMPLAINTS);
    let gender = complaint
        .sex
        .unwrap_or_else(|| people::draw_gender(&mut rng));
    let age = rng.range(complaint.age.0, complaint.age.1) as u32;
    let ethnicity = people::draw_ethnicity(&mut rng);
    let mut filler = Filler::person(&mut rng, gender, age);
    let (input, target) = visit(&mut rng, &mut filler, complaint);
    let drugs: Vec<&str> = complaint.plan.iter().filter_map(|p| p.drug).collect();
    let mut meta = BTreeMap::new();
    meta.insert("complaint".to_string(), json!(complaint.name));
    if !drugs.is_empty() {
        meta.insert("medications".to_string(), json!(drugs));
    }
    Record {
        id: format!("soap-{index:06}"),
        patient_id: Some(people::patient_id(&root.fork(0x50a9), index as u64)),
        task: Task::Soap,
        input,
        target,
        gender: Some(gender.to_string()),
        age: Some(age),
        ethnicity: Some(ethnicity.to_string()),
        meta,
    }
}

/// The dialogue and the note of one visit.
fn visit(rng: &mut SeededRng, filler: &mut Filler, complaint: &Complaint) -> (String, String) {
    let mut turns: Vec<(&str, String)> = Vec::new();
    let greeting = rng.pick(&[
        "Hi, I'm the doctor seeing you today. What brings you in?",
        "Good morning. What can I help you with today?",
        "Hello, nice to meet you. What's going on?",
    ]);
    turns.push(("Doctor", greeting.to_string()));
    let opening = rng.pick(&complaint.openings);
    turns.push(("Patient", filler.fill(rng, opening)));
    let most = complaint.exchanges.len().min(6) as i64;
    let mut chosen: Vec<usize> = (0..complaint.exchanges.len()).collect();
    rng.shuffle(&mut chosen);
    chosen.truncate(rng.range(3, most) as usize);
    chosen.sort_unstable();
    let mut facts = vec![filler.fill(rng, complaint.subjective)];
    for exchange in chosen.iter().map(|i| &complaint.exchanges[*i]) {
        turns.push(("Doctor", filler.fill(rng, exchange.question)));
        turns.push(("Patient", filler.fill(rng, exchange.answer)));
        facts.push(filler.fill(rng, exchange.fact));
    }
    let vitals = Vitals::draw(rng, &complaint.vitals);
    let (exam_said, exam_note) = *rng.pick(&complaint.exam);
    let examined = format!(
        "{} Let me take a look. {}",
        vitals.said(rng),
        filler.fill(rng, exam_said)
    );
    turns.push(("Doctor", examined));
    let asks = [
        "So what do you think is going on?",
        "What does that mean?",
        "Is it anything serious?",
        "What should I do?",
    ];
    turns.push(("Patient", rng.pick(&asks).to_string()));
    let mut advice = rng
        .pick(&[
            "Here's what I recommend.",
            "Okay, here's the plan.",
            "Here's what we'll do.",
        ])
        .to_string();
    for item in &complaint.plan {
        advice.push(' ');
        advice.push_str(&filler.fill(rng, item.said));
    }
    turns.push(("Doctor", advice));
    let thanks = [
        "Okay, that sounds good. Thank you.",
        "Thanks, doctor.",
        "Got it. Thank you so much.",
    ];
    turns.push(("Patient", rng.pick(&thanks).to_string()));
    if rng.chance(0.5) {
        turns.push(("Doctor", "You're welcome. Take care.".to_string()));
    }
    let dialogue: Vec<String> = turns
        .iter()
        .map(|(who, line)| format!("{who}: {line}"))
        .collect();
    let plan: Vec<String> = complaint
        .plan
        .iter()
        .map(|p| format!("- {}", filler.fill(rng, p.note)))
        .collect();
    let note = format!(
        "Subjective:\n{}\nObjective:\n{}\n{}\nAssessment:\n{}\nPlan:\n{}",
        facts.join(" "),
        vitals.note(),
        filler.fill(rng, exam_note),
        filler.fill(rng, complaint.assessment),
        plan.join("\n")
    );
    (dialogue.join("\n"), note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexicon_loads_with_enough_complaints() {
        let complaints = load(SOURCE).unwrap();
        assert!(complaints.len() >= 15, "{}", complaints.len());
        assert!(complaints.iter().all(|c| c.exchanges.len() >= 3));
    }

    #[test]
    fn dialogues_have_8_to_20_turns_and_notes_the_four_headers() {
        let root = SeededRng::new(9);
        let mut complaints = std::collections::HashSet::new();
        for i in 0..300 {
            let record = record(&root, i);
            let turns = record.input.lines().count();
            assert!((8..=20).contains(&turns), "{turns} turns in {}", record.id);
            assert!(
                record
                    .input
                    .lines()
                    .all(|l| l.starts_with("Doctor: ") || l.starts_with("Patient: "))
            );
            assert!(record.input.contains("blood pressure"), "vitals said aloud");
            let headers: Vec<&str> = record
                .target
                .lines()
                .filter(|l| l.ends_with(':') && !l.contains(' '))
                .collect();
            assert_eq!(
                headers,
                ["Subjective:", "Objective:", "Assessment:", "Plan:"],
                "{}",
                record.target
            );
            assert!(
                !record.input.contains('{') && !record.target.contains('{'),
                "{}",
                record.target
            );
            complaints.insert(record.meta["complaint"].to_string());
        }
        assert!(complaints.len() >= 15);
    }

    #[test]
    fn the_note_repeats_the_vitals_said_in_the_dialogue() {
        let record = record(&SeededRng::new(4), 0);
        let pulse = record
            .target
            .split("HR ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap();
        assert!(
            record.input.contains(&format!(" {pulse},")),
            "{pulse}\n{}",
            record.input
        );
    }
}
