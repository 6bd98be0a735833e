//! Saliency on SmolLM2-135M-Instruct where the answer is known: an output that copies one word
//! of the input puts the largest gradient x input weight on that word, whatever the note around
//! it, and each word's weight is the sum of its tokens'. (The signs are checked against the
//! likelihood itself in `analysis::explain::scoring`'s tests.) The model file comes from
//! scripts/fetch-smollm2.sh.

use lablens::analysis::explain::{ExplainSettings, Explainer, Method};
use lablens::data::record::Task;
use lablens::model::loading::{ModelSpec, load};
use std::path::PathBuf;

const NOTES: [&str; 3] = [
    "Repeat the name of the medicine only. The patient takes furosemide every morning.",
    "The patient takes furosemide every morning with water and breakfast.",
    "She was sent home on furosemide and told to rest, eat less salt and walk.",
];

#[test]
fn an_output_copying_one_word_puts_most_weight_on_it() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-smollm2.sh",
        path.display()
    );
    let model = load(&ModelSpec::new(&path)).expect("load");
    let settings = ExplainSettings {
        method: Method::Saliency,
        ..ExplainSettings::default()
    };
    for input in NOTES {
        let explainer = Explainer {
            model: &model,
            task: Some(Task::Discharge),
            input,
            reference: "",
            output: "furosemide",
            settings: &settings,
            cancelled: &|| false,
        };
        let (result, target) = explainer.saliency().expect("saliency");
        assert_eq!(target, "furosemide");
        let words = &result.words;
        assert_eq!(words.len(), input.split_whitespace().count());
        let top = words
            .iter()
            .max_by(|a, b| a.weight.abs().total_cmp(&b.weight.abs()))
            .expect("words");
        assert_eq!(top.label, "furosemide", "{input}: {words:#?}");
        let tokens: f64 = result.tokens.iter().map(|t| t.weight).sum();
        let summed: f64 = words.iter().map(|w| w.weight).sum();
        assert!(
            (tokens - summed).abs() < 1e-9 * tokens.abs().max(1.0),
            "{tokens} vs {summed}"
        );
    }
}
