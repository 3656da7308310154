//! Providers an operator paused (`POST /v1/ops/providers/{name}/pause`): one row per paused
//! provider, deleted by the resume. Kept in the database so that a restart (or another
//! process of the deployment) keeps the provider drained.
//!
//! Down drops the table: every provider is then unpaused.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ProviderPauses {
    Table,
    Provider,
    Reason,
    PausedAt,
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
                    .table(ProviderPauses::Table)
                    .col(string_len(ProviderPauses::Provider, 64).primary_key())
                    .col(text(ProviderPauses::Reason))
                    .col(timestamp_with_time_zone(ProviderPauses::PausedAt))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ProviderPauses::Table).take())
            .await
    }
}
