//! Metric names for people: every panel, report and command that shows a metric names it here
//! (`rougeL.fmeasure` → `ROUGE-L F1`, `fkgl` → `reading grade (FKGL)`), never by its key.

/// A metric's full name.
pub fn metric_label(metric: &str) -> String {
    if let Some((rouge, part)) = metric.split_once('.')
        && let Some(kind) = rouge.strip_prefix("rouge")
    {
        let part = match part {
            "fmeasure" => "F1",
            other => other,
        };
        return format!("ROUGE-{kind} {part}");
    }
    match metric {
        "bleu" => "BLEU".into(),
        "fkgl" => "reading grade (FKGL)".into(),
        "fre" => "reading ease (FRE)".into(),
        "smog" => "SMOG grade".into(),
        "meds.hallucinated" => "hallucinated medications per output".into(),
        "meds.omitted" => "omitted medications per output".into(),
        "meds.mismatched" => "dose mismatches per output".into(),
        "safety" => "safety flags per output".into(),
        "loss" => "loss (nats/token)".into(),
        "correct" => "answer correct".into(),
        other => other.to_string(),
    }
}

/// A metric's name short enough for a column heading or a badge.
pub fn metric_short_label(metric: &str) -> String {
    match metric {
        "fkgl" => "reading grade".into(),
        "fre" => "reading ease".into(),
        "meds.hallucinated" => "hallucinated meds".into(),
        "meds.omitted" => "omitted meds".into(),
        "meds.mismatched" => "dose mismatches".into(),
        "safety" => "safety flags".into(),
        "loss" => "loss".into(),
        other => metric_label(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_as_names() {
        for (key, name) in [
            ("rougeL.fmeasure", "ROUGE-L F1"),
            ("rouge1.precision", "ROUGE-1 precision"),
            ("rougeLsum.recall", "ROUGE-Lsum recall"),
            ("fkgl", "reading grade (FKGL)"),
            ("meds.hallucinated", "hallucinated medications per output"),
            ("loss", "loss (nats/token)"),
            ("my_metric", "my_metric"),
        ] {
            assert_eq!(metric_label(key), name);
        }
        assert_eq!(metric_short_label("fkgl"), "reading grade");
        assert_eq!(metric_short_label("rougeL.fmeasure"), "ROUGE-L F1");
    }
}
