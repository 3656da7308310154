//! Operators' bulk actions (cancel or wake everything matching a filter) run in the background
//! as jobs that outlive a restart: each row keeps the job's filter (with its time range made
//! absolute), the instant that fixes its target set (`cutoff`: generations created after it are
//! not part of the job), the last generation id it has dealt with (`cursor`, saved with the
//! counters after each page) and its state. At start the service resumes every `running` job
//! from its cursor.
//!
//! Down drops the table and every job's record.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum OpsBulkJobs {
    Table,
    Id,
    Action,
    Filter,
    Reason,
    State,
    Total,
    Done,
    Skipped,
    Failed,
    Cursor,
    Cutoff,
    Error,
    StartedAt,
    UpdatedAt,
    FinishedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OpsBulkJobs::Table)
                    .col(pk_uuid(OpsBulkJobs::Id))
                    .col(string_len(OpsBulkJobs::Action, 16))
                    .col(text(OpsBulkJobs::Filter))
                    .col(text(OpsBulkJobs::Reason))
                    .col(string_len(OpsBulkJobs::State, 16))
                    .col(big_integer(OpsBulkJobs::Total))
                    .col(big_integer(OpsBulkJobs::Done))
                    .col(big_integer(OpsBulkJobs::Skipped))
                    .col(big_integer(OpsBulkJobs::Failed))
                    .col(uuid_null(OpsBulkJobs::Cursor))
                    .col(timestamp_with_time_zone(OpsBulkJobs::Cutoff))
                    .col(text_null(OpsBulkJobs::Error))
                    .col(timestamp_with_time_zone(OpsBulkJobs::StartedAt))
                    .col(timestamp_with_time_zone(OpsBulkJobs::UpdatedAt))
                    .col(timestamp_with_time_zone_null(OpsBulkJobs::FinishedAt))
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ops_bulk_jobs_by_state")
                    .table(OpsBulkJobs::Table)
                    .col(OpsBulkJobs::State)
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OpsBulkJobs::Table).take())
            .await
    }
}
