//! The prediction object of Cog's HTTP API, which Replicate (built on Cog) shares: `{id,
//! status, output, error, metrics: {predict_time}}`, with statuses `starting | processing |
//! succeeded | failed | canceled` (Replicate adds `aborted`). A status not known yet counts
//! as still running, so a new one makes the engine wait on, not crash.
use serde::Deserialize;
use serde_json::Value;

use super::config::ProviderConfig;
use super::{ProviderError, TaskStatus};

#[derive(Debug, Deserialize)]
pub struct Prediction {
    pub id: String,
    status: String,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    error: Value,
    #[serde(default)]
    metrics: Option<Metrics>,
}

#[derive(Debug, Deserialize)]
struct Metrics {
    #[serde(default)]
    predict_time: Option<f64>,
}

/// The first URL (or `data:` URI) in an output: models return one or a list.
fn first_output(output: &Value) -> Option<String> {
    match output {
        Value::String(output) => Some(output.clone()),
        Value::Array(items) => items.iter().find_map(first_output),
        _ => None,
    }
}

impl Prediction {
    pub fn parse(body: &[u8]) -> Result<Self, ProviderError> {
        serde_json::from_slice(body)
            .map_err(|error| ProviderError::Permanent(format!("malformed prediction: {error}")))
    }

    /// The prediction's id and its status in our terms; `provider` names it in logs.
    pub fn into_status(self, provider: &str, config: &ProviderConfig) -> (String, TaskStatus) {
        let status = match self.status.as_str() {
            "starting" | "processing" => TaskStatus::Pending,
            "succeeded" => match first_output(&self.output) {
                Some(output) => TaskStatus::Succeeded {
                    output_url: output,
                    charge: config.charge_for(self.metrics.and_then(|m| m.predict_time)),
                },
                None => TaskStatus::Failed {
                    message: "succeeded without an output".into(),
                },
            },
            "failed" | "canceled" | "aborted" => TaskStatus::Failed {
                message: match &self.error {
                    Value::String(message) => format!("{}: {message}", self.status),
                    _ => format!("prediction {}", self.status),
                },
            },
            other => {
                tracing::warn!(%provider, prediction = %self.id, status = other, "unknown prediction status; treating it as still running");
                TaskStatus::Pending
            }
        };
        (self.id, status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<(String, TaskStatus), ProviderError> {
        let mut config = ProviderConfig::costing(10);
        config.credits_per_second = Some(1.0);
        Prediction::parse(body.as_bytes()).map(|p| p.into_status("test", &config))
    }

    #[test]
    fn statuses_map_to_ours_and_unknown_ones_keep_waiting() {
        for status in ["starting", "processing", "quantum_superposition"] {
            let body = format!(r#"{{"id":"p1","status":"{status}"}}"#);
            assert_eq!(parse(&body).unwrap(), ("p1".into(), TaskStatus::Pending));
        }
        let done = parse(
            r#"{"id":"p1","status":"succeeded","output":["https://r.example/a.png"],
                "metrics":{"predict_time":3.2}}"#,
        )
        .unwrap();
        assert_eq!(
            done.1,
            TaskStatus::Succeeded {
                output_url: "https://r.example/a.png".into(),
                charge: Some(4)
            }
        );
        for status in ["failed", "canceled", "aborted"] {
            let body = format!(r#"{{"id":"p1","status":"{status}","error":"CUDA OOM"}}"#);
            assert_eq!(
                parse(&body).unwrap().1,
                TaskStatus::Failed {
                    message: format!("{status}: CUDA OOM")
                }
            );
        }
        let empty = parse(r#"{"id":"p1","status":"succeeded","output":null}"#).unwrap();
        assert!(matches!(empty.1, TaskStatus::Failed { .. }));
    }

    #[test]
    fn malformed_predictions_are_errors_not_panics() {
        for body in ["", "{", r#"{"status":"succeeded"}"#, "[]", r#"{"id":1}"#] {
            assert!(
                matches!(parse(body), Err(ProviderError::Permanent(_))),
                "{body}"
            );
        }
    }
}
