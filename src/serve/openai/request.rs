//! The requests of the OpenAI routes and the clinical ones, read field by field so that an
//! error names the field and what it should be.

use super::ApiError;
use crate::model::tokenizer::chat::ChatMessage;
use serde_json::{Map, Value};

/// The sampling fields shared by chat and text completions.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub max_tokens: Option<usize>,
    /// OpenAI's default is 1; 0 is greedy.
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub seed: u64,
    pub stop: Vec<String>,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the usage.
    pub include_usage: bool,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    pub sampling: Sampling,
    /// `lablens.safety_source`: the source text to check the answer against.
    pub safety_source: Option<String>,
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: String,
    pub sampling: Sampling,
}

/// `POST /v1/lablens/{simplify,soap,qa}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClinicalRequest {
    pub model: Option<String>,
    pub text: String,
    pub max_tokens: Option<usize>,
    /// Greedy unless given, as evaluation decodes.
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub seed: u64,
}

/// Fields OpenAI defines that are taken and need no work here (`n` only as 1, the penalties only
/// as 0, `logprobs` only off).
const ACCEPTED: &[&str] = &[
    "n",
    "user",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "stream_options",
];
const SAMPLING: &[&str] = &[
    "model",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "seed",
    "stop",
    "stream",
];
const MAX_STOP_STRINGS: usize = 4;

/// A JSON object body, refused when it is not one or has a field outside `known`.
fn object(body: &[u8], known: &[&[&str]]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            400,
            "invalid_request_error",
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(map) = value else {
        return Err(ApiError::new(
            400,
            "invalid_request_error",
            "invalid_json",
            "the body must be a JSON object".into(),
        ));
    };
    if let Some(key) = map
        .keys()
        .find(|k| !known.iter().any(|list| list.contains(&k.as_str())))
    {
        return Err(ApiError::field(
            key,
            "unknown_parameter",
            format!("unrecognized request field {key:?}"),
        ));
    }
    Ok(map)
}

fn wrong_type(key: &str, expected: &str) -> ApiError {
    ApiError::field(key, "invalid_type", format!("{key}: expected {expected}"))
}

/// A field that is absent or null is `None`.
fn get<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    get(map, key)
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| wrong_type(key, "a string"))
        })
        .transpose()
}

fn number(map: &Map<String, Value>, key: &str, range: [f64; 2]) -> Result<Option<f64>, ApiError> {
    let Some(v) = get(map, key) else {
        return Ok(None);
    };
    let x = v.as_f64().ok_or_else(|| wrong_type(key, "a number"))?;
    if !(range[0]..=range[1]).contains(&x) {
        return Err(ApiError::field(
            key,
            "invalid_value",
            format!("{key}: {x} is outside [{}, {}]", range[0], range[1]),
        ));
    }
    Ok(Some(x))
}

fn count(map: &Map<String, Value>, key: &str) -> Result<Option<u64>, ApiError> {
    get(map, key)
        .map(|v| {
            v.as_u64()
                .ok_or_else(|| wrong_type(key, "a whole number of at least 0"))
        })
        .transpose()
}

fn boolean(map: &Map<String, Value>, key: &str) -> Result<bool, ApiError> {
    get(map, key)
        .map(|v| v.as_bool().ok_or_else(|| wrong_type(key, "true or false")))
        .transpose()
        .map(|b| b.unwrap_or(false))
}

/// `max_completion_tokens`, else `max_tokens`; at least 1.
fn max_tokens(map: &Map<String, Value>) -> Result<Option<usize>, ApiError> {
    for key in ["max_completion_tokens", "max_tokens"] {
        if let Some(n) = count(map, key)? {
            if n == 0 {
                return Err(ApiError::field(
                    key,
                    "invalid_value",
                    format!("{key}: expected at least 1"),
                ));
            }
            return Ok(Some(usize::try_from(n).unwrap_or(usize::MAX)));
        }
    }
    Ok(None)
}

