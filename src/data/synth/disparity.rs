//! Deliberately noisier references for one demographic group, so that a bias audit has a known
//! gap to find: sentences dropped, plain words swapped for jargon, a medicine left out, order shuffled.

use super::people::{ETHNICITIES, GENDERS};
use crate::data::record::{AgeGroup, Demographic, Record, Task};
use crate::data::rng::SeededRng;
use serde_json::Value;
use thiserror::Error;

/// Which records get worse references, and how much worse (0 < strength <= 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Disparity {
    pub field: Demographic,
    pub group: String,
    pub strength: f64,
}

/// A `--disparity` value that cannot be used, with what was expected.
#[derive(Debug, Error, PartialEq)]
pub enum SynthError {
    #[error("disparity '{spec}': expected GROUP=STRENGTH, for example ethnicity:Hispanic=0.6")]
    MissingStrength { spec: String },
    #[error("disparity '{spec}': strength '{value}' is not a number")]
    BadStrength { spec: String, value: String },
    #[error("disparity '{spec}': strength {value} must be greater than 0 and at most 1")]
    StrengthOutOfRange { spec: String, value: f64 },
    #[error("disparity '{spec}': unknown field '{field}'; expected gender, age_group or ethnicity")]
    UnknownField { spec: String, field: String },
    #[error("disparity '{spec}': '{value}' is not a {field} value; expected one of {expected}")]
    UnknownValue {
        spec: String,
        field: &'static str,
        value: String,
        expected: String,
    },
    #[error(
        "disparity '{spec}': '{value}' is not a value of any demographic field; expected one of {expected}"
    )]
    UnknownGroup {
        spec: String,
        value: String,
        expected: String,
    },
    #[error(
        "disparity '{spec}': '{value}' is a value of both {first} and {second}; write FIELD:{value}"
    )]
    AmbiguousGroup {
        spec: String,
        value: String,
        first: &'static str,
        second: &'static str,
    },
}

/// Plain phrases of the references and the jargon a careless writer would use instead.
const JARGON: [(&str, &str); 30] = [
    ("once a day in the morning", "QAM"),
    ("once a day", "daily"),
    ("two times a day", "BID"),
    ("three times a day", "TID"),
    ("four times a day", "QID"),
    ("at bedtime", "QHS"),
    ("if you need it", "PRN"),
    ("by mouth", "PO"),
    ("under your skin", "SC"),
    ("water pill", "loop diuretic"),
    ("blood thinner", "anticoagulant"),
    ("heart attack", "myocardial infarction"),
    ("blood clot", "thrombus"),
    ("heart doctor", "cardiologist"),
    ("family doctor", "PCP"),
    ("primary care doctor", "PCP"),
    ("belly", "abdomen"),
    ("throw up", "have emesis"),
    ("short of breath", "dyspneic"),
    ("trouble breathing", "dyspnea"),
    ("kidney", "renal"),
    ("blood sugar", "serum glucose"),
    ("swollen", "edematous"),
    ("swelling", "edema"),
    ("dizzy", "presyncopal"),
    ("lungs", "pulmonary parenchyma"),
    ("twice daily", "BID"),
    ("follow up", "f/u"),
    ("without", "w/o"),
    ("history of", "h/o"),
];

fn values(field: Demographic) -> Vec<&'static str> {
    match field {
        Demographic::Gender => GENDERS.iter().map(|(v, _)| *v).collect(),
        Demographic::AgeGroup => AgeGroup::ALL.iter().map(|g| g.label()).collect(),
        Demographic::Ethnicity => ETHNICITIES.iter().map(|(v, _)| *v).collect(),
    }
}

fn field(name: &str) -> Option<Demographic> {
    match name.trim().to_ascii_lowercase().as_str() {
        "gender" | "sex" => Some(Demographic::Gender),
        "age_group" | "age-group" | "age" => Some(Demographic::AgeGroup),
        "ethnicity" | "race" => Some(Demographic::Ethnicity),
        _ => None,
    }
}

