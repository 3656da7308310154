//! Accounts, credit packages, holds with their allocations, the ledger, idempotency keys.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::sea_query::ExprTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Accounts {
    Table,
    Id,
    Name,
    ApiKeyHash,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum CreditPackages {
    Table,
    Id,
    AccountId,
    Reference,
    Credits,
    Remaining,
    Held,
    Consumed,
    Expired,
    Voided,
    ExpiresAt,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Holds {
    Table,
    Id,
    AccountId,
    Amount,
    State,
    SettledAmount,
    GenerationId,
    CreatedAt,
    ResolvedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum HoldAllocations {
    Table,
    HoldId,
    PackageId,
    Position,
    Amount,
}

#[derive(DeriveIden, Clone, Copy)]
enum LedgerEntries {
    Table,
    Id,
    AccountId,
    PackageId,
    Kind,
    Amount,
    HoldId,
    GenerationId,
    AvailableAfter,
    HeldAfter,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum IdempotencyKeys {
    Table,
    AccountId,
    Scope,
    Key,
    RequestHash,
    ResourceId,
    CreatedAt,
}

fn non_negative<T: IntoIden + Copy + 'static>(column: T) -> ColumnDef {
    big_integer(column).check(Expr::col(column).gte(0)).take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .col(pk_uuid(Accounts::Id))
                    .col(string_null(Accounts::Name))
                    .col(string_uniq(Accounts::ApiKeyHash))
                    .col(timestamp_with_time_zone(Accounts::CreatedAt))
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CreditPackages::Table)
                    .col(pk_uuid(CreditPackages::Id))
                    .col(uuid(CreditPackages::AccountId))
                    .col(string_uniq(CreditPackages::Reference))
                    .col(
                        big_integer(CreditPackages::Credits)
                            .check(Expr::col(CreditPackages::Credits).gt(0)),
                    )
                    .col(non_negative(CreditPackages::Remaining))
                    .col(non_negative(CreditPackages::Held))
                    .col(non_negative(CreditPackages::Consumed))
                    .col(non_negative(CreditPackages::Expired))
                    .col(non_negative(CreditPackages::Voided))
                    .col(timestamp_with_time_zone_null(CreditPackages::ExpiresAt))
                    .col(timestamp_with_time_zone(CreditPackages::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(CreditPackages::Table, CreditPackages::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("credit_packages_by_account")
                    .table(CreditPackages::Table)
                    .col(CreditPackages::AccountId)
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Holds::Table)
                    .col(pk_uuid(Holds::Id))
                    .col(uuid(Holds::AccountId))
                    .col(big_integer(Holds::Amount).check(Expr::col(Holds::Amount).gt(0)))
                    .col(string_len(Holds::State, 16))
                    .col(non_negative(Holds::SettledAmount))
                    .col(uuid_null(Holds::GenerationId))
                    .col(timestamp_with_time_zone(Holds::CreatedAt))
                    .col(timestamp_with_time_zone_null(Holds::ResolvedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Holds::Table, Holds::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("holds_by_account")
                    .table(Holds::Table)
                    .col(Holds::AccountId)
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(HoldAllocations::Table)
                    .col(uuid(HoldAllocations::HoldId))
                    .col(uuid(HoldAllocations::PackageId))
                    .col(integer(HoldAllocations::Position))
                    .col(
                        big_integer(HoldAllocations::Amount)
                            .check(Expr::col(HoldAllocations::Amount).gt(0)),
                    )
                    .primary_key(
                        Index::create()
                            .col(HoldAllocations::HoldId)
                            .col(HoldAllocations::PackageId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(HoldAllocations::Table, HoldAllocations::HoldId)
                            .to(Holds::Table, Holds::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(HoldAllocations::Table, HoldAllocations::PackageId)
                            .to(CreditPackages::Table, CreditPackages::Id),
                    )
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LedgerEntries::Table)
                    .col(big_pk_auto(LedgerEntries::Id))
                    .col(uuid(LedgerEntries::AccountId))
                    .col(uuid(LedgerEntries::PackageId))
                    .col(string_len(LedgerEntries::Kind, 16))
                    .col(
                        big_integer(LedgerEntries::Amount)
                            .check(Expr::col(LedgerEntries::Amount).gt(0)),
                    )
                    .col(uuid_null(LedgerEntries::HoldId))
                    .col(uuid_null(LedgerEntries::GenerationId))
                    .col(non_negative(LedgerEntries::AvailableAfter))
                    .col(non_negative(LedgerEntries::HeldAfter))
                    .col(timestamp_with_time_zone(LedgerEntries::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(LedgerEntries::Table, LedgerEntries::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(LedgerEntries::Table, LedgerEntries::PackageId)
                            .to(CreditPackages::Table, CreditPackages::Id),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ledger_entries_by_account")
                    .table(LedgerEntries::Table)
                    .col(LedgerEntries::AccountId)
                    .col(LedgerEntries::Id)
                    .take(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(uuid(IdempotencyKeys::AccountId))
                    .col(string_len(IdempotencyKeys::Scope, 32))
                    .col(string_len(IdempotencyKeys::Key, 255))
                    .col(string_len(IdempotencyKeys::RequestHash, 64))
                    .col(uuid(IdempotencyKeys::ResourceId))
                    .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKeys::AccountId)
                            .col(IdempotencyKeys::Scope)
                            .col(IdempotencyKeys::Key),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(IdempotencyKeys::Table, IdempotencyKeys::AccountId)
                            .to(Accounts::Table, Accounts::Id),
                    )
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IdempotencyKeys::Table.into_iden(),
            LedgerEntries::Table.into_iden(),
            HoldAllocations::Table.into_iden(),
            Holds::Table.into_iden(),
            CreditPackages::Table.into_iden(),
            Accounts::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).take())
                .await?;
        }
        Ok(())
    }
}
