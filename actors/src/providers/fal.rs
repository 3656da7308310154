//! fal.ai's queue API (<https://docs.fal.ai/model-endpoints/queue>): `POST {base}/{model}
//! ?fal_webhook=...` with `Authorization: Key ...` answers a `request_id`; the request's
//! status is at `{base}/{model}/requests/{id}/status` (`IN_QUEUE | IN_PROGRESS | COMPLETED`)
//! and its result at `{base}/{model}/requests/{id}`. `COMPLETED` only means the request ended:
//! whether it succeeded is the result's to say. Callbacks (`{request_id, status: "OK" |
//! "ERROR", payload, error}`) are not trusted: the engine confirms them by polling, which asks
//! the status and result endpoints.
use serde::Deserialize;
use serde_json::Value;

use super::config::ProviderConfig;
use super::{
    MAX_ANSWER_BYTES, Provider, ProviderError, Task, TaskStatus, bounded_text, canceled,
    classify_status, parse_answer, retry_after, success_body, transport_error,
};

const DEFAULT_BASE_URL: &str = "https://queue.fal.run";
/// `fal-ai/idm-vton`'s input names.
const DEFAULT_INPUTS: [&str; 3] = ["human_image_url", "garment_image_url", "description"];

pub struct FalProvider {
    name: String,
    base_url: String,
    model: String,
    token: String,
    config: ProviderConfig,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct Queued {
    request_id: String,
}

#[derive(Debug, Deserialize)]
struct Callback {
    request_id: String,
    status: String,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    error: Value,
}

#[derive(Debug, Deserialize)]
struct QueueStatus {
    status: String,
    #[serde(default)]
    error: Value,
    #[serde(default)]
    metrics: Option<Metrics>,
}

#[derive(Debug, Deserialize)]
struct Metrics {
    #[serde(default)]
    inference_time: Option<f64>,
}

/// The first image URL in a result: `{"images": [{"url": ...}]}` or `{"image": {"url": ...}}`.
fn image_url(result: &Value) -> Option<String> {
    let image = result
        .get("images")
        .and_then(|images| images.get(0))
        .or_else(|| result.get("image"))?;
    image.get("url")?.as_str().map(str::to_owned)
}

fn message(error: &Value, fallback: &str) -> String {
    match error {
        Value::String(text) => text.clone(),
        Value::Null => fallback.to_owned(),
        other => other.to_string(),
    }
}

impl FalProvider {
    pub fn new(name: &str, config: &ProviderConfig, http: reqwest::Client) -> Result<Self, String> {
        Ok(Self {
            name: name.to_owned(),
            base_url: config.base_url_or(DEFAULT_BASE_URL),
            model: config
                .required(name, "model", &config.model)?
                .trim_matches('/')
                .to_owned(),
            token: config
                .required(name, "api_token", &config.api_token)?
                .to_owned(),
            config: config.clone(),
            http,
        })
    }

    fn request_url(&self, request_id: &str) -> String {
        format!("{}/{}/requests/{request_id}", self.base_url, self.model)
    }

    async fn get(&self, url: String) -> Result<(reqwest::StatusCode, String), ProviderError> {
        let response = self
            .http
            .get(url)
            .header("Authorization", format!("Key {}", self.token))
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let wait = retry_after(response.headers());
        let body = bounded_text(response, MAX_ANSWER_BYTES).await?;
        match status.as_u16() {
            200..=299 => Ok((status, body)),
            // The result endpoint answers a failed request with the model's error status.
            400 | 422 => Ok((status, body)),
            _ => Err(classify_status(status, wait, &body)),
        }
    }

