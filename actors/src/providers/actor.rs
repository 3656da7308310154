//! The provider actor: one per configured provider, through which every call to it goes. It
//! keeps at most `max_concurrency` calls in flight, queues the rest in arrival order, and runs
//! the provider's circuit breaker: while the circuit is open calls are refused at once, as
//! throttled until the next probe. Rate limits and failover come with the next issue.
//!
//! `ProviderHandle` implements `Provider` by messaging the actor, so the engine cannot tell it
//! from the adapter it wraps.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use super::breaker::{Admission, Breaker, Circuit};
use super::{Provider, ProviderError, Task, TaskStatus};

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
}

pub struct ProviderActor {
    adapter: Arc<dyn Provider>,
    max_in_flight: usize,
    in_flight: usize,
    queue: VecDeque<Call>,
    breaker: Breaker,
}

impl ProviderActor {
    fn start_next(&mut self, ctx: &mut Context<Self>) {
        while self.in_flight < self.max_in_flight {
            let Some(call) = self.queue.pop_front() else {
                return;
            };
            match self.breaker.admit(Instant::now()) {
                Admission::Refuse { retry_after } => {
                    call.refuse(ProviderError::RateLimited {
                        retry_after: Some(retry_after),
                    });
                    continue;
                }
                Admission::Probe => {
                    tracing::info!(
                        provider = self.adapter.name(),
                        "circuit half-open: probing the provider"
                    );
                }
                Admission::Proceed => {}
            }
            self.in_flight += 1;
            let adapter = self.adapter.clone();
            let work: BoxFuture<'static, Result<(), ProviderError>> = Box::pin(async move {
                // A caller that gave up dropped its receiver; the answer is then nobody's.
                match call {
                    Call::Submit(task, reply) => {
                        let outcome = adapter.submit(&task).await;
                        let health = outcome.as_ref().map(drop).map_err(Clone::clone);
                        drop(reply.send(outcome));
                        health
                    }
                    Call::Poll(id, reply) => {
                        let outcome = adapter.poll(&id).await;
                        let health = outcome.as_ref().map(drop).map_err(Clone::clone);
                        drop(reply.send(outcome));
                        health
                    }
                    Call::Cancel(id, reply) => {
                        let outcome = adapter.cancel(&id).await;
                        let health = outcome.clone();
                        drop(reply.send(outcome));
                        health
                    }
                }
            });
            ctx.spawn(work.into_actor(self).map(|health, actor, ctx| {
                actor.in_flight -= 1;
                let name = actor.adapter.name().to_owned();
                match actor.breaker.record(&health, Instant::now()) {
                    Some(Circuit::Open { until }) => tracing::warn!(
                        provider = %name,
                        cooldown = ?until.saturating_duration_since(Instant::now()),
                        "circuit open: the provider keeps failing; calls are refused until a probe succeeds"
                    ),
                    Some(Circuit::Closed { .. }) => {
                        tracing::info!(provider = %name, "circuit closed: the provider answers again");
                    }
                    _ => {}
                }
                actor.start_next(ctx);
            }));
        }
    }
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

/// A provider as the engine sees it: calls go through the provider's actor.
pub struct ProviderHandle {
    name: String,
    adapter: Arc<dyn Provider>,
    actor: Addr<ProviderActor>,
}

impl ProviderHandle {
    /// Starts the provider's actor (on the current arbiter) in front of `adapter`.
    pub fn start(adapter: Arc<dyn Provider>, max_concurrency: usize, breaker: Breaker) -> Self {
        let actor = ProviderActor {
            adapter: adapter.clone(),
            max_in_flight: max_concurrency.max(1),
            in_flight: 0,
            queue: VecDeque::new(),
            breaker,
        }
        .start();
        Self {
            name: adapter.name().to_owned(),
            adapter,
            actor,
        }
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

    /// Parsing needs no turn: it is local and cheap.
    fn parse_callback(&self, body: &[u8]) -> Result<(String, TaskStatus), ProviderError> {
        self.adapter.parse_callback(body)
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

    #[actix::test]
    async fn no_more_than_the_cap_is_in_flight_and_every_call_is_answered() {
        let slow = Arc::new(Slow::default());
        let handle =
            ProviderHandle::start(slow.clone(), 3, Breaker::new(5, Duration::from_secs(30)));
        let task = Task {
            generation_id: uuid::Uuid::nil(),
            person_image_url: String::new(),
            garment_image_url: String::new(),
            prompt: None,
            aspect_ratio: None,
            webhook_url: String::new(),
        };
        let calls = (0..12).map(|_| handle.submit(&task));
        let outcomes = futures::future::join_all(calls).await;
        assert!(outcomes.iter().all(Result::is_ok));
        assert_eq!(slow.most.load(Ordering::SeqCst), 3);
        assert_eq!(handle.poll("t").await, Ok(TaskStatus::Pending));
        assert_eq!(handle.name(), "slow");
    }
}

#[cfg(test)]
mod breaker_tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Fails every call until told to recover; counts the calls that reached it.
    #[derive(Default)]
    struct Flaky {
        healthy: AtomicBool,
        calls: AtomicUsize,
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
        let handle = ProviderHandle::start(flaky.clone(), 1, Breaker::new(3, cooldown));
        for _ in 0..3 {
            assert!(matches!(
                handle.poll("t").await,
                Err(ProviderError::Retryable(_))
            ));
        }
        // Open: refused without a call, as throttled until the probe.
        let refused = handle.poll("t").await;
        assert!(matches!(
            refused,
            Err(ProviderError::RateLimited {
                retry_after: Some(_)
            })
        ));
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);

        flaky.healthy.store(true, Ordering::SeqCst);
        tokio::time::sleep(cooldown).await;
        assert_eq!(handle.poll("t").await, Ok(TaskStatus::Pending), "the probe");
        assert_eq!(
            handle.poll("t").await,
            Ok(TaskStatus::Pending),
            "closed again"
        );
        assert_eq!(flaky.calls.load(Ordering::SeqCst), 5);
    }
}
