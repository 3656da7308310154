//! `GET /v1/ops/generations/{id}`: a generation's whole story in one document — the row and
//! its retry links, the timeline with the time spent in each state, the hold with its ledger
//! entries per package, the provider callbacks in the inbox (and what became of each), and the
//! objects it reads and wrote with short-lived preview URLs.
use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use atelier_actors::ledger::read::{self as ledger, HoldStory};
use atelier_actors::workflow::WorkflowState;
use atelier_actors::workflow::inputs::{InputImage, Inputs};
use atelier_actors::workflow::read as workflows;
use atelier_entities::{webhook_inbox, workflow, workflow_event};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::generations::{OpsGeneration, find, within_timeout};
use crate::api::auth::Operator;
use crate::api::error::ApiError;
use crate::api::openapi::ErrorBody;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
struct Detail {
    generation: OpsGeneration,
    /// The newest generation an operator re-ran this one as.
    retried_as: Option<Uuid>,
    timeline: Vec<Step>,
    hold: Option<HoldView>,
    inbox: Vec<Callback>,
    objects: Objects,
}

/// One transition, and how long the generation stayed in the state it entered (up to now
/// while it still is there; `None` for a terminal state).
#[derive(Debug, Serialize, ToSchema)]
struct Step {
    from: Option<&'static str>,
    to: &'static str,
    reason: String,
    attempt: i32,
    at: DateTime<Utc>,
    seconds_in_state: Option<f64>,
}

/// Named apart from the account page's `HoldView`: the document keeps one schema per name.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = HoldStoryView)]
struct HoldView {
    id: Uuid,
    amount: i64,
    state: &'static str,
    settled_amount: i64,
    created_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    /// Per package, in the order the hold took from them.
    packages: Vec<PackageView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = HoldPackageView)]
struct PackageView {
    package_id: Uuid,
    held: i64,
    entries: Vec<EntryView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = HoldEntryView)]
struct EntryView {
    id: i64,
    kind: &'static str,
    amount: i64,
    at: DateTime<Utc>,
}

/// A stored provider callback: `pending` until the engine deals with it, then `applied` (a
/// transition consumed it) or `ignored`, with `why`.
#[derive(Debug, Serialize, ToSchema)]
struct Callback {
    id: i64,
    provider: String,
    received_at: DateTime<Utc>,
    processed_at: Option<DateTime<Utc>>,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    why: Option<&'static str>,
    payload_bytes: usize,
}

#[derive(Debug, Serialize, ToSchema)]
struct Objects {
    inputs: Vec<InputObject>,
    result: Option<StoredObject>,
    /// How long each preview URL lives (`workflow.url_ttl_secs`; public S3 links do not
    /// expire).
    preview_ttl_secs: u64,
}

#[derive(Debug, Serialize, ToSchema)]
struct InputObject {
    field: &'static str,
    #[serde(flatten)]
    object: InputSource,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "source", rename_all = "snake_case")]
enum InputSource {
    Stored { key: String, preview_url: String },
    Url { url: String },
}

#[derive(Debug, Serialize, ToSchema)]
struct StoredObject {
    key: String,
    preview_url: String,
}

