//! The engine's configuration (`[workflow]`): its deadlines, limits, retry policy and pace.
//! One shape with one set of defaults, deserialized as it is written in TOML and in
//! `ATELIER_WORKFLOW__*` variables (durations as `*_secs` and `*_ms` numbers), the way
//! `providers::config` owns `[providers.<name>]`.
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use serde::{Deserialize, Serialize};

use crate::config_check::{MAX_BATCH, MAX_BODY_BYTES, MAX_SECS, MIN_BODY_BYTES, check_range};

/// Most attempts a step may be given: far past any useful retry policy, while an attempt
/// counter stays small.
const MAX_ATTEMPTS: u32 = 1_000;
/// Longest a retry may be put off, in milliseconds (a day).
const MAX_BACKOFF_MS: u64 = 24 * 3600 * 1000;
/// The registry's look for due work: at least every minute, at most every 10 ms (more often
/// only burns the database).
const MIN_TICK_MS: u64 = 10;
const MAX_TICK_MS: u64 = 60_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Past this many seconds after creation a generation is released with `timeout`.
    pub overall_deadline_secs: u64,
    /// Seconds a provider has to accept a task before the submission counts as failed.
    pub submit_deadline_secs: u64,
    /// Seconds to wait for a callback before asking the provider.
    pub callback_deadline_secs: u64,
    /// How long signed URLs for results and inputs stay valid, in seconds (the engine hands
    /// them to providers, the API to clients).
    pub url_ttl_secs: u64,
    /// Seconds a download (a result, an input URL) may take.
    pub download_timeout_secs: u64,
    /// Seconds one step of a workflow (a submission, a poll, an upload) may take; a step is
    /// also always cut at the workflow's next deadline.
    pub step_timeout_secs: u64,
    /// Whether this process drives workflows (off: it only serves the API).
    pub run_engine: bool,
    /// Largest result we download or accept inline, in bytes.
    pub max_result_bytes: usize,
    /// Attempts at one step (a submission, a poll, an upload) before the workflow is released.
    pub max_attempts: u32,
    /// Retries back off exponentially, with jitter, from this many milliseconds...
    pub backoff_min_ms: u64,
    /// ...to at most this many.
    pub backoff_max_ms: u64,
    /// Milliseconds between the registry's looks for due workflows.
    pub tick_ms: u64,
    /// Most writes one workflow transaction carries.
    pub max_batch: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            overall_deadline_secs: 900,
            submit_deadline_secs: 60,
            callback_deadline_secs: 120,
            url_ttl_secs: 3600,
            download_timeout_secs: 60,
            step_timeout_secs: 120,
            run_engine: true,
            max_result_bytes: 50 * 1024 * 1024,
            max_attempts: 8,
            backoff_min_ms: 500,
            backoff_max_ms: 60_000,
            tick_ms: 200,
            max_batch: crate::workflow::DEFAULT_MAX_BATCH,
        }
    }
}

impl EngineConfig {
    /// Every setting within its bounds, or a message naming the first that is not (the keys
    /// as an operator writes them, `workflow.…`).
    pub fn validate(&self) -> Result<(), String> {
        for (key, value) in [
            ("workflow.overall_deadline_secs", self.overall_deadline_secs),
            ("workflow.submit_deadline_secs", self.submit_deadline_secs),
            (
                "workflow.callback_deadline_secs",
                self.callback_deadline_secs,
            ),
            ("workflow.url_ttl_secs", self.url_ttl_secs),
            ("workflow.download_timeout_secs", self.download_timeout_secs),
            ("workflow.step_timeout_secs", self.step_timeout_secs),
        ] {
            check_range(key, value, 1, MAX_SECS)?;
        }
        check_range(
            "workflow.max_result_bytes",
            self.max_result_bytes,
            MIN_BODY_BYTES,
            MAX_BODY_BYTES,
        )?;
        check_range("workflow.max_attempts", self.max_attempts, 1, MAX_ATTEMPTS)?;
        check_range(
            "workflow.backoff_min_ms",
            self.backoff_min_ms,
            1,
            MAX_BACKOFF_MS,
        )?;
        // The upper bound may not undercut the lower one: the backoff would then never grow.
        check_range(
            "workflow.backoff_max_ms",
            self.backoff_max_ms,
            self.backoff_min_ms,
            MAX_BACKOFF_MS,
        )?;
        check_range("workflow.tick_ms", self.tick_ms, MIN_TICK_MS, MAX_TICK_MS)?;
        check_range("workflow.max_batch", self.max_batch, 1, MAX_BATCH)
    }

