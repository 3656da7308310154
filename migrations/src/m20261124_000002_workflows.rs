//! Generation workflows with their event timeline, the webhook inbox and uploaded inputs.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::sea_query::ExprTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Accounts {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum Holds {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum Workflows {
    Table,
    Id,
    AccountId,
    State,
    Version,
    Provider,
    Cost,
    HoldId,
    Inputs,
    CallbackToken,
    ProviderTaskId,
    ResultSource,
    ResultKey,
    Attempt,
    NextAttemptAt,
    DeadlineAt,
    ErrorCode,
    ErrorMessage,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum WorkflowEvents {
    Table,
    Id,
    WorkflowId,
    FromState,
    ToState,
    Reason,
    Attempt,
    At,
}

#[derive(DeriveIden, Clone, Copy)]
enum WebhookInbox {
    Table,
    Id,
    WorkflowId,
    Provider,
    DedupKey,
    Payload,
    ReceivedAt,
    ProcessedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Uploads {
    Table,
    Id,
    AccountId,
    ContentType,
    Size,
    StorageKey,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Workflows::Table)
                    .col(pk_uuid(Workflows::Id))
                    .col(uuid(Workflows::AccountId))
                    .col(string_len(Workflows::State, 24))
                    .col(big_integer(Workflows::Version))
                    .col(string_len(Workflows::Provider, 64))
                    .col(big_integer(Workflows::Cost).check(Expr::col(Workflows::Cost).gt(0)))
                    .col(uuid_uniq(Workflows::HoldId))
                    .col(text(Workflows::Inputs))
                    .col(string_len(Workflows::CallbackToken, 128))
                    .col(string_len_null(Workflows::ProviderTaskId, 255))
                    .col(text_null(Workflows::ResultSource))
                    .col(string_len_null(Workflows::ResultKey, 255))
                    .col(integer(Workflows::Attempt))
                    .col(timestamp_with_time_zone_null(Workflows::NextAttemptAt))
                    .col(timestamp_with_time_zone(Workflows::DeadlineAt))
                    .col(string_len_null(Workflows::ErrorCode, 64))
                    .col(text_null(Workflows::ErrorMessage))
                    .col(timestamp_with_time_zone(Workflows::CreatedAt))
                    .col(timestamp_with_time_zone(Workflows::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Workflows::Table, Workflows::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Workflows::Table, Workflows::HoldId)
                            .to(Holds::Table, Holds::Id),
                    )
                    .take(),
            )
            .await?;
        for (name, columns) in [
            (
                "workflows_by_account",
                vec![Workflows::AccountId, Workflows::Id],
            ),
            (
                "workflows_due",
                vec![Workflows::State, Workflows::NextAttemptAt],
            ),
            (
                "workflows_by_deadline",
                vec![Workflows::State, Workflows::DeadlineAt],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(Workflows::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.take()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(WorkflowEvents::Table)
                    .col(big_pk_auto(WorkflowEvents::Id))
                    .col(uuid(WorkflowEvents::WorkflowId))
                    .col(string_len_null(WorkflowEvents::FromState, 24))
                    .col(string_len(WorkflowEvents::ToState, 24))
                    .col(string_len(WorkflowEvents::Reason, 255))
                    .col(integer(WorkflowEvents::Attempt))
                    .col(timestamp_with_time_zone(WorkflowEvents::At))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WorkflowEvents::Table, WorkflowEvents::WorkflowId)
                            .to(Workflows::Table, Workflows::Id),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("workflow_events_by_workflow")
                    .table(WorkflowEvents::Table)
                    .col(WorkflowEvents::WorkflowId)
                    .col(WorkflowEvents::Id)
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(WebhookInbox::Table)
                    .col(big_pk_auto(WebhookInbox::Id))
                    .col(uuid(WebhookInbox::WorkflowId))
                    .col(string_len(WebhookInbox::Provider, 64))
                    .col(string_len_uniq(WebhookInbox::DedupKey, 255))
                    .col(text(WebhookInbox::Payload))
                    .col(timestamp_with_time_zone(WebhookInbox::ReceivedAt))
                    .col(timestamp_with_time_zone_null(WebhookInbox::ProcessedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookInbox::Table, WebhookInbox::WorkflowId)
                            .to(Workflows::Table, Workflows::Id),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_inbox_by_workflow")
                    .table(WebhookInbox::Table)
                    .col(WebhookInbox::WorkflowId)
                    .col(WebhookInbox::ProcessedAt)
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_inbox_pending")
                    .table(WebhookInbox::Table)
                    .col(WebhookInbox::ProcessedAt)
                    .col(WebhookInbox::Id)
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Uploads::Table)
                    .col(pk_uuid(Uploads::Id))
                    .col(uuid(Uploads::AccountId))
                    .col(string_len(Uploads::ContentType, 32))
                    .col(big_integer(Uploads::Size).check(Expr::col(Uploads::Size).gt(0)))
                    .col(string_len(Uploads::StorageKey, 255))
                    .col(timestamp_with_time_zone(Uploads::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Uploads::Table, Uploads::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Uploads::Table.into_iden(),
            WebhookInbox::Table.into_iden(),
            WorkflowEvents::Table.into_iden(),
            Workflows::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).take())
                .await?;
        }
        Ok(())
    }
}
