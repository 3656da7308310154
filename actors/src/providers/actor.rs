//! The provider actor: one per configured provider, through which every call to it goes. It
//! keeps at most `max_concurrency` calls in flight and queues the rest in arrival order; it
//! starts no more than the configured rate allows (`governor`); after a 429 with
//! `Retry-After` it refuses calls as throttled until then; and it runs the provider's circuit
//! breaker: while the circuit is open, calls are refused at once (`CircuitOpen`) so that the
//! engine can fail over or wait, instead of queueing behind a provider that is down.
//!
//! It also keeps what operators see of the provider (`Health`: the recent calls in a bounded
//! per-minute window, the last error, since when the circuit is as it is) and records the
//! provider's metrics (calls in flight, circuit, latency, 429s).
//!
//! With several engine processes on one database (issue 13), the configured limits are the
//! account's: the lease keeper tells the actor its `Share` of them as the live count changes
//! (`share.rs`); and a circuit it opens is told to `circuits.rs`, which shares it through the
//! database, while a circuit another process opened comes back as `open_shared`.
//!
//! `ProviderHandle` implements `Provider` by messaging the actor, so the engine cannot tell it
//! from the adapter it wraps.
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::Clock as _;
use governor::{DefaultDirectRateLimiter, RateLimiter};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::breaker::{Admission, Breaker, Circuit};
use super::health::{Health, LastError, truncated};
use super::share::Share;
use super::window::{CallWindow, Ended};
use super::{Provider, ProviderError, Task, TaskStatus};
use crate::metrics;

enum Call {
    Submit(Box<Task>, oneshot::Sender<Result<String, ProviderError>>),
    Poll(String, oneshot::Sender<Result<TaskStatus, ProviderError>>),
    Cancel(String, oneshot::Sender<Result<(), ProviderError>>),
}

impl Message for Call {
    type Result = ();
}

impl Call {
    /// Answers without calling the provider.
    fn refuse(self, error: ProviderError) {
        match self {
            Call::Submit(_, reply) => drop(reply.send(Err(error))),
            Call::Poll(_, reply) => drop(reply.send(Err(error))),
            Call::Cancel(_, reply) => drop(reply.send(Err(error))),
        }
    }

    /// The call's name in metrics.
    fn kind(&self) -> &'static str {
        match self {
            Call::Submit(..) => "submit",
            Call::Poll(..) => "poll",
            Call::Cancel(..) => "cancel",
        }
    }
}

/// Asks the actor for the provider's `Health`; `now` is the wall-clock time its instants are
/// told in.
struct HealthOf(DateTime<Utc>);

impl Message for HealthOf {
    type Result = Health;
}

/// This process's part of the account's limits changed (the live count did).
struct ShareOf(Share);

impl Message for ShareOf {
    type Result = ();
}

/// Where the circuits this actor opens are told, to be shared with the other processes.
struct PublishTo(mpsc::Sender<CircuitOpened>);

impl Message for PublishTo {
    type Result = ();
}

/// A circuit this process's breaker opened (closed or half-open before), for the others.
#[derive(Debug, Clone)]
pub struct CircuitOpened {
    /// The provider's configured name.
    pub provider: String,
    /// How long it refuses calls from now.
    pub cooldown: Duration,
    /// The error that opened it, as `Health` keeps it.
    pub reason: String,
}

/// Another process opened the provider's circuit: open here too, until `until`.
struct OpenShared {
    until: Instant,
    /// The open as its row says it (its end on the database's clock): applied once, so that a
    /// call here that succeeds after it may close the circuit again for good.
    open_until: DateTime<Utc>,
    by: Uuid,
}

impl Message for OpenShared {
    type Result = ();
}

/// The longest a provider's `Retry-After` pauses all calls to it; beyond, it is not believed.
const MAX_PAUSE: Duration = Duration::from_secs(300);

/// How a provider is to be treated, from its configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_concurrency: usize,
    /// Calls started per second, at most (`None`: no limit).
    pub requests_per_second: Option<NonZeroU32>,
    pub breaker: Breaker,
    /// Longest one call may take: a provider that hangs answers `Retryable` then, which
    /// frees its slot and counts against its circuit like any failure.
    pub call_timeout: Duration,
}

