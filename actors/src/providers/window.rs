//! A provider's recent calls in per-minute buckets over the last hour: counts, errors, 429s
//! and a latency histogram per minute, so that the error rate and the p50/p95 latency over
//! the last 5 and 60 minutes are read without keeping every call. Bounded: 60 buckets of
//! `LATENCY_BOUNDS.len() + 1` counters, whatever the traffic. Pure: time is passed in.
use std::time::{Duration, Instant};

/// Upper bounds of the latency buckets, in milliseconds: about 25% apart from 1 ms to 5 min,
/// so a percentile is read to within a quarter of its value.
const LATENCY_BOUNDS: [u32; 56] = [
    1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32, 40, 50, 63, 79, 100, 126, 158, 200, 251, 316, 398,
    501, 631, 794, 1_000, 1_259, 1_585, 1_995, 2_512, 3_162, 3_981, 5_012, 6_310, 7_943, 10_000,
    12_589, 15_849, 19_953, 25_119, 31_623, 39_811, 50_119, 63_096, 79_433, 100_000, 125_893,
    158_489, 199_526, 251_189, 300_000, 400_000, 500_000, 600_000,
];

/// Minutes the window keeps.
pub const MINUTES: usize = 60;

#[derive(Clone)]
struct Bucket {
    /// Minutes since the window's start this bucket counts; a stale bucket is reset on use.
    minute: u64,
    calls: u64,
    errors: u64,
    throttled: u64,
    latency: [u32; LATENCY_BOUNDS.len() + 1],
}

impl Bucket {
    fn empty(minute: u64) -> Self {
        Self {
            minute,
            calls: 0,
            errors: 0,
            throttled: 0,
            latency: [0; LATENCY_BOUNDS.len() + 1],
        }
    }
}

/// How a call ended, as the window counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Ok,
    /// Any failure but a 429.
    Failed,
    /// The provider answered 429.
    Throttled,
}

/// What the window says about the last `minutes`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub calls: u64,
    pub errors: u64,
    pub throttled: u64,
    /// Errors (429s included) over calls; `None` without calls.
    pub error_rate: Option<f64>,
    /// Upper bounds of the latency buckets the median and the 95th percentile fall in.
    pub p50_ms: Option<u32>,
    pub p95_ms: Option<u32>,
}

pub struct CallWindow {
    start: Instant,
    buckets: Vec<Bucket>,
}

impl CallWindow {
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            buckets: (0..MINUTES).map(|_| Bucket::empty(u64::MAX)).collect(),
        }
    }

    fn minute(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_secs() / 60
    }

    /// Counts a call that ended at `now` after `took`.
    pub fn record(&mut self, now: Instant, took: Duration, ended: Ended) {
        let minute = self.minute(now);
        let bucket = &mut self.buckets[(minute % MINUTES as u64) as usize];
        if bucket.minute != minute {
            *bucket = Bucket::empty(minute);
        }
        bucket.calls += 1;
        match ended {
            Ended::Ok => {}
            Ended::Failed => bucket.errors += 1,
            Ended::Throttled => {
                bucket.errors += 1;
                bucket.throttled += 1;
            }
        }
        let ms = took.as_millis().min(u32::MAX as u128) as u32;
        let slot = LATENCY_BOUNDS.partition_point(|bound| *bound < ms);
        bucket.latency[slot] += 1;
    }

    /// The last `minutes` (the current one included), at most `MINUTES`.
    pub fn summary(&self, now: Instant, minutes: usize) -> Summary {
        let current = self.minute(now);
        let oldest = current.saturating_sub(minutes.clamp(1, MINUTES) as u64 - 1);
        let mut latency = [0u64; LATENCY_BOUNDS.len() + 1];
        let (mut calls, mut errors, mut throttled) = (0, 0, 0);
        for bucket in &self.buckets {
            if bucket.minute < oldest || bucket.minute > current {
                continue;
            }
            calls += bucket.calls;
            errors += bucket.errors;
            throttled += bucket.throttled;
            for (sum, count) in latency.iter_mut().zip(bucket.latency) {
                *sum += u64::from(count);
            }
        }
        Summary {
            calls,
            errors,
            throttled,
            error_rate: (calls > 0).then(|| errors as f64 / calls as f64),
            p50_ms: percentile(&latency, calls, 0.50),
            p95_ms: percentile(&latency, calls, 0.95),
        }
    }
}

/// The upper bound of the bucket the `q`-th of `total` calls falls in (the last bucket, past
/// every bound, reads as the largest bound).
fn percentile(latency: &[u64], total: u64, q: f64) -> Option<u32> {
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (slot, count) in latency.iter().enumerate() {
        seen += count;
        if seen >= rank {
            let last = LATENCY_BOUNDS[LATENCY_BOUNDS.len() - 1];
            return Some(LATENCY_BOUNDS.get(slot).copied().unwrap_or(last));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn percentiles_and_rates_cover_the_asked_minutes_only() {
        let start = Instant::now();
        let mut window = CallWindow::new(start);
        // Ten minutes ago: 10 slow failures.
        for _ in 0..10 {
            window.record(start, Duration::from_secs(2), Ended::Failed);
        }
        let now = start + 10 * MINUTE;
        for ms in [10, 10, 10, 10, 10, 10, 10, 10, 10, 400] {
            window.record(now, Duration::from_millis(ms), Ended::Ok);
        }
        window.record(now, Duration::from_millis(10), Ended::Throttled);
        let recent = window.summary(now, 5);
        assert_eq!((recent.calls, recent.errors, recent.throttled), (11, 1, 1));
        assert_eq!(recent.p50_ms, Some(10));
        assert_eq!(recent.p95_ms, Some(501));
        let hour = window.summary(now, 60);
        assert_eq!((hour.calls, hour.errors), (21, 11));
        assert_eq!(
            hour.p95_ms,
            Some(2_512),
            "2 s falls in the bucket up to 2.5 s"
        );
        assert!((hour.error_rate.unwrap() - 11.0 / 21.0).abs() < 1e-9);
    }

    #[test]
    fn an_hour_later_the_old_buckets_are_gone() {
        let start = Instant::now();
        let mut window = CallWindow::new(start);
        window.record(start, Duration::from_millis(5), Ended::Failed);
        let later = start + 61 * MINUTE;
        assert_eq!(window.summary(later, 60).calls, 0);
        assert_eq!(window.summary(later, 60).p50_ms, None);
        // Reused slot: the stale count does not add to the new minute's.
        window.record(start + 60 * MINUTE, Duration::from_millis(5), Ended::Ok);
        let summary = window.summary(start + 60 * MINUTE, 1);
        assert_eq!((summary.calls, summary.errors), (1, 0));
    }
}
