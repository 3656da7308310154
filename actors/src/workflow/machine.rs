//! The workflow state machine of docs/design.md §1, as one table. Everything that changes a
//! workflow's state asks `next` first; a pair missing from the table is not a transition. What
//! a transition does to the row (`apply_event`) and to the ledger (`ledger_command`) is decided
//! here too, so that a transition and its effects are read together.
use atelier_entities::hold::HoldState;
use atelier_entities::workflow::Model as Row;
use atelier_entities::workflow::WorkflowState::{self, *};
use chrono::{DateTime, Utc};

use crate::ledger::Command;

/// Why a workflow ended `released`: the API's `error.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureCode {
    ProviderFailed,
    ProviderRejected,
    Timeout,
    Canceled,
    UploadFailed,
    InvalidResult,
    InputUnavailable,
}

impl FailureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::ProviderFailed => "provider_failed",
            FailureCode::ProviderRejected => "provider_rejected",
            FailureCode::Timeout => "timeout",
            FailureCode::Canceled => "canceled",
            FailureCode::UploadFailed => "upload_failed",
            FailureCode::InvalidResult => "invalid_result",
            FailureCode::InputUnavailable => "input_unavailable",
        }
    }
}

/// What happened to a workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The provider accepted the task under this id.
    Accepted { task_id: String },
    /// Submission is recorded; from now on a callback (or a poll) finishes the work.
    Waiting,
    /// Before any provider accepted the task, it moves to provider `to` (the current one
    /// failed, throttled or has its circuit open), to be charged at most `charge` there.
    FailedOver {
        to: String,
        charge: i64,
        why: String,
    },
    /// Nothing can be done before `next_attempt_at` (the provider's circuit is open and no
    /// other can take the task); recorded so that the timeline shows why it waits.
    Deferred { why: String },
    /// The provider says the result is ready at `source`; `charge` is the actual cost it
    /// reported, when it did; `via` is how we learnt it.
    ResultReady {
        source: String,
        charge: Option<i64>,
        via: Via,
    },
    /// The result is in our storage under `key`; the hold is settled for `charge` credits.
    Stored { key: String, charge: i64 },
    /// The workflow ends without a result; the hold is released.
    Failed { code: FailureCode, message: String },
}

/// How the engine learnt a task's outcome, for the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Callback,
    Poll,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Callback => "callback",
            Via::Poll => "poll",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Accepted,
    Waiting,
    FailedOver,
    Deferred,
    ResultReady,
    Stored,
    Failed,
}

impl Event {
    fn kind(&self) -> Kind {
        match self {
            Event::Accepted { .. } => Kind::Accepted,
            Event::Waiting => Kind::Waiting,
            Event::FailedOver { .. } => Kind::FailedOver,
            Event::Deferred { .. } => Kind::Deferred,
            Event::ResultReady { .. } => Kind::ResultReady,
            Event::Stored { .. } => Kind::Stored,
            Event::Failed { .. } => Kind::Failed,
        }
    }

    /// The charge a settling event names.
    fn charge(&self) -> Option<i64> {
        match self {
            Event::Stored { charge, .. } => Some(*charge),
            _ => None,
        }
    }

    /// The reason recorded in the timeline.
    pub fn reason(&self) -> String {
        match self {
            Event::Accepted { task_id } => format!("provider accepted task {task_id}"),
            Event::Waiting => "waiting for the provider's callback".into(),
            Event::FailedOver { to, why, .. } => format!("{why}; failing over to {to}"),
            Event::Deferred { why } => why.clone(),
            Event::ResultReady {
                charge: Some(charge),
                via,
                ..
            } => format!(
                "provider reported a result by {}; actual cost {charge}",
                via.as_str()
            ),
            Event::ResultReady {
                charge: None, via, ..
            } => format!("provider reported a result by {}", via.as_str()),
            Event::Stored { key, charge } => format!("result stored as {key}; charged {charge}"),
            Event::Failed { code, message } => format!("{}: {message}", code.as_str()),
        }
    }
}

