//! Liveness and readiness.
use actix_web::{HttpResponse, web};
use atelier_migrations::{Migrator, MigratorTrait};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::openapi::ErrorBody;
use crate::state::AppState;

/// `{"status": …}`: `ok` from `/healthz`, `ready` from `/readyz`.
#[derive(Serialize, ToSchema)]
pub struct Status {
    status: &'static str,
}

#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up", body = Status))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Status { status: "ok" })
}

/// Ready when the database answers, every migration has been applied and both batching
/// writers (the ledger's and the workflows') run and are not stuck.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready: the database answers, no migration is pending, both writers run", body = Status),
        (status = 503, description = "`not_ready`: the message names the cause; `Retry-After: 1`", body = ErrorBody)
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    for (writer, health) in [
        ("ledger", state.ledger.health()),
        ("workflow", state.workflows.health()),
    ] {
        if let Some(problem) = health.problem() {
            tracing::warn!(writer, %problem, "readiness: writer unhealthy");
            return Err(ApiError::unavailable(format!("{writer} writer: {problem}")));
        }
    }
    if let Err(error) = state.db.ping().await {
        tracing::warn!(%error, "readiness: database unreachable");
        return Err(ApiError::unavailable("database unreachable"));
    }
    match Migrator::get_pending_migrations(&state.db).await {
        Ok(pending) if pending.is_empty() => {
            Ok(HttpResponse::Ok().json(Status { status: "ready" }))
        }
        Ok(pending) => Err(ApiError::unavailable(format!(
            "{} migrations pending",
            pending.len()
        ))),
        Err(error) => {
            tracing::warn!(%error, "readiness: cannot read migrations");
            Err(ApiError::unavailable("cannot read migration state"))
        }
    }
}
