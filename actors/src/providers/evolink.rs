//! EvoLink (<https://docs.evolink.ai>), an aggregator with one asynchronous task API for many
//! image models.
//!
//! - Submit: `POST /v1/images/generations` with `Authorization: Bearer`, the configured
//!   `model`, a `prompt` and, for image-to-image, `image_urls` (the person first, the garment
//!   second, as the prompt says), the aspect ratio as `size`, and `callback_url`. The answer
//!   is the task: `{id: "task-unified-…", status: "pending", …}`.
//! - Status: `GET /v1/tasks/{id}`: `pending | processing | completed | failed`; a completed
//!   task lists its files in `results`, a failed one says why in `error: {code, message}`. A
//!   status we do not know yet counts as still running (logged), so a new one at EvoLink makes
//!   the engine wait on, not release.
//! - Callbacks carry the same task object and are not signed: the per-generation token in the
//!   URL is all that authenticates them, so the engine takes one only as a prompt to read the
//!   task (`confirms_callbacks`), and acts on what that read answers.
//! - Errors are `{error: {code, message, type}}`. 402 (`insufficient_quota_error`), or an
//!   insufficient balance or quota under any status, is our account's problem at EvoLink; 429
//!   throttles (with `Retry-After` when sent); the rest as `classify_status`.
//! - EvoLink documents no cancel endpoint: a task we gave up on finishes there, and its late
//!   callback finds the generation terminal.
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::config::ProviderConfig;
use super::{
    Provider, ProviderError, Task, TaskStatus, answer_detail, classify_status, endpoint,
    parse_answer, success_body_by, transport_error,
};

const DEFAULT_BASE_URL: &str = "https://api.evolink.ai";
/// The instruction an image-to-image model gets with the two images; the request's own prompt
/// (a garment description, say) follows it.
const TRY_ON_PROMPT: &str = "Virtual try-on: show the person from the first image wearing the \
     garment from the second image. Keep the person's face, body, pose and the background \
     unchanged; reproduce the garment's colour, pattern and fit faithfully.";

pub struct EvoLinkProvider {
    name: String,
    base_url: String,
    model: String,
    token: String,
    config: ProviderConfig,
    http: reqwest::Client,
}

/// A task as `GET /v1/tasks/{id}` and the callbacks show it.
#[derive(Debug, Deserialize)]
struct EvoTask {
    id: String,
    status: String,
    #[serde(default)]
    results: Vec<String>,
    #[serde(default)]
    error: Value,
}

impl EvoTask {
    fn into_status(self, provider: &str) -> (String, TaskStatus) {
        let status = match self.status.as_str() {
            "pending" | "processing" => TaskStatus::Pending,
            "completed" => match self.results.into_iter().next() {
                Some(url) => TaskStatus::succeeded(url),
                None => TaskStatus::Failed {
                    message: "completed without a result".into(),
                },
            },
            // `cancelled` is not in the documented list, but EvoLink's callbacks report it.
            "failed" | "cancelled" | "canceled" => TaskStatus::Failed {
                message: failure(&self.status, &self.error),
            },
            other => {
                tracing::warn!(%provider, task = %self.id, status = other, "unknown EvoLink task status; treating it as still running");
                TaskStatus::Pending
            }
        };
        (self.id, status)
    }
}

/// `failed: code: message`, from what the task's `error` holds.
fn failure(status: &str, error: &Value) -> String {
    let field = |name: &str| error.get(name).and_then(Value::as_str);
    match (field("code"), field("message")) {
        (Some(code), Some(message)) => format!("{status}: {code}: {message}"),
        (code, message) => match code.or(message) {
            Some(text) => format!("{status}: {text}"),
            None if error.is_null() => format!("task {status}"),
            None => format!("{status}: {error}"),
        },
    }
}

/// As `classify_status`, except that an insufficient balance is an account problem whatever
/// status it comes with: no retry or wait would fix it.
fn classify(status: reqwest::StatusCode, wait: Option<Duration>, body: &str) -> ProviderError {
    if status != reqwest::StatusCode::PAYMENT_REQUIRED && insufficient_balance(body) {
        return ProviderError::Account(answer_detail(status, body));
    }
    classify_status(status, wait, body)
}

