//! Regular-expression detectors for the structured PHI kinds: dates, ids, phone numbers, e-mails,
//! street addresses and ages over 89.
//!
//! Every word boundary is the ASCII one (`(?-u:\b)`): a Unicode `\b` would push the regex crate off
//! its lazy DFA onto a much slower engine whenever a note holds a non-ASCII byte.

use std::sync::LazyLock;

use regex::{Regex, RegexSet};

use super::{PhiKind, PhiSpan};

/// Compiles a pattern that is fixed in this file; a typo here is a programming error caught by
/// every test, never something a user's input can trigger.
pub(super) fn compile(pattern: &str) -> Regex {
    match Regex::new(pattern) {
        Ok(re) => re,
        Err(err) => panic!("built-in PHI pattern does not compile: {err}"),
    }
}

/// The set counterpart of `compile`, for telling which of several patterns a found span is.
pub(super) fn compile_set(patterns: impl IntoIterator<Item = String>) -> RegexSet {
    match RegexSet::new(patterns) {
        Ok(set) => set,
        Err(err) => panic!("built-in PHI pattern set does not compile: {err}"),
    }
}

/// Letters of the Latin scripts, as bracket-class bodies. Narrower than the Unicode letter
/// classes on purpose: the automata stay small, so the per-match work after each find stays
/// cheap. Latin Extended-A is taken whole in each because its cases alternate letter by letter.
pub(super) const CAPITAL: &str = "A-ZÀ-ÖØ-ÞĀ-ſ";
const LOWER: &str = "a-zß-öø-ÿĀ-ſ";
pub(super) const LETTER: &str = "A-Za-zÀ-ÖØ-öø-ÿĀ-ſ";

/// An alternation (`|`-separated phrases) in which each space stands for any run of spaces or
/// tabs; keeping word lists in one string keeps them readable.
pub(super) fn any_of(phrases: &str) -> String {
    format!("(?:{})", phrases.replace(' ', r"[ \t]+"))
}

/// Units and count nouns that follow a number pattern that only looks like a date
/// ("5-10-20 mg", "on 1/2 tablet").
static UNIT_AFTER: LazyLock<Regex> = LazyLock::new(|| {
    let units = any_of(concat!(
        "mg|mcg|µg|g|kg|ml|l|units?|iu|tabs?|tablets?|caps?|capsules?|puffs?|drops?|minutes?|",
        "mins?|hours?|hrs?|days|weeks|mmhg|strength|of|dose"
    ));
    compile(&format!(r"^[ \t]*(?:%|(?i:{units})(?-u:\b))"))
});

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    compile(&format!(
        r"[{LETTER}0-9._%+-]+@[{LETTER}0-9-]+(?:\.[{LETTER}0-9-]+)*\.[A-Za-z]{{2,}}(?-u:\b)"
    ))
});

/// The word before an age-and-sex shorthand that makes it a temperature ("Tmax 101 F",
/// "fever over 101 F").
static TEMPERATURE_BEFORE: LazyLock<Regex> = LazyLock::new(|| {
    let words =
        any_of(r"t|tmax|tmp|temp|temperature|fever|febrile|to|of|over|above|than|reaching|spiked");
    compile(&format!(r"(?-u:\b)(?i:{words})[ \t]*:?[ \t]*$"))
});

/// Words that make a nearby "101 F" a temperature even with other words in between.
static TEMPERATURE_NEARBY: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?i:fever|febrile|temperature|tmax|temp)"));

/// How far back `TEMPERATURE_NEARBY` looks, in bytes.
const TEMPERATURE_WINDOW: usize = 40;

/// Dates written with digits only: month/day/year (2- or 4-digit year), ISO year-month-day,
/// dotted day-first or month-first, and month/year ("04/2022"). Two-part forms with a small
/// second number ("1/2", "120/80", "5/325", "24/7") never match.
fn numeric_date() -> String {
    let forms = any_of(concat!(
        r"\d{1,2}[/-]\d{1,2}[/-](?:\d{4}|\d{2})|\d{1,2}\.\d{1,2}\.\d{4}|",
        r"\d{4}[-/]\d{1,2}[-/]\d{1,2}|\d{1,2}/(?:19|20)\d{2}"
    ));
    format!(r"(?-u:\b){forms}(?-u:\b)")
}

