//! Checks docs/design.md §4 invariants 4–6, 8 and 10 over the whole database (7, replay safety, is a
//! property of the code paths and is proven by tests):
//!
//! 4. a terminal workflow's hold is resolved (settled for `settled`, released for `released`),
//!    and a settled one consumed exactly the charge due; a non-terminal one's hold is open;
//! 5. a `settled` workflow's result object exists in our storage;
//! 6. every non-terminal workflow has a deadline, and none is past it by more than `grace`;
//! 8. a workflow's events form a chain: the first `from` is null, each `from` is the previous
//!    `to`, the last `to` is the current state, and versions run 0, 1, … up to the row's;
//! 10. a workflow is in the shard its id names, and along each shard's events (in id order,
//!     which is commit order within a shard: a takeover waits for the writes fenced by the
//!     lease it takes) the lease epochs never go backwards.
//!
//! Retention (`workflow::retention`) changes what 5 and 8 can see: a pruned workflow has no
//! events left, so 8 asks instead that it is terminal and that none remain; a result marked
//! expired was deleted on purpose, so 5 asks instead that its workflow settled.
use atelier_entities::hold;
use atelier_entities::workflow::{self, WorkflowState};
use atelier_entities::workflow_event;
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use std::collections::HashMap;

use super::machine;
use crate::cluster::shard_of;
use crate::ledger::verify::Violation;
use crate::progress::{Progress, Silent};
use crate::storage::Storage;

const PAGE: u64 = 5_000;

pub async fn verify_workflows<C: ConnectionTrait>(
    db: &C,
    storage: &Storage,
    now: DateTime<Utc>,
    grace: chrono::Duration,
) -> Result<Vec<Violation>, DbErr> {
    verify_workflows_with(db, storage, now, grace, &Silent).await
}

/// As `verify_workflows`, telling `progress` how many workflows it checked.
pub async fn verify_workflows_with<C: ConnectionTrait>(
    db: &C,
    storage: &Storage,
    now: DateTime<Utc>,
    grace: chrono::Duration,
    progress: &dyn Progress,
) -> Result<Vec<Violation>, DbErr> {
    progress.phase("workflows", Some(workflow::Entity::find().count(db).await?));
    let mut violations = Vec::new();
    let mut after: Option<uuid::Uuid> = None;
    loop {
        let mut query = workflow::Entity::find()
            .order_by_asc(workflow::Column::Id)
            .limit(PAGE);
        if let Some(after) = after {
            query = query.filter(workflow::Column::Id.gt(after));
        }
        let page = query.all(db).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        progress.advance(page.len() as u64);
        let holds = crate::ledger::read::holds(db, page.iter().map(|row| row.hold_id)).await?;
        let mut timelines = timelines(db, &page).await?;
        for row in page {
            let events = timelines.remove(&row.id).unwrap_or_default();
            let found = [
                (
                    8,
                    match row.pruned_at {
                        Some(_) => wrongly_pruned(&row, &events),
                        None => broken_chain(&row, &events),
                    },
                ),
                (4, wrong_hold(&row, holds.get(&row.hold_id))),
                (5, missing_result(&row, storage).await),
                (6, stuck(&row, now, grace)),
                (10, wrong_shard(&row)),
            ];
            violations.extend(found.into_iter().filter_map(|(invariant, detail)| {
                Some(Violation {
                    invariant,
                    subject: format!("workflow {}", row.id),
                    detail: detail?,
                })
            }));
        }
    }
    violations.extend(epochs_backwards(db).await?);
    progress.finish();
    Ok(violations)
}

/// Invariant 10, the row: its shard is its id's.
fn wrong_shard(row: &workflow::Model) -> Option<String> {
    let named = shard_of(row.id);
    (row.shard != named)
        .then(|| format!("is in shard {} but its id names shard {named}", row.shard))
}

/// Invariant 10, the events: an event written under a lower epoch than one before it in its
/// shard means two owners wrote at once — a write the fence should have refused. The database
/// compares each fenced event with the one before it in its shard; the first few found are
/// reported.
async fn epochs_backwards<C: ConnectionTrait>(db: &C) -> Result<Vec<Violation>, DbErr> {
    let sql = "SELECT shard, id, epoch, prior FROM (\
                 SELECT w.shard AS shard, e.id AS id, e.epoch AS epoch, \
                   lag(e.epoch) OVER (PARTITION BY w.shard ORDER BY e.id) AS prior \
                 FROM workflow_events e JOIN workflows w ON w.id = e.workflow_id \
                 WHERE e.epoch IS NOT NULL) fenced \
               WHERE epoch < prior ORDER BY shard, id LIMIT 20";
    let statement = sea_orm::Statement::from_string(db.get_database_backend(), sql);
    let mut violations = Vec::new();
    for row in db.query_all_raw(statement).await? {
        let (shard, id, epoch, before): (i16, i64, i64, i64) = (
            row.try_get("", "shard")?,
            row.try_get("", "id")?,
            row.try_get("", "epoch")?,
            row.try_get("", "prior")?,
        );
        violations.push(Violation {
            invariant: 10,
            subject: format!("shard {shard}"),
            detail: format!("event {id} was written under epoch {epoch}, after one under {before}"),
        });
    }
    Ok(violations)
}

