//! Each workflow event records the version the workflow reached with it (0 for the event that
//! created it), so that `verify` can check that a workflow's events form an unbroken chain.
//! Events already written get their position in their workflow's timeline, which is the
//! version they led to: every transition moved the version on by exactly one.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum WorkflowEvents {
    Table,
    Version,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(WorkflowEvents::Table)
                    .add_column(
                        ColumnDef::new(WorkflowEvents::Version)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE workflow_events SET version = (SELECT COUNT(*) FROM workflow_events AS earlier \
                 WHERE earlier.workflow_id = workflow_events.workflow_id AND earlier.id < workflow_events.id)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(WorkflowEvents::Table)
                    .drop_column(WorkflowEvents::Version)
                    .to_owned(),
            )
            .await
    }
}