/// Month/day without a year ("on 3/14"), trusted after a word that introduces a date. The year
/// is optional here so that "on 3/14/2023" is read whole rather than cut short by this
/// earlier-starting match. Without such a word see `BARE_SHORT_DATE`.
fn cued_short_date() -> String {
    let cues = any_of(concat!(
        r"on|since|from|until|till|through|thru|by|dated?|starting|started|stopped|last|",
        r"before|after|of|presented|admitted|discharged|seen|note"
    ));
    format!(r"(?-u:\b)(?i:{cues})[ \t]+\d{{1,2}}/\d{{1,2}}(?:/\d{{4}}|/\d{{2}})?(?-u:\b)")
}

/// Month/day with no cue word ("cefpodoxime 10/15"). Ratios, scores and fractions are written
/// over 2 to 10 ("pain 7/10", "strength 4/5", "a 2/6 murmur", "1/2 tab"), so a bare one counts
/// as a date only when its day is above `MAX_RATIO_DENOMINATOR`.
const BARE_SHORT_DATE: &str = r"(?-u:\b)\d{1,2}/\d{1,2}(?-u:\b)";
const MAX_RATIO_DENOMINATOR: u32 = 10;

/// Dates with a month name: "March 14, 2023", "Mar 14", "14 Mar 2023", "14-Mar-2023",
/// "the 3rd of May", "March 2019". Month names are matched capitalised only, so "may 5" is not one.
fn word_date() -> String {
    let month = any_of(concat!(
        "Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|",
        "Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?"
    ));
    let month = format!(r"{month}(?-u:\b)\.?");
    let abbr = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)";
    let day = r"\d{1,2}(?:st|nd|rd|th)?(?-u:\b)";
    let year = r"(?:,?[ \t]+\d{4}(?-u:\b))?";
    let forms = [
        format!(r"\d{{1,2}}-{abbr}-(?:\d{{4}}|\d{{2}})"),
        format!(r"{month}[ \t]+{day}{year}"),
        format!(r"{day}[ \t]+(?:of[ \t]+)?{month}{year}"),
        format!(r"{month},?[ \t]+(?:19|20)\d{{2}}(?-u:\b)"),
    ];
    format!(r"(?-u:\b)(?:{})", forms.join("|"))
}

/// Identifiers behind a label ("MRN: 12345678", "Accession #: S23-04567"), social security
/// numbers, and unlabelled long runs (7+ digits, or a short letter prefix and 6+ digits). A bare
/// year or a lab value has at most six digits, and thousands separators ("250,000") break the run.
fn id() -> String {
    let labels = any_of(concat!(
        r"mrn|mr #|mr#|medical record|med rec|acct|account|member id|insurance id|",
        r"subscriber id|policy|encounter|patient id|visit id|ssn|social security|license|",
        r"passport|unit no|accession|specimen|case|claim|requisition"
    ));
    let label_tail = any_of(r"number|no\.?|num|id|#");
    let value = "[A-Z0-9][A-Z0-9-]{3,19}";
    let labelled = format!(r"(?i:{labels})(?:[ \t]+(?i:{label_tail}))?[ \t]*[:#]?[ \t]*{value}");
    let unlabelled = r"\d{3}-\d{2}-\d{4}|[A-Z]{1,4}\d{6,}|\d{7,}";
    format!(r"(?-u:\b)(?:{labelled}|{unlabelled})(?-u:\b)")
}

/// North American phone and fax numbers with an optional country code and extension.
const PHONE: &str = concat!(
    r"(?:\+?1[ .-]?)?(?:\(\d{3}\)[ ]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?-u:\b)",
    r"(?:[ \t]*(?:ext\.?|x)[ \t]*\d{1,5}(?-u:\b))?"
);

/// Age phrases ("92-year-old", "age 93", "94 y/o", "95 years of age") and the age-and-sex
/// shorthand ("93F", "91 M"); only the number is reported, and only when it is over 89.
fn age() -> String {
    let forms = any_of(concat!(
        r"(?i:aged?)[ \t]*:?[ \t]*\d{2,3}|",
        r"\d{2,3}(?:[ \t]*-[ \t]*|[ \t]+)(?:years?|yrs?|y)(?:[ \t]*-[ \t]*|[ \t]+)old|",
        r"\d{2,3}[ \t]*-?[ \t]*(?:y/o|y\.o|yo)|\d{2,3} years? of age|\d{2,3}[ \t]?[MF]"
    ));
    format!(r"(?-u:\b){forms}(?-u:\b)")
}

