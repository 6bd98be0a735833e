//! Discharge summaries in MIMIC style, written from one diagnosis, one patient and one list of
//! prescriptions; `plain` writes the patient's explanation from the same plan so the two agree.

use super::conditions::{self, COMORBIDITIES, Comorbidity, Condition};
use super::fill::Filler;
use super::meds::{self, Prescription};
use super::people::{self, Stay};
use super::plain;
use super::plan::{Phi, Plan, Visit, Writer};
use crate::data::record::{Record, Task};
use crate::data::rng::SeededRng;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Share of notes that keep one identifier the de-identification missed.
const PHI_LEAK_RATE: f64 = 0.03;

const ALLERGIES: [(&str, f64); 7] = [
    (
        "Patient recorded as having No Known Allergies to Drugs",
        0.45,
    ),
    ("No Known Allergies / Adverse Drug Reactions", 0.2),
    ("Codeine (nausea)", 0.1),
    ("Iodinated contrast media (hives)", 0.07),
    ("Shellfish", 0.07),
    ("Morphine (itching)", 0.06),
    ("Latex", 0.05),
];

/// Everything that stays the same across one patient's stays.
struct Patient {
    gender: &'static str,
    ethnicity: &'static str,
    first: &'static Condition,
    age: u32,
    /// Years added to the age at the second and third stay.
    aging: [u32; 2],
    chronic: Vec<&'static Comorbidity>,
    allergy: &'static str,
}

impl Patient {
    fn draw(root: &SeededRng, number: u64) -> Patient {
        let mut rng = root.fork(0xd15c).fork(number);
        let all = conditions::all();
        let weights: Vec<f64> = all.iter().map(|c| c.weight).collect();
        let first = &all[rng.weighted(&weights)];
        let gender = people::draw_gender(&mut rng);
        let ethnicity = people::draw_ethnicity(&mut rng);
        let [mean, sd, lo, hi] = first.age;
        let age = people::draw_age(&mut rng, mean, sd, lo, hi);
        let step = rng.below(2) as u32;
        let aging = [step, step + rng.below(2) as u32];
        let burden = match age {
            0..=17 => 0.0,
            18..=39 => 0.25,
            40..=59 => 0.7,
            _ => 1.0,
        };
        let chronic = COMORBIDITIES
            .iter()
            .filter(|c| rng.chance(c.prevalence * burden))
            .collect();
        let weights: Vec<f64> = ALLERGIES.iter().map(|(_, w)| *w).collect();
        let allergy = ALLERGIES[rng.weighted(&weights)].0;
        Patient {
            gender,
            ethnicity,
            first,
            age,
            aging,
            chronic,
            allergy,
        }
    }

    /// A readmission is for the same problem half of the time, else for any that fits the age.
    fn condition(&self, visit: u32, age: u32, rng: &mut SeededRng) -> &'static Condition {
        if visit == 1 || rng.chance(0.5) {
            return self.first;
        }
        let fitting: Vec<&'static Condition> = conditions::all()
            .iter()
            .filter(|c| c.fits_age(age))
            .collect();
        if fitting.is_empty() {
            return self.first;
        }
        let weights: Vec<f64> = fitting.iter().map(|c| c.weight).collect();
        fitting[rng.weighted(&weights)]
    }
}

