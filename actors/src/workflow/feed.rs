//! The feed of committed transitions that live status streams (SSE) read: never intentions,
//! only timeline rows a transaction has committed.
//!
//! - The workflow writer calls `Feed::committed` after each batch it applied. That signal is
//!   all the feed takes from the writer: what it sends, it reads back from `workflow_events`.
//!   A later multi-process deployment replaces the local signal with PostgreSQL
//!   `LISTEN/NOTIFY` from every writer and changes nothing else.
//! - One task reads the new rows once per signal (only while someone listens) and broadcasts
//!   them as a `FeedBatch` to every subscriber, each of which keeps the rows it may see.
//! - A batch says which ids it covers, `(after, upto]`. A subscriber that finds a hole before
//!   `after` (it subscribed while the feed caught up, or it lagged behind the bounded
//!   channel) reads the hole from the database itself, so a slow reader costs a query, never
//!   an unbounded buffer, and never misses a row.
//!
//! Event ids are `workflow_events.id`: one writer per process commits the rows in id order.
//! Another process's commits reach this feed by a poll every second. With several writing
//! processes, ids could commit out of order and a reader could pass over one committed late;
//! issue 13 (`LISTEN/NOTIFY`) addresses it, docs/design.md §5 notes it.
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::{broadcast, watch};

pub use super::feed_event::{FeedEvent, Scope};
use super::read;

/// Batches the channel keeps for subscribers that are behind; one further behind reads the
/// database instead.
const CHANNEL_BATCHES: usize = 256;

/// How often the feed looks for rows no signal announced (other processes' commits).
const POLL: Duration = Duration::from_secs(1);

/// Rows one read of the feed takes; a larger backlog is read in several.
pub const PAGE: u64 = 500;

/// Every committed event with an id in `(after, upto]`, in id order (possibly none: the feed
/// skipped ahead to `upto`, and subscribers read what they miss from the database).
#[derive(Debug)]
pub struct FeedBatch {
    pub after: i64,
    pub upto: i64,
    pub events: Vec<FeedEvent>,
    /// The process is stopping: streams end.
    pub closing: bool,
}

pub struct Feed {
    signal: watch::Sender<u64>,
    batches: broadcast::Sender<Arc<FeedBatch>>,
}

impl Feed {
    /// The feed, with its reading task on the current runtime.
    pub fn start(db: DatabaseConnection) -> Arc<Self> {
        Self::start_with_capacity(db, CHANNEL_BATCHES)
    }

    /// As `start`, keeping `batches` batches for subscribers behind (tests make it small).
    pub fn start_with_capacity(db: DatabaseConnection, batches: usize) -> Arc<Self> {
        let (signal, signals) = watch::channel(0);
        let (batches, _) = broadcast::channel(batches);
        tokio::spawn(run(db, signals, batches.clone()));
        Arc::new(Self { signal, batches })
    }

    /// A batch of transitions committed: the feed reads them (when anyone listens).
    pub fn committed(&self) {
        self.signal
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Every batch from now on. Subscribe first, then read the past from the database: the
    /// two overlap, never leave a hole.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedBatch>> {
        self.batches.subscribe()
    }

    /// Ends every stream (a stopping server waits for open connections).
    pub fn close(&self) {
        let _ = self.batches.send(Arc::new(FeedBatch {
            after: 0,
            upto: 0,
            events: Vec::new(),
            closing: true,
        }));
    }

    pub fn subscribers(&self) -> usize {
        self.batches.receiver_count()
    }
}

/// Reads what each signal committed and broadcasts it, until the feed is dropped.
async fn run(
    db: DatabaseConnection,
    mut signals: watch::Receiver<u64>,
    batches: broadcast::Sender<Arc<FeedBatch>>,
) {
    // `None`: nobody listened at the last signal, so the feed does not know where it is.
    let mut cursor: Option<i64> = None;
    // Another process's writer (an API-only process beside the engine) signals nobody here:
    // its commits are read at the next poll.
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = signals.changed() => if changed.is_err() { return },
            _ = poll.tick() => {}
        }
        if batches.receiver_count() == 0 {
            cursor = None;
            continue;
        }
        match broadcast_new(&db, cursor, &batches).await {
            Ok(at) => cursor = Some(at),
            Err(error) => {
                // Subscribers fill the hole from the database at the next batch.
                tracing::warn!(%error, "the transition feed could not read the timeline");
                cursor = None;
            }
        }
    }
}

