//! How far the feed of committed transitions may read without passing over an entry that
//! will still commit: the commit-safe frontier of `workflow_events` ids.
//!
//! Ids come from one sequence, but with several writing processes (or the API's writer beside
//! the engine's) they commit out of order: entry 101 can commit while 100 is still in its
//! transaction. A reader that moved its cursor to 101 would never see 100. So the feed reads
//! only up to a frontier below which nothing can commit any more.
//!
//! The rule, on PostgreSQL: a read that saw newest id `N` makes `N` final once every write
//! transaction running at that read has ended. Every id up to `N` was allocated before the
//! read (one sequence, allocated in order), and a transaction holding one the read could not
//! see was then running, with a transaction id — it had one, because every workflow
//! transaction locks its lease and row before it inserts timeline entries. Once those have
//! ended, what is there is all there will be. It needs no lock and no write, only a read per
//! look; under load it costs the feed about one transaction's duration of latency.
//!
//! Which transactions were running is read from `pg_stat_activity`, for this database only,
//! so that a long transaction in another database of the cluster holds nothing back. Where a
//! session here is another role's (its transaction hidden from the reader), the read falls
//! back to the snapshot: `N` is final once a later snapshot's `xmin` reaches the read's
//! `xmax`, which any long transaction on the cluster delays.
//!
//! SQLite has one writer at a time, which commits ids in order: the newest id is final.
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::read::{Horizon, Snapshot};

/// A read this long in waiting no longer holds the feed back (a transaction left open, which
/// only the snapshot's rule could see): should it ever commit entries, they reach streams only
/// through a reader's own read of the timeline. Logged when it happens.
pub const STALL: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Frontier {
    /// Every entry up to here that will ever commit has committed; `None`: not known yet.
    safe: Option<i64>,
    /// Reads not final yet, oldest first; their newest ids grow along the queue.
    pending: VecDeque<Pending>,
}

#[derive(Debug)]
struct Pending {
    newest: i64,
    snapshot: Snapshot,
    since: Instant,
}

impl Pending {
    /// Whether every transaction that could hold an id up to `newest` has ended by `now`.
    fn is_final(&self, now: &Snapshot) -> bool {
        if self.snapshot.xmax <= now.xmin {
            return true;
        }
        match (&self.snapshot.running, &now.running) {
            (Some(then), Some(still)) => !then.iter().any(|xid| still.contains(xid)),
            _ => false,
        }
    }
}

impl Frontier {
    /// Takes one read; the frontier after it.
    pub fn observe(&mut self, horizon: Horizon, now: Instant) -> Option<i64> {
        let Some(snapshot) = horizon.snapshot else {
            self.advance(horizon.newest);
            return self.safe;
        };
        let newest_pending = self.pending.back().map(|pending| pending.newest);
        if newest_pending
            .or(self.safe)
            .is_none_or(|seen| horizon.newest > seen)
        {
            self.pending.push_back(Pending {
                newest: horizon.newest,
                snapshot: snapshot.clone(),
                since: now,
            });
        }
        while let Some(front) = self.pending.front() {
            let stalled = now.duration_since(front.since) >= STALL;
            let is_final = front.is_final(&snapshot);
            if !is_final && !stalled {
                break;
            }
            if !is_final {
                tracing::warn!(
                    newest = front.newest,
                    waited_secs = STALL.as_secs(),
                    "a transaction open this long holds the status feed back; it goes on without it"
                );
            }
            let newest = front.newest;
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

    /// A read by the snapshot alone (another role's session in the database).
    fn read(newest: i64, xmin: i64, xmax: i64) -> Horizon {
        Horizon {
            newest,
            snapshot: Some(Snapshot {
                xmin,
                xmax,
                running: None,
            }),
        }
    }

    /// A read that sees which transactions run in this database; the cluster's oldest is 1.
    fn read_running(newest: i64, running: &[i64]) -> Horizon {
        Horizon {
            newest,
            snapshot: Some(Snapshot {
                xmin: 1,
                xmax: 1_000,
                running: Some(running.to_vec()),
            }),
        }
    }

    #[test]
    fn a_read_with_nothing_in_progress_is_final_at_once() {
        let mut frontier = Frontier::default();
        assert_eq!(frontier.observe(read(10, 50, 50), Instant::now()), Some(10));
        assert!(!frontier.waiting());
        let mut frontier = Frontier::default();
        assert_eq!(
            frontier.observe(read_running(10, &[]), Instant::now()),
            Some(10)
        );
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
    fn only_this_databases_transactions_hold_it_back() {
        let mut frontier = Frontier::default();
        let now = Instant::now();
        // 7 and 8 run here; the cluster's oldest (xmin 1) is elsewhere and stays open.
        assert_eq!(frontier.observe(read_running(10, &[7, 8]), now), None);
        assert_eq!(frontier.observe(read_running(12, &[8, 9]), now), None);
        // 7 and 8 ended (9 began after the first read): 10 is final, 12 waits for 9.
        assert_eq!(frontier.observe(read_running(12, &[9, 11]), now), Some(10));
        assert_eq!(frontier.observe(read_running(12, &[11]), now), Some(12));
    }

    #[test]
    fn a_hidden_session_falls_back_to_the_snapshot() {
        let mut frontier = Frontier::default();
        let now = Instant::now();
        assert_eq!(frontier.observe(read_running(10, &[7]), now), None);
        // The next read cannot see every transaction here: 7's end is not known from it.
        assert_eq!(frontier.observe(read(10, 1, 1_000), now), None);
        // The cluster's oldest passed the first read's xmax: final whatever ran here.
        assert_eq!(frontier.observe(read(10, 1_000, 1_001), now), Some(10));
    }

    #[test]
    fn it_never_moves_back() {
        let mut frontier = Frontier::default();
        let now = Instant::now();
        assert_eq!(frontier.observe(read(10, 50, 50), now), Some(10));
        assert_eq!(frontier.observe(read(7, 60, 60), now), Some(10));
        let sqlite = Horizon {
            newest: 3,
            snapshot: None,
        };
        assert_eq!(frontier.observe(sqlite, now), Some(10));
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
