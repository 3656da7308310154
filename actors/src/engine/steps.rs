//! One workflow's next steps. `advance` runs steps until the workflow is terminal or must wait
//! (for a callback, a retry time or a deadline); every step reads the row, does at most one
//! external effect, and persists the outcome as a transition or a rescheduled attempt. A crash
//! anywhere leaves a row that the next `advance` continues from.
use std::time::Duration;

use atelier_entities::workflow::{self, WorkflowState};
use chrono::{DateTime, Utc};
use sea_orm::DbErr;
use uuid::Uuid;

use super::Turn;
use super::fetch::{self, DownloadError};
use crate::batcher::BatchError;
use crate::providers::{Provider, ProviderError, Task, TaskStatus};
use crate::storage::Created;
use crate::workflow::inputs::{InputImage, Inputs, input_key, result_key};
use crate::workflow::{Event, FailureCode, TransitionOutcome, Via, read};

/// Longest task id a provider may give us: the column's size.
pub const MAX_TASK_ID: usize = 255;

/// Longest result URL we keep.
const MAX_RESULT_URL: usize = 4096;

/// The `result_source` of a result that came inline and is already in our storage.
const INLINE_SOURCE: &str = "inline result, stored on arrival: ";

/// Why a step could not run to its end: the workflow's row is as it was, and the engine's next
/// tick tries again when it is due.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A read failed.
    #[error("reading the workflow failed: {0}")]
    Read(#[from] DbErr),
    /// The workflow writer did not write (the database failed or was busy, or the writer is
    /// stopped).
    #[error("writing the workflow failed: {0}")]
    Write(#[from] BatchError),
}

enum Step {
    /// The row changed; look again — at this row when the write returned it.
    Continue(Option<Box<workflow::Model>>),
    /// Nothing to do until `next_attempt_at`, a callback or a deadline.
    Wait,
}

/// Advances the workflow as far as it can go now.
pub async fn advance(deps: &Turn, id: Uuid) -> Result<(), StepError> {
    let mut known: Option<Box<workflow::Model>> = None;
    loop {
        let row = match known.take() {
            Some(row) => *row,
            None => match read::find(&deps.db, id).await? {
                Some(row) => row,
                None => return Ok(()),
            },
        };
        if row.state.is_terminal() || row.state == WorkflowState::Uploading {
            // Callbacks that arrive once the result is known (duplicates, late ones) change
            // nothing; marking them done keeps the engine from waking the workflow for them.
            discard_callbacks(deps, &row).await?;
        }
        if row.state.is_terminal() {
            return Ok(());
        }
        // The safe point between steps: a shard lost, being handed back, or not confirmed
        // lately is left to its next owner before anything else is asked of a provider.
        if !deps.ownership.still_holds(deps.claim) {
            tracing::info!(generation_id = %id, "the shard is no longer held here; leaving the workflow to its owner");
            return Ok(());
        }
        if let Some(hook) = &deps.step_hook {
            hook(id, row.state);
        }
        let now = deps.clock.now();
        let step = if now >= row.deadline_at {
            fail(
                deps,
                &row,
                FailureCode::Timeout,
                "no result within the overall deadline",
            )
            .await?
        } else {
            bounded_step(deps, &row, now).await?
        };
        match step {
            // The process is stopping: this step is done, the next is for the next process.
            Step::Continue(_) if deps.draining.load(std::sync::atomic::Ordering::SeqCst) => {
                return Ok(());
            }
            Step::Continue(next) => known = next,
            Step::Wait => return Ok(()),
        }
    }
}

/// Runs the step the row's state calls for, for no longer than the step timeout and never
/// past the workflow's next deadline: a provider or download that hangs cannot hold the
/// workflow (and its credits) beyond it. A step cut short counts as a failed attempt; at the
/// deadline, the next turn of `advance` ends the workflow.
async fn bounded_step(
    deps: &Turn,
    row: &workflow::Model,
    now: DateTime<Utc>,
) -> Result<Step, StepError> {
    let deadline = next_deadline(deps, row);
    let until_deadline = (deadline - now).to_std().unwrap_or_default();
    // A little past the deadline, so that the deadline has passed when the next turn looks.
    let limit = deps
        .config
        .step_timeout()
        .min(until_deadline + Duration::from_millis(20));
    let step = async {
        match row.state {
            WorkflowState::Reserved => submit(deps, row, now).await,
            WorkflowState::Submitted => {
                let next = now + chrono_duration(deps.config.callback_deadline());
                apply(deps, row, Event::Waiting, Some(next)).await
            }
            WorkflowState::AwaitingCallback => await_result(deps, row, now).await,
            WorkflowState::Uploading => upload(deps, row, now).await,
            WorkflowState::Settled | WorkflowState::Released => Ok(Step::Wait),
        }
    };
    let started = std::time::Instant::now();
    let outcome = tokio::time::timeout(limit, step).await;
    crate::metrics::step(row.state, started.elapsed());
    match outcome {
        Ok(step) => step,
        Err(_) if limit < deps.config.step_timeout() => {
            tracing::warn!(generation_id = %row.id, state = row.state.as_str(), "step cut short at the workflow's deadline");
            Ok(Step::Continue(None))
        }
        Err(_) => {
            let error = format!("the step took longer than {:?}", deps.config.step_timeout());
            tracing::warn!(generation_id = %row.id, state = row.state.as_str(), %error, "step timed out");
            let code = match row.state {
                WorkflowState::Uploading => FailureCode::UploadFailed,
                _ => FailureCode::ProviderFailed,
            };
            retry_later(deps, row, code, &error, None).await
        }
    }
}

/// The earliest deadline that ends the workflow's current state: the overall one, and while
/// no provider has accepted the task, the submit deadline.
fn next_deadline(deps: &Turn, row: &workflow::Model) -> DateTime<Utc> {
    let mut deadline = row.deadline_at;
    if row.state == WorkflowState::Reserved {
        deadline = deadline.min(row.created_at + chrono_duration(deps.config.submit_deadline()));
    }
    deadline
}

fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

async fn apply(
    deps: &Turn,
    row: &workflow::Model,
    event: Event,
    next_attempt_at: Option<DateTime<Utc>>,
) -> Result<Step, StepError> {
    apply_consuming(deps, row, event, next_attempt_at, Vec::new()).await
}

/// As `apply`, marking the callbacks `consumes` names processed with the transition.
async fn apply_consuming(
    deps: &Turn,
    row: &workflow::Model,
    event: Event,
    next_attempt_at: Option<DateTime<Utc>>,
    consumes: Vec<i64>,
) -> Result<Step, StepError> {
    let outcome = deps
        .workflows
        .transition_consuming(
            row.id,
            Some(row.version),
            event.clone(),
            next_attempt_at,
            consumes,
        )
        .await?;
    if let TransitionOutcome::Applied(applied) = &outcome {
        tracing::info!(
            generation_id = %row.id,
            from = row.state.as_str(),
            to = applied.state.as_str(),
            reason = %event.reason(),
            "generation moved"
        );
    }
    Ok(moved_on(outcome))
}

/// Applied or not (another writer won), the row has moved on; both answers carry it.
fn moved_on(outcome: TransitionOutcome) -> Step {
    Step::Continue(match outcome {
        TransitionOutcome::Applied(row) | TransitionOutcome::Stale(row) => Some(Box::new(row)),
        TransitionOutcome::NotFound => None,
    })
}

async fn fail(
    deps: &Turn,
    row: &workflow::Model,
    code: FailureCode,
    message: impl Into<String>,
) -> Result<Step, StepError> {
    fail_consuming(deps, row, code, message.into(), Vec::new()).await
}

/// As `fail`, marking the callbacks that reported the failure processed with it.
async fn fail_consuming(
    deps: &Turn,
    row: &workflow::Model,
    code: FailureCode,
    message: String,
    consumes: Vec<i64>,
) -> Result<Step, StepError> {
    tracing::warn!(generation_id = %row.id, code = code.as_str(), %message, "generation failed; releasing its credits");
    let event = Event::Failed { code, message };
    let step = apply_consuming(deps, row, event, None, consumes).await?;
    // A task we gave up on may still be running at the provider: ask it to stop (best effort;
    // the credits are back either way).
    if code == FailureCode::Timeout
        && let (Some(task_id), Some(provider)) = (&row.provider_task_id, provider(deps, row))
        && let Err(error) = provider.cancel(task_id).await
    {
        tracing::info!(generation_id = %row.id, %error, "could not cancel the timed-out task at the provider");
    }
    Ok(step)
}

/// Records a failed attempt: retried later with backoff, or released after
/// `workflow.max_attempts`.
async fn retry_later(
    deps: &Turn,
    row: &workflow::Model,
    code: FailureCode,
    error: &str,
    at_least: Option<Duration>,
) -> Result<Step, StepError> {
    let attempt = row.attempt + 1;
    if deps.config.out_of_attempts(attempt) {
        return fail(
            deps,
            row,
            code,
            format!("gave up after {attempt} attempts: {error}"),
        )
        .await;
    }
    schedule_attempt(deps, row, error, at_least).await
}

/// Looks again after the next backoff delay (at least `at_least`), with no cap on attempts:
/// only the overall deadline ends the waiting.
async fn schedule_attempt(
    deps: &Turn,
    row: &workflow::Model,
    reason: &str,
    at_least: Option<Duration>,
) -> Result<Step, StepError> {
    let delay = deps
        .config
        .retry_delay(row.attempt)
        .max(at_least.unwrap_or_default());
    let next = deps.clock.now() + chrono_duration(delay);
    reschedule_at(deps, row, reason, next).await
}

/// Counts the failed attempt and looks again at `next`, never past a deadline that would end
/// the wait anyway: the deadline decides, on time.
async fn reschedule_at(
    deps: &Turn,
    row: &workflow::Model,
    reason: &str,
    next: DateTime<Utc>,
) -> Result<Step, StepError> {
    let attempt = row.attempt + 1;
    tracing::info!(generation_id = %row.id, state = row.state.as_str(), attempt, %next, %reason, "will look again");
    let next = next.min(next_deadline(deps, row));
    deps.workflows
        .reschedule(row.id, row.version, attempt, next)
        .await?;
    Ok(Step::Wait)
}

fn not_yet(row: &workflow::Model, now: DateTime<Utc>) -> bool {
    row.next_attempt_at.is_some_and(|at| at > now)
}

fn provider<'a>(deps: &'a Turn, row: &workflow::Model) -> Option<&'a dyn Provider> {
    deps.providers
        .get(&row.provider)
        .map(|provider| provider.as_ref())
}

