//! `[webhooks]`: how completion webhooks are accepted and sent. One shape with one set of
//! defaults, as `engine::config` owns `[workflow]`.
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config_check::{MAX_SECS, check_range};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Most endpoints one account may have registered at once.
    pub max_endpoints_per_account: usize,
    /// Hosts (names or IP addresses) an endpoint may name though they are not public, and
    /// may reach over `http://`; everything else must be a public `https://` destination.
    pub allowed_hosts: Vec<String>,
    /// Milliseconds between the sender's looks for due deliveries.
    pub poll_interval_ms: u64,
    /// Most deliveries claimed per look.
    pub max_batch: usize,
    /// Most deliveries in flight at once.
    pub max_concurrency: usize,
    /// Seconds to connect to an endpoint.
    pub connect_timeout_secs: u64,
    /// Seconds one delivery attempt may take in all (connect, send, answer).
    pub request_timeout_secs: u64,
    /// A failed attempt is retried after this many milliseconds, doubling per attempt...
    pub retry_min_ms: u64,
    /// ...up to this many seconds between attempts.
    pub retry_max_secs: u64,
    /// Seconds after its event a delivery is given up (`failed`) if still not accepted.
    pub max_age_secs: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            max_endpoints_per_account: 10,
            allowed_hosts: Vec::new(),
            poll_interval_ms: 500,
            max_batch: 32,
            max_concurrency: 8,
            connect_timeout_secs: 5,
            request_timeout_secs: 15,
            retry_min_ms: 5_000,
            retry_max_secs: 3_600,
            max_age_secs: 24 * 3600,
        }
    }
}

impl WebhooksConfig {
    /// Every setting within its bounds, or a message naming the first that is not.
    pub fn validate(&self) -> Result<(), String> {
        check_range(
            "webhooks.max_endpoints_per_account",
            self.max_endpoints_per_account,
            1,
            100,
        )?;
        check_range(
            "webhooks.poll_interval_ms",
            self.poll_interval_ms,
            10,
            600_000,
        )?;
        check_range("webhooks.max_batch", self.max_batch, 1, 1_000)?;
        check_range("webhooks.max_concurrency", self.max_concurrency, 1, 256)?;
        check_range(
            "webhooks.connect_timeout_secs",
            self.connect_timeout_secs,
            1,
            60,
        )?;
        check_range(
            "webhooks.request_timeout_secs",
            self.request_timeout_secs,
            1,
            120,
        )?;
        check_range("webhooks.retry_min_ms", self.retry_min_ms, 10, 3_600_000)?;
        check_range("webhooks.retry_max_secs", self.retry_max_secs, 1, 24 * 3600)?;
        check_range("webhooks.max_age_secs", self.max_age_secs, 1, MAX_SECS)?;
        if self.retry_min_ms > self.retry_max_secs * 1000 {
            return Err("webhooks.retry_min_ms must not exceed webhooks.retry_max_secs".into());
        }
        Ok(())
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// How long a claimed attempt keeps others off its delivery: past its own timeout, so a
    /// live attempt is never doubled; after a crash, the delivery is due again after this.
    pub fn claim_lease(&self) -> Duration {
        self.request_timeout() + Duration::from_secs(5)
    }

    /// The wait after the `attempts`-th failed attempt: `retry_min_ms`, doubling, at most
    /// `retry_max_secs`.
    pub fn retry_delay(&self, attempts: i32) -> Duration {
        let doublings = attempts.saturating_sub(1).clamp(0, 30) as u32;
        let delay = self.retry_min_ms.saturating_mul(1u64 << doublings);
        Duration::from_millis(delay.min(self.retry_max_secs * 1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_the_minimum_up_to_the_maximum() {
        let config = WebhooksConfig::default();
        let secs: Vec<u64> = (1..=12)
            .map(|attempts| config.retry_delay(attempts).as_secs())
            .collect();
        assert_eq!(
            secs,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(config.retry_delay(i32::MAX).as_secs(), 3600);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn out_of_range_settings_are_refused_by_name() {
        let config = WebhooksConfig {
            request_timeout_secs: 0,
            ..WebhooksConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("request_timeout_secs")
        );
        let config = WebhooksConfig {
            retry_min_ms: 10_000,
            retry_max_secs: 5,
            ..WebhooksConfig::default()
        };
        assert!(config.validate().unwrap_err().contains("retry_min_ms"));
    }
}
