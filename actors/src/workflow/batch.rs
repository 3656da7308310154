//! Workflow writes, many per transaction. Creating a workflow writes the row, its hold and its
//! first event; a transition checks the version it was read at, moves the state, appends its
//! event and — for a terminal state — settles or releases the hold. A batch applies its
//! commands in order inside ONE transaction, so each command is exactly as atomic as alone
//! while the commit is shared: SQLite admits one writer, and this is how it keeps up.
//!
//! A compare-and-set that does not match, or an event that is not a transition from the row's
//! state, is an outcome (`Stale`), not an error: it writes nothing and the rest of the batch goes
//! on. A database error fails the whole batch, which is then retried whole.
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
    },
    /// Records another attempt in the current state and when to look again, if the row is
    /// still at `expected_version`.
    Reschedule {
        id: Uuid,
        expected_version: i64,
        attempt: i32,
        next_attempt_at: DateTime<Utc>,
    },
    /// Marks stored callbacks as dealt with.
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

/// What one command will do, decided before the ledger has answered.
enum Plan {
    Done(WriteOutcome),
    /// A new workflow, pending its hold (the ledger command's index).
    Create {
        new: NewWorkflow,
        hold_id: Uuid,
        ledger: usize,
    },
    /// A transition of `rows[id]` from `from` (version `version`), with the ledger command
    /// settling or releasing its hold, if terminal.
    Transition {
        id: Uuid,
        from: workflow::Model,
        event: Event,
        ledger: Option<usize>,
    },
}