/// `stop`: a string or a list of up to four non-empty strings.
fn stop(map: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let list = match get(map, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| wrong_type("stop", "a string or a list of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(wrong_type("stop", "a string or a list of strings")),
    };
    if list.len() > MAX_STOP_STRINGS || list.iter().any(String::is_empty) {
        return Err(ApiError::field(
            "stop",
            "invalid_value",
            format!("stop: expected at most {MAX_STOP_STRINGS} non-empty strings"),
        ));
    }
    Ok(list)
}

/// Refuses what OpenAI defines but this server does not do: several choices, penalties,
/// log-probabilities.
fn unsupported(map: &Map<String, Value>) -> Result<(), ApiError> {
    if count(map, "n")?.is_some_and(|n| n != 1) {
        return Err(ApiError::field(
            "n",
            "invalid_value",
            "n: only 1 choice is generated".into(),
        ));
    }
    for key in ["presence_penalty", "frequency_penalty"] {
        if number(map, key, [-2.0, 2.0])?.is_some_and(|x| x != 0.0) {
            return Err(ApiError::field(
                key,
                "invalid_value",
                format!("{key}: only 0 is supported"),
            ));
        }
    }
    if boolean(map, "logprobs")? {
        return Err(ApiError::field(
            "logprobs",
            "invalid_value",
            "logprobs: not supported".into(),
        ));
    }
    string(map, "user")?;
    Ok(())
}

fn sampling(map: &Map<String, Value>) -> Result<Sampling, ApiError> {
    unsupported(map)?;
    let include_usage = match get(map, "stream_options") {
        None => false,
        Some(Value::Object(o)) => boolean(o, "include_usage")
            .map_err(|_| wrong_type("stream_options.include_usage", "true or false"))?,
        Some(_) => return Err(wrong_type("stream_options", "an object")),
    };
    Ok(Sampling {
        max_tokens: max_tokens(map)?,
        temperature: number(map, "temperature", [0.0, 2.0])?.unwrap_or(1.0),
        top_p: number(map, "top_p", [0.0, 1.0])?.filter(|p| *p < 1.0),
        seed: seed(map)?,
        stop: stop(map)?,
        stream: boolean(map, "stream")?,
        include_usage,
    })
}

fn seed(map: &Map<String, Value>) -> Result<u64, ApiError> {
    match get(map, "seed") {
        None => Ok(42),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_i64().map(|i| i as u64))
            .ok_or_else(|| wrong_type("seed", "a whole number")),
    }
}

/// A message's `content`: a string, or a list of `{"type": "text", "text"}` parts.
fn content(value: Option<&Value>, at: &str) -> Result<String, ApiError> {
    let key = format!("{at}.content");
    match value {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| {
                let text = p.get("text").and_then(Value::as_str);
                match (p.get("type").and_then(Value::as_str), text) {
                    (Some("text"), Some(t)) => Ok(t),
                    _ => Err(wrong_type(
                        &key,
                        "text parts ({\"type\": \"text\", \"text\"})",
                    )),
                }
            })
            .collect::<Result<String, _>>(),
        _ => Err(wrong_type(&key, "a string")),
    }
}

fn messages(map: &Map<String, Value>) -> Result<Vec<ChatMessage>, ApiError> {
    let Some(Value::Array(items)) = get(map, "messages") else {
        return Err(match get(map, "messages") {
            None => ApiError::field(
                "messages",
                "missing_required_parameter",
                "messages: required".into(),
            ),
            Some(_) => wrong_type("messages", "a list of messages"),
        });
    };
    if items.is_empty() {
        return Err(ApiError::field(
            "messages",
            "invalid_value",
            "messages: expected at least one message".into(),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let at = format!("messages[{i}]");
            let role = m
                .get("role")
                .and_then(Value::as_str)
                .ok_or_else(|| wrong_type(&format!("{at}.role"), "system, user or assistant"))?;
            let role = match role {
                "system" | "developer" => "system",
                "user" | "assistant" => role,
                other => {
                    return Err(ApiError::field(
                        &format!("{at}.role"),
                        "invalid_value",
                        format!("{at}.role: {other:?} is not system, user or assistant"),
                    ));
                }
            };
            Ok(ChatMessage::new(role, content(m.get("content"), &at)?))
        })
        .collect()
}

pub fn parse_chat(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let map = object(body, &[SAMPLING, ACCEPTED, &["messages", "lablens"]])?;
    let safety_source = match get(&map, "lablens") {
        None => None,
        Some(Value::Object(ext)) => {
            if let Some(key) = ext.keys().find(|k| *k != "safety_source") {
                return Err(ApiError::field(
                    &format!("lablens.{key}"),
                    "unknown_parameter",
                    format!("lablens.{key}: unrecognized; the extension takes safety_source"),
                ));
            }
            string(ext, "safety_source")
                .map_err(|_| wrong_type("lablens.safety_source", "a string"))?
        }
        Some(_) => return Err(wrong_type("lablens", "an object")),
    };
    Ok(ChatRequest {
        model: string(&map, "model")?,
        messages: messages(&map)?,
        sampling: sampling(&map)?,
        safety_source,
    })
}

pub fn parse_completion(body: &[u8]) -> Result<CompletionRequest, ApiError> {
    let map = object(body, &[SAMPLING, ACCEPTED, &["prompt"]])?;
    let prompt = match get(&map, "prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_string()
        }
        None => {
            return Err(ApiError::field(
                "prompt",
                "missing_required_parameter",
                "prompt: required".into(),
            ));
        }
        Some(_) => return Err(wrong_type("prompt", "a string")),
    };
    Ok(CompletionRequest {
        model: string(&map, "model")?,
        prompt,
        sampling: sampling(&map)?,
    })
}

