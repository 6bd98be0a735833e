//! Person-name detection: a capitalised word run counts as a name only in a context that
//! announces one (a title, a "Patient:" field, a signature, a relative), because clinical text
//! capitalises drugs, departments and eponyms ("Foley catheter", "Parkinson disease") too.

use std::cell::LazyCell;
use std::collections::HashSet;
use std::sync::LazyLock;

use regex::{Regex, RegexSet};

use super::patterns::{CAPITAL, LETTER, any_of, compile, compile_set};
use super::{PhiKind, PhiSpan};

/// One name word ("Patel", "O'Brien", "Smith-Jones", "Álvarez") or an initial ("A."), then up
/// to three more separated by spaces or tabs only, so a name never runs onto the next line.
fn name_pattern() -> String {
    let body = format!("[{LETTER}'’]*");
    let word = format!(r"(?:[{CAPITAL}]\.|[{CAPITAL}]{body}(?:-[{CAPITAL}]{body})?)");
    format!(r"{word}(?:[ \t]+{word}){{0,3}}")
}

const TITLE: &str = r"(?:Dr|Mr|Mrs|Ms|Mx|Miss|Prof|Nurse|Doctor)(?-u:\b)\.?";

/// Where the name sits relative to its cue: after it ("Dr. Patel Cardiology" keeps "Patel") or
/// before it ("Attending Jane Doe, MD" keeps "Jane Doe"); the name is anchored to the cue's side.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    After,
    Before,
}

/// A context that announces a name, and how far to trust the words next to it.
struct Cue {
    /// Matches the cue alone; the name next to it is read with an anchored pattern.
    pattern: String,
    side: Side,
    /// Fewer words than this is not trusted ("Patient: Okay"), unless the word ends its field.
    min_words: usize,
    /// A header field: "Name: Doe, Jane" takes both halves and all-caps names ("SMITH, JOHN").
    field: bool,
    /// In a transcript "Patient:" names the speaker, not the patient.
    speaker_label: bool,
    /// Introduces several names ("Drs. Patel and Kim").
    list: bool,
}

fn cue(pattern: String, side: Side, min_words: usize) -> Cue {
    Cue {
        pattern,
        side,
        min_words,
        field: false,
        speaker_label: false,
        list: false,
    }
}

/// Family and household words that introduce a relative's name ("wife Linda", "Ana (daughter)").
fn relative() -> String {
    any_of(concat!(
        "wife|husband|daughter|son|sister|brother|mother|father|partner|spouse|fianc[ée]e?|",
        "boyfriend|girlfriend|niece|nephew|grandson|granddaughter|aunt|uncle|cousin|friend|",
        "neighbou?r|caregiver|roommate|guardian"
    ))
}

