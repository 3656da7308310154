//! Providers an operator paused, the one owner of the `provider_pauses` table. A paused
//! provider takes no new work: the engine's submit step fails a task over along
//! `providers.chain` to a provider that is not paused, or waits (design §2). Work it already
//! accepted finishes there: a pause drains, it does not abandon.
//!
//! The engine asks `Pauses`, an in-memory copy of the table, on every submission; the copy is
//! reloaded every `REFRESH` (and at once by the process that served the pause), so that a
//! pause made through an API-only process reaches the engine's process too.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use atelier_entities::provider_pause;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait};

/// How often a process reloads the pauses from the database.
pub const REFRESH: Duration = Duration::from_secs(1);

/// One paused provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    pub reason: String,
    pub paused_at: DateTime<Utc>,
}

/// Pauses `provider` (again: the reason and time are replaced).
pub async fn pause(
    db: &impl ConnectionTrait,
    provider: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let row = provider_pause::ActiveModel {
        provider: Set(provider.to_owned()),
        reason: Set(reason.to_owned()),
        paused_at: Set(now),
    };
    provider_pause::Entity::insert(row)
        .on_conflict(
            OnConflict::column(provider_pause::Column::Provider)
                .update_columns([
                    provider_pause::Column::Reason,
                    provider_pause::Column::PausedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Resumes `provider`; whether it was paused.
pub async fn resume(db: &impl ConnectionTrait, provider: &str) -> Result<bool, DbErr> {
    let deleted = provider_pause::Entity::delete_by_id(provider.to_owned())
        .exec(db)
        .await?;
    Ok(deleted.rows_affected > 0)
}

/// Every paused provider (a handful of rows at most: one per configured provider).
pub async fn all(db: &impl ConnectionTrait) -> Result<HashMap<String, Pause>, DbErr> {
    let rows = provider_pause::Entity::find().all(db).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let pause = Pause {
                reason: row.reason,
                paused_at: row.paused_at,
            };
            (row.provider, pause)
        })
        .collect())
}

/// The process's copy of the pauses, shared by the engine and the API.
#[derive(Clone, Default)]
pub struct Pauses {
    paused: Arc<RwLock<HashMap<String, Pause>>>,
}

impl Pauses {
    /// The pauses as the database has them now.
    pub async fn load(db: &impl ConnectionTrait) -> Result<Self, DbErr> {
        let pauses = Self::default();
        pauses.replace(all(db).await?);
        Ok(pauses)
    }

    pub fn get(&self, provider: &str) -> Option<Pause> {
        self.read().get(provider).cloned()
    }

    pub fn is_paused(&self, provider: &str) -> bool {
        self.read().contains_key(provider)
    }

    /// Reloads from the database.
    pub async fn refresh(&self, db: &impl ConnectionTrait) -> Result<(), DbErr> {
        self.replace(all(db).await?);
        Ok(())
    }

    /// Reloads every `REFRESH` for as long as the process runs; a failed read keeps the copy
    /// it had.
    pub fn spawn_refresh(&self, db: DatabaseConnection) {
        let pauses = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(REFRESH);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(error) = pauses.refresh(&db).await {
                    tracing::warn!(%error, "cannot reload the provider pauses; keeping the last known");
                }
            }
        });
    }

    fn replace(&self, paused: HashMap<String, Pause>) {
        *self
            .paused
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = paused;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Pause>> {
        self.paused
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}
