//! The ops API under `/v1/ops` (docs/api.md, Operations): what the dashboard shows and does,
//! as JSON for scripts. Reads take an operator token (the admin token or the read-only one);
//! every action takes the admin token and appends to the audit log before it runs.
//!
//! One file per thing operated on; `routes` registers them all.
pub mod audit;
pub mod providers;

use actix_web::{HttpRequest, web};

use super::error::ApiError;
use crate::ops::audit::{Action, MAX_REASON_LEN};

/// Every route under `/v1/ops`.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(super::resource("/v1/ops/audit").route(web::get().to(audit::list)))
        .service(super::resource("/v1/ops/providers").route(web::get().to(providers::list)))
        .service(
            super::resource("/v1/ops/providers/{name}/pause")
                .route(web::post().to(providers::pause)),
        )
        .service(
            super::resource("/v1/ops/providers/{name}/resume")
                .route(web::post().to(providers::resume)),
        );
}

/// The peer address an action came from, for the audit log. The socket's peer, not a
/// forwarded header, which any client could set.
pub fn source(request: &HttpRequest) -> String {
    request
        .peer_addr()
        .map(|addr| addr.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// An action by the admin on `target_kind`/`target_id`, from `request`'s peer.
pub fn action(
    request: &HttpRequest,
    action: &'static str,
    target_kind: &'static str,
    target_id: Option<String>,
    reason: Option<String>,
) -> Action {
    Action {
        operator: "admin",
        action,
        target_kind,
        target_id,
        filter: None,
        reason,
        source: source(request),
    }
}

/// A reason an operator gave: trimmed, 1 to `MAX_REASON_LEN` bytes when `required`.
pub fn checked_reason(reason: Option<String>, required: bool) -> Result<Option<String>, ApiError> {
    let reason = reason
        .map(|reason| reason.trim().to_owned())
        .filter(|reason| !reason.is_empty());
    match reason {
        None if required => Err(ApiError::invalid(
            "missing_reason",
            "reason: this action needs a reason (1 to 1000 bytes)",
        )),
        Some(reason) if reason.len() > MAX_REASON_LEN => Err(ApiError::invalid(
            "invalid_reason",
            format!("reason: at most {MAX_REASON_LEN} bytes"),
        )),
        reason => Ok(reason),
    }
}
