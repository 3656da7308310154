//! Workflow writes, many per transaction. Creating a workflow writes the row, its hold and its
//! first event; a transition checks the version it was read at, moves the state, appends its
//! event, marks the callbacks it consumed as processed and — for a terminal state — settles or
//! releases the hold — and writes its completion webhooks to the outbox; storing a callback
//! keeps it in the inbox once. A batch applies its commands in order inside ONE transaction, so each
//! command is exactly as atomic as alone while the commit is shared: SQLite admits one writer,
//! and this is how it keeps up.
//!
//! A batch runs in the ledger's shape: load (every row, idempotency key and callback the
//! commands name, rows under lock), decide (each command in order against the rows as the
//! earlier commands left them, in memory, as `machine` says), the ledger commands the decided
//! transitions imply (in the same transaction), conclude (each outcome, given the ledger's
//! answers) and write (what was decided, a few statements per table).
//!
//! A compare-and-set that does not match, or an event that is not a transition from the row's
//! state, is an outcome (`Stale`), not an error: it writes nothing and the rest of the batch goes
//! on. A database error fails the whole batch; the batcher then retries its commands one by
//! one, so one bad command cannot hold back the others.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use atelier_entities::workflow::{self, WorkflowState};
use atelier_entities::{idempotency_key, webhook_inbox, workflow_event};
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::command::{IDEMPOTENCY_SCOPE, NewCallback, NewWorkflow, WriteCommand};
use super::committed::Committed;
use super::feed::Feed;
use super::machine::{self, Event};
use super::outcome::{CreateOutcome, TransitionOutcome, WriteOutcome};
use super::read;
use crate::Clock;
use crate::batcher::BatchStore;
use crate::cluster::{self, Fence};
use crate::db;
use crate::ledger::{Command, HoldOutcome, Outcome, ReleaseOutcome, SettleOutcome};

/// Fault injection for tests: called with each command of a batch; `true` makes that command
/// fail as a crash before its commit would: the commands before it in the batch commit on
/// their own (as if in an earlier transaction), the rest of the batch does not.
pub type BatchFault = Arc<dyn Fn(&WriteCommand) -> bool + Send + Sync>;

/// The workflow tables as a `BatchStore`: what the `Workflows` handle's batcher writes to.
#[derive(Clone)]
pub struct WorkflowStore {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
    fault: Option<BatchFault>,
    /// Told after every batch, so that status streams read what it committed.
    feed: Arc<Feed>,
}

impl WorkflowStore {
    pub fn new(
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
        fault: Option<BatchFault>,
        feed: Arc<Feed>,
    ) -> Self {
        Self {
            db,
            clock,
            fault,
            feed,
        }
    }

    /// Applies the batch, or, under the fault seam, the commands before the faulty one.
    async fn apply_faulty(&self, commands: &[WriteCommand]) -> Result<Vec<WriteOutcome>, DbErr> {
        let now = self.clock.now();
        if let Some(fault) = &self.fault
            && let Some(at) = commands.iter().position(|command| fault(command))
        {
            if at > 0 {
                apply(&self.db, &commands[..at], now).await?;
            }
            return Err(DbErr::Custom(format!(
                "injected fault at {:?}",
                commands[at]
            )));
        }
        apply(&self.db, commands, now).await
    }
}

#[async_trait::async_trait]
impl BatchStore for WorkflowStore {
    type Command = WriteCommand;
    type Outcome = WriteOutcome;
    const NAME: &'static str = "workflow";

    async fn apply(&self, commands: &[WriteCommand]) -> Result<Vec<WriteOutcome>, DbErr> {
        let applied = self.apply_faulty(commands).await;
        // Even a failed batch may have committed a part (the fault seam): the feed reads
        // what is there, so a signal too many costs a query, never an event.
        self.feed.committed();
        applied
    }

    /// Two creates under one idempotency key (or two copies of one callback) go to separate
    /// batches, so that the second one finds the first one's row.
    fn fits(batch: &[WriteCommand], next: &WriteCommand) -> bool {
        let same_key = match next.claimed_key() {
            None => false,
            Some(key) => batch.iter().any(|queued| queued.claimed_key() == Some(key)),
        };
        let same_callback = match next.claimed_callback() {
            None => false,
            Some(key) => batch
                .iter()
                .any(|queued| queued.claimed_callback() == Some(key)),
        };
        !same_key && !same_callback
    }
}