pub struct ProviderActor {
    adapter: Arc<dyn Provider>,
    name: String,
    call_timeout: Duration,
    /// The account's limits, as configured for all processes together.
    account_max_concurrency: usize,
    account_rate: Option<NonZeroU32>,
    /// This process's part of them, and what it comes to.
    share: Share,
    max_in_flight: usize,
    rate: Option<DefaultDirectRateLimiter>,
    in_flight: usize,
    queue: VecDeque<Call>,
    breaker: Breaker,
    /// A wake-up to start queued calls is pending (the rate limit said "not yet").
    wake_pending: bool,
    /// The provider said 429 with `Retry-After`: every call is throttled until then.
    paused_until: Option<Instant>,
    /// The finished calls of the last hour.
    window: CallWindow,
    /// When the circuit last changed.
    circuit_since: Instant,
    last_error: Option<(Instant, String)>,
    /// Where the circuits this breaker opens go (PostgreSQL engine processes).
    publish: Option<mpsc::Sender<CircuitOpened>>,
    /// The last open of another process applied here.
    shared_open: Option<DateTime<Utc>>,
}

impl ProviderActor {
    fn new(name: String, adapter: Arc<dyn Provider>, limits: Limits) -> Self {
        let now = Instant::now();
        let mut actor = ProviderActor {
            adapter,
            name,
            call_timeout: limits.call_timeout,
            account_max_concurrency: limits.max_concurrency.max(1),
            account_rate: limits.requests_per_second,
            share: Share::ALONE,
            max_in_flight: 1,
            rate: None,
            in_flight: 0,
            queue: VecDeque::new(),
            breaker: limits.breaker,
            wake_pending: false,
            paused_until: None,
            window: CallWindow::new(now),
            circuit_since: now,
            last_error: None,
            publish: None,
            shared_open: None,
        };
        actor.take_share(Share::ALONE);
        actor
    }

    /// Applies `share` of the account's limits. Calls queued or in flight stay: a smaller cap
    /// starts nothing until enough have ended. A new rate limiter starts with a full burst.
    fn take_share(&mut self, share: Share) {
        self.share = share;
        self.max_in_flight = share.concurrency(self.account_max_concurrency);
        self.rate = self
            .account_rate
            .map(|rate| RateLimiter::direct(share.quota(rate)));
    }

    /// Another process's open of the circuit, once per open.
    fn open_shared(&mut self, open: OpenShared) {
        if self.shared_open == Some(open.open_until) {
            return;
        }
        self.shared_open = Some(open.open_until);
        if self.breaker.open_until(open.until) {
            tracing::warn!(
                provider = %self.name,
                opened_by = %open.by,
                until = %open.open_until,
                "circuit open: another engine process found the provider failing"
            );
            self.circuit_changed(Instant::now());
        }
    }

    /// Tells the other processes that this breaker opened the circuit for `cooldown`.
    fn publish_open(&self, cooldown: Duration) {
        let Some(publish) = &self.publish else {
            return;
        };
        let opened = CircuitOpened {
            provider: self.name.clone(),
            cooldown,
            reason: self
                .last_error
                .as_ref()
                .map(|(_, message)| message.clone())
                .unwrap_or_default(),
        };
        if publish.try_send(opened).is_err() {
            tracing::debug!(provider = %self.name, "circuit queue full: this open stays unshared (the next one is shared)");
        }
    }

    fn start_next(&mut self, ctx: &mut Context<Self>) {
        while self.in_flight < self.max_in_flight && !self.queue.is_empty() {
            let now = Instant::now();
            if let Some(until) = self.paused_until.filter(|until| *until > now) {
                let call = self.queue.pop_front().expect("not empty");
                call.refuse(ProviderError::RateLimited {
                    retry_after: Some(until - now),
                });
                continue;
            }
            if let Some(rate) = &self.rate
                && let Err(not_until) = rate.check()
            {
                if !self.wake_pending {
                    self.wake_pending = true;
                    let wait = not_until.wait_time_from(rate.clock().now());
                    ctx.run_later(wait, |actor, ctx| {
                        actor.wake_pending = false;
                        actor.start_next(ctx);
                    });
                }
                return;
            }
            let call = self.queue.pop_front().expect("not empty");
            match self.breaker.admit(now) {
                Admission::Refuse { retry_after } => {
                    call.refuse(ProviderError::CircuitOpen { retry_after });
                    continue;
                }
                Admission::Probe => {
                    tracing::info!(
                        provider = %self.name,
                        "circuit half-open: probing the provider"
                    );
                    self.circuit_changed(now);
                }
                Admission::Proceed => {}
            }
            self.in_flight += 1;
            metrics::provider_in_flight(&self.name, self.in_flight);
            let kind = call.kind();
            let adapter = self.adapter.clone();
            let work = run(adapter, call, self.call_timeout);
            ctx.spawn(work.into_actor(self).map(move |health, actor, ctx| {
                actor.in_flight -= 1;
                metrics::provider_in_flight(&actor.name, actor.in_flight);
                actor.record(&health, kind, now.elapsed());
                actor.start_next(ctx);
            }));
        }
    }

