//! How far the feed of committed transitions may read without passing over an entry that
//! will still commit: the commit-safe frontier of `workflow_events` ids.
//!
//! Ids come from one sequence, but with several writing processes (or the API's writer beside
//! the engine's) they commit out of order: entry 101 can commit while 100 is still in its
//! transaction. A reader that moved its cursor to 101 would never see 100. So the feed reads
//! only up to a frontier below which nothing can commit any more.
//!
//! The rule, on PostgreSQL: a read whose snapshot saw newest id `N` and had `xmax = X` makes
//! `N` final once a later snapshot's `xmin` reaches `X`. Every id up to `N` was allocated
//! before that read (one sequence, allocated in order), and the transaction holding one that
//! the read could not see was then in progress, with an id below `X` — it had one, because
//! every workflow transaction locks its lease and row before it inserts timeline entries. Once
//! `xmin ≥ X`, all of those have committed or rolled back: what is there is all there will
//! be. It needs no lock and no write, only a snapshot per read; under load it costs the feed
//! about one transaction's duration of latency. (Outbox relays on PostgreSQL use the same
//! snapshot rule.)
//!
//! SQLite has one writer at a time, which commits ids in order: the newest id is final.
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::read::Horizon;

/// A transaction open this long (another application's, on the same cluster) no longer
/// holds the feed back: its entries, should it ever commit some, reach streams only through
/// a reader's own read of the timeline. Logged when it happens.
pub const STALL: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Frontier {
    /// Every entry up to here that will ever commit has committed; `None`: not known yet.
    safe: Option<i64>,
    /// Reads not final yet: (newest id seen, the snapshot's xmax, when), oldest first. Both
    /// numbers grow along the queue.
    pending: VecDeque<(i64, i64, Instant)>,
}

impl Frontier {
    /// Takes one read; the frontier after it.
    pub fn observe(&mut self, horizon: Horizon, now: Instant) -> Option<i64> {
        let Some((xmin, xmax)) = horizon.snapshot else {
            self.advance(horizon.newest);
            return self.safe;
        };
        let newest_pending = self.pending.back().map(|(newest, ..)| *newest);
        if newest_pending
            .or(self.safe)
            .is_none_or(|seen| horizon.newest > seen)
        {
            self.pending.push_back((horizon.newest, xmax, now));
        }
        while let Some(&(newest, waits_for, since)) = self.pending.front() {
            let stalled = now.duration_since(since) >= STALL;
            if waits_for > xmin && !stalled {
                break;
            }
            if waits_for > xmin {
                tracing::warn!(
                    newest,
                    waited_secs = STALL.as_secs(),
                    "a transaction open this long holds the status feed back; it goes on without it"
                );
            }
            self.advance(newest);
            self.pending.pop_front();
        }
        self.safe
    }

    /// Reads are waiting for transactions to end: the feed looks again soon.
    pub fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    fn advance(&mut self, to: i64) {
        self.safe = Some(self.safe.map_or(to, |safe| safe.max(to)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(newest: i64, xmin: i64, xmax: i64) -> Horizon {
        Horizon {
            newest,
            snapshot: Some((xmin, xmax)),
        }
    }

    #[test]
    fn a_read_with_nothing_in_progress_is_final_at_once() {
        let mut frontier = Frontier::default();
        assert_eq!(frontier.observe(read(10, 50, 50), Instant::now()), Some(10));
        assert!(!frontier.waiting());
    }

    #[test]
    fn a_read_waits_until_the_transactions_it_saw_in_progress_end() {
        let mut frontier = Frontier::default();
        let now = Instant::now();
        // Transaction 48 was in progress: ids up to 10 may still commit.
        assert_eq!(frontier.observe(read(10, 48, 50), now), None);
        // Newer transactions (50 and up) do not hold it back; 48 and 49 still do.
        assert_eq!(frontier.observe(read(12, 49, 55), now), None);
        assert!(frontier.waiting());
        // 48 and 49 ended: 10 is final, 12 waits for what was open at its read (up to 54).
        assert_eq!(frontier.observe(read(12, 50, 56), now), Some(10));
        assert_eq!(frontier.observe(read(12, 56, 56), now), Some(12));
        assert!(!frontier.waiting());
    }

    #[test]
    fn it_never_moves_back() {
        let mut frontier = Frontier::default();
        let now = Instant::now();
        assert_eq!(frontier.observe(read(10, 50, 50), now), Some(10));
        assert_eq!(frontier.observe(read(7, 60, 60), now), Some(10));
        assert_eq!(
            frontier.observe(
                Horizon {
                    newest: 3,
                    snapshot: None
                },
                now
            ),
            Some(10)
        );
    }

    #[test]
    fn a_transaction_open_too_long_stops_holding_it_back() {
        let mut frontier = Frontier::default();
        let start = Instant::now();
        assert_eq!(frontier.observe(read(10, 48, 50), start), None);
        assert_eq!(frontier.observe(read(10, 48, 60), start + STALL), Some(10));
    }

    #[test]
    fn sqlite_reads_are_final() {
        let mut frontier = Frontier::default();
        let horizon = Horizon {
            newest: 4,
            snapshot: None,
        };
        assert_eq!(frontier.observe(horizon, Instant::now()), Some(4));
    }
}
