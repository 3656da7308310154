//! Generations: create (holding the credits), read, list, cancel, and the timeline.
use actix_web::{HttpRequest, HttpResponse, web};
use atelier_actors::Credits;
use atelier_actors::ledger::read;
use atelier_actors::storage::Bytes;
use atelier_actors::workflow::inputs::{InputImage, Inputs, input_key};
use atelier_actors::workflow::read as workflows;
use atelier_actors::workflow::{CreateOutcome, NewWorkflow};
use atelier_actors::workflow::{Event, FailureCode, WorkflowState};
use atelier_entities::workflow;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Client;
use super::error::ApiError;
use super::images::{self, ImageRef};
use super::json::ApiJson;
use super::openapi::ErrorBody;
use super::query::{Page, Params};
use super::uploads;
use crate::accounts::{hex, random_token};
use crate::control::{self, Canceled};
use crate::state::AppState;

const MAX_PROMPT_CHARS: usize = 2_000;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
const ASPECT_RATIOS: &[&str] = &["1:1", "3:4", "4:3", "2:3", "3:2", "9:16", "16:9"];

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGeneration {
    /// `https://…`, `data:image/png|jpeg|webp;base64,…` or `upload:<id>`.
    #[schema(pattern = "^(https://|data:image/(png|jpeg|webp);base64,|upload:)")]
    person_image: String,
    /// As `person_image`.
    #[schema(pattern = "^(https://|data:image/(png|jpeg|webp);base64,|upload:)")]
    garment_image: String,
    #[serde(default)]
    #[schema(max_length = 2000)]
    prompt: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(1:1|3:4|4:3|2:3|3:2|9:16|16:9)$")]
    aspect_ratio: Option<String>,
    /// A configured provider; the default one when absent.
    #[serde(default)]
    provider: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ErrorView {
    code: String,
    message: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct GenerationView {
    id: Uuid,
    state: &'static str,
    provider: String,
    cost: i64,
    /// What the settle charged (settled only): `cost`, or less when the provider reported a
    /// lower actual cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    charged: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result_url: Option<String>,
    /// When the result was deleted after `retention.results_days` (settled only); there is no
    /// `result_url` from then on.
    #[serde(skip_serializing_if = "Option::is_none")]
    result_expired_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorView>,
    /// What was asked, as far as it can be shown again (absent for a row whose inputs do not
    /// read, which only a hand-edited database has).
    #[serde(flatten)]
    request: Option<RequestView>,
}

/// The request a generation was created from.
#[derive(Debug, Serialize, ToSchema)]
struct RequestView {
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aspect_ratio: Option<String>,
    inputs: InputsView,
}

#[derive(Debug, Serialize, ToSchema)]
struct InputsView {
    person_image: InputView,
    garment_image: InputView,
}

/// An input image as the request named it; never its bytes, nor where we keep it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "source", rename_all = "snake_case")]
enum InputView {
    /// `upload:<id>`.
    Upload { reference: String },
    /// A `data:` URI, copied into our storage when the generation was created.
    Data,
    /// A URL, copied into our storage when the generation is submitted.
    Url { url: String },
}

impl InputView {
    fn new(image: InputImage) -> Self {
        match image {
            InputImage::Url(url) => Self::Url { url },
            InputImage::Stored(key) => match uploads::id_of_key(&key) {
                Some(id) => Self::Upload {
                    reference: uploads::reference(id),
                },
                None => Self::Data,
            },
        }
    }
}

impl RequestView {
    fn new(row: &workflow::Model) -> Option<Self> {
        let inputs = Inputs::from_json(&row.inputs)
            .inspect_err(
                |error| tracing::warn!(generation_id = %row.id, %error, "inputs do not read"),
            )
            .ok()?;
        Some(Self {
            prompt: inputs.prompt,
            aspect_ratio: inputs.aspect_ratio,
            inputs: InputsView {
                person_image: InputView::new(inputs.person_image),
                garment_image: InputView::new(inputs.garment_image),
            },
        })
    }
}

async fn view(state: &AppState, row: workflow::Model) -> Result<GenerationView, ApiError> {
    let request = RequestView::new(&row);
    let charged = (row.state == WorkflowState::Settled).then(|| row.charge_due());
    let result_url = match (&row.state, &row.result_key, row.result_expired_at) {
        (WorkflowState::Settled, Some(key), None) => Some(state.object_url(key).await?),
        _ => None,
    };
    let error = match (row.state, row.error_code) {
        (WorkflowState::Released, Some(code)) => Some(ErrorView {
            message: failure_message(&code).to_owned(),
            code,
        }),
        _ => None,
    };
    Ok(GenerationView {
        id: row.id,
        state: row.state.as_str(),
        provider: row.provider,
        cost: row.cost,
        charged,
        created_at: row.created_at,
        updated_at: row.updated_at,
        result_url,
        result_expired_at: row.result_expired_at,
        error,
        request,
    })
}

/// What a client reads about a failure: one fixed sentence per code. The row's
/// `error_message` (often a provider's raw HTTP answer, with its status and body) stays in the
/// timeline (`GET …/events`) and the logs; it is not ours to pass on and may say too much.
fn failure_message(code: &str) -> &'static str {
    match code {
        "provider_failed" => "the provider could not complete the generation",
        "provider_rejected" => "the provider refused the generation request",
        "timeout" => "the generation did not finish in time",
        "canceled" => "the generation was canceled",
        "upload_failed" => "the result could not be stored",
        "invalid_result" => "an image was too large or not a PNG, JPEG or WebP image",
        "input_unavailable" => "an input image could not be fetched or read",
        _ => "the generation failed",
    }
}

pub(crate) fn not_found() -> ApiError {
    ApiError::not_found("generation_not_found", "no such generation")
}

fn idempotency_key(request: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get("idempotency-key") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|key| {
            !key.is_empty()
                && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
                && key.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(|key| Some(key.to_owned()))
        .ok_or_else(|| {
            ApiError::invalid(
                "invalid_idempotency_key",
                format!("Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
            )
        })
}

/// Resolves an image reference to what the workflow keeps, storing `data:` images under the
/// generation's input keys.
async fn resolve_image(
    state: &AppState,
    account_id: Uuid,
    generation_id: Uuid,
    field: &'static str,
    raw: &str,
    stored: &mut Vec<String>,
) -> Result<InputImage, ApiError> {
    let limits = state.settings.images.limits();
    let parsed =
        images::parse(raw, &state.settings.allowed_hosts(), &limits).map_err(|refusal| {
            ApiError::invalid(refusal.code, format!("{field}: {}", refusal.reason))
        })?;
    match parsed {
        ImageRef::Url(url) => Ok(InputImage::Url(url)),
        ImageRef::Upload(id) => {
            let upload = uploads::find_owned(&state.db, account_id, id)
                .await?
                .ok_or_else(|| {
                    ApiError::invalid("unknown_upload", format!("{field}: no upload {id}"))
                })?;
            Ok(InputImage::Stored(upload.storage_key))
        }
        ImageRef::Data { bytes, .. } => {
            let key = input_key(generation_id, field);
            state.storage.put(&key, Bytes::from(bytes)).await?;
            stored.push(key.clone());
            Ok(InputImage::Stored(key))
        }
    }
}

#[utoipa::path(
    post, path = "/v1/generations", tag = "client",
    security(("api_key" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters; a replay with the same body answers 200 and the same generation")),
    request_body = CreateGeneration,
    responses(
        (status = 202, description = "The new generation, `reserved`, its cost held", body = GenerationView),
        (status = 200, description = "A replayed `Idempotency-Key`: the generation it made, as it is now", body = GenerationView),
        (status = 402, description = "`insufficient_credits`: nothing was created or stored", body = ErrorBody),
        (status = 409, description = "`idempotency_key_reused`: the key was used with another body", body = ErrorBody),
        (status = 422, description = "`invalid_idempotency_key`, `unknown_provider`, `invalid_prompt`, `invalid_aspect_ratio`, `invalid_image`, `image_too_large`, `unknown_upload`, or a body field error", body = ErrorBody),
        (status = 503, description = "`database_busy`: nothing was written, try again; `Retry-After: 1`", body = ErrorBody)
    )
)]
pub async fn create(
    Client(account): Client,
    state: web::Data<AppState>,
    request: HttpRequest,
    body: ApiJson<CreateGeneration>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&request)?;
    let mut body = body.0;
    let (provider, cost) = checked_provider(&state, &body)?;
    // Hashed before anything is resolved, so a replay compares what the client sent — with
    // the provider it meant, so that naming the default or leaving it out is the same request.
    body.provider = Some(provider.clone());
    let request_hash = hex(&Sha256::digest(
        serde_json::to_vec(&body).expect("serialises"),
    ));
    let idempotency = key.map(|key| (key, request_hash));
    if let Some(answer) = answer_without_storing(&state, account.id, cost, &idempotency).await? {
        return Ok(answer);
    }

    let id = Uuid::now_v7();
    let mut stored = Vec::new();
    let new = Pending {
        id,
        account_id: account.id,
        provider,
        cost,
        idempotency,
    };
    let outcome = store_and_create(&state, new, &body, &mut stored).await;
    if !matches!(outcome, Ok(CreateOutcome::Created(_))) {
        // Inputs stored for a generation that was not created are nobody's.
        for key in &stored {
            if let Err(error) = state.storage.delete(key).await {
                tracing::warn!(%key, %error, "could not remove an orphaned input");
            }
        }
    }
    match outcome? {
        CreateOutcome::Created(row) => {
            tracing::info!(generation_id = %row.id, account_id = %account.id, provider = %row.provider, cost = row.cost, "generation created");
            release_if_an_upload_vanished(&state, account.id, &row).await?;
            crate::control::tell_owner_elsewhere(&state, row.id);
            Ok(HttpResponse::Accepted().json(view(&state, row).await?))
        }
        CreateOutcome::Replayed(row) => Ok(HttpResponse::Ok().json(view(&state, row).await?)),
        CreateOutcome::KeyConflict => Err(key_reused()),
        CreateOutcome::InsufficientCredits {
            available,
            requested,
        } => Err(insufficient_credits(requested, available)),
    }
}

/// An upload the request names may have been deleted while the generation was being created:
/// the delete looks for live generations using it after removing its row, so one that missed
/// this generation ran before it committed, and this check, run after the commit, sees the row
/// gone. The generation could not run, so it is released at once (nothing is charged) and the
/// request is answered as if the upload had been gone all along.
pub(crate) async fn release_if_an_upload_vanished(
    state: &AppState,
    account_id: Uuid,
    row: &workflow::Model,
) -> Result<(), ApiError> {
    let Ok(inputs) = Inputs::from_json(&row.inputs) else {
        return Ok(());
    };
    if let Some((field, id)) = missing_upload(state, account_id, inputs).await? {
        let vanished = Event::Failed {
            code: FailureCode::InputUnavailable,
            message: format!("{field}: upload {id} was deleted while the generation was created"),
        };
        state
            .workflows
            .transition(row.id, None, vanished, None)
            .await?;
        tracing::info!(generation_id = %row.id, upload_id = %id, "upload deleted during create; released");
        return Err(ApiError::invalid(
            "unknown_upload",
            format!("{field}: no upload {id}"),
        ));
    }
    Ok(())
}

/// The first of `inputs`' uploads the account no longer has: its field and the upload's id.
pub(crate) async fn missing_upload(
    state: &AppState,
    account_id: Uuid,
    inputs: Inputs,
) -> Result<Option<(&'static str, Uuid)>, ApiError> {
    for (field, image) in [
        ("person_image", inputs.person_image),
        ("garment_image", inputs.garment_image),
    ] {
        let InputImage::Stored(key) = image else {
            continue;
        };
        let Some(id) = uploads::id_of_key(&key) else {
            continue;
        };
        if uploads::find_owned(&state.db, account_id, id)
            .await?
            .is_none()
        {
            return Ok(Some((field, id)));
        }
    }
    Ok(None)
}

/// The provider the request names (or the default) and its cost, once the prompt and the
/// aspect ratio are found valid.
fn checked_provider(state: &AppState, body: &CreateGeneration) -> Result<(String, i64), ApiError> {
    let provider = body
        .provider
        .clone()
        .unwrap_or_else(|| state.settings.default_provider.clone());
    let cost = state
        .settings
        .providers
        .get(&provider)
        .map(|settings| settings.cost)
        .ok_or_else(|| {
            ApiError::invalid(
                "unknown_provider",
                format!("provider: no provider {provider:?}"),
            )
        })?;
    if body
        .prompt
        .as_ref()
        .is_some_and(|prompt| prompt.chars().count() > MAX_PROMPT_CHARS)
    {
        return Err(ApiError::invalid(
            "invalid_prompt",
            format!("prompt: at most {MAX_PROMPT_CHARS} characters"),
        ));
    }
    if let Some(ratio) = &body.aspect_ratio
        && !ASPECT_RATIOS.contains(&ratio.as_str())
    {
        return Err(ApiError::invalid(
            "invalid_aspect_ratio",
            format!("aspect_ratio: one of {}", ASPECT_RATIOS.join(", ")),
        ));
    }
    Ok((provider, cost))
}

/// What a new generation is, before its inputs are stored.
struct Pending {
    id: Uuid,
    account_id: Uuid,
    provider: String,
    cost: i64,
    idempotency: Option<(String, String)>,
}

/// Stores the request's inputs (their keys go to `stored`, for the caller to remove should
/// the create not happen), then creates the workflow with its hold in one transaction.
async fn store_and_create(
    state: &AppState,
    new: Pending,
    body: &CreateGeneration,
    stored: &mut Vec<String>,
) -> Result<CreateOutcome, ApiError> {
    let (id, account_id) = (new.id, new.account_id);
    let person_image = resolve_image(
        state,
        account_id,
        id,
        "person_image",
        &body.person_image,
        stored,
    )
    .await?;
    let garment_image = resolve_image(
        state,
        account_id,
        id,
        "garment_image",
        &body.garment_image,
        stored,
    )
    .await?;
    let inputs = Inputs {
        person_image,
        garment_image,
        prompt: body.prompt.clone(),
        aspect_ratio: body.aspect_ratio.clone(),
    };
    let deadline_at = atelier_actors::clock::saturating_after(
        state.clock.now(),
        state.settings.workflow.overall_deadline_secs,
    );
    let new = NewWorkflow {
        id,
        account_id,
        provider: new.provider,
        cost: Credits::parse(new.cost).map_err(ApiError::internal)?,
        inputs: inputs.to_json(),
        callback_token: random_token("cb_"),
        deadline_at,
        idempotency: new.idempotency,
        retry_of: None,
    };
    Ok(state.workflows.create(new).await?)
}

fn key_reused() -> ApiError {
    ApiError::conflict(
        "idempotency_key_reused",
        "Idempotency-Key: already used for a different request",
    )
}

pub(crate) fn insufficient_credits(requested: i64, available: i64) -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::PAYMENT_REQUIRED,
        "insufficient_credits",
        format!(
            "this generation needs {}; {available} available",
            atelier_actors::credits::amount(requested)
        ),
    )
}

