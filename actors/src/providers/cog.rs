//! Cog (<https://cog.run>): a self-hosted model server, e.g. IDM-VTON packaged with Cog.
//!
//! - Submit: `PUT /predictions/{generation id}` with `Prefer: respond-async`. The PUT is
//!   idempotent while the prediction runs (Cog answers its current state), so a resubmission
//!   after a crash joins the running prediction instead of starting a second one.
//! - Callbacks: `webhook_events_filter: ["start", "completed"]`; the output is a URL, or a
//!   `data:` URI when the server has no upload URL. Cog does not sign callbacks: the
//!   per-generation token in the URL authenticates them, the prediction id must be the
//!   generation's, and the result must decode as an image before anything is charged.
//! - Status: Cog (0.23) has no way to read a prediction (`GET /predictions/{id}` is 405), and
//!   a PUT of a finished prediction's id starts it again. So a poll asks `/health-check`
//!   whether the server is alive: while it is, the prediction is running or its callback is
//!   being retried (Cog retries a final callback with backoff for about seven minutes) and we
//!   keep waiting; an unreachable server is an error, polled again with backoff. Either way
//!   the overall deadline ends the wait: a result Cog gave up delivering, or a prediction a
//!   restarted server forgot, is released as `timeout` (nothing is charged).
use serde::Deserialize;
use serde_json::json;

use super::config::ProviderConfig;
use super::prediction::Prediction;
use super::{
    MAX_ANSWER_BYTES, Provider, ProviderError, Task, TaskStatus, bounded_text, canceled,
    classify_status, parse_answer, retry_after, success_body, transport_error,
};

/// IDM-VTON's input names, as its Cog packaging declares them.
const DEFAULT_INPUTS: [&str; 3] = ["human_img", "garm_img", "garment_des"];

pub struct CogProvider {
    name: String,
    base_url: String,
    config: ProviderConfig,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct Health {
    status: String,
}

impl CogProvider {
    pub fn new(name: &str, config: &ProviderConfig, http: reqwest::Client) -> Result<Self, String> {
        let base_url = config.required(name, "base_url", &config.base_url)?;
        Ok(Self {
            name: name.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            config: config.clone(),
            http,
        })
    }
}

#[async_trait::async_trait]
impl Provider for CogProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn submit(&self, task: &Task) -> Result<String, ProviderError> {
        let id = task.generation_id.to_string();
        let response = self
            .http
            .put(format!("{}/predictions/{id}", self.base_url))
            .header("Prefer", "respond-async")
            .json(&json!({
                "id": id,
                "input": self.config.model_input(DEFAULT_INPUTS, task),
                "webhook": task.webhook_url,
                "webhook_events_filter": ["start", "completed"],
            }))
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let wait = retry_after(response.headers());
        let body = bounded_text(response, MAX_ANSWER_BYTES).await?;
        match status.as_u16() {
            200..=299 => Ok(id),
            // Every prediction slot is busy with another prediction: try later, or elsewhere.
            409 => Err(ProviderError::RateLimited { retry_after: wait }),
            _ => Err(classify_status(status, wait, &body)),
        }
    }

    fn parse_callback(&self, body: &[u8]) -> Result<(String, TaskStatus), ProviderError> {
        Ok(Prediction::parse(body)?.into_status(&self.name, &self.config))
    }

    async fn poll(&self, _task_id: &str) -> Result<TaskStatus, ProviderError> {
        let response = self
            .http
            .get(format!("{}/health-check", self.base_url))
            .send()
            .await
            .map_err(transport_error)?;
        let health: Health = parse_answer(&success_body(response).await?)?;
        match health.status.as_str() {
            "READY" | "BUSY" | "STARTING" => Ok(TaskStatus::Pending),
            other => Err(ProviderError::Retryable(format!(
                "the Cog server is {other}"
            ))),
        }
    }

    async fn cancel(&self, task_id: &str) -> Result<(), ProviderError> {
        let response = self
            .http
            .post(format!("{}/predictions/{task_id}/cancel", self.base_url))
            .send()
            .await
            .map_err(transport_error)?;
        // 404: finished or unknown; nothing runs that could be stopped.
        canceled(response, reqwest::StatusCode::NOT_FOUND).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> CogProvider {
        let mut config = ProviderConfig::costing(3);
        config.base_url = Some("http://127.0.0.1:5000/".into());
        config.credits_per_second = Some(1.0);
        CogProvider::new("cog", &config, reqwest::Client::new()).unwrap()
    }

    #[test]
    fn callbacks_as_cog_sends_them() {
        let start = br#"{"id":"g1","logs":"","metrics":{},"status":"processing"}"#;
        assert_eq!(
            provider().parse_callback(start).unwrap(),
            ("g1".into(), TaskStatus::Pending)
        );
        let done = br#"{"id":"g1","logs":"","metrics":{"predict_time":1.54},"output":"data:image/png;base64,iVBO","status":"succeeded"}"#;
        assert_eq!(
            provider().parse_callback(done).unwrap().1,
            TaskStatus::Succeeded {
                output_url: "data:image/png;base64,iVBO".into(),
                charge: Some(2)
            }
        );
        let failed = br#"{"error":"Prediction failed: ValueError: exploded","id":"g1","logs":"","metrics":{"predict_time":0.0064},"status":"failed"}"#;
        assert_eq!(
            provider().parse_callback(failed).unwrap().1,
            TaskStatus::Failed {
                message: "failed: Prediction failed: ValueError: exploded".into()
            }
        );
        assert!(provider().parse_callback(b"{\"id\":1}").is_err());
    }

    #[test]
    fn a_base_url_is_required() {
        let error = CogProvider::new("cog", &ProviderConfig::costing(1), reqwest::Client::new())
            .err()
            .unwrap();
        assert!(error.contains("providers.cog.base_url"), "{error}");
    }
}
