//! The supervisor: one `Engine` actor per process that owns the set of running
//! `GenerationActor`s.
//!
//! A workflow has an actor only while there is work to do: the actor runs `steps::advance`
//! and stops as soon as the workflow must wait (passivation), so workflows parked in
//! `awaiting_callback` cost a database row, not memory. A webhook, a cancel or a due time wakes
//! the workflow again: `Wake` starts an actor, or pokes the running one to look again once it
//! is done. Every `tick` the engine asks the database which workflows are due (next attempt or
//! deadline passed, or callbacks not yet processed) — at start that adopts every workflow a
//! previous process left behind.
//!
//! actix restarts nothing after a panic: the actor is simply gone. Each actor therefore holds a
//! guard whose `Drop` (which runs on unwinding too) reports to the engine; an actor that did not
//! finish cleanly is restarted from its row after a delay that grows with repeated deaths.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use sea_orm::DbErr;
use uuid::Uuid;

use super::{Deps, Turn, steps};
use crate::batcher::BatchError;
use crate::cluster::{Claim, Ownership, shard_of};

/// Due workflows started per tick, so that a backlog is worked through in slices.
const TICK_BATCH: u64 = 512;

#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake(pub Uuid);

#[derive(Message)]
#[rtype(result = "()")]
struct Gone {
    id: Uuid,
    incarnation: u64,
    clean: bool,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Poke;

/// Another process took these shards: their actors stop where they are (their writes would be
/// refused), and the new owner carries on from the rows.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ShardsLost(pub Vec<i16>);

#[derive(Message)]
#[rtype(result = "()")]
struct Leave;

/// Stops looking for work; running generation actors finish their current step.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// Starts draining: no new workflow is started or woken from now on (a wake is left for the
/// next process, which finds it in the database). Answers how many generation actors are
/// still finishing their step; asked again until none is, a shutdown loses no step midway.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Drain;

struct Running {
    incarnation: u64,
    addr: Addr<GenerationActor>,
}

pub struct Engine {
    deps: Arc<Deps>,
    running: HashMap<Uuid, Running>,
    /// Consecutive unclean deaths per workflow, for the restart delay.
    deaths: HashMap<Uuid, u32>,
    incarnations: u64,
    ticking: bool,
    draining: bool,
}

impl Engine {
    pub fn new(deps: Deps) -> Self {
        Self {
            deps: Arc::new(deps),
            running: HashMap::new(),
            deaths: HashMap::new(),
            incarnations: 0,
            ticking: false,
            draining: false,
        }
    }

    /// Starts the engine on `arbiter` (a thread of its own).
    pub fn start_on(arbiter: &ArbiterHandle, deps: Deps) -> Addr<Engine> {
        Engine::start_in_arbiter(arbiter, move |_| Engine::new(deps))
    }

    fn wake(&mut self, id: Uuid, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        if let Some(running) = self.running.get(&id)
            && running.addr.connected()
        {
            running.addr.do_send(Poke);
            return;
        }
        // Another process's shard (or one not confirmed lately): its owner drives it.
        let Some(claim) = self.deps.ownership.claim(id) else {
            return;
        };
        self.incarnations += 1;
        let shard = shard_of(id);
        self.deps.ownership.started(shard);
        let actor = GenerationActor {
            id,
            turn: Arc::new(Turn::new(self.deps.clone(), claim)),
            poked: false,
            guard: Some(GoneGuard {
                engine: ctx.address(),
                ownership: self.deps.ownership.clone(),
                shard,
                id,
                incarnation: self.incarnations,
                clean: false,
            }),
        };
        let addr = actor.start();
        self.running.insert(
            id,
            Running {
                incarnation: self.incarnations,
                addr,
            },
        );
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.ticking || self.draining {
            return;
        }
        self.ticking = true;
        let deps = self.deps.clone();
        let work = async move { due_workflows(&deps).await };
        ctx.spawn(work.into_actor(self).map(|due, engine, ctx| {
            engine.ticking = false;
            match due {
                Ok(ids) => {
                    for id in ids {
                        if !engine.running.contains_key(&id) && !engine.deaths.contains_key(&id) {
                            engine.wake(id, ctx);
                        }
                    }
                }
                Err(error) => tracing::error!(%error, "cannot look for due workflows"),
            }
        }));
    }
}

/// Workflows of the shards this process holds with something to do now: due, past their
/// deadline, or holding unprocessed callbacks.
async fn due_workflows(deps: &Deps) -> Result<Vec<Uuid>, DbErr> {
    let shards = deps.ownership.due_shards();
    if shards.as_ref().is_some_and(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let now = deps.clock.now();
    crate::workflow::read::due(&deps.db, now, TICK_BATCH, shards.as_deref()).await
}

impl Actor for Engine {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let tick = self.deps.config.tick();
        self.tick(ctx);
        ctx.run_interval(tick, |engine, ctx| engine.tick(ctx));
    }
}

impl Handler<Wake> for Engine {
    type Result = ();

