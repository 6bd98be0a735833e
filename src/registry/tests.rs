use super::aliases::{ALIASES_FILE, HISTORY_FILE, aliased_version, read_state};
use super::gates::{Outcome, check_gates, check_settings, evaluate, metric};
use super::promote::{Promotion, Refused, promote, rollback};
use super::version::{VERSION_FILE, read_version, verify_files};
use super::*;
use crate::eval::{ExampleInput, corpus, score_example};
use crate::project::gates::{Gate, RegistrySettings};
use crate::project::{OpenProject, PROJECT_FILE};
use crate::train::config::TrainConfig;
use serde_json::json;
use sha2::{Digest, Sha256};

/// A project in `dir` with `gates` (RON text of the list).
fn project(dir: &Path, gates: &str) -> OpenProject {
    std::fs::write(
        dir.join(PROJECT_FILE),
        format!("(name: \"p\", task: discharge, gates: {gates})"),
    )
    .expect("project");
    OpenProject::open(dir).expect("open")
}

/// A finished, evaluated run `id` in the files the trainer and `lablens eval` write: its
/// predictions are `outputs` against the same references.
fn run(project: &OpenProject, id: &str, outputs: &[&str]) {
    let dir = project.dir.join("runs").join(id);
    std::fs::create_dir_all(dir.join("adapter")).expect("mkdir");
    let config = ron::ser::to_string(&TrainConfig::default()).expect("ron");
    std::fs::write(dir.join("config.ron"), config).expect("config");
    std::fs::write(dir.join("adapter/adapter_config.json"), "{\"r\": 8}").expect("config");
    let weights = format!("weights of {id}");
    std::fs::write(dir.join("adapter/adapter_model.safetensors"), &weights).expect("weights");
    let mut lines = String::new();
    let mut scores = Vec::new();
    for (i, out) in outputs.iter().enumerate() {
        let reference = format!("Take aspirin daily and rest at home, record {i}.");
        let score = score_example(&ExampleInput {
            prediction: out,
            reference: &reference,
            source: Some("Aspirin 81 mg daily."),
            task: Some(crate::data::record::Task::Discharge),
        });
        let line = json!({"id": format!("r{i}"), "input": "Aspirin 81 mg daily.",
            "reference": reference, "prediction": out, "task": "discharge", "gender": "F",
            "age": 40, "ethnicity": null, "input_cut": false, "output_cut": false,
            "metrics": score.metrics});
        lines.push_str(&format!("{line}\n"));
        scores.push(score);
    }
    std::fs::write(dir.join("predictions.jsonl"), lines).expect("predictions");
    let sha: String = Sha256::digest(weights.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let eval = json!({"run": id, "split": "test", "n": outputs.len(), "task": "discharge",
        "corpus": corpus(&scores, None).expect("corpus"), "model": {"source": "tiny",
        "sha256": null}, "adapter_sha256": sha, "data_sha256": "abc"});
    std::fs::write(dir.join("eval.json"), eval.to_string()).expect("eval");
}

const GOOD: &str = "Take aspirin daily and rest at home";
const POOR: &str = "Rest";

fn gate(metric: &str, compare: &str, threshold: f64, lower_bound: bool) -> Gate {
    Gate {
        metric: metric.into(),
        compare: compare.into(),
        threshold,
        lower_bound,
    }
}

#[test]
fn gates_compare_the_value_or_the_pessimistic_end_and_unmeasured_ones_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(dir.path(), "[]");
    run(&p, "a", &[GOOD, POOR, GOOD, GOOD, POOR, GOOD]);
    let model = RegisteredModel::new(&p.dir, "m").expect("name");
    let record = register(&p, &model, "a", None).expect("add").record;
    let rouge = record
        .measure(metric("rouge1").expect("rouge1"))
        .expect("measured");
    let [low, high] = rouge.interval.expect("interval");
    assert!(low < rouge.value && rouge.value < high, "{rouge:?}");
    let file = p.dir.join(PROJECT_FILE);
    let gates = check_gates(
        &file,
        &[
            gate("rouge1", ">=", low + (rouge.value - low) / 2.0, false),
            gate("rouge1", ">=", low + (rouge.value - low) / 2.0, true),
            gate("rouge1", "<", high - (high - rouge.value) / 2.0, true),
            gate("fkgl", "<=", 100.0, true),
            gate("accuracy", ">=", 0.5, false),
            gate("bias.flagged_slices", "<=", 0.0, false),
        ],
    )
    .expect("gates");
    let results = evaluate(&gates, |m| record.measure(m));
    let outcomes: Vec<Outcome> = results.iter().map(|r| r.outcome).collect();
    use Outcome::*;
    assert_eq!(outcomes, [Pass, Fail, Fail, Pass, NotMeasured, NotMeasured]);
    assert_eq!(results[1].compared, Some(low));
    assert_eq!(results[2].compared, Some(high));
    assert!(
        results[1].describe().contains("fail"),
        "{}",
        results[1].describe()
    );
    assert!(results[4].describe().contains("not measured"));
}