pub async fn apply(
    db: &DatabaseConnection,
    commands: &[WriteCommand],
    now: DateTime<Utc>,
) -> Result<Vec<WriteOutcome>, DbErr> {
    db::with_retries("workflow batch", || async {
        let write = db::begin_write(db).await?;
        let (outcomes, committed) = apply_in(&write, commands, now).await?;
        write.commit().await?;
        committed.record(db, now);
        Ok(outcomes)
    })
    .await
}

async fn apply_in(
    txn: &DatabaseTransaction,
    commands: &[WriteCommand],
    now: DateTime<Utc>,
) -> Result<(Vec<WriteOutcome>, Committed), DbErr> {
    let mut loaded = load(txn, commands).await?;
    let decided = decide(txn, commands, &mut loaded, now).await?;
    let ledger_outcomes = if decided.ledger.is_empty() {
        Vec::new()
    } else {
        crate::ledger::store::apply_in(txn, &decided.ledger, now).await?
    };
    let (outcomes, mut writes) = conclude(decided, &ledger_outcomes, now)?;
    let mut committed = std::mem::take(&mut writes.committed);
    committed.ledger = ledger_outcomes;
    write(txn, writes, &loaded, now).await?;
    Ok((outcomes, committed))
}

/// What a batch reads before deciding anything.
struct Loaded {
    /// The rows the commands name, under lock; `decide` moves them in memory.
    rows: HashMap<Uuid, workflow::Model>,
    /// Each row's version as read: the compare-and-set of its single UPDATE.
    read_versions: HashMap<Uuid, i64>,
    /// Idempotency keys already claimed: (account, key) → (request hash, workflow).
    replays: HashMap<(Uuid, String), (String, Uuid)>,
    /// Dedup keys of the callbacks the commands store that the inbox already has.
    stored_callbacks: HashSet<String>,
    /// The leases of the shards fenced commands name, as they are now (locked against a
    /// takeover until the commit): shard → (owner, epoch).
    leases: HashMap<i16, (Option<Uuid>, i64)>,
}

impl Loaded {
    /// Whether the writer still holds the lease `fence` names, at its epoch.
    fn holds(&self, fence: &Fence) -> bool {
        self.leases.get(&fence.shard) == Some(&(Some(fence.owner), fence.epoch))
    }
}

