//! A batching writer: one actor per store and process that serialises commands and puts
//! whatever queued up while the previous batch was in the database into the next transaction,
//! so the cost of a commit (an fsync on SQLite, a round trip on PostgreSQL) is shared by many
//! commands. Commands still run in arrival order, so batching changes throughput, never
//! results. The ledger and the workflow store both write through one.
//!
//! One bad command must not stop everyone's writes:
//! - a batch that fails (a database error, or a panic while deciding it) is rolled back and its
//!   commands are retried one by one, so only the bad one fails;
//! - a panic is caught where the batch runs, so the writer keeps running (actix restarts
//!   nothing after a panic). The exception is a broken money invariant (a panic whose message
//!   starts with `INVARIANT_VIOLATED`): then the process exits at once, before anything more
//!   is written, and its supervisor restarts it;
//! - every batch has a deadline: a stalled one (a lock held elsewhere) fails cleanly, its
//!   callers see an error and retry later, and the writer goes on;
//! - `WriterHealth` tells `/readyz` whether the writer runs and is not stuck.
use std::collections::VecDeque;
use std::fmt::Debug;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use futures::FutureExt;
use sea_orm::DbErr;
use tokio::sync::oneshot;

/// How a money invariant's assertion message begins: such a panic stops the process.
pub const INVARIANT_VIOLATED: &str = "ledger invariant violated";

/// The exit code of a process stopped by a broken money invariant.
pub const INVARIANT_EXIT_CODE: i32 = 70;

