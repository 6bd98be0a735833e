//! Expands the small template language of the lexicons: `{var}`, `{a|b}` choices, `{lo-hi}`
//! numbers and `{name:spec}` bindings that keep a drawn value for later text.

use crate::data::rng::SeededRng;

/// Variables of one record: pronouns, age and any value bound while filling its templates.
pub(super) struct Filler {
    vars: Vec<(String, String)>,
}

/// How a note states an age: de-identified notes never state an age over 89 (HIPAA Safe
/// Harbor), so those read as MIMIC writes them.
pub fn age_in_text(age: u32) -> String {
    if age > 89 {
        "[**Age over 90 **]".to_string()
    } else {
        age.to_string()
    }
}

impl Filler {
    /// Pronouns, the article before the age, and the side of the body for a patient of this
    /// gender ("F" or "M") and age.
    pub fn person(rng: &mut SeededRng, gender: &str, age: u32) -> Filler {
        let female = gender == "F";
        let pick = |f: &'static str, m: &'static str| if female { f } else { m };
        let noun = match age {
            0..=17 => pick("girl", "boy"),
            _ => pick("woman", "man"),
        };
        let mut filler = Filler { vars: Vec::new() };
        for (name, value) in [
            ("he", pick("she", "he")),
            ("He", pick("She", "He")),
            ("his", pick("her", "his")),
            ("His", pick("Her", "His")),
            ("him", pick("her", "him")),
            ("sex", noun),
        ] {
            filler.set(name, value);
        }
        filler.set("age", &age_in_text(age));
        // Ages read aloud as eight, eleven, eighteen or eighty-something take "an".
        let vowel = matches!(age, 8 | 11 | 18 | 80..=89);
        filler.set("a", if vowel { "an" } else { "a" });
        filler.set("A", if vowel { "An" } else { "A" });
        let (side, other) = *rng.pick(&[("right", "left"), ("left", "right")]);
        filler.set("side", side);
        filler.set("Side", &capitalize(side));
        filler.set("otherside", other);
        filler
    }

    pub fn set(&mut self, name: &str, value: &str) {
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.vars.push((name.to_string(), value.to_string())),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Expands every `{...}` of `template`; an unknown variable is left as written so that tests
    /// catch it.
    pub fn fill(&mut self, rng: &mut SeededRng, template: &str) -> String {
        let mut out = String::with_capacity(template.len() + 16);
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}').map(|c| open + c) else {
                break;
            };
            out.push_str(&rest[..open]);
            out.push_str(&self.expand(rng, &rest[open + 1..close]));
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        singular_after_one(out)
    }

    fn expand(&mut self, rng: &mut SeededRng, spec: &str) -> String {
        if let Some((name, value)) = binding(spec) {
            if let Some(bound) = self.get(name) {
                return bound.to_string();
            }
            let drawn = draw(rng, value);
            self.set(name, &drawn);
            return drawn;
        }
        if spec.contains('|') || number_range(spec).is_some() {
            return draw(rng, spec);
        }
        self.get(spec)
            .map_or_else(|| format!("{{{spec}}}"), str::to_string)
    }
}

/// "1 days" becomes "1 day" when a drawn number turns out to be one.
fn singular_after_one(mut text: String) -> String {
    for unit in ["day", "hour", "week", "month", "year", "episode", "time"] {
        let plural = format!("1 {unit}s");
        let mut from = 0;
        while let Some(found) = text[from..].find(&plural).map(|p| p + from) {
            let before = text[..found].chars().last();
            let after = text[found + plural.len()..].chars().next();
            let whole = !before.is_some_and(|c| c.is_ascii_digit() || c == '.')
                && !after.is_some_and(char::is_alphanumeric);
            if whole {
                text.replace_range(found..found + plural.len(), &plural[..plural.len() - 1]);
            }
            from = found + 1;
        }
    }
    text
}

/// `name:spec` where name is lowercase letters and digits.
fn binding(spec: &str) -> Option<(&str, &str)> {
    let (name, value) = spec.split_once(':')?;
    let is_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    is_name.then_some((name, value))
}

