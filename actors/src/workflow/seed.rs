//! Bulk loads for `atelier bench` (and tests): workflows that an earlier process left waiting,
//! or that ended long ago, written straight to the tables in one statement per chunk (their
//! holds are taken through the ledger first), each with the timeline that led it there, so
//! that `verify` finds them whole. The service itself never writes here; it writes through
//! `Workflows`.
use atelier_entities::workflow::{self, WorkflowState};
use atelier_entities::{idempotency_key, webhook_inbox, workflow_event};
use chrono::{DateTime, Utc};
use futures::future::join_all;
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, IntoActiveModel};
use uuid::Uuid;

use super::command::IDEMPOTENCY_SCOPE;
use super::inputs::{InputImage, Inputs};
use crate::Credits;
use crate::ledger::{Command, HoldOutcome, Ledger, LedgerError, Outcome, ReleaseOutcome};

/// Most ended workflows seeded per chunk (each row binds 26 parameters).
const ENDED_CHUNK: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Database(#[from] DbErr),
    #[error("the ledger failed: {0}")]
    Ledger(#[from] LedgerError),
    #[error("the ledger refused a seeded hold or release: {0}")]
    Refused(String),
}

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
    insert_with_events(db, rows, events).await
}

async fn insert_with_events<C: ConnectionTrait>(
    db: &C,
    rows: Vec<workflow::Model>,
    events: Vec<workflow_event::ActiveModel>,
) -> Result<(), DbErr> {
    let models = rows.into_iter().map(IntoActiveModel::into_active_model);
    workflow::Entity::insert_many(models)
        .exec_without_returning(db)
        .await?;
    workflow_event::Entity::insert_many(events)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// The inputs of a seeded workflow: two stored images that need not exist (a seeded workflow
/// is never submitted).
pub fn placeholder_inputs() -> String {
    Inputs {
        person_image: InputImage::Stored("inputs/seeded/person".into()),
        garment_image: InputImage::Stored("inputs/seeded/garment".into()),
        prompt: None,
        aspect_ratio: None,
    }
    .to_json()
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

/// Seeds `count` generations of `account_id` that ended at `ended_at`, as the writer would
/// have left a canceled one: its hold of 1 credit taken and released through `ledger`, its
/// row `released`, its timeline (`reserved`, then `released`), one processed provider callback
/// and its idempotency key `seed-{id}`. What retention prunes; returns their ids.
pub async fn insert_ended<C: ConnectionTrait>(
    db: &C,
    ledger: &Ledger,
    account_id: Uuid,
    count: usize,
    ended_at: DateTime<Utc>,
) -> Result<Vec<Uuid>, SeedError> {
    let mut seeded = Vec::with_capacity(count);
    let mut left = count;
    while left > 0 {
        let take = left.min(ENDED_CHUNK);
        left -= take;
        let rows: Vec<workflow::Model> =
            (0..take).map(|_| ended_row(account_id, ended_at)).collect();
        hold_and_release(ledger, &rows).await?;
        insert_ended_rows(db, &rows).await?;
        seeded.extend(rows.iter().map(|row| row.id));
    }
    Ok(seeded)
}

async fn hold_and_release(ledger: &Ledger, rows: &[workflow::Model]) -> Result<(), SeedError> {
    let one = Credits::parse(1).expect("1 is a valid amount");
    let holds = rows.iter().map(|row| {
        ledger.execute(Command::Hold {
            hold_id: row.hold_id,
            account_id: row.account_id,
            credits: one,
            generation_id: Some(row.id),
        })
    });
    for outcome in join_all(holds).await {
        if !matches!(outcome?, Outcome::Hold(HoldOutcome::Held(_))) {
            return Err(SeedError::Refused("a hold".into()));
        }
    }
    for outcome in join_all(rows.iter().map(|row| ledger.release(row.hold_id))).await {
        if !matches!(outcome?, ReleaseOutcome::Released { .. }) {
            return Err(SeedError::Refused("a release".into()));
        }
    }
    Ok(())
}

async fn insert_ended_rows<C: ConnectionTrait>(
    db: &C,
    rows: &[workflow::Model],
) -> Result<(), DbErr> {
    let moves = [
        (None, WorkflowState::Reserved),
        (Some(WorkflowState::Reserved), WorkflowState::Released),
    ];
    let events = rows.iter().flat_map(|row| {
        moves
            .iter()
            .enumerate()
            .map(|(version, (from, to))| workflow_event::ActiveModel {
                id: NotSet,
                workflow_id: Set(row.id),
                from_state: Set(*from),
                to_state: Set(*to),
                reason: Set("seeded by the benchmark".into()),
                attempt: Set(0),
                version: Set(version as i64),
                at: Set(row.updated_at),
                epoch: Set(None),
            })
    });
    let callbacks = rows.iter().map(|row| webhook_inbox::ActiveModel {
        id: NotSet,
        workflow_id: Set(row.id),
        provider: Set(row.provider.clone()),
        dedup_key: Set(format!("seed-{}", row.id)),
        payload: Set("{}".into()),
        received_at: Set(row.updated_at),
        processed_at: Set(Some(row.updated_at)),
    });
    let keys = rows.iter().map(|row| idempotency_key::ActiveModel {
        account_id: Set(row.account_id),
        scope: Set(IDEMPOTENCY_SCOPE.to_owned()),
        key: Set(format!("seed-{}", row.id)),
        request_hash: Set(String::new()),
        resource_id: Set(row.id),
        created_at: Set(row.created_at),
    });
    insert_with_events(db, rows.to_vec(), events.collect()).await?;
    webhook_inbox::Entity::insert_many(callbacks)
        .exec_without_returning(db)
        .await?;
    idempotency_key::Entity::insert_many(keys)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

fn ended_row(account_id: Uuid, ended_at: DateTime<Utc>) -> workflow::Model {
    let id = Uuid::now_v7();
    workflow::Model {
        id,
        account_id,
        state: WorkflowState::Released,
        version: 1,
        provider: "simulator".into(),
        cost: 1,
        charge: None,
        hold_id: Uuid::now_v7(),
        inputs: placeholder_inputs(),
        callback_token: format!("cb_seed_{}", Uuid::new_v4().simple()),
        provider_task_id: None,
        result_source: None,
        result_key: None,
        attempt: 0,
        next_attempt_at: None,
        deadline_at: ended_at,
        error_code: Some("canceled".into()),
        error_message: Some("seeded by the benchmark".into()),
        created_at: ended_at,
        updated_at: ended_at,
        retry_of: None,
        shard: crate::cluster::shard_of(id),
        pruned_at: None,
        result_expired_at: None,
    }
}
