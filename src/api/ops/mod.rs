//! The ops API under `/v1/ops` (docs/api.md, Operations): what the dashboard shows and does,
//! as JSON for scripts. Reads take an operator token (the admin token or the read-only one);
//! every action takes the admin token and appends to the audit log before it runs.
//!
//! One file per thing operated on; `routes` registers them all.
pub mod accounts;
pub mod audit;
pub mod bounded;
pub mod bulk;
pub mod cluster;
pub mod generation_actions;
pub mod generation_detail;
pub mod generation_filter;
pub mod generations;
pub mod providers;
pub mod summary;
pub mod verify;

use actix_web::HttpRequest;

use super::error::ApiError;
use super::{Routes, resource};
use crate::ops::audit::{Action, MAX_REASON_LEN};

/// Every route under `/v1/ops`.
pub fn routes(routes: &mut Routes) {
    routes
        .service(resource("/v1/ops/audit").route(audit::__path_list, audit::list))
        .service(resource("/v1/ops/providers").route(providers::__path_list, providers::list))
        .service(
            resource("/v1/ops/providers/{name}/pause")
                .route(providers::__path_pause, providers::pause),
        )
        .service(
            resource("/v1/ops/providers/{name}/resume")
                .route(providers::__path_resume, providers::resume),
        )
        .service(resource("/v1/ops/generations").route(generations::__path_list, generations::list))
        // Before `/v1/ops/generations/{id}`, which would take `bulk` for an id.
        .service(resource("/v1/ops/generations/bulk").route(bulk::__path_start, bulk::start))
        .service(
            resource("/v1/ops/generations/{id}")
                .route(generation_detail::__path_get, generation_detail::get),
        )
        .service(resource("/v1/ops/generations/{id}/cancel").route(
            generation_actions::__path_cancel,
            generation_actions::cancel,
        ))
        .service(
            resource("/v1/ops/generations/{id}/wake")
                .route(generation_actions::__path_wake, generation_actions::wake),
        )
        .service(
            resource("/v1/ops/generations/{id}/retry")
                .route(generation_actions::__path_retry, generation_actions::retry),
        )
        .service(resource("/v1/ops/bulk").route(bulk::__path_list, bulk::list))
        .service(resource("/v1/ops/bulk/{id}").route(bulk::__path_get, bulk::get))
        .service(
            resource("/v1/ops/stream")
                .route(crate::api::streams::__path_ops, crate::api::streams::ops),
        )
        .service(resource("/v1/ops/accounts").route(accounts::__path_list, accounts::list))
        .service(
            resource("/v1/ops/accounts/{account_id}")
                .route(accounts::__path_detail, accounts::detail),
        )
        .service(
            resource("/v1/ops/accounts/{account_id}/grants")
                .route(accounts::__path_grant, accounts::grant),
        )
        .service(
            resource("/v1/ops/accounts/{account_id}/grants/{package_id}/void")
                .route(accounts::__path_void, accounts::void),
        )
        .service(
            resource("/v1/ops/accounts/{account_id}/disable")
                .route(accounts::__path_disable, accounts::disable),
        )
        .service(
            resource("/v1/ops/accounts/{account_id}/enable")
                .route(accounts::__path_enable, accounts::enable),
        )
        .service(
            resource("/v1/ops/accounts/{account_id}/revoke-keys")
                .route(accounts::__path_revoke_keys, accounts::revoke_keys),
        )
        .service(
            resource("/v1/ops/accounts/{account_id}/api-keys")
                .route(accounts::__path_issue_key, accounts::issue_key),
        )
        .service(resource("/v1/ops/summary").route(summary::__path_get, summary::get))
        .service(resource("/v1/ops/cluster").route(cluster::__path_get, cluster::get))
        .service(resource("/v1/ops/verify").route(verify::__path_run, verify::run));
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
