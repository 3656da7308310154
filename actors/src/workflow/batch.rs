//! Workflow writes, many per transaction. Creating a workflow writes the row, its hold and its
//! first event; a transition checks the version it was read at, moves the state, appends its
//! event, marks the callbacks it consumed as processed and — for a terminal state — settles or
//! releases the hold. A batch applies its commands in order inside ONE transaction, so each
//! command is exactly as atomic as alone while the commit is shared: SQLite admits one writer,
//! and this is how it keeps up.
//!
//! A batch runs in three steps, as the ledger's does: load (every row and idempotency key the
//! commands name, rows under lock), decide (each command in order against the rows as the
//! earlier commands left them, in memory), write (what was decided, a few statements per
//! table).
//!
//! A compare-and-set that does not match, or an event that is not a transition from the row's
//! state, is an outcome (`Stale`), not an error: it writes nothing and the rest of the batch goes
//! on. A database error fails the whole batch; the batcher then retries its commands one by
//! one, so one bad command cannot hold back the others.
use std::collections::{HashMap, HashSet};

use atelier_entities::workflow::{self, WorkflowState};
use atelier_entities::{idempotency_key, webhook_inbox, workflow_event};
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::machine::{self, Event};
use super::store::{CreateOutcome, NewWorkflow, TransitionOutcome};
use crate::db;
use crate::ledger::{Command, HoldOutcome, Outcome, ReleaseOutcome, SettleOutcome};

pub const IDEMPOTENCY_SCOPE: &str = "generation";

#[derive(Debug, Clone)]
pub enum WriteCommand {
    Create(NewWorkflow),
    Transition {
        id: Uuid,
        /// `None`: whatever version the row is at.
        expected_version: Option<i64>,
        event: Event,
        /// When the engine should look at the workflow again (ignored when terminal).
        next_attempt_at: Option<DateTime<Utc>>,
        /// Inbox rows (callbacks) this transition acts on: marked processed in its
        /// transaction, so that a crash can never keep the callback's news and lose its effect.
        consumes: Vec<i64>,
    },
    /// Records another attempt in the current state and when to look again, if the row is
    /// still at `expected_version`.
    Reschedule {
        id: Uuid,
        expected_version: i64,
        attempt: i32,
        next_attempt_at: DateTime<Utc>,
    },
    /// Marks stored callbacks as dealt with (ones that decide nothing).
    CallbacksProcessed {
        inbox_ids: Vec<i64>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Create(CreateOutcome),
    Transition(TransitionOutcome),
    /// Whether the row was still at the expected version.
    Rescheduled(bool),
    CallbacksProcessed,
}

impl WriteCommand {
    /// The idempotency key a create claims; a batch carries each key at most once.
    pub fn claimed_key(&self) -> Option<(Uuid, &str)> {
        match self {
            WriteCommand::Create(new) => new
                .idempotency
                .as_ref()
                .map(|(key, _)| (new.account_id, key.as_str())),
            _ => None,
        }
    }

    /// The workflow row the command changes, if it names one.
    fn row_id(&self) -> Option<Uuid> {
        match self {
            WriteCommand::Transition { id, .. } | WriteCommand::Reschedule { id, .. } => Some(*id),
            WriteCommand::Create(_) | WriteCommand::CallbacksProcessed { .. } => None,
        }
    }
}

pub async fn apply(
    db: &DatabaseConnection,
    commands: &[WriteCommand],
    now: DateTime<Utc>,
) -> Result<Vec<WriteOutcome>, DbErr> {
    db::with_retries("workflow batch", || async {
        let write = db::begin_write(db).await?;
        let outcomes = apply_in(&write, commands, now).await?;
        write.commit().await?;
        Ok(outcomes)
    })
    .await
}

async fn apply_in(
    txn: &DatabaseTransaction,
    commands: &[WriteCommand],
    now: DateTime<Utc>,
) -> Result<Vec<WriteOutcome>, DbErr> {
    let mut loaded = load(txn, commands).await?;
    let decided = decide(txn, commands, &mut loaded, now).await?;
    let ledger_outcomes = if decided.ledger.is_empty() {
        Vec::new()
    } else {
        crate::ledger::store::apply_in(txn, &decided.ledger, now).await?
    };
    let (outcomes, writes) = conclude(decided, &ledger_outcomes, now)?;
    write(txn, writes, &loaded, now).await?;
    Ok(outcomes)
}

/// What a batch reads before deciding anything.
struct Loaded {
    /// The rows the commands name, under lock; `decide` moves them in memory.
    rows: HashMap<Uuid, workflow::Model>,
    /// Each row's version as read: the compare-and-set of its single UPDATE.
    read_versions: HashMap<Uuid, i64>,
    /// Idempotency keys already claimed: (account, key) → (request hash, workflow).
    replays: HashMap<(Uuid, String), (String, Uuid)>,
}

async fn load(txn: &DatabaseTransaction, commands: &[WriteCommand]) -> Result<Loaded, DbErr> {
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
        let existing = idempotency_key::Entity::find_by_id((
            account_id,
            IDEMPOTENCY_SCOPE.to_owned(),
            key.to_owned(),
        ))
        .one(txn)
        .await?;
        if let Some(existing) = existing {
            replays.insert(
                (account_id, key.to_owned()),
                (existing.request_hash, existing.resource_id),
            );
        }
    }
    Ok(Loaded {
        rows,
        read_versions,
        replays,
    })
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
    },
}

