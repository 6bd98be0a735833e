//! The dataset record shared by every task, and the demographic groupings derived from it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The three tasks Lab Lens knows; they fix the system prompt and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Hospital discharge summary explained to the patient in plain language.
    Discharge,
    /// Doctor–patient dialogue turned into a SOAP note.
    Soap,
    /// Multiple-choice medical exam question answered with a letter and a short explanation.
    Qa,
}

impl Task {
    pub const ALL: [Task; 3] = [Task::Discharge, Task::Soap, Task::Qa];

    pub fn name(self) -> &'static str {
        match self {
            Task::Discharge => "discharge",
            Task::Soap => "soap",
            Task::Qa => "qa",
        }
    }

    /// Parses the names used in files and on the command line (a few aliases included).
    pub fn parse(s: &str) -> Option<Task> {
        match s.trim().to_ascii_lowercase().as_str() {
            "discharge" | "discharge_simplification" | "simplification" | "summary" => {
                Some(Task::Discharge)
            }
            "soap" | "soap_note" | "dialogue" => Some(Task::Soap),
            "qa" | "medqa" | "medical_qa" | "mcq" => Some(Task::Qa),
            _ => None,
        }
    }

    /// What a person reads in the UI.
    pub fn label(self) -> &'static str {
        match self {
            Task::Discharge => "Discharge summary simplification",
            Task::Soap => "Dialogue to SOAP note",
            Task::Qa => "Medical exam questions",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One example: a source text, its reference output, and who the patient is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<String>,
    pub task: Task,
    pub input: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethnicity: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, serde_json::Value>,
}

impl Record {
    /// The key that keeps a patient's records together in a split: the patient id, or the
    /// record id for records without one.
    pub fn patient_key(&self) -> &str {
        self.patient_id.as_deref().unwrap_or(&self.id)
    }

    pub fn age_group(&self) -> Option<AgeGroup> {
        self.age.map(AgeGroup::of)
    }

    /// The value of a demographic field, as shown in filters and slices.
    pub fn demographic(&self, field: Demographic) -> Option<String> {
        match field {
            Demographic::Gender => self.gender.clone(),
            Demographic::AgeGroup => self.age_group().map(|g| g.label().to_string()),
            Demographic::Ethnicity => self.ethnicity.clone(),
        }
    }
}

/// Age bands used for every demographic slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AgeGroup {
    Under18,
    From18To35,
    From35To50,
    From50To65,
    Over65,
}

impl AgeGroup {
    pub const ALL: [AgeGroup; 5] = [
        AgeGroup::Under18,
        AgeGroup::From18To35,
        AgeGroup::From35To50,
        AgeGroup::From50To65,
        AgeGroup::Over65,
    ];

    /// Lower bounds are inclusive: 18 is in `18-35`, 35 in `35-50`, 65 in `65+`.
    pub fn of(age: u32) -> AgeGroup {
        match age {
            0..=17 => AgeGroup::Under18,
            18..=34 => AgeGroup::From18To35,
            35..=49 => AgeGroup::From35To50,
            50..=64 => AgeGroup::From50To65,
            _ => AgeGroup::Over65,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            AgeGroup::Under18 => "<18",
            AgeGroup::From18To35 => "18-35",
            AgeGroup::From35To50 => "35-50",
            AgeGroup::From50To65 => "50-65",
            AgeGroup::Over65 => "65+",
        }
    }
}

/// The demographic fields a record may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Demographic {
    Gender,
    AgeGroup,
    Ethnicity,
}

impl Demographic {
    pub const ALL: [Demographic; 3] = [
        Demographic::Gender,
        Demographic::AgeGroup,
        Demographic::Ethnicity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Demographic::Gender => "gender",
            Demographic::AgeGroup => "age_group",
            Demographic::Ethnicity => "ethnicity",
        }
    }
}

/// Which part of a dataset a record belongs to after a patient-level split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Validation,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_group_boundaries() {
        let groups: Vec<&str> = [0, 17, 18, 34, 35, 49, 50, 64, 65, 101]
            .iter()
            .map(|a| AgeGroup::of(*a).label())
            .collect();
        assert_eq!(
            groups,
            [
                "<18", "<18", "18-35", "18-35", "35-50", "35-50", "50-65", "50-65", "65+", "65+"
            ]
        );
    }

    #[test]
    fn task_aliases() {
        assert_eq!(Task::parse(" SOAP "), Some(Task::Soap));
        assert_eq!(Task::parse("medqa"), Some(Task::Qa));
        assert_eq!(Task::parse("translation"), None);
    }
}
