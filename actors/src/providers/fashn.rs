//! FASHN (<https://docs.fashn.ai>), a dedicated virtual try-on API.
//!
//! - Submit: `POST /v1/run?webhook_url=…` with `Authorization: Bearer` and `{"model_name":
//!   "tryon-v1.6", "inputs": {"model_image", "garment_image", …}}`; the answer is `{id, error:
//!   null}`.
//! - Status: `GET /v1/status/{id}`: `starting | in_queue | processing | completed | failed`,
//!   with `output: [urls]` once completed and `error: {name, message}` once failed. A status we
//!   do not know yet counts as still running (logged).
//! - Callbacks carry the status object and are not signed: the per-generation token in the URL
//!   is all that authenticates them, so the engine takes one only as a prompt to read the
//!   status (`confirms_callbacks`). FASHN retries a webhook up to 5 times in about 5 minutes;
//!   an identical redelivery is stored once, and any later one finds the generation moved on.
//! - API errors are `{error: "Name", message}`. `429 OutOfCredits` is our account's problem,
//!   not throttling (waiting does not refill credits); other 429s (`RateLimitExceeded`,
//!   `ConcurrencyLimitExceeded`) throttle; the rest as `classify_status`.
//! - FASHN documents no cancel endpoint: a task we gave up on finishes there.
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::config::ProviderConfig;
use super::{
    Provider, ProviderError, Task, TaskStatus, answer_detail, classify_status, endpoint,
    parse_answer, success_body_by, transport_error,
};

const DEFAULT_BASE_URL: &str = "https://api.fashn.ai";
const DEFAULT_MODEL: &str = "tryon-v1.6";
/// `tryon-v1.6`'s input names; it takes no prompt (set `prompt_input` for a model that does).
const DEFAULT_INPUTS: [&str; 3] = ["model_image", "garment_image", "prompt"];

pub struct FashnProvider {
    name: String,
    base_url: String,
    model: String,
    token: String,
    config: ProviderConfig,
    http: reqwest::Client,
}

/// `/v1/run`'s answer.
#[derive(Debug, Deserialize)]
struct Started {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    error: Value,
}

/// A prediction as `/v1/status/{id}` and the callbacks show it.
#[derive(Debug, Deserialize)]
struct FashnStatus {
    id: String,
    status: String,
    #[serde(default)]
    output: Option<Vec<String>>,
    #[serde(default)]
    error: Value,
}

impl FashnStatus {
    fn into_status(self, provider: &str) -> (String, TaskStatus) {
        let status = match self.status.as_str() {
            "starting" | "in_queue" | "processing" => TaskStatus::Pending,
            "completed" => match self.output.unwrap_or_default().into_iter().next() {
                Some(url) => TaskStatus::succeeded(url),
                None => TaskStatus::Failed {
                    message: "completed without an output".into(),
                },
            },
            "failed" => TaskStatus::Failed {
                message: failure(&self.error),
            },
            other => {
                tracing::warn!(%provider, prediction = %self.id, status = other, "unknown FASHN status; treating it as still running");
                TaskStatus::Pending
            }
        };
        (self.id, status)
    }
}

/// `Name: message` from an `error` object (or string).
fn failure(error: &Value) -> String {
    let field = |name: &str| error.get(name).and_then(Value::as_str);
    match (field("name"), field("message"), error) {
        (Some(name), Some(message), _) => format!("{name}: {message}"),
        (Some(text), None, _) | (None, Some(text), _) => text.to_owned(),
        (None, None, Value::String(text)) => text.clone(),
        (None, None, Value::Null) => "the prediction failed".to_owned(),
        (None, None, other) => other.to_string(),
    }
}

/// As `classify_status`, except that `429 OutOfCredits` is an account problem.
fn classify(status: reqwest::StatusCode, wait: Option<Duration>, body: &str) -> ProviderError {
    let name = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|answer| answer.get("error")?.as_str().map(str::to_owned));
    if name.as_deref() == Some("OutOfCredits") {
        return ProviderError::Account(answer_detail(status, body));
    }
    classify_status(status, wait, body)
}

impl FashnProvider {
    pub fn new(name: &str, config: &ProviderConfig, http: reqwest::Client) -> Result<Self, String> {
        Ok(Self {
            name: name.to_owned(),
            base_url: config.base_url_or(DEFAULT_BASE_URL),
            model: config.model.clone().unwrap_or_else(|| DEFAULT_MODEL.into()),
            token: config
                .required(name, "api_token", &config.api_token)?
                .to_owned(),
            config: config.clone(),
            http,
        })
    }

    /// `{model_name, inputs}`. The request's prompt goes along only when `prompt_input` names
    /// the field for it: `tryon-v1.6` has none.
    fn body(&self, task: &Task) -> Value {
        let task = match self.config.prompt_input {
            Some(_) => task.clone(),
            None => Task {
                prompt: None,
                ..task.clone()
            },
        };
        json!({
            "model_name": self.model,
            "inputs": self.config.model_input(DEFAULT_INPUTS, &task),
        })
    }
}

