//! The operators' audit log: every action an operator takes through the ops API or the
//! dashboard is appended here before it runs (what, on what, under which filter, why, when
//! and from where), so that no action happens unrecorded. Rows are never updated or deleted.
//!
//! Down drops the table and its history.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum OpsAudit {
    Table,
    Id,
    At,
    Operator,
    Action,
    TargetKind,
    TargetId,
    Filter,
    Reason,
    Source,
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
                    .table(OpsAudit::Table)
                    .col(big_pk_auto(OpsAudit::Id))
                    .col(timestamp_with_time_zone(OpsAudit::At))
                    .col(string_len(OpsAudit::Operator, 32))
                    .col(string_len(OpsAudit::Action, 64))
                    .col(string_len(OpsAudit::TargetKind, 32))
                    .col(string_len_null(OpsAudit::TargetId, 255))
                    .col(text_null(OpsAudit::Filter))
                    .col(text_null(OpsAudit::Reason))
                    .col(string_len(OpsAudit::Source, 64))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OpsAudit::Table).take())
            .await
    }
}
