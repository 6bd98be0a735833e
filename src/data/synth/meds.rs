//! The discharge medication lexicon and how one prescription is written twice: as a line of a
//! clinician's medication list and as a plain sentence for the patient.

use super::lexicon::{Block, LexiconError};
use crate::data::rng::SeededRng;
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Route {
    Mouth,
    Tongue,
    Inhaled,
    Skin,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Frequency {
    Morning,
    Daily,
    Twice,
    Thrice,
    FourTimes,
    Bedtime,
    Meals,
    ChestPain,
    Wheeze,
    Pain,
    Nausea,
}

impl Frequency {
    fn parse(code: &str) -> Option<Frequency> {
        Some(match code {
            "qam" => Frequency::Morning,
            "daily" => Frequency::Daily,
            "bid" => Frequency::Twice,
            "tid" => Frequency::Thrice,
            "qid" => Frequency::FourTimes,
            "qhs" => Frequency::Bedtime,
            "meals" => Frequency::Meals,
            "q5prn" => Frequency::ChestPain,
            "q4prn" => Frequency::Wheeze,
            "q6prn" => Frequency::Pain,
            "q8prn" => Frequency::Nausea,
            _ => return None,
        })
    }

    /// Ways the frequency is written in a medication list.
    fn clinical(self) -> &'static [&'static str] {
        match self {
            Frequency::Morning => &["daily", "QAM", "every morning"],
            Frequency::Daily => &["daily", "DAILY", "once daily"],
            Frequency::Twice => &["BID", "twice daily", "Q12H"],
            Frequency::Thrice => &["TID", "three times daily"],
            Frequency::FourTimes => &["QID", "four times daily"],
            Frequency::Bedtime => &["QHS", "at bedtime"],
            Frequency::Meals => &["TID with meals", "with meals"],
            Frequency::ChestPain => &["Q5MIN PRN chest pain, max 3 doses"],
            Frequency::Wheeze => &[
                "Q4H PRN wheezing",
                "every 4 hours as needed for shortness of breath",
            ],
            Frequency::Pain => &["Q6H PRN pain", "every 6 hours as needed for pain"],
            Frequency::Nausea => &["Q8H PRN nausea", "every 8 hours as needed for nausea"],
        }
    }

    fn plain(self) -> &'static str {
        match self {
            Frequency::Morning => "once a day in the morning",
            Frequency::Daily => "once a day",
            Frequency::Twice => "two times a day",
            Frequency::Thrice => "three times a day",
            Frequency::FourTimes => "four times a day",
            Frequency::Bedtime => "at bedtime",
            Frequency::Meals => "with each meal",
            Frequency::ChestPain => "every 5 minutes if you have chest pain, up to 3 doses",
            Frequency::Wheeze => "every 4 hours if you need it",
            Frequency::Pain => "every 6 hours if you need it for pain",
            Frequency::Nausea => "every 8 hours if you feel sick to your stomach",
        }
    }
}

/// A drug as the lexicon lists it.
#[derive(Debug)]
pub(super) struct Med {
    pub name: &'static str,
    doses: Vec<&'static str>,
    route: Route,
    frequency: Frequency,
    days: Option<(i64, i64)>,
    purpose: &'static str,
}

/// One drug at one dose for this patient.
#[derive(Debug, Clone, Copy)]
pub(super) struct Prescription {
    pub med: &'static Med,
    dose: &'static str,
    days: Option<i64>,
}

impl Prescription {
    pub fn new(rng: &mut SeededRng, med: &'static Med) -> Prescription {
        Prescription {
            med,
            dose: med.doses[rng.below(med.doses.len())],
            days: med.days.map(|(lo, hi)| rng.range(lo, hi)),
        }
    }

    /// The name in running text: lower case except abbreviations ("diltiazem ER").
    fn plain_name(&self) -> String {
        let words: Vec<String> = self
            .med
            .name
            .split(' ')
            .map(|w| {
                if w.len() > 1 && w.chars().all(|c| c.is_ascii_uppercase()) {
                    w.to_string()
                } else {
                    w.to_lowercase()
                }
            })
            .collect();
        words.join(" ")
    }

    /// "Furosemide 40 mg PO daily", as in a discharge medication list.
    pub fn clinical(&self, rng: &mut SeededRng) -> String {
        let route = match self.med.route {
            Route::Mouth => *rng.pick(&["PO", "PO", "by mouth"]),
            Route::Tongue => "SL",
            Route::Inhaled => *rng.pick(&["inhaled", "INH"]),
            Route::Skin => *rng.pick(&["SC", "subcutaneously"]),
        };
        let frequency = rng.pick(self.med.frequency.clinical());
        let mut line = format!("{} {} {route} {frequency}", self.med.name, self.dose);
        if let Some(days) = self.days {
            line.push_str(&format!(" {} {days} days", rng.pick(&["for", "x"])));
        }
        line
    }