/// What a transition does to the workflow's hold, in the transition's own transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HoldEffect {
    Keep,
    /// Charge what the event says and return the rest.
    Settle,
    /// Return everything.
    Release,
}

use HoldEffect::{Keep, Release, Settle};

/// (from, event, to, effect on the hold): each transition and its credit effect on one line.
/// A callback may overtake the bookkeeping of the submission, so a result can arrive in
/// `submitted` as well as in `awaiting_callback`.
const TRANSITIONS: &[(WorkflowState, Kind, WorkflowState, HoldEffect)] = &[
    (Reserved, Kind::Accepted, Submitted, Keep),
    (Reserved, Kind::FailedOver, Reserved, Keep),
    (Reserved, Kind::Deferred, Reserved, Keep),
    (Submitted, Kind::Waiting, AwaitingCallback, Keep),
    (Submitted, Kind::ResultReady, Uploading, Keep),
    (AwaitingCallback, Kind::ResultReady, Uploading, Keep),
    (Uploading, Kind::Stored, Settled, Settle),
    (Reserved, Kind::Failed, Released, Release),
    (Submitted, Kind::Failed, Released, Release),
    (AwaitingCallback, Kind::Failed, Released, Release),
    (Uploading, Kind::Failed, Released, Release),
];

fn transition(from: WorkflowState, event: &Event) -> Option<(WorkflowState, HoldEffect)> {
    let kind = event.kind();
    TRANSITIONS
        .iter()
        .find(|(source, trigger, _, _)| *source == from && *trigger == kind)
        .map(|(_, _, to, effect)| (*to, *effect))
}

/// The state `event` leads to from `from`, or `None` when it is not a transition (including
/// every event in a terminal state).
pub fn next(from: WorkflowState, event: &Event) -> Option<WorkflowState> {
    transition(from, event).map(|(to, _)| to)
}

/// The states a workflow still has work in.
pub const LIVE: [WorkflowState; 4] = [Reserved, Submitted, AwaitingCallback, Uploading];

/// The state of its hold that a workflow's state implies (what `verify` checks).
pub fn hold_state(state: WorkflowState) -> HoldState {
    match state {
        Settled => HoldState::Settled,
        Released => HoldState::Released,
        Reserved | Submitted | AwaitingCallback | Uploading => HoldState::Open,
    }
}

/// The credit effect of moving `row` (still in the state it moves from) by `event`, as the
/// table says: a terminal transition settles or releases the workflow's hold. Settling
/// charges the event's charge (only `Stored` settles); no transition, no command.
pub fn ledger_command(event: &Event, row: &Row) -> Option<Command> {
    let (_, effect) = transition(row.state, event)?;
    match effect {
        Keep => None,
        Settle => Some(Command::Settle {
            hold_id: row.hold_id,
            amount: event.charge().unwrap_or_else(|| row.charge_due()),
        }),
        Release => Some(Command::Release {
            hold_id: row.hold_id,
        }),
    }
}

