//! The routes: each request checked for its key and method, then answered; a generation is
//! handed to the model worker and its text answered whole or streamed as it comes.

use super::peer::Peer;
use super::{EventStream, Reply, authorized, read_body, send};
use crate::data::record::Task;
use crate::model::generation::GenerationParams;
use crate::serve::openai::{
    self, ApiError, Finish, Header, Sampling, Usage, chat_chunk, chat_completion, text_completion,
    usage_chunk,
};
use crate::serve::openapi;
use crate::serve::prompt::PromptInput;
use crate::serve::safety::report;
use crate::serve::worker::{Event, Job};
use crate::serve::{Shared, Slot};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tiny_http::{Method, Request};

/// New tokens of a request that names no `max_tokens`.
const DEFAULT_MAX_TOKENS: usize = 256;

/// How often a request answered whole asks, while it waits, whether its client is still there.
const PEER_POLL: Duration = Duration::from_millis(100);

/// The status counted for a request whose client closed the connection before its answer (no
/// answer is sent; the number is the one proxies log for it).
const CLIENT_CLOSED: u16 = 499;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Chat,
    Completions,
    Clinical(Task),
    Models,
    Health,
    Metrics,
    OpenApi,
    Docs,
    Unknown,
}

impl Route {
    fn of(path: &str) -> Route {
        match path.trim_end_matches('/') {
            "/v1/chat/completions" => Route::Chat,
            "/v1/completions" => Route::Completions,
            "/v1/lablens/simplify" => Route::Clinical(Task::Discharge),
            "/v1/lablens/soap" => Route::Clinical(Task::Soap),
            "/v1/lablens/qa" => Route::Clinical(Task::Qa),
            "/v1/models" => Route::Models,
            "/health" => Route::Health,
            "/metrics" => Route::Metrics,
            "/openapi.json" => Route::OpenApi,
            "/docs" => Route::Docs,
            _ => Route::Unknown,
        }
    }

    /// The `endpoint` label of the metrics.
    fn name(self) -> &'static str {
        match self {
            Route::Chat => "chat_completions",
            Route::Completions => "completions",
            Route::Clinical(Task::Discharge) => "simplify",
            Route::Clinical(Task::Soap) => "soap",
            Route::Clinical(Task::Qa) => "qa",
            Route::Models => "models",
            Route::Health => "health",
            Route::Metrics => "metrics",
            Route::OpenApi => "openapi",
            Route::Docs => "docs",
            Route::Unknown => "other",
        }
    }

    fn method(self) -> Method {
        match self {
            Route::Chat | Route::Completions | Route::Clinical(_) => Method::Post,
            _ => Method::Get,
        }
    }
}

/// Answers `request` and counts it.
pub fn handle(shared: &Shared, request: Request) {
    let started = Instant::now();
    let _in_flight = shared.metrics.in_flight();
    let path = request
        .url()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    let route = Route::of(&path);
    let status = if !authorized(&request, shared.options.api_key.as_deref()) {
        let e = ApiError::new(
            401,
            "invalid_request_error",
            "invalid_api_key",
            "a valid API key is needed: send the header Authorization: Bearer KEY".into(),
        );
        fail(request, &e)
    } else if route == Route::Unknown {
        let e = ApiError::new(
            404,
            "invalid_request_error",
            "not_found",
            format!("no route {path}; GET /docs lists them"),
        );
        fail(request, &e)
    } else if *request.method() != route.method() {
        let e = ApiError::new(
            405,
            "invalid_request_error",
            "method_not_allowed",
            format!("{path} takes {}", route.method()),
        );
        fail(request, &e)
    } else {
        answer(shared, route, request)
    };
    shared
        .metrics
        .record(route.name(), status, started.elapsed());
}

fn fail(request: Request, e: &ApiError) -> u16 {
    send(request, Reply::error(e));
    e.status
}

fn reply(request: Request, reply: Reply) -> u16 {
    let status = reply.status;
    send(request, reply);
    status
}