/// A street line ("55 W Elm Ave, Apt 3", "1600 Pennsylvania Avenue NW") with an optional
/// ", City, ST 12345" tail, a bare "City, ST 12345", or a P.O. box. The street name must be
/// capitalised words or an ordinal, so "3 East step-down unit" or "Room 4512" do not match.
fn address() -> String {
    let direction = any_of("[NSEW]|North|South|East|West|NE|NW|SE|SW");
    let full_suffix = any_of(concat!(
        "Street|Avenue|Road|Boulevard|Drive|Lane|Court|Way|Place|Terrace|Circle|Parkway|",
        "Highway|Square|Trail"
    ));
    let short_suffix = any_of(r"St|Ave|Rd|Blvd|Dr|Ln|Ct|Pl|Ter|Cir|Pkwy|Hwy|Sq|Trl");
    // Only abbreviations take a dot, so a sentence ending in "Oak Street." keeps its full stop.
    let suffix = format!(r"(?:{full_suffix}(?-u:\b)|{short_suffix}(?-u:\b)\.?)");
    let unit = any_of(r"Apt|Apartment|Unit|Suite|Ste|Fl|Floor|#");
    let unit = format!(r"(?:,?[ \t]*{unit}\.?[ \t]*#?[A-Za-z0-9-]+)?");
    let street_word = format!(r"(?:[{CAPITAL}][{LETTER}'.]*|\d{{1,3}}(?:st|nd|rd|th))");
    let city = format!("(?:[{CAPITAL}][{LOWER}]+[ \t]+){{0,2}}[{CAPITAL}][{LOWER}]+");
    let zip = r"\d{5}(?:-\d{4})?(?-u:\b)";
    let city_state = format!(r"{city},?[ \t]+[A-Z]{{2}}(?-u:\b)(?:[ \t]+{zip})?");
    let street_name = format!(
        r"(?:{direction}\.?[ \t]+)?(?:{street_word}[ \t]+){{1,4}}{suffix}(?:[ \t]+{direction}(?-u:\b))?"
    );
    let street =
        format!(r"(?-u:\b)\d{{1,5}}[ \t]+{street_name}{unit}(?:(?:,[ \t]*|[ \t]+){city_state})?");
    let po_box = r"(?-u:\b)(?i:p\.?[ \t]*o\.?[ \t]*box)[ \t]+\d+(?-u:\b)";
    format!(r"{street}|{city},[ \t]+[A-Z]{{2}}[ \t]+{zip}|{po_box}")
}

/// The structured shapes, in the order the scanning pattern prefers them where two could start
/// at the same place (in practice no two do).
#[derive(Clone, Copy)]
enum Shape {
    NumericDate,
    CuedDate,
    BareShortDate,
    WordDate,
    Id,
    Phone,
    Address,
    Age,
}

static SHAPES: LazyLock<Vec<(Shape, String)>> = LazyLock::new(|| {
    vec![
        (Shape::NumericDate, numeric_date()),
        (Shape::CuedDate, cued_short_date()),
        (Shape::BareShortDate, BARE_SHORT_DATE.to_string()),
        (Shape::WordDate, word_date()),
        (Shape::Id, id()),
        (Shape::Phone, PHONE.to_string()),
        (Shape::Address, address()),
        (Shape::Age, age()),
    ]
});

/// All shapes in one pattern, so a note is scanned once. It has no capture groups: captures on
/// a pattern this size cost more than the scan, so each match is classified by `SHAPE_OF`.
static STRUCTURED: LazyLock<Regex> = LazyLock::new(|| {
    let alternatives: Vec<String> = SHAPES.iter().map(|(_, p)| format!("(?:{p})")).collect();
    compile(&alternatives.join("|"))
});

/// Which shapes match a whole found span; the first one is the one `STRUCTURED` took.
static SHAPE_OF: LazyLock<RegexSet> =
    LazyLock::new(|| compile_set(SHAPES.iter().map(|(_, p)| format!("^(?:{p})$"))));

const OLDEST_PLAUSIBLE_AGE: u32 = 125;
const MIN_ID_DIGITS: usize = 5;

/// Appends every structured PHI candidate in `text` to `out` (unsorted, possibly overlapping).
pub(super) fn find_structured(text: &str, out: &mut Vec<PhiSpan>) {
    for m in STRUCTURED.find_iter(text) {
        let Some(&(shape, _)) = SHAPE_OF
            .matches(m.as_str())
            .iter()
            .next()
            .and_then(|i| SHAPES.get(i))
        else {
            continue;
        };
        if let Some((kind, start, end)) = judge(text, shape, m.start(), m.end()) {
            out.push(PhiSpan { kind, start, end });
        }
    }
    if text.contains('@') {
        out.extend(EMAIL.find_iter(text).map(|m| PhiSpan {
            kind: PhiKind::Email,
            start: m.start(),
            end: m.end(),
        }));
    }
}