/// A store that applies a batch of commands atomically, one outcome per command, in order.
#[async_trait::async_trait]
pub trait BatchStore: Clone + Send + Unpin + 'static {
    type Command: Clone + Debug + Send + Unpin + 'static;
    type Outcome: Send + 'static;

    /// What the batches are of, for logs.
    const NAME: &'static str;

    async fn apply(&self, commands: &[Self::Command]) -> Result<Vec<Self::Outcome>, DbErr>;

    /// Whether `next` may join `batch`; when not, it opens the next batch.
    fn fits(_batch: &[Self::Command], _next: &Self::Command) -> bool {
        true
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchError {
    #[error("database error: {0}")]
    Database(#[source] Arc<DbErr>),
    #[error("the write did not finish within {0:?}")]
    TimedOut(Duration),
    #[error("the write failed on a bug: {0}")]
    Panicked(String),
    #[error("the batching writer is not running")]
    Unavailable,
    #[error("the write failed on a bug: {0}")]
    WrongOutcome(#[from] WrongOutcome),
    /// The write was fenced by a lease this process no longer holds: nothing was written.
    #[error("refused: this process no longer holds the lease on the workflow's shard")]
    Fenced,
}

impl BatchError {
    /// A write that waited too long (a lock held elsewhere, a statement past its timeout):
    /// worth trying again later, never at once or command by command.
    pub fn is_stall(&self) -> bool {
        match self {
            BatchError::TimedOut(_) => true,
            BatchError::Database(db) => crate::db::is_stall(db),
            BatchError::Panicked(_)
            | BatchError::Unavailable
            | BatchError::WrongOutcome(_)
            | BatchError::Fenced => false,
        }
    }
}

/// An outcome of another kind than its command's: the store answered out of order, a bug.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{expected} was answered with {got}")]
pub struct WrongOutcome {
    pub expected: &'static str,
    pub got: String,
}

/// Implements the one conversion from a store's outcome to the outcome one kind of command
/// expects: `outcome_conversion!(Outcome, Target, Outcome::Variant(inner) => inner)`.
#[macro_export]
macro_rules! outcome_conversion {
    ($outcome:ty, $target:ty, $pattern:pat => $value:expr) => {
        impl TryFrom<$outcome> for $target {
            type Error = $crate::batcher::WrongOutcome;

            fn try_from(outcome: $outcome) -> Result<Self, Self::Error> {
                match outcome {
                    $pattern => Ok($value),
                    got => Err($crate::batcher::WrongOutcome {
                        expected: stringify!($target),
                        got: format!("{got:?}"),
                    }),
                }
            }
        }
    };
}

/// How a batcher is run.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most commands one transaction carries.
    pub max_batch: usize,
    /// Longest a batch may take before it is abandoned (and rolled back).
    pub deadline: Duration,
}

impl BatchLimits {
    pub fn new(max_batch: usize) -> Self {
        Self {
            max_batch,
            deadline: Duration::from_secs(10),
        }
    }
}

/// Whether a writer runs and is not stuck, for `/readyz`; shared with its actor.
#[derive(Debug, Default)]
pub struct WriterHealth {
    stopped: AtomicBool,
    /// When the batch in the database started (ms since the epoch); 0 when idle.
    busy_since_ms: AtomicU64,
    deadline_ms: AtomicU64,
}

impl WriterHealth {
    /// Why the writer cannot take writes now, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.stopped.load(Ordering::SeqCst) {
            return Some("the batching writer has stopped".into());
        }
        let since = self.busy_since_ms.load(Ordering::SeqCst);
        let deadline = self.deadline_ms.load(Ordering::SeqCst);
        let busy_for = now_ms().saturating_sub(since);
        // Well past its deadline, a batch that has not ended means the writer is wedged.
        (since != 0 && busy_for > deadline.saturating_mul(2).max(1_000))
            .then(|| format!("a write batch has been running for {busy_for} ms"))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

type Reply<O> = oneshot::Sender<Result<O, BatchError>>;

struct Submit<S: BatchStore> {
    command: S::Command,
    reply: Reply<S::Outcome>,
}

impl<S: BatchStore> Message for Submit<S> {
    type Result = ();
}

pub struct Batcher<S: BatchStore> {
    store: S,
    queue: VecDeque<Submit<S>>,
    in_flight: bool,
    limits: BatchLimits,
    health: Arc<WriterHealth>,
}

impl<S: BatchStore> Batcher<S> {
    /// Starts the batcher on its own arbiter (thread), so that batching never waits behind
    /// HTTP handlers or other actors.
    pub fn start(store: S, limits: BatchLimits) -> (Addr<Self>, Arc<WriterHealth>) {
        let arbiter = Arbiter::new();
        let health = Arc::new(WriterHealth::default());
        health
            .deadline_ms
            .store(limits.deadline.as_millis() as u64, Ordering::SeqCst);
        let shared = health.clone();
        let addr = Self::start_in_arbiter(&arbiter.handle(), move |_| Self {
            store,
            queue: VecDeque::new(),
            in_flight: false,
            limits: BatchLimits {
                max_batch: limits.max_batch.max(1),
                ..limits
            },
            health: shared,
        });
        (addr, health)
    }

    /// Starts the next batch unless one is already in the database.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.queue.is_empty() {
            return;
        }
        let mut batch: Vec<Submit<S>> = Vec::new();
        let mut commands: Vec<S::Command> = Vec::new();
        while let Some(next) = self.queue.front() {
            if commands.len() >= self.limits.max_batch || !S::fits(&commands, &next.command) {
                break;
            }
            let next = self.queue.pop_front().expect("front exists");
            commands.push(next.command.clone());
            batch.push(next);
        }
        let store = self.store.clone();
        let deadline = self.limits.deadline;
        self.in_flight = true;
        self.health.busy_since_ms.store(now_ms(), Ordering::SeqCst);
        let work = async move { run_batch(&store, &commands, deadline).await };
        ctx.spawn(work.into_actor(self).map(move |results, batcher, ctx| {
            for (submit, result) in batch.into_iter().zip(results) {
                let _ = submit.reply.send(result);
            }
            batcher.health.busy_since_ms.store(0, Ordering::SeqCst);
            batcher.in_flight = false;
            batcher.flush(ctx);
        }));
    }
}