/// `reserved`: hands the task to the provider. Past the submit deadline it releases with
/// `provider_failed`; an unconfigured provider is `provider_rejected`, unreadable inputs
/// `input_unavailable`. The provider gets our signed URLs (URL inputs copied into our storage
/// first) and a webhook URL carrying the generation's callback token.
async fn submit(deps: &Turn, row: &workflow::Model, now: DateTime<Utc>) -> Result<Step, StepError> {
    if not_yet(row, now) {
        return Ok(Step::Wait);
    }
    if now >= row.created_at + chrono_duration(deps.config.submit_deadline()) {
        return fail(
            deps,
            row,
            FailureCode::ProviderFailed,
            "the provider did not accept the task in time",
        )
        .await;
    }
    let Some(provider) = provider(deps, row) else {
        return fail(
            deps,
            row,
            FailureCode::ProviderRejected,
            format!("provider {} is not configured", row.provider),
        )
        .await;
    };
    if deps.pauses.is_paused(&row.provider) {
        return paused(deps, row, now).await;
    }
    let Ok(inputs) = Inputs::from_json(&row.inputs) else {
        return fail(
            deps,
            row,
            FailureCode::InputUnavailable,
            "the stored inputs are unreadable",
        )
        .await;
    };
    let (person_image_url, garment_image_url) = match input_urls(deps, row, &inputs).await? {
        Ok(urls) => urls,
        Err(step) => return Ok(step),
    };
    let task = Task {
        generation_id: row.id,
        person_image_url,
        garment_image_url,
        prompt: inputs.prompt.clone(),
        aspect_ratio: inputs.aspect_ratio.clone(),
        webhook_url: format!(
            "{}/webhooks/{}/{}?token={}",
            deps.public_url.trim_end_matches('/'),
            row.provider,
            row.id,
            row.callback_token
        ),
    };
    match provider.submit(&task).await {
        Ok(task_id) => accepted(deps, row, provider, task_id, now).await,
        Err(error) => submit_failed(deps, row, error, now).await,
    }
}

