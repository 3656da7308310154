//! Bulk loads for `atelier bench`: workflows that an earlier process left waiting, written
//! straight to the tables in one statement per chunk (their holds are taken through the
//! ledger first), each with the timeline that led it there, so that `verify` finds them
//! whole. The service itself never writes here; it writes through `Workflows`.
use atelier_entities::workflow::{self, WorkflowState};
use atelier_entities::workflow_event;
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, IntoActiveModel};

/// The states a workflow passes through on its way to a result, in order.
const HAPPY_PATH: [WorkflowState; 5] = [
    WorkflowState::Reserved,
    WorkflowState::Submitted,
    WorkflowState::AwaitingCallback,
    WorkflowState::Uploading,
    WorkflowState::Settled,
];

/// Inserts `rows` as they are, with one event per version along the happy path: each row's
/// `version` must be its state's place on it (`awaiting_callback` at version 2).
pub async fn insert_parked<C: ConnectionTrait>(
    db: &C,
    rows: Vec<workflow::Model>,
) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    let events: Vec<workflow_event::ActiveModel> = rows.iter().flat_map(timeline).collect();
    let models = rows.into_iter().map(IntoActiveModel::into_active_model);
    workflow::Entity::insert_many(models)
        .exec_without_returning(db)
        .await?;
    workflow_event::Entity::insert_many(events)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

fn timeline(row: &workflow::Model) -> Vec<workflow_event::ActiveModel> {
    let place = HAPPY_PATH
        .iter()
        .position(|state| *state == row.state)
        .expect("a parked workflow is on the happy path");
    assert_eq!(
        place as i64, row.version,
        "a parked workflow's version is its state's place on the happy path"
    );
    (0..=place)
        .map(|version| workflow_event::ActiveModel {
            id: NotSet,
            workflow_id: Set(row.id),
            from_state: Set(version.checked_sub(1).map(|before| HAPPY_PATH[before])),
            to_state: Set(HAPPY_PATH[version]),
            reason: Set("seeded by the benchmark".into()),
            attempt: Set(0),
            version: Set(version as i64),
            at: Set(row.created_at),
            epoch: Set(None),
        })
        .collect()
}
