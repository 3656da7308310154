//! The feed of committed transitions that live status streams (SSE) read: never intentions,
//! only timeline rows a transaction has committed.
//!
//! - Every workflow writer calls `Feed::committed` after each batch it applied; on PostgreSQL
//!   it also notifies the other processes (`atelier_feed`, at most every 100 ms), whose
//!   listeners call it there. That signal is all the feed takes from the writers: what it
//!   sends, it reads back from `workflow_events`. A poll every second covers a lost
//!   notification.
//! - One task reads the new rows once per signal (only while someone listens) and broadcasts
//!   them as a `FeedBatch` to every subscriber, each of which keeps the rows it may see.
//!   Unheard, it still keeps its frontier fresh once a second, so that a stream that starts
//!   "from now" starts from a safe point.
//! - It reads only up to the commit-safe frontier (`feed_frontier`): ids commit out of order
//!   when several processes write, and a cursor past an id still in its transaction would
//!   never see it.
//! - A batch says which ids it covers, `(after, upto]`. A subscriber that finds a hole before
//!   `after` (it subscribed while the feed caught up, or it lagged behind the bounded
//!   channel) reads the hole from the database itself, up to where the feed has broadcast,
//!   so a slow reader costs a query, never an unbounded buffer, and never misses a row.
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{DatabaseBackend, DatabaseConnection, DbErr};
use tokio::sync::{broadcast, watch};

pub use super::feed_event::{FeedEvent, Scope};
use super::feed_frontier::Frontier;
use super::read;
use crate::cluster::listener::{self, OnNotify};

/// Batches the channel keeps for subscribers that are behind; one further behind reads the
/// database instead.
const CHANNEL_BATCHES: usize = 256;

/// How often the feed looks for rows no signal announced (other processes' commits).
const POLL: Duration = Duration::from_secs(1);

/// The channel every process's writer notifies after commits and every process listens on.
pub const CHANNEL: &str = "atelier_feed";
/// The most often a process notifies the others of its commits.
const NOTIFY_EVERY: Duration = Duration::from_millis(100);

/// How soon the feed looks again while a read waits for transactions to end.
const RECHECK: Duration = Duration::from_millis(25);

