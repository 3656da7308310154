//! Time is injected so that expiry, deadlines and timeouts can be tested without sleeping.
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// Wall-clock time, truncated to microseconds: PostgreSQL keeps no more, and a value must
/// compare equal after a round trip through the database.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        truncate_to_micros(Utc::now())
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(truncate_to_micros(start))))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().expect("clock poisoned");
        *now = truncate_to_micros(*now + by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock poisoned")
    }
}

/// `secs` seconds after `at`, saturating at the latest time `chrono` can hold: a setting or a
/// provider's answer can name any number, and none may make a handler panic.
pub fn saturating_after(at: DateTime<Utc>, secs: u64) -> DateTime<Utc> {
    i64::try_from(secs)
        .ok()
        .and_then(Duration::try_seconds)
        .and_then(|wait| at.checked_add_signed(wait))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

pub fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = at.timestamp_subsec_nanos();
    at - Duration::nanoseconds(i64::from(nanos % 1_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturating_after_never_overflows() {
        let now = Utc::now();
        assert_eq!(saturating_after(now, 60), now + Duration::seconds(60));
        assert_eq!(saturating_after(now, u64::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(
            saturating_after(now, 100_000_000_000_000),
            DateTime::<Utc>::MAX_UTC
        );
    }
}