#[test]
fn bad_gates_and_settings_are_refused_naming_project_ron_and_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(PROJECT_FILE);
    let refused = |g: Gate| {
        check_gates(&file, &[gate("bleu", ">", 10.0, false), g])
            .expect_err("refused")
            .to_string()
    };
    for (g, field, words) in [
        (
            gate("rouge3", ">=", 0.3, false),
            "gates[1].metric",
            "rouge3",
        ),
        (gate("rouge1", "=>", 0.3, false), "gates[1].compare", "=>"),
        (
            gate("rouge1", ">=", f64::NAN, false),
            "gates[1].threshold",
            "NaN",
        ),
        (
            gate("rouge1", ">=", 1.5, false),
            "gates[1].threshold",
            "between 0 and 1",
        ),
        (
            gate("meds.hallucinated_per_example", "<=", -0.1, false),
            "gates[1].threshold",
            "never negative",
        ),
        (
            gate("bias.flagged_slices", "<=", 0.0, true),
            "gates[1].lower_bound",
            "no interval",
        ),
    ] {
        let text = refused(g);
        assert!(text.contains("project.ron"), "{text}");
        assert!(text.contains(&format!("\"{field}\"")), "{text}");
        assert!(text.contains(words), "{text}");
    }
    let settings = |primary: &str, drop: f64| RegistrySettings {
        primary_metric: primary.into(),
        max_relative_drop: drop,
    };
    let text = check_settings(&file, &settings("macro_f1", 0.02))
        .expect_err("corpus only")
        .to_string();
    assert!(text.contains("registry.primary_metric"), "{text}");
    let text = check_settings(&file, &settings("rouge1", 2.0))
        .expect_err("drop")
        .to_string();
    assert!(text.contains("registry.max_relative_drop"), "{text}");
    // As project.ron holds them: a NaN threshold is read, then refused.
    let p = project(
        dir.path(),
        "[(metric: \"rougeL\", compare: \">=\", threshold: NaN)]",
    );
    let model = RegisteredModel::new(&p.dir, "m").expect("name");
    let err = register(&p, &model, "none", None).expect_err("bad gate");
    assert!(
        err.is_usage() && err.to_string().contains("gates[0].threshold"),
        "{err}"
    );
}

#[test]
fn versions_are_numbered_past_any_folder_there_and_a_killed_staging_is_cleared() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(
        dir.path(),
        "[(metric: \"rouge1\", compare: \">=\", threshold: 0.2)]",
    );
    run(&p, "a", &[GOOD, GOOD, POOR]);
    let model = RegisteredModel::new(&p.dir, "m").expect("name");
    let first = register(&p, &model, "a", Some("first")).expect("add");
    assert_eq!(first.record.version, 1);
    assert_eq!(first.record.gates.len(), 1);
    assert!(!first.record.bias.audited);
    std::fs::create_dir_all(model.version_dir(3)).expect("a folder made by hand");
    std::fs::create_dir_all(model.dir.join(".version.partial/adapter")).expect("staging");
    let second = register(&p, &model, "a", None).expect("add");
    assert_eq!(second.record.version, 4);
    assert!(!model.dir.join(".version.partial").exists());
    let back = read_version(&model, 1).expect("read");
    assert_eq!(back, first.record);
    assert!(verify_files(&model.version_dir(1), &back).is_empty());
    // The adapter of the version is the run's, byte for byte, with its hash.
    let weights = back
        .files
        .iter()
        .find(|f| f.path == "adapter/adapter_model.safetensors")
        .expect("weights");
    assert_eq!(weights.bytes, "weights of a".len() as u64);
    std::fs::write(model.version_dir(1).join("eval.json"), "{}").expect("tamper");
    let changed = verify_files(&model.version_dir(1), &back);
    assert!(
        changed.len() == 1 && changed[0].contains("eval.json"),
        "{changed:?}"
    );
}