fn insufficient_balance(body: &str) -> bool {
    let Ok(answer) = serde_json::from_str::<Value>(body) else {
        return false;
    };
    let error = &answer["error"];
    let text = |name: &str| match &error[name] {
        Value::String(text) => text.to_ascii_lowercase(),
        _ => String::new(),
    };
    text("type") == "insufficient_quota_error"
        || ["code", "message"]
            .iter()
            .map(|name| text(name))
            .any(|text| text.contains("insufficient"))
}

impl EvoLinkProvider {
    pub fn new(name: &str, config: &ProviderConfig, http: reqwest::Client) -> Result<Self, String> {
        for (key, value) in [
            ("person_input", &config.person_input),
            ("garment_input", &config.garment_input),
            ("prompt_input", &config.prompt_input),
        ] {
            if value.is_some() {
                return Err(format!(
                    "providers.{name}.{key} does not apply: EvoLink takes both images as \
                     `image_urls` and the instruction as `prompt`"
                ));
            }
        }
        Ok(Self {
            name: name.to_owned(),
            base_url: config.base_url_or(DEFAULT_BASE_URL),
            model: config.required(name, "model", &config.model)?.to_owned(),
            token: config
                .required(name, "api_token", &config.api_token)?
                .to_owned(),
            config: config.clone(),
            http,
        })
    }

    /// The request body: `extra_input` (e.g. `quality`), then the fields Atelier owns.
    fn body(&self, task: &Task) -> Value {
        let mut body: serde_json::Map<String, Value> = self
            .config
            .extra_input
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let prompt = match &task.prompt {
            Some(prompt) => format!("{TRY_ON_PROMPT} The garment: {prompt}"),
            None => TRY_ON_PROMPT.to_owned(),
        };
        body.insert("model".into(), self.model.clone().into());
        body.insert("prompt".into(), prompt.into());
        body.insert(
            "image_urls".into(),
            json!([task.person_image_url, task.garment_image_url]),
        );
        if let Some(ratio) = &task.aspect_ratio {
            body.insert("size".into(), ratio.clone().into());
        }
        body.insert("callback_url".into(), task.webhook_url.clone().into());
        Value::Object(body)
    }

    async fn read(response: reqwest::Response) -> Result<EvoTask, ProviderError> {
        parse_answer(&success_body_by(response, classify).await?)
    }
}