async fn load(txn: &DatabaseTransaction, commands: &[WriteCommand]) -> Result<Loaded, DbErr> {
    // The fence first: a takeover that committed before is seen here, and one that comes
    // later cannot lock the lease until this transaction ends (it skips the shard this tick).
    let fences: Vec<Fence> = commands.iter().filter_map(WriteCommand::fence).collect();
    let leases = cluster::leases::fences(txn, &fences).await?;
    let ids: Vec<Uuid> = commands
        .iter()
        .filter_map(WriteCommand::row_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut rows = HashMap::new();
    if !ids.is_empty() {
        let locked = workflow::Entity::find()
            .filter(workflow::Column::Id.is_in(ids))
            .order_by_asc(workflow::Column::Id)
            .lock_exclusive()
            .all(txn)
            .await?;
        rows.extend(locked.into_iter().map(|row| (row.id, row)));
    }
    let read_versions = rows.iter().map(|(id, row)| (*id, row.version)).collect();
    let mut replays = HashMap::new();
    for (account_id, key) in commands.iter().filter_map(WriteCommand::claimed_key) {
        if let Some(claimed) = read::claimed_key(txn, account_id, key).await? {
            replays.insert((account_id, key.to_owned()), claimed);
        }
    }
    let stored_callbacks = stored_callbacks(txn, commands).await?;
    Ok(Loaded {
        rows,
        read_versions,
        replays,
        stored_callbacks,
        leases,
    })
}

async fn stored_callbacks(
    txn: &DatabaseTransaction,
    commands: &[WriteCommand],
) -> Result<HashSet<String>, DbErr> {
    let keys: Vec<&str> = commands
        .iter()
        .filter_map(WriteCommand::claimed_callback)
        .collect();
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let found: Vec<String> = webhook_inbox::Entity::find()
        .select_only()
        .column(webhook_inbox::Column::DedupKey)
        .filter(webhook_inbox::Column::DedupKey.is_in(keys))
        .into_tuple()
        .all(txn)
        .await?;
    Ok(found.into_iter().collect())
}

/// What one command will do, decided before the ledger has answered.
enum Plan {
    Done(WriteOutcome),
    /// A new workflow, pending its hold (the ledger command's index).
    Create {
        new: NewWorkflow,
        hold_id: Uuid,
        ledger: usize,
    },
    /// A transition of the row from `from` to `to` (at `version`), with the ledger command
    /// settling or releasing its hold, if terminal.
    Transition {
        from: Box<workflow::Model>,
        to: Box<workflow::Model>,
        event: Event,
        ledger: Option<usize>,
        consumes: Vec<i64>,
        /// The lease epoch it is written under, if fenced.
        epoch: Option<i64>,
    },
}

struct Decided {
    plans: Vec<Plan>,
    ledger: Vec<Command>,
    processed: Vec<i64>,
    /// Rows a command changed, in the order first changed.
    changed: Vec<Uuid>,
    /// New callbacks for the inbox.
    callbacks: Vec<NewCallback>,
}

impl Decided {
    fn touch(&mut self, id: Uuid) {
        if !self.changed.contains(&id) {
            self.changed.push(id);
        }
    }

    fn ledger_command(&mut self, command: Command) -> usize {
        self.ledger.push(command);
        self.ledger.len() - 1
    }
}

/// Decides, in order, what each command does against the rows as earlier commands of the
/// batch left them.
async fn decide(
    txn: &DatabaseTransaction,
    commands: &[WriteCommand],
    loaded: &mut Loaded,
    now: DateTime<Utc>,
) -> Result<Decided, DbErr> {
    let mut decided = Decided {
        plans: Vec::with_capacity(commands.len()),
        ledger: Vec::new(),
        processed: Vec::new(),
        changed: Vec::new(),
        callbacks: Vec::new(),
    };
    for command in commands {
        if let Some(fence) = command.fence()
            && !loaded.holds(&fence)
        {
            decided.plans.push(Plan::Done(WriteOutcome::Fenced));
            continue;
        }
        let plan = match command {
            WriteCommand::CallbacksProcessed { inbox_ids, .. } => {
                decided.processed.extend(inbox_ids);
                Plan::Done(WriteOutcome::CallbacksProcessed)
            }
            WriteCommand::StoreCallback(callback) => {
                let new = !loaded.stored_callbacks.contains(&callback.dedup_key);
                if new {
                    decided.callbacks.push(callback.clone());
                }
                Plan::Done(WriteOutcome::CallbackStored(new))
            }
            WriteCommand::Reschedule {
                id,
                expected_version,
                attempt,
                next_attempt_at,
                ..
            } => {
                let row = loaded
                    .rows
                    .get_mut(id)
                    .filter(|row| row.version == *expected_version && !row.state.is_terminal());
                let applied = row.is_some();
                if let Some(row) = row {
                    row.attempt = *attempt;
                    row.next_attempt_at = Some(*next_attempt_at);
                    row.updated_at = now;
                    decided.touch(*id);
                }
                Plan::Done(WriteOutcome::Rescheduled(applied))
            }
            WriteCommand::Create(new) => decide_create(txn, new, loaded, &mut decided).await?,
            WriteCommand::Transition {
                id,
                expected_version,
                event,
                next_attempt_at,
                consumes,
                fence,
            } => {
                let asked = Move {
                    id: *id,
                    expected_version: *expected_version,
                    event,
                    next_attempt_at: *next_attempt_at,
                    consumes,
                    epoch: fence.map(|fence| fence.epoch),
                };
                decide_transition(asked, loaded, &mut decided, now)
            }
        };
        decided.plans.push(plan);
    }
    Ok(decided)
}

/// A transition applies when the row is at the expected version and the machine has the
/// move; then the machine says what it does to the row and to the hold.
fn decide_transition(
    asked: Move<'_>,
    loaded: &mut Loaded,
    decided: &mut Decided,
    now: DateTime<Utc>,
) -> Plan {
    let Move {
        id,
        expected_version,
        event,
        next_attempt_at,
        consumes,
        epoch,
    } = asked;
    let Some(row) = loaded.rows.get_mut(&id) else {
        return Plan::Done(WriteOutcome::Transition(TransitionOutcome::NotFound));
    };
    let to = machine::next(row.state, event)
        .filter(|_| expected_version.is_none_or(|version| version == row.version));
    let Some(to) = to else {
        return Plan::Done(WriteOutcome::Transition(TransitionOutcome::Stale(
            row.clone(),
        )));
    };
    let from = Box::new(row.clone());
    let ledger = machine::ledger_command(event, row).map(|command| decided.ledger_command(command));
    machine::apply_event(row, to, event, next_attempt_at, now);
    decided.touch(id);
    Plan::Transition {
        from,
        to: Box::new(row.clone()),
        event: event.clone(),
        ledger,
        consumes: consumes.to_vec(),
        epoch,
    }
}

/// A transition command's fields, as `decide_transition` reads them.
struct Move<'a> {
    id: Uuid,
    expected_version: Option<i64>,
    event: &'a Event,
    next_attempt_at: Option<DateTime<Utc>>,
    consumes: &'a [i64],
    /// The fence's epoch, recorded on the event.
    epoch: Option<i64>,
}