#[test]
fn a_run_without_adapter_or_evaluation_says_what_to_run_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(dir.path(), "[]");
    run(&p, "a", &[GOOD]);
    let model = RegisteredModel::new(&p.dir, "m").expect("name");
    let run_dir = p.dir.join("runs/a");
    std::fs::remove_file(run_dir.join("eval.json")).expect("rm");
    let err = register(&p, &model, "a", None)
        .expect_err("no eval")
        .to_string();
    assert!(
        err.contains("lablens eval --project") && err.contains("--run a"),
        "{err}"
    );
    std::fs::remove_dir_all(run_dir.join("adapter")).expect("rm");
    let err = register(&p, &model, "a", None)
        .expect_err("no adapter")
        .to_string();
    assert!(err.contains("lablens train --project"), "{err}");
    assert!(model.versions().is_empty());
}

#[test]
fn a_torn_last_history_line_is_reported_and_dropped_by_the_next_move() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(dir.path(), "[]");
    run(&p, "a", &[GOOD, GOOD]);
    let model = RegisteredModel::new(&p.dir, "m").expect("name");
    register(&p, &model, "a", None).expect("add");
    register(&p, &model, "a", None).expect("add");
    let staging = |version| Promotion {
        version,
        alias: "staging",
        reason: Some("try it"),
        force: false,
    };
    promote(&p, &model, &staging(1)).expect("promote");
    let path = model.dir.join(HISTORY_FILE);
    let whole = std::fs::read_to_string(&path).expect("history");
    std::fs::write(
        &path,
        format!("{whole}{{\"alias\":\"staging\",\"from\":1,\"t"),
    )
    .expect("tear");
    let state = read_state(&model).expect("readable");
    assert_eq!(state.history.moves.len(), 1);
    assert_eq!(state.history.torn, Some(2));
    assert!(
        state.notes[0].contains("line 2 was cut short"),
        "{:?}",
        state.notes
    );
    assert_eq!(state.aliases["staging"], 1);
    promote(&p, &model, &staging(2)).expect("promote");
    let text = std::fs::read_to_string(&path).expect("history");
    assert_eq!(text.lines().count(), 2);
    let state = read_state(&model).expect("readable");
    assert!(state.history.torn.is_none() && state.notes.is_empty());
    assert_eq!(state.aliases["staging"], 2);
    // A nonsense line that is not the last is an error naming its line and field.
    let lines: Vec<&str> = text.lines().collect();
    let bad = lines[0].replace("\"to\":1", "\"to\":\"one\"");
    std::fs::write(&path, format!("{bad}\n{}\n", lines[1])).expect("edit");
    let err = read_state(&model).expect_err("nonsense").to_string();
    assert!(err.contains("history.jsonl: line 1, field \"to\""), "{err}");
}

#[test]
fn aliases_ron_edited_into_nonsense_is_reported_not_trusted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(dir.path(), "[]");
    run(&p, "a", &[GOOD, GOOD]);
    let model = RegisteredModel::new(&p.dir, "m").expect("name");
    register(&p, &model, "a", None).expect("add");
    register(&p, &model, "a", None).expect("add");
    let to = |version| Promotion {
        version,
        alias: "staging",
        reason: None,
        force: false,
    };
    promote(&p, &model, &to(2)).expect("promote");
    let path = model.dir.join(ALIASES_FILE);
    for (text, words) in [
        (
            "{\n  \"staging\": 7,\n}",
            "line 2, alias \"staging\": names version 7, which does not exist",
        ),
        (
            "{\n  \"staging\": 1,\n}",
            "names version 1, but history.jsonl line 1 moved it to version 2",
        ),
        (
            "{\"staging\": 2, \"prod\": 1}",
            "alias \"prod\": history.jsonl has no move of it",
        ),
        ("{\"staging\": two}", "aliases.ron: line 1, column"),
    ] {
        std::fs::write(&path, text).expect("edit");
        let err = read_state(&model).expect_err(text).to_string();
        assert!(err.contains(words), "{text}: {err}");
        assert!(listing(&model).is_err());
    }
    // The move recorded but not yet in aliases.ron (a kill between the two writes) stands.
    std::fs::write(&path, "{}").expect("edit");
    let state = read_state(&model).expect("readable");
    assert_eq!(state.aliases["staging"], 2);
    assert!(
        state.notes[0].contains("taken as done"),
        "{:?}",
        state.notes
    );
}

