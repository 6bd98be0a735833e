//! The bias audit on the engine thread: `crate::analysis::bias::job::run`, with the
//! counterfactual test's generations reported as progress and the engine's cancel checked
//! between records.

use super::{Event, JobContext};
use crate::analysis::bias::job::{BiasRequest, run as run_audit};
use crate::job::JobError;
use crate::model::loading::LoadedModel;

pub(super) fn run(
    ctx: &JobContext,
    kept: Option<&mut LoadedModel>,
    request: BiasRequest,
) -> Result<Event, JobError> {
    let outcome = ctx.run(|job| run_audit(&request, kept, job))?;
    Ok(Event::BiasAudited {
        job: ctx.job,
        outcome: Box::new(outcome),
    })
}

#[cfg(test)]
mod tests {
    use crate::analysis::bias::BiasOptions;
    use crate::analysis::bias::counterfactual::SwapKind;
    use crate::analysis::bias::job::{BiasRequest, CounterfactualOptions};
    use crate::engine::{Command, Engine, Event, NoNotifier};
    use crate::eval::job::target::Target;
    use crate::eval::job::{EvalOptions, evaluate};
    use crate::model::generation::GenerationParams;
    use std::time::Duration;

    fn short() -> GenerationParams {
        GenerationParams {
            max_new_tokens: 16,
            ..GenerationParams::default()
        }
    }

    /// A project whose base model (the embedded tiny one) has evaluated `n` test records.
    fn evaluated_project(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
        let p = crate::test_support::discharge_project(dir, 40, (50.0, 0.0, 50.0));
        let options = EvalOptions {
            limit: Some(n),
            params: short(),
            ..EvalOptions::default()
        };
        evaluate(
            &p,
            &Target::Base,
            &options,
            None,
            &mut crate::job::Job::unstopped(&mut |_| {}),
        )
        .expect("evaluate");
        p.dir
    }

    fn request(dir: &std::path::Path, limit: usize) -> Command {
        Command::Bias(Box::new(BiasRequest {
            project_dir: dir.to_path_buf(),
            target: Target::Base,
            options: BiasOptions {
                min_size: 2,
                ..BiasOptions::default()
            },
            counterfactual: Some(CounterfactualOptions {
                limit,
                params: short(),
            }),
        }))
    }

    /// Events until the job ends; `on_progress` sees each progress event first.
    fn run_job(engine: &Engine, mut on_progress: impl FnMut(&Event)) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(e) = engine.recv_timeout(Duration::from_secs(60)) {
            if matches!(e, Event::Progress { .. }) {
                on_progress(&e);
            }
            let end = matches!(
                e,
                Event::Finished { .. } | Event::Failed { .. } | Event::Cancelled { .. }
            );
            events.push(e);
            if end {
                break;
            }
        }
        events
    }

    #[test]
    fn the_counterfactual_test_generates_again_and_writes_bias_json() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = evaluated_project(tmp.path(), 4);
        let engine = Engine::start(NoNotifier);
        assert!(engine.submit(request(&dir, 3)).is_some());
        let events = run_job(&engine, |_| {});
        let last_progress = events.iter().rev().find_map(|e| match e {
            Event::Progress {
                stage, done, total, ..
            } => Some((stage.clone(), *done, *total)),
            _ => None,
        });
        assert_eq!(last_progress, Some(("counterfactual test".into(), 3, 3)));
        let outcome = events
            .iter()
            .find_map(|e| match e {
                Event::BiasAudited { outcome, .. } => Some(outcome),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no report: {events:?}"));
        let cf = outcome.counterfactual.as_ref().expect("counterfactual");
        assert_eq!(cf.records, 3);
        let gender = cf.effects.iter().find(|e| e.kind == SwapKind::Gender);
        // Every sample discharge note says "woman"/"man" and "she"/"he", and a stated age.
        assert_eq!(gender.map(|e| e.records), Some(3));
        let age = cf.effects.iter().find(|e| e.kind == SwapKind::Age);
        assert_eq!(age.map(|e| e.records), Some(3));
        for e in &cf.effects {
            assert!((0.0..=1.0).contains(&e.changed) && (0.0..=1.0).contains(&e.output_similarity));
            assert!(e.metric_abs_shift >= e.metric_shift.abs() - 1e-12);
        }
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&outcome.written).expect("bias.json"))
                .expect("json");
        assert_eq!(written["counterfactual"]["records"], 3);
        assert_eq!(written["overall"]["n"], 4);
    }

    #[test]
    fn the_counterfactual_test_stops_when_cancelled() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = evaluated_project(tmp.path(), 8);
        let engine = Engine::start(NoNotifier);
        assert!(engine.submit(request(&dir, 40)).is_some());
        let events = run_job(&engine, |e| {
            if let Event::Progress { done: 1, .. } = e {
                engine.cancel();
            }
        });
        assert!(
            matches!(events.last(), Some(Event::Cancelled { .. })),
            "{events:?}"
        );
        assert!(
            !dir.join("base").join("bias.json").exists(),
            "nothing written"
        );
    }
}
