//! Opening the database and starting write transactions the same way everywhere.
//!
//! SQLite: WAL with `synchronous=NORMAL` (durable at checkpoints, never corrupt), a generous busy
//! timeout, and IMMEDIATE write transactions so that two writers queue on the lock instead of
//! failing when a read transaction tries to upgrade. PostgreSQL: read committed plus explicit
//! row locks taken by the code that needs them.
mod probe;
mod tcp_nodelay;

pub use probe::describe;

use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::sync::OwnedMutexGuard;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    AccessMode, ConnectOptions, Database, DatabaseBackend, DatabaseConnection, DatabaseTransaction,
    DbErr, IsolationLevel, SqlErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

/// How long the database may make us wait. Without these, one session holding a lock (an
/// operator's `SELECT … FOR UPDATE` left open in psql) stalls every write of every account.
#[derive(Debug, Clone, Copy)]
pub struct DbTimeouts {
    /// PostgreSQL `statement_timeout`: the longest any one statement may run.
    pub statement: Duration,
    /// PostgreSQL `lock_timeout`: the longest a statement waits for a row or table lock.
    pub lock: Duration,
    /// SQLite's busy timeout: how long a writer waits for another process's write lock.
    pub sqlite_busy: Duration,
}

impl Default for DbTimeouts {
    fn default() -> Self {
        Self {
            statement: Duration::from_secs(30),
            lock: Duration::from_secs(5),
            sqlite_busy: Duration::from_secs(10),
        }
    }
}

pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    connect_with(url, DbTimeouts::default()).await
}

pub async fn connect_with(url: &str, timeouts: DbTimeouts) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    let is_sqlite = url.starts_with("sqlite:");
    if !is_sqlite {
        probe::postgres(url).await?;
    }
    options
        .sqlx_logging(false)
        .max_connections(if is_sqlite { 8 } else { 16 })
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(30))
        .map_sqlx_sqlite_opts(move |sqlite| {
            sqlite
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(timeouts.sqlite_busy)
                .foreign_keys(true)
        })
        .map_sqlx_postgres_opts(move |postgres| {
            postgres.options([
                (
                    "statement_timeout",
                    timeouts.statement.as_millis().max(1).to_string(),
                ),
                ("lock_timeout", timeouts.lock.as_millis().max(1).to_string()),
            ])
        })
        .map_sqlx_postgres_pool_opts(|pool| {
            pool.after_connect(|connection, _| Box::pin(tcp_nodelay::apply(connection)))
        });
    Database::connect(options).await
}

/// Writers of this process take turns here before `BEGIN IMMEDIATE` on SQLite. SQLite admits
/// one writer per file; without the queue, the others wait inside SQLite's busy handler, which
/// sleeps in growing steps (up to 100 ms) instead of waking when the lock frees — tens of
/// milliseconds of latency for nothing. Other processes still queue on the file lock.
static SQLITE_WRITERS: LazyLock<Arc<tokio::sync::Mutex<()>>> = LazyLock::new(Arc::default);

/// Write transactions begun and committed by this process, for `atelier bench` (a figure that
/// does not depend on the host's load, unlike throughput).
static WRITES_BEGUN: AtomicU64 = AtomicU64::new(0);
static WRITES_COMMITTED: AtomicU64 = AtomicU64::new(0);

/// (write transactions begun, commits) since the process started.
pub fn write_counts() -> (u64, u64) {
    (
        WRITES_BEGUN.load(Ordering::Relaxed),
        WRITES_COMMITTED.load(Ordering::Relaxed),
    )
}

/// A write transaction, holding this process's SQLite writer turn until it ends.
pub struct WriteTxn {
    txn: DatabaseTransaction,
    _turn: Option<OwnedMutexGuard<()>>,
}

