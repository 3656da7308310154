//! `[cluster]`: how engine processes on one PostgreSQL database share the shards. Every
//! process of a deployment must use the same values (a process renewing slower than another's
//! TTL would lose its leases at every tick).
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config_check::check_range;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// How long a lease lasts past its last renewal, in milliseconds: after a crash, another
    /// process takes the shards within about this.
    pub lease_ttl_ms: u64,
    /// Milliseconds between renewals (also heartbeats and balancing); at most a third of the
    /// TTL, so that two renewals may fail before a lease lapses.
    pub renew_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            lease_ttl_ms: 10_000,
            renew_ms: 2_000,
        }
    }
}

impl ClusterConfig {
    pub fn validate(&self) -> Result<(), String> {
        check_range("cluster.lease_ttl_ms", self.lease_ttl_ms, 300, 600_000)?;
        check_range("cluster.renew_ms", self.renew_ms, 50, self.lease_ttl_ms / 3)
    }

    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }

    pub fn renew_every(&self) -> Duration {
        Duration::from_millis(self.renew_ms)
    }

    /// How long this process trusts a renewal, from the instant it was sent: a renewal
    /// interval short of the TTL, so that it stops starting steps before the lease can lapse.
    pub fn validity(&self) -> Duration {
        self.ttl().saturating_sub(self.renew_every())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_renewals_fit_the_ttl() {
        assert_eq!(ClusterConfig::default().validate(), Ok(()));
        let slow = ClusterConfig {
            lease_ttl_ms: 3_000,
            renew_ms: 1_500,
        };
        assert!(slow.validate().unwrap_err().starts_with("cluster.renew_ms"));
        let short = ClusterConfig {
            lease_ttl_ms: 10,
            renew_ms: 3,
        };
        assert!(
            short
                .validate()
                .unwrap_err()
                .starts_with("cluster.lease_ttl_ms")
        );
    }
}
