//! Providers behind one trait. An adapter turns our task into the provider's wire format and
//! its answers back into ours; adding a provider is a new file here and a line in `build`.
pub mod actor;
pub mod breaker;
pub mod circuits;
pub mod cog;
pub mod config;
pub mod evolink;
pub mod fal;
pub mod fashn;
pub mod health;
pub mod pauses;
pub mod prediction;
pub mod replicate;
pub mod share;
pub mod signature;
pub mod simulator;
pub mod window;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

/// What we ask a provider to do.
#[derive(Debug, Clone)]
pub struct Task {
    pub generation_id: Uuid,
    /// URLs the provider can fetch the inputs from (signed URLs to our storage).
    pub person_image_url: String,
    pub garment_image_url: String,
    pub prompt: Option<String>,
    pub aspect_ratio: Option<String>,
    /// Where the provider calls back, with the per-generation token in it.
    pub webhook_url: String,
}

/// A task's state as the provider reports it (by callback or poll).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    Pending,
    /// `charge`: the actual cost in credits, when the provider reported what it used.
    Succeeded {
        output_url: String,
        charge: Option<i64>,
    },
    Failed {
        message: String,
    },
}

impl TaskStatus {
    pub fn succeeded(output_url: impl Into<String>) -> Self {
        TaskStatus::Succeeded {
            output_url: output_url.into(),
            charge: None,
        }
    }
}

/// How a provider call failed, which decides what the engine does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Worth trying again (network error, 5xx, timeout).
    #[error("retryable: {0}")]
    Retryable(String),
    /// Throttled; try again after the given time when the provider said so.
    #[error("rate limited")]
    RateLimited { retry_after: Option<Duration> },
    /// Refused without calling: the provider's circuit is open after repeated failures.
    #[error("circuit open: the provider keeps failing")]
    CircuitOpen { retry_after: Duration },
    /// Our account at the provider is at fault (credentials, credit): an operator must act.
    #[error("account problem: {0}")]
    Account(String),
    /// This task will never succeed (rejected input, unknown task).
    #[error("permanent: {0}")]
    Permanent(String),
}

#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    fn name(&self) -> &str;

    /// Submits the task; returns the provider's task id. Must be safe to call again for the
    /// same generation after a crash where the provider allows it.
    async fn submit(&self, task: &Task) -> Result<String, ProviderError>;

    /// Checks a callback's signature, for providers that sign them (`unix_now` for the
    /// timestamp's tolerance). The per-generation token in the URL is checked before, for all.
    fn verify_callback(
        &self,
        _headers: &reqwest::header::HeaderMap,
        _body: &[u8],
        _unix_now: i64,
    ) -> Result<(), signature::Rejected> {
        Ok(())
    }

    /// Parses a callback body (already authenticated by the caller) into the task's id and
    /// status.
    fn parse_callback(&self, body: &[u8]) -> Result<(String, TaskStatus), ProviderError>;

    /// Whether a callback only says "look now": the engine then acts on what a poll answers,
    /// not on what the callback claims (for providers whose callbacks are not signed).
    fn confirms_callbacks(&self) -> bool {
        false
    }

    async fn poll(&self, task_id: &str) -> Result<TaskStatus, ProviderError>;

    async fn cancel(&self, task_id: &str) -> Result<(), ProviderError>;
}

pub type Providers = HashMap<String, Arc<dyn Provider>>;

/// Maps an HTTP status from a provider to the error class the engine acts on; `retry_after`
/// is the response's `Retry-After`, when it had one.
pub fn classify_status(
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    body: &str,
) -> ProviderError {
    let detail = answer_detail(status, body);
    match status.as_u16() {
        429 => ProviderError::RateLimited { retry_after },
        401..=403 => ProviderError::Account(detail),
        408 | 500..=599 => ProviderError::Retryable(detail),
        _ => ProviderError::Permanent(detail),
    }
}

/// A provider's answer as the errors and the timeline quote it: the status and the start of
/// the body.
pub fn answer_detail(status: reqwest::StatusCode, body: &str) -> String {
    format!(
        "HTTP {status}: {}",
        body.chars().take(300).collect::<String>()
    )
}

/// The body of a successful answer; any other answer classified by its status.
pub async fn success_body(response: reqwest::Response) -> Result<String, ProviderError> {
    success_body_by(response, classify_status).await
}

/// As `success_body`, with the adapter's own `classify` (which reads the provider's error
/// bodies, then falls back on `classify_status`).
pub async fn success_body_by(
    response: reqwest::Response,
    classify: fn(reqwest::StatusCode, Option<Duration>, &str) -> ProviderError,
) -> Result<String, ProviderError> {
    let status = response.status();
    let wait = retry_after(response.headers());
    let body = bounded_text(response, MAX_ANSWER_BYTES).await?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(classify(status, wait, &body))
    }
}

