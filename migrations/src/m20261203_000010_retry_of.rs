//! What the ops API's generation list and retry need from `workflows`.
//!
//! - `retry_of`: a generation an operator re-ran as a new one points at the one it retries;
//!   `retried_as` is read back through `workflows_by_retry_of`.
//! - The list filters on a creation or update time range and sorts by either, with the id as
//!   a tie-breaker for its cursor: `(created_at, id)` and `(updated_at, id)` serve both.
//! - `q=` finds a generation by its provider task id: `workflows_by_task`.
//!
//! Down drops the indexes and the column (every retry link goes).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Workflows {
    Table,
    Id,
    RetryOf,
    CreatedAt,
    UpdatedAt,
    ProviderTaskId,
}

const INDEXES: [(&str, &[Workflows]); 4] = [
    ("workflows_by_retry_of", &[Workflows::RetryOf]),
    (
        "workflows_by_created",
        &[Workflows::CreatedAt, Workflows::Id],
    ),
    (
        "workflows_by_updated",
        &[Workflows::UpdatedAt, Workflows::Id],
    ),
    ("workflows_by_task", &[Workflows::ProviderTaskId]),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Workflows::Table)
                    .add_column(ColumnDef::new(Workflows::RetryOf).uuid().null())
                    .to_owned(),
            )
            .await?;
        for (name, columns) in INDEXES {
            let mut index = Index::create();
            index.name(name).table(Workflows::Table);
            for column in columns {
                index.col(*column);
            }
            manager.create_index(index.take()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, _) in INDEXES {
            manager
                .drop_index(Index::drop().name(name).table(Workflows::Table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Workflows::Table)
                    .drop_column(Workflows::RetryOf)
                    .to_owned(),
            )
            .await
    }
}
