//! `GET /v1/files/{key}?expires=&signature=`: objects from our storage behind signed,
//! expiring URLs (results for clients, input images for providers).
use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use atelier_actors::storage::ImageKind;

use super::error::ApiError;
use crate::signing::SignatureError;
use crate::state::AppState;

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
    let bytes = state
        .storage
        .get(&key)
        .await?
        .ok_or_else(|| ApiError::not_found("file_not_found", "no such file"))?;
    let content_type = ImageKind::sniff(&bytes).map_or("application/octet-stream", ImageKind::mime);
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", "private, max-age=300"))
        .body(bytes))
}