/// The largest answer read from a provider's API: far above any real one (FASHN's inline
/// base64 outputs are a few MiB), so that a broken or hostile provider cannot fill our memory.
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// The answer's body as text (lossily), refused as retryable once it passes `limit` bytes.
pub async fn bounded_text(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<String, ProviderError> {
    let too_large = || ProviderError::Retryable(format!("an answer larger than {limit} bytes"));
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A cancel's answer: success, or `gone` (the task already ended: nothing left to stop).
pub async fn canceled(
    response: reqwest::Response,
    gone: reqwest::StatusCode,
) -> Result<(), ProviderError> {
    if response.status() == gone {
        return Ok(());
    }
    success_body(response).await.map(drop)
}

/// Parses a provider's JSON answer; one we cannot read is worth asking again.
pub fn parse_answer<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, ProviderError> {
    serde_json::from_str(body)
        .map_err(|error| ProviderError::Retryable(format!("unreadable answer: {error}")))
}

/// `base` with `segments` appended, each percent-encoded: an id a provider answered cannot
/// reach another path or add a query.
pub fn endpoint(base: &str, segments: &[&str]) -> Result<reqwest::Url, ProviderError> {
    let unusable = |why: String| ProviderError::Permanent(format!("base URL {base:?}: {why}"));
    let mut url = reqwest::Url::parse(base).map_err(|error| unusable(error.to_string()))?;
    url.path_segments_mut()
        .map_err(|()| unusable("it cannot have a path".into()))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// Network-level failures are always worth another try.
pub fn transport_error(error: reqwest::Error) -> ProviderError {
    ProviderError::Retryable(error.to_string())
}

/// The longest wait a provider may ask of us: beyond it we do not believe the number, and an
/// unbounded one would overflow the clocks it is added to.
pub const MAX_PROVIDER_WAIT: Duration = Duration::from_secs(3600);

/// `Retry-After` in seconds (the HTTP-date form is rare from APIs and read as absent).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    provider_wait(
        headers
            .get(reqwest::header::RETRY_AFTER)?
            .to_str()
            .ok()?
            .trim(),
    )
}

/// A wait in whole seconds as a provider writes it, at most `MAX_PROVIDER_WAIT` (a number too
/// large for a `u64` is one too).
pub fn provider_wait(seconds: &str) -> Option<Duration> {
    if seconds.is_empty() || !seconds.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let seconds = seconds.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(seconds).min(MAX_PROVIDER_WAIT))
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    use super::*;

    #[test]
    fn statuses_map_to_what_the_engine_does_next() {
        let wait = Some(Duration::from_secs(7));
        assert_eq!(
            classify_status(StatusCode::TOO_MANY_REQUESTS, wait, ""),
            ProviderError::RateLimited { retry_after: wait }
        );
        for (status, retryable) in [
            (500, true),
            (503, true),
            (408, true),
            (422, false),
            (404, false),
        ] {
            let error = classify_status(StatusCode::from_u16(status).unwrap(), None, "x");
            assert_eq!(
                matches!(error, ProviderError::Retryable(_)),
                retryable,
                "{status}"
            );
        }
        for status in [401, 402, 403] {
            let error = classify_status(StatusCode::from_u16(status).unwrap(), None, "x");
            assert!(matches!(error, ProviderError::Account(_)), "{status}");
        }
    }

    /// A local server answering every connection with `body` (chunked when `chunked`).
    fn answering(body: &'static str, chunked: bool) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let _ = stream.read(&mut [0; 4096]);
                let answer = if chunked {
                    format!(
                        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                        body.len()
                    )
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                };
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        url
    }

    #[tokio::test]
    async fn answers_past_the_limit_are_refused_whether_announced_or_not() {
        let http = reqwest::Client::new();
        for chunked in [false, true] {
            let url = answering("0123456789abcdef", chunked);
            let small = http.get(&url).send().await.unwrap();
            assert_eq!(bounded_text(small, 16).await.unwrap(), "0123456789abcdef");
            let large = http.get(&url).send().await.unwrap();
            assert!(
                matches!(
                    bounded_text(large, 15).await,
                    Err(ProviderError::Retryable(_))
                ),
                "chunked: {chunked}"
            );
        }
    }

    #[test]
    fn endpoints_encode_what_a_provider_answered() {
        let url = endpoint("https://api.example.com/", &["v1", "tasks", "../x?y=1#z"]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://api.example.com/v1/tasks/..%2Fx%3Fy=1%23z"
        );
        let prefixed = endpoint("http://127.0.0.1:9/proxy", &["v1", "run"]).unwrap();
        assert_eq!(prefixed.as_str(), "http://127.0.0.1:9/proxy/v1/run");
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 30 "));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(30)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn a_huge_retry_after_is_clamped_to_an_hour() {
        let mut headers = HeaderMap::new();
        for huge in ["10000000000000", "99999999999999999999999999"] {
            headers.insert(RETRY_AFTER, HeaderValue::from_str(huge).unwrap());
            assert_eq!(retry_after(&headers), Some(MAX_PROVIDER_WAIT), "{huge}");
        }
        assert_eq!(provider_wait("-5"), None);
    }
}