    /// What a finished call says about the provider: a pause after a 429 with a known wait,
    /// an operator alert on an account problem, and the breaker's count.
    fn record(&mut self, health: &Result<(), ProviderError>, kind: &'static str, took: Duration) {
        let now = Instant::now();
        self.count(health, kind, took, now);
        let name = self.name.clone();
        match health {
            Err(ProviderError::RateLimited {
                retry_after: Some(wait),
            }) => {
                let wait = (*wait).min(MAX_PAUSE);
                tracing::warn!(provider = %name, ?wait, "provider throttles us: pausing calls to it");
                self.paused_until = Some(now + wait);
            }
            Err(ProviderError::Account(detail)) => tracing::error!(
                provider = %name,
                %detail,
                "provider refuses our account (credentials or credit): an operator must act; it is in cooldown meanwhile"
            ),
            _ => {}
        }
        match self.breaker.record(health, now) {
            Some(Circuit::Open { until }) => {
                let cooldown = until.saturating_duration_since(now);
                tracing::warn!(
                    provider = %name,
                    ?cooldown,
                    "circuit open: the provider keeps failing; calls are refused until a probe succeeds"
                );
                self.circuit_changed(now);
                self.publish_open(cooldown);
            }
            Some(Circuit::Closed { .. }) => {
                tracing::info!(provider = %name, "circuit closed: the provider answers again");
                self.circuit_changed(now);
            }
            _ => {}
        }
    }

    /// The call in the window, the metrics and the last error.
    fn count(
        &mut self,
        health: &Result<(), ProviderError>,
        kind: &'static str,
        took: Duration,
        now: Instant,
    ) {
        let (ended, outcome) = match health {
            Ok(()) => (Ended::Ok, "ok"),
            Err(ProviderError::RateLimited { retry_after }) => {
                metrics::provider_throttled(&self.name, retry_after.is_some());
                (Ended::Throttled, "rate_limited")
            }
            Err(ProviderError::Retryable(_)) => (Ended::Failed, "retryable"),
            Err(ProviderError::CircuitOpen { .. }) => (Ended::Failed, "circuit_open"),
            Err(ProviderError::Account(_)) => (Ended::Failed, "account"),
            Err(ProviderError::Permanent(_)) => (Ended::Failed, "permanent"),
        };
        self.window.record(now, took, ended);
        metrics::provider_call(&self.name, kind, outcome, took);
        if let Err(error) = health {
            self.last_error = Some((now, truncated(error)));
        }
    }

    fn circuit_changed(&mut self, now: Instant) {
        self.circuit_since = now;
        let state = match self.breaker.circuit() {
            Circuit::Closed { .. } => 0,
            Circuit::HalfOpen => 1,
            Circuit::Open { .. } => 2,
        };
        metrics::provider_circuit(&self.name, state);
    }

    fn health(&self, wall_now: DateTime<Utc>) -> Health {
        let now = Instant::now();
        let wall = |at: Instant| wall_now - chrono_duration(now.saturating_duration_since(at));
        Health {
            circuit: match self.breaker.circuit() {
                Circuit::Closed { .. } => "closed",
                Circuit::HalfOpen => "half_open",
                Circuit::Open { .. } => "open",
            },
            circuit_since: wall(self.circuit_since),
            in_flight: self.in_flight,
            max_concurrency: self.max_in_flight,
            queued: self.queue.len(),
            requests_per_second: self.account_rate.map(|rate| self.share.rate(rate)),
            share_of: self.share.of,
            account_max_concurrency: self.account_max_concurrency,
            account_requests_per_second: self.account_rate.map(NonZeroU32::get),
            throttled_until: self
                .paused_until
                .filter(|until| *until > now)
                .map(|until| wall_now + chrono_duration(until - now)),
            last_5m: self.window.summary(now, 5),
            last_60m: self.window.summary(now, 60),
            last_error: self.last_error.as_ref().map(|(at, message)| LastError {
                at: wall(*at),
                message: message.clone(),
            }),
        }
    }
}

fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// Makes `call` to `adapter` within `limit`, answers its caller and returns what it says
/// about the provider's health.
fn run(
    adapter: Arc<dyn Provider>,
    call: Call,
    limit: Duration,
) -> BoxFuture<'static, Result<(), ProviderError>> {
    Box::pin(async move {
        // A caller that gave up dropped its receiver; the answer is then nobody's.
        match call {
            Call::Submit(task, reply) => {
                let outcome = within(limit, adapter.submit(&task)).await;
                let health = outcome.as_ref().map(drop).map_err(Clone::clone);
                drop(reply.send(outcome));
                health
            }
            Call::Poll(id, reply) => {
                let outcome = within(limit, adapter.poll(&id)).await;
                let health = outcome.as_ref().map(drop).map_err(Clone::clone);
                drop(reply.send(outcome));
                health
            }
            Call::Cancel(id, reply) => {
                let outcome = within(limit, adapter.cancel(&id)).await;
                let health = outcome.clone();
                drop(reply.send(outcome));
                health
            }
        }
    })
}

/// `call`, or a retryable failure once `limit` has passed.
async fn within<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
        Err(ProviderError::Retryable(format!(
            "no answer within {limit:?}"
        )))
    })
}

impl Actor for ProviderActor {
    type Context = Context<Self>;
}

impl Handler<Call> for ProviderActor {
    type Result = ();

    fn handle(&mut self, call: Call, ctx: &mut Self::Context) {
        self.queue.push_back(call);
        self.start_next(ctx);
    }
}

impl Handler<ShareOf> for ProviderActor {
    type Result = ();

    fn handle(&mut self, ShareOf(share): ShareOf, ctx: &mut Self::Context) {
        if share == self.share {
            return;
        }
        self.take_share(share);
        tracing::info!(
            provider = %self.name,
            engines = share.of,
            max_concurrency = self.max_in_flight,
            requests_per_second = ?self.account_rate.map(|rate| share.rate(rate)),
            "provider limits split among the live engine processes"
        );
        // A larger cap may start queued calls now.
        self.start_next(ctx);
    }
}

impl Handler<PublishTo> for ProviderActor {
    type Result = ();

    fn handle(&mut self, PublishTo(publish): PublishTo, _: &mut Self::Context) {
        self.publish = Some(publish);
    }
}

impl Handler<OpenShared> for ProviderActor {
    type Result = ();

    fn handle(&mut self, open: OpenShared, _: &mut Self::Context) {
        self.open_shared(open);
    }
}

impl Handler<HealthOf> for ProviderActor {
    type Result = MessageResult<HealthOf>;

    fn handle(&mut self, HealthOf(now): HealthOf, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.health(now))
    }
}

/// A provider as the engine sees it: calls go through the provider's actor.
#[derive(Clone)]
pub struct ProviderHandle {
    name: String,
    adapter: Arc<dyn Provider>,
    actor: Addr<ProviderActor>,
}

impl ProviderHandle {
    /// Starts the provider's actor (on the current arbiter) in front of `adapter`.
    pub fn start(adapter: Arc<dyn Provider>, limits: Limits) -> Self {
        let name = adapter.name().to_owned();
        Self::start_as(name, adapter, limits)
    }

    /// As `start`, for the provider configured as `name` (`[providers.<name>]`), which its
    /// logs and metrics carry: two tables of one adapter are two providers.
    pub fn start_as(name: String, adapter: Arc<dyn Provider>, limits: Limits) -> Self {
        metrics::provider_in_flight(&name, 0);
        metrics::provider_circuit(&name, 0);
        let actor = ProviderActor::new(name, adapter.clone(), limits).start();
        Self {
            name: adapter.name().to_owned(),
            adapter,
            actor,
        }
    }

