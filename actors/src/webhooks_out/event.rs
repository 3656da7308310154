//! Which workflow transitions a customer hears about, and what they are told: the one place
//! that says so. A terminal state is an event (`generation.settled`, `generation.released`);
//! nothing else is. The body carries what stays true forever (ids, status, failure code,
//! credits, times) and no URL: signed result URLs expire before the last retry would be sent,
//! so a receiver fetches the generation for its `result_url`.
use atelier_entities::workflow::{Model as Workflow, WorkflowState};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Settled,
    Released,
}

impl EventType {
    pub const ALL: [EventType; 2] = [EventType::Settled, EventType::Released];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Settled => "generation.settled",
            EventType::Released => "generation.released",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|event| event.as_str() == text)
    }
}

/// The event a workflow in `row`'s state reports, if any.
pub fn event_for(row: &Workflow) -> Option<EventType> {
    match row.state {
        WorkflowState::Settled => Some(EventType::Settled),
        WorkflowState::Released => Some(EventType::Released),
        WorkflowState::Reserved
        | WorkflowState::Submitted
        | WorkflowState::AwaitingCallback
        | WorkflowState::Uploading => None,
    }
}

/// The JSON body of `event` about `row`, as it left the transition at `at` (Standard
/// Webhooks' `type` / `timestamp` / `data` shape). Field names follow the generation object of
/// the API; like the API, it names a failure by its code only: the row's message is often a
/// provider's raw answer, not ours to pass on.
pub fn payload(row: &Workflow, event: EventType, at: DateTime<Utc>) -> String {
    let error = match (row.state, &row.error_code) {
        (WorkflowState::Released, Some(code)) => json!({"code": code}),
        _ => serde_json::Value::Null,
    };
    let charged = match row.state {
        WorkflowState::Settled => row.charge_due(),
        _ => 0,
    };
    let time = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::Micros, true);
    json!({
        "type": event.as_str(),
        "timestamp": time(at),
        "data": {
            "id": row.id,
            "object": "generation",
            "state": row.state.as_str(),
            "cost": row.cost,
            "charged": charged,
            "error": error,
            "created_at": time(row.created_at),
            "completed_at": time(row.updated_at),
        }
    })
    .to_string()
}
