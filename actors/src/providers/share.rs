//! A process's part of a provider's account limits (issue 13). `max_concurrency` and
//! `requests_per_second` are what the operator's account at the provider allows in all, not
//! per process: with several engine processes on one database each takes an equal part of
//! both, as its lease keeper tells it from the live count in `engine_members`, so that
//! together they stay within the account's limits.
//!
//! Concurrency is whole calls: `configured / of` each, the remainder to the first processes by
//! rank (so that the parts add up to the limit), and at least one, since a process without a
//! slot could never call the provider (with fewer slots than processes, the sum then passes
//! the limit). A rate need not be whole: each process starts `configured / of` calls per
//! second, a `governor` quota with that period, whose burst is the whole part of it (at least
//! one).
use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;

/// This process's part: one of `of` live engine processes, `rank`th among them by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub of: usize,
    pub rank: usize,
}

impl Share {
    /// The only process: the limits as configured (SQLite, or before the first heartbeat).
    pub const ALONE: Share = Share { of: 1, rank: 0 };

    /// One of `of` (at least one), `rank` counted from 0 and below `of`.
    pub fn new(of: usize, rank: usize) -> Self {
        let of = of.max(1);
        Self {
            of,
            rank: rank.min(of - 1),
        }
    }

    /// Calls in flight at once, of `configured` for all processes.
    pub fn concurrency(self, configured: usize) -> usize {
        let extra = usize::from(self.rank < configured % self.of);
        (configured / self.of + extra).max(1)
    }

    /// Calls started per second, of `configured` for all processes.
    pub fn rate(self, configured: NonZeroU32) -> f64 {
        f64::from(configured.get()) / self.of as f64
    }

    /// The rate limiter's quota for `rate`: one call every `of / configured` seconds.
    pub fn quota(self, configured: NonZeroU32) -> Quota {
        let of = u32::try_from(self.of).unwrap_or(u32::MAX);
        let whole = configured.get() / of;
        let burst = NonZeroU32::new(whole).unwrap_or(NonZeroU32::MIN);
        // A period under a nanosecond (billions of calls a second) is no limit worth keeping
        // exactly: the whole part per second then.
        Quota::with_period(Duration::from_secs(u64::from(of)) / configured.get())
            .map(|quota| quota.allow_burst(burst))
            .unwrap_or_else(|| Quota::per_second(burst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn alone_the_limits_are_as_configured() {
        assert_eq!(Share::ALONE.concurrency(64), 64);
        assert_eq!(Share::ALONE.rate(rate(5)), 5.0);
        assert_eq!(Share::ALONE.quota(rate(5)), Quota::per_second(rate(5)));
    }

    #[test]
    fn the_parts_of_the_concurrency_add_up_to_the_limit() {
        let parts = |configured, of| {
            (0..of)
                .map(|rank| Share::new(of, rank).concurrency(configured))
                .collect::<Vec<_>>()
        };
        assert_eq!(parts(4, 2), [2, 2]);
        assert_eq!(parts(64, 3), [22, 21, 21]);
        assert_eq!(parts(5, 3), [2, 2, 1]);
        // Fewer slots than processes: each keeps one, or it could never call.
        assert_eq!(parts(1, 3), [1, 1, 1]);
    }

    #[test]
    fn the_rate_is_split_exactly_even_below_one_a_second() {
        let half = Share::new(2, 1);
        assert_eq!(half.rate(rate(5)), 2.5);
        let quota = half.quota(rate(5));
        assert_eq!(quota.replenish_interval(), Duration::from_millis(400));
        assert_eq!(quota.burst_size().get(), 2);
        let third = Share::new(3, 0).quota(rate(1));
        assert_eq!(third.replenish_interval(), Duration::from_secs(3));
        assert_eq!(third.burst_size().get(), 1);
        let huge = Share::ALONE.quota(rate(u32::MAX));
        assert_eq!(huge.burst_size().get(), u32::MAX);
    }

    #[test]
    fn a_rank_past_the_count_is_the_last() {
        assert_eq!(Share::new(0, 5), Share::ALONE);
        assert_eq!(Share::new(2, 7), Share { of: 2, rank: 1 });
    }
}