/// Discharge record `index` of the dataset seeded by `root`.
pub(super) fn record(root: &SeededRng, index: usize) -> Record {
    let Stay {
        patient: number,
        visit,
    } = people::discharge_stay(root, index);
    let patient = Patient::draw(root, number);
    let mut rng = root.fork(0xd15e).fork(index as u64);
    let age = patient.age
        + if visit > 1 {
            patient.aging[visit as usize - 2]
        } else {
            0
        };
    let condition = patient.condition(visit, age, &mut rng);
    let phi = rng
        .chance(PHI_LEAK_RATE)
        .then(|| *rng.pick(&[Phi::Name, Phi::Date, Phi::Mrn, Phi::Phone]));
    let filler = Filler::person(&mut rng, patient.gender, age);
    let mut writer = Writer {
        rng,
        filler,
        age,
        gender: patient.gender,
        visit,
        phi,
    };
    let plan = writer.plan(&patient, condition);
    let input = writer.note(&plan, patient.allergy);
    let target = plain::explanation(&mut writer, &plan);
    let mut meta = BTreeMap::new();
    meta.insert("diagnosis".to_string(), json!(condition.name));
    meta.insert("visit".to_string(), json!(visit));
    let names: Vec<&str> = plan.prescriptions.iter().map(|p| p.med.name).collect();
    meta.insert("medications".to_string(), json!(names));
    if let Some(kind) = phi {
        meta.insert("phi_leak".to_string(), Value::Bool(true));
        meta.insert("phi_kind".to_string(), json!(kind.label()));
    }
    Record {
        id: format!("dis-{index:06}"),
        patient_id: Some(people::patient_id(root, number)),
        task: Task::Discharge,
        input,
        target,
        gender: Some(patient.gender.to_string()),
        age: Some(age),
        ethnicity: Some(patient.ethnicity.to_string()),
        meta,
    }
}

impl Writer {
    fn plan(&mut self, patient: &Patient, condition: &'static Condition) -> Plan {
        let diagnosis = self.fill_any(&condition.diagnoses);
        let own = self.some(&condition.history, 0.8, 0);
        let mut history: Vec<String> = own.iter().map(|h| self.fill(h)).collect();
        let chronic: Vec<&Comorbidity> = patient
            .chronic
            .iter()
            .copied()
            .filter(|c| !history.iter().any(|h| h.contains(c.keyword)))
            .collect();
        history.extend(chronic.iter().map(|c| c.name.to_string()));
        let prescriptions = self.prescriptions(condition, &chronic);
        let warnings = self.some(&condition.warnings, 0.75, 3);
        let tips = self.some(&condition.tips, 0.7, 1);
        let mut visits = Vec::new();
        let fu = &condition.followup;
        if fu.clinic != "Primary care" {
            let days = self.visit_days(fu.days);
            visits.push(Visit {
                clinic: fu.clinic,
                plain: fu.plain,
                days,
            });
        }
        let days = self.visit_days((5, 14));
        let plain = self.pick(&["your family doctor", "your primary care doctor"]);
        visits.push(Visit {
            clinic: "your primary care physician",
            plain,
            days,
        });
        Plan {
            condition,
            diagnosis,
            history,
            prescriptions,
            warnings,
            tips,
            visits,
        }
    }

    fn prescriptions(
        &mut self,
        condition: &Condition,
        chronic: &[&Comorbidity],
    ) -> Vec<Prescription> {
        let mut list: Vec<Prescription> = Vec::new();
        for (p, choices) in &condition.meds {
            if self.rng.chance(*p) {
                let med = *self.rng.pick(choices);
                list.push(Prescription::new(&mut self.rng, med));
            }
        }
        if condition.home_meds {
            for med in chronic.iter().filter_map(|c| c.med.and_then(meds::find)) {
                if list.iter().all(|p| p.med.name != med.name) {
                    list.push(Prescription::new(&mut self.rng, med));
                }
            }
        }
        list
    }

    fn visit_days(&mut self, (lo, hi): (i64, i64)) -> i64 {
        let options: Vec<i64> = [3, 5, 7, 10, 14, 21, 28, 42, 56]
            .into_iter()
            .filter(|d| (lo..=hi).contains(d))
            .collect();
        if options.is_empty() {
            lo
        } else {
            *self.rng.pick(&options)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::generate;
    use std::collections::{HashMap, HashSet};

    const REQUIRED: [&str; 6] = [
        "Discharge Diagnosis:",
        "History of Present Illness:",
        "Brief Hospital Course:",
        "Discharge Medications:",
        "Discharge Instructions:",
        "Followup Instructions:",
    ];

    /// The body under a header line, up to the next blank line.
    fn section<'a>(note: &'a str, header: &str) -> &'a str {
        let start = note
            .find(&format!("{header}\n"))
            .map_or(note.len(), |s| s + header.len() + 1);
        let rest = &note[start..];
        &rest[..rest.find("\n\n").unwrap_or(rest.len())]
    }