struct Decided {
    plans: Vec<Plan>,
    ledger: Vec<Command>,
    processed: Vec<i64>,
    /// Rows a command changed, in the order first changed.
    changed: Vec<Uuid>,
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
    };
    for command in commands {
        let plan = match command {
            WriteCommand::CallbacksProcessed { inbox_ids } => {
                decided.processed.extend(inbox_ids);
                Plan::Done(WriteOutcome::CallbacksProcessed)
            }
            WriteCommand::Reschedule {
                id,
                expected_version,
                attempt,
                next_attempt_at,
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
            } => {
                let Some(row) = loaded.rows.get_mut(id) else {
                    decided.plans.push(Plan::Done(WriteOutcome::Transition(
                        TransitionOutcome::NotFound,
                    )));
                    continue;
                };
                let to = machine::next(row.state, event)
                    .filter(|_| expected_version.is_none_or(|version| version == row.version));
                let Some(to) = to else {
                    let stale = TransitionOutcome::Stale(row.clone());
                    decided
                        .plans
                        .push(Plan::Done(WriteOutcome::Transition(stale)));
                    continue;
                };
                let from = Box::new(row.clone());
                let ledger = machine::ledger_command(event, row)
                    .map(|command| decided.ledger_command(command));
                machine::apply_event(row, to, event, *next_attempt_at, now);
                decided.touch(*id);
                Plan::Transition {
                    from,
                    to: Box::new(row.clone()),
                    event: event.clone(),
                    ledger,
                    consumes: consumes.clone(),
                }
            }
        };
        decided.plans.push(plan);
    }
    Ok(decided)
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
            let row = workflow::Entity::find_by_id(*resource_id)
                .one(txn)
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
                writes.events.push(event_row(
                    from.id,
                    Some(from.state),
                    &to,
                    &event.reason(),
                    from.attempt,
                ));
                writes.processed.extend(consumes);
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
                .push(event_row(new.id, None, &row, "credits held", 0));
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
    if !writes.created.is_empty() {
        let models = writes
            .created
            .into_iter()
            .map(IntoActiveModel::into_active_model);
        workflow::Entity::insert_many(models)
            .exec_without_returning(txn)
            .await?;
    }
    for id in writes.changed {
        let row = &loaded.rows[&id];
        let update = workflow::Entity::update_many()
            .set(changed_columns(row))
            .filter(workflow::Column::Id.eq(id))
            .filter(workflow::Column::Version.eq(loaded.read_versions[&id]))
            .exec(txn)
            .await?;
        if update.rows_affected != 1 {
            // The row was locked when read; only a bug gets here.
            return Err(DbErr::Custom(format!(
                "workflow {id} changed under its lock"
            )));
        }
    }
    if !writes.processed.is_empty() {
        webhook_inbox::Entity::update_many()
            .set(webhook_inbox::ActiveModel {
                processed_at: Set(Some(now)),
                ..Default::default()
            })
            .filter(webhook_inbox::Column::Id.is_in(writes.processed))
            .exec(txn)
            .await?;
    }
    if !writes.keys.is_empty() {
        idempotency_key::Entity::insert_many(writes.keys)
            .exec_without_returning(txn)
            .await?;
    }
    if !writes.events.is_empty() {
        workflow_event::Entity::insert_many(writes.events)
            .exec_without_returning(txn)
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
    }
}

/// The timeline entry of a move to `to` (the row as the move left it: its state and version
/// are the event's own, whatever later commands of the batch do to the row).
fn event_row(
    workflow_id: Uuid,
    from: Option<WorkflowState>,
    to: &workflow::Model,
    reason: &str,
    attempt: i32,
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
    }
}