async fn decide_create(
    txn: &DatabaseTransaction,
    new: &NewWorkflow,
    loaded: &Loaded,
    decided: &mut Decided,
) -> Result<Plan, DbErr> {
    let replay = new.idempotency.as_ref().and_then(|(key, hash)| {
        loaded
            .replays
            .get(&(new.account_id, key.clone()))
            .map(|found| (hash, found))
    });
    Ok(match replay {
        Some((hash, (stored_hash, _))) if hash != stored_hash => {
            Plan::Done(WriteOutcome::Create(CreateOutcome::KeyConflict))
        }
        Some((_, (_, resource_id))) => {
            let row = read::find(txn, *resource_id)
                .await?
                .ok_or_else(|| DbErr::RecordNotFound("idempotent workflow".into()))?;
            Plan::Done(WriteOutcome::Create(CreateOutcome::Replayed(row)))
        }
        None => {
            let hold_id = Uuid::now_v7();
            let ledger = decided.ledger_command(Command::Hold {
                hold_id,
                account_id: new.account_id,
                credits: new.cost,
                generation_id: Some(new.id),
            });
            Plan::Create {
                new: new.clone(),
                hold_id,
                ledger,
            }
        }
    })
}

/// Rows to write, gathered from the plans once the ledger has answered.
#[derive(Default)]
struct Writes {
    created: Vec<workflow::Model>,
    events: Vec<workflow_event::ActiveModel>,
    keys: Vec<idempotency_key::ActiveModel>,
    processed: Vec<i64>,
    changed: Vec<Uuid>,
    callbacks: Vec<NewCallback>,
    /// The rows of the transitions that are completion events, as they left them: the
    /// outbox's input.
    ended: Vec<workflow::Model>,
    /// The moves, for the metrics once the batch commits.
    committed: Committed,
}

