//! The JSON of `lablens serve`, in OpenAI's shapes: requests read field by field (so that an
//! error names the field and what it should be), responses and stream chunks built as OpenAI
//! writes them, and errors as `{"error": {"message", "type", "param", "code"}}`.

mod request;

pub use request::{
    ChatRequest, ClinicalRequest, CompletionRequest, Sampling, parse_chat, parse_clinical,
    parse_completion,
};

use serde_json::{Value, json};

/// A request refused, with the HTTP status and OpenAI's error object.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: u16,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `server_error`, ...
    pub kind: &'static str,
    pub code: &'static str,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, code: &'static str, message: String) -> Self {
        ApiError {
            status,
            kind,
            code,
            param: None,
            message,
        }
    }

    /// A 400 about field `param`.
    pub fn field(param: &str, code: &'static str, message: String) -> Self {
        ApiError {
            param: Some(param.to_string()),
            ..ApiError::new(400, "invalid_request_error", code, message)
        }
    }

    pub fn server(message: String) -> Self {
        ApiError::new(500, "server_error", "server_error", message)
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// Why a generation ended, as OpenAI names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its answer, or a stop string came.
    Stop,
    /// `max_tokens` or the model's context ran out first.
    Length,
}

impl Finish {
    pub fn name(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// Tokens of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

impl Usage {
    pub fn to_json(self) -> Value {
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        })
    }
}

/// The parts of a response that every chunk of a stream repeats.
#[derive(Debug, Clone)]
pub struct Header {
    pub id: String,
    pub created: u64,
    pub model: String,
}

pub fn chat_completion(h: &Header, text: &str, finish: Finish, usage: Usage) -> Value {
    json!({
        "id": h.id,
        "object": "chat.completion",
        "created": h.created,
        "model": h.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": null,
            "finish_reason": finish.name(),
        }],
        "usage": usage.to_json(),
    })
}

/// A `chat.completion.chunk`: `delta` is `{"role"}` first, then `{"content"}`, then `{}` with
/// the finish reason.
pub fn chat_chunk(h: &Header, delta: Value, finish: Option<Finish>) -> Value {
    json!({
        "id": h.id,
        "object": "chat.completion.chunk",
        "created": h.created,
        "model": h.model,
        "choices": [{
            "index": 0,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish.map(Finish::name),
        }],
    })
}

pub fn text_completion(h: &Header, text: &str, finish: Option<Finish>) -> Value {
    json!({
        "id": h.id,
        "object": "text_completion",
        "created": h.created,
        "model": h.model,
        "choices": [{
            "index": 0,
            "text": text,
            "logprobs": null,
            "finish_reason": finish.map(Finish::name),
        }],
    })
}

/// The last chunk of a stream asked for with `stream_options.include_usage`.
pub fn usage_chunk(h: &Header, object: &str, usage: Usage) -> Value {
    json!({
        "id": h.id,
        "object": object,
        "created": h.created,
        "model": h.model,
        "choices": [],
        "usage": usage.to_json(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn responses_have_openais_shape() {
        let h = Header {
            id: "chatcmpl-1".into(),
            created: 5,
            model: "m".into(),
        };
        let usage = Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
        };
        let v = chat_completion(&h, "Hi", Finish::Length, usage);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], "Hi");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(v["usage"]["total_tokens"], 5);
        let c = chat_chunk(&h, json!({"content": "x"}), None);
        assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
        let e = ApiError::field("model", "model_not_found", "no".into()).body();
        assert_eq!(e["error"]["param"], "model");
        assert_eq!(e["error"]["type"], "invalid_request_error");
    }
}