pub fn parse_clinical(body: &[u8]) -> Result<ClinicalRequest, ApiError> {
    let map = object(
        body,
        &[&[
            "text",
            "model",
            "max_tokens",
            "max_completion_tokens",
            "temperature",
            "top_p",
            "seed",
        ]],
    )?;
    let text = string(&map, "text")?.ok_or_else(|| {
        ApiError::field(
            "text",
            "missing_required_parameter",
            "text: required".into(),
        )
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::field(
            "text",
            "invalid_value",
            "text: expected the note to work on, not an empty string".into(),
        ));
    }
    Ok(ClinicalRequest {
        model: string(&map, "model")?,
        text,
        max_tokens: max_tokens(&map)?,
        temperature: number(&map, "temperature", [0.0, 2.0])?.unwrap_or(0.0),
        top_p: number(&map, "top_p", [0.0, 1.0])?.filter(|p| *p < 1.0),
        seed: seed(&map)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_request_reads_every_field() {
        let r = parse_chat(
            br#"{"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                "max_completion_tokens": 5, "temperature": 0, "top_p": 0.9, "seed": 7,
                "stop": ["\n", "END"], "stream": true, "stream_options": {"include_usage": true},
                "lablens": {"safety_source": "note"}}"#,
        )
        .expect("valid");
        assert_eq!(r.model.as_deref(), Some("m"));
        assert_eq!(r.messages[1], ChatMessage::new("user", "Hi"));
        let s = &r.sampling;
        assert_eq!(
            (s.max_tokens, s.temperature, s.top_p, s.seed),
            (Some(5), 0.0, Some(0.9), 7)
        );
        assert_eq!(s.stop, ["\n", "END"]);
        assert!(s.stream && s.include_usage);
        assert_eq!(r.safety_source.as_deref(), Some("note"));
    }

    #[test]
    fn errors_name_the_field() {
        let err = |body: &str| parse_chat(body.as_bytes()).expect_err("refused");
        let e = err(r#"{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}"#);
        assert_eq!((e.status, e.code), (400, "invalid_type"));
        assert_eq!(e.param.as_deref(), Some("temperature"));
        assert!(e.message.contains("temperature"), "{}", e.message);
        let e = err(r#"{"messages": [{"role": "robot", "content": "x"}]}"#);
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        let e = err(r#"{"messages": [{"role": "user", "content": "x"}], "temprature": 1}"#);
        assert_eq!(
            (e.code, e.param.as_deref()),
            ("unknown_parameter", Some("temprature"))
        );
        assert_eq!(err(r#"{"model": "m"}"#).code, "missing_required_parameter");
        assert_eq!(err("{not json").code, "invalid_json");
        assert_eq!(err("[1]").code, "invalid_json");
        let e = err(r#"{"messages": [{"role": "user", "content": "x"}], "stop": [1]}"#);
        assert_eq!(e.param.as_deref(), Some("stop"));
        let e = err(r#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}"#);
        assert_eq!(e.code, "invalid_value");
        let e = err(r#"{"messages": [{"role": "user", "content": "x"}], "n": 2}"#);
        assert_eq!(e.param.as_deref(), Some("n"));
        let e = err(r#"{"messages": [{"role": "user", "content": "x"}], "lablens": {"x": 1}}"#);
        assert_eq!(e.param.as_deref(), Some("lablens.x"));
    }

    #[test]
    fn completions_and_clinical_requests() {
        let r = parse_completion(br#"{"prompt": ["Once"], "stop": "."}"#).expect("valid");
        assert_eq!((r.prompt.as_str(), r.sampling.temperature), ("Once", 1.0));
        assert_eq!(r.sampling.stop, ["."]);
        let c = parse_clinical(br#"{"text": "Note.", "max_tokens": 9}"#).expect("valid");
        assert_eq!((c.max_tokens, c.temperature), (Some(9), 0.0));
        let e = parse_clinical(br#"{"text": 3}"#).expect_err("refused");
        assert_eq!(e.param.as_deref(), Some("text"));
        let e = parse_clinical(br#"{"text": "x", "stream": true}"#).expect_err("refused");
        assert_eq!(e.code, "unknown_parameter");
    }
}