    /// "Take furosemide 40 mg by mouth once a day in the morning. It is a water pill."
    pub fn plain(&self, rng: &mut SeededRng) -> String {
        let name = self.plain_name();
        let how = self.med.frequency.plain();
        let mut sentence = match self.med.route {
            Route::Mouth if rng.chance(0.5) => format!("Take {name} {} by mouth {how}", self.dose),
            Route::Mouth => format!("Take {name} {} {how}", self.dose),
            Route::Tongue => format!("Put {name} {} under your tongue {how}", self.dose),
            Route::Inhaled => format!("Use your {name}, {}, {how}", self.dose),
            Route::Skin => format!("Inject {name} {} under your skin {how}", self.dose),
        };
        if let Some(days) = self.days {
            sentence.push_str(&format!(" for {days} more days"));
        }
        format!("{sentence}. {}", self.med.purpose)
    }
}

/// The lexicon, bundled with the program.
const SOURCE: &str = include_str!("../../../assets/lexicons/meds.txt");

static MEDS: LazyLock<Vec<Med>> = LazyLock::new(|| {
    // The file is compiled in and loaded by a test, so a failure here is a build defect.
    load(SOURCE).unwrap_or_else(|e| panic!("{e}"))
});

/// Looks a drug up by its exact lexicon name.
pub(super) fn find(name: &str) -> Option<&'static Med> {
    MEDS.iter().find(|m| m.name == name)
}

fn load(text: &'static str) -> Result<Vec<Med>, LexiconError> {
    let mut meds = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let error = |message: String| LexiconError {
            file: "meds.txt",
            line: index + 1,
            message,
        };
        let parts: Vec<&'static str> = line.split(" | ").map(str::trim).collect();
        let [name, doses, route, frequency, days, purpose] = parts[..] else {
            return Err(error(format!(
                "expected 6 fields separated by ' | ', found {}",
                parts.len()
            )));
        };
        let route = match route {
            "PO" => Route::Mouth,
            "SL" => Route::Tongue,
            "INH" => Route::Inhaled,
            "SC" => Route::Skin,
            other => return Err(error(format!("unknown route '{other}'"))),
        };
        let frequency = Frequency::parse(frequency)
            .ok_or_else(|| error(format!("unknown frequency '{frequency}'")))?;
        let days = match days {
            "-" => None,
            range => {
                let parsed = range
                    .split_once('-')
                    .and_then(|(lo, hi)| Some((lo.parse().ok()?, hi.parse().ok()?)));
                Some(parsed.ok_or_else(|| error(format!("days '{range}' is not lo-hi")))?)
            }
        };
        meds.push(Med {
            name,
            doses: doses.split(", ").collect(),
            route,
            frequency,
            days,
            purpose,
        });
    }
    Ok(meds)
}

/// Checks a `med:` line of a diagnosis block: probability, then names separated by " / ".
pub(super) fn slot(
    block: &Block,
    value: &'static str,
) -> Result<(f64, Vec<&'static Med>), LexiconError> {
    let (p, names) = value
        .split_once(' ')
        .ok_or_else(|| block.error("med", &format!("'{value}' needs a probability and a name")))?;
    let p: f64 = p
        .parse()
        .map_err(|_| block.error("med", &format!("'{p}' is not a probability")))?;
    let meds = names
        .split(" / ")
        .map(|name| find(name).ok_or_else(|| block.error("med", &format!("unknown drug '{name}'"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((p, meds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexicon_loads_and_names_are_unique() {
        let meds = load(SOURCE).unwrap();
        assert!(meds.len() >= 50, "{}", meds.len());
        let names: std::collections::HashSet<&str> = meds.iter().map(|m| m.name).collect();
        assert_eq!(names.len(), meds.len());
    }

    #[test]
    fn both_wordings_carry_name_dose_and_frequency() {
        let mut rng = SeededRng::new(2);
        let glargine = Prescription::new(&mut rng, find("Insulin glargine").unwrap());
        let plain = glargine.plain(&mut rng);
        assert!(
            plain.starts_with(&format!(
                "Inject insulin glargine {} under your skin at bedtime.",
                glargine.dose
            )),
            "{plain}"
        );
        let line = glargine.clinical(&mut rng);
        assert!(
            line.starts_with(&format!("Insulin glargine {} s", glargine.dose).replace(" s", " S"))
                || line.contains("subcutaneously"),
            "{line}"
        );
        assert!(
            line.ends_with("QHS") || line.ends_with("at bedtime"),
            "{line}"
        );
        let course = Prescription::new(&mut rng, find("Prednisone").unwrap());
        let days = course.days.unwrap();
        assert!(
            course
                .plain(&mut rng)
                .contains(&format!("for {days} more days"))
        );
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let err = load("# header\nAspirin | 81 mg | PO | hourly | - | x\n").unwrap_err();
        assert_eq!(err.to_string(), "meds.txt:2: unknown frequency 'hourly'");
    }
}
