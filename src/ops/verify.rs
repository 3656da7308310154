//! The invariant check (docs/design.md §4): what `atelier verify` prints and
//! `POST /v1/ops/verify` answers, run over one snapshot of the database.
use atelier_actors::db;
use atelier_actors::ledger::read::{self as ledger_read, RowCounts};
use atelier_actors::ledger::verify::{Violation, verify_ledger_with};
use atelier_actors::progress::Progress;
use atelier_actors::storage::Storage;
use atelier_actors::webhooks_out::verify::verify_outbox;
use atelier_actors::workflow::read as workflow_read;
use atelier_actors::workflow::verify::verify_workflows_with;
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};
use serde::Serialize;
use std::time::Duration;

/// The invariants checked; 7 is a property of the code paths, checked by tests.
pub const INVARIANTS: [u8; 9] = [1, 2, 3, 4, 5, 6, 8, 9, 10];

/// How far past its deadline a live workflow may be before `verify` calls it stuck: the engine
/// acts on deadlines every tick, so this only trips when nothing is running the engine.
pub const DEADLINE_GRACE: chrono::Duration = chrono::Duration::seconds(60);

/// What was checked: the invariants and the rows read.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    pub invariants: [u8; 9],
    #[serde(flatten)]
    pub ledger: RowCounts,
    pub workflows: i64,
}

pub struct Report {
    pub violations: Vec<Violation>,
    pub checked: Checked,
}

/// Every invariant over one consistent snapshot, `now` judging deadlines, telling `progress`
/// how far it got; with a `limit`, each statement is cut at it on PostgreSQL (the caller
/// bounds the whole run).
pub async fn run(
    db: &DatabaseConnection,
    storage: &Storage,
    now: DateTime<Utc>,
    limit: Option<Duration>,
    progress: &dyn Progress,
) -> Result<Report, DbErr> {
    let snapshot = match limit {
        Some(limit) => db::begin_bounded_snapshot(db, limit).await?,
        None => db::begin_snapshot(db).await?,
    };
    let mut violations = verify_ledger_with(&snapshot, progress).await?;
    violations
        .extend(verify_workflows_with(&snapshot, storage, now, DEADLINE_GRACE, progress).await?);
    violations.extend(verify_outbox(&snapshot).await?);
    let ledger = ledger_read::row_counts(&snapshot).await?;
    let workflows = workflow_read::counts_by_state(&snapshot)
        .await?
        .iter()
        .map(|(_, count)| count)
        .sum();
    snapshot.rollback().await?;
    Ok(Report {
        violations,
        checked: Checked {
            invariants: INVARIANTS,
            ledger,
            workflows,
        },
    })
}
