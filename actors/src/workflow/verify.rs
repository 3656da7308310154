//! Checks DESIGN.md §4 invariants 4–6 over the whole database (7, replay safety, is a property
//! of the code paths and is proven by tests):
//!
//! 4. a terminal workflow's hold is resolved (settled for `settled`, released for `released`);
//!    a non-terminal one's hold is open;
//! 5. a `settled` workflow's result object exists in our storage;
//! 6. every non-terminal workflow has a deadline, and none is past it by more than `grace`.
use atelier_entities::hold::{self, HoldState};
use atelier_entities::workflow::{self, WorkflowState};
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use std::collections::HashMap;

use crate::ledger::verify::Violation;
use crate::storage::Storage;

const PAGE: u64 = 5_000;

pub async fn verify_workflows<C: ConnectionTrait>(
    db: &C,
    storage: &Storage,
    now: DateTime<Utc>,
    grace: chrono::Duration,
) -> Result<Vec<Violation>, DbErr> {
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
        let holds: HashMap<uuid::Uuid, hold::Model> = hold::Entity::find()
            .filter(hold::Column::Id.is_in(page.iter().map(|row| row.hold_id)))
            .all(db)
            .await?
            .into_iter()
            .map(|row| (row.id, row))
            .collect();
        for row in page {
            let subject = format!("workflow {}", row.id);
            let expected = match row.state {
                WorkflowState::Settled => HoldState::Settled,
                WorkflowState::Released => HoldState::Released,
                _ => HoldState::Open,
            };
            match holds.get(&row.hold_id) {
                None => violations.push(Violation {
                    invariant: 4,
                    subject: subject.clone(),
                    detail: format!("its hold {} does not exist", row.hold_id),
                }),
                Some(hold) if hold.state != expected => violations.push(Violation {
                    invariant: 4,
                    subject: subject.clone(),
                    detail: format!(
                        "is {} but its hold is {}",
                        row.state.as_str(),
                        hold.state.as_str()
                    ),
                }),
                Some(_) => {}
            }
            if row.state == WorkflowState::Settled {
                let stored = match &row.result_key {
                    Some(key) => storage.exists(key).await.unwrap_or(false),
                    None => false,
                };
                if !stored {
                    violations.push(Violation {
                        invariant: 5,
                        subject: subject.clone(),
                        detail: format!(
                            "settled without its result in storage ({:?})",
                            row.result_key
                        ),
                    });
                }
            }
            if !row.state.is_terminal() && now > row.deadline_at + grace {
                violations.push(Violation {
                    invariant: 6,
                    subject,
                    detail: format!(
                        "is still {} {}s past its deadline",
                        row.state.as_str(),
                        (now - row.deadline_at).num_seconds()
                    ),
                });
            }
        }
    }
    Ok(violations)
}
