//! `GET /metrics`: the Prometheus exposition of the process's metrics (README, Operations).
//! Unauthenticated, like most scrape targets: no label names an account, a generation or a
//! secret (`atelier_actors::metrics`). The workflow gauges are computed here, at scrape time,
//! by bounded reads; everything else was recorded as it happened.
use actix_web::{HttpResponse, web};
use atelier_actors::metrics::{self, LIVE_COUNT_CAP};
use atelier_actors::providers::pauses;
use atelier_actors::workflow::read;

use crate::api::error::ApiError;
use crate::api::openapi::ErrorBody;
use crate::state::AppState;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "The process's metrics in the Prometheus text format (version 0.0.4)", content_type = "text/plain", body = String),
        (status = 503, description = "`metrics_unavailable`: another metrics recorder is installed in this process", body = ErrorBody)
    )
)]

pub async fn scrape(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(handle) = crate::metrics::handle() else {
        return Err(ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "metrics_unavailable",
            "another metrics recorder is installed in this process",
        ));
    };
    let (live, oldest) = read::live_summary(&state.db, LIVE_COUNT_CAP).await?;
    let now = state.clock.now();
    let oldest_age = oldest.map(|created| (now - created).to_std().unwrap_or_default());
    metrics::live(&live, oldest_age);
    let paused = pauses::all(&state.db).await?;
    for name in state.settings.providers.by_name.keys() {
        metrics::provider_paused(name, paused.contains_key(name));
    }
    if let Some(shards) = &state.shards {
        metrics::shards_held(shards.ownership.held_count());
    }
    // Histograms keep their samples until rendered or upkept; a scrape does both.
    handle.run_upkeep();
    Ok(HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(handle.render()))
}
