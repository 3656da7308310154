//! Retention (issue 13): what the pruner needs from `workflows` and `idempotency_keys`.
//!
//! - `workflows.pruned_at`: when a terminal workflow's events, callbacks, idempotency key and
//!   finished webhook deliveries were deleted (the row itself stays: the ledger names it);
//! - `workflows.result_expired_at`: when its result object was deleted from storage;
//! - two partial indexes, so that each pruner batch finds its next rows without walking the
//!   ones already done, and so that live rows (the hot path) are in neither: a row enters
//!   `workflows_to_prune` when it ends and leaves it when pruned, and `workflows_to_expire`
//!   holds settled rows only (`result_key` is set by the settle). The pruner's queries repeat
//!   these predicates word for word, as SQLite and PostgreSQL need to use a partial index;
//! - `idempotency_keys_by_resource`, so that a generation's key is deleted by its workflow id
//!   (the primary key starts with the account).
//!
//! Raw SQL for the partial indexes, identical on both backends. Down drops all of it.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Workflows {
    Table,
    PrunedAt,
    ResultExpiredAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum IdempotencyKeys {
    Table,
    ResourceId,
}

const PARTIAL_INDEXES: [&str; 2] = [
    "CREATE INDEX workflows_to_prune ON workflows (updated_at) \
     WHERE pruned_at IS NULL AND state IN ('settled', 'released')",
    "CREATE INDEX workflows_to_expire ON workflows (updated_at) \
     WHERE result_expired_at IS NULL AND result_key IS NOT NULL",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        for column in [Workflows::PrunedAt, Workflows::ResultExpiredAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Workflows::Table)
                        .add_column(
                            ColumnDef::new(column)
                                .timestamp_with_time_zone()
                                .null()
                                .to_owned(),
                        )
                        .to_owned(),
                )
                .await?;
        }
        for statement in PARTIAL_INDEXES {
            manager
                .get_connection()
                .execute_unprepared(statement)
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idempotency_keys_by_resource")
                    .table(IdempotencyKeys::Table)
                    .col(IdempotencyKeys::ResourceId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idempotency_keys_by_resource")
                    .table(IdempotencyKeys::Table)
                    .to_owned(),
            )
            .await?;
        for name in ["workflows_to_expire", "workflows_to_prune"] {
            manager
                .get_connection()
                .execute_unprepared(&format!("DROP INDEX {name}"))
                .await?;
        }
        for column in [Workflows::ResultExpiredAt, Workflows::PrunedAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Workflows::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
