//! One `LISTEN` connection per process for every channel it follows (wake-ups, the status
//! feed): a notification's payload goes to its channel's handler. PostgreSQL only. What a
//! channel announces is always found by a poll too, so a notification lost while the
//! listener reconnects costs a poll interval, never the work.
use std::time::Duration;

use sea_orm::{DatabaseBackend, DatabaseConnection};

/// A channel's handler, called with each payload on the listener's task: it must not block.
pub type Handler = Box<dyn Fn(&str) + Send + Sync>;

/// Listens on `db` (PostgreSQL) for as long as the runtime runs; reconnects after a lost
/// connection. A no-op on SQLite, or without channels.
pub fn listen(db: &DatabaseConnection, channels: Vec<(&'static str, Handler)>) {
    if db.get_database_backend() != DatabaseBackend::Postgres || channels.is_empty() {
        return;
    }
    let pool = db.get_postgres_connection_pool().clone();
    tokio::spawn(async move {
        let names: Vec<&str> = channels.iter().map(|(name, _)| *name).collect();
        loop {
            match sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(mut listener) => match listener.listen_all(names.iter().copied()).await {
                    Ok(()) => loop {
                        match listener.recv().await {
                            Ok(notification) => dispatch(&channels, &notification),
                            Err(error) => {
                                tracing::warn!(%error, "notification listener lost; reconnecting");
                                break;
                            }
                        }
                    },
                    Err(error) => tracing::warn!(%error, "cannot LISTEN; retrying"),
                },
                Err(error) => {
                    tracing::warn!(%error, "cannot connect the notification listener; retrying")
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

fn dispatch(
    channels: &[(&'static str, Handler)],
    notification: &sea_orm::sqlx::postgres::PgNotification,
) {
    for (name, handler) in channels {
        if *name == notification.channel() {
            handler(notification.payload());
        }
    }
}
