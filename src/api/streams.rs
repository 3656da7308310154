//! Live status streams (Server-Sent Events) of committed transitions:
//! `GET /v1/generations/{id}/stream`, `GET /v1/generations/stream` and, for operators,
//! `GET /v1/ops/stream`. Each event's `id:` is its timeline entry's id, so a client that
//! reconnects with `Last-Event-ID` gets exactly the events after it. What a stream sends comes
//! from `workflow::feed`, which reads committed rows back; a slow reader makes its stream read
//! the database later, never buffer without bound.
use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, Responder, web};
use actix_web_lab::sse;
use atelier_actors::workflow::feed::{FeedEvent, Follower, Scope};
use atelier_actors::workflow::read as workflows;
use atelier_entities::workflow::WorkflowState;
use futures::Stream;
use serde_json::json;
use uuid::Uuid;

use super::auth::{Client, Operator};
use super::error::ApiError;
use super::openapi::ErrorBody;
use crate::state::AppState;

/// How long a client waits before reconnecting after a stream ends or breaks.
const RETRY: Duration = Duration::from_secs(3);

pub use super::stream_slots::{Slot, StreamSlots};

/// `Last-Event-ID`: the id of the last event the client saw (absent: none).
fn last_event_id(request: &HttpRequest) -> Result<Option<i64>, ApiError> {
    let Some(value) = request.headers().get("last-event-id") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .filter(|id| *id >= 0)
        .map(Some)
        .ok_or_else(|| {
            ApiError::malformed(
                "invalid_last_event_id",
                "Last-Event-ID: must be an event id this stream sent",
            )
        })
}

/// What a stream shows of an event: operators also see the account and the provider.
fn transition(event: &FeedEvent, operator: bool) -> sse::Event {
    let mut data = json!({
        "generation_id": event.workflow_id,
        "from": event.from.map(WorkflowState::as_str),
        "to": event.to.as_str(),
        "reason": event.reason,
        "attempt": event.attempt,
        "version": event.version,
        "at": event.at,
    });
    if operator {
        data["account_id"] = json!(event.account_id);
        data["provider"] = json!(event.provider);
    }
    sse::Event::Data(
        sse::Data::new(data.to_string())
            .event("transition")
            .id(event.id.to_string()),
    )
}

/// The events `follower` yields, each as `transition` shows it; after a terminal one when
/// `until_terminal`. A database error ends the stream: the client resumes from its last id.
fn events(
    follower: Follower,
    slot: Slot,
    operator: bool,
    until_terminal: bool,
) -> impl Stream<Item = Result<sse::Event, std::convert::Infallible>> {
    futures::stream::unfold(Some((follower, slot)), move |held| async move {
        let (mut follower, slot) = held?;
        match follower.next().await {
            Ok(Some(event)) => {
                let sent = transition(&event, operator);
                let next =
                    (!(until_terminal && event.to.is_terminal())).then_some((follower, slot));
                Some((Ok(sent), next))
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "a status stream ends: the timeline could not be read");
                None
            }
        }
    })
}

