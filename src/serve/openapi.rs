//! The OpenAPI 3 description of the server (`GET /openapi.json`) and the page that shows it
//! (`GET /docs`): plain HTML made from the same document, readable without any network.

use serde_json::{Value, json};
use std::fmt::Write;

fn error_responses() -> Value {
    let error = json!({"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    json!({
        "400": error, "401": error, "404": error, "413": error, "429": error, "503": error,
    })
}

fn post(summary: &str, request: &str, response: &str, streams: bool) -> Value {
    let mut content = json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{response}")}}});
    if streams {
        content["text/event-stream"] = json!({"schema": {"type": "string", "description": "With stream: true, `data: {chunk}` events, then `data: [DONE]`"}});
    }
    let mut responses = error_responses();
    responses["200"] = json!({"description": "The answer", "content": content});
    json!({"post": {
        "summary": summary,
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{request}")}}}},
        "responses": responses,
    }})
}

fn get(summary: &str, content_type: &str, schema: Value) -> Value {
    let mut responses = error_responses();
    responses["200"] =
        json!({"description": summary, "content": {content_type: {"schema": schema}}});
    json!({"get": {"summary": summary, "responses": responses}})
}

fn sampling_properties() -> Value {
    json!({
        "model": {"type": "string", "description": "A served model id (GET /v1/models); default: the adapter, else the base model"},
        "max_tokens": {"type": "integer", "minimum": 1},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": 1},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "seed": {"type": "integer"},
        "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}]},
        "stream": {"type": "boolean", "default": false},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "n": {"type": "integer", "enum": [1]},
        "user": {"type": "string"},
    })
}

fn schemas() -> Value {
    let usage = json!({"type": "object", "properties": {
        "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}}});
    let finish = json!({"type": "string", "enum": ["stop", "length"]});
    let mut chat = sampling_properties();
    chat["messages"] = json!({"type": "array", "minItems": 1, "items": {"type": "object", "required": ["role", "content"], "properties": {
        "role": {"type": "string", "enum": ["system", "user", "assistant"]},
        "content": {"type": "string"}}}});
    chat["lablens"] = json!({"type": "object", "properties": {"safety_source": {"type": "string",
        "description": "The source note: the response gets `lablens_safety`, the answer checked against it"}}});
    let mut completion = sampling_properties();
    completion["prompt"] = json!({"type": "string"});
    json!({
        "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
            "message": {"type": "string"}, "type": {"type": "string"},
            "param": {"type": "string", "nullable": true}, "code": {"type": "string"}}}}},
        "Usage": usage,
        "ChatCompletionRequest": {"type": "object", "required": ["messages"], "properties": chat, "additionalProperties": false},
        "ChatCompletion": {"type": "object", "properties": {
            "id": {"type": "string"}, "object": {"type": "string", "enum": ["chat.completion"]},
            "created": {"type": "integer"}, "model": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "object", "properties": {
                "index": {"type": "integer"},
                "message": {"type": "object", "properties": {"role": {"type": "string"}, "content": {"type": "string"}}},
                "finish_reason": finish}}},
            "usage": {"$ref": "#/components/schemas/Usage"},
            "lablens_safety": {"$ref": "#/components/schemas/SafetyReport"}}},
        "CompletionRequest": {"type": "object", "required": ["prompt"], "properties": completion, "additionalProperties": false},
        "TextCompletion": {"type": "object", "properties": {
            "id": {"type": "string"}, "object": {"type": "string", "enum": ["text_completion"]},
            "created": {"type": "integer"}, "model": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "object", "properties": {
                "index": {"type": "integer"}, "text": {"type": "string"}, "finish_reason": finish}}},
            "usage": {"$ref": "#/components/schemas/Usage"}}},
        "ModelList": {"type": "object", "properties": {"object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "object": {"type": "string", "enum": ["model"]},
                "created": {"type": "integer"}, "owned_by": {"type": "string"}}}}}},
        "ClinicalRequest": {"type": "object", "required": ["text"], "additionalProperties": false, "properties": {
            "text": {"type": "string", "description": "The discharge summary, dialogue or exam question"},
            "model": {"type": "string"}, "max_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": 0},
            "top_p": {"type": "number"}, "seed": {"type": "integer"}}},
        "ClinicalResponse": {"type": "object", "properties": {
            "output": {"type": "string"}, "model": {"type": "string"},
            "inference_time_ms": {"type": "number"}, "input_cut": {"type": "boolean"},
            "finish_reason": finish,
            "usage": {"$ref": "#/components/schemas/Usage"},
            "safety": {"$ref": "#/components/schemas/SafetyReport"}}},
        "SafetyReport": {"type": "object", "properties": {
            "meds": {"type": "object", "description": "Medications hallucinated (not in the source), omitted and mismatched (dose, unit, route, frequency)",
                "properties": {"hallucinated": {"type": "array", "items": {"type": "object"}},
                    "omitted": {"type": "array", "items": {"type": "object"}},
                    "mismatched": {"type": "array", "items": {"type": "object"}}}},
            "flags": {"type": "array", "items": {"type": "object", "properties": {
                "kind": {"type": "string", "enum": ["interaction", "max_dose", "emergency"]},
                "message": {"type": "string"}, "start": {"type": "integer", "nullable": true}, "end": {"type": "integer", "nullable": true}}}},
            "fkgl": {"type": "number", "nullable": true, "description": "Flesch-Kincaid grade of the answer"},
            "fre": {"type": "number", "nullable": true}, "smog": {"type": "number", "nullable": true}}},
    })
}

