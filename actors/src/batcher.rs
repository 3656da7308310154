//! A batching writer: one actor per store and process that serialises commands and puts
//! whatever queued up while the previous batch was in the database into the next transaction,
//! so the cost of a commit (an fsync on SQLite, a round trip on PostgreSQL) is shared by many
//! commands. Commands still run in arrival order, so batching changes throughput, never
//! results. The ledger and the workflow store both write through one.
use std::collections::VecDeque;
use std::fmt::Debug;

use actix::prelude::*;
use sea_orm::DbErr;
use tokio::sync::oneshot;

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

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("database error: {0}")]
    Database(String),
    #[error("the batching writer is not running")]
    Unavailable,
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
    max_batch: usize,
}

impl<S: BatchStore> Batcher<S> {
    /// Starts the batcher on its own arbiter (thread), so that batching never waits behind
    /// HTTP handlers or other actors.
    pub fn start(store: S, max_batch: usize) -> Addr<Self> {
        let arbiter = Arbiter::new();
        Self::start_in_arbiter(&arbiter.handle(), move |_| Self {
            store,
            queue: VecDeque::new(),
            in_flight: false,
            max_batch: max_batch.max(1),
        })
    }

    /// Starts the next batch unless one is already in the database.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.queue.is_empty() {
            return;
        }
        let mut batch: Vec<Submit<S>> = Vec::new();
        let mut commands: Vec<S::Command> = Vec::new();
        while let Some(next) = self.queue.front() {
            if commands.len() >= self.max_batch || !S::fits(&commands, &next.command) {
                break;
            }
            let next = self.queue.pop_front().expect("front exists");
            commands.push(next.command.clone());
            batch.push(next);
        }
        let store = self.store.clone();
        self.in_flight = true;
        let work = async move { store.apply(&commands).await };
        ctx.spawn(work.into_actor(self).map(move |result, batcher, ctx| {
            match result {
                Ok(outcomes) => {
                    for (submit, outcome) in batch.into_iter().zip(outcomes) {
                        let _ = submit.reply.send(Ok(outcome));
                    }
                }
                Err(error) => {
                    tracing::error!(%error, commands = batch.len(), "{} batch failed; nothing was written", S::NAME);
                    for submit in batch {
                        let _ = submit.reply.send(Err(BatchError::Database(error.to_string())));
                    }
                }
            }
            batcher.in_flight = false;
            batcher.flush(ctx);
        }));
    }
}

impl<S: BatchStore> Actor for Batcher<S> {
    type Context = Context<Self>;
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