/// Runs `commands` as one transaction; if that fails for any reason but a stall, each
/// command again in a transaction of its own, so that only the bad one fails.
async fn run_batch<S: BatchStore>(
    store: &S,
    commands: &[S::Command],
    deadline: Duration,
) -> Vec<Result<S::Outcome, BatchError>> {
    let error = match attempt(store, commands, deadline).await {
        Ok(outcomes) => return outcomes.into_iter().map(Ok).collect(),
        Err(error) => error,
    };
    if commands.len() == 1 || error.is_stall() {
        // One by one, a stall would only stall again, once per command.
        tracing::error!(%error, commands = commands.len(), "{} batch failed; nothing was written", S::NAME);
        return commands.iter().map(|_| Err(error.clone())).collect();
    }
    tracing::warn!(%error, commands = commands.len(), "{} batch failed; retrying its commands one by one", S::NAME);
    let mut results = Vec::with_capacity(commands.len());
    for command in commands {
        let single = attempt(store, std::slice::from_ref(command), deadline).await;
        if let Err(error) = &single {
            tracing::error!(%error, ?command, "{} command failed; nothing of it was written", S::NAME);
        }
        results.push(single.map(|mut outcomes| outcomes.pop().expect("one outcome per command")));
    }
    results
}

/// One transaction of `commands`, within `deadline`, with panics caught: the transaction is
/// dropped (rolled back) on either.
async fn attempt<S: BatchStore>(
    store: &S,
    commands: &[S::Command],
    deadline: Duration,
) -> Result<Vec<S::Outcome>, BatchError> {
    let work = AssertUnwindSafe(store.apply(commands)).catch_unwind();
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(deadline, work).await;
    let committed = matches!(outcome, Ok(Ok(Ok(_))));
    crate::metrics::batch(S::NAME, commands.len(), started.elapsed(), committed);
    match outcome {
        Err(_) => Err(BatchError::TimedOut(deadline)),
        Ok(Err(panic)) => {
            let message = panic_message(panic.as_ref());
            if message.starts_with(INVARIANT_VIOLATED) {
                // The ledger's own arithmetic disagrees with itself: write nothing more.
                tracing::error!(%message, "{} batch broke a money invariant; stopping the process", S::NAME);
                eprintln!("atelier: {message}");
                std::process::exit(INVARIANT_EXIT_CODE);
            }
            Err(BatchError::Panicked(message))
        }
        Ok(Ok(Err(error))) => Err(BatchError::Database(Arc::new(error))),
        Ok(Ok(Ok(outcomes))) => {
            assert_eq!(outcomes.len(), commands.len(), "one outcome per command");
            Ok(outcomes)
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
        .unwrap_or_else(|| "a panic without a message".into())
}

impl<S: BatchStore> Actor for Batcher<S> {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        self.health.stopped.store(true, Ordering::SeqCst);
    }
}

impl<S: BatchStore> Drop for Batcher<S> {
    fn drop(&mut self) {
        self.health.stopped.store(true, Ordering::SeqCst);
    }
}

impl<S: BatchStore> Handler<Submit<S>> for Batcher<S> {
    type Result = ();

    fn handle(&mut self, submit: Submit<S>, ctx: &mut Self::Context) {
        self.queue.push_back(submit);
        self.flush(ctx);
    }
}

/// Sends `command` to the batcher and waits for its outcome.
pub async fn execute<S: BatchStore>(
    batcher: &Addr<Batcher<S>>,
    command: S::Command,
) -> Result<S::Outcome, BatchError> {
    let (reply, outcome) = oneshot::channel();
    // A dead actor drops the message, and with it `reply`: the await below then fails.
    batcher.do_send(Submit { command, reply });
    outcome.await.map_err(|_| BatchError::Unavailable)?
}

/// As `execute`, converted to the outcome the command's kind answers with.
pub async fn execute_as<S, T>(
    batcher: &Addr<Batcher<S>>,
    command: S::Command,
) -> Result<T, BatchError>
where
    S: BatchStore,
    T: TryFrom<S::Outcome, Error = WrongOutcome>,
{
    Ok(T::try_from(execute(batcher, command).await?)?)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// The API's 503 `database_busy`, the engine's "deferred" and the batcher's refusal to
    /// retry one by one all ask this one question.
    #[test]
    fn a_stall_is_a_timeout_or_a_database_wait_and_nothing_else() {
        let waited = DbErr::Custom("canceling statement due to lock timeout".into());
        assert!(BatchError::TimedOut(Duration::from_secs(1)).is_stall());
        assert!(BatchError::Database(Arc::new(waited)).is_stall());
        let failed = DbErr::Custom("value too long for type".into());
        assert!(!BatchError::Database(Arc::new(failed)).is_stall());
        assert!(!BatchError::Unavailable.is_stall());
        assert!(!BatchError::Panicked("bug".into()).is_stall());
    }

    /// Applies `u32` commands by echoing them; a batch containing 13 fails, one containing 66
    /// panics, one containing 99 hangs. Records every batch it was given.
    #[derive(Clone, Default)]
    struct Echo {
        batches: Arc<Mutex<Vec<Vec<u32>>>>,
    }

    #[async_trait::async_trait]
    impl BatchStore for Echo {
        type Command = u32;
        type Outcome = u32;
        const NAME: &'static str = "echo";

        async fn apply(&self, commands: &[u32]) -> Result<Vec<u32>, DbErr> {
            self.batches.lock().unwrap().push(commands.to_vec());
            if commands.contains(&99) {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            assert!(!commands.contains(&66), "a bug in command 66");
            if commands.contains(&13) {
                return Err(DbErr::Custom("value too long for column".into()));
            }
            Ok(commands.to_vec())
        }
    }

    fn limits() -> BatchLimits {
        BatchLimits {
            max_batch: 64,
            deadline: Duration::from_millis(200),
        }
    }

    async fn send_all(
        addr: &Addr<Batcher<Echo>>,
        commands: &[u32],
    ) -> Vec<Result<u32, BatchError>> {
        futures::future::join_all(commands.iter().map(|c| execute(addr, *c))).await
    }

    #[actix::test]
    async fn a_failing_command_fails_alone_and_the_others_commit() {
        let store = Echo::default();
        let (addr, _) = Batcher::start(store.clone(), limits());
        let results = send_all(&addr, &[1, 2, 13, 4]).await;
        assert!(matches!(results[2], Err(BatchError::Database(_))));
        let others: Vec<u32> = [0, 1, 3]
            .iter()
            .map(|i| results[*i].clone().unwrap())
            .collect();
        assert_eq!(others, [1, 2, 4]);
    }

    #[actix::test]
    async fn a_panicking_command_fails_alone_and_the_writer_keeps_running() {
        let store = Echo::default();
        let (addr, health) = Batcher::start(store.clone(), limits());
        let results = send_all(&addr, &[1, 66, 3]).await;
        assert!(matches!(&results[1], Err(BatchError::Panicked(m)) if m.contains("command 66")));
        assert_eq!(
            (results[0].clone().unwrap(), results[2].clone().unwrap()),
            (1, 3)
        );
        assert_eq!(execute(&addr, 7).await.unwrap(), 7, "still running");
        assert_eq!(health.problem(), None);
    }

    #[actix::test]
    async fn a_stalled_batch_fails_by_its_deadline_without_a_retry_per_command() {
        let store = Echo::default();
        let (addr, _) = Batcher::start(store.clone(), limits());
        let results = send_all(&addr, &[1, 99, 3]).await;
        // 1 went alone (the writer was idle); 99 and 3 shared the batch that stalled.
        assert_eq!(results[0].clone().unwrap(), 1);
        assert!(
            results[1..]
                .iter()
                .all(|r| matches!(r, Err(BatchError::TimedOut(_)))),
            "{results:?}"
        );
        let stalled = store
            .batches
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b.contains(&99))
            .count();
        assert_eq!(stalled, 1, "not retried one by one");
        assert_eq!(execute(&addr, 5).await.unwrap(), 5, "the writer goes on");
    }

    #[test]
    fn health_reports_a_stopped_or_stuck_writer() {
        let health = WriterHealth::default();
        health.deadline_ms.store(100, Ordering::SeqCst);
        assert_eq!(health.problem(), None);
        health
            .busy_since_ms
            .store(now_ms() - 5_000, Ordering::SeqCst);
        assert!(health.problem().unwrap().contains("running for"));
        health.busy_since_ms.store(0, Ordering::SeqCst);
        health.stopped.store(true, Ordering::SeqCst);
        assert!(health.problem().unwrap().contains("stopped"));
    }
}
