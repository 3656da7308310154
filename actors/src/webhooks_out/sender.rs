//! Sends completion webhooks: every `poll_interval_ms` it claims the due deliveries from the
//! outbox and POSTs each, signed per Standard Webhooks (`webhook-id` stable across retries,
//! `webhook-timestamp` of the attempt, `webhook-signature` = `v1,` + base64 HMAC-SHA256 of
//! `id.timestamp.body` under the endpoint's `whsec_` secret, computed by the same code that
//! checks providers' signatures). Through the outgoing-fetch policy (public addresses only
//! unless allowed, checked when connecting; no redirect followed), with a timeout on every
//! call and at most `MAX_ANSWER_BYTES` of an answer read.
//!
//! A plain task on its own thread rather than an actor: nothing is sent to it, and a panic in
//! one look must not end it (actix restarts nothing), so each look runs under `catch_unwind`. Everything it knows
//! is in the rows, so a restarted process resumes where the last one stopped; an attempt cut
//! by a crash is claimed again when its lease lapses, under the same `webhook-id`.
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use sea_orm::{DatabaseConnection, DbErr};

use super::config::WebhooksConfig;
use super::outbox::{self, Attempt, Claim};
use crate::Clock;
use crate::outbound::{Fetcher, refusal};
use crate::providers::signature::Secret;

/// Most bytes of an endpoint's answer read (a snippet kept for the delivery's `last_error`).
const MAX_ANSWER_BYTES: usize = 512;

/// The running sender: dropping it stops the sender's thread (an attempt cut short is sent
/// again when its claim lapses).
pub struct SenderHandle(actix::Arbiter);

impl SenderHandle {
    /// Stops the sender's thread now (as dropping the handle does), for an owner that cannot
    /// drop it: one about to remove the database it reads.
    pub fn stop(&self) {
        self.0.stop();
    }
}

impl Drop for SenderHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Clone)]
pub struct Sender {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
    fetcher: Fetcher,
    config: WebhooksConfig,
}

impl Sender {
    pub fn new(
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
        config: WebhooksConfig,
    ) -> Result<Self, reqwest::Error> {
        let fetcher = Fetcher::without_redirects(
            config.allowed_hosts.clone(),
            Duration::from_secs(config.connect_timeout_secs),
        )?;
        Ok(Self {
            db,
            clock,
            fetcher,
            config,
        })
    }

    /// Runs `send_due` every `poll_interval_ms` on a thread of its own until the handle is
    /// dropped. Its own thread because a look holds a write transaction (on SQLite, the
    /// process's writer turn) across awaits: on a shared thread, anything else that blocked
    /// that thread would hold every writer of the process with it.
    pub fn spawn(self) -> SenderHandle {
        let arbiter = actix::Arbiter::new();
        arbiter.spawn(async move {
            let mut ticks =
                tokio::time::interval(Duration::from_millis(self.config.poll_interval_ms));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                // A full batch means more may be due: look again at once.
                while self.look().await == self.config.max_batch {}
            }
        });
        SenderHandle(arbiter)
    }

    /// One `send_due`, its failure or panic logged: how many deliveries it attempted.
    async fn look(&self) -> usize {
        match AssertUnwindSafe(self.send_due()).catch_unwind().await {
            Ok(Ok(count)) => count,
            Ok(Err(error)) => {
                tracing::warn!(%error, "webhook sending failed; will retry");
                0
            }
            Err(_) => {
                tracing::error!("webhook sender panicked; it goes on");
                0
            }
        }
    }

    /// Claims the due deliveries and makes one attempt at each; returns how many.
    pub async fn send_due(&self) -> Result<usize, DbErr> {
        let now = self.clock.now();
        let claims = outbox::claim_due(
            &self.db,
            now,
            self.config.max_batch as u64,
            self.config.claim_lease(),
        )
        .await?;
        let count = claims.len();
        let results: Vec<Result<bool, DbErr>> = futures::stream::iter(claims)
            .map(|claim| self.attempt(claim))
            .buffer_unordered(self.config.max_concurrency)
            .collect()
            .await;
        for result in results {
            result?;
        }
        Ok(count)
    }

    /// One attempt at one delivery, recorded.
    async fn attempt(&self, claim: Claim) -> Result<bool, DbErr> {
        let delivery = &claim.delivery;
        let max_age = Duration::from_secs(self.config.max_age_secs);
        let give_up_at = outbox::after(delivery.created_at, max_age);
        let attempt = if claim.endpoint.deleted_at.is_some() {
            Attempt::Abandoned {
                error: "the endpoint was deleted".into(),
            }
        } else if self.clock.now() > give_up_at {
            // Attempts that never finished (a crash each time) still end.
            Attempt::Abandoned {
                error: "not accepted within webhooks.max_age_secs".into(),
            }
        } else {
            self.post(&claim).await
        };
        match &attempt {
            Attempt::Accepted { status } => tracing::info!(
                delivery = %delivery.id, endpoint = %claim.endpoint.id, status,
                "webhook delivered"
            ),
            Attempt::Failed { error, .. } | Attempt::Abandoned { error } => tracing::warn!(
                delivery = %delivery.id, endpoint = %claim.endpoint.id,
                attempts = delivery.attempts, %error, "webhook attempt failed"
            ),
        }
        outbox::finish(
            &self.db,
            delivery,
            &attempt,
            self.clock.now(),
            self.config.retry_delay(delivery.attempts),
            give_up_at,
        )
        .await
    }

    async fn post(&self, claim: &Claim) -> Attempt {
        let failed = |status: Option<u16>, error: String| Attempt::Failed { status, error };
        let secret = match Secret::parse(&claim.endpoint.secret) {
            Ok(secret) => secret,
            // Only a damaged row gets here; the secret itself stays out of the message.
            Err(_) => return failed(None, "the endpoint's secret is unreadable".into()),
        };
        let id = outbox::webhook_id(claim.delivery.id);
        let timestamp = self.clock.now().timestamp();
        let body = claim.delivery.payload.clone();
        let signature = secret.sign(&id, timestamp, body.as_bytes());
        let request = match self.fetcher.post(&claim.endpoint.url) {
            Ok(request) => request,
            Err(refused) => return failed(None, format!("refused: {refused}")),
        };
        let sent = request
            .timeout(self.config.request_timeout())
            .header("content-type", "application/json")
            .header("user-agent", "Atelier-Webhooks/1")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                let why = match refusal(&error) {
                    Some(refused) => format!("refused: {refused}"),
                    None if error.is_timeout() => "timed out".to_owned(),
                    None => format!("could not send: {error}"),
                };
                return failed(None, why);
            }
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Accepted {
                status: status.as_u16(),
            };
        }
        let snippet = read_bounded(&mut response).await;
        failed(Some(status.as_u16()), format!("HTTP {status}: {snippet}"))
    }
}

/// The start of an answer's body, at most `MAX_ANSWER_BYTES`, as text (the request's
/// timeout bounds the wait).
async fn read_bounded(response: &mut reqwest::Response) -> String {
    let mut read = Vec::new();
    while read.len() < MAX_ANSWER_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => read.extend_from_slice(&chunk),
            _ => break,
        }
    }
    read.truncate(MAX_ANSWER_BYTES);
    String::from_utf8_lossy(&read).into_owned()
}