/// Our signed URLs for the person and garment images (providers never get the client's),
/// copying URL inputs into our storage first; or, when a copy fails, the step that follows.
async fn input_urls(
    deps: &Turn,
    row: &workflow::Model,
    inputs: &Inputs,
) -> Result<Result<(String, String), Step>, StepError> {
    let now = deps.clock.now();
    let mut urls = Vec::with_capacity(2);
    for (field, image) in [
        ("person_image", &inputs.person_image),
        ("garment_image", &inputs.garment_image),
    ] {
        let key = match image {
            InputImage::Stored(key) => key.clone(),
            InputImage::Url(url) => match copy_input(deps, row, field, url).await {
                Ok(key) => key,
                Err(DownloadError::Refused(code, message)) => {
                    return fail(deps, row, code, format!("{field}: {message}"))
                        .await
                        .map(Err);
                }
                Err(DownloadError::Transient(error)) => {
                    let error = format!("{field}: {error}");
                    let step = retry_later(deps, row, FailureCode::InputUnavailable, &error, None);
                    return step.await.map(Err);
                }
            },
        };
        match deps.links.url(&key).await {
            Ok(url) => urls.push(url),
            Err(error) => {
                let error = format!("cannot link {field}: {error}");
                return storage_down(deps, row, FailureCode::InputUnavailable, &error, now)
                    .await
                    .map(Err);
            }
        }
    }
    let garment = urls.pop().expect("two inputs");
    let person = urls.pop().expect("two inputs");
    Ok(Ok((person, garment)))
}