#[async_trait::async_trait]
impl Provider for EvoLinkProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn submit(&self, task: &Task) -> Result<String, ProviderError> {
        let response = self
            .http
            .post(endpoint(&self.base_url, &["v1", "images", "generations"])?)
            .bearer_auth(&self.token)
            .json(&self.body(task))
            .send()
            .await
            .map_err(transport_error)?;
        Ok(Self::read(response).await?.id)
    }

    fn parse_callback(&self, body: &[u8]) -> Result<(String, TaskStatus), ProviderError> {
        let task: EvoTask = serde_json::from_slice(body)
            .map_err(|error| ProviderError::Permanent(format!("malformed callback: {error}")))?;
        Ok(task.into_status(&self.name))
    }

    /// Callbacks are unsigned: they only prompt a read of the task.
    fn confirms_callbacks(&self) -> bool {
        true
    }

    async fn poll(&self, task_id: &str) -> Result<TaskStatus, ProviderError> {
        let response = self
            .http
            .get(endpoint(&self.base_url, &["v1", "tasks", task_id])?)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(transport_error)?;
        Ok(Self::read(response).await?.into_status(&self.name).1)
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
        let mut config = ProviderConfig::costing(4);
        config.api_token = Some("sk-evo-test".into());
        config.model = Some("gemini-2.5-flash-image".into());
        config
    }

    fn provider() -> EvoLinkProvider {
        EvoLinkProvider::new("evolink", &config(), reqwest::Client::new()).unwrap()
    }

    fn parse(body: &str) -> Result<(String, TaskStatus), ProviderError> {
        provider().parse_callback(body.as_bytes())
    }

    #[test]
    fn tasks_map_to_our_statuses_and_unknown_ones_keep_waiting() {
        for status in ["pending", "processing", "quantum_superposition"] {
            let body = format!(r#"{{"id":"task-unified-1","status":"{status}","progress":10}}"#);
            assert_eq!(
                parse(&body).unwrap(),
                ("task-unified-1".into(), TaskStatus::Pending)
            );
        }
        let done = r#"{"id":"t","status":"completed","progress":100,
                       "results":["https://media.evolink.ai/a.png","https://media.evolink.ai/b.png"]}"#;
        assert_eq!(
            parse(done).unwrap().1,
            TaskStatus::succeeded("https://media.evolink.ai/a.png")
        );
        let failed = r#"{"id":"t","status":"failed","error":{"code":"content_policy_violation",
                         "message":"blocked by safety filters"}}"#;
        assert_eq!(
            parse(failed).unwrap().1,
            TaskStatus::Failed {
                message: "failed: content_policy_violation: blocked by safety filters".into()
            }
        );
        for bare in [
            r#"{"id":"t","status":"completed","results":[]}"#,
            r#"{"id":"t","status":"failed"}"#,
            r#"{"id":"t","status":"cancelled"}"#,
        ] {
            assert!(
                matches!(parse(bare).unwrap().1, TaskStatus::Failed { .. }),
                "{bare}"
            );
        }
    }

    #[test]
    fn malformed_callbacks_are_errors_not_panics() {
        for body in ["", "{", r#"{"status":"completed"}"#, r#"{"id":1}"#, "[]"] {
            assert!(
                matches!(parse(body), Err(ProviderError::Permanent(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn an_insufficient_balance_is_an_account_problem_under_any_status() {
        let quota = r#"{"error":{"code":402,"message":"Insufficient quota","type":"insufficient_quota_error"}}"#;
        let balance = r#"{"error":{"code":"insufficient_balance","message":"Your balance is too low","type":"invalid_request_error"}}"#;
        for (status, body) in [(402, quota), (403, quota), (400, balance), (429, balance)] {
            let error = classify(StatusCode::from_u16(status).unwrap(), None, body);
            assert!(
                matches!(error, ProviderError::Account(_)),
                "{status} {body}"
            );
        }
        let throttled =
            r#"{"error":{"code":429,"message":"Rate limit exceeded","type":"rate_limit_error"}}"#;
        let wait = Some(Duration::from_secs(5));
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, wait, throttled),
            ProviderError::RateLimited { retry_after: wait }
        );
        let invalid =
            r#"{"error":{"code":400,"message":"Invalid prompt","type":"invalid_request_error"}}"#;
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, None, invalid),
            ProviderError::Permanent(_)
        ));
        for status in [500, 502, 503] {
            let error = classify(StatusCode::from_u16(status).unwrap(), None, "upstream");
            assert!(matches!(error, ProviderError::Retryable(_)), "{status}");
        }
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, None, "{}"),
            ProviderError::Account(_)
        ));
    }

    #[test]
    fn the_request_carries_both_images_the_model_and_the_callback() {
        let mut config = config();
        config.extra_input.insert("quality".into(), json!("2K"));
        config.extra_input.insert("model".into(), json!("ignored"));
        let provider = EvoLinkProvider::new("evolink", &config, reqwest::Client::new()).unwrap();
        let task = Task {
            generation_id: uuid::Uuid::nil(),
            person_image_url: "https://a.example/person".into(),
            garment_image_url: "https://a.example/garment".into(),
            prompt: Some("a red linen shirt".into()),
            aspect_ratio: Some("3:4".into()),
            webhook_url: "https://a.example/webhooks/evolink/x?token=t".into(),
        };
        let body = provider.body(&task);
        assert_eq!(body["model"], "gemini-2.5-flash-image");
        assert_eq!(
            body["image_urls"],
            json!(["https://a.example/person", "https://a.example/garment"])
        );
        assert_eq!(body["size"], "3:4");
        assert_eq!(body["quality"], "2K");
        assert_eq!(body["callback_url"], task.webhook_url.as_str());
        let prompt = body["prompt"].as_str().unwrap();
        assert!(prompt.starts_with(TRY_ON_PROMPT) && prompt.ends_with("a red linen shirt"));
    }

    #[test]
    fn configuration_gaps_and_settings_that_do_not_apply_are_named() {
        let error = EvoLinkProvider::new(
            "evolink",
            &ProviderConfig::costing(1),
            reqwest::Client::new(),
        )
        .err()
        .unwrap();
        assert!(error.contains("providers.evolink.model"), "{error}");
        let mut config = config();
        config.person_input = Some("human_img".into());
        let error = EvoLinkProvider::new("evolink", &config, reqwest::Client::new())
            .err()
            .unwrap();
        assert!(error.contains("providers.evolink.person_input"), "{error}");
        assert_eq!(provider().base_url, "https://api.evolink.ai");
    }
}