impl Deref for WriteTxn {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

impl WriteTxn {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await?;
        WRITES_COMMITTED.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A transaction that will write: IMMEDIATE on SQLite (after this process's writer turn), a
/// plain one on PostgreSQL (where the caller locks the rows it is about to change).
pub async fn begin_write(db: &DatabaseConnection) -> Result<WriteTxn, DbErr> {
    let turn = if is_postgres(db) {
        None
    } else {
        Some(SQLITE_WRITERS.clone().lock_owned().await)
    };
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await?;
    WRITES_BEGUN.fetch_add(1, Ordering::Relaxed);
    Ok(WriteTxn { txn, _turn: turn })
}

/// Runs `attempt` (a whole transaction) again on transient errors, with exponential backoff and
/// jitter: up to 5 retries, 5 ms to 500 ms apart.
pub async fn with_retries<T, F, Fut>(what: &str, attempt: F) -> Result<T, DbErr>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DbErr>>,
{
    attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(5))
                .with_max_delay(Duration::from_millis(500))
                .with_max_times(5)
                .with_jitter(),
        )
        .when(is_transient)
        .notify(|error, after| tracing::warn!(%error, ?after, "{what} failed, retrying"))
        .await
}

/// Errors a retry of the whole transaction can cure: lock contention, serialization failures,
/// deadlocks and lost races on a unique key.
pub fn is_transient(error: &DbErr) -> bool {
    if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
        return true;
    }
    let text = error.to_string();
    [
        "database is locked",
        "deadlock detected",
        "could not serialize",
        "pool timed out",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Errors of a transaction that waited too long (a lock held elsewhere, a statement past its
/// timeout): retrying at once, or command by command, would only wait again.
pub fn is_stall(error: &DbErr) -> bool {
    let text = error.to_string();
    [
        "lock timeout",
        "statement timeout",
        "canceling statement",
        "database is locked",
        "pool timed out",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

pub fn is_postgres(db: &DatabaseConnection) -> bool {
    db.get_database_backend() == DatabaseBackend::Postgres
}

/// A read-only transaction that sees one consistent snapshot: REPEATABLE READ on PostgreSQL;
/// on SQLite (WAL) every read transaction already does.
pub async fn begin_snapshot(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    if is_postgres(db) {
        db.begin_with_config(
            Some(IsolationLevel::RepeatableRead),
            Some(AccessMode::ReadOnly),
        )
        .await
    } else {
        db.begin().await
    }
}

/// A snapshot (as `begin_snapshot`) whose statements PostgreSQL cuts at `limit` each, so that
/// an operator's read over a large database cannot run on in the server after its caller gave
/// up; SQLite has no such setting, and the caller bounds the whole read in time.
pub async fn begin_bounded_snapshot(
    db: &DatabaseConnection,
    limit: Duration,
) -> Result<DatabaseTransaction, DbErr> {
    let snapshot = begin_snapshot(db).await?;
    if is_postgres(db) {
        use sea_orm::ConnectionTrait;
        let millis = limit.as_millis().max(1);
        snapshot
            .execute_unprepared(&format!("SET LOCAL statement_timeout = {millis}"))
            .await?;
    }
    Ok(snapshot)
}

/// A page cut from `rows`, which a query fetched with `limit + 1` rows so that the extra one
/// tells whether more follow: the first `limit` rows, and the cursor of the last of them
/// while more follow.
pub fn page_of<T, C>(
    mut rows: Vec<T>,
    limit: u64,
    cursor: impl Fn(&T) -> C,
) -> (Vec<T>, Option<C>) {
    if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        let next = rows.last().map(cursor);
        (rows, next)
    } else {
        (rows, None)
    }
}

#[cfg(test)]
mod tests {
    use super::page_of;

    #[test]
    fn a_page_has_a_cursor_only_while_more_follow() {
        assert_eq!(page_of(vec![5, 4, 3], 2, |row| *row), (vec![5, 4], Some(4)));
        assert_eq!(page_of(vec![5, 4], 2, |row| *row), (vec![5, 4], None));
        assert_eq!(page_of(Vec::<i32>::new(), 2, |row| *row), (vec![], None));
    }
}