/// The provider accepted the task as `task_id`: record it and start waiting, in one
/// transaction — unless the id is unusable.
async fn accepted(
    deps: &Turn,
    row: &workflow::Model,
    provider: &dyn Provider,
    task_id: String,
    now: DateTime<Utc>,
) -> Result<Step, StepError> {
    if task_id.len() > MAX_TASK_ID || task_id.is_empty() {
        // Stored, it would fail every write of this workflow (and resubmit a paid task on
        // every retry): the provider's answer is unusable.
        let message = format!("the provider answered a task id of {} bytes", task_id.len());
        let step = fail(deps, row, FailureCode::ProviderRejected, message).await;
        if !task_id.is_empty()
            && let Err(error) = provider.cancel(&task_id).await
        {
            tracing::info!(generation_id = %row.id, %error, "could not cancel the unusable task");
        }
        return step;
    }
    // Accepted, then waiting: sent together so that they share a transaction.
    let waiting_until = now + chrono_duration(deps.config.callback_deadline());
    let accepted = apply(deps, row, Event::Accepted { task_id }, Some(now));
    let waiting = deps.workflows.transition(
        row.id,
        Some(row.version + 1),
        Event::Waiting,
        Some(waiting_until),
    );
    let (accepted, waiting) = futures::join!(accepted, waiting);
    accepted?;
    Ok(moved_on(waiting?))
}