/// A choice (`a|b`) or a number range (`lo-hi`); anything else is returned as is.
fn draw(rng: &mut SeededRng, spec: &str) -> String {
    if spec.contains('|') {
        let options: Vec<&str> = spec.split('|').collect();
        return rng.pick(&options).to_string();
    }
    let Some((lo, hi, decimals)) = number_range(spec) else {
        return spec.to_string();
    };
    if decimals == 0 {
        return rng.range(lo as i64, hi as i64).to_string();
    }
    let value = lo + rng.f64() * (hi - lo);
    format!("{value:.decimals$}")
}

/// `lo-hi` with the number of decimals written in the template.
fn number_range(spec: &str) -> Option<(f64, f64, usize)> {
    let (lo, hi) = spec.split_once('-')?;
    let decimals = |s: &str| s.split_once('.').map_or(0, |(_, d)| d.len());
    let lo_value: f64 = lo.parse().ok()?;
    let hi_value: f64 = hi.parse().ok()?;
    (lo_value <= hi_value).then(|| (lo_value, hi_value, decimals(lo).max(decimals(hi))))
}

/// Upper-cases the first letter.
pub(super) fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

/// Lower-cases the first letter unless the first word is an acronym ("NSTEMI", "COPD").
pub(super) fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if second.is_lowercase() => first
            .to_lowercase()
            .chain(text[first.len_utf8()..].chars())
            .collect(),
        _ => text.to_string(),
    }
}

/// "a", "a and b", "a, b and c" with the given conjunction.
pub(super) fn join_list(items: &[String], conjunction: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} {conjunction} {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_are_reused_and_pronouns_follow_gender() {
        let mut rng = SeededRng::new(3);
        let mut filler = Filler::person(&mut rng, "F", 70);
        let text = filler.fill(
            &mut rng,
            "{He} had Cr {cr:1.2-1.9}; later {cr} and {cr:5-9}.",
        );
        let cr = filler.get("cr").unwrap().to_string();
        assert_eq!(text, format!("She had Cr {cr}; later {cr} and {cr}."));
        assert_eq!(cr.len(), 3, "one decimal kept: {cr}");
        assert_eq!(filler.fill(&mut rng, "{a} {sex} of {age}"), "a woman of 70");
        let mut boy = Filler::person(&mut rng, "M", 8);
        assert_eq!(
            boy.fill(&mut rng, "{A} {age}-year-old {sex}"),
            "An 8-year-old boy"
        );
        let sides = boy.fill(&mut rng, "{Side} arm, {otherside} brain, {side} leg");
        assert!(
            sides == "Right arm, left brain, right leg"
                || sides == "Left arm, right brain, left leg"
        );
    }

    #[test]
    fn ranges_and_choices_stay_in_bounds() {
        let mut rng = SeededRng::new(5);
        let mut filler = Filler::person(&mut rng, "M", 40);
        for _ in 0..200 {
            let n: i64 = filler.fill(&mut rng, "{3-7}").parse().unwrap();
            assert!((3..=7).contains(&n));
            let choice = filler.fill(&mut rng, "{left|right}");
            assert!(choice == "left" || choice == "right");
        }
        assert_eq!(filler.fill(&mut rng, "{unknown} {"), "{unknown} {");
    }

    #[test]
    fn one_takes_the_singular() {
        let fixed =
            singular_after_one("1 days of pain, 11 days, 21 days, 1 hours, 1.1 days".to_string());
        assert_eq!(fixed, "1 day of pain, 11 days, 21 days, 1 hour, 1.1 days");
    }

    #[test]
    fn text_helpers() {
        assert_eq!(capitalize("you have"), "You have");
        assert_eq!(lower_first("Acute pancreatitis"), "acute pancreatitis");
        assert_eq!(lower_first("NSTEMI"), "NSTEMI");
        let items: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        assert_eq!(join_list(&items, "or"), "a, b or c");
    }
}