    fn handle(&mut self, Wake(id): Wake, ctx: &mut Self::Context) {
        self.deaths.remove(&id);
        self.wake(id, ctx);
    }
}

impl Handler<ShardsLost> for Engine {
    type Result = ();

    fn handle(&mut self, ShardsLost(shards): ShardsLost, _: &mut Self::Context) {
        let lost: Vec<Uuid> = self
            .running
            .keys()
            .filter(|id| shards.contains(&shard_of(**id)))
            .copied()
            .collect();
        for id in lost {
            if let Some(running) = self.running.remove(&id) {
                running.addr.do_send(Leave);
            }
            self.deaths.remove(&id);
        }
        self.deaths.retain(|id, _| !shards.contains(&shard_of(*id)));
    }
}

impl Handler<Shutdown> for Engine {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Drain> for Engine {
    type Result = usize;

    fn handle(&mut self, _: Drain, _: &mut Self::Context) -> usize {
        if !self.draining {
            tracing::info!(
                running = self.running.len(),
                "engine draining: finishing running steps, starting none"
            );
        }
        self.draining = true;
        self.deps
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.running.retain(|_, running| running.addr.connected());
        self.running.len()
    }
}

impl Handler<Gone> for Engine {
    type Result = ();

    fn handle(&mut self, gone: Gone, ctx: &mut Self::Context) {
        let current = self
            .running
            .get(&gone.id)
            .is_some_and(|running| running.incarnation == gone.incarnation);
        if !current {
            return;
        }
        self.running.remove(&gone.id);
        if gone.clean {
            self.deaths.remove(&gone.id);
            return;
        }
        let deaths = self.deaths.entry(gone.id).or_insert(0);
        *deaths += 1;
        let delay = Duration::from_millis(100) * 2_u32.saturating_pow(Ord::min(*deaths, 10));
        tracing::error!(
            generation_id = %gone.id,
            deaths = *deaths,
            ?delay,
            "generation actor died; rebuilding it from the database"
        );
        let id = gone.id;
        ctx.run_later(delay, move |engine, ctx| {
            if !engine.running.contains_key(&id) {
                engine.wake(id, ctx);
            }
        });
    }
}

/// Reports the actor's end to the engine and to the shard's count of running actors from
/// `Drop`, which also runs when a panic unwinds.
struct GoneGuard {
    engine: Addr<Engine>,
    ownership: Arc<Ownership>,
    shard: i16,
    id: Uuid,
    incarnation: u64,
    clean: bool,
}

impl Drop for GoneGuard {
    fn drop(&mut self) {
        self.ownership.stopped(self.shard);
        self.engine.do_send(Gone {
            id: self.id,
            incarnation: self.incarnation,
            clean: self.clean,
        });
    }
}

/// Drives one workflow while it has work to do.
pub struct GenerationActor {
    id: Uuid,
    turn: Arc<Turn>,
    /// Something happened while a run was in progress: run again before stopping.
    poked: bool,
    guard: Option<GoneGuard>,
}

impl GenerationActor {
    fn run(&mut self, ctx: &mut Context<Self>) {
        self.poked = false;
        let turn = self.turn.clone();
        let id = self.id;
        let work = async move { steps::advance(&turn, id).await };
        ctx.spawn(work.into_actor(self).map(|outcome, actor, ctx| {
            match outcome {
                Ok(()) if actor.poked && !actor.turn.draining.load(std::sync::atomic::Ordering::SeqCst) => {
                    return actor.run(ctx);
                }
                Ok(()) => {}
                // Another process holds the shard now: nothing was written, and nothing more
                // is asked of the provider from here.
                Err(steps::StepError::Write(BatchError::Fenced)) => {
                    tracing::warn!(generation_id = %actor.id, "write refused: the shard's lease moved to another process");
                    if let Claim::Fenced(fence) = actor.turn.claim {
                        actor.turn.ownership.fenced_out(fence);
                    }
                }
                // The row is unchanged; the engine's next tick retries when it is due.
                Err(steps::StepError::Write(error)) if error.is_stall() => {
                    tracing::info!(generation_id = %actor.id, "step deferred: the workflow writer is busy");
                }
                Err(error) => {
                    tracing::warn!(generation_id = %actor.id, %error, "step failed");
                }
            }
            if let Some(guard) = actor.guard.as_mut() {
                guard.clean = true;
            }
            ctx.stop();
        }));
    }
}

impl Actor for GenerationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.run(ctx);
    }
}

impl Handler<Leave> for GenerationActor {
    type Result = ();

    fn handle(&mut self, _: Leave, ctx: &mut Self::Context) {
        if let Some(guard) = self.guard.as_mut() {
            guard.clean = true;
        }
        ctx.stop();
    }
}

impl Handler<Poke> for GenerationActor {
    type Result = ();

    fn handle(&mut self, _: Poke, _: &mut Self::Context) {
        self.poked = true;
    }
}
