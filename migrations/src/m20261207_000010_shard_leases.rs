//! Several engine processes on one database (issue 13):
//!
//! - `workflows.shard`: each workflow belongs to one of 256 shards, the last byte of its id
//!   (the `{shard}` of its storage keys). Existing rows are backfilled here. The count is the
//!   number of `shard_leases` rows and never changes after this migration.
//! - `shard_leases`: one row per shard, created here; a process owns a shard while it holds
//!   the lease (`owner`, `epoch`, `expires_at`, on the database's clock). Taking one bumps
//!   `epoch`, the fencing token every workflow write checks in its own transaction.
//! - `engine_members`: the engine processes that heartbeat, so each knows how many are live.
//! - `workflow_events.epoch`: the lease epoch a write was made under (null for writes no
//!   lease fences: creates, a client's cancel, SQLite's single engine), so `verify` can check
//!   that a shard's epochs never go backwards.
//!
//! Down drops the tables and columns.
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{self, ConnectionTrait};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Fixed for the life of the database: shards are the last byte of a workflow's id.
const SHARDS: i16 = 256;

#[derive(DeriveIden, Clone, Copy)]
enum Workflows {
    Table,
    Shard,
}

#[derive(DeriveIden, Clone, Copy)]
enum WorkflowEvents {
    Table,
    Epoch,
}

#[derive(DeriveIden, Clone, Copy)]
enum ShardLeases {
    Table,
    Shard,
    Owner,
    Epoch,
    ExpiresAt,
    AcquiredAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum EngineMembers {
    Table,
    Id,
    Host,
    Pid,
    StartedAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        add_shard_column(manager).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(WorkflowEvents::Table)
                    .add_column(ColumnDef::new(WorkflowEvents::Epoch).big_integer().null())
                    .to_owned(),
            )
            .await?;
        create_leases(manager).await?;
        manager
            .create_table(
                Table::create()
                    .table(EngineMembers::Table)
                    .col(pk_uuid(EngineMembers::Id))
                    .col(string_len(EngineMembers::Host, 255))
                    .col(integer(EngineMembers::Pid))
                    .col(timestamp_with_time_zone(EngineMembers::StartedAt))
                    .col(timestamp_with_time_zone(EngineMembers::ExpiresAt))
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(EngineMembers::Table).take())
            .await?;
        manager
            .drop_table(Table::drop().table(ShardLeases::Table).take())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(WorkflowEvents::Table)
                    .drop_column(WorkflowEvents::Epoch)
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            let db = manager.get_connection();
            db.execute_unprepared("DROP TRIGGER workflows_shard ON workflows")
                .await?;
            db.execute_unprepared("DROP FUNCTION workflows_shard()")
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Workflows::Table)
                    .drop_column(Workflows::Shard)
                    .to_owned(),
            )
            .await
    }
}

/// The column, filled for the rows already there from the last byte of their id (a UUID is a
/// 16-byte blob on SQLite, `uuid` on PostgreSQL).
async fn add_shard_column(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .alter_table(
            Table::alter()
                .table(Workflows::Table)
                .add_column(
                    ColumnDef::new(Workflows::Shard)
                        .small_integer()
                        .not_null()
                        .default(0),
                )
                .to_owned(),
        )
        .await?;
    let backfill = match manager.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => {
            "UPDATE workflows SET shard = get_byte(uuid_send(id), 15)"
        }
        _ => {
            "UPDATE workflows SET shard = \
             (instr('0123456789ABCDEF', substr(hex(id), 31, 1)) - 1) * 16 \
             + (instr('0123456789ABCDEF', substr(hex(id), 32, 1)) - 1)"
        }
    };
    let db = manager.get_connection();
    db.execute_unprepared(backfill).await?;
    if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        // Processes of the previous release insert without the column (a rolling upgrade);
        // the trigger gives their rows their shard too. SQLite has one process at a time.
        db.execute_unprepared(
            "CREATE FUNCTION workflows_shard() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN NEW.shard := get_byte(uuid_send(NEW.id), 15); RETURN NEW; END $$",
        )
        .await?;
        db.execute_unprepared(
            "CREATE TRIGGER workflows_shard BEFORE INSERT ON workflows \
             FOR EACH ROW EXECUTE FUNCTION workflows_shard()",
        )
        .await?;
    }
    Ok(())
}

/// The lease table with its one row per shard, owned by nobody.
async fn create_leases(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(ShardLeases::Table)
                .col(small_integer(ShardLeases::Shard).primary_key())
                .col(uuid_null(ShardLeases::Owner))
                .col(big_integer(ShardLeases::Epoch))
                .col(timestamp_with_time_zone(ShardLeases::ExpiresAt))
                .col(timestamp_with_time_zone_null(ShardLeases::AcquiredAt))
                .take(),
        )
        .await?;
    let mut insert = Query::insert();
    insert.into_table(ShardLeases::Table).columns([
        ShardLeases::Shard,
        ShardLeases::Epoch,
        ShardLeases::ExpiresAt,
    ]);
    let never = sea_orm::prelude::ChronoDateTimeUtc::UNIX_EPOCH;
    for shard in 0..SHARDS {
        insert.values_panic([shard.into(), 0_i64.into(), never.into()]);
    }
    manager.exec_stmt(insert.to_owned()).await
}