/// Each command's outcome, and the rows that carry it out. A ledger answer that contradicts
/// the workflow (a hold that would not settle for a live workflow) is a broken invariant: the
/// batch fails and nothing is written.
fn conclude(
    decided: Decided,
    ledger: &[Outcome],
    now: DateTime<Utc>,
) -> Result<(Vec<WriteOutcome>, Writes), DbErr> {
    let mut writes = Writes {
        processed: decided.processed,
        changed: decided.changed,
        callbacks: decided.callbacks,
        ..Writes::default()
    };
    let mut outcomes = Vec::with_capacity(decided.plans.len());
    for plan in decided.plans {
        let outcome = match plan {
            Plan::Done(outcome) => outcome,
            Plan::Create {
                new,
                hold_id,
                ledger: index,
            } => WriteOutcome::Create(conclude_create(
                &new,
                hold_id,
                &ledger[index],
                &mut writes,
                now,
            )?),
            Plan::Transition {
                from,
                to,
                event,
                ledger: index,
                consumes,
                epoch,
            } => {
                if let Some(index) = index {
                    let resolved = matches!(
                        ledger[index],
                        Outcome::Settle(SettleOutcome::Settled { .. })
                            | Outcome::Release(ReleaseOutcome::Released { .. })
                    );
                    if !resolved {
                        return Err(DbErr::Custom(format!(
                            "workflow {} in {} has hold {} that answered {:?}",
                            from.id,
                            from.state.as_str(),
                            from.hold_id,
                            ledger[index]
                        )));
                    }
                }
                let at = (from.attempt, epoch);
                let event = event_row(from.id, Some(from.state), &to, &event.reason(), at);
                writes.events.push(event);
                writes.processed.extend(consumes);
                writes.committed.moved(Some(from.state), &to);
                if crate::webhooks_out::event::event_for(&to).is_some() {
                    writes.ended.push((*to).clone());
                }
                WriteOutcome::Transition(TransitionOutcome::Applied(*to))
            }
        };
        outcomes.push(outcome);
    }
    Ok((outcomes, writes))
}

fn conclude_create(
    new: &NewWorkflow,
    hold_id: Uuid,
    hold: &Outcome,
    writes: &mut Writes,
    now: DateTime<Utc>,
) -> Result<CreateOutcome, DbErr> {
    match hold {
        Outcome::Hold(HoldOutcome::Held(_)) => {
            let row = new_row(new, hold_id, now);
            writes
                .events
                .push(event_row(new.id, None, &row, "credits held", (0, None)));
            if let Some((key, hash)) = &new.idempotency {
                writes.keys.push(idempotency_key::ActiveModel {
                    account_id: Set(new.account_id),
                    scope: Set(IDEMPOTENCY_SCOPE.into()),
                    key: Set(key.clone()),
                    request_hash: Set(hash.clone()),
                    resource_id: Set(new.id),
                    created_at: Set(now),
                });
            }
            writes.committed.moved(None, &row);
            writes.created.push(row.clone());
            Ok(CreateOutcome::Created(row))
        }
        Outcome::Hold(HoldOutcome::InsufficientCredits {
            available,
            requested,
        }) => Ok(CreateOutcome::InsufficientCredits {
            available: *available,
            requested: *requested,
        }),
        other => Err(DbErr::Custom(format!(
            "hold for a new workflow answered {other:?}"
        ))),
    }
}