    /// This process takes `share` of the account's limits from now on.
    pub fn share(&self, share: Share) {
        self.actor.do_send(ShareOf(share));
    }

    /// The circuits this provider's breaker opens are sent to `publish` from now on.
    pub fn publish_circuit(&self, publish: mpsc::Sender<CircuitOpened>) {
        self.actor.do_send(PublishTo(publish));
    }

    /// Another process (`by`) opened the provider's circuit until `open_until` on the
    /// database's clock, `until` here: the circuit opens here too (once per open).
    pub fn open_shared(&self, until: Instant, open_until: DateTime<Utc>, by: Uuid) {
        self.actor.do_send(OpenShared {
            until,
            open_until,
            by,
        });
    }

    /// The provider's health as its actor sees it, its times told from `now`; `None` when
    /// the actor stopped.
    pub async fn health(&self, now: DateTime<Utc>) -> Option<Health> {
        self.actor.send(HealthOf(now)).await.ok()
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ProviderError>>) -> Call,
    ) -> Result<T, ProviderError> {
        let (reply, answer) = oneshot::channel();
        self.actor.do_send(make(reply));
        answer.await.unwrap_or_else(|_| {
            Err(ProviderError::Retryable(
                "the provider actor stopped".into(),
            ))
        })
    }
}

#[async_trait::async_trait]
impl Provider for ProviderHandle {
    fn name(&self) -> &str {
        &self.name
    }

    async fn submit(&self, task: &Task) -> Result<String, ProviderError> {
        let task = Box::new(task.clone());
        self.call(|reply| Call::Submit(task, reply)).await
    }

    /// Checking and parsing need no turn: they are local and cheap.
    fn verify_callback(
        &self,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
        unix_now: i64,
    ) -> Result<(), super::signature::Rejected> {
        self.adapter.verify_callback(headers, body, unix_now)
    }

    fn parse_callback(&self, body: &[u8]) -> Result<(String, TaskStatus), ProviderError> {
        self.adapter.parse_callback(body)
    }

    fn confirms_callbacks(&self) -> bool {
        self.adapter.confirms_callbacks()
    }

    async fn poll(&self, task_id: &str) -> Result<TaskStatus, ProviderError> {
        let id = task_id.to_owned();
        self.call(|reply| Call::Poll(id, reply)).await
    }