#[utoipa::path(
    get, path = "/v1/ops/generations/{id}", tag = "ops",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "The generation's id")),
    responses(
        (status = 200, description = "The generation's whole story: the row, its timeline, hold, provider callbacks and objects", body = Detail),
        (status = 404, description = "`generation_not_found`", body = ErrorBody),
        (status = 503, description = "`query_timeout`: the read took longer than 5 s", body = ErrorBody)
    )
)]
pub async fn get(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let detail = within_timeout(async {
        let row = find(&state, &path).await?;
        let events = workflows::events(&state.db, row.id).await?;
        let callbacks = workflows::callbacks_of(&state.db, &[row.id]).await?;
        let hold = ledger::hold_story(&state.db, row.hold_id).await?;
        let retried_as = workflows::retried_as(&state.db, row.id).await?;
        let objects = objects(&state, &row).await?;
        Ok(Detail {
            timeline: timeline(&events, state.clock.now()),
            inbox: callbacks.iter().map(|one| callback(one, &events)).collect(),
            hold: hold.map(hold_view),
            generation: row.into(),
            retried_as,
            objects,
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(detail))
}

fn timeline(events: &[workflow_event::Model], now: DateTime<Utc>) -> Vec<Step> {
    events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let left = match events.get(index + 1) {
                Some(next) => Some(next.at),
                None => (!event.to_state.is_terminal()).then_some(now),
            };
            Step {
                from: event.from_state.map(WorkflowState::as_str),
                to: event.to_state.as_str(),
                reason: event.reason.clone(),
                attempt: event.attempt,
                at: event.at,
                seconds_in_state: left
                    .map(|left| (left - event.at).num_milliseconds().max(0) as f64 / 1000.0),
            }
        })
        .collect()
}

/// What became of a callback. A transition that acts on callbacks marks them processed in its
/// own transaction, at its own instant: a callback processed when a transition happened was
/// consumed by it. The engine marks the others processed without a transition for one of two
/// reasons, told apart by the state the generation was in then.
fn callback(row: &webhook_inbox::Model, events: &[workflow_event::Model]) -> Callback {
    let (outcome, why) = match row.processed_at {
        None => ("pending", None),
        Some(at) if events.iter().any(|event| event.at == at) => ("applied", None),
        Some(at) => {
            let state_then = events
                .iter()
                .rev()
                .find(|event| event.at <= at)
                .map(|event| event.to_state);
            let why = match state_then {
                Some(WorkflowState::AwaitingCallback) | Some(WorkflowState::Submitted) => {
                    "it decided nothing (the task still running), or the provider's callbacks \
                     are confirmed by a poll, which decided instead"
                }
                _ => "it came after the result was known (a duplicate or a late callback)",
            };
            ("ignored", Some(why))
        }
    };
    Callback {
        id: row.id,
        provider: row.provider.clone(),
        received_at: row.received_at,
        processed_at: row.processed_at,
        outcome,
        why,
        payload_bytes: row.payload.len(),
    }
}

fn hold_view(story: HoldStory) -> HoldView {
    let mut packages: Vec<PackageView> = story
        .allocations
        .iter()
        .map(|allocation| PackageView {
            package_id: allocation.package_id,
            held: allocation.amount,
            entries: Vec::new(),
        })
        .collect();
    let mut others: BTreeMap<Uuid, Vec<EntryView>> = BTreeMap::new();
    for entry in story.entries {
        let view = EntryView {
            id: entry.id,
            kind: entry.kind.as_str(),
            amount: entry.amount,
            at: entry.created_at,
        };
        match packages
            .iter_mut()
            .find(|package| package.package_id == entry.package_id)
        {
            Some(package) => package.entries.push(view),
            None => others.entry(entry.package_id).or_default().push(view),
        }
    }
    // An entry on a package the hold has no allocation for is not expected; shown, not hidden.
    packages.extend(others.into_iter().map(|(package_id, entries)| PackageView {
        package_id,
        held: 0,
        entries,
    }));
    HoldView {
        id: story.hold.id,
        amount: story.hold.amount,
        state: story.hold.state.as_str(),
        settled_amount: story.hold.settled_amount,
        created_at: story.hold.created_at,
        resolved_at: story.hold.resolved_at,
        packages,
    }
}

async fn objects(state: &AppState, row: &workflow::Model) -> Result<Objects, ApiError> {
    let mut inputs = Vec::new();
    if let Ok(read) = Inputs::from_json(&row.inputs) {
        for (field, image) in [
            ("person_image", read.person_image),
            ("garment_image", read.garment_image),
        ] {
            let object = match image {
                InputImage::Stored(key) => InputSource::Stored {
                    preview_url: state.object_url(&key).await?,
                    key,
                },
                InputImage::Url(url) => InputSource::Url { url },
            };
            inputs.push(InputObject { field, object });
        }
    }
    // An expired result is gone from storage: its preview would only answer 410.
    let result = match (&row.result_key, row.result_expired_at) {
        (Some(key), None) => Some(StoredObject {
            key: key.clone(),
            preview_url: state.object_url(key).await?,
        }),
        _ => None,
    };
    Ok(Objects {
        inputs,
        result,
        preview_ttl_secs: state.settings.workflow.url_ttl_secs,
    })
}