/// The answer to a request that needs no inputs stored: a replayed Idempotency-Key (the
/// generation it made, or 409 for another body), or 402 when the balance cannot cover the cost.
/// Checked before any `data:` input is decoded and written, so that an account without credits
/// cannot write to our storage. Only a shortcut: the create transaction decides again, under
/// lock (a concurrent request may take the credits in between; its inputs are then removed).
async fn answer_without_storing(
    state: &AppState,
    account_id: Uuid,
    cost: i64,
    idempotency: &Option<(String, String)>,
) -> Result<Option<HttpResponse>, ApiError> {
    if let Some((key, request_hash)) = idempotency
        && let Some((claimed_hash, workflow_id)) =
            workflows::claimed_key(&state.db, account_id, key).await?
    {
        if &claimed_hash != request_hash {
            return Err(key_reused());
        }
        if let Some(row) = workflows::find_owned(&state.db, account_id, workflow_id).await? {
            return Ok(Some(HttpResponse::Ok().json(view(state, row).await?)));
        }
    }
    let available = read::balance(&state.db, account_id, state.clock.now())
        .await?
        .available;
    if available < cost {
        return Err(insufficient_credits(cost, available));
    }
    Ok(None)
}

/// The caller's generation named in the path; anything else (another account's, an unknown or
/// malformed id) is 404.
async fn owned(
    state: &AppState,
    account_id: Uuid,
    raw_id: &str,
) -> Result<workflow::Model, ApiError> {
    let id = Uuid::parse_str(raw_id).map_err(|_| not_found())?;
    workflows::find_owned(&state.db, account_id, id)
        .await?
        .ok_or_else(not_found)
}

