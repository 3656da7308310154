//! Grant references are unique per account, not across all accounts: two accounts may both
//! receive a grant named "welcome". The unique constraint on `reference` becomes a unique index
//! on `(account_id, reference)`, which also serves the lookups by account that
//! `credit_packages_by_account` served, so that index goes.
//!
//! SQLite cannot drop a column's inline UNIQUE constraint, so there the table is rebuilt: its
//! rows are copied aside, the table is dropped and created again without the constraint, and the
//! rows are copied back. Holds and ledger entries reference packages; with foreign keys deferred
//! for this transaction, the rows put back satisfy them again before the commit checks them.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::sea_query::ExprTrait;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Accounts {
    Table,
    Id,
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

const PER_ACCOUNT: &str = "credit_packages_account_reference";
const BY_ACCOUNT: &str = "credit_packages_by_account";
/// Where SQLite keeps the rows while the table is rebuilt.
const COPY: &str = "credit_packages_rebuild";

fn non_negative<T: IntoIden + Copy + 'static>(column: T) -> ColumnDef {
    big_integer(column).check(Expr::col(column).gte(0)).take()
}

/// The table as the first migration made it, with `reference` unique or not.
fn credit_packages(reference_unique: bool) -> TableCreateStatement {
    let reference = if reference_unique {
        string_uniq(CreditPackages::Reference)
    } else {
        string(CreditPackages::Reference)
    };
    Table::create()
        .table(CreditPackages::Table)
        .col(pk_uuid(CreditPackages::Id))
        .col(uuid(CreditPackages::AccountId))
        .col(reference)
        .col(big_integer(CreditPackages::Credits).check(Expr::col(CreditPackages::Credits).gt(0)))
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
        .take()
}

/// Rebuilds the SQLite table with `reference` unique or not, keeping every row.
async fn rebuild_sqlite(manager: &SchemaManager<'_>, reference_unique: bool) -> Result<(), DbErr> {
    let db = manager.get_connection();
    db.execute_unprepared("PRAGMA defer_foreign_keys = ON")
        .await?;
    db.execute_unprepared(&format!(
        "CREATE TEMP TABLE {COPY} AS SELECT * FROM credit_packages"
    ))
    .await?;
    db.execute_unprepared("DROP TABLE credit_packages").await?;
    manager
        .create_table(credit_packages(reference_unique))
        .await?;
    db.execute_unprepared(&format!("INSERT INTO credit_packages SELECT * FROM {COPY}"))
        .await?;
    db.execute_unprepared(&format!("DROP TABLE {COPY}")).await?;
    Ok(())
}

fn index(name: &str, unique: bool, columns: &[CreditPackages]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(CreditPackages::Table);
    if unique {
        index.unique();
    }
    for column in columns {
        index.col(*column);
    }
    index.take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction on every backend: a rebuild half done must not stay.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Sqlite {
            rebuild_sqlite(manager, false).await?;
        } else {
            manager
                .get_connection()
                .execute_unprepared(
                    "ALTER TABLE credit_packages DROP CONSTRAINT credit_packages_reference_key",
                )
                .await?;
            manager
                .drop_index(
                    Index::drop()
                        .name(BY_ACCOUNT)
                        .table(CreditPackages::Table)
                        .to_owned(),
                )
                .await?;
        }
        let columns = [CreditPackages::AccountId, CreditPackages::Reference];
        manager
            .create_index(index(PER_ACCOUNT, true, &columns))
            .await
    }

    /// Fails if two accounts now share a reference, as the old constraint forbids that.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Sqlite {
            rebuild_sqlite(manager, true).await?;
        } else {
            manager
                .drop_index(
                    Index::drop()
                        .name(PER_ACCOUNT)
                        .table(CreditPackages::Table)
                        .to_owned(),
                )
                .await?;
            manager
                .get_connection()
                .execute_unprepared(
                    "ALTER TABLE credit_packages ADD CONSTRAINT credit_packages_reference_key UNIQUE (reference)",
                )
                .await?;
        }
        manager
            .create_index(index(BY_ACCOUNT, false, &[CreditPackages::AccountId]))
            .await
    }
}