fn answer(shared: &Shared, route: Route, request: Request) -> u16 {
    match route {
        Route::Health => match shared.queue() {
            Some(_) => reply(request, Reply::json(200, &json!({"status": "ready"}))),
            None => reply(request, Reply::json(503, &json!({"status": "loading"}))),
        },
        Route::Metrics => reply(
            request,
            Reply::text("text/plain; version=0.0.4", shared.metrics.render()),
        ),
        Route::OpenApi => reply(request, Reply::json(200, &openapi::document())),
        Route::Docs => reply(
            request,
            Reply::text(
                "text/html; charset=utf-8",
                openapi::page(&openapi::document()),
            ),
        ),
        Route::Models => {
            let data: Vec<Value> = shared
                .plan
                .models
                .iter()
                .map(|m| json!({"id": m.id, "object": "model", "created": m.created, "owned_by": "lablens"}))
                .collect();
            reply(
                request,
                Reply::json(200, &json!({"object": "list", "data": data})),
            )
        }
        Route::Chat | Route::Completions | Route::Clinical(_) => generation(shared, route, request),
        Route::Unknown => fail(
            request,
            &ApiError::new(404, "invalid_request_error", "not_found", "no route".into()),
        ),
    }
}

/// A generation request, whichever route it came by.
struct Call {
    route: Route,
    model: Option<String>,
    prompt: PromptInput,
    params: GenerationParams,
    stop: Vec<String>,
    stream: bool,
    include_usage: bool,
    /// The text the answer is checked against, for a safety report.
    safety_source: Option<String>,
}

fn params(
    max_tokens: Option<usize>,
    temperature: f64,
    top_p: Option<f64>,
    seed: u64,
) -> GenerationParams {
    GenerationParams {
        max_new_tokens: max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        temperature,
        top_k: None,
        top_p,
        repetition_penalty: 1.0,
        seed,
    }
}

impl Call {
    /// A chat or text completion.
    fn openai(route: Route, model: Option<String>, prompt: PromptInput, s: Sampling) -> Call {
        Call {
            route,
            model,
            prompt,
            params: params(s.max_tokens, s.temperature, s.top_p, s.seed),
            stop: s.stop,
            stream: s.stream,
            include_usage: s.include_usage,
            safety_source: None,
        }
    }
}

fn parse(route: Route, body: &[u8]) -> Result<Call, ApiError> {
    Ok(match route {
        Route::Chat => {
            let r = openai::parse_chat(body)?;
            Call {
                safety_source: r.safety_source,
                ..Call::openai(
                    route,
                    r.model,
                    PromptInput::Messages(r.messages),
                    r.sampling,
                )
            }
        }
        Route::Completions => {
            let r = openai::parse_completion(body)?;
            Call::openai(route, r.model, PromptInput::Text(r.prompt), r.sampling)
        }
        Route::Clinical(task) => {
            let r = openai::parse_clinical(body)?;
            Call {
                route,
                model: r.model,
                safety_source: Some(r.text.clone()),
                prompt: PromptInput::Task { task, text: r.text },
                params: params(r.max_tokens, r.temperature, r.top_p, r.seed),
                stop: Vec::new(),
                stream: false,
                include_usage: false,
            }
        }
        other => {
            return Err(ApiError::new(
                404,
                "invalid_request_error",
                "not_found",
                format!("{} generates nothing", other.name()),
            ));
        }
    })
}