/// Whether a span of the given shape is PHI, and which part of it: labels, cue words and age
/// phrasing are left out of the span.
fn judge(text: &str, shape: Shape, start: usize, end: usize) -> Option<(PhiKind, usize, usize)> {
    let found = &text[start..end];
    let first_digit = found
        .find(|c: char| c.is_ascii_digit())
        .map_or(end, |i| start + i);
    match shape {
        Shape::NumericDate | Shape::CuedDate | Shape::BareShortDate => {
            let date = &text[first_digit..end];
            let day = date.rsplit('/').next().and_then(|d| d.parse::<u32>().ok());
            let ratio_like = matches!(shape, Shape::BareShortDate)
                && day.is_none_or(|d| d <= MAX_RATIO_DENOMINATOR);
            let is_date =
                !ratio_like && is_calendar_date(date) && !looks_like_a_quantity(text, end);
            is_date.then_some((PhiKind::Date, first_digit, end))
        }
        Shape::WordDate => valid_word_date(found).then_some((PhiKind::Date, start, end)),
        Shape::Id => {
            let value = found
                .rfind([' ', '\t', ':', '#'])
                .map_or(start, |i| start + i + 1);
            // A labelled value needs more digits than a year: "Policy: HMO-PLUS" names a plan and
            // "case 2019" a year, not a person.
            let digits = text[value..end].bytes().filter(u8::is_ascii_digit).count();
            (digits >= MIN_ID_DIGITS).then_some((PhiKind::Id, value, end))
        }
        Shape::Phone => {
            let glued = text[..start].ends_with(|c: char| c.is_ascii_alphanumeric());
            (!glued).then_some((PhiKind::Phone, start, end))
        }
        Shape::Address => Some((PhiKind::Address, start, end)),
        Shape::Age => {
            let digits = text[first_digit..end]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            let number = &text[first_digit..first_digit + digits];
            let shorthand = found.ends_with(['M', 'F']);
            let temperature = shorthand && is_temperature(text, start);
            (is_over_89(number) && !temperature).then_some((
                PhiKind::Age,
                first_digit,
                first_digit + digits,
            ))
        }
    }
}

fn is_temperature(text: &str, start: usize) -> bool {
    let mut from = start.saturating_sub(TEMPERATURE_WINDOW);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    // Only the same sentence counts: "102 F at night. 93F with dementia" is an age.
    let window = &text[from..start];
    let sentence = window
        .rfind(['.', '\n'])
        .map_or(window, |i| &window[i + 1..]);
    TEMPERATURE_BEFORE.is_match(&text[..start]) || TEMPERATURE_NEARBY.is_match(sentence)
}

fn is_over_89(age: &str) -> bool {
    age.parse::<u32>()
        .is_ok_and(|age| (90..=OLDEST_PLAUSIBLE_AGE).contains(&age))
}

/// Rejects "May 45" style matches: every one- or two-digit number in a month-name date must be a
/// day of the month.
fn valid_word_date(date: &str) -> bool {
    date.split(|c: char| !c.is_ascii_digit())
        .filter(|run| !run.is_empty() && run.len() <= 2)
        .all(|run| run.parse::<u32>().is_ok_and(|day| (1..=31).contains(&day)))
}

/// Whether the digit groups of a numeric date name a real month and day: ISO "2023-03-14",
/// month/year "04/2022", month-first "3/14" and "3/14/23", or day-first "14.03.2023" and
/// "14/3/2023" when a year follows.
fn is_calendar_date(date: &str) -> bool {
    let parts: Vec<&str> = date.split(['/', '-', '.']).collect();
    let number = |p: &str| p.parse::<u32>().unwrap_or(0);
    let valid = |month: &str, day: &str| {
        (1..=12).contains(&number(month)) && (1..=31).contains(&number(day))
    };
    match parts.as_slice() {
        [year, month, day] if year.len() == 4 => valid(month, day),
        [first, second, _] => valid(first, second) || valid(second, first),
        [month, year] if year.len() == 4 => valid(month, "1"),
        [month, day] => valid(month, day),
        _ => false,
    }
}

