//! The client side of the built-in simulator: the same HTTP and webhook path as a real
//! provider, against the simulator Atelier serves itself (`src/simulator.rs`).
use serde::Deserialize;
use serde_json::json;

use super::{
    Provider, ProviderError, Task, TaskStatus, parse_answer, success_body, transport_error,
};

pub struct SimulatorProvider {
    /// e.g. `http://127.0.0.1:8080/simulator`
    base_url: String,
    /// Sent as `Authorization: Bearer`: the simulator refuses anything else.
    api_key: String,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct TaskView {
    id: String,
    status: String,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl TaskView {
    fn status(self) -> Result<(String, TaskStatus), ProviderError> {
        let status =
            match self.status.as_str() {
                "queued" | "processing" => TaskStatus::Pending,
                "succeeded" => TaskStatus::succeeded(self.output.ok_or_else(|| {
                    ProviderError::Permanent("succeeded without an output".into())
                })?),
                "failed" => TaskStatus::Failed {
                    message: self.error.unwrap_or_else(|| "the simulator failed".into()),
                },
                other => {
                    return Err(ProviderError::Permanent(format!(
                        "unknown status {other:?}"
                    )));
                }
            };
        Ok((self.id, status))
    }
}

impl SimulatorProvider {
    pub fn new(base_url: String, api_key: String, http: reqwest::Client) -> Self {
        Self {
            base_url,
            api_key,
            http,
        }
    }

    async fn read(response: reqwest::Response) -> Result<TaskView, ProviderError> {
        parse_answer(&success_body(response).await?)
    }
}

#[async_trait::async_trait]
impl Provider for SimulatorProvider {
    fn name(&self) -> &str {
        "simulator"
    }

    async fn submit(&self, task: &Task) -> Result<String, ProviderError> {
        // The task id is ours, so a resubmission after a crash finds the same task.
        let response = self
            .http
            .put(format!("{}/v1/tasks/{}", self.base_url, task.generation_id))
            .bearer_auth(&self.api_key)
            .json(&json!({
                "person_image": task.person_image_url,
                "garment_image": task.garment_image_url,
                "prompt": task.prompt,
                "webhook": task.webhook_url,
            }))
            .send()
            .await
            .map_err(transport_error)?;
        Ok(Self::read(response).await?.id)
    }

    fn parse_callback(&self, body: &[u8]) -> Result<(String, TaskStatus), ProviderError> {
        serde_json::from_slice::<TaskView>(body)
            .map_err(|error| ProviderError::Permanent(format!("malformed callback: {error}")))?
            .status()
    }

    async fn poll(&self, task_id: &str) -> Result<TaskStatus, ProviderError> {
        let response = self
            .http
            .get(format!("{}/v1/tasks/{task_id}", self.base_url))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .map_err(transport_error)?;
        Ok(Self::read(response).await?.status()?.1)
    }

    async fn cancel(&self, task_id: &str) -> Result<(), ProviderError> {
        let response = self
            .http
            .delete(format!("{}/v1/tasks/{task_id}", self.base_url))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .map_err(transport_error)?;
        Self::read(response).await.map(drop)
    }
}
