//! Invariant 9 of docs/design.md §4, the outbox: a delivery exists only for a terminal
//! workflow, for the event its state is, at most once per endpoint (the unique index); and a
//! terminal workflow has a delivery for every endpoint of its account that subscribed to its
//! event and was live when it ended (`endpoints::live_at` its `updated_at`; nothing changes a
//! terminal row after). The second half is sound because endpoints are registered and deleted
//! under the account's lock, at a time read under it (see `endpoints`).
//!
//! Retention deletes a pruned workflow's finished deliveries, so the second half skips pruned
//! workflows; the first holds for the deliveries that remain (a pending one is kept).
use std::collections::{HashMap, HashSet};

use atelier_entities::webhook_endpoint::Model as Endpoint;
use atelier_entities::workflow;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::endpoints;
use super::event::{self, EventType};
use super::outbox;
use crate::ledger::verify::Violation;

const PAGE: u64 = 5_000;
const INVARIANT: u8 = 9;

pub async fn verify_outbox<C: ConnectionTrait>(db: &C) -> Result<Vec<Violation>, DbErr> {
    let mut violations = deliveries_match_their_workflows(db).await?;
    violations.extend(terminal_workflows_have_their_deliveries(db).await?);
    Ok(violations)
}

fn violation(subject: String, detail: String) -> Violation {
    Violation {
        invariant: INVARIANT,
        subject,
        detail,
    }
}

/// Every delivery names a terminal workflow whose state is the delivery's event.
async fn deliveries_match_their_workflows<C: ConnectionTrait>(
    db: &C,
) -> Result<Vec<Violation>, DbErr> {
    let mut violations = Vec::new();
    let mut after = None;
    loop {
        let page = outbox::page_all(db, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        let ids: HashSet<Uuid> = page.iter().map(|delivery| delivery.workflow_id).collect();
        let rows: HashMap<Uuid, workflow::Model> = workflow::Entity::find()
            .filter(workflow::Column::Id.is_in(ids))
            .all(db)
            .await?
            .into_iter()
            .map(|row| (row.id, row))
            .collect();
        for delivery in page {
            let expected = rows.get(&delivery.workflow_id).and_then(event::event_for);
            if expected.map(EventType::as_str) != Some(delivery.event_type.as_str()) {
                let state = rows
                    .get(&delivery.workflow_id)
                    .map_or("missing", |row| row.state.as_str());
                violations.push(violation(
                    format!("webhook delivery {}", delivery.id),
                    format!(
                        "reports {} for workflow {}, which is {state}",
                        delivery.event_type, delivery.workflow_id
                    ),
                ));
            }
        }
    }
    Ok(violations)
}

/// Every terminal workflow of an account with endpoints has the deliveries they imply.
async fn terminal_workflows_have_their_deliveries<C: ConnectionTrait>(
    db: &C,
) -> Result<Vec<Violation>, DbErr> {
    let mut by_account: HashMap<Uuid, Vec<Endpoint>> = HashMap::new();
    let mut after = None;
    loop {
        let page = endpoints::page_all(db, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for endpoint in page {
            by_account
                .entry(endpoint.account_id)
                .or_default()
                .push(endpoint);
        }
    }
    let mut violations = Vec::new();
    for (account_id, endpoints) in by_account {
        violations.extend(check_account(db, account_id, &endpoints).await?);
    }
    Ok(violations)
}

async fn check_account<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
    endpoints: &[Endpoint],
) -> Result<Vec<Violation>, DbErr> {
    let first = endpoints.iter().map(|endpoint| endpoint.created_at).min();
    let mut violations = Vec::new();
    let mut after: Option<Uuid> = None;
    loop {
        let mut query = workflow::Entity::find()
            .filter(workflow::Column::AccountId.eq(account_id))
            .filter(workflow::Column::State.is_in([
                workflow::WorkflowState::Settled,
                workflow::WorkflowState::Released,
            ]))
            .order_by_asc(workflow::Column::Id)
            .limit(PAGE);
        if let Some(first) = first {
            query = query.filter(workflow::Column::UpdatedAt.gte(first));
        }
        if let Some(after) = after {
            query = query.filter(workflow::Column::Id.gt(after));
        }
        let page = query.all(db).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        let found: HashSet<(Uuid, Uuid)> = outbox::pairs_for(db, page.iter().map(|row| row.id))
            .await?
            .into_iter()
            .collect();
        for row in &page {
            violations.extend(missing(row, endpoints, &found));
        }
    }
    Ok(violations)
}

fn missing(
    row: &workflow::Model,
    endpoints: &[Endpoint],
    found: &HashSet<(Uuid, Uuid)>,
) -> Vec<Violation> {
    if row.pruned_at.is_some() {
        return Vec::new();
    }
    let Some(event) = event::event_for(row) else {
        return Vec::new();
    };
    endpoints
        .iter()
        .filter(|endpoint| {
            endpoints::subscribes(endpoint, event) && endpoints::live_at(endpoint, row.updated_at)
        })
        .filter(|endpoint| !found.contains(&(row.id, endpoint.id)))
        .map(|endpoint| {
            violation(
                format!("workflow {}", row.id),
                format!(
                    "ended {} with endpoint {} subscribed, but has no delivery for it",
                    row.state.as_str(),
                    endpoint.id
                ),
            )
        })
        .collect()
}