/// No provider has the task yet: fail over along the chain when another provider can take
/// it, else wait for this one (an open circuit is recorded in the timeline).
async fn submit_failed(
    deps: &Turn,
    row: &workflow::Model,
    error: ProviderError,
    now: DateTime<Utc>,
) -> Result<Step, StepError> {
    let name = &row.provider;
    let why = match &error {
        ProviderError::Permanent(_) => {
            return provider_error(deps, row, error).await;
        }
        ProviderError::Retryable(detail) => format!("{name} failed: {detail}"),
        ProviderError::RateLimited { .. } => format!("{name} throttles us"),
        ProviderError::CircuitOpen { .. } => format!("{name}'s circuit is open"),
        ProviderError::Account(detail) => format!("{name} refuses our account: {detail}"),
    };
    let attempt = row.attempt + 1;
    if deps.config.out_of_attempts(attempt) {
        let message = format!("gave up after {attempt} attempts: {why}");
        return fail(deps, row, FailureCode::ProviderFailed, message).await;
    }
    let submit_by = row.created_at + chrono_duration(deps.config.submit_deadline());
    if let Some((to, price)) = failover_target(deps, row) {
        // Straight on to the next provider while the chain has untried ones; once round,
        // back off as a retry would.
        let delay = if (attempt as usize) < deps.chain.len() {
            Duration::ZERO
        } else {
            deps.config.retry_delay(row.attempt)
        };
        let next = (now + chrono_duration(delay)).min(submit_by);
        tracing::warn!(generation_id = %row.id, from = %name, %to, %why, "failing over");
        let event = Event::FailedOver {
            to,
            charge: price,
            why,
        };
        return apply(deps, row, event, Some(next)).await;
    }
    match error {
        ProviderError::CircuitOpen { retry_after } => {
            let next = (now
                + chrono_duration(retry_after.max(deps.config.retry_delay(row.attempt))))
            .min(submit_by);
            apply(deps, row, Event::Deferred { why }, Some(next)).await
        }
        other => provider_error(deps, row, other).await,
    }
}

/// Longest a workflow waiting for a paused provider goes without looking again: a resume
/// takes effect within it.
const PAUSE_RECHECK: Duration = Duration::from_secs(5);

/// `reserved` on a provider an operator paused: on to the next provider of the chain that
/// can take the task, else wait for a resume (or a provider to fail over to) until the
/// submit deadline. Either way the timeline says why; the operator's own reason stays in
/// the audit log, out of the client's timeline.
async fn paused(deps: &Turn, row: &workflow::Model, now: DateTime<Utc>) -> Result<Step, StepError> {
    let why = format!("{} paused by an operator", row.provider);
    if let Some((to, price)) = failover_target(deps, row) {
        tracing::info!(generation_id = %row.id, from = %row.provider, %to, "provider paused: failing over");
        let event = Event::FailedOver {
            to,
            charge: price,
            why,
        };
        return apply(deps, row, event, Some(now)).await;
    }
    let submit_by = row.created_at + chrono_duration(deps.config.submit_deadline());
    let wait = deps.config.retry_delay(row.attempt).min(PAUSE_RECHECK);
    let next = (now + chrono_duration(wait)).min(submit_by);
    let why = format!("{why}; waiting for a resume or another provider");
    let last = read::last_event(&deps.db, row.id).await?;
    if last.is_some_and(|event| event.reason == why) {
        // Already waiting, and said so: look again later without another timeline entry or
        // attempt, so that the wait neither floods the timeline nor uses up the attempts
        // the provider gets once resumed.
        deps.workflows
            .reschedule(row.id, row.version, row.attempt, next)
            .await?;
        return Ok(Step::Wait);
    }
    apply(deps, row, Event::Deferred { why }, Some(next)).await
}

/// The provider after this workflow's in `providers.chain` (round the end) that is
/// configured, not paused, and that the hold covers, with its price.
fn failover_target(deps: &Turn, row: &workflow::Model) -> Option<(String, i64)> {
    let chain = &deps.chain;
    let at = chain.iter().position(|name| *name == row.provider)?;
    chain
        .iter()
        .cycle()
        .skip(at + 1)
        .take(chain.len() - 1)
        .filter(|name| **name != row.provider && deps.providers.contains_key(*name))
        .filter(|name| !deps.pauses.is_paused(name))
        .find_map(|name| {
            let price = *deps.prices.get(name)?;
            (price <= row.cost).then(|| (name.clone(), price))
        })
}