/// The field a bare value belongs to, and its canonical spelling.
fn resolve(
    spec: &str,
    value: &str,
    tables: &[(Demographic, Vec<&'static str>)],
) -> Result<(Demographic, &'static str), SynthError> {
    let hits: Vec<(Demographic, &'static str)> = tables
        .iter()
        .filter_map(|(f, vs)| {
            vs.iter()
                .find(|v| v.eq_ignore_ascii_case(value))
                .map(|v| (*f, *v))
        })
        .collect();
    match hits[..] {
        [one] => Ok(one),
        [] => Err(SynthError::UnknownGroup {
            spec: spec.to_string(),
            value: value.to_string(),
            expected: tables
                .iter()
                .flat_map(|(_, vs)| vs.iter().copied())
                .collect::<Vec<_>>()
                .join(", "),
        }),
        [(first, _), (second, _), ..] => Err(SynthError::AmbiguousGroup {
            spec: spec.to_string(),
            value: value.to_string(),
            first: first.name(),
            second: second.name(),
        }),
    }
}

impl Disparity {
    /// Reads `field:value=strength` or `value=strength`, e.g. `ethnicity:Hispanic=0.6`, `65+=0.5`.
    pub fn parse(spec: &str) -> Result<Disparity, SynthError> {
        let spec = spec.trim();
        let owned = || spec.to_string();
        let (group, strength) = spec
            .rsplit_once('=')
            .ok_or_else(|| SynthError::MissingStrength { spec: owned() })?;
        let strength: f64 = strength
            .trim()
            .parse()
            .map_err(|_| SynthError::BadStrength {
                spec: owned(),
                value: strength.trim().to_string(),
            })?;
        if !(strength > 0.0 && strength <= 1.0) {
            return Err(SynthError::StrengthOutOfRange {
                spec: owned(),
                value: strength,
            });
        }
        let (field, group) = match group.split_once(':') {
            Some((name, value)) => {
                let field = field(name).ok_or_else(|| SynthError::UnknownField {
                    spec: owned(),
                    field: name.trim().to_string(),
                })?;
                let known = values(field);
                let canonical = known.iter().find(|v| v.eq_ignore_ascii_case(value.trim()));
                let canonical = canonical.ok_or_else(|| SynthError::UnknownValue {
                    spec: owned(),
                    field: field.name(),
                    value: value.trim().to_string(),
                    expected: known.join(", "),
                })?;
                (field, *canonical)
            }
            None => {
                let tables: Vec<_> = Demographic::ALL.iter().map(|f| (*f, values(*f))).collect();
                resolve(spec, group.trim(), &tables)?
            }
        };
        Ok(Disparity {
            field,
            group: group.to_string(),
            strength,
        })
    }

    pub fn matches(&self, record: &Record) -> bool {
        record.demographic(self.field).as_deref() == Some(self.group.as_str())
    }

    /// Makes the reference of a matching record noisier and keeps the clean one in
    /// `meta.clean_target`; other records are left untouched.
    pub(super) fn apply(&self, record: &mut Record, mut rng: SeededRng) {
        if !self.matches(record) {
            return;
        }
        let medications: Vec<String> = record
            .meta
            .get("medications")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_lowercase))
                    .collect()
            })
            .unwrap_or_default();
        // The answer line of a QA reference stays: only its explanation gets worse.
        let keep_first = record.task == Task::Qa;
        let noisy = degrade(
            &record.target,
            self.strength,
            &medications,
            keep_first,
            &mut rng,
        );
        let clean = std::mem::replace(&mut record.target, noisy);
        record
            .meta
            .insert("disparity_applied".to_string(), Value::Bool(true));
        record
            .meta
            .insert("clean_target".to_string(), Value::String(clean));
    }
}

/// A line of a reference: a bullet or label kept in front, and its sentences.
struct Line {
    prefix: String,
    sentences: Vec<String>,
}

impl Line {
    fn parse(text: &str) -> Line {
        let label_end = text
            .find(": ")
            .filter(|end| !text[..*end].contains(' '))
            .map(|end| end + 2);
        let cut = if text.starts_with("- ") {
            Some(2)
        } else {
            label_end
        };
        let (prefix, body) = text.split_at(cut.unwrap_or(0));
        Line {
            prefix: prefix.to_string(),
            sentences: split_sentences(body),
        }
    }

