//! Bad model input through the CLI: a missing path, a truncated or random GGUF, a corrupt
//! safetensors file, an unsupported architecture, a config that does not fit the weights, a chat
//! template that does not compile, a missing tokenizer, sampling settings that cannot sample, a data
//! file with nothing usable. Each exits 2 with a message naming the file (or the option) and the
//! problem, and none panics.

mod common;
use common::lablens;

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `--raw` scoring file, so every failure below comes from the model.
fn raw_data(dir: &Path) -> PathBuf {
    let path = dir.join("some.jsonl");
    std::fs::write(
        &path,
        "{\"id\": \"a\", \"text\": \"Take one tablet daily.\"}\n",
    )
    .expect("write data");
    path
}

/// Runs lablens and checks it exits 2, without a panic, with every one of `needles` on stderr.
fn assert_bad_input(args: &[&str], needles: &[&str]) {
    let out = lablens(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr lacks {needle:?}: {stderr}"
        );
    }
}

fn score(model: &Path, data: &Path, needles: &[&str]) {
    let model = model.to_str().expect("utf8 path");
    let data = data.to_str().expect("utf8 path");
    assert_bad_input(
        &["score", "--model", model, "--raw", "--data", data],
        needles,
    );
}

/// A copy of the tiny Llama fixture folder that a test may break.
fn tiny_folder_copy(dir: &Path) -> PathBuf {
    let from = root().join("tests/fixtures/tiny-llama-hf");
    let to = dir.join("tiny-llama-hf");
    std::fs::create_dir(&to).expect("mkdir");
    for entry in std::fs::read_dir(&from).expect("read fixture folder") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
    to
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
    edit(&mut value);
    std::fs::write(path, value.to_string()).expect("write");
}

#[test]
fn missing_model_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = raw_data(dir.path());
    score(
        &dir.path().join("nowhere.gguf"),
        &data,
        &["nowhere.gguf", "no such file"],
    );
}

#[test]
fn truncated_gguf() {
    let smollm = root().join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        smollm.exists(),
        "{} is missing: run scripts/fetch-smollm2.sh first",
        smollm.display()
    );
    let bytes = std::fs::read(&smollm).expect("read gguf");
    let dir = tempfile::tempdir().expect("tempdir");
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..1 << 20]).expect("write truncated copy");
    score(&cut, &raw_data(dir.path()), &["cut.gguf", "GGUF"]);
}

#[test]
fn random_bytes_named_gguf() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("noise.gguf");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 56) as u8
        })
        .collect();
    std::fs::write(&path, noise).expect("write noise");
    score(
        &path,
        &raw_data(dir.path()),
        &["noise.gguf", "not a readable GGUF file"],
    );
}

#[test]
fn corrupt_safetensors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = tiny_folder_copy(dir.path());
    let weights = folder.join("model.safetensors");
    let bytes = std::fs::read(&weights).expect("read weights");
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).expect("truncate weights");
    score(
        &folder,
        &raw_data(dir.path()),
        &["model.safetensors", "not a readable safetensors file"],
    );
}

#[test]
fn unsupported_architecture() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = tiny_folder_copy(dir.path());
    edit_json(&folder.join("config.json"), |c| {
        c["architectures"] = serde_json::json!(["GPT2LMHeadModel"]);
    });
    score(
        &folder,
        &raw_data(dir.path()),
        &["config.json", "unsupported architecture", "GPT2LMHeadModel"],
    );
}

#[test]
fn config_that_does_not_fit_the_weights() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = tiny_folder_copy(dir.path());
    edit_json(&folder.join("config.json"), |c| {
        c["hidden_size"] = serde_json::json!(96);
    });
    score(
        &folder,
        &raw_data(dir.path()),
        &[
            "tiny-llama-hf",
            "model.embed_tokens.weight",
            "does not match",
        ],
    );
}

#[test]
fn chat_template_with_a_syntax_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = tiny_folder_copy(dir.path());
    edit_json(&folder.join("tokenizer_config.json"), |c| {
        c["chat_template"] =
            serde_json::json!("{% for message in messages %}{{ message['content'] }}");
    });
    assert_bad_input(
        &[
            "generate",
            "--model",
            folder.to_str().expect("utf8 path"),
            "--prompt",
            "What is a stent?",
            "--max-new-tokens",
            "2",
        ],
        &["tokenizer_config.json", "chat template", "does not compile"],
    );
}

