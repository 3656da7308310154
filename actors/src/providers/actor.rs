//! The provider actor: one per configured provider, through which every call to it goes. It
//! keeps at most `max_concurrency` calls in flight and queues the rest in arrival order. This is
//! where the provider's resilience lives and grows (rate limits, circuit breaking, failover come
//! with the next issue).
//!
//! `ProviderHandle` implements `Provider` by messaging the actor, so the engine cannot tell it
//! from the adapter it wraps.
use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;
use futures::future::BoxFuture;
use tokio::sync::oneshot;

use super::{Provider, ProviderError, Task, TaskStatus};

enum Call {
    Submit(Box<Task>, oneshot::Sender<Result<String, ProviderError>>),
    Poll(String, oneshot::Sender<Result<TaskStatus, ProviderError>>),
    Cancel(String, oneshot::Sender<Result<(), ProviderError>>),
}

impl Message for Call {
    type Result = ();
}

pub struct ProviderActor {
    adapter: Arc<dyn Provider>,
    max_in_flight: usize,
    in_flight: usize,
    queue: VecDeque<Call>,
}

impl ProviderActor {
    fn start_next(&mut self, ctx: &mut Context<Self>) {
        while self.in_flight < self.max_in_flight {
            let Some(call) = self.queue.pop_front() else {
                return;
            };
            self.in_flight += 1;
            let adapter = self.adapter.clone();
            let work: BoxFuture<'static, ()> = Box::pin(async move {
                // A caller that gave up dropped its receiver; the answer is then nobody's.
                match call {
                    Call::Submit(task, reply) => drop(reply.send(adapter.submit(&task).await)),
                    Call::Poll(id, reply) => drop(reply.send(adapter.poll(&id).await)),
                    Call::Cancel(id, reply) => drop(reply.send(adapter.cancel(&id).await)),
                }
            });
            ctx.spawn(work.into_actor(self).map(|(), actor, ctx| {
                actor.in_flight -= 1;
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
    pub fn start(adapter: Arc<dyn Provider>, max_concurrency: usize) -> Self {
        let actor = ProviderActor {
            adapter: adapter.clone(),
            max_in_flight: max_concurrency.max(1),
            in_flight: 0,
            queue: VecDeque::new(),
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
        let handle = ProviderHandle::start(slow.clone(), 3);
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