/// The cues, in the order the scanning pattern prefers them where two start at the same place
/// ("Resident:" is a field before it is a staff role).
static CUES: LazyLock<Vec<Cue>> = LazyLock::new(|| {
    let patient = any_of("Patient|Patient Name|PATIENT|Pt|Pt Name");
    let relative = relative();
    let roles = any_of(concat!(
        r"Name|Full Name|Re|RE|Attending|Attending Physician|Resident|Fellow|Intern|PCP|",
        r"Primary Care|Primary Care Physician|Primary Care Provider|Referring Physician|",
        r"Referring Provider|Referring MD|Provider|Surgeon|Anesthesiologist|Consultant|Author|",
        r"Signed|Signed by|Dictated by|Transcribed by|cc|CC|Emergency Contact|Contact|",
        r"Next of Kin|Guardian|Health Care Proxy|Proxy|Interpreter"
    ));
    let signed = any_of("signed|dictated|transcribed|reviewed|cosigned|authenticated");
    let closing = any_of("sincerely|regards|respectfully|yours truly|cordially");
    // Everyday words close a letter only alone on their line and with a comma ("Best,").
    let casual_closing = any_of("best|thanks|thank you|with thanks|cheers");
    let staff = any_of("NP|PA|RN|LPN|CNA");
    let staff_words = any_of(concat!(
        r"nurse practitioner|case manager|social worker|pharmacist|physical therapist|",
        r"occupational therapist|therapist|dietitian|nutritionist|chaplain|interpreter|",
        r"midwife|resident|intern|fellow|attending|hospitalist|coordinator"
    ));
    let credential = any_of(concat!(
        r"MD|M\.D\.|DO|RN|NP|PA-C|PA|PhD|DNP|APRN|CNM|CRNA|LPN|MSW|LCSW|PharmD|DDS|FNP-BC|FNP|",
        r"FACP"
    ));
    let field = |labels: &str| format!(r"(?m:^)[ \t]*{labels}(?-u:\b)[ \t]*:[ \t]*");
    let after = |pattern: String, min_words| cue(pattern, Side::After, min_words);
    vec![
        Cue {
            field: true,
            speaker_label: true,
            ..after(field(&patient), 2)
        },
        Cue {
            field: true,
            ..after(field(&roles), 2)
        },
        after(format!(r"(?i:{signed})[ \t]+(?i:by)[ \t]*:?[ \t]*"), 2),
        after(r"(?m:^)[ \t]*(?:--|—|–)[ \t]*".to_string(), 2),
        after(format!(r"(?i:{closing}),?[ \t]*\r?\n[ \t]*"), 1),
        after(
            format!(r"(?m:^)[ \t]*(?i:{casual_closing}),[ \t]*\r?\n[ \t]*"),
            1,
        ),
        after(
            format!(r"(?-u:\b)(?:{staff}|(?i:{staff_words}))(?-u:\b)[ \t]*,?[ \t]+"),
            1,
        ),
        Cue {
            list: true,
            ..after(r"(?-u:\b)Drs(?-u:\b)\.?[ \t]+".to_string(), 1)
        },
        after(format!(r"(?-u:\b){TITLE}[ \t]+"), 1),
        after(
            format!(r"(?-u:\b){relative}(?:[ \t]*,|[ \t]+named)?[ \t]+"),
            1,
        ),
        after(
            r"(?i:my[ \t]+name[ \t]+is|call[ \t]+me)[ \t]+".to_string(),
            1,
        ),
        cue(format!(r",?[ \t]+{credential}(?-u:\b)"), Side::Before, 1),
        cue(format!(r"[ \t]*\({relative}\)"), Side::Before, 1),
    ]
});

/// Every cue in one pattern, so a note is scanned once for all of them. No capture groups:
/// which cue matched is looked up afterwards with `CUE_OF` on the matched text alone.
static CUE_PATTERN: LazyLock<Regex> = LazyLock::new(|| {
    let alternatives: Vec<String> = CUES.iter().map(|c| format!("(?:{})", c.pattern)).collect();
    compile(&alternatives.join("|"))
});
static CUE_OF: LazyLock<RegexSet> =
    LazyLock::new(|| compile_set(CUES.iter().map(|c| format!("^(?:{})$", c.pattern))));

/// The name that starts right where a cue ends, or ends right where a cue starts. Plain finds,
/// no capture groups: a field's leading title is skipped with its own pattern first.
static NAME_AFTER: LazyLock<Regex> = LazyLock::new(|| compile(&format!("^{}", name_pattern())));
static FIELD_VALUE_AFTER: LazyLock<Regex> = LazyLock::new(|| {
    let name = name_pattern();
    compile(&format!("^{name}(?:,[ \t]*{name})?"))
});
static LIST_AFTER: LazyLock<Regex> = LazyLock::new(|| {
    let name = name_pattern();
    compile(&format!(
        r"^{name}(?:(?:[ \t]*,[ \t]*|[ \t]*,?[ \t]+and[ \t]+|[ \t]*&[ \t]*){name})*"
    ))
});
static TITLE_AFTER: LazyLock<Regex> = LazyLock::new(|| compile(&format!(r"^{TITLE}[ \t]+")));
static NAME_BEFORE: LazyLock<Regex> = LazyLock::new(|| compile(&format!("{}$", name_pattern())));
static NAME_ANYWHERE: LazyLock<Regex> = LazyLock::new(|| compile(&name_pattern()));

/// How far back from a trailing cue ("..., MD") a name may start.
const NAME_BEFORE_WINDOW: usize = 120;

/// A speaker line of a visit transcript; where one exists, "Patient:" starts a quote.
static TRANSCRIPT_SPEAKER: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"(?m)^[ \t]*(?:Doctor|Physician|Clinician|Provider|Nurse|Dr\.?|DOCTOR)[ \t]*:")
});

