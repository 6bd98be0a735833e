//! Streamed text: the decoded output so far in, the part that can be sent now out. A character
//! whose bytes are still arriving (the decoder shows it as U+FFFD) and an ending that may be the
//! start of a stop string are held back; a stop string cuts the text before it.

/// The output of one request as it streams.
#[derive(Debug, Clone)]
pub struct TextStream {
    stop: Vec<String>,
    /// The whole decoded output at the last push.
    text: String,
    /// Bytes of `text` already sent.
    sent: usize,
    /// Where a stop string began, once one came.
    cut: Option<usize>,
}

impl TextStream {
    pub fn new(stop: Vec<String>) -> TextStream {
        TextStream {
            stop,
            text: String::new(),
            sent: 0,
            cut: None,
        }
    }

    /// Takes the whole decoded output so far; returns the new text that can be sent.
    pub fn push(&mut self, text: &str) -> String {
        if self.cut.is_some() {
            return String::new();
        }
        // A decoder may respell the end of its output as tokens come (a split character made
        // whole): only text that extends what was sent is taken.
        if !text.starts_with(&self.text[..self.sent]) {
            return String::new();
        }
        self.text = text.to_string();
        let from = self.sent.saturating_sub(self.longest_stop());
        let found = self
            .stop
            .iter()
            .filter_map(|s| {
                floor(text, from).and_then(|f| text[f..].find(s.as_str()).map(|i| f + i))
            })
            .min();
        if let Some(at) = found {
            self.cut = Some(at);
            return self.take(at);
        }
        let whole = text.trim_end_matches('\u{FFFD}');
        let held = self
            .stop
            .iter()
            .map(|s| partial_stop(whole, s))
            .max()
            .unwrap_or(0);
        self.take(whole.len() - held)
    }

    /// The rest of the text once generation has ended (nothing after a stop string).
    pub fn finish(&mut self) -> String {
        let end = self.cut.unwrap_or(self.text.len());
        self.take(end)
    }

    /// Whether a stop string ended the output.
    pub fn stopped(&self) -> bool {
        self.cut.is_some()
    }

    fn longest_stop(&self) -> usize {
        self.stop.iter().map(String::len).max().unwrap_or(0)
    }

    /// The text from what was sent up to `end`, marked as sent.
    fn take(&mut self, end: usize) -> String {
        if end <= self.sent || !self.text.is_char_boundary(end) {
            return String::new();
        }
        let out = self.text[self.sent..end].to_string();
        self.sent = end;
        out
    }
}

/// The largest char boundary of `text` at or below `at`.
fn floor(text: &str, at: usize) -> Option<usize> {
    (0..=at.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
}

/// The length of the longest ending of `text` that is a proper beginning of `stop`.
fn partial_stop(text: &str, stop: &str) -> usize {
    (1..stop.len())
        .rev()
        .filter(|&n| stop.is_char_boundary(n))
        .find(|&n| text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The deltas of a stream fed `steps` in turn, and its end.
    fn deltas(stop: &[&str], steps: &[&str]) -> (Vec<String>, bool) {
        let mut s = TextStream::new(stop.iter().map(|x| x.to_string()).collect());
        let mut out: Vec<String> = steps.iter().map(|t| s.push(t)).collect();
        out.push(s.finish());
        (out, s.stopped())
    }

    #[test]
    fn text_streams_as_it_grows() {
        let (d, stopped) = deltas(&[], &["He", "Hello", "Hello wor", "Hello world"]);
        assert_eq!(d, ["He", "llo", " wor", "ld", ""]);
        assert!(!stopped);
    }

    #[test]
    fn a_character_still_arriving_is_held_back() {
        let (d, _) = deltas(&[], &["caf", "caf\u{FFFD}", "café", "café!"]);
        assert_eq!(d, ["caf", "", "é", "!", ""]);
    }

    #[test]
    fn a_stop_string_cuts_the_text_even_across_tokens() {
        let (d, stopped) = deltas(
            &["END"],
            &["One E", "One EN", "One ENDtwo", "One ENDtwo more"],
        );
        assert_eq!(d, ["One ", "", "", "", ""]);
        assert!(stopped);
        // A held-back beginning that turns out not to be the stop string is sent.
        let (d, stopped) = deltas(&["END"], &["One E", "One Eve"]);
        assert_eq!(d, ["One ", "Eve", ""]);
        assert!(!stopped);
        // Held back at the very end: sent when generation ends.
        let (d, _) = deltas(&["\n\n"], &["a\n"]);
        assert_eq!(d, ["a", "\n"]);
    }

    #[test]
    fn the_earliest_of_several_stop_strings_wins() {
        let (d, stopped) = deltas(&["b", "a"], &["xyab"]);
        assert_eq!(d, ["xy", ""]);
        assert!(stopped);
    }
}
