//! A concurrency cap in front of a provider: at most `max` calls in flight; the rest wait their
//! turn. The provider's own limits (rate limits, circuit breaking) come with the provider actor
//! of the next issue; this keeps a burst of submissions from overrunning a provider meanwhile.
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::{Provider, ProviderError, Task, TaskStatus};

pub struct Limited {
    inner: Arc<dyn Provider>,
    permits: Semaphore,
}

impl Limited {
    pub fn new(inner: Arc<dyn Provider>, max: usize) -> Self {
        Self {
            inner,
            permits: Semaphore::new(max.max(1)),
        }
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, ProviderError> {
        self.permits
            .acquire()
            .await
            .map_err(|_| ProviderError::Retryable("provider is shutting down".into()))
    }
}

#[async_trait::async_trait]
impl Provider for Limited {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn submit(&self, task: &Task) -> Result<String, ProviderError> {
        let _permit = self.permit().await?;
        self.inner.submit(task).await
    }

    fn parse_callback(&self, body: &[u8]) -> Result<(String, TaskStatus), ProviderError> {
        self.inner.parse_callback(body)
    }

    async fn poll(&self, task_id: &str) -> Result<TaskStatus, ProviderError> {
        let _permit = self.permit().await?;
        self.inner.poll(task_id).await
    }

    async fn cancel(&self, task_id: &str) -> Result<(), ProviderError> {
        let _permit = self.permit().await?;
        self.inner.cancel(task_id).await
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
            unreachable!()
        }
        async fn poll(&self, _: &str) -> Result<TaskStatus, ProviderError> {
            unreachable!()
        }
        async fn cancel(&self, _: &str) -> Result<(), ProviderError> {
            unreachable!()
        }
    }

    #[tokio::test]
    async fn no_more_than_the_cap_is_in_flight() {
        let slow = Arc::new(Slow::default());
        let limited = Limited::new(slow.clone(), 3);
        let task = Task {
            generation_id: uuid::Uuid::nil(),
            person_image_url: String::new(),
            garment_image_url: String::new(),
            prompt: None,
            aspect_ratio: None,
            webhook_url: String::new(),
        };
        let calls = (0..12).map(|_| limited.submit(&task));
        let outcomes = futures::future::join_all(calls).await;
        assert!(outcomes.iter().all(Result::is_ok));
        assert_eq!(slow.most.load(Ordering::SeqCst), 3);
    }
}
