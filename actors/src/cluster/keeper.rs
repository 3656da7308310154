//! The lease keeper: a plain task per engine process that, every `cluster.renew_ms`, says the
//! process is alive, renews its leases, and moves towards its share of the shards — an equal
//! share among the live processes, rounded up: it hands back extra ones once their running
//! steps are done, and takes free or lapsed ones in random order. On shutdown it hands every
//! lease back, so that the others take them at their next tick instead of after the TTL.
//! After each heartbeat it tells `on_live` who is live, from which each provider's part of
//! the account's limits follows (`providers/share.rs`).
//!
//! Each tick runs under `catch_unwind` (actix restarts nothing); a tick that fails changes
//! nothing in memory, and the leases it could not renew stop being trusted after
//! `ClusterConfig::validity`.
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::FutureExt;
use rand::seq::SliceRandom;
use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::{Notify, oneshot};

use super::config::ClusterConfig;
use super::leases;
use super::members::{self, Live, Member};
use super::ownership::Ownership;
use super::shard::SHARDS;

/// Told which shards this process lost to another (so the engine drops their actors).
pub type OnLost = Arc<dyn Fn(&[i16]) + Send + Sync>;

/// Told, after each heartbeat, which processes are live.
pub type OnLive = Arc<dyn Fn(Live) + Send + Sync>;

pub struct Keeper {
    db: DatabaseConnection,
    member: Member,
    config: ClusterConfig,
    ownership: Arc<Ownership>,
    on_lost: OnLost,
    on_live: OnLive,
    /// A test seam: while set, ticks are skipped, as in a process frozen by SIGSTOP.
    frozen: Arc<AtomicBool>,
}

/// Stops the keeper, and lets tests freeze it.
pub struct KeeperHandle {
    stop: Arc<Notify>,
    stopped: Option<oneshot::Receiver<()>>,
    frozen: Arc<AtomicBool>,
}

impl KeeperHandle {
    /// Hands every lease back, leaves the membership, and ends the task.
    pub async fn stop(&mut self) {
        self.stop.notify_one();
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
    }

    /// Asks the keeper to hand everything back and end, without waiting for it.
    pub fn signal_stop(self) {
        self.stop.notify_one();
    }

    /// While frozen, no heartbeat, renewal or take happens (tests of a zombie process).
    pub fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }
}

impl Keeper {
    pub fn new(
        db: DatabaseConnection,
        config: ClusterConfig,
        ownership: Arc<Ownership>,
        on_lost: OnLost,
    ) -> Self {
        Self {
            db,
            member: Member::this_process(ownership.owner()),
            config,
            ownership,
            on_lost,
            on_live: Arc::new(|_| {}),
            frozen: Arc::default(),
        }
    }

    /// Tells `on_live` who is live after each heartbeat.
    pub fn telling_live(mut self, on_live: OnLive) -> Self {
        self.on_live = on_live;
        self
    }

    /// Runs the keeper on `arbiter` (the engine's thread, so that a busy or blocked runtime
    /// elsewhere cannot hold its renewals back) until its handle stops it.
    pub fn spawn(self, arbiter: &actix::ArbiterHandle) -> KeeperHandle {
        let stop = Arc::new(Notify::new());
        let (done, stopped) = oneshot::channel();
        let handle = KeeperHandle {
            stop: stop.clone(),
            stopped: Some(stopped),
            frozen: self.frozen.clone(),
        };
        arbiter.spawn(async move {
            self.run(stop).await;
            let _ = done.send(());
        });
        handle
    }

    async fn run(self, stop: Arc<Notify>) {
        tracing::info!(owner = %self.member.id, host = %self.member.host, "lease keeper started");
        let mut ticks = tokio::time::interval(self.config.renew_every());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.notified() => break,
            }
            if self.frozen.load(Ordering::SeqCst) {
                continue;
            }
            match AssertUnwindSafe(self.tick()).catch_unwind().await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "lease renewal failed; will retry"),
                Err(_) => tracing::error!("lease renewal panicked; will retry"),
            }
        }
        self.leave().await;
    }

    /// One round: heartbeat, renew, hand back what is over the share and idle, take what is
    /// missing.
    async fn tick(&self) -> Result<(), DbErr> {
        let sent_at = Instant::now();
        let (db, owner, ttl) = (&self.db, self.member.id, self.config.ttl());
        let seen = members::heartbeat(db, &self.member, ttl).await?;
        (self.on_live)(seen);
        let live = seen.count;
        let held = leases::renew(db, owner, ttl).await?;
        let lost = self.ownership.renewed(&held, sent_at);
        if !lost.is_empty() {
            tracing::warn!(count = lost.len(), shards = ?lost, "shard leases lost to another process; dropping their work");
            (self.on_lost)(&lost);
        }
        let share = SHARDS.div_ceil(live);
        let held = self.ownership.held_count();
        if held > share {
            let mut shuffle = |shards: &mut Vec<i16>| shards.shuffle(&mut rand::rng());
            let leaving = self.ownership.start_leaving(held - share, &mut shuffle);
            if !leaving.is_empty() {
                tracing::info!(
                    count = leaving.len(),
                    live,
                    share,
                    "handing shards back once their steps are done"
                );
            }
        }
        let idle = self.ownership.idle_leaving();
        if !idle.is_empty() {
            leases::hand_back(db, owner, &idle).await?;
            self.ownership.handed_back(&idle);
            tracing::info!(count = idle.len(), "shards handed back");
        }
        let held = self.ownership.held_count();
        if held < share {
            let taken = leases::take(db, owner, ttl, share - held).await?;
            self.ownership.taken(&taken);
            if !taken.is_empty() {
                tracing::info!(
                    count = taken.len(),
                    held = held + taken.len(),
                    live,
                    share,
                    "shard leases taken"
                );
            }
        }
        Ok(())
    }

    /// Hands every lease back and leaves, so the others need not wait for the TTL.
    async fn leave(&self) {
        let all = self.ownership.release_all();
        match leases::hand_back(&self.db, self.member.id, &all).await {
            Ok(count) => tracing::info!(count, "shard leases handed back"),
            Err(error) => {
                tracing::warn!(%error, "could not hand the leases back; they lapse after the TTL")
            }
        }
        if let Err(error) = members::leave(&self.db, self.member.id).await {
            tracing::warn!(%error, "could not leave the membership; it lapses after the TTL");
        }
    }
}
