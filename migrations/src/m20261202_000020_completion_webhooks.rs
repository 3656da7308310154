//! Completion webhooks to customers: the endpoints an account registers, and the outbox of
//! deliveries the workflow writer fills in the transaction of each terminal transition.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Accounts {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum Workflows {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum WebhookEndpoints {
    Table,
    Id,
    AccountId,
    Url,
    Events,
    Secret,
    CreatedAt,
    DeletedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum WebhookDeliveries {
    Table,
    Id,
    EndpointId,
    WorkflowId,
    EventType,
    Payload,
    State,
    Attempts,
    NextAttemptAt,
    LastStatus,
    LastError,
    CreatedAt,
    DeliveredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_endpoints(manager).await?;
        create_deliveries(manager).await?;
        index_deliveries(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            WebhookDeliveries::Table.into_iden(),
            WebhookEndpoints::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).take())
                .await?;
        }
        Ok(())
    }
}

async fn create_endpoints(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(WebhookEndpoints::Table)
                .col(pk_uuid(WebhookEndpoints::Id))
                .col(uuid(WebhookEndpoints::AccountId))
                .col(string_len(WebhookEndpoints::Url, 2048))
                .col(string_len(WebhookEndpoints::Events, 255))
                .col(string_len(WebhookEndpoints::Secret, 128))
                .col(timestamp_with_time_zone(WebhookEndpoints::CreatedAt))
                .col(timestamp_with_time_zone_null(WebhookEndpoints::DeletedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(WebhookEndpoints::Table, WebhookEndpoints::AccountId)
                        .to(Accounts::Table, Accounts::Id),
                )
                .take(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("webhook_endpoints_by_account")
                .table(WebhookEndpoints::Table)
                .col(WebhookEndpoints::AccountId)
                .col(WebhookEndpoints::DeletedAt)
                .take(),
        )
        .await?;
    Ok(())
}

async fn create_deliveries(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(WebhookDeliveries::Table)
                .col(pk_uuid(WebhookDeliveries::Id))
                .col(uuid(WebhookDeliveries::EndpointId))
                .col(uuid(WebhookDeliveries::WorkflowId))
                .col(string_len(WebhookDeliveries::EventType, 64))
                .col(text(WebhookDeliveries::Payload))
                .col(string_len(WebhookDeliveries::State, 16))
                .col(integer(WebhookDeliveries::Attempts))
                .col(timestamp_with_time_zone_null(
                    WebhookDeliveries::NextAttemptAt,
                ))
                .col(integer_null(WebhookDeliveries::LastStatus))
                .col(string_len_null(WebhookDeliveries::LastError, 255))
                .col(timestamp_with_time_zone(WebhookDeliveries::CreatedAt))
                .col(timestamp_with_time_zone_null(
                    WebhookDeliveries::DeliveredAt,
                ))
                .foreign_key(
                    ForeignKey::create()
                        .from(WebhookDeliveries::Table, WebhookDeliveries::EndpointId)
                        .to(WebhookEndpoints::Table, WebhookEndpoints::Id),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(WebhookDeliveries::Table, WebhookDeliveries::WorkflowId)
                        .to(Workflows::Table, Workflows::Id),
                )
                .take(),
        )
        .await?;
    Ok(())
}

async fn index_deliveries(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    for (name, columns, unique) in [
        // One event per workflow and endpoint: a second terminal write cannot double it.
        (
            "webhook_deliveries_once",
            vec![WebhookDeliveries::WorkflowId, WebhookDeliveries::EndpointId],
            true,
        ),
        (
            "webhook_deliveries_due",
            vec![WebhookDeliveries::State, WebhookDeliveries::NextAttemptAt],
            false,
        ),
        (
            "webhook_deliveries_by_endpoint",
            vec![WebhookDeliveries::EndpointId, WebhookDeliveries::Id],
            false,
        ),
    ] {
        let mut index = Index::create();
        index.name(name).table(WebhookDeliveries::Table);
        if unique {
            index.unique();
        }
        for column in columns {
            index.col(column);
        }
        manager.create_index(index.take()).await?;
    }
    Ok(())
}