#[async_trait::async_trait]
impl Provider for FashnProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn submit(&self, task: &Task) -> Result<String, ProviderError> {
        let response = self
            .http
            .post(endpoint(&self.base_url, &["v1", "run"])?)
            .query(&[("webhook_url", task.webhook_url.as_str())])
            .bearer_auth(&self.token)
            .json(&self.body(task))
            .send()
            .await
            .map_err(transport_error)?;
        let started: Started = parse_answer(&success_body_by(response, classify).await?)?;
        match started.id {
            Some(id) if started.error.is_null() => Ok(id),
            _ => Err(ProviderError::Permanent(format!(
                "FASHN refused the prediction: {}",
                failure(&started.error)
            ))),
        }
    }

    fn parse_callback(&self, body: &[u8]) -> Result<(String, TaskStatus), ProviderError> {
        let status: FashnStatus = serde_json::from_slice(body)
            .map_err(|error| ProviderError::Permanent(format!("malformed callback: {error}")))?;
        Ok(status.into_status(&self.name))
    }

    /// Callbacks are unsigned: they only prompt a read of the status.
    fn confirms_callbacks(&self) -> bool {
        true
    }

    async fn poll(&self, task_id: &str) -> Result<TaskStatus, ProviderError> {
        let response = self
            .http
            .get(endpoint(&self.base_url, &["v1", "status", task_id])?)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(transport_error)?;
        let status: FashnStatus = parse_answer(&success_body_by(response, classify).await?)?;
        Ok(status.into_status(&self.name).1)
    }

    async fn cancel(&self, _task_id: &str) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::*;

    fn config() -> ProviderConfig {
        let mut config = ProviderConfig::costing(2);
        config.api_token = Some("fa-test".into());
        config
    }

    fn provider() -> FashnProvider {
        FashnProvider::new("fashn", &config(), reqwest::Client::new()).unwrap()
    }

    fn parse(body: &str) -> Result<(String, TaskStatus), ProviderError> {
        provider().parse_callback(body.as_bytes())
    }

    #[test]
    fn statuses_map_to_ours_and_unknown_ones_keep_waiting() {
        for status in [
            "starting",
            "in_queue",
            "processing",
            "quantum_superposition",
        ] {
            let body = format!(r#"{{"id":"p1","status":"{status}","output":null,"error":null}}"#);
            assert_eq!(parse(&body).unwrap(), ("p1".into(), TaskStatus::Pending));
        }
        let done = r#"{"id":"p1","status":"completed","output":["https://cdn.fashn.ai/p1/output_0.png"],"error":null}"#;
        assert_eq!(
            parse(done).unwrap().1,
            TaskStatus::succeeded("https://cdn.fashn.ai/p1/output_0.png")
        );
        let failed = r#"{"id":"p1","status":"failed","error":{"name":"ImageLoadError","message":"Error loading model image"}}"#;
        assert_eq!(
            parse(failed).unwrap().1,
            TaskStatus::Failed {
                message: "ImageLoadError: Error loading model image".into()
            }
        );
        let empty = r#"{"id":"p1","status":"completed","output":[]}"#;
        assert!(matches!(parse(empty).unwrap().1, TaskStatus::Failed { .. }));
        for body in [
            "",
            "{",
            r#"{"status":"completed"}"#,
            r#"{"id":7,"status":"x"}"#,
        ] {
            assert!(
                matches!(parse(body), Err(ProviderError::Permanent(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn out_of_credits_is_an_account_problem_and_other_429s_throttle() {
        let out = r#"{"error":"OutOfCredits","message":"You have used up all your API credits"}"#;
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, None, out),
            ProviderError::Account(_)
        ));
        let wait = Some(Duration::from_secs(3));
        for name in ["RateLimitExceeded", "ConcurrencyLimitExceeded"] {
            let body = format!(r#"{{"error":"{name}","message":"slow down"}}"#);
            assert_eq!(
                classify(StatusCode::TOO_MANY_REQUESTS, wait, &body),
                ProviderError::RateLimited { retry_after: wait }
            );
        }
        let unauthorized =
            r#"{"error":"UnauthorizedAccess","message":"Unauthorized: Invalid token"}"#;
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, None, unauthorized),
            ProviderError::Account(_)
        ));
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, None, r#"{"error":"BadRequest"}"#),
            ProviderError::Permanent(_)
        ));
        assert!(matches!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, None, "{}"),
            ProviderError::Retryable(_)
        ));
    }

    #[test]
    fn the_request_names_the_model_and_sends_no_prompt_unless_told_where() {
        let task = Task {
            generation_id: uuid::Uuid::nil(),
            person_image_url: "https://a.example/person".into(),
            garment_image_url: "https://a.example/garment".into(),
            prompt: Some("a red linen shirt".into()),
            aspect_ratio: None,
            webhook_url: "https://a.example/webhooks/fashn/x?token=t".into(),
        };
        let mut config = config();
        config.extra_input.insert("category".into(), json!("tops"));
        let provider = FashnProvider::new("fashn", &config, reqwest::Client::new()).unwrap();
        assert_eq!(
            provider.body(&task),
            json!({"model_name": "tryon-v1.6", "inputs": {
                "model_image": "https://a.example/person",
                "garment_image": "https://a.example/garment",
                "category": "tops",
            }})
        );
        config.model = Some("tryon-max".into());
        config.prompt_input = Some("prompt".into());
        let provider = FashnProvider::new("fashn", &config, reqwest::Client::new()).unwrap();
        let body = provider.body(&task);
        assert_eq!(body["model_name"], "tryon-max");
        assert_eq!(body["inputs"]["prompt"], "a red linen shirt");
    }

    #[test]
    fn a_token_is_required() {
        let error =
            FashnProvider::new("fashn", &ProviderConfig::costing(1), reqwest::Client::new())
                .err()
                .unwrap();
        assert!(error.contains("providers.fashn.api_token"), "{error}");
        assert_eq!(provider().base_url, "https://api.fashn.ai");
    }
}
