//! Provider circuits shared by the engine processes of a deployment (issue 13): one row per
//! provider whose circuit a process opened, saying until when (on the database's clock), which
//! process, and the error that opened it. The other processes open their own circuit until
//! then. Rows stay after their time has passed (they are then read as closed) and are
//! overwritten by the next open.
//!
//! Down drops the table: every process then keeps its circuits to itself.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ProviderCircuits {
    Table,
    Provider,
    OpenUntil,
    OpenedBy,
    Reason,
    UpdatedAt,
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
                    .table(ProviderCircuits::Table)
                    .col(string_len(ProviderCircuits::Provider, 64).primary_key())
                    .col(timestamp_with_time_zone(ProviderCircuits::OpenUntil))
                    .col(uuid(ProviderCircuits::OpenedBy))
                    .col(text(ProviderCircuits::Reason))
                    .col(timestamp_with_time_zone(ProviderCircuits::UpdatedAt))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ProviderCircuits::Table).take())
            .await
    }
}