#[utoipa::path(
    get, path = "/v1/generations/{id}", tag = "client",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The generation's id")),
    responses(
        (status = 200, description = "The generation", body = GenerationView),
        (status = 404, description = "`generation_not_found`: unknown, not an id, or another account's", body = ErrorBody)
    )
)]
pub async fn get(
    Client(account): Client,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = owned(&state, account.id, &path).await?;
    Ok(HttpResponse::Ok().json(view(&state, row).await?))
}

#[utoipa::path(
    get, path = "/v1/generations", tag = "client",
    security(("api_key" = [])),
    params(
        ("state" = Option<String>, Query, pattern = "^(reserved|submitted|awaiting_callback|uploading|settled|released)$", description = "`reserved`, `submitted`, `awaiting_callback`, `uploading`, `settled` or `released`"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 200, description = "Page size, 50 when absent"),
        ("cursor" = Option<uuid::Uuid>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "The caller's generations, newest first", body = Page<GenerationView, Uuid>),
        (status = 400, description = "`malformed_query`", body = ErrorBody),
        (status = 422, description = "`invalid_state`, `invalid_limit`, `invalid_cursor`, `unknown_parameter`, `duplicate_parameter`", body = ErrorBody)
    )
)]
pub async fn list(
    Client(account): Client,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&request, &["limit", "cursor", "state"])?;
    let limit = params.limit()?;
    let states: Vec<&str> = WorkflowState::ALL.iter().map(|s| s.as_str()).collect();
    let filter = params.parsed(
        "state",
        "invalid_state",
        &format!("one of {}", states.join(", ")),
        WorkflowState::parse,
    )?;
    let before = params.cursor(|raw| Uuid::parse_str(raw).ok())?;
    let (rows, next) = workflows::list(&state.db, account.id, filter, before, limit).await?;
    Ok(HttpResponse::Ok().json(Page {
        items: futures::future::try_join_all(rows.into_iter().map(|row| view(&state, row))).await?,
        next_cursor: next,
    }))
}