async fn write(
    txn: &DatabaseTransaction,
    writes: Writes,
    loaded: &Loaded,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    write_rows(txn, writes.created, &writes.changed, loaded).await?;
    write_inbox(txn, writes.callbacks, writes.processed, now).await?;
    // The completion webhooks these transitions imply, in their transaction.
    crate::webhooks_out::outbox::record(txn, &writes.ended, now).await?;
    if !writes.keys.is_empty() {
        idempotency_key::Entity::insert_many(writes.keys)
            .exec_without_returning(txn)
            .await?;
    }
    // Last: the status feed's frontier (`feed_frontier`) needs the transaction to hold a
    // transaction id before it takes event ids, which the rows written above give it.
    if !writes.events.is_empty() {
        workflow_event::Entity::insert_many(writes.events)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// New workflow rows, and one compare-and-set UPDATE per changed row.
async fn write_rows(
    txn: &DatabaseTransaction,
    created: Vec<workflow::Model>,
    changed: &[Uuid],
    loaded: &Loaded,
) -> Result<(), DbErr> {
    if !created.is_empty() {
        let models = created.into_iter().map(IntoActiveModel::into_active_model);
        workflow::Entity::insert_many(models)
            .exec_without_returning(txn)
            .await?;
    }
    for id in changed {
        let row = &loaded.rows[id];
        let update = workflow::Entity::update_many()
            .set(changed_columns(row))
            .filter(workflow::Column::Id.eq(*id))
            .filter(workflow::Column::Version.eq(loaded.read_versions[id]))
            .exec(txn)
            .await?;
        if update.rows_affected != 1 {
            // The row was locked when read; only a bug gets here.
            return Err(DbErr::Custom(format!(
                "workflow {id} changed under its lock"
            )));
        }
    }
    Ok(())
}

/// New callbacks, and the ones dealt with. A callback another process stored since `load`
/// looked is left as it is (`DO NOTHING`): the inbox keeps one copy.
async fn write_inbox(
    txn: &DatabaseTransaction,
    callbacks: Vec<NewCallback>,
    processed: Vec<i64>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    if !callbacks.is_empty() {
        let rows = callbacks
            .into_iter()
            .map(|callback| webhook_inbox::ActiveModel {
                id: NotSet,
                workflow_id: Set(callback.workflow_id),
                provider: Set(callback.provider),
                dedup_key: Set(callback.dedup_key),
                payload: Set(callback.payload),
                received_at: Set(now),
                processed_at: Set(None),
            });
        webhook_inbox::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::column(webhook_inbox::Column::DedupKey)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    if !processed.is_empty() {
        webhook_inbox::Entity::update_many()
            .set(webhook_inbox::ActiveModel {
                processed_at: Set(Some(now)),
                ..Default::default()
            })
            .filter(webhook_inbox::Column::Id.is_in(processed))
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// The columns a transition may change.
fn changed_columns(row: &workflow::Model) -> workflow::ActiveModel {
    workflow::ActiveModel {
        state: Set(row.state),
        version: Set(row.version),
        attempt: Set(row.attempt),
        next_attempt_at: Set(row.next_attempt_at),
        updated_at: Set(row.updated_at),
        provider: Set(row.provider.clone()),
        charge: Set(row.charge),
        provider_task_id: Set(row.provider_task_id.clone()),
        result_source: Set(row.result_source.clone()),
        result_key: Set(row.result_key.clone()),
        error_code: Set(row.error_code.clone()),
        error_message: Set(row.error_message.clone()),
        ..Default::default()
    }
}

fn new_row(new: &NewWorkflow, hold_id: Uuid, now: DateTime<Utc>) -> workflow::Model {
    workflow::Model {
        id: new.id,
        account_id: new.account_id,
        state: WorkflowState::Reserved,
        version: 0,
        provider: new.provider.clone(),
        cost: new.cost.get(),
        charge: None,
        hold_id,
        inputs: new.inputs.clone(),
        callback_token: new.callback_token.clone(),
        provider_task_id: None,
        result_source: None,
        result_key: None,
        attempt: 0,
        next_attempt_at: Some(now),
        deadline_at: new.deadline_at,
        error_code: None,
        error_message: None,
        created_at: now,
        updated_at: now,
        retry_of: new.retry_of,
        shard: cluster::shard_of(new.id),
        pruned_at: None,
        result_expired_at: None,
    }
}

/// The timeline entry of a move to `to` (the row as the move left it: its state and version
/// are the event's own, whatever later commands of the batch do to the row), made at
/// `(attempt, lease epoch)`.
fn event_row(
    workflow_id: Uuid,
    from: Option<WorkflowState>,
    to: &workflow::Model,
    reason: &str,
    (attempt, epoch): (i32, Option<i64>),
) -> workflow_event::ActiveModel {
    workflow_event::ActiveModel {
        id: NotSet,
        workflow_id: Set(workflow_id),
        from_state: Set(from),
        to_state: Set(to.state),
        reason: Set(reason.chars().take(255).collect()),
        attempt: Set(attempt),
        version: Set(to.version),
        at: Set(to.updated_at),
        epoch: Set(epoch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn callback(key: &str) -> WriteCommand {
        WriteCommand::StoreCallback(NewCallback {
            workflow_id: Uuid::nil(),
            provider: "simulator".into(),
            dedup_key: key.into(),
            payload: "{}".into(),
        })
    }

    /// Two copies of one callback never share a batch, so that the second finds the first
    /// stored and answers "a replay" (the engine is not woken twice, the log says so).
    #[test]
    fn copies_of_one_callback_go_to_separate_batches() {
        let batch = [callback("a")];
        assert!(!WorkflowStore::fits(&batch, &callback("a")));
        assert!(WorkflowStore::fits(&batch, &callback("b")));
        let processed = WriteCommand::CallbacksProcessed {
            inbox_ids: vec![1],
            fence: None,
        };
        assert!(WorkflowStore::fits(&batch, &processed));
    }
}
