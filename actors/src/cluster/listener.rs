//! The one `LISTEN` connection of a process (PostgreSQL): every channel it listens on, each
//! with what a notification's payload does, on one connection taken from the pool, so that
//! another channel costs no other connection. Every process follows `atelier_feed` (its status
//! streams); an engine also `atelier_wake` and `atelier_circuit`. It reconnects after a lost
//! connection; what was notified meanwhile is lost, which each channel's own fallback covers
//! (the owner's tick for wake-ups, the feed's poll, the refresh of `providers/circuits.rs`).
use std::time::Duration;

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, Statement};

/// Sends `payload` on `channel` (PostgreSQL), as a statement of its own: a `NOTIFY` inside a
/// transaction takes a database-wide lock at its commit, so no ledger or workflow transaction
/// sends one.
pub async fn notify<C: ConnectionTrait>(db: &C, channel: &str, payload: &str) -> Result<(), DbErr> {
    let statement = Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [channel.into(), payload.into()],
    );
    db.execute_raw(statement).await?;
    Ok(())
}

/// What a notification on one channel does with its payload.
pub type OnNotify = Box<dyn Fn(&str) + Send + Sync>;

/// Listens on `db` (PostgreSQL) to every channel of `channels` for as long as the runtime
/// runs; a no-op elsewhere.
pub fn listen(db: &DatabaseConnection, channels: Vec<(&'static str, OnNotify)>) {
    if db.get_database_backend() != DatabaseBackend::Postgres || channels.is_empty() {
        return;
    }
    let pool = db.get_postgres_connection_pool().clone();
    tokio::spawn(async move {
        let names: Vec<&str> = channels.iter().map(|(name, _)| *name).collect();
        loop {
            match PgListener::connect_with(&pool).await {
                // One statement for all: a `LISTEN` of each.
                Ok(mut listener) => match listener.listen_all(names.iter().copied()).await {
                    Ok(()) => receive(&mut listener, &channels).await,
                    Err(error) => {
                        tracing::warn!(%error, "cannot LISTEN for notifications; retrying")
                    }
                },
                Err(error) => {
                    tracing::warn!(%error, "cannot connect the notification listener; retrying")
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// Hands every notification to its channel's handler until the connection is lost.
async fn receive(listener: &mut PgListener, channels: &[(&'static str, OnNotify)]) {
    loop {
        match listener.recv().await {
            Ok(notification) => {
                if let Some((_, on)) = channels
                    .iter()
                    .find(|(name, _)| *name == notification.channel())
                {
                    on(notification.payload());
                }
            }
            Err(error) => {
                tracing::warn!(%error, "notification listener lost; reconnecting");
                return;
            }
        }
    }
}