/// How long a stream from now waits for an unheard feed's first frontier.
const PLACE_WITHIN: Duration = Duration::from_secs(5);

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
    /// Local commits, for the other processes' feeds (PostgreSQL; `None` elsewhere).
    announce: Option<watch::Sender<u64>>,
    /// Tells this process's own notifications from others'.
    tag: String,
    batches: broadcast::Sender<Arc<FeedBatch>>,
    /// Every event up to this id was broadcast (`None`: the feed is not reading, or has not
    /// caught up yet): how far a subscriber's own read of the past may go.
    published: watch::Receiver<Option<i64>>,
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
        let (publish, published) = watch::channel(None);
        let tag = uuid::Uuid::new_v4().to_string();
        let announce = (db.get_database_backend() == DatabaseBackend::Postgres).then(|| {
            let (announce, commits) = watch::channel(0);
            tokio::spawn(notify_others(db.clone(), commits, tag.clone()));
            announce
        });
        tokio::spawn(run(db, signals, batches.clone(), publish));
        Arc::new(Self {
            signal,
            announce,
            tag,
            batches,
            published,
        })
    }

    /// A batch of transitions committed here: this feed reads them (when anyone listens),
    /// and the other processes' feeds are told.
    pub fn committed(&self) {
        self.wake();
        if let Some(announce) = &self.announce {
            announce.send_modify(|count| *count = count.wrapping_add(1));
        }
    }

    /// The feed looks at the timeline now: another process committed transitions, or a
    /// listener arrived.
    fn wake(&self) {
        self.signal
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    /// The listener's channel for the other processes' notifications.
    pub fn channel(self: &Arc<Self>) -> (&'static str, OnNotify) {
        let feed = Arc::downgrade(self);
        let tag = self.tag.clone();
        let handler = move |payload: &str| {
            if let Some(feed) = feed.upgrade().filter(|_| payload != tag) {
                feed.wake();
            }
        };
        (CHANNEL, Box::new(handler))
    }

    /// Every batch from now on. Subscribe first, then read the past from the database: the
    /// two overlap, never leave a hole.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedBatch>> {
        let subscribed = self.batches.subscribe();
        // An unheard feed reads at the poll's pace: the first listener wakes it.
        self.wake();
        subscribed
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

/// Notifies the other processes' feeds of this one's commits: at most one notification per
/// `NOTIFY_EVERY` however many batches commit, each sent on its own (never inside a workflow
/// transaction: a NOTIFY serialises commits database-wide).
async fn notify_others(db: DatabaseConnection, mut commits: watch::Receiver<u64>, tag: String) {
    while commits.changed().await.is_ok() {
        if let Err(error) = listener::notify(&db, CHANNEL, &tag).await {
            tracing::debug!(%error, "could not notify the other feeds; their poll finds the commits");
        }
        tokio::time::sleep(NOTIFY_EVERY).await;
    }
}

/// Follows the frontier for as long as the feed lives, and while anyone listens, reads what
/// each signal committed and broadcasts it.
async fn run(
    db: DatabaseConnection,
    mut signals: watch::Receiver<u64>,
    batches: broadcast::Sender<Arc<FeedBatch>>,
    published: watch::Sender<Option<i64>>,
) {
    let mut cursor = Cursor::default();
    // A lost notification, or a commit nobody announced, is read at the next poll.
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_read: Option<Instant> = None;
    let mut listening = false;
    loop {
        let recheck = listening && cursor.frontier.waiting();
        tokio::select! {
            changed = signals.changed() => if changed.is_err() { return },
            _ = poll.tick() => {}
            _ = tokio::time::sleep(RECHECK), if recheck => {}
        }
        let was_listening = listening;
        listening = batches.receiver_count() > 0;
        // Unheard, the feed only keeps its frontier fresh, at the poll's pace.
        if !listening && last_read.is_some_and(|at| at.elapsed() < POLL) {
            continue;
        }
        if listening && !was_listening {
            // Its first listener starts from now: the feed announces a frontier read from
            // here on, rather than sending what committed while nobody listened.
            cursor = Cursor::default();
        }
        last_read = Some(Instant::now());
        match advance(&db, &mut cursor, &batches, listening).await {
            Ok(()) => {
                let sent = cursor.sent;
                published.send_if_modified(|was| std::mem::replace(was, sent) != sent);
            }
            Err(error) => {
                // Subscribers fill the hole from the database at the next batch.
                tracing::warn!(%error, "the transition feed could not read the timeline");
                cursor = Cursor::default();
                published.send_replace(None);
            }
        }
    }
}

/// Where the feed is: what it broadcast, and how far it may read.
#[derive(Default)]
struct Cursor {
    /// Every event up to here was broadcast, or nobody was listening (`None`: not known yet).
    sent: Option<i64>,
    frontier: Frontier,
}

/// Moves the frontier, and broadcasts the events up to it that were not broadcast yet, when
/// anyone listens (the first time, it announces the frontier as a skip: subscribers read the
/// past from the database).
async fn advance(
    db: &DatabaseConnection,
    cursor: &mut Cursor,
    batches: &broadcast::Sender<Arc<FeedBatch>>,
    listening: bool,
) -> Result<(), DbErr> {
    let horizon = read::event_horizon(db).await?;
    let Some(safe) = cursor.frontier.observe(horizon, Instant::now()) else {
        return Ok(());
    };
    let after = match cursor.sent {
        Some(after) if listening => after,
        _ => {
            send(batches, safe, safe, Vec::new());
            cursor.sent = Some(safe);
            return Ok(());
        }
    };
    broadcast_upto(db, cursor, after, safe, batches).await
}

/// Broadcasts the events in `(after, safe]`, a page per batch.
async fn broadcast_upto(
    db: &DatabaseConnection,
    cursor: &mut Cursor,
    mut after: i64,
    safe: i64,
    batches: &broadcast::Sender<Arc<FeedBatch>>,
) -> Result<(), DbErr> {
    while after < safe {
        let events = read::feed_events(db, Scope::All, after, Some(safe), PAGE).await?;
        let full = events.len() as u64 == PAGE;
        let upto = match events.last() {
            Some(last) if full => last.id,
            _ => safe,
        };
        send(batches, after, upto, events);
        after = upto;
        cursor.sent = Some(after);
    }
    Ok(())
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
    /// How far the feed has broadcast: a hole is read up to there, never beyond, where an
    /// entry may still commit below one already there.
    published: watch::Receiver<Option<i64>>,
    /// Every event up to here is queued or delivered (or not in scope).
    read_to: i64,
    /// The follower has no position yet: it takes the first batch's (`from_now`).
    unplaced: bool,
    /// Ids the follower still has to read from the database: up to `Some(id)`, or to where
    /// the feed has broadcast (`None`).
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
            published: feed.published.clone(),
            db,
            scope,
            read_to: after,
            unplaced: false,
            hole: Some(None),
            held: None,
            queued: Default::default(),
            closed: false,
        }
    }

    /// Follows `scope` from now on: from what a feed others listen to has broadcast, or, when
    /// nobody listened, from the frontier the feed reads for this subscription (its first
    /// batch, waited for here, so that what commits once the caller answers is followed).
    /// Not from the newest id: an entry below it may still commit; nor from what an unheard
    /// feed last published, which may be a second old.
    pub async fn from_now(feed: &Feed, db: DatabaseConnection, scope: Scope) -> Self {
        let heard = feed.subscribers() > 0;
        let mut follower = Self::new(feed, db, scope, 0);
        follower.hole = None;
        let published = *follower.published.borrow();
        if let Some(published) = published.filter(|_| heard) {
            follower.read_to = published;
            return follower;
        }
        follower.unplaced = true;
        // A transaction left open can hold the frontier back: then the first batch, whenever
        // it comes, places the follower.
        let _ = tokio::time::timeout(PLACE_WITHIN, async {
            while follower.unplaced && !follower.closed {
                follower.receive().await;
            }
        })
        .await;
        follower
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
        let Some(upto) = upto.or(*self.published.borrow()) else {
            // The feed has not caught up: its first batch says from where to read.
            self.hole = None;
            return Ok(());
        };
        let upto = Some(upto);
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
            Ok(batch) if self.unplaced => {
                self.unplaced = false;
                self.read_to = batch.after;
                self.apply(&batch);
            }
            Ok(batch) if batch.after > self.read_to => {
                self.hole = Some(Some(batch.after));
                self.held = Some(batch);
            }
            Ok(batch) => self.apply(&batch),
            // Behind the channel: what it dropped is in the database.
            // (One with no position yet takes the next batch's.)
            Err(broadcast::error::RecvError::Lagged(_)) if self.unplaced => {}
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