    fn syllables(word: &str) -> usize {
        let letters: Vec<char> = word
            .to_lowercase()
            .chars()
            .filter(char::is_ascii_alphabetic)
            .collect();
        let vowel = |c: &char| "aeiouy".contains(*c);
        let mut count = 0;
        let mut previous = false;
        for c in &letters {
            count += usize::from(vowel(c) && !previous);
            previous = vowel(c);
        }
        let silent_e =
            letters.len() > 2 && letters.ends_with(&['e']) && !letters.ends_with(&['l', 'e']);
        count
            .saturating_sub(usize::from(silent_e && count > 1))
            .max(1)
    }

    /// Flesch-Kincaid grade with sentences ended by `.`, `!` or `?`, as readability tools count them.
    fn grade(text: &str) -> f64 {
        let words: Vec<&str> = text
            .split_whitespace()
            .filter(|w| w.chars().any(|c| c.is_ascii_alphanumeric()))
            .collect();
        let sentences = words
            .iter()
            .filter(|w| w.ends_with(['.', '!', '?']))
            .count();
        let syllables: usize = words.iter().map(|w| syllables(w)).sum();
        let (w, s) = (words.len() as f64, sentences.max(1) as f64);
        0.39 * w / s + 11.8 * syllables as f64 / w - 15.59
    }

    #[test]
    fn syllable_counter_matches_hand_counts() {
        let counts: Vec<usize> = ["water", "pill", "furosemide", "the", "hospital", "table"]
            .map(syllables)
            .to_vec();
        assert_eq!(counts, [2, 1, 4, 1, 3, 2]);
    }

    #[test]
    fn notes_have_required_sections_in_order_and_no_template_left() {
        for record in generate(Task::Discharge, 600, 3, None) {
            let positions: Vec<usize> = REQUIRED
                .iter()
                .map(|h| {
                    record
                        .input
                        .find(&format!("{h}\n"))
                        .unwrap_or_else(|| panic!("{h} missing in {}", record.id))
                })
                .collect();
            assert!(
                positions.windows(2).all(|w| w[0] < w[1]),
                "order in {}",
                record.id
            );
            for text in [&record.input, &record.target] {
                assert!(
                    !text.contains('{') && !text.contains('}'),
                    "{}: {text}",
                    record.id
                );
            }
        }
    }

    #[test]
    fn every_listed_medication_is_explained_by_name() {
        let mut checked = 0;
        for record in generate(Task::Discharge, 1000, 5, None) {
            let target = record.target.to_lowercase();
            for line in section(&record.input, "Discharge Medications:")
                .lines()
                .filter(|l| *l != "None.")
            {
                let line = line
                    .split_once(". ")
                    .filter(|(n, _)| n.parse::<u32>().is_ok())
                    .map_or(line, |(_, rest)| rest);
                let name: Vec<&str> = line
                    .split(' ')
                    .take_while(|w| !w.starts_with(|c: char| c.is_ascii_digit()))
                    .collect();
                let name = name.join(" ").to_lowercase();
                assert!(
                    target.contains(&name),
                    "{}: '{name}' not in target",
                    record.id
                );
                checked += 1;
            }
        }
        assert!(checked > 2500, "{checked}");
    }

