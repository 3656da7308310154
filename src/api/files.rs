//! `GET /v1/files/{key}?expires=&signature=`: objects from our storage behind signed,
//! expiring URLs (results for clients, input images for providers). A result deleted by
//! retention (`retention.results_days`) answers 410 `result_expired`, not 404.
use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use atelier_actors::storage::ImageKind;
use atelier_actors::workflow::inputs::generation_of_result_key;
use atelier_actors::workflow::read as workflows;

use super::error::ApiError;
use super::openapi::{Binary, ErrorBody};
use crate::signing::SignatureError;
use crate::state::AppState;

#[utoipa::path(
    get, path = "/v1/files/{key}", tag = "client",
    params(
        ("key" = String, Path, description = "The object's key (may hold `/`)"),
        ("expires" = i64, Query, description = "Unix seconds the URL is valid until"),
        ("signature" = String, Query, description = "HMAC-SHA256 over the key and the expiry"),
    ),
    responses(
        (status = 200, description = "The object; `Content-Type` from its bytes", content_type = "application/octet-stream", body = Binary),
        (status = 403, description = "`invalid_signature` or `url_expired`", body = ErrorBody),
        (status = 404, description = "`file_not_found`", body = ErrorBody),
        (status = 410, description = "`result_expired`: the generation's result was deleted after `retention.results_days`", body = ErrorBody)
    )
)]
pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let key = path.into_inner();
    let invalid =
        || ApiError::forbidden_with("invalid_signature", "the URL's signature is not valid");
    let expires = query
        .get("expires")
        .and_then(|raw| raw.parse::<i64>().ok())
        .ok_or_else(invalid)?;
    let signature = query.get("signature").ok_or_else(invalid)?;
    match state
        .signer
        .verify(&key, expires, signature, state.clock.now())
    {
        Ok(()) => {}
        Err(SignatureError::Invalid) => return Err(invalid()),
        Err(SignatureError::Expired) => {
            return Err(ApiError::forbidden_with(
                "url_expired",
                "the URL has expired",
            ));
        }
    }
    let Some(bytes) = state.storage.get(&key).await? else {
        return Err(missing(&state, &key).await?);
    };
    let content_type = ImageKind::sniff(&bytes).map_or("application/octet-stream", ImageKind::mime);
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", "private, max-age=300"))
        .body(bytes))
}

/// Why no object is under `key`: a result that retention deleted is gone (410), anything
/// else was never there (404). Asked only once the object is missing, so serving a file
/// reads no row.
async fn missing(state: &AppState, key: &str) -> Result<ApiError, ApiError> {
    if let Some(id) = generation_of_result_key(key)
        && let Some(row) = workflows::find(&state.db, id).await?
        && row.result_expired_at.is_some()
    {
        return Ok(ApiError::gone(
            "result_expired",
            "the result was deleted after its retention period",
        ));
    }
    Ok(ApiError::not_found("file_not_found", "no such file"))
}
