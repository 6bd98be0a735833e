//! Dose, unit, route and frequency written after a drug name ("40 mg PO BID", "2 puffs every 4
//! hours", "by mouth two times a day"), normalized so that a clinician's abbreviations and a
//! patient's plain words compare equal.

use regex::Regex;
use serde::Serialize;
use std::sync::LazyLock;

/// A dose as written, with its value(s) and unit normalized.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dose {
    /// As written, e.g. "1,000 mg".
    pub text: String,
    pub value: f64,
    /// Upper end of a range such as "24-26 mg".
    pub high: Option<f64>,
    /// Canonical unit: mg, mcg, g, units, ml, meq, puff, tablet, capsule, drop, spray, patch, %.
    pub unit: &'static str,
    pub start: usize,
    pub end: usize,
}

/// A route or frequency as written and its canonical code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coded {
    pub text: String,
    /// Route: po, sl, sc, iv, im, inh, top, pr, td, eye, nasal. Frequency: `N/day`, `1/week`,
    /// `every N min`.
    pub code: String,
    pub start: usize,
    pub end: usize,
}

static DOSE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:^|[^\w.,])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+|one|two|three|four|half)(?:\s*(?:-|to)\s*(\d+(?:\.\d+)?))?\s*(?:ds\s+|er\s+|xr\s+)?(mg|milligrams?|mcg|micrograms?|µg|ug|g|gm|grams?|units?|iu|ml|milliliters?|meq|puffs?|tablets?|tabs?|capsules?|caps?|drops?|sprays?|patch(?:es)?|%)(?:$|[^\w])",
    )
    .expect("dose pattern")
});

fn unit_code(unit: &str) -> &'static str {
    match unit.to_ascii_lowercase().as_str() {
        "mg" | "milligram" | "milligrams" => "mg",
        "mcg" | "microgram" | "micrograms" | "ug" => "mcg",
        "g" | "gm" | "gram" | "grams" => "g",
        "unit" | "units" | "iu" => "units",
        "ml" | "milliliter" | "milliliters" => "ml",
        "meq" => "meq",
        "puff" | "puffs" => "puff",
        "tablet" | "tablets" | "tab" | "tabs" => "tablet",
        "capsule" | "capsules" | "cap" | "caps" => "capsule",
        "drop" | "drops" => "drop",
        "spray" | "sprays" => "spray",
        "patch" | "patches" => "patch",
        "%" => "%",
        _ => "mcg", // µg, whose lowercase is not ASCII
    }
}

fn number(text: &str) -> Option<f64> {
    match text.to_ascii_lowercase().as_str() {
        "one" => Some(1.0),
        "two" => Some(2.0),
        "three" => Some(3.0),
        "four" => Some(4.0),
        "half" => Some(0.5),
        t => t.replace(',', "").parse().ok(),
    }
}

/// The first dose in `scope` (a slice of a text starting at byte `offset`).
pub fn dose(scope: &str, offset: usize) -> Option<Dose> {
    let c = DOSE.captures(scope)?;
    let (num, unit) = (c.get(1)?, c.get(3)?);
    Some(Dose {
        text: scope[num.start()..unit.end()].to_string(),
        value: number(num.as_str())?,
        high: c.get(2).and_then(|h| number(h.as_str())),
        unit: unit_code(unit.as_str()),
        start: offset + num.start(),
        end: offset + unit.end(),
    })
}

impl Dose {
    /// The value in the unit family's base (mg for masses), so "1 g" equals "1000 mg".
    fn base(&self) -> (&'static str, f64, Option<f64>) {
        let (family, factor) = match self.unit {
            "g" => ("mg", 1000.0),
            "mcg" => ("mg", 0.001),
            u => (u, 1.0),
        };
        (family, self.value * factor, self.high.map(|h| h * factor))
    }

    /// The dose in milligrams (or in its own unit when not a mass), for maximum-dose checks.
    pub fn amount_in(&self, unit: &str) -> Option<f64> {
        let (family, value, _) = self.base();
        match unit {
            "mcg" if family == "mg" => Some(value * 1000.0),
            u if u == family => Some(value),
            _ => None,
        }
    }

    /// Whether two doses say the same amount.
    pub fn same_amount(&self, other: &Dose) -> bool {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
        let (fa, va, ha) = self.base();
        let (fb, vb, hb) = other.base();
        fa == fb
            && close(va, vb)
            && match (ha, hb) {
                (Some(x), Some(y)) => close(x, y),
                (None, None) => true,
                _ => false,
            }
    }
}