#[utoipa::path(
    post, path = "/v1/generations/{id}/cancel", tag = "client",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The generation's id")),
    responses(
        (status = 200, description = "The generation, `released` with `canceled` (or unchanged, when it was released already)", body = GenerationView),
        (status = 404, description = "`generation_not_found`", body = ErrorBody),
        (status = 409, description = "`already_settled`", body = ErrorBody),
        (status = 503, description = "`database_busy`: nothing was written, try again; `Retry-After: 1`", body = ErrorBody)
    )
)]
pub async fn cancel(
    Client(account): Client,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = owned(&state, account.id, &path).await?.id;
    match control::cancel(&state, id, "canceled by the client").await? {
        Canceled::Released(row) | Canceled::AlreadyReleased(row) => {
            Ok(HttpResponse::Ok().json(view(&state, *row).await?))
        }
        Canceled::Settled => Err(already_settled()),
        Canceled::NotFound => Err(not_found()),
    }
}

/// A cancel that came too late.
pub(crate) fn already_settled() -> ApiError {
    ApiError::conflict("already_settled", "the generation already settled")
}

#[derive(Debug, Serialize, ToSchema)]
struct EventView {
    from: Option<&'static str>,
    to: &'static str,
    reason: String,
    at: DateTime<Utc>,
}

#[utoipa::path(
    get, path = "/v1/generations/{id}/events", tag = "client",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The generation's id")),
    responses(
        (status = 200, description = "The timeline, oldest first", body = Vec<EventView>),
        (status = 404, description = "`generation_not_found`", body = ErrorBody)
    )
)]
pub async fn events(
    Client(account): Client,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = owned(&state, account.id, &path).await?.id;
    let events: Vec<EventView> = workflows::events(&state.db, id)
        .await?
        .into_iter()
        .map(|event| EventView {
            from: event.from_state.map(WorkflowState::as_str),
            to: event.to_state.as_str(),
            reason: event.reason,
            at: event.at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(events))
}