/// Reads, checks and queues a generation, then answers it.
fn generation(shared: &Shared, route: Route, mut request: Request) -> u16 {
    let body = match read_body(&mut request, shared.options.max_body_bytes) {
        Ok(body) => body,
        Err(e) => return fail(request, &e),
    };
    let Some(queue) = shared.queue() else {
        let e = ApiError::new(
            503,
            "server_error",
            "model_loading",
            "the model is still loading; GET /health answers 200 once it is ready".into(),
        );
        return fail(request, &e);
    };
    let call = match parse(route, &body) {
        Ok(call) => call,
        Err(e) => return fail(request, &e),
    };
    let model = match shared.plan.find(call.model.as_deref()) {
        Ok(m) => m,
        Err(e) => return fail(request, &e),
    };
    let Some(slot) = shared.slot() else {
        let e = ApiError::new(
            429,
            "requests",
            "rate_limit_exceeded",
            format!(
                "{} requests are being generated, the server's --max-concurrency; try again shortly",
                shared.options.max_concurrency
            ),
        );
        return fail(request, &e);
    };
    let (events, answers) = crossbeam_channel::unbounded();
    let job = Job {
        model,
        prompt: call.prompt.clone(),
        params: call.params.clone(),
        stop: call.stop.clone(),
        events,
    };
    shared.metrics.queued();
    if queue.send(job).is_err() {
        shared.metrics.dequeued(1);
        return fail(
            request,
            &ApiError::server("the model worker has stopped".into()),
        );
    }
    let queued = Instant::now();
    // A client that goes while its request waits or generates drops `answers`: the worker
    // then drops the request at its next token and gives its place to the others.
    let peer = request
        .remote_addr()
        .map(|addr| Peer::new(*addr, PEER_POLL));
    let (prompt_tokens, input_cut) = match next(&answers, peer.as_ref()) {
        Some(Ok(Event::Started {
            prompt_tokens,
            input_cut,
        })) => (prompt_tokens, input_cut),
        Some(Ok(Event::Failed(e))) => return fail(request, &e),
        None => return CLIENT_CLOSED,
        _ => {
            return fail(
                request,
                &ApiError::server("the model worker has stopped".into()),
            );
        }
    };
    let header = Header {
        id: shared.next_id(if route == Route::Chat {
            "chatcmpl"
        } else {
            "cmpl"
        }),
        created: crate::serve::now(),
        model: shared.plan.models[model].id.clone(),
    };
    if call.stream {
        stream(request, &call, &header, (prompt_tokens, slot), &answers);
        return 200;
    }
    let done = collect(&answers, peer.as_ref());
    // Given back before the answer goes out: a client that sends its next request as soon as
    // it has this answer finds the place free.
    drop(slot);
    let (text, finish, completion_tokens) = match done {
        Some(Ok(done)) => done,
        Some(Err(e)) => return fail(request, &e),
        None => return CLIENT_CLOSED,
    };
    let usage = Usage {
        prompt_tokens,
        completion_tokens,
    };
    let safety = call.safety_source.as_deref().map(|source| {
        let task = match route {
            Route::Clinical(task) => Some(task),
            _ => None,
        };
        serde_json::to_value(report(source, &text, task)).unwrap_or_default()
    });
    let mut body = match route {
        Route::Chat => chat_completion(&header, &text, finish, usage),
        Route::Completions => {
            let mut v = text_completion(&header, &text, Some(finish));
            v["usage"] = usage.to_json();
            v
        }
        _ => json!({
            "output": text,
            "model": header.model,
            "inference_time_ms": queued.elapsed().as_secs_f64() * 1000.0,
            "input_cut": input_cut,
            "finish_reason": finish.name(),
            "usage": usage.to_json(),
        }),
    };
    if let Some(safety) = safety {
        let key = if route == Route::Chat {
            "lablens_safety"
        } else {
            "safety"
        };
        body[key] = safety;
    }
    reply(request, Reply::json(200, &body))
}