/// The OpenAPI 3.0 document of every route.
pub fn document() -> Value {
    let clinical = |what: &str| post(what, "ClinicalRequest", "ClinicalResponse", false);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Lab Lens server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "OpenAI-compatible chat and text completions over a Lab Lens model and its LoRA adapter, and clinical endpoints that return a safety report. With --api-key, every request needs `Authorization: Bearer KEY`.",
        },
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/chat/completions": post("A chat completion (stream: true for server-sent events)", "ChatCompletionRequest", "ChatCompletion", true),
            "/v1/completions": post("A text completion of a raw prompt", "CompletionRequest", "TextCompletion", true),
            "/v1/models": get("The served models: the base model and each adapter", "application/json", json!({"$ref": "#/components/schemas/ModelList"})),
            "/v1/lablens/simplify": clinical("A discharge summary explained to the patient, with its safety report"),
            "/v1/lablens/soap": clinical("A doctor-patient dialogue as a SOAP note, with its safety report"),
            "/v1/lablens/qa": clinical("A medical exam question answered, with its safety report"),
            "/health": get("{\"status\": \"ready\"} once the model is loaded (503 while it loads)", "application/json", json!({"type": "object", "properties": {"status": {"type": "string"}}})),
            "/metrics": get("Counters in the Prometheus text format", "text/plain", json!({"type": "string"})),
            "/openapi.json": get("This document", "application/json", json!({"type": "object"})),
            "/docs": get("This document as a page", "text/html", json!({"type": "string"})),
        },
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The schema a `$ref` names, from the document's components.
fn referenced<'a>(doc: &'a Value, schema: &'a Value) -> (&'a str, &'a Value) {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap_or(r);
            (name, &doc["components"]["schemas"][name])
        }
        None => ("", schema),
    }
}

/// `document` as a self-contained HTML page: each route with its summary and the schemas of its
/// request and answer.
pub fn page(doc: &Value) -> String {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Lab Lens server API</title>\
         <style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}\
         pre{background:#f4f4f4;padding:.6em;overflow:auto}h2{border-top:1px solid #ccc;padding-top:.6em}\
         code.m{font-weight:bold;color:#06c}</style></head><body>",
    );
    let info = &doc["info"];
    write!(
        html,
        "<h1>{} {}</h1><p>{}</p><p>The same description as JSON: <a href=\"/openapi.json\">/openapi.json</a>.</p>",
        escape(info["title"].as_str().unwrap_or_default()),
        escape(info["version"].as_str().unwrap_or_default()),
        escape(info["description"].as_str().unwrap_or_default()),
    )
    .ok();
    let pretty = |v: &Value| escape(&serde_json::to_string_pretty(v).unwrap_or_default());
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            write!(
                html,
                "<h2><code class=\"m\">{}</code> <code>{}</code></h2><p>{}</p>",
                method.to_uppercase(),
                escape(path),
                escape(op["summary"].as_str().unwrap_or_default())
            )
            .ok();
            if let Some(schema) = op.pointer("/requestBody/content/application~1json/schema") {
                let (name, s) = referenced(doc, schema);
                write!(html, "<h3>Request: {name}</h3><pre>{}</pre>", pretty(s)).ok();
            }
            let ok = &op["responses"]["200"]["content"];
            for (kind, body) in ok.as_object().into_iter().flatten() {
                let (name, s) = referenced(doc, &body["schema"]);
                write!(html, "<h3>200 {kind} {name}</h3><pre>{}</pre>", pretty(s)).ok();
            }
        }
    }
    let schemas = &doc["components"]["schemas"];
    write!(
        html,
        "<h2>Errors</h2><p>Every error is HTTP 400, 401, 404, 413, 429, 500 or 503 with:</p><pre>{}</pre>",
        pretty(&schemas["Error"])
    )
    .ok();
    write!(
        html,
        "<h2>SafetyReport</h2><pre>{}</pre></body></html>",
        pretty(&schemas["SafetyReport"])
    )
    .ok();
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves_and_the_page_lists_every_route() {
        let doc = document();
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"").skip(1) {
            let name = r.split('"').next().unwrap_or_default();
            let name = name.rsplit('/').next().unwrap_or_default();
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
        let page = page(&doc);
        for path in doc["paths"].as_object().expect("paths").keys() {
            assert!(page.contains(&format!("<code>{path}</code>")), "{path}");
        }
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}