/// A submission that failed with nowhere to fail over to: retried later, or released when
/// the provider rejects the task itself.
async fn provider_error(
    deps: &Turn,
    row: &workflow::Model,
    error: ProviderError,
) -> Result<Step, StepError> {
    match error {
        ProviderError::Retryable(detail) => {
            retry_later(deps, row, FailureCode::ProviderFailed, &detail, None).await
        }
        ProviderError::RateLimited { retry_after } => {
            retry_later(
                deps,
                row,
                FailureCode::ProviderFailed,
                "rate limited",
                retry_after,
            )
            .await
        }
        ProviderError::CircuitOpen { retry_after } => {
            retry_later(
                deps,
                row,
                FailureCode::ProviderFailed,
                "the provider's circuit is open",
                Some(retry_after),
            )
            .await
        }
        ProviderError::Account(detail) => {
            retry_later(
                deps,
                row,
                FailureCode::ProviderFailed,
                &detail,
                Some(Duration::from_secs(30)),
            )
            .await
        }
        ProviderError::Permanent(detail) => {
            fail(deps, row, FailureCode::ProviderRejected, detail).await
        }
    }
}

/// `awaiting_callback`: acts on the first stored callback that decides, oldest first
/// (consuming every callback read in the same transaction), unless the provider's callbacks
/// need confirming — unsigned ones are asked about at once instead of believed; from the
/// callback deadline on (or to confirm) it polls, with backoff and no cap on attempts, until
/// the overall deadline ends the wait.
async fn await_result(
    deps: &Turn,
    row: &workflow::Model,
    now: DateTime<Utc>,
) -> Result<Step, StepError> {
    let Some(provider) = provider(deps, row) else {
        return fail(
            deps,
            row,
            FailureCode::ProviderFailed,
            format!("provider {} is not configured", row.provider),
        )
        .await;
    };
    let callbacks = read_callbacks(deps, row, provider).await?;
    let confirm = callbacks.decisive.is_some() && provider.confirms_callbacks();
    match callbacks.decisive {
        // The callbacks go with the transition they decide, in one transaction: a crash
        // can lose neither without the other.
        Some(status) if !confirm => {
            return act_on(deps, row, status, Via::Callback, callbacks.seen).await;
        }
        _ if !callbacks.seen.is_empty() => mark_processed(deps, callbacks.seen).await?,
        _ => {}
    }
    if !confirm && not_yet(row, now) {
        return Ok(Step::Wait);
    }
    let task_id = row.provider_task_id.clone().unwrap_or_default();
    match provider.poll(&task_id).await {
        // A slow task is not a failing one, and a provider that cannot answer now may still
        // call back: poll with backoff until the overall deadline, which ends the wait.
        Ok(TaskStatus::Pending) => schedule_attempt(deps, row, "still pending", None).await,
        Ok(status) => act_on(deps, row, status, Via::Poll, Vec::new()).await,
        Err(ProviderError::Permanent(detail)) => {
            fail(deps, row, FailureCode::ProviderFailed, detail).await
        }
        Err(error) => {
            let at_least = match &error {
                ProviderError::RateLimited { retry_after } => *retry_after,
                ProviderError::CircuitOpen { retry_after } => Some(*retry_after),
                _ => None,
            };
            schedule_attempt(deps, row, &format!("poll failed: {error}"), at_least).await
        }
    }
}

/// The workflow's unprocessed callbacks: every one read (`seen`), and the first that says the
/// task ended (`decisive`). Callbacks from another provider than the workflow's (one it
/// failed over from) or about another task are read and ignored: they decide nothing.
struct Callbacks {
    seen: Vec<i64>,
    decisive: Option<TaskStatus>,
}