/// A noun that turns the capitalised word before it into an eponym ("mother Alzheimer
/// dementia", "father Graves disease"), not a person.
static EPONYM_NOUN: LazyLock<Regex> = LazyLock::new(|| {
    let nouns = any_of(concat!(
        r"disease|syndrome|dementia|lymphoma|palsy|catheter|sign|score|scale|procedure|",
        r"criteria|classification|maneuver|test|reflex|phenomenon|tumou?r|disorder|fracture|",
        r"ulcer|esophagus|thyroiditis|anomaly|deformity|contracture|cyst|hernia|operation|",
        r"repair"
    ));
    compile(&format!(r"^(?:'s|’s|')?[ \t]+(?i:{nouns})(?-u:\b)"))
});

/// Capitalised words that start sentences, answer questions in dialogue, or name roles, places
/// and services. A run of name words stops at the first of these.
const NOT_NAME_WORDS: &str = "
    I I'm I've I'll I'd My Me We We'll You Your He She They It It's Its His Her Our Their The This
    That These Those There Here A An And But Or So Not No Yes Yeah Okay Ok Sure Well Oh Hi Hello
    Good Thanks Thank Please Maybe Sometimes Just Now Then Today Yesterday Tomorrow What When
    Where Why How Who Is Are Was Were Do Does Did Have Has Had Can Could Will Would Should Let
    Let's Right Also Still Never Always All Any Some One Two Both On In At For From To With Of Per
    By As If After Before During Since Last Next Patient Pt Doctor Nurse Dr Mr Mrs Ms Miss Prof
    Team Service Department Dept Clinic Hospital Unit Room Floor Center Centre Office Medicine
    Cardiology Neurology Nephrology Oncology Pulmonology Gastroenterology Endocrinology Surgery
    Radiology Pharmacy Therapy Physical Social Work Internal Emergency Family General Care Primary
    Practitioner Manager Educator Navigator Aide Assistant Specialist Coordinator Staff Station
    Supervisor Practice Case On-call Monday Tuesday Wednesday Thursday Friday Saturday Sunday Date
    Phone Fax Address Age Sex Signed Attending Name Re Dear Sincerely Disease Syndrome DOB MRN SSN
    ID MD DO RN NP PA NAME DATE UNKNOWN NONE NKDA DNR DNI CODE FULL MALE FEMALE
";
static NOT_NAME: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| NOT_NAME_WORDS.split_whitespace().collect());

/// Appends every person-name candidate in `text` to `out` (unsorted, possibly overlapping).
pub(super) fn find_names(text: &str, out: &mut Vec<PhiSpan>) {
    let transcript = LazyCell::new(|| TRANSCRIPT_SPEAKER.is_match(text));
    let mut at = 0;
    while let Some(found) = CUE_PATTERN.find_at(text, at) {
        let Some(cue) = CUE_OF
            .matches(found.as_str())
            .iter()
            .next()
            .and_then(|i| CUES.get(i))
        else {
            break;
        };
        if !(cue.speaker_label && *transcript)
            && let Some((start, end)) = name_run(text, found.start(), found.end(), cue)
        {
            if cue.list {
                let names = NAME_ANYWHERE.find_iter(&text[start..end]);
                let parts: Vec<(usize, usize)> = names
                    .map(|m| (start + m.start(), start + m.end()))
                    .collect();
                out.extend(
                    parts
                        .into_iter()
                        .filter_map(|(s, e)| name_in_run(text, s, e, cue)),
                );
            } else {
                out.extend(name_in_run(text, start, end, cue));
            }
        }
        // A trailing cue's own word may start another cue ("Jane Doe, RN Wei Chen"), so the
        // search resumes at that word rather than after it.
        at = match cue.side {
            Side::After => found.end(),
            Side::Before => {
                let word = found.as_str().find(char::is_alphanumeric);
                found.start() + word.unwrap_or(found.len())
            }
        }
        .max(found.start() + 1);
    }
}

