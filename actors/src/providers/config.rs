//! A provider's configuration (`[providers.<name>]`): what it costs, how hard we may call it,
//! and what its adapter needs to reach it. One shape for every adapter; each adapter checks
//! the fields it needs when it is built, so a missing key fails at start, not at the first job.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config_check::{check_base_url, check_range};
use crate::credits::MAX_CREDITS;
use crate::secret::SecretString;

/// Longest an open circuit may stay open, in seconds (a day).
pub const MAX_BREAKER_COOLDOWN_SECS: u64 = 24 * 3600;
/// Bounds of the call limits: far above any provider's real limits.
const MAX_CONCURRENCY: usize = 100_000;
const MAX_BREAKER_THRESHOLD: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Which adapter speaks to it: `simulator`, `cog`, `replicate`, `fal`, `evolink` or
    /// `fashn`. Unset: the table's name (so `[providers.cog]` is a Cog server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// Credits a generation on this provider holds (and charges at most).
    pub cost: i64,
    /// Credits per second of the provider's reported compute time. Set, a generation is
    /// charged that (rounded up) when it is less than `cost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits_per_second: Option<f64>,
    /// Calls to the provider in flight at once, at most.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Calls started per second, at most. Unset: no limit of ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
    /// Consecutive failures (errors, throttling) that open the circuit; account problems
    /// open it at once.
    #[serde(default = "default_breaker_threshold")]
    pub breaker_threshold: u32,
    /// Seconds an open circuit refuses calls before one probe is let through.
    #[serde(default = "default_breaker_cooldown_secs")]
    pub breaker_cooldown_secs: u64,
    /// The provider's API base URL; each adapter has the public one as default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// API token (Replicate, EvoLink, FASHN: `Bearer`; fal: `Key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_token: Option<SecretString>,
    /// Replicate: `owner/name`; fal: the model path, e.g. `fal-ai/idm-vton`; EvoLink: the
    /// image model, e.g. `gemini-2.5-flash-image`; FASHN: the `model_name` (`tryon-v1.6`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Replicate: a model version id, used instead of `model` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Replicate: `whsec_...` secrets callbacks are signed with; several during a rotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_secrets: Vec<SecretString>,
    /// The model's input field names, where the adapter's defaults do not fit the deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garment_input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_input: Option<String>,
    /// Further inputs sent with every task as they are (e.g. `num_inference_steps`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_input: BTreeMap<String, serde_json::Value>,
}

fn default_breaker_threshold() -> u32 {
    5
}

fn default_breaker_cooldown_secs() -> u64 {
    30
}

fn default_max_concurrency() -> usize {
    64
}

impl ProviderConfig {
    /// A provider with only a price; everything else as defaulted.
    pub fn costing(cost: i64) -> Self {
        Self {
            adapter: None,
            cost,
            credits_per_second: None,
            max_concurrency: default_max_concurrency(),
            requests_per_second: None,
            breaker_threshold: default_breaker_threshold(),
            breaker_cooldown_secs: default_breaker_cooldown_secs(),
            base_url: None,
            api_token: None,
            model: None,
            version: None,
            webhook_secrets: Vec::new(),
            person_input: None,
            garment_input: None,
            prompt_input: None,
            extra_input: BTreeMap::new(),
        }
    }

    /// Every setting within its bounds, or a message naming the first that is not.
    pub fn validate(&self, name: &str) -> Result<(), String> {
        let key = |field: &str| format!("providers.{name}.{field}");
        check_range(&key("cost"), self.cost, 1, MAX_CREDITS)?;
        check_range(
            &key("max_concurrency"),
            self.max_concurrency,
            1,
            MAX_CONCURRENCY,
        )?;
        check_range(
            &key("breaker_threshold"),
            self.breaker_threshold,
            1,
            MAX_BREAKER_THRESHOLD,
        )?;
        check_range(
            &key("breaker_cooldown_secs"),
            self.breaker_cooldown_secs,
            0,
            MAX_BREAKER_COOLDOWN_SECS,
        )?;
        if let Some(rate) = self.requests_per_second {
            check_range(&key("requests_per_second"), rate, 1, u32::MAX)?;
        }
        if let Some(rate) = self.credits_per_second
            && !(rate.is_finite() && rate >= 0.0)
        {
            return Err(format!(
                "{} must be a number not below 0, got {rate}",
                key("credits_per_second")
            ));
        }
        if let Some(base_url) = &self.base_url {
            check_base_url(&key("base_url"), base_url)?;
        }
        Ok(())
    }

    /// The input object a model receives: the configured (or the adapter's default) field
    /// names for the task's images and prompt, plus `extra_input`.
    pub fn model_input(
        &self,
        defaults: [&str; 3],
        task: &super::Task,
    ) -> serde_json::Map<String, serde_json::Value> {
        let [person, garment, prompt] = defaults;
        let mut input: serde_json::Map<String, serde_json::Value> = self
            .extra_input
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        input.insert(
            self.person_input.as_deref().unwrap_or(person).to_owned(),
            task.person_image_url.clone().into(),
        );
        input.insert(
            self.garment_input.as_deref().unwrap_or(garment).to_owned(),
            task.garment_image_url.clone().into(),
        );
        if let Some(text) = &task.prompt {
            input.insert(
                self.prompt_input.as_deref().unwrap_or(prompt).to_owned(),
                text.clone().into(),
            );
        }
        input
    }

    /// The charge for `seconds` of reported compute, when this provider is priced by time.
    pub fn charge_for(&self, seconds: Option<f64>) -> Option<i64> {
        let rate = self.credits_per_second?;
        let seconds = seconds.filter(|seconds| seconds.is_finite() && *seconds >= 0.0)?;
        let credits = (seconds * rate).ceil();
        (credits < self.cost as f64).then_some(credits.max(0.0) as i64)
    }

    /// The adapter that speaks to provider `name`: `adapter`, else the table's name.
    pub fn adapter_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.adapter.as_deref().unwrap_or(name)
    }

    /// `base_url` without a trailing slash, or the adapter's public `default`.
    pub fn base_url_or(&self, default: &str) -> String {
        self.base_url
            .as_deref()
            .unwrap_or(default)
            .trim_end_matches('/')
            .to_owned()
    }

    /// A required key, or a message naming it.
    pub fn required<'a, T: AsRef<str>>(
        &self,
        name: &str,
        key: &str,
        value: &'a Option<T>,
    ) -> Result<&'a str, String> {
        value
            .as_ref()
            .map(AsRef::as_ref)
            .filter(|value| !value.trim().is_empty())
            .ok_or_else(|| format!("providers.{name}.{key} is required"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_priced_charges_round_up_and_never_exceed_the_cost() {
        let mut config = ProviderConfig::costing(10);
        assert_eq!(config.charge_for(Some(3.0)), None, "not priced by time");
        config.credits_per_second = Some(2.0);
        assert_eq!(config.charge_for(Some(1.2)), Some(3));
        assert_eq!(config.charge_for(Some(0.0)), Some(0));
        assert_eq!(config.charge_for(Some(5.0)), None, "10 is the cost itself");
        assert_eq!(config.charge_for(Some(60.0)), None, "capped by the hold");
        assert_eq!(config.charge_for(Some(f64::NAN)), None);
        assert_eq!(config.charge_for(None), None);
    }
}