/// Moves the in-memory row to `to` as `event` says (`to` is what `next` answered).
pub fn apply_event(
    row: &mut Row,
    to: WorkflowState,
    event: &Event,
    next_attempt_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) {
    let attempted = row.attempt + 1;
    row.state = to;
    row.version += 1;
    row.attempt = 0;
    row.next_attempt_at = if to.is_terminal() {
        None
    } else {
        next_attempt_at
    };
    row.updated_at = now;
    match event {
        Event::Accepted { task_id } => row.provider_task_id = Some(task_id.clone()),
        Event::Waiting => {}
        // Staying in the state, these count as attempts: failing over does not start afresh.
        Event::FailedOver { to, charge, .. } => {
            row.provider = to.clone();
            row.charge = Some(*charge).filter(|charge| *charge < row.cost);
            row.attempt = attempted;
        }
        Event::Deferred { .. } => row.attempt = attempted,
        Event::ResultReady { source, charge, .. } => {
            row.result_source = Some(source.clone());
            if let Some(reported) = charge {
                row.charge = Some((*reported).clamp(0, row.charge_due())).filter(|c| *c < row.cost);
            }
        }
        Event::Stored { key, .. } => row.result_key = Some(key.clone()),
        Event::Failed { code, message } => {
            row.error_code = Some(code.as_str().to_owned());
            row.error_message = Some(message.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Event {
        Event::Failed {
            code: FailureCode::Canceled,
            message: "test".into(),
        }
    }

    #[test]
    fn the_happy_path_walks_to_settled() {
        let path = [
            Event::Accepted {
                task_id: "t".into(),
            },
            Event::Waiting,
            Event::ResultReady {
                source: "s".into(),
                charge: None,
                via: Via::Callback,
            },
            Event::Stored {
                key: "k".into(),
                charge: 1,
            },
        ];
        let mut state = Reserved;
        for event in &path {
            state = next(state, event).expect("a transition");
        }
        assert_eq!(state, Settled);
    }

    #[test]
    fn every_non_terminal_state_can_be_released_and_terminal_states_are_final() {
        for state in WorkflowState::ALL {
            let after = next(state, &failed());
            if state.is_terminal() {
                assert_eq!(after, None, "{state:?}");
                for event in [Event::Waiting, failed()] {
                    assert_eq!(next(state, &event), None);
                }
            } else {
                assert_eq!(after, Some(Released), "{state:?}");
            }
        }
    }

    /// The hold a transition leaves is the one its target state implies (what `verify`
    /// checks), and only terminal states resolve it.
    #[test]
    fn each_transitions_hold_effect_matches_the_state_it_leads_to() {
        for (from, _, to, effect) in TRANSITIONS {
            let expected = match effect {
                Keep => HoldState::Open,
                Settle => HoldState::Settled,
                Release => HoldState::Released,
            };
            assert_eq!(hold_state(*to), expected, "{from:?} -> {to:?}");
            assert_eq!(to.is_terminal(), *effect != Keep, "{from:?} -> {to:?}");
            assert!(LIVE.contains(from), "{from:?} is a source, so it is live");
        }
    }

    #[test]
    fn a_settle_charges_the_stored_events_charge_and_a_failure_releases() {
        let row = Row {
            id: uuid::Uuid::nil(),
            account_id: uuid::Uuid::nil(),
            state: Uploading,
            version: 3,
            provider: "simulator".into(),
            cost: 5,
            charge: None,
            hold_id: uuid::Uuid::from_u128(7),
            inputs: String::new(),
            callback_token: String::new(),
            provider_task_id: None,
            result_source: None,
            result_key: None,
            attempt: 0,
            next_attempt_at: None,
            deadline_at: DateTime::<Utc>::MIN_UTC,
            error_code: None,
            error_message: None,
            created_at: DateTime::<Utc>::MIN_UTC,
            updated_at: DateTime::<Utc>::MIN_UTC,
            retry_of: None,
            shard: 0,
            pruned_at: None,
            result_expired_at: None,
        };
        let stored = Event::Stored {
            key: "k".into(),
            charge: 3,
        };
        assert_eq!(
            ledger_command(&stored, &row),
            Some(Command::Settle {
                hold_id: row.hold_id,
                amount: 3
            })
        );
        assert_eq!(
            ledger_command(&failed(), &row),
            Some(Command::Release {
                hold_id: row.hold_id
            })
        );
        let reserved = Row {
            state: Reserved,
            ..row
        };
        assert_eq!(ledger_command(&stored, &reserved), None, "no transition");
        assert_eq!(ledger_command(&Event::Waiting, &reserved), None);
    }

    #[test]
    fn events_out_of_order_are_not_transitions() {
        let stored = Event::Stored {
            key: "k".into(),
            charge: 1,
        };
        assert_eq!(next(Reserved, &stored), None);
        assert_eq!(next(AwaitingCallback, &stored), None);
        assert_eq!(
            next(
                Reserved,
                &Event::ResultReady {
                    source: "s".into(),
                    charge: None,
                    via: Via::Poll,
                }
            ),
            None
        );
        assert_eq!(
            next(
                Submitted,
                &Event::Accepted {
                    task_id: "t".into()
                }
            ),
            None
        );
    }
}
