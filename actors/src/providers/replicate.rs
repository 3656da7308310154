//! Replicate (<https://replicate.com/docs/reference/http>): `POST /v1/predictions` with a
//! model version, or `POST /v1/models/{owner}/{name}/predictions`; `Authorization: Bearer`;
//! callbacks signed per Standard Webhooks. Statuses are `starting | processing | succeeded |
//! failed | canceled | aborted`; a status we do not know yet counts as still running, so a new
//! one at Replicate makes the engine poll on, not crash (`prediction`, shared with Cog).
use std::time::Duration;

use serde_json::{Value, json};

use super::config::ProviderConfig;
use super::prediction::Prediction;
use super::signature::{self, Secret};
use super::{
    Provider, ProviderError, Task, TaskStatus, parse_answer, success_body_by, transport_error,
};

const DEFAULT_BASE_URL: &str = "https://api.replicate.com";
/// IDM-VTON's input names on Replicate (`cuuupid/idm-vton`).
const DEFAULT_INPUTS: [&str; 3] = ["human_img", "garm_img", "garment_des"];

pub struct ReplicateProvider {
    name: String,
    base_url: String,
    token: String,
    /// The path predictions are created at.
    create_path: String,
    version: Option<String>,
    secrets: Vec<Secret>,
    config: ProviderConfig,
    http: reqwest::Client,
}

impl ReplicateProvider {
    pub fn new(name: &str, config: &ProviderConfig, http: reqwest::Client) -> Result<Self, String> {
        let token = config
            .required(name, "api_token", &config.api_token)?
            .to_owned();
        let create_path = match (&config.version, &config.model) {
            (Some(_), _) => "/v1/predictions".to_owned(),
            (None, Some(model)) if model.split('/').count() == 2 => {
                format!("/v1/models/{model}/predictions")
            }
            _ => {
                return Err(format!(
                    "providers.{name} needs `version`, or `model` as \"owner/name\""
                ));
            }
        };
        if config.webhook_secrets.is_empty() {
            return Err(format!(
                "providers.{name}.webhook_secrets is required: callbacks are verified with it \
                 (GET /v1/webhooks/default/secret at Replicate)"
            ));
        }
        let secrets = config
            .webhook_secrets
            .iter()
            .map(|secret| Secret::parse(secret))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("providers.{name}.webhook_secrets: {error}"))?;
        Ok(Self {
            name: name.to_owned(),
            base_url: config.base_url_or(DEFAULT_BASE_URL),
            token,
            create_path,
            version: config.version.clone(),
            secrets,
            config: config.clone(),
            http,
        })
    }

    async fn read(response: reqwest::Response) -> Result<Prediction, ProviderError> {
        parse_answer(&success_body_by(response, classify).await?)
    }
}

/// As `classify_status`, reading Replicate's throttling message when there is no
/// `Retry-After`: `{"detail":"Request was throttled. Your rate limit resets in ~30s."}`.
fn classify(status: reqwest::StatusCode, wait: Option<Duration>, body: &str) -> ProviderError {
    let wait = wait.or_else(|| throttle_reset(body));
    super::classify_status(status, wait, body)
}

fn throttle_reset(body: &str) -> Option<Duration> {
    let detail: Value = serde_json::from_str(body).ok()?;
    let detail = detail.get("detail")?.as_str()?;
    let after = detail
        .split("resets in")
        .nth(1)?
        .trim()
        .trim_start_matches('~');
    let seconds: String = after.chars().take_while(char::is_ascii_digit).collect();
    super::provider_wait(&seconds)
}

#[async_trait::async_trait]
impl Provider for ReplicateProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn submit(&self, task: &Task) -> Result<String, ProviderError> {
        let mut body = json!({
            "input": self.config.model_input(DEFAULT_INPUTS, task),
            "webhook": task.webhook_url,
            "webhook_events_filter": ["completed"],
        });
        if let Some(version) = &self.version {
            body["version"] = version.clone().into();
        }
        let response = self
            .http
            .post(format!("{}{}", self.base_url, self.create_path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(transport_error)?;
        Ok(Self::read(response).await?.id)
    }

    fn verify_callback(
        &self,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
        unix_now: i64,
    ) -> Result<(), signature::Rejected> {
        signature::verify(&self.secrets, headers, body, unix_now)
    }

    fn parse_callback(&self, body: &[u8]) -> Result<(String, TaskStatus), ProviderError> {
        Ok(Prediction::parse(body)?.into_status(&self.name, &self.config))
    }

    async fn poll(&self, task_id: &str) -> Result<TaskStatus, ProviderError> {
        let response = self
            .http
            .get(format!("{}/v1/predictions/{task_id}", self.base_url))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(transport_error)?;
        Ok(Self::read(response)
            .await?
            .into_status(&self.name, &self.config)
            .1)
    }

    async fn cancel(&self, task_id: &str) -> Result<(), ProviderError> {
        let response = self
            .http
            .post(format!("{}/v1/predictions/{task_id}/cancel", self.base_url))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(transport_error)?;
        Self::read(response).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> ReplicateProvider {
        let mut config = ProviderConfig::costing(10);
        config.api_token = Some("r8_test".into());
        config.model = Some("cuuupid/idm-vton".into());
        config.webhook_secrets = vec!["whsec_c2VjcmV0".into()];
        config.credits_per_second = Some(1.0);
        ReplicateProvider::new("replicate", &config, reqwest::Client::new()).unwrap()
    }

    #[test]
    fn callbacks_are_predictions() {
        let body = br#"{"id":"p1","status":"succeeded","output":"https://r.example/a.png","metrics":{"predict_time":3.2}}"#;
        assert_eq!(
            provider().parse_callback(body).unwrap(),
            (
                "p1".into(),
                TaskStatus::Succeeded {
                    output_url: "https://r.example/a.png".into(),
                    charge: Some(4)
                }
            )
        );
        assert!(provider().parse_callback(b"{").is_err());
    }

    #[test]
    fn the_throttling_message_says_when_to_come_back() {
        let body = r#"{"detail":"Request was throttled. Your rate limit resets in ~30s."}"#;
        assert_eq!(throttle_reset(body), Some(Duration::from_secs(30)));
        let huge =
            r#"{"detail":"Request was throttled. Your rate limit resets in ~10000000000000s."}"#;
        assert_eq!(throttle_reset(huge), Some(super::super::MAX_PROVIDER_WAIT));
        assert_eq!(
            classify(reqwest::StatusCode::TOO_MANY_REQUESTS, None, body),
            ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(30))
            }
        );
        assert_eq!(throttle_reset("not json"), None);
    }

    #[test]
    fn configuration_gaps_are_named() {
        let config = ProviderConfig::costing(1);
        let error = ReplicateProvider::new("replicate", &config, reqwest::Client::new())
            .err()
            .unwrap();
        assert!(error.contains("providers.replicate.api_token"), "{error}");
    }
}
