//! The server's HTTP over tiny_http: a body read with a bound, the API key checked, JSON and
//! text answers, and event streams written as chunks of their own (flushed after every event,
//! which tiny_http's buffered responses would not do).

mod peer;
mod routes;

pub use routes::handle;

use super::openai::ApiError;
use serde_json::Value;
use std::io::{Read, Write};
use tiny_http::{Header, Request, Response};

/// A whole answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, value: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
        }
    }

    pub fn error(e: &ApiError) -> Reply {
        Reply::json(e.status, &e.body())
    }

    pub fn text(content_type: &'static str, text: String) -> Reply {
        Reply {
            status: 200,
            content_type,
            body: text.into_bytes(),
        }
    }
}

/// A body length past which a request is never dropped: tiny_http 0.12 drains the unread rest
/// of a body, when its request is dropped, into one buffer of that size, so a request announcing
/// terabytes would end the process.
const UNDROPPABLE_BODY: usize = 1 << 30;

/// Sends `reply`; a client that has gone is no error of the server's.
pub fn send(request: Request, reply: Reply) {
    let mut response = Response::from_data(reply.body).with_status_code(reply.status);
    if let Ok(h) = Header::from_bytes("Content-Type", reply.content_type) {
        response.add_header(h);
    }
    if request.body_length().is_some_and(|n| n > UNDROPPABLE_BODY) {
        // Answered over the raw connection, which is then kept (a socket and a few buffers)
        // instead of dropped: the lesser harm.
        std::mem::forget(request.upgrade("close", response));
        return;
    }
    request.respond(response).ok();
}

/// The request's body, refused (413) past `limit` bytes without reading more than that.
pub fn read_body(request: &mut Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = |n: String| {
        ApiError::new(
            413,
            "invalid_request_error",
            "request_too_large",
            format!("the body is {n} bytes, over the server's limit of {limit} bytes"),
        )
    };
    if let Some(n) = request.body_length().filter(|n| *n > limit) {
        return Err(too_large(n.to_string()));
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| {
            ApiError::new(
                400,
                "invalid_request_error",
                "invalid_body",
                format!("the body could not be read: {e}"),
            )
        })?;
    if body.len() > limit {
        return Err(too_large(format!("more than {limit}")));
    }
    Ok(body)
}

/// Whether the request carries `Authorization: Bearer KEY` (any request when no key is set).
pub fn authorized(request: &Request, key: Option<&str>) -> bool {
    let Some(key) = key else {
        return true;
    };
    request
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Authorization"))
        .filter_map(|h| h.value.as_str().strip_prefix("Bearer "))
        .any(|given| same_secret(given.trim().as_bytes(), key.as_bytes()))
}

/// Compares in a time that depends on the lengths only.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `data: {json}` and the blank line that ends a server-sent event.
pub fn event(data: &str) -> String {
    format!("data: {data}\n\n")
}

/// `bytes` as one chunk of a chunked HTTP/1.1 body.
fn chunk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

/// A `text/event-stream` answer written event by event.
pub struct EventStream {
    writer: Box<dyn Write + Send>,
}

impl EventStream {
    /// Sends the head of a 200 event stream.
    pub fn start(request: Request) -> std::io::Result<EventStream> {
        let mut writer = request.into_writer();
        writer.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        )?;
        writer.flush()?;
        Ok(EventStream { writer })
    }

    /// Sends one event; an error means the client is gone.
    pub fn send(&mut self, data: &str) -> std::io::Result<()> {
        self.writer.write_all(&chunk(event(data).as_bytes()))?;
        self.writer.flush()
    }

    /// Sends `data: [DONE]` and ends the body.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.send("[DONE]")?;
        self.writer.write_all(b"0\r\n\r\n")?;
        self.writer.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_framed_as_sse_in_http_chunks() {
        assert_eq!(event("{\"a\":1}"), "data: {\"a\":1}\n\n");
        assert_eq!(chunk(b"data: x\n\n"), b"9\r\ndata: x\n\n\r\n");
        assert_eq!(chunk(&[b'a'; 26])[..4], *b"1a\r\n");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"key-1", b"key-1"));
        assert!(!same_secret(b"key-1", b"key-2"));
        assert!(!same_secret(b"key", b"key-1"));
    }
}
