//! Multiple-choice exam questions: a clinical vignette with drawn details, four or five
//! shuffled options, and the answer with a short explanation.

use super::fill::Filler;
use super::lexicon::{self, Block, LexiconError};
use super::people;
use crate::data::record::{Record, Task};
use crate::data::rng::SeededRng;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::LazyLock;

const LETTERS: [char; 5] = ['A', 'B', 'C', 'D', 'E'];

/// Share of questions with five options rather than four.
const FIVE_OPTIONS: f64 = 0.4;

struct Question {
    specialty: &'static str,
    age: (i64, i64),
    sex: Option<&'static str>,
    ethnicity: Option<&'static str>,
    vignette: &'static str,
    ask: &'static str,
    answer: &'static str,
    distractors: Vec<&'static str>,
    explanation: &'static str,
}

/// The lexicon, bundled with the program.
const SOURCE: &str = include_str!("../../../assets/lexicons/qa.txt");

static QUESTIONS: LazyLock<Vec<Question>> = LazyLock::new(|| {
    // The file is compiled in and loaded by a test, so a failure here is a build defect.
    load(SOURCE).unwrap_or_else(|e| panic!("{e}"))
});

fn load(text: &'static str) -> Result<Vec<Question>, LexiconError> {
    lexicon::parse("qa.txt", text)?
        .iter()
        .map(question)
        .collect()
}

fn question(block: &Block) -> Result<Question, LexiconError> {
    let age = block.numbers("age", 2)?;
    Ok(Question {
        specialty: block.name,
        age: (age[0] as i64, age[1] as i64),
        sex: block.optional("sex"),
        ethnicity: block.optional("eth"),
        vignette: block.one("q")?,
        ask: block.one("ask")?,
        answer: block.one("a")?,
        distractors: block.list("d", LETTERS.len() - 1)?,
        explanation: block.one("e")?,
    })
}

/// QA record `index` of the dataset seeded by `root`.
pub(super) fn record(root: &SeededRng, index: usize) -> Record {
    let mut rng = root.fork(0x0a0a).fork(index as u64);
    let question = rng.pick(&QUESTIONS);
    let gender = question
        .sex
        .unwrap_or_else(|| people::draw_gender(&mut rng));
    let age = rng.range(question.age.0, question.age.1) as u32;
    let ethnicity = question
        .ethnicity
        .unwrap_or_else(|| people::draw_ethnicity(&mut rng));
    let count = if rng.chance(FIVE_OPTIONS) { 5 } else { 4 };
    let mut options = question.distractors.clone();
    rng.shuffle(&mut options);
    options.truncate(count - 1);
    let correct = rng.below(count);
    options.insert(correct, question.answer);
    let mut filler = Filler::person(&mut rng, gender, age);
    let vignette = filler.fill(&mut rng, question.vignette);
    let ask = filler.fill(&mut rng, question.ask);
    let listed: Vec<String> = options
        .iter()
        .zip(LETTERS)
        .map(|(option, letter)| format!("{letter}. {option}"))
        .collect();
    let letter = LETTERS[correct];
    let explanation = filler.fill(&mut rng, question.explanation);
    let mut meta = BTreeMap::new();
    meta.insert("answer".to_string(), json!(letter.to_string()));
    meta.insert("specialty".to_string(), json!(question.specialty));
    Record {
        id: format!("qa-{index:06}"),
        patient_id: Some(people::patient_id(&root.fork(0x0a0a), index as u64)),
        task: Task::Qa,
        input: format!("{vignette} {ask}\n\n{}", listed.join("\n")),
        target: format!(
            "Answer: {letter}. {}\nExplanation: {explanation}",
            question.answer
        ),
        gender: Some(gender.to_string()),
        age: Some(age),
        ethnicity: Some(ethnicity.to_string()),
        meta,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bank_has_sixty_questions_across_specialties() {
        let questions = load(SOURCE).unwrap();
        assert!(questions.len() >= 60, "{}", questions.len());
        let specialties: std::collections::HashSet<&str> =
            questions.iter().map(|q| q.specialty).collect();
        assert!(specialties.len() >= 12, "{specialties:?}");
    }

    #[test]
    fn answer_letters_are_uniform_and_match_the_options() {
        let root = SeededRng::new(21);
        let mut four = [0usize; 4];
        let mut five = [0usize; 5];
        let mut vignettes = std::collections::HashSet::new();
        let mut inputs = std::collections::HashSet::new();
        for i in 0..4000 {
            let record = record(&root, i);
            let letter = record.meta["answer"].as_str().unwrap().to_string();
            let options = record
                .input
                .lines()
                .filter(|l| l.len() > 2 && &l[1..3] == ". ")
                .count();
            let slot = (letter.as_bytes()[0] - b'A') as usize;
            if options == 4 {
                four[slot] += 1
            } else {
                five[slot] += 1
            }
            let line = record
                .input
                .lines()
                .find(|l| l.starts_with(&format!("{letter}. ")))
                .unwrap();
            assert!(
                record
                    .target
                    .starts_with(&format!("Answer: {line}\nExplanation: ")),
                "{}",
                record.target
            );
            assert!(!record.input.contains('{') && !record.target.contains('{'));
            if i < 500 {
                vignettes.insert(record.input.lines().next().unwrap().to_string());
                inputs.insert(record.input.clone());
            }
        }
        let share = |counts: &[usize]| {
            let total: usize = counts.iter().sum();
            counts
                .iter()
                .map(|c| *c as f64 / total as f64)
                .collect::<Vec<_>>()
        };
        assert!(
            share(&four).iter().all(|s| (s - 0.25).abs() < 0.03),
            "{four:?}"
        );
        assert!(
            share(&five).iter().all(|s| (s - 0.2).abs() < 0.03),
            "{five:?}"
        );
        assert!(
            vignettes.len() >= 450,
            "{} distinct vignettes of 500",
            vignettes.len()
        );
        assert!(
            inputs.len() >= 495,
            "{} distinct questions of 500",
            inputs.len()
        );
    }
}