async fn read_callbacks(
    deps: &Turn,
    row: &workflow::Model,
    provider: &dyn Provider,
) -> Result<Callbacks, StepError> {
    let mut callbacks = Callbacks {
        seen: Vec::new(),
        decisive: None,
    };
    for callback in read::pending_callbacks(&deps.db, row.id).await? {
        callbacks.seen.push(callback.id);
        if callback.provider != row.provider {
            tracing::info!(generation_id = %row.id, from = %callback.provider, provider = %row.provider, "ignoring a callback from a provider this generation left");
            continue;
        }
        match provider.parse_callback(callback.payload.as_bytes()) {
            Ok((task_id, _))
                if row
                    .provider_task_id
                    .as_deref()
                    .is_some_and(|ours| ours != task_id) =>
            {
                tracing::info!(generation_id = %row.id, %task_id, "ignoring a callback about another task");
            }
            Ok((_, TaskStatus::Pending)) => {}
            Ok((_, status)) => {
                callbacks.decisive.get_or_insert(status);
            }
            Err(error) => {
                tracing::warn!(generation_id = %row.id, %error, "ignoring an unreadable callback");
            }
        }
    }
    Ok(callbacks)
}

/// Acts on a task's end, consuming the callbacks (`consumes`) that reported it.
async fn act_on(
    deps: &Turn,
    row: &workflow::Model,
    status: TaskStatus,
    via: Via,
    consumes: Vec<i64>,
) -> Result<Step, StepError> {
    let (code, message) = match status {
        TaskStatus::Pending => return Ok(Step::Wait),
        TaskStatus::Succeeded { output_url, charge } => {
            match result_source(deps, row, output_url).await {
                Ok(source) => {
                    let event = Event::ResultReady {
                        source,
                        charge,
                        via,
                    };
                    let next = Some(deps.clock.now());
                    return apply_consuming(deps, row, event, next, consumes).await;
                }
                Err(DownloadError::Refused(code, message)) => (code, message),
                Err(DownloadError::Transient(error)) => {
                    return retry_later(deps, row, FailureCode::UploadFailed, &error, None).await;
                }
            }
        }
        TaskStatus::Failed { message } => (FailureCode::ProviderFailed, message),
    };
    fail_consuming(deps, row, code, message, consumes).await
}

/// Where the upload step will find the result. A URL is kept (bounded in length); a result
/// inlined as a `data:` URI (Cog without an upload URL, up to the callback limit) is decoded
/// and stored now, under the result's key, so that megabytes never sit in the workflow row.
async fn result_source(
    deps: &Turn,
    row: &workflow::Model,
    output: String,
) -> Result<String, DownloadError> {
    if !output.starts_with("data:") {
        if output.len() > MAX_RESULT_URL {
            return Err(DownloadError::Refused(
                FailureCode::InvalidResult,
                format!("the result URL is longer than {MAX_RESULT_URL} bytes"),
            ));
        }
        return Ok(output);
    }
    let key = result_key(row.id);
    let invalid = FailureCode::InvalidResult;
    let limit = deps.config.max_result_bytes;
    let timeout = deps.config.download_timeout();
    let bytes = fetch::download(
        &deps.fetch.results,
        &output,
        limit,
        timeout,
        invalid,
        invalid,
    )
    .await?;
    let size = bytes.len();
    deps.storage
        .create(&key, bytes)
        .await
        .map_err(|error| DownloadError::Transient(error.to_string()))?;
    Ok(format!("{INLINE_SOURCE}{size} bytes"))
}

async fn discard_callbacks(deps: &Turn, row: &workflow::Model) -> Result<(), StepError> {
    let late: Vec<i64> = read::pending_callbacks(&deps.db, row.id)
        .await?
        .into_iter()
        .map(|callback| callback.id)
        .collect();
    if late.is_empty() {
        return Ok(());
    }
    tracing::debug!(generation_id = %row.id, count = late.len(), state = row.state.as_str(), "callbacks after the result changed nothing");
    mark_processed(deps, late).await
}

async fn mark_processed(deps: &Turn, inbox_ids: Vec<i64>) -> Result<(), StepError> {
    Ok(deps.workflows.callbacks_processed(inbox_ids).await?)
}

