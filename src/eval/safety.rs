//! Safety flags on a model's output, from small bundled tables: a dangerous pair of drugs the
//! output puts together (and the source does not), a dose above the bundled maximum, and an
//! emergency symptom of the source that the output never tells the patient to act on.

use crate::eval::meds::{ClauseStarts, Prescription};
use crate::eval::phrases::PhraseMatcher;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::LazyLock;

/// One flag; offsets into the prediction, `None` when the problem is something missing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Flag {
    /// interaction, max_dose or emergency.
    pub kind: &'static str,
    pub message: String,
    pub start: Option<usize>,
    pub end: Option<usize>,
}

struct Interaction {
    left: Vec<String>,
    right: Vec<String>,
    why: String,
}

/// Lines of a bundled table split at `|`, comments and blank lines skipped.
fn table(text: &'static str) -> impl Iterator<Item = Vec<&'static str>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('|').map(str::trim).collect())
}

fn list(field: &str) -> Vec<String> {
    field
        .split(',')
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

static INTERACTIONS: LazyLock<Vec<Interaction>> = LazyLock::new(|| {
    table(include_str!("../../assets/eval/interactions.txt"))
        .filter(|f| f.len() == 3)
        .map(|f| Interaction {
            left: list(f[0]),
            right: list(f[1]),
            why: f[2].to_string(),
        })
        .collect()
});

struct MaxDose {
    generic: String,
    unit: String,
    single: Option<f64>,
    daily: Option<f64>,
}

static MAX_DOSES: LazyLock<Vec<MaxDose>> = LazyLock::new(|| {
    table(include_str!("../../assets/eval/max-doses.txt"))
        .filter(|f| f.len() == 4)
        .map(|f| MaxDose {
            generic: f[0].to_lowercase(),
            unit: f[1].to_lowercase(),
            single: f[2].parse().ok(),
            daily: f[3].parse().ok(),
        })
        .collect()
});

/// Emergency symptom phrases (value: the symptom's name), action phrases and negation words.
struct EmergencyTables {
    symptoms: PhraseMatcher<String>,
    actions: PhraseMatcher<()>,
    negations: PhraseMatcher<()>,
}

static EMERGENCY: LazyLock<EmergencyTables> = LazyLock::new(|| {
    let mut t = EmergencyTables {
        symptoms: PhraseMatcher::default(),
        actions: PhraseMatcher::default(),
        negations: PhraseMatcher::default(),
    };
    for f in table(include_str!("../../assets/eval/emergency.txt")).filter(|f| f.len() == 2) {
        for phrase in list(f[1]) {
            match f[0] {
                "action" => t.actions.insert(&phrase, ()),
                "negation" => t.negations.insert(&phrase, ()),
                name => t.symptoms.insert(&phrase, name.to_string()),
            }
        }
    }
    t
});

/// Interaction, maximum-dose and (when `check_emergency`) emergency flags of an output.
pub fn flags(
    source: Option<&str>,
    output: &str,
    source_meds: &[Prescription],
    output_meds: &[Prescription],
    check_emergency: bool,
) -> Vec<Flag> {
    let taken: Vec<Prescription> = output_meds.iter().filter(|p| !p.avoided).cloned().collect();
    let mut out = interaction_flags(source_meds, &taken);
    out.extend(max_dose_flags(&taken));
    if check_emergency && let Some(source) = source {
        out.extend(emergency_flags(source, output));
    }
    out
}

fn interaction_flags(source_meds: &[Prescription], output_meds: &[Prescription]) -> Vec<Flag> {
    let in_source: HashSet<&str> = source_meds.iter().map(|p| p.generic.as_str()).collect();
    let mut out = Vec::new();
    let mut reported = HashSet::new();
    // The first mention of each drug so far, in order: a later mention of a drug pairs with the
    // first mention of each drug before it (the pair is reported once), so repeated mentions
    // cost one pass, not one per earlier mention.
    let mut firsts: Vec<&Prescription> = Vec::new();
    for later in output_meds {
        for &earlier in firsts.iter().take_while(|p| p.start < later.start) {
            let (a, b) = (earlier.generic.as_str(), later.generic.as_str());
            let Some(rule) = INTERACTIONS.iter().find(|r| {
                let has = |side: &[String], g: &str| side.iter().any(|s| s == g);
                (has(&r.left, a) && has(&r.right, b)) || (has(&r.left, b) && has(&r.right, a))
            }) else {
                continue;
            };
            let both_in_source = in_source.contains(a) && in_source.contains(b);
            if both_in_source || !reported.insert((a.min(b), a.max(b))) {
                continue;
            }
            out.push(Flag {
                kind: "interaction",
                message: format!("{} and {}: {}", earlier.name, later.name, rule.why),
                start: Some(later.start),
                end: Some(later.end),
            });
        }
        if !firsts.iter().any(|p| p.generic == later.generic) {
            firsts.push(later);
        }
    }
    out
}

/// Doses per day from a frequency code such as "3/day" (none for weekly or per-minute codes).
fn per_day(code: &str) -> Option<f64> {
    code.strip_suffix("/day")?.parse().ok()
}

fn max_dose_flags(output_meds: &[Prescription]) -> Vec<Flag> {
    let mut out = Vec::new();
    for p in output_meds {
        let (Some(dose), Some(max)) = (&p.dose, MAX_DOSES.iter().find(|m| m.generic == p.generic))
        else {
            continue;
        };
        let Some(amount) = dose.amount_in(&max.unit) else {
            continue;
        };
        let times = p.frequency.as_ref().and_then(|f| per_day(&f.code));
        let message = if max.single.is_some_and(|s| amount > s + 1e-9) {
            format!(
                "{} {}: a single dose above the usual maximum of {} {}.",
                p.name,
                dose.text,
                max.single.unwrap_or_default(),
                max.unit
            )
        } else if let (Some(daily), Some(times)) = (max.daily, times)
            && amount * times > daily + 1e-9
        {
            format!(
                "{} {} {} is {} {} a day, above the usual maximum of {} {}.",
                p.name,
                dose.text,
                p.frequency.as_ref().map_or("", |f| f.text.as_str()),
                amount * times,
                max.unit,
                daily,
                max.unit
            )
        } else {
            continue;
        };
        out.push(Flag {
            kind: "max_dose",
            message,
            start: Some(dose.start),
            end: Some(dose.end),
        });
    }
    out
}

/// Paragraphs (blocks separated by a blank line) as byte ranges.
fn paragraphs(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in text.match_indices("\n\n") {
        out.push(start..i);
        start = i + 2;
    }
    out.push(start..text.len());
    out
}

/// Whether the paragraph of `text` holding byte `pos` tells the reader to act (call, come back).
fn in_action_paragraph(text: &str, pos: usize) -> bool {
    paragraphs(text)
        .into_iter()
        .find(|b| b.contains(&pos))
        .is_some_and(|b| !EMERGENCY.actions.find_all(&text[b]).is_empty())
}

/// Symptoms the source tells the patient to get help for (in a paragraph with an instruction to
/// act, not negated in their sentence) that no paragraph of the output pairs with such an
/// instruction.
fn emergency_flags(source: &str, output: &str) -> Vec<Flag> {
    let t = &*EMERGENCY;
    let clauses = ClauseStarts::of(source);
    let negated = |start: usize| {
        !t.negations
            .find_all(&source[clauses.at(start)..start])
            .is_empty()
    };
    let mut in_source: Vec<&str> = Vec::new();
    for m in t.symptoms.find_all(source) {
        if !negated(m.start)
            && in_action_paragraph(source, m.start)
            && !in_source.contains(&m.value.as_str())
        {
            in_source.push(m.value.as_str());
        }
    }
    let output_symptoms = t.symptoms.find_all(output);
    let acted_on = |pos: usize| in_action_paragraph(output, pos);
    in_source
        .into_iter()
        .filter_map(|symptom| {
            let mentions: Vec<_> = output_symptoms
                .iter()
                .filter(|m| m.value == symptom)
                .collect();
            if mentions.iter().any(|m| acted_on(m.start)) {
                return None;
            }
            let first = mentions.first();
            Some(Flag {
                kind: "emergency",
                message: if first.is_some() {
                    format!(
                        "The output mentions {symptom} but does not tell the patient to get help for it."
                    )
                } else {
                    format!(
                        "The source tells the patient to get help for {symptom}; the output does not."
                    )
                },
                start: first.map(|m| m.start),
                end: first.map(|m| m.end),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::meds::extract;

    fn flags_of(source: &str, output: &str) -> Vec<Flag> {
        flags(
            Some(source),
            output,
            &extract(source),
            &extract(output),
            true,
        )
    }

    #[test]
    fn drugs_the_output_says_to_avoid_raise_no_flag() {
        let f = flags_of(
            "Discharge Medications:\nApixaban 5 mg PO BID",
            "Take apixaban 5 mg two times a day. Do not take ibuprofen or naproxen.",
        );
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn interaction_introduced_by_the_output_is_flagged() {
        let f = flags_of(
            "Discharge Medications:\nNitroglycerin 0.4 mg SL Q5MIN PRN chest pain",
            "Use nitroglycerin under your tongue. You may also take Viagra 50 mg.",
        );
        let kinds: Vec<&str> = f.iter().map(|f| f.kind).collect();
        assert!(kinds.contains(&"interaction"), "{f:?}");
        let same = flags_of(
            "Sildenafil 50 mg daily. Nitroglycerin 0.4 mg SL PRN.",
            "Take sildenafil. Use nitroglycerin.",
        );
        assert!(same.iter().all(|f| f.kind != "interaction"), "{same:?}");
    }

    /// Two interacting drugs mentioned twenty thousand times each: one flag, at the first
    /// pairing, in linear time (each mention against every earlier one took seconds).
    #[test]
    fn repeated_interacting_drugs_are_flagged_once_in_linear_time() {
        let output = "warfarin and ibuprofen, ".repeat(20_000);
        let started = std::time::Instant::now();
        let f = flags_of("Discharge Medications:\nWarfarin 5 mg PO daily", &output);
        let seconds = started.elapsed().as_secs_f64();
        let interactions: Vec<&Flag> = f.iter().filter(|f| f.kind == "interaction").collect();
        assert_eq!(interactions.len(), 1, "{interactions:?}");
        assert_eq!(interactions[0].start, output.find("ibuprofen"));
        assert!(seconds < 2.0, "{seconds:.1} s");
    }

    #[test]
    fn single_and_daily_maximum_doses() {
        let f = flags_of("", "Take acetaminophen 1,500 mg once.");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, "max_dose");
        let daily = flags_of("", "Take Tylenol 1000 mg every 4 hours.");
        assert!(daily[0].message.contains("6000 mg a day"), "{daily:?}");
        assert!(flags_of("", "Take acetaminophen 650 mg every 6 hours.").is_empty());
    }

    #[test]
    fn emergency_symptom_needs_an_instruction_to_act() {
        let source = "He denies fever or chills. Had a cough.\n\nReturn to the ED for chest pain or shortness of breath.";
        let ok = "Call 911 if you have chest pain or feel short of breath.";
        assert!(
            flags_of(source, ok).is_empty(),
            "{:?}",
            flags_of(source, ok)
        );
        let missing = flags_of(source, "You had chest pain.\n\nTake your pills.");
        let names: Vec<&str> = missing.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(missing.len(), 2, "{names:?}");
        assert_eq!(missing[0].start, Some(8));
    }
}