    fn text(&self) -> String {
        format!("{}{}", self.prefix, self.sentences.join(" "))
    }
}

/// Sentence ends are `.`, `!` or `?` before a space, except after a single capital ("C. diff").
fn split_sentences(text: &str) -> Vec<String> {
    let mut sentences = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for i in 0..bytes.len() {
        let end = matches!(bytes[i], b'.' | b'!' | b'?') && bytes.get(i + 1) == Some(&b' ');
        let initial =
            i >= 1 && bytes[i - 1].is_ascii_uppercase() && (i == 1 || bytes[i - 2] == b' ');
        if end && !initial {
            sentences.push(text[start..=i].trim().to_string());
            start = i + 1;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        sentences.push(rest.to_string());
    }
    sentences
}

/// A heading ("Your medicines:") or a line that must survive as written.
fn is_fixed(line: &str) -> bool {
    line.trim().is_empty() || (line.ends_with(':') && line.split_whitespace().count() <= 7)
}

fn degrade(
    target: &str,
    strength: f64,
    medications: &[String],
    keep_first: bool,
    rng: &mut SeededRng,
) -> String {
    let dropped =
        (!medications.is_empty() && rng.chance(strength)).then(|| rng.pick(medications).clone());
    let mut out: Vec<String> = Vec::new();
    let mut section: Vec<String> = Vec::new();
    for (i, line) in target.lines().enumerate() {
        if is_fixed(line) || (keep_first && i == 0) {
            out.extend(noisy_section(
                std::mem::take(&mut section),
                strength,
                dropped.as_deref(),
                rng,
            ));
            out.push(line.to_string());
        } else {
            section.push(line.to_string());
        }
    }
    out.extend(noisy_section(section, strength, dropped.as_deref(), rng));
    let mut text = jargonize(&out.join("\n"), strength, rng);
    if text == target {
        text = shorten_longest_line(target, keep_first);
    }
    text
}

/// Drops the lines that mention `dropped`, drops and shuffles sentences, shuffles lines; a
/// section never loses all its lines.
fn noisy_section(
    lines: Vec<String>,
    strength: f64,
    dropped: Option<&str>,
    rng: &mut SeededRng,
) -> Vec<String> {
    let Some(first) = lines.first().cloned() else {
        return lines;
    };
    let mut kept: Vec<String> = Vec::new();
    for line in lines
        .iter()
        .filter(|l| dropped.is_none_or(|d| !l.to_lowercase().contains(d)))
    {
        let mut parsed = Line::parse(line);
        parsed.sentences.retain(|_| !rng.chance(0.4 * strength));
        if parsed.sentences.len() > 1 && rng.chance(0.5 * strength) {
            rng.shuffle(&mut parsed.sentences);
        }
        if !parsed.sentences.is_empty() {
            kept.push(parsed.text());
        }
    }
    if kept.is_empty() {
        kept.push(first);
    }
    if rng.chance(0.3 * strength) {
        rng.shuffle(&mut kept);
    }
    kept
}

/// Replaces each plain phrase (whole words only) with its jargon with probability `strength`.
fn jargonize(text: &str, strength: f64, rng: &mut SeededRng) -> String {
    let mut current = text.to_string();
    for (plain, jargon) in JARGON {
        let mut result = String::with_capacity(current.len());
        let mut rest = current.as_str();
        while let Some(pos) = rest.find(plain) {
            let before = rest[..pos].chars().last().or_else(|| result.chars().last());
            let after = rest[pos + plain.len()..].chars().next();
            let whole = !before.is_some_and(char::is_alphanumeric)
                && !after.is_some_and(char::is_alphanumeric);
            result.push_str(&rest[..pos]);
            result.push_str(if whole && rng.chance(strength) {
                jargon
            } else {
                plain
            });
            rest = &rest[pos + plain.len()..];
        }
        result.push_str(rest);
        current = result;
    }
    current
}

/// Cuts the last third of the longest content line, so that a degraded reference always differs.
fn shorten_longest_line(target: &str, keep_first: bool) -> String {
    let mut lines: Vec<String> = target.lines().map(str::to_string).collect();
    let longest = (0..lines.len())
        .filter(|i| !(is_fixed(&lines[*i]) || keep_first && *i == 0))
        .max_by_key(|i| lines[*i].len());
    if let Some(i) = longest {
        let words: Vec<&str> = lines[i].split_whitespace().collect();
        let keep = (words.len() * 2 / 3)
            .max(1)
            .min(words.len().saturating_sub(1))
            .max(1);
        lines[i] = words[..keep].join(" ");
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_field_value_and_bare_value() {
        let d = Disparity::parse("ethnicity:Hispanic=0.6").unwrap();
        assert_eq!(
            (d.field, d.group.as_str(), d.strength),
            (Demographic::Ethnicity, "Hispanic", 0.6)
        );
        let d = Disparity::parse("age_group:65+=0.5").unwrap();
        assert_eq!((d.field, d.group.as_str()), (Demographic::AgeGroup, "65+"));
        let d = Disparity::parse("gender:f=0.4").unwrap();
        assert_eq!((d.field, d.group.as_str()), (Demographic::Gender, "F"));
        let d = Disparity::parse(" hispanic=1 ").unwrap();
        assert_eq!(
            (d.field, d.group.as_str(), d.strength),
            (Demographic::Ethnicity, "Hispanic", 1.0)
        );
        assert_eq!(
            Disparity::parse("<18=0.3").unwrap().field,
            Demographic::AgeGroup
        );
    }

    #[test]
    fn bad_specs_get_clear_errors() {
        let message = |spec: &str| Disparity::parse(spec).unwrap_err().to_string();
        assert!(message("Hispanic").contains("expected GROUP=STRENGTH"));
        assert!(message("Hispanic=high").contains("'high' is not a number"));
        assert!(message("Hispanic=0").contains("greater than 0 and at most 1"));
        assert!(message("Hispanic=1.5").contains("greater than 0 and at most 1"));
        assert!(message("Hispanic=NaN").contains("greater than 0"));
        assert!(message("income:low=0.5").contains("unknown field 'income'"));
        let unknown = message("ethnicity:Martian=0.5");
        assert!(
            unknown.contains("not a ethnicity value") && unknown.contains("White, Hispanic"),
            "{unknown}"
        );
        assert!(message("Martian=0.5").contains("not a value of any demographic field"));
    }

    #[test]
    fn a_value_of_two_fields_is_ambiguous() {
        let tables = vec![
            (Demographic::Gender, vec!["F", "Other"]),
            (Demographic::Ethnicity, vec!["White", "Other"]),
        ];
        let err = resolve("Other=0.5", "other", &tables).unwrap_err();
        assert!(
            err.to_string().contains("both gender and ethnicity"),
            "{err}"
        );
        assert_eq!(
            resolve("x", "white", &tables).unwrap(),
            (Demographic::Ethnicity, "White")
        );
    }

    #[test]
    fn sentences_split_but_not_after_initials() {
        assert_eq!(
            split_sentences("You had C. diff. It is a germ. Take 0.4 mg."),
            ["You had C. diff.", "It is a germ.", "Take 0.4 mg."]
        );
    }

    #[test]
    fn jargon_replaces_whole_words_only() {
        let mut rng = SeededRng::new(1);
        assert_eq!(
            jargonize("Take it once a day. Your kidneys.", 1.0, &mut rng),
            "Take it daily. Your kidneys."
        );
    }

    #[test]
    fn noise_keeps_headings_and_the_qa_answer() {
        let mut rng = SeededRng::new(8);
        let target =
            "Answer: B. Gout\nExplanation: Needle-shaped crystals mean gout. Pseudogout differs.";
        for _ in 0..50 {
            let noisy = degrade(target, 1.0, &[], true, &mut rng);
            assert!(
                noisy.starts_with("Answer: B. Gout\nExplanation: "),
                "{noisy}"
            );
            assert_ne!(noisy, target);
        }
    }
}