/// A date-shaped match that continues into more digits ("3-12-2024-1") or is followed by a unit.
fn looks_like_a_quantity(text: &str, end: usize) -> bool {
    let rest = &text[end..];
    let chained =
        rest.starts_with(['/', '-']) && rest[1..].starts_with(|c: char| c.is_ascii_digit());
    chained || UNIT_AFTER.is_match(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(PhiKind, &str)> {
        let mut spans = Vec::new();
        find_structured(text, &mut spans);
        spans.sort_by_key(|s| (s.start, s.end));
        spans
            .iter()
            .map(|s| (s.kind, &text[s.start..s.end]))
            .collect()
    }

    #[test]
    fn dates_in_common_forms_are_found_whole() {
        for date in [
            "03/14/2023",
            "3/14/23",
            "2023-03-14",
            "14.03.2023",
            "March 14, 2023",
            "14 Mar 2023",
            "Mar 14",
            "14-Mar-2023",
            "Sept. 5, 2022",
            "March 2019",
            "3rd of May",
            "04/2022",
            "10/15",
        ] {
            let text = format!("seen {date} in clinic");
            assert_eq!(found(&text), vec![(PhiKind::Date, date)], "{date}");
        }
    }

    #[test]
    fn short_dates_with_a_small_day_need_a_cue_word() {
        assert_eq!(found("seen on 3/4 in clinic"), vec![(PhiKind::Date, "3/4")]);
        assert_eq!(found("ratio 3/4 in clinic"), vec![]);
    }

    #[test]
    fn ratios_doses_and_bare_years_are_not_dates() {
        let text = "BP 120/80, take 1/2 tablet, Norco 5/325 mg, pain 7/10, 24/7 care, 2/2 UTI, \
                    strength 4/5, a 2/6 murmur, diagnosed in 2019, may 5 doses, titrate \
                    5-10-20 mg, on 1/2 tab, a 1/1000 dilution";
        assert_eq!(found(text), vec![]);
    }

    #[test]
    fn impossible_calendar_values_are_rejected() {
        assert_eq!(found("ratio 13/45/2020 and May 45"), vec![]);
    }

    #[test]
    fn ids_need_a_label_or_seven_digits() {
        let text = "MRN: 00482193, SSN 123-45-6789, acct # PVU287841856, ref 4455667, case 2019, \
                    platelets 250,000, CPT 99213, WBC 11.2, in 2019";
        let kinds: Vec<&str> = found(text).into_iter().map(|(_, s)| s).collect();
        assert_eq!(
            kinds,
            vec!["00482193", "123-45-6789", "PVU287841856", "4455667"]
        );
    }

    #[test]
    fn phones_in_several_layouts() {
        for phone in [
            "(555) 123-4567",
            "555-123-4567",
            "+1 555 123 4567",
            "555.123.4567 ext. 12",
        ] {
            let text = format!("call {phone} today");
            assert_eq!(found(&text), vec![(PhiKind::Phone, phone)], "{phone}");
        }
    }

    #[test]
    fn addresses_include_unit_city_state_and_zip() {
        let text = "lives at 55 W Elm Ave, Apt 3, Lake Forest, IL 60045 with family";
        assert_eq!(
            found(text),
            vec![(
                PhiKind::Address,
                "55 W Elm Ave, Apt 3, Lake Forest, IL 60045"
            )]
        );
        assert_eq!(found("moved to 3 East step-down unit, Room 4512"), vec![]);
    }

    #[test]
    fn only_ages_over_89_count() {
        let text = "a 92-year-old, age 93, aged 95, 94 y/o, 96-yo; but a 67-year-old and age 89";
        let ages: Vec<&str> = found(text).into_iter().map(|(_, s)| s).collect();
        assert_eq!(ages, vec!["92", "93", "95", "94", "96"]);
    }

    #[test]
    fn temperatures_in_fahrenheit_are_not_ages() {
        let text = "Return for a fever over 101 F or chills. Tmax today was 99, then 102 F at night. \
                    93F with dementia admitted from home.";
        let ages: Vec<&str> = found(text).into_iter().map(|(_, s)| s).collect();
        assert_eq!(ages, vec!["93"]);
    }

    #[test]
    fn emails_are_found() {
        assert_eq!(
            found("send to j.doe42@mercy-health.org."),
            vec![(PhiKind::Email, "j.doe42@mercy-health.org")]
        );
        assert_eq!(found("or zoë@x.org"), vec![(PhiKind::Email, "zoë@x.org")]);
    }
}
