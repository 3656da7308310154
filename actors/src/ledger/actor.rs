//! The ledger actor: one per process. It serialises credit commands and batches whatever
//! queued up while the previous batch was in the database into the next transaction, so the
//! cost of a commit (an fsync on SQLite, a round trip on PostgreSQL) is shared by many
//! commands. Commands still run in arrival order, so batching changes throughput, never
//! results.
//!
//! `Ledger` is the cloneable handle the rest of the system uses; it turns the actor's replies
//! into typed outcomes.
use std::collections::VecDeque;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::store::LedgerStore;
use super::{
    Command, ExpireOutcome, GrantOutcome, HoldOutcome, Outcome, ReleaseOutcome, SettleOutcome,
};
use crate::Credits;

/// The most commands one transaction carries; bounds transaction time and lock hold time.
pub const DEFAULT_MAX_BATCH: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database error: {0}")]
    Database(String),
    #[error("the ledger actor is not running")]
    Unavailable,
}

type Reply = oneshot::Sender<Result<Outcome, LedgerError>>;

#[derive(Message)]
#[rtype(result = "()")]
struct Submit {
    command: Command,
    reply: Reply,
}

pub struct LedgerActor {
    store: LedgerStore,
    queue: VecDeque<Submit>,
    in_flight: bool,
    max_batch: usize,
}

impl LedgerActor {
    pub fn new(store: LedgerStore, max_batch: usize) -> Self {
        Self {
            store,
            queue: VecDeque::new(),
            in_flight: false,
            max_batch: max_batch.max(1),
        }
    }

    /// Starts the next batch unless one is already in the database.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.queue.is_empty() {
            return;
        }
        let take = self.queue.len().min(self.max_batch);
        let batch: Vec<Submit> = self.queue.drain(..take).collect();
        let commands: Vec<Command> = batch.iter().map(|submit| submit.command.clone()).collect();
        let store = self.store.clone();
        self.in_flight = true;
        let work = async move { store.apply(&commands).await };
        ctx.spawn(work.into_actor(self).map(move |result, actor, ctx| {
            match result {
                Ok(outcomes) => {
                    for (submit, outcome) in batch.into_iter().zip(outcomes) {
                        let _ = submit.reply.send(Ok(outcome));
                    }
                }
                Err(error) => {
                    tracing::error!(%error, commands = batch.len(), "ledger batch failed; nothing was written");
                    for submit in batch {
                        let _ = submit.reply.send(Err(LedgerError::Database(error.to_string())));
                    }
                }
            }
            actor.in_flight = false;
            actor.flush(ctx);
        }));
    }
}

impl Actor for LedgerActor {
    type Context = Context<Self>;
}

impl Handler<Submit> for LedgerActor {
    type Result = ();

    fn handle(&mut self, submit: Submit, ctx: &mut Self::Context) {
        self.queue.push_back(submit);
        self.flush(ctx);
    }
}

/// The handle to the ledger actor.
#[derive(Clone)]
pub struct Ledger {
    actor: Addr<LedgerActor>,
    store: LedgerStore,
}

impl Ledger {
    /// Starts the actor on its own arbiter (thread), so that batching never waits behind
    /// HTTP handlers or generation actors.
    pub fn start(store: LedgerStore, max_batch: usize) -> Self {
        let arbiter = Arbiter::new();
        let actor_store = store.clone();
        let actor = LedgerActor::start_in_arbiter(&arbiter.handle(), move |_| {
            LedgerActor::new(actor_store, max_batch)
        });
        Self { actor, store }
    }

    pub fn store(&self) -> &LedgerStore {
        &self.store
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.store.clock().now()
    }

    pub async fn execute(&self, command: Command) -> Result<Outcome, LedgerError> {
        let (reply, outcome) = oneshot::channel();
        // A dead actor drops the message, and with it `reply`: the await below then fails.
        self.actor.do_send(Submit { command, reply });
        outcome.await.map_err(|_| LedgerError::Unavailable)?
    }

    pub async fn grant(
        &self,
        account_id: Uuid,
        credits: Credits,
        expires_at: Option<DateTime<Utc>>,
        reference: String,
    ) -> Result<GrantOutcome, LedgerError> {
        match self
            .execute(Command::Grant {
                account_id,
                credits,
                expires_at,
                reference,
            })
            .await?
        {
            Outcome::Grant(outcome) => Ok(outcome),
            other => unreachable!("grant answered with {other:?}"),
        }
    }

    pub async fn hold(
        &self,
        account_id: Uuid,
        credits: Credits,
        generation_id: Option<Uuid>,
    ) -> Result<HoldOutcome, LedgerError> {
        let hold_id = Uuid::now_v7();
        match self
            .execute(Command::Hold {
                hold_id,
                account_id,
                credits,
                generation_id,
            })
            .await?
        {
            Outcome::Hold(outcome) => Ok(outcome),
            other => unreachable!("hold answered with {other:?}"),
        }
    }

    pub async fn settle(&self, hold_id: Uuid, amount: i64) -> Result<SettleOutcome, LedgerError> {
        match self.execute(Command::Settle { hold_id, amount }).await? {
            Outcome::Settle(outcome) => Ok(outcome),
            other => unreachable!("settle answered with {other:?}"),
        }
    }

    pub async fn release(&self, hold_id: Uuid) -> Result<ReleaseOutcome, LedgerError> {
        match self.execute(Command::Release { hold_id }).await? {
            Outcome::Release(outcome) => Ok(outcome),
            other => unreachable!("release answered with {other:?}"),
        }
    }

    pub async fn expire_due(&self, account_id: Uuid) -> Result<ExpireOutcome, LedgerError> {
        match self.execute(Command::ExpireDue { account_id }).await? {
            Outcome::Expire(outcome) => Ok(outcome),
            other => unreachable!("expire answered with {other:?}"),
        }
    }
}