    async fn cancel(&self, task_id: &str) -> Result<(), ProviderError> {
        let id = task_id.to_owned();
        self.call(|reply| Call::Cancel(id, reply)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[derive(Default)]
    struct Slow {
        in_flight: AtomicUsize,
        most: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Provider for Slow {
        fn name(&self) -> &str {
            "slow"
        }
        async fn submit(&self, _: &Task) -> Result<String, ProviderError> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok("t".into())
        }
        fn parse_callback(&self, _: &[u8]) -> Result<(String, TaskStatus), ProviderError> {
            Ok(("t".into(), TaskStatus::Pending))
        }
        async fn poll(&self, _: &str) -> Result<TaskStatus, ProviderError> {
            Ok(TaskStatus::Pending)
        }
        async fn cancel(&self, _: &str) -> Result<(), ProviderError> {
            Ok(())
        }
    }

    pub(super) fn limits(max: usize, rate: Option<u32>, breaker: Breaker) -> Limits {
        Limits {
            max_concurrency: max,
            requests_per_second: rate.and_then(NonZeroU32::new),
            breaker,
            call_timeout: Duration::from_secs(5),
        }
    }

    pub(super) fn task_for_tests() -> Task {
        task()
    }

    fn task() -> Task {
        Task {
            generation_id: uuid::Uuid::nil(),
            person_image_url: String::new(),
            garment_image_url: String::new(),
            prompt: None,
            aspect_ratio: None,
            webhook_url: String::new(),
        }
    }

    #[actix::test]
    async fn calls_start_no_faster_than_the_rate_limit() {
        let slow = Arc::new(Slow::default());
        let handle = ProviderHandle::start(
            slow.clone(),
            limits(64, Some(4), Breaker::new(5, Duration::from_secs(30))),
        );
        let started = Instant::now();
        let task = task();
        let calls = (0..8).map(|_| handle.submit(&task));
        let outcomes = futures::future::join_all(calls).await;
        assert!(outcomes.iter().all(Result::is_ok));
        // A burst of 4, then one every 250 ms: the 8th starts a second after the first.
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
    }

    #[actix::test]
    async fn no_more_than_the_cap_is_in_flight_and_every_call_is_answered() {
        let slow = Arc::new(Slow::default());
        let handle = ProviderHandle::start(
            slow.clone(),
            limits(3, None, Breaker::new(5, Duration::from_secs(30))),
        );
        let task = task();
        let calls = (0..12).map(|_| handle.submit(&task));
        let outcomes = futures::future::join_all(calls).await;
        assert!(outcomes.iter().all(Result::is_ok));
        assert_eq!(slow.most.load(Ordering::SeqCst), 3);
        assert_eq!(handle.poll("t").await, Ok(TaskStatus::Pending));
        assert_eq!(handle.name(), "slow");
    }

    /// Two live engine processes: an account limit of 4 in flight is 2 here, 1000 calls a
    /// second 500, as the health says; alone again, the whole of it.
    #[actix::test]
    async fn a_share_of_the_account_caps_this_process_until_the_count_changes() {
        let slow = Arc::new(Slow::default());
        let handle = ProviderHandle::start(
            slow.clone(),
            limits(4, Some(1000), Breaker::new(5, Duration::from_secs(30))),
        );
        handle.share(Share::new(2, 1));
        let task = task();
        let outcomes = futures::future::join_all((0..12).map(|_| handle.submit(&task))).await;
        assert!(outcomes.iter().all(Result::is_ok));
        assert_eq!(slow.most.load(Ordering::SeqCst), 2);
        let health = handle.health(chrono::Utc::now()).await.expect("running");
        assert_eq!(
            (
                health.share_of,
                health.max_concurrency,
                health.account_max_concurrency
            ),
            (2, 2, 4)
        );
        assert_eq!(health.requests_per_second, Some(500.0));
        assert_eq!(health.account_requests_per_second, Some(1000));

        handle.share(Share::ALONE);
        slow.most.store(0, Ordering::SeqCst);
        let outcomes = futures::future::join_all((0..12).map(|_| handle.submit(&task))).await;
        assert!(outcomes.iter().all(Result::is_ok));
        assert_eq!(slow.most.load(Ordering::SeqCst), 4);
        let health = handle.health(chrono::Utc::now()).await.expect("running");
        assert_eq!((health.share_of, health.max_concurrency), (1, 4));
        assert_eq!(health.requests_per_second, Some(1000.0));
    }
}

#[cfg(test)]
mod breaker_tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Fails every call until told to recover; counts the calls that reached it.
    #[derive(Default)]
    pub(super) struct Flaky {
        pub(super) healthy: AtomicBool,
        pub(super) calls: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Provider for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        async fn submit(&self, _: &Task) -> Result<String, ProviderError> {
            unreachable!()
        }
        fn parse_callback(&self, _: &[u8]) -> Result<(String, TaskStatus), ProviderError> {
            unreachable!()
        }
        async fn poll(&self, _: &str) -> Result<TaskStatus, ProviderError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.healthy.load(Ordering::SeqCst) {
                Ok(TaskStatus::Pending)
            } else {
                Err(ProviderError::Retryable("503".into()))
            }
        }
        async fn cancel(&self, _: &str) -> Result<(), ProviderError> {
            unreachable!()
        }
    }

    #[actix::test]
    async fn an_open_circuit_spares_the_provider_until_a_probe_succeeds() {
        let flaky = Arc::new(Flaky::default());
        let cooldown = Duration::from_millis(200);
        let handle = ProviderHandle::start(
            flaky.clone(),
            super::tests::limits(1, None, Breaker::new(3, cooldown)),
        );
        for _ in 0..3 {
            assert!(matches!(
                handle.poll("t").await,
                Err(ProviderError::Retryable(_))
            ));
        }
        // Open: refused without a call until the probe.
        let refused = handle.poll("t").await;
        assert!(matches!(refused, Err(ProviderError::CircuitOpen { .. })));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
        let health = handle.health(chrono::Utc::now()).await.expect("running");
        assert_eq!(health.circuit, "open");
        assert_eq!(
            (health.last_5m.calls, health.last_5m.errors),
            (3, 3),
            "refusals are no calls"
        );
        assert_eq!(health.last_error.unwrap().message, "retryable: 503");

        flaky.healthy.store(true, Ordering::SeqCst);
        tokio::time::sleep(cooldown).await;
        assert_eq!(handle.poll("t").await, Ok(TaskStatus::Pending), "the probe");
        assert_eq!(
            handle.poll("t").await,
            Ok(TaskStatus::Pending),
            "closed again"
        );
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 5);
        let health = handle.health(chrono::Utc::now()).await.expect("running");
        assert_eq!(health.circuit, "closed");
        assert_eq!(health.last_60m.calls, 5);
    }
}

