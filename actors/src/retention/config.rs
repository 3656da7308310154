//! `[retention]`: how long what a generation leaves behind is kept after it ended. One shape
//! with one set of defaults, as `engine::config` owns `[workflow]`.
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config_check::check_range;

/// Longest retention one may ask for, in days (100 years: "forever" is 0).
pub const MAX_DAYS: u32 = 36_500;
/// Most workflows one pruner transaction may cover: each batch deletes a few rows per
/// workflow, and must stay a short transaction beside the hot path's.
pub const MAX_BATCH_SIZE: u64 = 1_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days after a generation ended (settled or released) before its events, provider
    /// callbacks, idempotency key and finished webhook deliveries are deleted; 0 keeps them
    /// forever. Its row, its hold and its ledger entries are never deleted.
    pub days: u32,
    /// Days after a generation settled before its result object is deleted from storage; 0
    /// keeps results forever.
    pub results_days: u32,
    /// Seconds between two passes of the pruner.
    pub interval_secs: u64,
    /// Most workflows pruned (or results expired) per transaction.
    pub batch_size: u64,
    /// Milliseconds the pruner rests between two batches of a pass, leaving the database to
    /// the hot path.
    pub pause_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            days: 30,
            results_days: 0,
            interval_secs: 600,
            batch_size: 100,
            pause_ms: 200,
        }
    }
}

impl RetentionConfig {
    /// Every setting within its bounds, or a message naming the first that is not.
    pub fn validate(&self) -> Result<(), String> {
        check_range("retention.days", self.days, 0, MAX_DAYS)?;
        check_range("retention.results_days", self.results_days, 0, MAX_DAYS)?;
        check_range("retention.interval_secs", self.interval_secs, 1, 86_400)?;
        check_range("retention.batch_size", self.batch_size, 1, MAX_BATCH_SIZE)?;
        check_range("retention.pause_ms", self.pause_ms, 0, 60_000)?;
        Ok(())
    }

    /// Whether anything is ever deleted: otherwise no pruner runs.
    pub fn enabled(&self) -> bool {
        self.days > 0 || self.results_days > 0
    }

    /// How long after it ended a generation's rows are kept, if they are not kept forever.
    pub fn rows(&self) -> Option<chrono::Duration> {
        (self.days > 0).then(|| chrono::Duration::days(self.days.into()))
    }

    /// How long after it settled a result object is kept, if not forever.
    pub fn results(&self) -> Option<chrono::Duration> {
        (self.results_days > 0).then(|| chrono::Duration::days(self.results_days.into()))
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }

    pub fn pause(&self) -> Duration {
        Duration::from_millis(self.pause_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_keep_rows_thirty_days_and_results_forever() {
        let config = RetentionConfig::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.rows(), Some(chrono::Duration::days(30)));
        assert_eq!(config.results(), None);
        assert!(config.enabled());
    }

    #[test]
    fn zero_days_everywhere_disables_the_pruner() {
        let config = RetentionConfig {
            days: 0,
            ..RetentionConfig::default()
        };
        assert!(config.validate().is_ok());
        assert!(!config.enabled());
    }

    #[test]
    fn out_of_range_settings_are_refused_by_name() {
        for (config, key) in [
            (
                RetentionConfig {
                    batch_size: 0,
                    ..RetentionConfig::default()
                },
                "retention.batch_size",
            ),
            (
                RetentionConfig {
                    batch_size: MAX_BATCH_SIZE + 1,
                    ..RetentionConfig::default()
                },
                "retention.batch_size",
            ),
            (
                RetentionConfig {
                    days: MAX_DAYS + 1,
                    ..RetentionConfig::default()
                },
                "retention.days",
            ),
            (
                RetentionConfig {
                    interval_secs: 0,
                    ..RetentionConfig::default()
                },
                "retention.interval_secs",
            ),
        ] {
            assert!(config.validate().unwrap_err().contains(key), "{key}");
        }
    }
}