/// Copies the result into our storage under its deterministic key, then settles. Storage
/// that fails is waited for (`storage_down`): the workflow is never charged without the
/// object.
async fn upload(deps: &Turn, row: &workflow::Model, now: DateTime<Utc>) -> Result<Step, StepError> {
    if not_yet(row, now) {
        return Ok(Step::Wait);
    }
    let key = result_key(row.id);
    // A previous attempt may have stored it and crashed before settling.
    match deps.storage.exists(&key).await {
        Ok(true) => return settle(deps, row, key).await,
        Ok(false) => {}
        Err(error) => {
            let error = format!("cannot look for the result: {error}");
            return storage_down(deps, row, FailureCode::UploadFailed, &error, now).await;
        }
    }
    let source = row.result_source.clone().unwrap_or_default();
    if source.starts_with(INLINE_SOURCE) {
        let message = "the inline result is missing from our storage";
        return fail(deps, row, FailureCode::UploadFailed, message).await;
    }
    let config = &deps.config;
    let fetched = fetch::download(
        &deps.fetch.results,
        &source,
        config.max_result_bytes,
        config.download_timeout(),
        FailureCode::UploadFailed,
        FailureCode::InvalidResult,
    )
    .await;
    match fetched {
        Ok(bytes) => match deps.storage.create(&key, bytes).await {
            Ok(Created::New) => settle(deps, row, key).await,
            Ok(Created::AlreadyThere) => {
                // Another writer (a step that outlived its turn) stored it first; the first
                // object stands.
                tracing::info!(generation_id = %row.id, "the result was already stored; kept it");
                settle(deps, row, key).await
            }
            Err(error) => {
                let error = format!("cannot store the result: {error}");
                storage_down(deps, row, FailureCode::UploadFailed, &error, now).await
            }
        },
        Err(DownloadError::Refused(code, message)) => fail(deps, row, code, message).await,
        Err(DownloadError::Transient(error)) => {
            retry_later(deps, row, FailureCode::UploadFailed, &error, None).await
        }
    }
}

/// The result is in our storage under `key`: settle, charging what is due.
async fn settle(deps: &Turn, row: &workflow::Model, key: String) -> Result<Step, StepError> {
    let charge = row.charge_due();
    apply(deps, row, Event::Stored { key, charge }, None).await
}

/// Our own storage failed: not the provider's fault and nothing to give up on after a few
/// attempts, so the step is tried again with backoff for as long as the deadline leaves room
/// for another attempt (twice as long as this one, which began at `started`: a storage
/// client's own retries vary); once none fits, the
/// workflow is released with `code` (`upload_failed` while uploading: never charged without
/// the object).
async fn storage_down(
    deps: &Turn,
    row: &workflow::Model,
    code: FailureCode,
    error: &str,
    started: DateTime<Utc>,
) -> Result<Step, StepError> {
    let now = deps.clock.now();
    let next = now + chrono_duration(deps.config.retry_delay(row.attempt));
    if next + (now - started) * 2 >= next_deadline(deps, row) {
        let message = format!("storage stayed unavailable until the deadline: {error}");
        return fail(deps, row, code, message).await;
    }
    tracing::warn!(generation_id = %row.id, state = row.state.as_str(), %error, "storage unavailable; will try again");
    reschedule_at(deps, row, error, next).await
}

/// Copies a URL input into our storage under its deterministic key (once: a retry finds it).
async fn copy_input(
    deps: &Turn,
    row: &workflow::Model,
    field: &str,
    url: &str,
) -> Result<String, DownloadError> {
    let key = input_key(row.id, field);
    if deps.storage.exists(&key).await.unwrap_or(false) {
        return Ok(key);
    }
    let bytes = fetch::input(
        &deps.fetch.inputs,
        url,
        deps.max_input_bytes,
        deps.config.download_timeout(),
        &deps.image_limits,
    )
    .await?;
    deps.storage
        .create(&key, bytes)
        .await
        .map_err(|error| DownloadError::Transient(error.to_string()))?;
    Ok(key)
}