/// The capitalised run next to the cue found at `text[cue_start..cue_end]`, on the cue's side.
fn name_run(text: &str, cue_start: usize, cue_end: usize, cue: &Cue) -> Option<(usize, usize)> {
    let (from, to, pattern) = match cue.side {
        Side::After if cue.field => {
            let title = TITLE_AFTER.find(&text[cue_end..]).map_or(0, |m| m.end());
            (cue_end + title, text.len(), &*FIELD_VALUE_AFTER)
        }
        Side::After if cue.list => (cue_end, text.len(), &*LIST_AFTER),
        Side::After => (cue_end, text.len(), &*NAME_AFTER),
        Side::Before => {
            let line_start = text[..cue_start].rfind('\n').map_or(0, |i| i + 1);
            let mut from = line_start.max(cue_start.saturating_sub(NAME_BEFORE_WINDOW));
            while !text.is_char_boundary(from) {
                from += 1;
            }
            (from, cue_start, &*NAME_BEFORE)
        }
    };
    pattern
        .find(&text[from..to])
        .map(|m| (from + m.start(), from + m.end()))
}

/// The name inside the run `text[start..end]`, if the cue trusts it.
fn name_in_run(text: &str, start: usize, end: usize, cue: &Cue) -> Option<PhiSpan> {
    let run = &text[start..end];
    let (head, tail) = match run.split_once(',') {
        Some((head, tail)) if cue.field => (head, Some(tail)),
        _ => (run, None),
    };
    let mut words = name_words(head, start, cue.side, cue.field);
    if let Some(tail) = tail
        && !words.is_empty()
    {
        let tail_start = start + head.len() + 1;
        words.extend(name_words(tail, tail_start, Side::After, cue.field));
    }
    let (first, last) = (words.first()?, words.last()?);
    let rest = &text[last.1..];
    let trusted = words.len() >= cue.min_words || lone_name_ends_field(rest);
    (trusted && !EPONYM_NOUN.is_match(rest)).then_some(PhiSpan {
        kind: PhiKind::Name,
        start: first.0,
        end: last.1,
    })
}

/// Whether a single word is the whole field value: the line ends after it, or a comma leads on
/// to another identifier ("Re: Kim, DOB 4/2/51", "Name: Kim, 67M").
fn lone_name_ends_field(rest: &str) -> bool {
    let rest = rest.trim_start_matches([' ', '\t']);
    let next_field = rest
        .strip_prefix(',')
        .map(|r| r.trim_start_matches([' ', '\t']));
    let identifier_follows = next_field.is_some_and(|r| {
        r.starts_with(|c: char| c.is_ascii_digit())
            || r.bytes().take(2).filter(u8::is_ascii_uppercase).count() == 2
    });
    rest.is_empty() || rest.starts_with(['\n', '\r']) || identifier_follows
}

/// Byte ranges of the words of `run` (starting at `offset` in the note) that form the name: the
/// longest stretch of name words touching the cue's side.
fn name_words(run: &str, offset: usize, side: Side, caps: bool) -> Vec<(usize, usize)> {
    let words = run
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .map(|word| {
            let start = offset + (word.as_ptr() as usize - run.as_ptr() as usize);
            // A possessive is not part of the name: "Patel's", "Loomis'".
            let bare = word
                .strip_suffix("'s")
                .or_else(|| word.strip_suffix("’s"))
                .unwrap_or(word)
                .trim_end_matches(['\'', '’']);
            (start, start + bare.len(), bare)
        });
    let is_name = |&(_, _, w): &(usize, usize, &str)| is_name_word(w, caps);
    let mut keep: Vec<_> = match side {
        Side::After => words.take_while(is_name).collect(),
        Side::Before => words.rev().take_while(is_name).collect(),
    };
    if side == Side::Before {
        keep.reverse();
    }
    keep.into_iter()
        .map(|(start, end, _)| (start, end))
        .collect()
}

