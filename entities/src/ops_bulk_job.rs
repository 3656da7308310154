//! An operator's bulk action over a filter, run in the background and resumed after a
//! restart (`src/ops/bulk.rs` owns the table).
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ops_bulk_jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// `cancel` or `wake`.
    pub action: String,
    /// The filter, as JSON, its time range absolute.
    pub filter: String,
    pub reason: String,
    /// `running`, `finished` or `failed`.
    pub state: String,
    /// How many generations matched when the job started.
    pub total: i64,
    /// Acted on.
    pub done: i64,
    /// Matched, but already past what the action applies to when their turn came.
    pub skipped: i64,
    /// The action's write failed.
    pub failed: i64,
    /// The last generation id dealt with (ids ascending); `None` before the first page.
    pub cursor: Option<Uuid>,
    /// Generations created after this instant are not part of the job.
    pub cutoff: DateTimeUtc,
    /// Why the job failed.
    pub error: Option<String>,
    pub started_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