/// How a matched pattern becomes a canonical code.
#[derive(Clone, Copy)]
enum Code {
    Fixed(&'static str),
    /// "q6h", "every 4 to 6 hours": 24 / the first number, per day.
    EveryHours,
    /// "q5min": every N minutes.
    EveryMinutes,
}

struct CodedPattern {
    regex: Regex,
    code: Code,
}

fn pattern(re: &str, code: Code) -> CodedPattern {
    CodedPattern {
        regex: Regex::new(&format!(r"(?i)\b(?:{re})\b")).expect("attribute pattern"),
        code,
    }
}

impl Code {
    fn of(self, c: &regex::Captures) -> Option<String> {
        let first_number =
            || -> Option<f64> { c.iter().skip(1).flatten().next()?.as_str().parse().ok() };
        match self {
            Code::Fixed(code) => Some(code.to_string()),
            Code::EveryMinutes => Some(format!("every {} min", first_number()?)),
            Code::EveryHours => {
                let hours = first_number()?;
                (hours > 0.0).then(|| {
                    let per_day = 24.0 / hours;
                    if per_day.fract() == 0.0 {
                        format!("{per_day}/day")
                    } else {
                        format!("{per_day:.2}/day")
                    }
                })
            }
        }
    }
}

static ROUTES: LazyLock<Vec<CodedPattern>> = LazyLock::new(|| {
    [
        (r"po|p\.o|by mouth|orally|oral", "po"),
        (r"sl|sublingual(?:ly)?|under (?:your|the) tongue", "sl"),
        (
            r"sc|sq|subq|subcut|subcutaneous(?:ly)?|under (?:your|the) skin",
            "sc",
        ),
        (r"iv|intravenous(?:ly)?|into (?:a|your) vein", "iv"),
        (r"im|intramuscular(?:ly)?|into (?:a|your|the) muscle", "im"),
        (r"inh|inhaled?|inhalers?|nebuli[sz]ed|nebuli[sz]er", "inh"),
        (r"topical(?:ly)?|on (?:your|the) skin", "top"),
        (r"pr|rectal(?:ly)?|per rectum", "pr"),
        (r"transdermal(?:ly)?", "td"),
        (r"ophthalmic|in (?:your|each|the affected) eyes?", "eye"),
        (r"nasal(?:ly)?|intranasal|in (?:your|each) nostril", "nasal"),
    ]
    .into_iter()
    .map(|(re, code)| pattern(re, Code::Fixed(code)))
    .collect()
});

static FREQUENCIES: LazyLock<Vec<CodedPattern>> = LazyLock::new(|| {
    let per = r"(?:a|per|each|every) day|daily";
    vec![
        pattern(r"q\s?(\d+)\s?min|every (\d+) minutes?", Code::EveryMinutes),
        pattern(
            r"q\s?(\d+)(?:\s?-\s?\d+)?\s?h(?:rs?|ours?)?|every (\d+)(?:\s?(?:-|to)\s?\d+)? hours?",
            Code::EveryHours,
        ),
        pattern(
            &format!(r"bid|b\.i\.d|twice (?:{per})|two times (?:{per})|twice"),
            Code::Fixed("2/day"),
        ),
        pattern(
            &format!(r"tid|t\.i\.d|three times (?:{per})|(?:with|at) (?:each )?meals?"),
            Code::Fixed("3/day"),
        ),
        pattern(
            &format!(r"qid|q\.i\.d|four times (?:{per})"),
            Code::Fixed("4/day"),
        ),
        pattern(r"qod|every other day", Code::Fixed("0.5/day")),
        pattern(
            r"weekly|once (?:a|per|each|every) week|every week",
            Code::Fixed("1/week"),
        ),
        pattern(
            &format!(
                r"qam|qpm|qhs|qd|q\.d|daily|once (?:{per})|once|every (?:day|morning|evening|night)|each (?:day|morning|evening|night)|at bedtime|at night|nightly|in the (?:morning|evening)"
            ),
            Code::Fixed("1/day"),
        ),
    ]
});

/// The earliest match of any pattern in `scope`; on a tie, the earlier pattern.
fn first_coded(patterns: &[CodedPattern], scope: &str, offset: usize) -> Option<Coded> {
    patterns
        .iter()
        .filter_map(|p| {
            let c = p.regex.captures(scope)?;
            let m = c.get(0)?;
            Some((m.start(), m.end(), p.code.of(&c)?))
        })
        .min_by_key(|(start, _, _)| *start)
        .map(|(start, end, code)| Coded {
            text: scope[start..end].to_string(),
            code,
            start: offset + start,
            end: offset + end,
        })
}

pub fn route(scope: &str, offset: usize) -> Option<Coded> {
    first_coded(&ROUTES, scope, offset)
}

pub fn frequency(scope: &str, offset: usize) -> Option<Coded> {
    first_coded(&FREQUENCIES, scope, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doses_with_commas_decimals_ranges_and_words() {
        let d = dose(" 1,000 mg PO q8h", 10).expect("dose");
        assert_eq!(
            (d.value, d.unit, d.text.as_str(), d.start),
            (1000.0, "mg", "1,000 mg", 11)
        );
        assert_eq!(dose(" 0.125mg daily", 0).expect("dose").value, 0.125);
        let r = dose(" 24-26 mg BID", 0).expect("range");
        assert_eq!((r.value, r.high), (24.0, Some(26.0)));
        assert_eq!(dose(", two puffs", 0).expect("words").unit, "puff");
        assert!(dose(" x 5 days, Hgb 11.1", 0).is_none());
        let g = dose(" 1 g", 0).expect("g");
        assert!(g.same_amount(&dose(" 1000 mg", 0).expect("mg")));
    }

    #[test]
    fn routes_and_frequencies_from_abbreviations_and_plain_words() {
        assert_eq!(route(" 40 mg PO daily", 0).expect("po").code, "po");
        assert_eq!(route(" 40 mg under your skin", 0).expect("sc").code, "sc");
        for (text, code) in [
            (" 5 mg Q6H PRN pain", "4/day"),
            (" every 4 hours if you need it", "6/day"),
            (" BID", "2/day"),
            (" two times a day", "2/day"),
            (" TID with meals", "3/day"),
            (" once a day in the morning", "1/day"),
            (" at bedtime", "1/day"),
            (" Q5MIN PRN chest pain", "every 5 min"),
            (" q8h", "3/day"),
            (" once a week", "1/week"),
        ] {
            assert_eq!(frequency(text, 0).expect(text).code, code, "{text}");
        }
    }
}
