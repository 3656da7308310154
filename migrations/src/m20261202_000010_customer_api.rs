//! What the rest of the customer's API needs from the schema.
//!
//! API keys get a table of their own, so that an account can hold more than one: a new key
//! and, for a grace period after a rotation, the old one. Every account's key so far moves
//! there (its id is the account's), without its last four characters, which only the key
//! itself could tell. `accounts.api_key_hash` stays as it was and is no longer read.
//!
//! `GET /v1/uploads` pages through one account's uploads, newest first: an index on
//! `(account_id, id)` serves it, as `workflows_by_account` serves the generations' list.
//!
//! Down drops both: every account is back to its first key, rotated or not.
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
enum ApiKeys {
    Table,
    Id,
    AccountId,
    KeyHash,
    LastFour,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Uploads {
    Table,
    Id,
    AccountId,
}

const UPLOADS_BY_ACCOUNT: &str = "uploads_by_account";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(pk_uuid(ApiKeys::Id))
                    .col(uuid(ApiKeys::AccountId))
                    .col(string_len_uniq(ApiKeys::KeyHash, 64))
                    .col(string_len_null(ApiKeys::LastFour, 4))
                    .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                    .col(timestamp_with_time_zone_null(ApiKeys::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiKeys::Table, ApiKeys::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("api_keys_by_account")
                    .table(ApiKeys::Table)
                    .col(ApiKeys::AccountId)
                    .col(ApiKeys::Id)
                    .take(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO api_keys (id, account_id, key_hash, last_four, created_at, expires_at) \
                 SELECT id, id, api_key_hash, NULL, created_at, NULL FROM accounts",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(UPLOADS_BY_ACCOUNT)
                    .table(Uploads::Table)
                    .col(Uploads::AccountId)
                    .col(Uploads::Id)
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(UPLOADS_BY_ACCOUNT)
                    .table(Uploads::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(ApiKeys::Table).take())
            .await
    }
}