/// Invariant 4: the hold exists, is in the state the workflow's state implies, and a settled
/// one consumed exactly the charge due.
fn wrong_hold(row: &workflow::Model, hold: Option<&hold::Model>) -> Option<String> {
    let Some(hold) = hold else {
        return Some(format!("its hold {} does not exist", row.hold_id));
    };
    if hold.state != machine::hold_state(row.state) {
        return Some(format!(
            "is {} but its hold is {}",
            row.state.as_str(),
            hold.state.as_str()
        ));
    }
    (row.state == WorkflowState::Settled && hold.settled_amount != row.charge_due()).then(|| {
        format!(
            "settled {} credits where {} were due",
            hold.settled_amount,
            row.charge_due()
        )
    })
}

/// Invariant 5: a settled workflow's result is in our storage (a HEAD request on S3). Storage
/// that cannot answer is reported too: the invariant is then unchecked, not holding.
async fn missing_result(row: &workflow::Model, storage: &Storage) -> Option<String> {
    if row.result_expired_at.is_some() {
        return (row.state != WorkflowState::Settled)
            .then(|| format!("its result expired but it is {}", row.state.as_str()));
    }
    if row.state != WorkflowState::Settled {
        return None;
    }
    let Some(key) = &row.result_key else {
        return Some("settled without a result key".to_owned());
    };
    match storage.exists(key).await {
        Ok(true) => None,
        Ok(false) => Some(format!("settled without its result in storage ({key:?})")),
        Err(error) => Some(format!("its result {key:?} could not be checked: {error}")),
    }
}

/// Invariant 6: a live workflow is not past its deadline by more than `grace`.
fn stuck(row: &workflow::Model, now: DateTime<Utc>, grace: chrono::Duration) -> Option<String> {
    (!row.state.is_terminal() && now > row.deadline_at + grace).then(|| {
        format!(
            "is still {} {}s past its deadline",
            row.state.as_str(),
            (now - row.deadline_at).num_seconds()
        )
    })
}

/// The events of `page`'s workflows, each workflow's in order.
async fn timelines<C: ConnectionTrait>(
    db: &C,
    page: &[workflow::Model],
) -> Result<HashMap<uuid::Uuid, Vec<workflow_event::Model>>, DbErr> {
    let mut timelines: HashMap<uuid::Uuid, Vec<workflow_event::Model>> = HashMap::new();
    let ids: Vec<uuid::Uuid> = page.iter().map(|row| row.id).collect();
    // A few hundred ids per query keep the statement well within every bound-parameter limit.
    for chunk in ids.chunks(500) {
        let events = workflow_event::Entity::find()
            .filter(workflow_event::Column::WorkflowId.is_in(chunk.iter().copied()))
            .order_by_asc(workflow_event::Column::Id)
            .all(db)
            .await?;
        for event in events {
            timelines.entry(event.workflow_id).or_default().push(event);
        }
    }
    Ok(timelines)
}

/// What breaks invariant 8 for a pruned `row`: only an ended workflow may be pruned, and a
/// prune deletes every event in the transaction that marks it.
fn wrongly_pruned(row: &workflow::Model, events: &[workflow_event::Model]) -> Option<String> {
    if !row.state.is_terminal() {
        return Some(format!("was pruned but is still {}", row.state.as_str()));
    }
    (!events.is_empty()).then(|| format!("was pruned but {} of its events remain", events.len()))
}

/// What breaks invariant 8 for `row` and its `events` (in id order), if anything.
pub fn broken_chain(row: &workflow::Model, events: &[workflow_event::Model]) -> Option<String> {
    let Some(first) = events.first() else {
        return Some("has no events".into());
    };
    if let Some(from) = first.from_state {
        return Some(format!("its first event comes from {}", from.as_str()));
    }
    for (index, pair) in events.windows(2).enumerate() {
        let (before, after) = (&pair[0], &pair[1]);
        if after.from_state != Some(before.to_state) {
            return Some(format!(
                "event {} comes from {} but the one before led to {}",
                index + 1,
                after.from_state.map_or("nothing", WorkflowState::as_str),
                before.to_state.as_str()
            ));
        }
    }
    if let Some((index, event)) = events
        .iter()
        .enumerate()
        .find(|(index, event)| event.version != *index as i64)
    {
        return Some(format!(
            "event {index} has version {} (versions must run 0, 1, …)",
            event.version
        ));
    }
    let last = events.last().expect("not empty");
    if last.to_state != row.state || last.version != row.version {
        return Some(format!(
            "its last event leads to {} at version {}, but it is {} at version {}",
            last.to_state.as_str(),
            last.version,
            row.state.as_str(),
            row.version
        ));
    }
    None
}
