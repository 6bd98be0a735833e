//! Reads the plain-text lexicons compiled into the generators (diagnoses, complaints, exam
//! questions, medications): blocks opened by `== name`, each a list of `key: value` lines.

use thiserror::Error;

/// A lexicon file that does not follow the block format; names the file and line.
#[derive(Debug, Error, PartialEq)]
#[error("{file}:{line}: {message}")]
pub struct LexiconError {
    pub file: &'static str,
    pub line: usize,
    pub message: String,
}

/// One `== name` block; repeated keys keep every value in file order.
#[derive(Debug)]
pub(super) struct Block {
    pub name: &'static str,
    file: &'static str,
    line: usize,
    fields: Vec<(&'static str, &'static str, usize)>,
}

impl Block {
    pub fn all(&self, key: &str) -> Vec<&'static str> {
        self.fields
            .iter()
            .filter(|(k, _, _)| *k == key)
            .map(|(_, v, _)| *v)
            .collect()
    }

    pub fn optional(&self, key: &str) -> Option<&'static str> {
        self.fields
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, v, _)| *v)
    }

    pub fn one(&self, key: &str) -> Result<&'static str, LexiconError> {
        self.optional(key)
            .ok_or_else(|| self.error(key, "is missing"))
    }

    /// Every value of `key`, at least `min` of them.
    pub fn list(&self, key: &str, min: usize) -> Result<Vec<&'static str>, LexiconError> {
        let values = self.all(key);
        if values.len() < min {
            return Err(self.error(key, &format!("needs at least {min} line(s)")));
        }
        Ok(values)
    }

    /// The value of `key` split on ` => ` into exactly `parts` pieces (a trailing one may be absent).
    pub fn split(
        &self,
        value: &'static str,
        key: &str,
        parts: usize,
    ) -> Result<Vec<&'static str>, LexiconError> {
        let pieces: Vec<&'static str> = value.split(" => ").map(str::trim).collect();
        if pieces.len() + 1 < parts || pieces.len() > parts {
            return Err(self.error(
                key,
                &format!("'{value}' needs {parts} parts joined by ' => '"),
            ));
        }
        Ok(pieces)
    }

    /// Whitespace-separated numbers of `key`, exactly `count` of them.
    pub fn numbers(&self, key: &str, count: usize) -> Result<Vec<f64>, LexiconError> {
        let raw = self.one(key)?;
        let numbers: Vec<f64> = raw
            .split(|c: char| c.is_whitespace() || c == '-')
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| self.error(key, &format!("'{raw}' is not a list of numbers")))?;
        if numbers.len() != count {
            return Err(self.error(key, &format!("'{raw}' needs {count} numbers")));
        }
        Ok(numbers)
    }

    /// An error that points at the line of `key` (or the block header when the key is absent).
    pub fn error(&self, key: &str, message: &str) -> LexiconError {
        let line = self
            .fields
            .iter()
            .find(|(k, _, _)| *k == key)
            .map_or(self.line, |(_, _, l)| *l);
        LexiconError {
            file: self.file,
            line,
            message: format!("block '{}', field '{key}' {message}", self.name),
        }
    }
}

/// Splits a lexicon into blocks. Blank lines and lines starting with `#` are ignored.
pub(super) fn parse(file: &'static str, text: &'static str) -> Result<Vec<Block>, LexiconError> {
    let mut blocks: Vec<Block> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix("== ") {
            blocks.push(Block {
                name: name.trim(),
                file,
                line,
                fields: Vec::new(),
            });
            continue;
        }
        let error = |message: &str| LexiconError {
            file,
            line,
            message: message.to_string(),
        };
        let (key, value) = trimmed
            .split_once(": ")
            .ok_or_else(|| error("expected 'key: value'"))?;
        let block = blocks
            .last_mut()
            .ok_or_else(|| error("field before the first '== name' block"))?;
        block.fields.push((key.trim(), value.trim(), line));
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str =
        "# comment\n== First\nkey: one\nkey: two\nage: 10 20\n\n== Second\npair: a => b\n";

    #[test]
    fn blocks_keep_repeated_keys_in_order() {
        let blocks = parse("sample.txt", SAMPLE).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].all("key"), ["one", "two"]);
        assert_eq!(blocks[0].numbers("age", 2).unwrap(), [10.0, 20.0]);
        let pair = blocks[1].one("pair").unwrap();
        assert_eq!(blocks[1].split(pair, "pair", 2).unwrap(), ["a", "b"]);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let err = parse("bad.txt", "key: value\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad.txt:1: field before the first '== name' block"
        );
        let blocks = parse("sample.txt", SAMPLE).unwrap();
        let err = blocks[0].numbers("key", 2).unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.to_string().contains("field 'key'"), "{err}");
        assert_eq!(blocks[1].one("missing").unwrap_err().line, 7);
    }
}
