//! How this process's engine holds its shards (`atelier_actors::cluster`): on PostgreSQL
//! through leases, renewed by a keeper on the engine's thread and handed back at shutdown; on
//! SQLite as the only engine of the database file, through the engine lock, which a second
//! engine process is refused on.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Addr, ArbiterHandle};
use atelier_actors::cluster::engine_lock::{self, EngineLock};
use atelier_actors::cluster::keeper::{Keeper, KeeperHandle, OnLive};
use atelier_actors::cluster::{ClusterConfig, Ownership};
use atelier_actors::engine::registry::{Engine, ShardsLost};
use sea_orm::DatabaseConnection;

/// The engine's hold on the shards, for as long as the engine runs.
pub struct EngineShards {
    pub ownership: Arc<Ownership>,
    keeper: Mutex<Option<KeeperHandle>>,
    lock: Mutex<Option<EngineLock>>,
}

impl EngineShards {
    /// What the engine will ask before each step: leases on PostgreSQL; on SQLite every shard,
    /// once the engine lock is taken (else the start stops with why).
    pub fn prepare(
        database_url: &str,
        db: &DatabaseConnection,
        config: &ClusterConfig,
    ) -> anyhow::Result<Self> {
        let owner = uuid::Uuid::now_v7();
        let (ownership, lock) = if atelier_actors::db::is_postgres(db) {
            (Ownership::leased(owner, config.validity()), None)
        } else {
            let lock = engine_lock::acquire(database_url).map_err(anyhow::Error::msg)?;
            (Ownership::exclusive(owner), lock)
        };
        Ok(Self {
            ownership: Arc::new(ownership),
            keeper: Mutex::new(None),
            lock: Mutex::new(lock),
        })
    }

    /// Starts renewing leases (PostgreSQL) on the engine's arbiter; lost shards are told to
    /// the engine, which drops their actors, and who is live to `on_live` after each
    /// heartbeat.
    pub fn start(
        &self,
        db: &DatabaseConnection,
        config: &ClusterConfig,
        arbiter: &ArbiterHandle,
        engine: &Addr<Engine>,
        on_live: OnLive,
    ) {
        if self.ownership.is_exclusive() {
            return;
        }
        let engine = engine.clone();
        let on_lost = Arc::new(move |shards: &[i16]| engine.do_send(ShardsLost(shards.to_vec())));
        let keeper = Keeper::new(db.clone(), config.clone(), self.ownership.clone(), on_lost)
            .telling_live(on_live);
        *self.keeper.lock().expect("keeper slot") = Some(keeper.spawn(arbiter));
    }

    /// Once the engine has drained: hands every lease back (PostgreSQL), so another process
    /// takes them at its next tick, or lets go of the engine lock (SQLite). Waits at most
    /// `limit` for the hand-back; the leases lapse after their TTL anyway.
    pub async fn release(&self, limit: Duration) {
        let keeper = self.keeper.lock().expect("keeper slot").take();
        if let Some(mut keeper) = keeper
            && tokio::time::timeout(limit, keeper.stop()).await.is_err()
        {
            tracing::warn!(
                "the lease keeper did not stop in time; the leases lapse after their TTL"
            );
        }
        drop(self.lock.lock().expect("lock slot").take());
    }

    /// As `release`, without waiting for the hand-back (which the keeper then does on its own
    /// thread): for a caller whose runtime cannot run meanwhile (a test dropping its app).
    pub fn let_go(&self) {
        if let Some(keeper) = self.keeper.lock().expect("keeper slot").take() {
            keeper.signal_stop();
        }
        drop(self.lock.lock().expect("lock slot").take());
    }

    /// Tests of a frozen process: its keeper stops renewing (or renews again).
    pub fn freeze(&self, frozen: bool) {
        if let Some(keeper) = self.keeper.lock().expect("keeper slot").as_ref() {
            keeper.freeze(frozen);
        }
    }
}