    #[test]
    fn diagnoses_and_demographics_follow_the_design() {
        let records = generate(Task::Discharge, 2000, 11, None);
        let diagnoses: HashSet<String> = records
            .iter()
            .map(|r| r.meta["diagnosis"].to_string())
            .collect();
        assert!(diagnoses.len() >= 25, "{}", diagnoses.len());
        let share = |f: &dyn Fn(&Record) -> bool| {
            records.iter().filter(|r| f(r)).count() as f64 / records.len() as f64
        };
        let female = share(&|r| r.gender.as_deref() == Some("F"));
        assert!((female - 0.52).abs() < 0.035, "{female}");
        for (ethnicity, expected) in people::ETHNICITIES {
            let got = share(&|r| r.ethnicity.as_deref() == Some(ethnicity));
            assert!((got - expected).abs() < 0.035, "{ethnicity}: {got}");
        }
        let children: HashSet<String> = records
            .iter()
            .filter(|r| r.age.is_some_and(|a| a < 18))
            .map(|r| r.meta["diagnosis"].as_str().unwrap_or_default().to_string())
            .collect();
        let allowed: HashSet<String> = [
            "Acute appendicitis",
            "Asthma exacerbation",
            "Diabetic ketoacidosis",
        ]
        .map(String::from)
        .into();
        assert!(
            !children.is_empty() && children.is_subset(&allowed),
            "{children:?}"
        );
        let old = share(&|r| r.age.is_some_and(|a| a >= 40));
        assert!(old > 0.75, "{old}");
    }

    #[test]
    fn readmissions_share_patient_and_demographics() {
        let records = generate(Task::Discharge, 2000, 13, None);
        let mut by_patient: HashMap<&str, Vec<&Record>> = HashMap::new();
        for record in &records {
            by_patient
                .entry(record.patient_key())
                .or_default()
                .push(record);
        }
        let repeated: Vec<&Vec<&Record>> = by_patient.values().filter(|v| v.len() > 1).collect();
        let share = repeated.len() as f64 / by_patient.len() as f64;
        assert!((0.10..0.20).contains(&share), "{share}");
        assert!(repeated.iter().all(|v| v.len() <= 3));
        for stays in repeated {
            let first = stays[0];
            for later in &stays[1..] {
                assert_eq!(
                    (&later.gender, &later.ethnicity),
                    (&first.gender, &first.ethnicity)
                );
                let (a, b) = (first.age.unwrap_or(0), later.age.unwrap_or(0));
                assert!(b >= a && b <= a + 2, "{a} -> {b}");
                assert!(later.meta["visit"].as_u64() > first.meta["visit"].as_u64());
            }
        }
    }

    #[test]
    fn lengths_and_reading_grades() {
        let records = generate(Task::Discharge, 400, 17, None);
        let words: Vec<usize> = records
            .iter()
            .map(|r| r.input.split_whitespace().count())
            .collect();
        let inside = words.iter().filter(|w| (180..=450).contains(*w)).count();
        assert!(
            inside as f64 >= 0.95 * words.len() as f64,
            "{:?}",
            (words.iter().min(), words.iter().max())
        );
        let sample = &records[..200];
        let mean =
            |f: &dyn Fn(&Record) -> f64| sample.iter().map(f).sum::<f64>() / sample.len() as f64;
        let target_grade = mean(&|r| grade(&r.target));
        let input_grade = mean(&|r| grade(&r.input));
        assert!(
            (5.0..9.0).contains(&target_grade),
            "target grade {target_grade}"
        );
        assert!(
            input_grade > target_grade + 2.0,
            "input {input_grade} vs target {target_grade}"
        );
    }

    #[test]
    fn a_few_notes_leak_one_identifier() {
        let records = generate(Task::Discharge, 3000, 19, None);
        let leaks: Vec<&Record> = records
            .iter()
            .filter(|r| r.meta.contains_key("phi_leak"))
            .collect();
        let rate = leaks.len() as f64 / records.len() as f64;
        assert!((0.015..0.05).contains(&rate), "{rate}");
        for record in leaks {
            let marker = match record.meta["phi_kind"].as_str() {
                Some("name") => "Dr. ",
                Some("mrn") => "MRN: ",
                Some("date") => "last seen in clinic on ",
                _ => "Call the clinic at (",
            };
            assert!(record.input.contains(marker), "{}", record.input);
        }
        let clean = records.iter().filter(|r| !r.meta.contains_key("phi_leak"));
        assert!(
            clean
                .clone()
                .all(|r| !r.input.contains("Dr. ") && !r.input.contains("MRN"))
        );
    }
}
