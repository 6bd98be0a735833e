use super::*;
use crate::model::loading::{ModelSpec, TINY, load};

/// The embedded model with a context of `context` tokens.
fn tiny(context: usize) -> LoadedModel {
    let mut spec = ModelSpec::new(TINY);
    spec.max_len = context;
    load(&spec).expect("the embedded model")
}

fn params(max_new_tokens: usize) -> GenerationParams {
    GenerationParams {
        max_new_tokens,
        ..GenerationParams::default()
    }
}

fn run<'a>(p: &'a GenerationParams, cancelled: &'a dyn Fn() -> bool) -> Run<'a> {
    Run {
        stop_at_eos: false,
        ..Run::new(p, cancelled)
    }
}

#[test]
fn a_prompt_longer_than_the_context_is_trimmed_not_refused() {
    let model = tiny(96);
    let long = "The patient was admitted with chest pain and treated. ".repeat(60);
    let p = params(8);
    let never = || false;
    let out = generate(
        &model,
        &[
            Prompt::Chat {
                task: Some(Task::Discharge),
                input: &long,
            },
            Prompt::Chat {
                task: Some(Task::Discharge),
                input: "Chest pain, treated.",
            },
            Prompt::Raw(&long),
        ],
        run(&p, &never),
    )
    .expect("generated");
    let cut: Vec<bool> = out.outputs.iter().map(|g| g.input_cut).collect();
    assert_eq!(cut, [true, false, true]);
    for g in &out.outputs {
        assert_eq!((g.ids.len(), g.stop), (8, StopReason::MaxTokens), "{g:?}");
    }
    // The template around the input stays whole: only the input lost tokens.
    let fitted = fit_prompt(
        &model,
        Prompt::Chat {
            task: Some(Task::Discharge),
            input: &long,
        },
        8,
    )
    .expect("fitted");
    assert_eq!(fitted.ids.len(), 96 - 8);
    let empty = encode_example(
        &model.tokenizer,
        &model.template,
        Some(Task::Discharge),
        "",
        None,
    )
    .expect("empty prompt")
    .ids;
    let tail = &empty[empty.len() - 4..];
    assert_eq!(
        &fitted.ids[fitted.ids.len() - 4..],
        tail,
        "ends as the template does"
    );
}

#[test]
fn text_streams_per_row_and_a_cancel_stops_every_row() {
    let model = tiny(256);
    let p = params(6);
    let never = || false;
    let mut seen: Vec<(usize, String)> = Vec::new();
    let mut on_text = |row: usize, text: &str| seen.push((row, text.to_string()));
    let prompts = [Prompt::Raw("Diagnosis:"), Prompt::Raw("Medications:")];
    let out = generate(
        &model,
        &prompts,
        Run {
            on_text: Some(&mut on_text),
            ..run(&p, &never)
        },
    )
    .expect("generated");
    for (row, g) in out.outputs.iter().enumerate() {
        let last = seen
            .iter()
            .rev()
            .find(|(r, _)| *r == row)
            .expect("streamed");
        assert_eq!(last.1, g.text, "the last streamed text is the output");
    }
    let cancel = std::cell::Cell::new(0);
    let after_two = || {
        cancel.set(cancel.get() + 1);
        cancel.get() > 2
    };
    let out = generate(&model, &prompts, run(&p, &after_two)).expect("generated");
    for g in &out.outputs {
        assert_eq!(g.stop, StopReason::Caller);
        assert!(g.ids.len() < 6, "{g:?}");
    }
}
