//! Operators' bulk actions: cancel or wake every live generation a filter matches, as a job in
//! the background. The one owner of `ops_bulk_jobs`.
//!
//! The target set is fixed when the job starts: the generations the filter (its time range
//! made absolute) matches that were created at or before the job's `cutoff` (its start) and are
//! live when their page is read. Pages of `PAGE` ids are taken in id order after the job's
//! cursor; each page's actions run together, then the cursor and the counters are saved in one
//! update, then the runner pauses `PACE` so that the workflow writer stays free for the
//! engine. A restart loses at most the page in flight, and the service resumes every
//! `running` job from its cursor at start (`resume`): acting again on that page changes
//! nothing, since a cancel is a compare-and-set transition (a released generation stays
//! released) and a wake only makes a live generation due.
use std::time::Duration;

use actix_web::web;
use atelier_entities::ops_bulk_job;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::api::ops::generation_filter::FilterSpec;
use crate::control::{self, Canceled, Woken};
use crate::state::AppState;

/// The most generations one job may cover.
pub const MAX_TARGETS: u64 = 10_000;
/// Generations acted on together, between two saves of the job's progress.
pub const PAGE: u64 = 100;
/// The pause between two pages.
pub const PACE: Duration = Duration::from_millis(20);

pub use crate::state::PageHook;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    Cancel,
    Wake,
}

impl BulkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::Cancel => "cancel",
            BulkAction::Wake => "wake",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [BulkAction::Cancel, BulkAction::Wake]
            .into_iter()
            .find(|action| action.as_str() == text)
    }
}

pub const RUNNING: &str = "running";
pub const FINISHED: &str = "finished";
pub const FAILED: &str = "failed";

/// A job about to start.
pub struct NewJob {
    pub id: Uuid,
    pub action: BulkAction,
    /// Absolute (`FilterSpec::absolute`).
    pub filter: FilterSpec,
    pub reason: String,
    pub total: u64,
    pub cutoff: DateTime<Utc>,
}

pub async fn create(db: &impl ConnectionTrait, new: NewJob) -> Result<ops_bulk_job::Model, DbErr> {
    let row = ops_bulk_job::Model {
        id: new.id,
        action: new.action.as_str().to_owned(),
        filter: serde_json::to_string(&new.filter).expect("serialises"),
        reason: new.reason,
        state: RUNNING.to_owned(),
        total: new.total as i64,
        done: 0,
        skipped: 0,
        failed: 0,
        cursor: None,
        cutoff: new.cutoff,
        error: None,
        started_at: new.cutoff,
        updated_at: new.cutoff,
        finished_at: None,
    };
    ops_bulk_job::Entity::insert(ops_bulk_job::ActiveModel::from(row.clone()))
        .exec_without_returning(db)
        .await?;
    Ok(row)
}

