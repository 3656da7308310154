//! What the workflow writer answers, one outcome per command. A refusal (a stale version, a
//! replayed key) is an outcome, not an error: it wrote nothing.
use atelier_entities::workflow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created(workflow::Model),
    /// The same idempotency key with the same request: the workflow it created.
    Replayed(workflow::Model),
    /// The same idempotency key with a different request.
    KeyConflict,
    InsufficientCredits {
        available: i64,
        requested: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionOutcome {
    Applied(workflow::Model),
    /// Not applied: the row is at another version than expected, or the event is no
    /// transition from its state (a duplicate or late message). The row as it is.
    Stale(workflow::Model),
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    Create(CreateOutcome),
    Transition(TransitionOutcome),
    /// Whether the row was still at the expected version.
    Rescheduled(bool),
    /// Whether the callback is new (false: a replay of one already stored).
    CallbackStored(bool),
    CallbacksProcessed,
    /// Refused: the writer no longer holds the lease its command was fenced by (another
    /// process took the shard). Nothing was written.
    Fenced,
}

// One conversion per outcome type, from the writer's answer to what its command expects.
crate::outcome_conversion!(WriteOutcome, CreateOutcome, WriteOutcome::Create(outcome) => outcome);
crate::outcome_conversion!(WriteOutcome, TransitionOutcome, WriteOutcome::Transition(outcome) => outcome);

/// Whether a reschedule applied (the row was still at the expected version).
pub struct Rescheduled(pub bool);
crate::outcome_conversion!(WriteOutcome, Rescheduled, WriteOutcome::Rescheduled(done) => Rescheduled(done));

/// Whether a stored callback was new.
pub struct CallbackStored(pub bool);
crate::outcome_conversion!(WriteOutcome, CallbackStored, WriteOutcome::CallbackStored(new) => CallbackStored(new));

/// Callbacks marked processed.
pub struct CallbacksProcessed;
crate::outcome_conversion!(WriteOutcome, CallbacksProcessed, WriteOutcome::CallbacksProcessed => CallbacksProcessed);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_converts_to_its_own_kind_only() {
        assert!(matches!(
            Rescheduled::try_from(WriteOutcome::Rescheduled(true)),
            Ok(Rescheduled(true))
        ));
        let wrong = TransitionOutcome::try_from(WriteOutcome::CallbackStored(false))
            .expect_err("a stored callback is no transition");
        assert_eq!(wrong.expected, "TransitionOutcome");
        assert_eq!(wrong.got, "CallbackStored(false)");
        let error = crate::batcher::BatchError::from(wrong);
        assert_eq!(
            error.to_string(),
            "the write failed on a bug: TransitionOutcome was answered with CallbackStored(false)"
        );
    }
}