#[cfg(test)]
mod shared_circuit_tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::breaker_tests::Flaky;
    use super::*;

    /// Another process's open refuses calls here without calling the provider, until the
    /// probe after it closes the circuit; told the same open again (a refresh), the circuit
    /// stays closed. A circuit this breaker opens is published.
    #[actix::test]
    async fn another_processes_open_refuses_calls_here_once() {
        let flaky = Arc::new(Flaky::default());
        flaky.healthy.store(true, Ordering::SeqCst);
        let handle = ProviderHandle::start(
            flaky.clone(),
            super::tests::limits(1, None, Breaker::new(1, Duration::from_secs(60))),
        );
        let (publish, mut published) = mpsc::channel(4);
        handle.publish_circuit(publish);
        let cooldown = Duration::from_millis(200);
        let open_until = chrono::Utc::now() + chrono::Duration::milliseconds(200);
        let by = Uuid::now_v7();
        handle.open_shared(Instant::now() + cooldown, open_until, by);
        assert!(matches!(
            handle.poll("t").await,
            Err(ProviderError::CircuitOpen { .. })
        ));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 0);
        let health = handle.health(chrono::Utc::now()).await.expect("running");
        assert_eq!(health.circuit, "open");

        tokio::time::sleep(cooldown).await;
        assert_eq!(handle.poll("t").await, Ok(TaskStatus::Pending), "the probe");
        handle.open_shared(Instant::now() + cooldown, open_until, by);
        assert_eq!(
            handle.poll("t").await,
            Ok(TaskStatus::Pending),
            "applied once"
        );
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 2);
        assert!(
            published.try_recv().is_err(),
            "another's open is not published again"
        );

        flaky.healthy.store(false, Ordering::SeqCst);
        assert!(handle.poll("t").await.is_err());
        let opened = published.recv().await.expect("published");
        assert_eq!(opened.provider, "flaky");
        assert_eq!(opened.reason, "retryable: 503");
        assert!(
            opened.cooldown > Duration::from_secs(59),
            "{:?}",
            opened.cooldown
        );
    }
}

#[cfg(test)]
mod timeout_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Never answers a submission; polls answer at once.
    #[derive(Default)]
    struct Hung {
        polls: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Provider for Hung {
        fn name(&self) -> &str {
            "hung"
        }
        async fn submit(&self, _: &Task) -> Result<String, ProviderError> {
            futures::future::pending().await
        }
        fn parse_callback(&self, _: &[u8]) -> Result<(String, TaskStatus), ProviderError> {
            unreachable!()
        }
        async fn poll(&self, _: &str) -> Result<TaskStatus, ProviderError> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            Ok(TaskStatus::Pending)
        }
        async fn cancel(&self, _: &str) -> Result<(), ProviderError> {
            Ok(())
        }
    }

    #[actix::test]
    async fn a_hung_call_times_out_frees_its_slot_and_counts_against_the_circuit() {
        let hung = Arc::new(Hung::default());
        let mut limits = super::tests::limits(1, None, Breaker::new(2, Duration::from_secs(60)));
        limits.call_timeout = Duration::from_millis(100);
        let handle = ProviderHandle::start(hung.clone(), limits);
        let task = super::tests::task_for_tests();
        for _ in 0..2 {
            let outcome = handle.submit(&task).await;
            assert!(
                matches!(outcome, Err(ProviderError::Retryable(ref m)) if m.contains("no answer")),
                "{outcome:?}"
            );
        }
        // Two timeouts opened the circuit: the provider is spared from now on.
        assert!(matches!(
            handle.poll("t").await,
            Err(ProviderError::CircuitOpen { .. })
        ));
        assert_eq!(hung.polls.load(Ordering::SeqCst), 0);
    }
}