/// Broadcasts the events after `cursor` (after the newest one when `None`, announcing the
/// skip); the new cursor.
async fn broadcast_new(
    db: &DatabaseConnection,
    cursor: Option<i64>,
    batches: &broadcast::Sender<Arc<FeedBatch>>,
) -> Result<i64, DbErr> {
    let mut after = match cursor {
        Some(cursor) => cursor,
        None => {
            let newest = read::newest_event_id(db).await?;
            send(batches, newest, newest, Vec::new());
            return Ok(newest);
        }
    };
    loop {
        let events = read::feed_events(db, Scope::All, after, None, PAGE).await?;
        let Some(last) = events.last().map(|event| event.id) else {
            return Ok(after);
        };
        let full = events.len() as u64 == PAGE;
        send(batches, after, last, events);
        after = last;
        if !full {
            return Ok(after);
        }
    }
}

fn send(
    batches: &broadcast::Sender<Arc<FeedBatch>>,
    after: i64,
    upto: i64,
    events: Vec<FeedEvent>,
) {
    // No receiver left is no error: nobody is listening any more.
    let _ = batches.send(Arc::new(FeedBatch {
        after,
        upto,
        events,
        closing: false,
    }));
}

/// One stream's view of the feed: every event in its scope after a given id, in order,
/// exactly once, whatever it missed while it was behind.
pub struct Follower {
    db: DatabaseConnection,
    scope: Scope,
    batches: broadcast::Receiver<Arc<FeedBatch>>,
    /// Every event up to here is queued or delivered (or not in scope).
    read_to: i64,
    /// Ids the follower still has to read from the database: up to `Some(id)`, or to the
    /// newest (`None`).
    hole: Option<Option<i64>>,
    /// A batch that arrived after a hole, applied once the hole is read.
    held: Option<Arc<FeedBatch>>,
    queued: std::collections::VecDeque<FeedEvent>,
    closed: bool,
}

impl Follower {
    /// Follows `scope` from just after event `after` (0: from the beginning).
    pub fn new(feed: &Feed, db: DatabaseConnection, scope: Scope, after: i64) -> Self {
        Self {
            batches: feed.subscribe(),
            db,
            scope,
            read_to: after,
            hole: Some(None),
            held: None,
            queued: Default::default(),
            closed: false,
        }
    }

    /// The next event; `None` once the feed closes.
    pub async fn next(&mut self) -> Result<Option<FeedEvent>, DbErr> {
        loop {
            if let Some(event) = self.queued.pop_front() {
                return Ok(Some(event));
            }
            if self.closed {
                return Ok(None);
            }
            if let Some(upto) = self.hole {
                self.read_hole(upto).await?;
            } else if let Some(batch) = self.held.take() {
                self.apply(&batch);
            } else {
                self.receive().await;
            }
        }
    }

    /// Reads one page of the hole from the database.
    async fn read_hole(&mut self, upto: Option<i64>) -> Result<(), DbErr> {
        let events = read::feed_events(&self.db, self.scope, self.read_to, upto, PAGE).await?;
        let full = events.len() as u64 == PAGE;
        if let Some(last) = events.last() {
            self.read_to = last.id;
        }
        self.queued.extend(events);
        if !full {
            if let Some(upto) = upto {
                self.read_to = self.read_to.max(upto);
            }
            self.hole = None;
        }
        Ok(())
    }

    async fn receive(&mut self) {
        match self.batches.recv().await {
            Ok(batch) if batch.closing => self.closed = true,
            Ok(batch) if batch.after > self.read_to => {
                self.hole = Some(Some(batch.after));
                self.held = Some(batch);
            }
            Ok(batch) => self.apply(&batch),
            // Behind the channel: what it dropped is in the database.
            Err(broadcast::error::RecvError::Lagged(_)) => self.hole = Some(None),
            Err(broadcast::error::RecvError::Closed) => self.closed = true,
        }
    }

    fn apply(&mut self, batch: &FeedBatch) {
        let read_to = self.read_to;
        let fresh = batch
            .events
            .iter()
            .filter(|event| event.id > read_to && self.scope.admits(event))
            .cloned();
        self.queued.extend(fresh);
        self.read_to = self.read_to.max(batch.upto);
    }
}
