//! A small client of MLflow's REST API (`/api/2.0/mlflow/...` and the proxied artifact routes of
//! `mlflow server --serve-artifacts`): JSON in, JSON out, and an error that names the server
//! when it cannot be reached and MLflow's `error_code` and message when it refuses.

use serde_json::Value;
use std::time::Duration;

/// Why talking to the tracking server did not work.
#[derive(Debug, thiserror::Error)]
pub enum MlflowError {
    /// Input the user can fix: a tracking URI that is not `http://HOST:PORT`, a run that does
    /// not exist, a file that cannot be read.
    #[error("{0}")]
    Usage(String),
    /// No answer: the server is down, the port closed, the host unknown.
    #[error(
        "cannot reach the MLflow tracking server at {uri}: {detail}; is it running? (start one \
         with `mlflow server --host 127.0.0.1 --port 5000`)"
    )]
    Unreachable { uri: String, detail: String },
    /// The server answered with an error status.
    #[error("the MLflow tracking server at {uri} refused {method} {route}: HTTP {status}{}", describe(.error_code, .message))]
    Refused {
        uri: String,
        method: &'static str,
        route: String,
        status: u16,
        error_code: Option<String>,
        message: String,
    },
    /// An answer that is not what the API documents.
    #[error("the MLflow tracking server at {uri} answered {route} with {detail}")]
    Response {
        uri: String,
        route: String,
        detail: String,
    },
}

fn describe(code: &Option<String>, message: &str) -> String {
    match (code, message.is_empty()) {
        (Some(code), _) => format!(" {code}: {message}"),
        (None, true) => String::new(),
        (None, false) => format!(": {message}"),
    }
}

impl MlflowError {
    /// Whether the user can fix it (the CLI exits 2 for these, 1 for a server failure).
    pub fn is_usage(&self) -> bool {
        matches!(self, MlflowError::Usage(_))
    }

    /// MLflow's error code, when the server gave one (`RESOURCE_DOES_NOT_EXIST`).
    pub fn error_code(&self) -> Option<&str> {
        match self {
            MlflowError::Refused { error_code, .. } => error_code.as_deref(),
            _ => None,
        }
    }
}

/// A tracking server, by its base URI.
pub struct MlflowClient {
    uri: String,
    agent: ureq::Agent,
}

/// Requests wait this long for the server (an artifact upload included).
const TIMEOUT: Duration = Duration::from_secs(120);

impl MlflowClient {
    /// A client of the server at `uri` (`http://HOST:PORT`, a path prefix allowed); refuses a URI
    /// this client cannot speak to.
    pub fn new(uri: &str) -> Result<MlflowClient, MlflowError> {
        let trimmed = uri.trim().trim_end_matches('/');
        let rest = trimmed.strip_prefix("http://").ok_or_else(|| {
            MlflowError::Usage(format!(
                "--tracking-uri: {uri:?} is not an http:// address of an MLflow tracking server \
                 (like http://127.0.0.1:5000){}",
                if trimmed.starts_with("https://") {
                    "; https is not supported: put the server behind plain http on a trusted \
                     network, or tunnel it"
                } else {
                    ""
                }
            ))
        })?;
        let host = rest.split('/').next().unwrap_or("");
        let port_ok = host
            .rsplit_once(':')
            .is_none_or(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if host.is_empty() || !port_ok || host.contains(['@', ' ', '?', '#']) {
            return Err(MlflowError::Usage(format!(
                "--tracking-uri: {uri:?} does not name a host and port (like http://127.0.0.1:5000)"
            )));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .build()
            .into();
        Ok(MlflowClient {
            uri: trimmed.to_string(),
            agent,
        })
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// POST `route` (under `/api/2.0/mlflow/`) with a JSON body.
    pub fn post(&self, route: &str, body: &Value) -> Result<Value, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{route}", self.uri);
        let sent = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .send(body.to_string());
        self.answer("POST", route, sent)
    }

    /// GET `route` (under `/api/2.0/mlflow/`) with query parameters.
    pub fn get(&self, route: &str, query: &[(&str, &str)]) -> Result<Value, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{route}", self.uri);
        let request = query
            .iter()
            .fold(self.agent.get(&url), |r, (k, v)| r.query(*k, *v));
        self.answer("GET", route, request.call())
    }

    /// DELETE `route` (under `/api/2.0/mlflow/`) with a JSON body, as MLflow's handlers read it.
    pub fn delete(&self, route: &str, body: &Value) -> Result<Value, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{route}", self.uri);
        let sent = self
            .agent
            .delete(&url)
            .force_send_body()
            .header("Content-Type", "application/json")
            .send(body.to_string());
        self.answer("DELETE", route, sent)
    }

    /// Uploads `bytes` to `path` under the proxied artifact store
    /// (`/api/2.0/mlflow-artifacts/artifacts/<path>`).
    pub fn put_artifact(&self, path: &str, bytes: &[u8]) -> Result<(), MlflowError> {
        let route = format!("mlflow-artifacts/artifacts/{path}");
        let url = format!("{}/api/2.0/{route}", self.uri);
        let sent = self
            .agent
            .put(&url)
            .header("Content-Type", "application/octet-stream")
            .send(bytes);
        self.answer("PUT", &route, sent).map(|_| ())
    }

    fn answer(
        &self,
        method: &'static str,
        route: &str,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, MlflowError> {
        let mut response = sent.map_err(|e| self.transport(route, e))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| self.transport(route, e))?;
        let body: Option<Value> = serde_json::from_str(&text).ok();
        if !(200..300).contains(&status) {
            let field = |k: &str| {
                body.as_ref()
                    .and_then(|b| b.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            let message = field("message").unwrap_or_else(|| {
                let mut t: String = text.trim().chars().take(300).collect();
                if t.len() < text.trim().len() {
                    t.push('…');
                }
                t
            });
            return Err(MlflowError::Refused {
                uri: self.uri.clone(),
                method,
                route: route.to_string(),
                status,
                error_code: field("error_code"),
                message,
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        body.ok_or_else(|| MlflowError::Response {
            uri: self.uri.clone(),
            route: route.to_string(),
            detail: format!(
                "something that is not JSON: {:?}",
                text.chars().take(200).collect::<String>()
            ),
        })
    }

    fn transport(&self, route: &str, e: ureq::Error) -> MlflowError {
        match e {
            ureq::Error::Io(_)
            | ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::Timeout(_) => MlflowError::Unreachable {
                uri: self.uri.clone(),
                detail: e.to_string(),
            },
            other => MlflowError::Response {
                uri: self.uri.clone(),
                route: route.to_string(),
                detail: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_addresses_with_a_host_are_taken() {
        assert!(MlflowClient::new("http://127.0.0.1:5000/").is_ok());
        assert!(MlflowClient::new("http://mlflow.lan").is_ok());
        for bad in [
            "127.0.0.1:5000",
            "https://x:5000",
            "http://",
            "http://h:0",
            "http://h:99999",
        ] {
            let e = MlflowClient::new(bad).err().expect(bad);
            assert!(
                e.is_usage() && e.to_string().contains("--tracking-uri"),
                "{e}"
            );
        }
    }
}