#[test]
fn missing_tokenizer_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = tiny_folder_copy(dir.path());
    std::fs::remove_file(folder.join("tokenizer.json")).expect("remove tokenizer");
    let model = folder.to_str().expect("utf8 path");
    assert_bad_input(
        &["tokenize", "--model", model, "--text", "hello"],
        &["tokenizer.json"],
    );
}

/// A GPU asked for where there is none: a build without the `cuda` feature says how to get one;
/// a CUDA build on a machine without the GPU says the device could not be opened.
#[test]
fn cuda_requested_where_there_is_none() {
    let needles: &[&str] = if cfg!(feature = "cuda") {
        &["--device cuda:7", "could not be opened"]
    } else {
        &[
            "--device cuda:7",
            "no CUDA support",
            "scripts/build-cuda.sh",
        ]
    };
    assert_bad_input(
        &[
            "generate", "--model", "tiny", "--prompt", "x", "--device", "cuda:7",
        ],
        needles,
    );
}

#[test]
fn unknown_device_and_precision_are_named() {
    assert_bad_input(
        &[
            "generate", "--model", "tiny", "--prompt", "x", "--device", "gpu",
        ],
        &["--device", "expected auto, cpu or cuda:N", "\"gpu\""],
    );
    assert_bad_input(
        &[
            "generate", "--model", "tiny", "--prompt", "x", "--dtype", "fp8",
        ],
        &["--dtype", "expected auto, f32 or bf16", "\"fp8\""],
    );
}

/// Sampling settings that cannot sample are refused before the model loads, naming the option.
#[test]
fn impossible_sampling_settings_exit_2_naming_the_option() {
    for (option, value, needle) in [
        ("--temperature", "NaN", "temperature NaN"),
        ("--temperature", "-1", "temperature -1"),
        ("--top-p", "2", "top-p 2"),
        ("--top-p", "0", "top-p 0"),
        ("--top-k", "0", "top-k 0"),
        ("--repetition-penalty", "0", "repetition penalty 0"),
    ] {
        let setting = format!("{option}={value}");
        assert_bad_input(
            &["generate", "--model", "tiny", "--prompt", "Hi", &setting],
            &[needle],
        );
    }
}

/// `generate --data` says which lines it skipped, and a file with nothing usable (here UTF-16,
/// which reads as no record) exits 2 instead of generating nothing.
#[test]
fn generate_reports_skipped_lines_and_refuses_a_file_with_none_usable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("mixed.jsonl");
    std::fs::write(
        &data,
        "{\"id\": \"a\", \"input\": \"Take one tablet daily.\", \"target\": \"ok\"}\n{\"id\": \"b\"}\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_lablens"))
        .args(["generate", "--model", "tiny", "--max-new-tokens", "2"])
        .arg("--data")
        .arg(&data)
        .output()
        .expect("run lablens");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("mixed.jsonl:2: field \"input\""),
        "{stderr}"
    );

    let utf16 = dir.path().join("utf16.jsonl");
    let text = "{\"id\": \"a\", \"input\": \"x\", \"target\": \"y\"}\n";
    let bytes: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    std::fs::write(&utf16, bytes).expect("write");
    let path = utf16.to_str().expect("utf8 path");
    assert_bad_input(
        &["generate", "--model", "tiny", "--data", path],
        &["utf16.jsonl", "no usable records"],
    );
}

/// A prompt longer than the model's context loses the end of its input, says so, and is
/// generated after.
#[test]
fn a_prompt_longer_than_the_context_is_trimmed_not_refused() {
    let long = "The patient was admitted with chest pain and treated. ".repeat(400);
    let out = lablens(&[
        "generate",
        "--model",
        "tiny",
        "--prompt",
        &long,
        "--max-new-tokens",
        "3",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("prompt: the input lost its end to leave room for --max-new-tokens 3"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["outputs"][0]["input_cut"], true);
    assert!(
        v["outputs"][0]["ids"]
            .as_array()
            .is_some_and(|ids| !ids.is_empty())
    );
}