async fn apply_in(
    txn: &DatabaseTransaction,
    commands: &[WriteCommand],
    now: DateTime<Utc>,
) -> Result<Vec<WriteOutcome>, DbErr> {
    // Load, under lock, every row the transitions name and every idempotency key claimed.
    let ids: Vec<Uuid> = commands
        .iter()
        .filter_map(|command| match command {
            WriteCommand::Transition { id, .. } | WriteCommand::Reschedule { id, .. } => Some(*id),
            WriteCommand::Create(_) | WriteCommand::CallbacksProcessed { .. } => None,
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut rows: HashMap<Uuid, workflow::Model> = HashMap::new();
    if !ids.is_empty() {
        let loaded = workflow::Entity::find()
            .filter(workflow::Column::Id.is_in(ids))
            .order_by_asc(workflow::Column::Id)
            .lock_exclusive()
            .all(txn)
            .await?;
        rows.extend(loaded.into_iter().map(|row| (row.id, row)));
    }
    let mut replays: HashMap<(Uuid, String), (String, Uuid)> = HashMap::new();
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

    // Decide, in order, against the rows as earlier commands of the batch left them.
    let mut ledger_commands = Vec::new();
    let mut plans = Vec::with_capacity(commands.len());
    let mut processed: Vec<i64> = Vec::new();
    let mut changed: Vec<(Uuid, i64)> = Vec::new();
    for command in commands {
        let plan = match command {
            WriteCommand::CallbacksProcessed { inbox_ids } => {
                processed.extend(inbox_ids);
                Plan::Done(WriteOutcome::CallbacksProcessed)
            }
            WriteCommand::Reschedule {
                id,
                expected_version,
                attempt,
                next_attempt_at,
            } => {
                let current = rows
                    .get_mut(id)
                    .filter(|row| row.version == *expected_version && !row.state.is_terminal());
                let applied = current.is_some();
                if let Some(row) = current {
                    if !changed.iter().any(|(changed_id, _)| changed_id == id) {
                        changed.push((*id, row.version));
                    }
                    row.attempt = *attempt;
                    row.next_attempt_at = Some(*next_attempt_at);
                    row.updated_at = now;
                }
                Plan::Done(WriteOutcome::Rescheduled(applied))
            }
            WriteCommand::Create(new) => {
                let replay = new.idempotency.as_ref().and_then(|(key, hash)| {
                    replays
                        .get(&(new.account_id, key.clone()))
                        .map(|found| (hash, found))
                });
                match replay {
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
                        ledger_commands.push(Command::Hold {
                            hold_id,
                            account_id: new.account_id,
                            credits: new.cost,
                            generation_id: Some(new.id),
                        });
                        Plan::Create {
                            new: new.clone(),
                            hold_id,
                            ledger: ledger_commands.len() - 1,
                        }
                    }
                }
            }
            WriteCommand::Transition {
                id,
                expected_version,
                event,
                next_attempt_at,
            } => match rows.get_mut(id) {
                None => Plan::Done(WriteOutcome::Transition(TransitionOutcome::NotFound)),
                Some(row) => {
                    let to = machine::next(row.state, event)
                        .filter(|_| expected_version.is_none_or(|version| version == row.version));
                    match to {
                        None => Plan::Done(WriteOutcome::Transition(TransitionOutcome::Stale(
                            row.clone(),
                        ))),
                        Some(to) => {
                            let from = row.clone();
                            let ledger = match event {
                                Event::Stored { charge, .. } => Some(Command::Settle {
                                    hold_id: row.hold_id,
                                    amount: *charge,
                                }),
                                Event::Failed { .. } => Some(Command::Release {
                                    hold_id: row.hold_id,
                                }),
                                _ => None,
                            }
                            .map(|command| {
                                ledger_commands.push(command);
                                ledger_commands.len() - 1
                            });
                            apply_event(row, to, event, *next_attempt_at, now);
                            Plan::Transition {
                                id: *id,
                                from,
                                event: event.clone(),
                                ledger,
                            }
                        }
                    }
                }
            },
        };
        plans.push(plan);
    }

    let ledger_outcomes = if ledger_commands.is_empty() {
        Vec::new()
    } else {
        crate::ledger::store::apply_in(txn, &ledger_commands, now).await?
    };

    // Write what the plans decided.
    let mut created = Vec::new();
    let mut events = Vec::new();
    let mut keys = Vec::new();
    let mut outcomes = Vec::with_capacity(plans.len());
    for plan in plans {
        match plan {
            Plan::Done(outcome) => outcomes.push(outcome),
            Plan::Create {
                new,
                hold_id,
                ledger,
            } => match &ledger_outcomes[ledger] {
                Outcome::Hold(HoldOutcome::Held(_)) => {
                    let row = new_row(&new, hold_id, now);
                    events.push(event_row(
                        new.id,
                        None,
                        WorkflowState::Reserved,
                        "credits held",
                        0,
                        now,
                    ));
                    if let Some((key, hash)) = &new.idempotency {
                        keys.push(idempotency_key::ActiveModel {
                            account_id: Set(new.account_id),
                            scope: Set(IDEMPOTENCY_SCOPE.into()),
                            key: Set(key.clone()),
                            request_hash: Set(hash.clone()),
                            resource_id: Set(new.id),
                            created_at: Set(now),
                        });
                    }
                    created.push(row.clone());
                    outcomes.push(WriteOutcome::Create(CreateOutcome::Created(row)));
                }
                Outcome::Hold(HoldOutcome::InsufficientCredits {
                    available,
                    requested,
                }) => {
                    outcomes.push(WriteOutcome::Create(CreateOutcome::InsufficientCredits {
                        available: *available,
                        requested: *requested,
                    }));
                }
                other => {
                    return Err(DbErr::Custom(format!(
                        "hold for a new workflow answered {other:?}"
                    )));
                }
            },
            Plan::Transition {
                id,
                from,
                event,
                ledger,
            } => {
                if let Some(index) = ledger {
                    let resolved = matches!(
                        ledger_outcomes[index],
                        Outcome::Settle(SettleOutcome::Settled { .. })
                            | Outcome::Release(ReleaseOutcome::Released { .. })
                    );
                    if !resolved {
                        return Err(DbErr::Custom(format!(
                            "workflow {id} in {} has hold {} that answered {:?}",
                            from.state.as_str(),
                            from.hold_id,
                            ledger_outcomes[index]
                        )));
                    }
                }
                let to = rows[&id].state;
                events.push(event_row(
                    id,
                    Some(from.state),
                    to,
                    &event.reason(),
                    from.attempt,
                    now,
                ));
                if !changed.iter().any(|(changed_id, _)| *changed_id == id) {
                    changed.push((id, from.version));
                }
                outcomes.push(WriteOutcome::Transition(TransitionOutcome::Applied(
                    rows[&id].clone(),
                )));
            }
        }
    }
    if !created.is_empty() {
        let models = created.into_iter().map(IntoActiveModel::into_active_model);
        workflow::Entity::insert_many(models)
            .exec_without_returning(txn)
            .await?;
    }
    for (id, version_read) in changed {
        let row = &rows[&id];
        let update = workflow::Entity::update_many()
            .set(changed_columns(row))
            .filter(workflow::Column::Id.eq(id))
            .filter(workflow::Column::Version.eq(version_read))
            .exec(txn)
            .await?;
        if update.rows_affected != 1 {
            // The row was locked when read; only a bug gets here.
            return Err(DbErr::Custom(format!(
                "workflow {id} changed under its lock"
            )));
        }
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
    if !keys.is_empty() {
        idempotency_key::Entity::insert_many(keys)
            .exec_without_returning(txn)
            .await?;
    }
    if !events.is_empty() {
        workflow_event::Entity::insert_many(events)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(outcomes)
}

/// Moves the in-memory row as the transition says.
fn apply_event(
    row: &mut workflow::Model,
    to: WorkflowState,
    event: &Event,
    next_attempt_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) {
    let attempted = row.attempt + 1;
    row.state = to;
    row.version += 1;
    row.attempt = 0;
    row.next_attempt_at = if to.is_terminal() {
        None
    } else {
        next_attempt_at
    };
    row.updated_at = now;
    match event {
        Event::Accepted { task_id } => row.provider_task_id = Some(task_id.clone()),
        Event::Waiting => {}
        // Staying in the state, these count as attempts: failing over does not start afresh.
        Event::FailedOver { to, charge, .. } => {
            row.provider = to.clone();
            row.charge = Some(*charge).filter(|charge| *charge < row.cost);
            row.attempt = attempted;
        }
        Event::Deferred { .. } => row.attempt = attempted,
        Event::ResultReady { source, charge } => {
            row.result_source = Some(source.clone());
            if let Some(reported) = charge {
                row.charge = Some((*reported).clamp(0, row.charge_due())).filter(|c| *c < row.cost);
            }
        }
        Event::Stored { key, .. } => row.result_key = Some(key.clone()),
        Event::Failed { code, message } => {
            row.error_code = Some(code.as_str().to_owned());
            row.error_message = Some(message.clone());
        }
    }
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

fn event_row(
    workflow_id: Uuid,
    from: Option<WorkflowState>,
    to: WorkflowState,
    reason: &str,
    attempt: i32,
    at: DateTime<Utc>,
) -> workflow_event::ActiveModel {
    workflow_event::ActiveModel {
        id: NotSet,
        workflow_id: Set(workflow_id),
        from_state: Set(from),
        to_state: Set(to),
        reason: Set(reason.chars().take(255).collect()),
        attempt: Set(attempt),
        at: Set(at),
    }
}
