//! Stopping and nudging a live generation: the one place the rules of a cancel and a wake
//! live, used by the client's cancel, the ops API's actions and the operators' bulk jobs.
use atelier_actors::engine::registry::Wake;
use atelier_actors::workflow::read as workflows;
use atelier_actors::workflow::{Event, FailureCode, TransitionOutcome, WorkflowState};
use atelier_entities::workflow;
use uuid::Uuid;

use crate::api::error::ApiError;
use crate::state::AppState;

/// What a cancel did.
#[derive(Debug)]
pub enum Canceled {
    /// Released now: its credits are back.
    Released(Box<workflow::Model>),
    /// Already released before (nothing changed).
    AlreadyReleased(Box<workflow::Model>),
    /// It settled: too late to cancel.
    Settled,
    NotFound,
}

/// Releases a live generation with `canceled` (a compare-and-set transition: of two cancels,
/// or a cancel and the engine's own step, one applies and the other finds the row moved on),
/// tells the engine to drop what it was doing and the provider to stop the task.
pub async fn cancel(state: &AppState, id: Uuid, message: &str) -> Result<Canceled, ApiError> {
    let canceled = Event::Failed {
        code: FailureCode::Canceled,
        message: message.to_owned(),
    };
    let outcome = state.workflows.transition(id, None, canceled, None).await?;
    // The owner drops what it was doing for this workflow at its next step.
    look_now(state, id);
    Ok(match outcome {
        TransitionOutcome::Applied(row) => {
            tracing::info!(generation_id = %id, "generation canceled; credits released");
            cancel_at_provider(state, &row);
            Canceled::Released(Box::new(row))
        }
        TransitionOutcome::Stale(row) if row.state == WorkflowState::Settled => Canceled::Settled,
        TransitionOutcome::Stale(row) => Canceled::AlreadyReleased(Box::new(row)),
        TransitionOutcome::NotFound => Canceled::NotFound,
    })
}

/// What a wake did.
#[derive(Debug)]
pub enum Woken {
    /// Due now; the engine (where this process runs one) was asked to step it.
    Woken(Box<workflow::Model>),
    /// Settled or released: nothing to run.
    Terminal(Box<workflow::Model>),
    NotFound,
}

/// Makes a live generation due now, skipping whatever backoff it waits out (its attempt count
/// stays), and wakes the engine for it. A row that moves on meanwhile is read again: a wake is
/// only ever a "look now", never a transition.
pub async fn wake(state: &AppState, id: Uuid) -> Result<Woken, ApiError> {
    for _ in 0..3 {
        let Some(row) = workflows::find(&state.db, id).await? else {
            return Ok(Woken::NotFound);
        };
        if row.state.is_terminal() {
            return Ok(Woken::Terminal(Box::new(row)));
        }
        let now = state.clock.now();
        if state
            .workflows
            .reschedule(id, row.version, row.attempt, now)
            .await?
        {
            look_now(state, id);
            tracing::info!(generation_id = %id, "generation woken by an operator");
            let mut row = row;
            row.next_attempt_at = Some(now);
            return Ok(Woken::Woken(Box::new(row)));
        }
    }
    Err(ApiError::conflict(
        "busy",
        "the generation kept changing; try again",
    ))
}

/// Tells the provider to stop working on a canceled generation's task, in the background: the
/// credits are already back, so its answer changes nothing but the provider's bill.
fn cancel_at_provider(state: &AppState, row: &workflow::Model) {
    let (Some(task_id), Some(provider)) = (
        row.provider_task_id.clone(),
        state.providers.get(&row.provider).cloned(),
    ) else {
        return;
    };
    let id = row.id;
    actix_web::rt::spawn(async move {
        if let Err(error) = provider.cancel(&task_id).await {
            tracing::warn!(generation_id = %id, %error, "could not cancel the task at the provider");
        }
    });
}

/// Asks the engine that holds the workflow's shard to look at it now: this process's, or
/// (PostgreSQL) whichever process holds it, through a notification sent after the write that
/// called for it committed. Without either, the owner's next tick finds the work.
pub fn look_now(state: &AppState, id: Uuid) {
    match &state.engine {
        Some(engine) if held_here(state, id) => engine.do_send(Wake(id)),
        _ => state.wakeups.wake(id),
    }
}

/// A new workflow: its owner in another process is told at once; this process's own engine
/// finds it at its next tick, with the others due then (their writes share transactions).
pub fn tell_owner_elsewhere(state: &AppState, id: Uuid) {
    if !held_here(state, id) {
        state.wakeups.wake(id);
    }
}

fn held_here(state: &AppState, id: Uuid) -> bool {
    state
        .shards
        .as_ref()
        .is_some_and(|shards| shards.ownership.claim(id).is_some())
}
