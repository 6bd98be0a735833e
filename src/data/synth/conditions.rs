//! The discharge diagnosis lexicon (conditions.txt) in typed form, and the chronic conditions
//! that give older patients a past history and home medications.

use super::lexicon::{self, Block, LexiconError};
use super::meds::{self, Med};
use std::sync::LazyLock;

/// The same fact for the clinician's note and for the patient.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wording {
    pub clinical: &'static str,
    pub plain: &'static str,
}

#[derive(Debug)]
pub(super) struct FollowUp {
    pub clinic: &'static str,
    pub plain: &'static str,
    pub days: (i64, i64),
}

/// One discharge diagnosis with everything needed to write its note and its explanation.
#[derive(Debug)]
pub(super) struct Condition {
    pub name: &'static str,
    pub weight: f64,
    /// Mean, standard deviation, minimum and maximum age of patients admitted with it.
    pub age: [f64; 4],
    pub diagnoses: Vec<&'static str>,
    pub history: Vec<&'static str>,
    pub complaints: Vec<&'static str>,
    pub presentations: Vec<&'static str>,
    pub details: Vec<&'static str>,
    pub vitals: Vec<&'static str>,
    pub labs: Vec<&'static str>,
    pub results: Vec<&'static str>,
    pub course: Vec<&'static str>,
    pub extras: Vec<&'static str>,
    pub meds: Vec<(f64, Vec<&'static Med>)>,
    pub causes: Vec<&'static str>,
    pub explanations: Vec<&'static str>,
    pub treatments: Vec<&'static str>,
    pub warnings: Vec<Wording>,
    pub tips: Vec<Wording>,
    pub followup: FollowUp,
    /// False where the admission itself changes the home regimen (kidney injury, DKA, ...).
    pub home_meds: bool,
}

impl Condition {
    pub fn fits_age(&self, age: u32) -> bool {
        (self.age[2]..=self.age[3]).contains(&f64::from(age))
    }
}

/// A chronic condition: how it is listed, the word that marks it in a diagnosis's own
/// history (so it is not listed twice), its usual home drug and its prevalence among the old.
pub(super) struct Comorbidity {
    pub name: &'static str,
    pub keyword: &'static str,
    pub med: Option<&'static str>,
    pub prevalence: f64,
}

pub(super) const COMORBIDITIES: [Comorbidity; 8] = [
    Comorbidity {
        name: "hypertension",
        keyword: "hypertension",
        med: Some("Lisinopril"),
        prevalence: 0.5,
    },
    Comorbidity {
        name: "hyperlipidemia",
        keyword: "lipid",
        med: Some("Atorvastatin"),
        prevalence: 0.35,
    },
    Comorbidity {
        name: "type 2 diabetes mellitus",
        keyword: "diabetes",
        med: Some("Metformin"),
        prevalence: 0.25,
    },
    Comorbidity {
        name: "GERD",
        keyword: "GERD",
        med: Some("Omeprazole"),
        prevalence: 0.15,
    },
    Comorbidity {
        name: "hypothyroidism",
        keyword: "thyroid",
        med: Some("Levothyroxine"),
        prevalence: 0.1,
    },
    Comorbidity {
        name: "depression",
        keyword: "depression",
        med: Some("Sertraline"),
        prevalence: 0.1,
    },
    Comorbidity {
        name: "obesity",
        keyword: "obesity",
        med: None,
        prevalence: 0.2,
    },
    Comorbidity {
        name: "osteoarthritis",
        keyword: "arthritis",
        med: None,
        prevalence: 0.15,
    },
];

/// The lexicon, bundled with the program.
const SOURCE: &str = include_str!("../../../assets/lexicons/conditions.txt");

static CONDITIONS: LazyLock<Vec<Condition>> = LazyLock::new(|| {
    // The file is compiled in and loaded by a test, so a failure here is a build defect.
    load(SOURCE).unwrap_or_else(|e| panic!("{e}"))
});

pub(super) fn all() -> &'static [Condition] {
    &CONDITIONS
}

fn load(text: &'static str) -> Result<Vec<Condition>, LexiconError> {
    lexicon::parse("conditions.txt", text)?
        .iter()
        .map(condition)
        .collect()
}

fn wordings(block: &Block, key: &str, min: usize) -> Result<Vec<Wording>, LexiconError> {
    block
        .list(key, min)?
        .into_iter()
        .map(|value| {
            let parts = block.split(value, key, 2)?;
            match parts[..] {
                [clinical, plain] => Ok(Wording { clinical, plain }),
                _ => Err(block.error(key, &format!("'{value}' lacks its plain wording"))),
            }
        })
        .collect()
}

fn followup(block: &Block) -> Result<FollowUp, LexiconError> {
    let value = block.one("fu")?;
    let parts = block.split(value, "fu", 3)?;
    let bad = || {
        block.error(
            "fu",
            &format!("'{value}' needs clinic => plain => lo-hi days"),
        )
    };
    let [clinic, plain, days] = parts[..] else {
        return Err(bad());
    };
    let (lo, hi) = days.split_once('-').ok_or_else(bad)?;
    Ok(FollowUp {
        clinic,
        plain,
        days: (
            lo.parse().map_err(|_| bad())?,
            hi.parse().map_err(|_| bad())?,
        ),
    })
}

fn condition(block: &Block) -> Result<Condition, LexiconError> {
    let age = block.numbers("age", 4)?;
    Ok(Condition {
        name: block.name,
        weight: block.numbers("weight", 1)?[0],
        age: [age[0], age[1], age[2], age[3]],
        diagnoses: block.list("dx", 1)?,
        history: block.all("hx"),
        complaints: block.list("cc", 1)?,
        presentations: block.list("hpi", 1)?,
        details: block.list("hpi2", 1)?,
        vitals: block.list("ed", 1)?,
        labs: block.list("labs", 1)?,
        results: block.all("res"),
        course: block.list("course", 2)?,
        extras: block.all("extra"),
        meds: block
            .all("med")
            .into_iter()
            .map(|value| meds::slot(block, value))
            .collect::<Result<_, _>>()?,
        causes: block.list("cause", 1)?,
        explanations: block.list("why", 1)?,
        treatments: block.list("did", 1)?,
        warnings: wordings(block, "warn", 3)?,
        tips: wordings(block, "tip", 0)?,
        followup: followup(block)?,
        home_meds: block.optional("home") != Some("no"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexicon_loads_with_enough_diagnoses() {
        let conditions = load(SOURCE).unwrap();
        assert!(conditions.len() >= 25, "{}", conditions.len());
        let young: Vec<&str> = conditions
            .iter()
            .filter(|c| c.age[2] < 18.0)
            .map(|c| c.name)
            .collect();
        assert_eq!(young.len(), 3, "{young:?}");
        for name in COMORBIDITIES.iter().filter_map(|c| c.med) {
            assert!(meds::find(name).is_some(), "{name}");
        }
    }

    #[test]
    fn a_bad_block_names_its_line() {
        let text = "== Broken\nweight: 1\nage: 50 10 20\n";
        let err = load(text).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.to_string().contains("'age'"), "{err}");
    }
}