    pub fn submit_deadline(&self) -> Duration {
        Duration::from_secs(self.submit_deadline_secs)
    }

    pub fn callback_deadline(&self) -> Duration {
        Duration::from_secs(self.callback_deadline_secs)
    }

    pub fn download_timeout(&self) -> Duration {
        Duration::from_secs(self.download_timeout_secs)
    }

    pub fn step_timeout(&self) -> Duration {
        Duration::from_secs(self.step_timeout_secs)
    }

    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }

    /// Exponential backoff with jitter for the `attempt`-th retry, from `backon`, between
    /// `backoff_min_ms` and `backoff_max_ms`.
    pub fn retry_delay(&self, attempt: i32) -> Duration {
        let max = Duration::from_millis(self.backoff_max_ms);
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.backoff_min_ms))
            .with_max_delay(max)
            .with_max_times(usize::MAX)
            .with_jitter()
            .build()
            .nth(attempt.max(0) as usize)
            .unwrap_or(max)
    }

    /// Whether a step that has now failed `attempt` times is out of attempts.
    pub fn out_of_attempts(&self, attempt: i32) -> bool {
        i64::from(attempt) >= i64::from(self.max_attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(change: impl FnOnce(&mut EngineConfig)) -> String {
        let mut config = EngineConfig::default();
        change(&mut config);
        config.validate().expect_err("accepted")
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(EngineConfig::default().validate(), Ok(()));
    }

    /// Zero or absurd values stop the start with a message naming the key.
    #[test]
    fn out_of_bounds_values_are_refused_naming_the_key() {
        type Change = fn(&mut EngineConfig);
        let cases: [(&str, Change); 10] = [
            ("workflow.max_result_bytes", |c| c.max_result_bytes = 0),
            ("workflow.max_result_bytes", |c| {
                c.max_result_bytes = 1 << 40
            }),
            ("workflow.max_attempts", |c| c.max_attempts = 0),
            ("workflow.max_attempts", |c| c.max_attempts = 1_000_000),
            ("workflow.backoff_min_ms", |c| c.backoff_min_ms = 0),
            ("workflow.backoff_max_ms", |c| {
                c.backoff_max_ms = 100_000_000_000
            }),
            ("workflow.backoff_max_ms", |c| {
                (c.backoff_min_ms, c.backoff_max_ms) = (1_000, 999)
            }),
            ("workflow.tick_ms", |c| c.tick_ms = 0),
            ("workflow.tick_ms", |c| c.tick_ms = 3_600_000),
            ("workflow.max_batch", |c| c.max_batch = 0),
        ];
        for (key, change) in cases {
            let error = refused(change);
            assert!(error.starts_with(key), "{key}: {error}");
        }
    }

    #[test]
    fn the_backoff_stays_within_its_bounds() {
        let config = EngineConfig {
            backoff_min_ms: 100,
            backoff_max_ms: 400,
            ..EngineConfig::default()
        };
        for attempt in [0, 1, 5, 50] {
            let delay = config.retry_delay(attempt);
            assert!(delay >= Duration::from_millis(100), "{attempt}: {delay:?}");
            // Jitter adds up to one more delay on top of the capped one.
            assert!(delay <= Duration::from_millis(800), "{attempt}: {delay:?}");
        }
    }

    #[test]
    fn attempts_run_out_at_max_attempts() {
        let config = EngineConfig {
            max_attempts: 2,
            ..EngineConfig::default()
        };
        assert!(!config.out_of_attempts(1));
        assert!(config.out_of_attempts(2));
    }

    /// A section that names some keys takes the defaults for the rest; unknown keys are
    /// refused.
    #[test]
    fn a_partial_section_takes_the_defaults() {
        let config: EngineConfig = serde_json::from_str(r#"{"max_attempts": 3}"#).unwrap();
        assert_eq!(
            config,
            EngineConfig {
                max_attempts: 3,
                ..EngineConfig::default()
            }
        );
        let unknown = serde_json::from_str::<EngineConfig>(r#"{"max_attempt": 3}"#);
        assert!(unknown.is_err());
    }
}