/// The next event for a request, `Err` when the worker has stopped; `None` once its client
/// has closed the connection (asked every [`PEER_POLL`], whether events come or not).
fn next(answers: &Receiver<Event>, peer: Option<&Peer>) -> Option<Result<Event, ()>> {
    loop {
        if peer.is_some_and(Peer::gone) {
            return None;
        }
        match answers.recv_timeout(PEER_POLL) {
            Ok(event) => return Some(Ok(event)),
            Err(RecvTimeoutError::Disconnected) => return Some(Err(())),
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// The whole text of a request, its finish and its token count; `None` once its client has
/// closed the connection.
fn collect(
    answers: &Receiver<Event>,
    peer: Option<&Peer>,
) -> Option<Result<(String, Finish, usize), ApiError>> {
    let mut text = String::new();
    loop {
        match next(answers, peer)? {
            Ok(Event::Text(t)) => text.push_str(&t),
            Ok(Event::Done {
                finish,
                completion_tokens,
            }) => return Some(Ok((text, finish, completion_tokens))),
            Ok(Event::Failed(e)) => return Some(Err(e)),
            Ok(Event::Started { .. }) => {}
            Err(()) => {
                return Some(Err(ApiError::server("the model worker has stopped".into())));
            }
        }
    }
}

/// Streams the request's chunks as they come, then `[DONE]`; a client that goes away closes
/// `answers`, which stops its generation. The slot is given back before the last chunks.
fn stream(
    request: Request,
    call: &Call,
    h: &Header,
    (prompt_tokens, slot): (usize, Slot<'_>),
    answers: &Receiver<Event>,
) {
    let Ok(mut out) = EventStream::start(request) else {
        return;
    };
    let chat = call.route == Route::Chat;
    let chunk = |text: Option<&str>, finish: Option<Finish>| -> Value {
        match (chat, text) {
            (true, Some(t)) => chat_chunk(h, json!({"content": t}), finish),
            (true, None) => chat_chunk(h, json!({}), finish),
            (false, t) => text_completion(h, t.unwrap_or_default(), finish),
        }
    };
    if chat
        && out
            .send(&chat_chunk(h, json!({"role": "assistant", "content": ""}), None).to_string())
            .is_err()
    {
        return;
    }
    loop {
        let sent = match answers.recv() {
            Ok(Event::Text(t)) => out.send(&chunk(Some(&t), None).to_string()),
            Ok(Event::Done {
                finish,
                completion_tokens,
            }) => {
                drop(slot);
                let mut sent = out.send(&chunk(None, Some(finish)).to_string());
                if call.include_usage && sent.is_ok() {
                    let usage = Usage {
                        prompt_tokens,
                        completion_tokens,
                    };
                    let object = if chat {
                        "chat.completion.chunk"
                    } else {
                        "text_completion"
                    };
                    sent = out.send(&usage_chunk(h, object, usage).to_string());
                }
                if sent.is_ok() {
                    out.finish().ok();
                }
                return;
            }
            Ok(Event::Started { .. }) => Ok(()),
            Ok(Event::Failed(e)) => {
                if out.send(&e.body().to_string()).is_ok() {
                    out.finish().ok();
                }
                return;
            }
            Err(_) => return,
        };
        if sent.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiny_http::TestRequest;

    fn request(method: Method, path: &str, key: Option<&str>, body: &'static str) -> Request {
        let mut r = TestRequest::new()
            .with_method(method)
            .with_path(path)
            .with_body(body);
        if let Some(key) = key {
            let value = format!("Bearer {key}");
            r = r.with_header(
                tiny_http::Header::from_bytes("Authorization", value).expect("a header"),
            );
        }
        r.into()
    }

    #[test]
    fn while_the_model_loads_generations_and_health_answer_503() {
        let shared = crate::serve::loading(4, Some("k"));
        let chat = r#"{"messages": [{"role": "user", "content": "hi"}]}"#;
        let calls = [
            (Method::Get, "/health", Some("k"), ""),
            (Method::Post, "/v1/chat/completions", Some("k"), chat),
            (
                Method::Post,
                "/v1/lablens/simplify",
                Some("k"),
                r#"{"text": "x"}"#,
            ),
            (Method::Get, "/v1/models", Some("k"), ""),
            (Method::Get, "/health", None, ""),
            (Method::Get, "/health", Some("other"), ""),
            (Method::Get, "/v1/chat/completions", Some("k"), ""),
            (Method::Get, "/v2/nothing", Some("k"), ""),
            (
                Method::Post,
                "/v1/completions",
                Some("k"),
                "x".repeat(2048).leak(),
            ),
        ];
        for (method, path, key, body) in calls {
            handle(&shared, request(method, path, key, body));
        }
        let text = shared.metrics.render();
        for series in [
            "{endpoint=\"health\",status=\"503\"} 1",
            "{endpoint=\"chat_completions\",status=\"503\"} 1",
            "{endpoint=\"simplify\",status=\"503\"} 1",
            "{endpoint=\"models\",status=\"200\"} 1",
            "{endpoint=\"health\",status=\"401\"} 2",
            "{endpoint=\"chat_completions\",status=\"405\"} 1",
            "{endpoint=\"other\",status=\"404\"} 1",
            "{endpoint=\"completions\",status=\"413\"} 1",
        ] {
            assert!(
                text.contains(&format!("lablens_requests_total{series}")),
                "{series} in\n{text}"
            );
        }
    }
}
