//! `GET /ops`: how many generations are in each state, refreshed live while the tab is open.
use actix_web::{HttpResponse, web};
use atelier_actors::workflow::read as workflows;
use atelier_entities::workflow::WorkflowState;
use maud::{Markup, html};

use super::layout;
use super::session::Signed;
use crate::api::error::ApiError;
use crate::state::AppState;

pub async fn page(
    Signed(session): Signed,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let session = match session {
        Ok(session) => session,
        Err(_) => return Ok(super::signin::redirect("/ops/login")),
    };
    let counts = counts(&state).await?;
    Ok(layout::page(&session, "/ops", "Overview", counts))
}

/// `GET /ops/fragments/counts`: the counts alone, for htmx to swap in.
pub async fn counts_fragment(
    Signed(session): Signed,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if session.is_err() {
        return Err(super::no_session());
    }
    Ok(layout::fragment(counts(&state).await?))
}

async fn counts(state: &AppState) -> Result<Markup, ApiError> {
    let mut counts = Vec::with_capacity(WorkflowState::ALL.len());
    for wanted in WorkflowState::ALL {
        counts.push((wanted, workflows::count_in(&state.db, wanted).await?));
    }
    Ok(html! {
        section id="counts" class="cards" data-live hx-get="/ops/fragments/counts"
            hx-trigger="refresh" hx-swap="outerHTML" {
            @for (wanted, count) in &counts {
                div class="card" data-state=(wanted.as_str()) {
                    div class="n" { (count) }
                    div class="label" { (wanted.as_str()) }
                }
            }
        }
    })
}