/// An SSE response over `stream`, starting with `first` when given.
fn respond(
    state: &AppState,
    request: &HttpRequest,
    first: Option<sse::Event>,
    stream: impl Stream<Item = Result<sse::Event, std::convert::Infallible>> + 'static,
) -> HttpResponse {
    let head = futures::stream::iter(first.map(Ok));
    let mut response = sse::Sse::from_stream(futures::StreamExt::chain(head, stream))
        // A comment line keeps proxies from timing an idle stream out, and finds clients
        // that went away (a write to their closed socket fails), freeing their slot.
        .with_keep_alive(Duration::from_secs(
            state.settings.http.stream_keep_alive_secs,
        ))
        .with_retry_duration(RETRY)
        .respond_to(request)
        .map_into_boxed_body();
    // Reverse proxies (nginx) would otherwise hold events back to fill their buffers.
    response.headers_mut().insert(
        header::HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    response
}

/// `GET /v1/generations/{id}/stream`: the generation's current state (`event: state`), then
/// every transition until a terminal one. With `Last-Event-ID`: the transitions after it.
/// 204 (which tells an `EventSource` not to reconnect) when nothing can follow any more.
#[utoipa::path(
    get, path = "/v1/generations/{id}/stream", tag = "client",
    security(("api_key" = [])),
    params(
        ("id" = String, Path, description = "The generation's id"),
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "The `id` of the last event the client saw: the stream sends the events after it"),
    ),
    responses(
        (status = 200, description = "`event: state` (without `Last-Event-ID`), then `event: transition` per committed transition until a terminal one", content_type = "text/event-stream", body = String),
        (status = 204, description = "The generation is terminal and `Last-Event-ID` names its last entry or later: nothing can follow (an `EventSource` stops reconnecting)"),
        (status = 400, description = "`invalid_last_event_id`: `Last-Event-ID` is not a non-negative integer", body = ErrorBody),
        (status = 404, description = "`generation_not_found`: unknown, malformed or another account's id", body = ErrorBody),
        (status = 503, description = "`too_many_streams`: `http.max_streams` streams are open in this process", body = ErrorBody)
    )
)]
pub async fn generation(
    Client(account): Client,
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = Uuid::parse_str(&path).map_err(|_| super::generations::not_found())?;
    let row = workflows::find_owned(&state.db, account.id, id)
        .await?
        .ok_or_else(super::generations::not_found)?;
    let resume = last_event_id(&request)?;
    if row.pruned_at.is_some() {
        return Ok(pruned(&state, &request, &row, resume));
    }
    let slot = state.streams.take()?;
    let feed = state.workflows.feed();
    // The follower first reads everything after `after` from the database, having
    // subscribed: nothing committed after this read of the timeline is missed.
    let timeline = workflows::events(&state.db, id).await?;
    let last = timeline
        .last()
        .expect("a workflow's creation is on its timeline");
    let (after, first) = match resume {
        Some(after) => (after, None),
        None => {
            let data = json!({"generation_id": id, "state": last.to_state.as_str(), "version": last.version, "at": last.at});
            let first = sse::Data::new(data.to_string())
                .event("state")
                .id(last.id.to_string());
            (last.id, Some(sse::Event::Data(first)))
        }
    };
    if last.to_state.is_terminal() && after >= last.id {
        return Ok(match first {
            Some(first) => respond(&state, &request, Some(first), futures::stream::empty()),
            None => HttpResponse::NoContent().finish(),
        });
    }
    let follower = Follower::new(feed, state.db.clone(), Scope::Workflow(id), after);
    Ok(respond(
        &state,
        &request,
        first,
        events(follower, slot, false, true),
    ))
}

/// The stream of a generation whose timeline retention deleted: it ended long ago, so its
/// state is all there is. Sent with id 0, after which (any `Last-Event-ID`) nothing can
/// follow: 204, so that an `EventSource` stops reconnecting.
fn pruned(
    state: &AppState,
    request: &HttpRequest,
    row: &atelier_entities::workflow::Model,
    resume: Option<i64>,
) -> HttpResponse {
    if resume.is_some() {
        return HttpResponse::NoContent().finish();
    }
    let data = json!({"generation_id": row.id, "state": row.state.as_str(), "version": row.version, "at": row.updated_at});
    let first = sse::Data::new(data.to_string()).event("state").id("0");
    respond(
        state,
        request,
        Some(sse::Event::Data(first)),
        futures::stream::empty(),
    )
}

/// `GET /v1/generations/stream`: every transition of the caller's generations from now on,
/// or after `Last-Event-ID`.
#[utoipa::path(
    get, path = "/v1/generations/stream", tag = "client",
    security(("api_key" = [])),
    params(("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "The `id` of the last event the client saw: the stream sends the events after it")),
    responses(
        (status = 200, description = "`event: transition` per committed transition of the caller's generations, without end", content_type = "text/event-stream", body = String),
        (status = 400, description = "`invalid_last_event_id`: `Last-Event-ID` is not a non-negative integer", body = ErrorBody),
        (status = 503, description = "`too_many_streams`: `http.max_streams` streams are open in this process", body = ErrorBody)
    )
)]
pub async fn account(
    Client(account): Client,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    follow(&state, &request, Scope::Account(account.id), false).await
}

/// `GET /v1/ops/stream`: every generation's transitions, for operators.
#[utoipa::path(
    get, path = "/v1/ops/stream", tag = "ops",
    security(("operator_token" = [])),
    params(("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "The `id` of the last event the client saw: the stream sends the events after it")),
    responses(
        (status = 200, description = "`event: transition` per committed transition of every generation, with `account_id` and `provider`, without end", content_type = "text/event-stream", body = String),
        (status = 400, description = "`invalid_last_event_id`: `Last-Event-ID` is not a non-negative integer", body = ErrorBody),
        (status = 503, description = "`too_many_streams`: `http.max_streams` streams are open in this process", body = ErrorBody)
    )
)]
pub async fn ops(
    _: Operator,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    follow(&state, &request, Scope::All, true).await
}

pub(crate) async fn follow(
    state: &AppState,
    request: &HttpRequest,
    scope: Scope,
    operator: bool,
) -> Result<HttpResponse, ApiError> {
    let resume = last_event_id(request)?;
    let slot = state.streams.take()?;
    let feed = state.workflows.feed();
    let follower = match resume {
        Some(after) => Follower::new(feed, state.db.clone(), scope, after),
        None => Follower::from_now(feed, state.db.clone(), scope).await,
    };
    Ok(respond(
        state,
        request,
        None,
        events(follower, slot, operator, false),
    ))
}