#[test]
fn production_moves_through_gates_and_the_degradation_check_and_rolls_back_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(
        dir.path(),
        "[(metric: \"rouge1\", compare: \">=\", threshold: 0.5)]",
    );
    let good: Vec<&str> = vec![GOOD; 12];
    let mut worse = good.clone();
    worse[..4].fill(POOR);
    run(&p, "good", &good);
    run(&p, "worse", &worse);
    run(&p, "poor", &[POOR; 12]);
    let model = RegisteredModel::new(&p.dir, "m").expect("name");
    for r in ["good", "worse", "poor", "good"] {
        register(&p, &model, r, None).expect("add");
    }
    let production = |version, force: bool| Promotion {
        version,
        alias: PRODUCTION,
        reason: force.then_some("release anyway"),
        force,
    };
    let first = promote(&p, &model, &production(1, false)).expect("promote");
    assert!(first.moved && first.degradation.is_none() && first.from.is_none());
    let gated = promote(&p, &model, &production(3, false)).expect("refused");
    assert_eq!((gated.moved, gated.refused), (false, Some(Refused::Gates)));
    let degraded = promote(&p, &model, &production(2, false)).expect("refused");
    assert_eq!(degraded.refused, Some(Refused::Degraded));
    let d = degraded.degradation.expect("compared");
    assert_eq!(d.paired, 12);
    let diff = d.difference.expect("difference");
    assert!(
        diff.value < 0.0 && diff.low <= diff.value && diff.value <= diff.high,
        "{d:?}"
    );
    assert!(d.relative_change.expect("relative") < -0.02);
    let same = promote(&p, &model, &production(4, false)).expect("same outputs");
    assert!(same.moved && !same.degradation.expect("compared").degraded);
    let err = promote(
        &p,
        &model,
        &Promotion {
            reason: None,
            ..production(2, true)
        },
    );
    assert!(err.expect_err("no reason").to_string().contains("--reason"));
    let forced = promote(&p, &model, &production(2, true)).expect("forced");
    assert!(forced.moved && forced.forced);
    let state = read_state(&model).expect("state");
    assert_eq!(state.aliases[PRODUCTION], 2);
    let last = &state.history.moves.last().expect("a move").1;
    assert_eq!(last.reason.as_deref(), Some("release anyway"));
    assert!(last.forced && last.degradation.as_ref().is_some_and(|d| d.degraded));
    // Production went 1 → 4 → 2: rollbacks walk back to 4, then 1, then there is nothing.
    let back = rollback(&p, &model, PRODUCTION, "v2 drops records").expect("rollback");
    assert_eq!((back.from, back.to, back.rollback), (Some(2), 4, true));
    assert_eq!(
        rollback(&p, &model, PRODUCTION, "again")
            .expect("rollback")
            .to,
        1
    );
    let err = rollback(&p, &model, PRODUCTION, "once more").expect_err("nothing");
    assert!(
        err.is_usage() && err.to_string().contains("nothing to roll back to"),
        "{err}"
    );
    assert_eq!(read_state(&model).expect("state").aliases[PRODUCTION], 1);
    // What `lablens serve --registry m@production` looks up: the version, verified.
    let (version, record) = aliased_version(&model, PRODUCTION).expect("aliased");
    assert_eq!(version, 1);
    assert!(record.training.is_object());
    let err = aliased_version(&model, "staging").expect_err("unknown alias");
    assert!(
        err.is_usage() && err.to_string().contains("its aliases: production"),
        "{err}"
    );
    let adapter = model.version_dir(1).join(crate::train::run::ADAPTER_DIR);
    let file = std::fs::read_dir(&adapter)
        .expect("adapter folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_file())
        .expect("an adapter file");
    let mut bytes = std::fs::read(&file).expect("read");
    bytes.push(0);
    std::fs::write(&file, bytes).expect("write");
    let err = aliased_version(&model, PRODUCTION).expect_err("a changed file");
    let name = file
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(err.is_usage() && err.to_string().contains(&name), "{err}");
}

#[test]
fn version_json_edited_into_nonsense_names_the_line_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project(dir.path(), "[]");
    run(&p, "a", &[GOOD]);
    let model = RegisteredModel::new(&p.dir, "m").expect("name");
    register(&p, &model, "a", None).expect("add");
    let path = model.version_dir(1).join(VERSION_FILE);
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, text.replace("\"run\": \"a\"", "\"run\": 5")).expect("edit");
    let err = read_version(&model, 1).expect_err("nonsense").to_string();
    assert!(
        err.contains("version.json: line") && err.contains("field \"run\""),
        "{err}"
    );
    std::fs::write(&path, text.replace("\"version\": 1", "\"version\": 2")).expect("edit");
    let err = read_version(&model, 1).expect_err("nonsense").to_string();
    assert!(err.contains("but the folder is version-1"), "{err}");
}
