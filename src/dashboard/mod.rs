//! The operators' dashboard at `/ops`: server-rendered pages (maud), htmx vendored and served
//! from the binary for partial updates, live refresh from the operators' status stream, and
//! no JavaScript build step. It works offline. Signing in is `session`; every page reads
//! through the same functions the ops API uses.
pub mod accounts;
pub mod audit;
pub mod bulk;
pub mod cluster;
pub mod form;
pub mod generations;
pub mod layout;
pub mod ledger;
pub mod overview;
pub mod providers;
pub mod render;
pub mod session;
pub mod signin;
pub mod sparkline;

use actix_web::http::StatusCode;
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpRequest, HttpResponse, web};
use atelier_actors::workflow::feed::Scope;

use crate::api::error::ApiError;
use crate::state::AppState;
use session::Signed;

/// The dashboard's routes, under `/ops`, each answer with headers that keep its pages out of
/// frames and other origins' scripts.
pub fn routes(config: &mut web::ServiceConfig) {
    let headers = DefaultHeaders::new()
        .add((
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https: http:; frame-ancestors 'none'; form-action 'self'",
        ))
        .add(("x-frame-options", "DENY"))
        .add(("referrer-policy", "no-referrer"))
        .add(("x-content-type-options", "nosniff"));
    config.service(
        web::scope("/ops")
            .wrap(headers)
            .route("", web::get().to(overview::page))
            .route("/", web::get().to(overview::page))
            .route("/login", web::get().to(signin::form))
            .route("/login", web::post().to(signin::sign_in))
            .route("/logout", web::post().to(signin::sign_out))
            .route("/fragments/overview", web::get().to(overview::fragment))
            .route("/generations", web::get().to(generations::list))
            // Before `/generations/{id}`, which would take `bulk` for an id.
            .route("/generations/bulk", web::post().to(bulk::start))
            .route("/generations/bulk/dry-run", web::post().to(bulk::dry_run))
            .route("/bulk/{id}", web::get().to(bulk::job))
            .route("/generations/{id}", web::get().to(generations::detail))
            .route(
                "/generations/{id}/{action}",
                web::post().to(generations::act),
            )
            .route("/providers", web::get().to(providers::page))
            .route("/cluster", web::get().to(cluster::page))
            .route("/providers/{name}/pause", web::post().to(providers::pause))
            .route(
                "/providers/{name}/resume",
                web::post().to(providers::resume),
            )
            .route("/accounts", web::get().to(accounts::list))
            .route("/accounts/{id}", web::get().to(accounts::detail))
            .route(
                "/accounts/{id}/grants/{package}/void",
                web::post().to(accounts::void),
            )
            .route("/accounts/{id}/{action}", web::post().to(accounts::act))
            .route("/ledger", web::get().to(ledger::page))
            .route("/verify", web::post().to(ledger::run))
            .route("/audit", web::get().to(audit::page))
            .route("/events", web::get().to(events))
            .route("/assets/{name}", web::get().to(asset)),
    );
}

/// The vendored and our own assets, compiled into the binary.
async fn asset(path: web::Path<String>) -> HttpResponse {
    let (body, content_type): (&'static [u8], &str) = match path.as_str() {
        "htmx.min.js" => (
            include_bytes!("assets/htmx.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "dashboard.js" => (
            include_bytes!("assets/dashboard.js"),
            "text/javascript; charset=utf-8",
        ),
        "dashboard.css" => (
            include_bytes!("assets/dashboard.css"),
            "text/css; charset=utf-8",
        ),
        _ => return ApiError::not_found("not_found", "no such asset").into_response(),
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("cache-control", "public, max-age=3600"))
        .body(body)
}

/// `GET /ops/events`: the operators' status stream, for a signed-in dashboard.
async fn events(
    Signed(session): Signed,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if session.is_err() {
        return Err(no_session());
    }
    crate::api::streams::follow(&state, &request, Scope::All, true).await
}

/// The session of a request that acts: signed in with the admin token, carrying the
/// session's CSRF token in `X-CSRF-Token` (htmx sends it on every request). Otherwise the
/// refusal to answer instead; nothing is done.
pub fn acting(
    session: Result<session::Session, session::NoSession>,
    request: &HttpRequest,
) -> Result<session::Session, ApiError> {
    let session = session.map_err(|_| no_session())?;
    let token = request
        .headers()
        .get("x-csrf-token")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !session.csrf_matches(token) {
        return Err(csrf_error());
    }
    if !session.may_act {
        return Err(ApiError::forbidden_with(
            "read_only",
            "the read-only operator token may not change anything",
        ));
    }
    Ok(session)
}

/// The form of an action by a signed-in admin with this session's CSRF token (see `acting`),
/// or the refusal.
pub fn acting_form(
    session: Result<session::Session, session::NoSession>,
    request: &HttpRequest,
    body: &actix_web::web::Bytes,
) -> Result<form::Fields, ApiError> {
    acting(session, request)?;
    form::Fields::parse(body)
}

/// What a fragment or an action answers without a session.
pub fn no_session() -> ApiError {
    ApiError::unauthorized("no_session", "sign in to the dashboard first")
}

/// What a POST without this session's CSRF token answers; it changes nothing.
pub fn csrf_refused() -> HttpResponse {
    csrf_error().into_response()
}

fn csrf_error() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf_token_invalid",
        "the form's CSRF token is missing or not this session's; reload the page",
    )
}

impl ApiError {
    pub fn into_response(self) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}