/// An initial, or a capitalised word with a lowercase letter that is not a known non-name.
/// All-caps words (headers, "MD", "DOB", placeholders) count only in a header field (`caps`).
fn is_name_word(word: &str, caps: bool) -> bool {
    let mut chars = word.chars();
    let initial = matches!(
        (chars.next(), chars.next(), chars.next()),
        (Some(c), Some('.'), None) if c.is_uppercase()
    );
    let has_lower = word.chars().any(char::is_lowercase);
    let shouted = caps && word.chars().filter(|c| c.is_alphabetic()).count() >= 2;
    initial || ((has_lower || shouted) && !NOT_NAME.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<&str> {
        let mut spans = Vec::new();
        find_names(text, &mut spans);
        spans.sort_by_key(|s| (s.start, s.end));
        spans.dedup();
        spans.iter().map(|s| &text[s.start..s.end]).collect()
    }

    #[test]
    fn titles_introduce_names_but_not_lowercase_words() {
        assert_eq!(names("PCP Dr. Patel agreed."), vec!["Patel"]);
        assert_eq!(
            names("Seen by Dr. Anne M. O'Brien of Cardiology."),
            vec!["Anne M. O'Brien"]
        );
        assert_eq!(
            names("Per the Dr. on call, and the Dr. said so."),
            Vec::<&str>::new()
        );
        assert_eq!(names("Good morning, Mr. Álvarez."), vec!["Álvarez"]);
        assert_eq!(names("Dr. Patel's office called."), vec!["Patel"]);
        assert_eq!(
            names("Call Dr. Heather Loomis' office."),
            vec!["Heather Loomis"]
        );
    }

    #[test]
    fn signature_lines_give_the_signer() {
        assert_eq!(names("Signed: Jane Doe, MD"), vec!["Jane Doe"]);
        assert_eq!(
            names("Electronically signed by Wei Chen, NP on 3/1/24"),
            vec!["Wei Chen"]
        );
        assert_eq!(names("note\n-- John Smith RN\n"), vec!["John Smith"]);
        assert_eq!(names("Sincerely,\nGrace Okafor\n"), vec!["Grace Okafor"]);
        assert_eq!(names("Best,\nSandra Whitfield"), vec!["Sandra Whitfield"]);
        assert_eq!(names("Rest works best\nTylenol helps"), Vec::<&str>::new());
    }

    #[test]
    fn fields_need_two_words_so_dialogue_speakers_are_not_names() {
        assert_eq!(
            names("Patient: Dmitri Brown\nName: Doe, Jane\n"),
            vec!["Dmitri Brown", "Doe, Jane"]
        );
        assert_eq!(
            names("Patient: Chen\nRe: Kim, DOB 4/2/51\nPATIENT: SMITH, JOHN\n"),
            vec!["Chen", "Kim", "SMITH, JOHN"]
        );
        assert_eq!(
            names("Patient: Alert, oriented\nPatient: Comfortable."),
            Vec::<&str>::new()
        );
        let transcript = "Doctor: How are you?\nPatient: Crohn's Disease runs in my family.\n\
                          Patient: Sometimes Tylenol Extra Strength helps.\nPatient: Not great.\n";
        assert_eq!(names(transcript), Vec::<&str>::new());
        assert_eq!(
            names("Medication name: Atorvastatin\nName of procedure: Whipple"),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn plural_titles_give_each_name() {
        assert_eq!(
            names("Seen with Drs. Abernathy and O'Brien today."),
            vec!["Abernathy", "O'Brien"]
        );
    }

    #[test]
    fn eponyms_drugs_and_departments_are_not_names() {
        let family = "Family history: mother Alzheimer dementia; father Graves' disease.";
        assert_eq!(names(family), Vec::<&str>::new());
        let text = "History of Parkinson disease, Crohn's disease and a Foley catheter. \
                    Tylenol 650 mg. Follow up with Cardiology. Glasgow Coma Scale 15.";
        assert_eq!(names(text), Vec::<&str>::new());
    }

    #[test]
    fn relatives_are_names() {
        assert_eq!(
            names("lives with her daughter Maria Lopez, and his wife, Linda."),
            vec!["Maria Lopez", "Linda"]
        );
        assert_eq!(names("Spoke with Maria (daughter) today."), vec!["Maria"]);
    }

    #[test]
    fn staff_roles_introduce_names() {
        assert_eq!(
            names("Discussed with NP Wei Chen and case manager Rosa Díaz."),
            vec!["Wei Chen", "Rosa Díaz"]
        );
        assert_eq!(
            names("Pharmacist Omar Haddad reviewed doses; the pharmacist agreed."),
            vec!["Omar Haddad"]
        );
    }
}