    /// The outcome of a request the queue reports `COMPLETED`.
    async fn result(
        &self,
        request_id: &str,
        status: QueueStatus,
    ) -> Result<TaskStatus, ProviderError> {
        if !status.error.is_null() {
            return Ok(TaskStatus::Failed {
                message: message(&status.error, "the request failed"),
            });
        }
        let (code, body) = self.get(self.request_url(request_id)).await?;
        let result: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if !code.is_success() {
            return Ok(TaskStatus::Failed {
                message: message(result.get("detail").unwrap_or(&Value::Null), &body),
            });
        }
        Ok(match image_url(&result) {
            Some(url) => TaskStatus::Succeeded {
                output_url: url,
                charge: self
                    .config
                    .charge_for(status.metrics.and_then(|metrics| metrics.inference_time)),
            },
            None => TaskStatus::Failed {
                message: "completed without an image".into(),
            },
        })
    }
}

#[async_trait::async_trait]
impl Provider for FalProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn submit(&self, task: &Task) -> Result<String, ProviderError> {
        let response = self
            .http
            .post(format!("{}/{}", self.base_url, self.model))
            .query(&[("fal_webhook", task.webhook_url.as_str())])
            .header("Authorization", format!("Key {}", self.token))
            .json(&self.config.model_input(DEFAULT_INPUTS, task))
            .send()
            .await
            .map_err(transport_error)?;
        let queued: Queued = parse_answer(&success_body(response).await?)?;
        Ok(queued.request_id)
    }

    fn parse_callback(&self, body: &[u8]) -> Result<(String, TaskStatus), ProviderError> {
        let callback: Callback = serde_json::from_slice(body)
            .map_err(|error| ProviderError::Permanent(format!("malformed callback: {error}")))?;
        let status = match callback.status.as_str() {
            "OK" => match image_url(&callback.payload) {
                Some(url) => TaskStatus::succeeded(url),
                None => TaskStatus::Failed {
                    message: "completed without an image".into(),
                },
            },
            "ERROR" => TaskStatus::Failed {
                message: message(&callback.error, "the request failed"),
            },
            other => {
                return Err(ProviderError::Permanent(format!(
                    "unknown callback status {other:?}"
                )));
            }
        };
        Ok((callback.request_id, status))
    }

    /// Callbacks are unsigned here: they only prompt a poll.
    fn confirms_callbacks(&self) -> bool {
        true
    }

    async fn poll(&self, task_id: &str) -> Result<TaskStatus, ProviderError> {
        let (code, body) = self
            .get(format!("{}/status", self.request_url(task_id)))
            .await?;
        if !code.is_success() {
            return Err(ProviderError::Permanent(format!(
                "status: HTTP {code}: {body}"
            )));
        }
        let status: QueueStatus = parse_answer(&body)?;
        match status.status.as_str() {
            "IN_QUEUE" | "IN_PROGRESS" => Ok(TaskStatus::Pending),
            "COMPLETED" => self.result(task_id, status).await,
            other => {
                tracing::warn!(provider = %self.name, request = task_id, status = other, "unknown queue status; treating it as still running");
                Ok(TaskStatus::Pending)
            }
        }
    }

    async fn cancel(&self, task_id: &str) -> Result<(), ProviderError> {
        let response = self
            .http
            .put(format!("{}/cancel", self.request_url(task_id)))
            .header("Authorization", format!("Key {}", self.token))
            .send()
            .await
            .map_err(transport_error)?;
        // 400: the request already finished; nothing left to stop.
        canceled(response, reqwest::StatusCode::BAD_REQUEST).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> FalProvider {
        let mut config = ProviderConfig::costing(4);
        config.api_token = Some("key".into());
        config.model = Some("fal-ai/idm-vton".into());
        FalProvider::new("fal", &config, reqwest::Client::new()).unwrap()
    }

    #[test]
    fn callbacks_parse_into_the_request_and_its_outcome() {
        let ok = br#"{"request_id":"r1","status":"OK","payload":{"images":[{"url":"https://fal.media/x.png","width":8}]}}"#;
        assert_eq!(
            provider().parse_callback(ok).unwrap(),
            (
                "r1".into(),
                TaskStatus::succeeded("https://fal.media/x.png")
            )
        );
        let error = br#"{"request_id":"r1","status":"ERROR","error":"Invalid status code: 422","payload":{"detail":[]}}"#;
        assert!(matches!(
            provider().parse_callback(error).unwrap().1,
            TaskStatus::Failed { .. }
        ));
        for bad in [
            &b"{"[..],
            br#"{"request_id":"r1","status":"MAYBE"}"#,
            br#"{"status":"OK"}"#,
        ] {
            assert!(provider().parse_callback(bad).is_err());
        }
    }

    #[test]
    fn a_model_path_and_a_key_are_required() {
        let error = FalProvider::new("fal", &ProviderConfig::costing(1), reqwest::Client::new())
            .err()
            .unwrap();
        assert!(error.contains("providers.fal.model"), "{error}");
    }
}