pub async fn find(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<ops_bulk_job::Model>, DbErr> {
    ops_bulk_job::Entity::find_by_id(id).one(db).await
}

/// Newest first (ids are UUIDv7), ids below `before`; the page and the next cursor.
pub async fn list(
    db: &impl ConnectionTrait,
    before: Option<Uuid>,
    limit: u64,
) -> Result<(Vec<ops_bulk_job::Model>, Option<Uuid>), DbErr> {
    let mut query = ops_bulk_job::Entity::find();
    if let Some(before) = before {
        query = query.filter(ops_bulk_job::Column::Id.lt(before));
    }
    let rows = query
        .order_by_desc(ops_bulk_job::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    Ok(atelier_actors::db::page_of(rows, limit, |row| row.id))
}

/// Starts running job `id` in the background.
pub fn spawn(state: web::Data<AppState>, id: Uuid) {
    actix_web::rt::spawn(async move {
        if let Err(error) = drive(&state, id).await {
            tracing::error!(bulk_job_id = %id, error = %format!("{error:#}"), "bulk job failed");
            let failed = ops_bulk_job::ActiveModel {
                id: Set(id),
                state: Set(FAILED.to_owned()),
                error: Set(Some(format!("{error:#}").chars().take(1000).collect())),
                finished_at: Set(Some(state.clock.now())),
                updated_at: Set(state.clock.now()),
                ..Default::default()
            };
            if let Err(error) = ops_bulk_job::Entity::update(failed).exec(&state.db).await {
                tracing::error!(bulk_job_id = %id, %error, "cannot record the bulk job's failure");
            }
        }
    });
}

/// Resumes, in the background, every job a previous process left running.
pub fn resume(state: web::Data<AppState>) {
    actix_web::rt::spawn(async move {
        let running = ops_bulk_job::Entity::find()
            .filter(ops_bulk_job::Column::State.eq(RUNNING))
            .all(&state.db)
            .await;
        match running {
            Ok(jobs) => {
                for job in jobs {
                    tracing::info!(bulk_job_id = %job.id, done = job.done, total = job.total, "resuming a bulk job");
                    spawn(state.clone(), job.id);
                }
            }
            Err(error) => tracing::error!(%error, "cannot look for bulk jobs to resume"),
        }
    });
}

/// What acting on one generation came to.
enum Tally {
    Done,
    Skipped,
    Failed,
}

async fn act(state: &AppState, action: BulkAction, job_id: Uuid, id: Uuid) -> Tally {
    let outcome = match action {
        BulkAction::Cancel => {
            let message = format!("canceled by an operator (bulk job {job_id})");
            control::cancel(state, id, &message)
                .await
                .map(|canceled| matches!(canceled, Canceled::Released(_)))
        }
        BulkAction::Wake => control::wake(state, id)
            .await
            .map(|woken| matches!(woken, Woken::Woken(_))),
    };
    match outcome {
        Ok(true) => Tally::Done,
        Ok(false) => Tally::Skipped,
        Err(error) => {
            tracing::warn!(bulk_job_id = %job_id, generation_id = %id, %error, "bulk action failed on a generation");
            Tally::Failed
        }
    }
}

/// Runs job `id` from its cursor to the end, a page at a time.
async fn drive(state: &AppState, id: Uuid) -> anyhow::Result<()> {
    let Some(mut job) = find(&state.db, id).await? else {
        return Ok(());
    };
    if job.state != RUNNING {
        return Ok(());
    }
    let spec: FilterSpec = serde_json::from_str(&job.filter)?;
    let filter = spec
        .resolve(job.started_at)
        .map_err(|error| anyhow::anyhow!("the job's filter: {}", error.message))?;
    let action = BulkAction::parse(&job.action)
        .ok_or_else(|| anyhow::anyhow!("no bulk action {:?}", job.action))?;
    let mut pages = 0;
    loop {
        let ids = atelier_actors::workflow::read::bulk_targets_after(
            &state.db, &filter, job.cutoff, job.cursor, PAGE,
        )
        .await?;
        let Some(last) = ids.last().copied() else {
            return finish(state, job).await;
        };
        let tallies =
            futures::future::join_all(ids.iter().map(|one| act(state, action, id, *one))).await;
        for tally in tallies {
            match tally {
                Tally::Done => job.done += 1,
                Tally::Skipped => job.skipped += 1,
                Tally::Failed => job.failed += 1,
            }
        }
        job.cursor = Some(last);
        save_progress(state, &job).await?;
        pages += 1;
        if let Some(hook) = &state.bulk_hook
            && !hook(pages)
        {
            return Ok(());
        }
        tokio::time::sleep(PACE).await;
    }
}

async fn save_progress(state: &AppState, job: &ops_bulk_job::Model) -> Result<(), DbErr> {
    let progress = ops_bulk_job::ActiveModel {
        id: Set(job.id),
        done: Set(job.done),
        skipped: Set(job.skipped),
        failed: Set(job.failed),
        cursor: Set(job.cursor),
        updated_at: Set(state.clock.now()),
        ..Default::default()
    };
    ops_bulk_job::Entity::update(progress)
        .exec(&state.db)
        .await?;
    Ok(())
}

/// Marks the job finished. What matched at the start and was not acted on (it ended or left
/// the filter before its turn) counts as skipped.
async fn finish(state: &AppState, job: ops_bulk_job::Model) -> anyhow::Result<()> {
    let skipped = job.skipped.max(job.total - job.done - job.failed);
    let now = state.clock.now();
    let finished = ops_bulk_job::ActiveModel {
        id: Set(job.id),
        state: Set(FINISHED.to_owned()),
        skipped: Set(skipped),
        finished_at: Set(Some(now)),
        updated_at: Set(now),
        ..Default::default()
    };
    ops_bulk_job::Entity::update(finished)
        .exec(&state.db)
        .await?;
    tracing::info!(bulk_job_id = %job.id, done = job.done, skipped, failed = job.failed, "bulk job finished");
    Ok(())
}
