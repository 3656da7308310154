//! One connection attempt before the pool is built, so that an unreachable or missing
//! PostgreSQL database fails the start within seconds and says why. The pool itself would
//! retry for its whole acquire timeout and then only say "pool timed out".
use std::str::FromStr;
use std::time::Duration;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection};
use sea_orm::sqlx::{self, ConnectOptions, Connection};
use sea_orm::{DbErr, RuntimeErr};

/// How long the first connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects once to the PostgreSQL server `url` names, and disconnects.
pub async fn postgres(url: &str) -> Result<(), DbErr> {
    let options = PgConnectOptions::from_str(url).map_err(|error| failed(describe_sqlx(&error)))?;
    let at = format!("{}:{}", options.get_host(), options.get_port());
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(Ok(connection)) => {
            let _ = PgConnection::close(connection).await;
            Ok(())
        }
        Ok(Err(error)) => {
            let reason = describe_sqlx(&error);
            let hint = if reason.contains("does not exist") {
                " (create it first, e.g. with createdb)"
            } else {
                ""
            };
            Err(failed(format!("PostgreSQL at {at}: {reason}{hint}")))
        }
        Err(_) => Err(failed(format!(
            "no answer from PostgreSQL at {at} within {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

fn failed(message: String) -> DbErr {
    DbErr::Conn(RuntimeErr::Internal(message))
}

/// A database error in one line: the server's own message where there is one (sqlx appends
/// the line of the server's source file, which helps nobody here), without the wrappers'
/// prefixes that repeat it.
pub fn describe(error: &DbErr) -> String {
    match error {
        DbErr::Conn(RuntimeErr::Internal(message)) => message.clone(),
        DbErr::Conn(RuntimeErr::SqlxError(error))
        | DbErr::Exec(RuntimeErr::SqlxError(error))
        | DbErr::Query(RuntimeErr::SqlxError(error)) => describe_sqlx(error),
        other => other.to_string(),
    }
}

fn describe_sqlx(error: &sqlx::Error) -> String {
    match error.as_database_error() {
        Some(database) => database.message().to_owned(),
        None => error.to_string(),
    }
}
