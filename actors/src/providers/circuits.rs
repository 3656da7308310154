//! Provider circuits shared by the engine processes of a deployment (issue 13), the one owner
//! of `provider_circuits`. When a process's breaker opens a provider's circuit, its row says
//! until when (on the database's clock), which process, and the error that opened it; then
//! `NOTIFY atelier_circuit` with the provider's name tells the other engine processes, whose
//! `LISTEN` (`cluster/listener.rs`) reads the rows and opens their own circuit until then. A
//! lost notification (the listener reconnecting) costs at most `REFRESH`: every engine process
//! also reads the open rows that often.
//!
//! Closing stays each process's own: after the cooldown each one probes the provider itself,
//! and a success there closes its circuit there. A row only moves forward (a later end
//! replaces an earlier one), so two processes opening at once agree on the later end.
//!
//! PostgreSQL only: on SQLite a single engine runs, with nobody to tell, and the table stays
//! empty. The notification is sent on its own, never inside a ledger or workflow transaction
//! (`cluster/wakeups.rs` says why).
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, Statement};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::actor::{CircuitOpened, ProviderHandle};

/// The channel an opening process notifies and every engine process listens on.
pub const CHANNEL: &str = "atelier_circuit";
/// How often every engine process reads the open circuits, whatever it was notified of.
pub const REFRESH: Duration = Duration::from_secs(1);
/// Opens waiting to be written; past this one is dropped (its provider is opening again and
/// again: the next one is written).
const QUEUE: usize = 64;

/// A provider's circuit open in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCircuit {
    pub provider: String,
    pub open_until: DateTime<Utc>,
    /// How long it stays open from now, on the database's clock (the hosts' clocks may differ).
    pub remaining: Duration,
    pub opened_by: Uuid,
    pub reason: String,
}

/// Records that `by` opened `provider`'s circuit for `cooldown` from the database's now,
/// unless the row already says it is open for longer.
pub async fn open<C: ConnectionTrait>(
    db: &C,
    provider: &str,
    by: Uuid,
    cooldown: Duration,
    reason: &str,
) -> Result<(), DbErr> {
    let cooldown = i64::try_from(cooldown.as_millis()).unwrap_or(i64::MAX);
    let upsert = "INSERT INTO provider_circuits (provider, open_until, opened_by, reason, updated_at) \
                  VALUES ($1, now() + $2 * interval '1 millisecond', $3, $4, now()) \
                  ON CONFLICT (provider) DO UPDATE SET open_until = EXCLUDED.open_until, \
                  opened_by = EXCLUDED.opened_by, reason = EXCLUDED.reason, \
                  updated_at = EXCLUDED.updated_at \
                  WHERE provider_circuits.open_until < EXCLUDED.open_until";
    let values = [provider.into(), cooldown.into(), by.into(), reason.into()];
    db.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        upsert,
        values,
    ))
    .await?;
    Ok(())
}

/// Tells every listening process that `provider`'s circuit opened.
pub async fn notify<C: ConnectionTrait>(db: &C, provider: &str) -> Result<(), DbErr> {
    crate::cluster::listener::notify(db, CHANNEL, provider).await
}

/// Every circuit open now (a handful of rows at most: one per configured provider).
pub async fn open_now<C: ConnectionTrait>(db: &C) -> Result<Vec<OpenCircuit>, DbErr> {
    let select = "SELECT provider, open_until, opened_by, reason, \
                  CAST(ceil(extract(epoch FROM open_until - now()) * 1000) AS bigint) AS remaining_ms \
                  FROM provider_circuits WHERE open_until > now()";
    let rows = db
        .query_all_raw(Statement::from_string(DatabaseBackend::Postgres, select))
        .await?;
    rows.iter()
        .map(|row| {
            let remaining: i64 = row.try_get("", "remaining_ms")?;
            Ok(OpenCircuit {
                provider: row.try_get("", "provider")?,
                open_until: row.try_get("", "open_until")?,
                remaining: Duration::from_millis(u64::try_from(remaining).unwrap_or(0)),
                opened_by: row.try_get("", "opened_by")?,
                reason: row.try_get("", "reason")?,
            })
        })
        .collect()
}

/// This engine process's side of the shared circuits: it writes and announces the circuits
/// its providers' breakers open, and opens theirs as the others' rows say.
#[derive(Clone)]
pub struct SharedCircuits {
    db: DatabaseConnection,
    /// This process, as `engine_members` knows it.
    me: Uuid,
    handles: Arc<BTreeMap<String, ProviderHandle>>,
}

impl SharedCircuits {
    /// On PostgreSQL: tells every provider actor of `handles` to publish its opens here, and
    /// starts writing them and reading the others' every `REFRESH` (on the current runtime,
    /// for as long as it runs). `None` elsewhere.
    pub fn start(
        db: &DatabaseConnection,
        me: Uuid,
        handles: BTreeMap<String, ProviderHandle>,
    ) -> Option<Self> {
        if db.get_database_backend() != DatabaseBackend::Postgres {
            return None;
        }
        let (publish, opened) = mpsc::channel(QUEUE);
        for handle in handles.values() {
            handle.publish_circuit(publish.clone());
        }
        let shared = Self {
            db: db.clone(),
            me,
            handles: Arc::new(handles),
        };
        tokio::spawn(shared.clone().write_all(opened));
        tokio::spawn(shared.clone().refresh_every(REFRESH));
        Some(shared)
    }

    /// A notification on `CHANNEL`: reads the rows now.
    pub fn notified(&self, _provider: &str) {
        let shared = self.clone();
        tokio::spawn(async move {
            if let Err(error) = shared.refresh().await {
                tracing::warn!(%error, "cannot read the shared circuits; the next refresh will");
            }
        });
    }

    /// Opens here every circuit another process has open (each actor applies an open once).
    pub async fn refresh(&self) -> Result<(), DbErr> {
        let read_at = Instant::now();
        for open in open_now(&self.db).await? {
            if open.opened_by == self.me {
                continue;
            }
            if let Some(handle) = self.handles.get(&open.provider) {
                handle.open_shared(read_at + open.remaining, open.open_until, open.opened_by);
            }
        }
        Ok(())
    }

    async fn refresh_every(self, every: Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, "cannot read the shared circuits; retrying");
            }
        }
    }

    /// Writes each open of this process's breakers, then announces it.
    async fn write_all(self, mut opened: mpsc::Receiver<CircuitOpened>) {
        while let Some(open) = opened.recv().await {
            let (name, me) = (&open.provider, self.me);
            let written = match self::open(&self.db, name, me, open.cooldown, &open.reason).await {
                Ok(()) => notify(&self.db, name).await,
                Err(error) => Err(error),
            };
            if let Err(error) = written {
                tracing::warn!(provider = %name, %error, "cannot share an open circuit; the other processes keep their own");
            }
        }
    }
}
