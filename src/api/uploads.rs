//! `POST /v1/uploads`: a raw image body, stored for use as `upload:<id>` in a generation.
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use atelier_actors::storage::ImageKind;
use atelier_entities::upload;
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use serde::Serialize;
use uuid::Uuid;

use super::auth::Client;
use super::error::ApiError;
use super::images::Refusal;
use super::json::read_limited;
use crate::state::AppState;

#[derive(Debug, Serialize)]
struct UploadView {
    id: Uuid,
    /// What to put in a generation request's image field.
    reference: String,
    /// A signed, expiring URL to read the image back.
    url: String,
    content_type: &'static str,
    size: i64,
    created_at: DateTime<Utc>,
}

pub async fn create(
    Client(account): Client,
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let declared = declared_kind(&request)?;
    let limit = state.settings.http.upload_limit_bytes;
    let mut payload: Payload = payload.into_inner();
    let body = read_limited(&mut payload, limit).await?;
    match ImageKind::sniff(&body) {
        Some(kind) if kind == declared => {}
        _ => {
            return Err(ApiError::invalid(
                "invalid_image",
                format!("the body is not valid {}", declared.mime()),
            ));
        }
    }
    // Judged from the header before anything is stored: a few kilobytes may declare
    // gigapixels.
    state
        .settings
        .images
        .limits()
        .check(&body)
        .map_err(|error| {
            let refusal = Refusal::from(error);
            ApiError::invalid(refusal.code, refusal.reason)
        })?;
    let id = Uuid::now_v7();
    let key = format!("uploads/{}/{id}", account.id);
    let size = body.len() as i64;
    state.storage.put(&key, body.freeze()).await?;
    let row = upload::ActiveModel {
        id: Set(id),
        account_id: Set(account.id),
        content_type: Set(declared.mime().to_owned()),
        size: Set(size),
        storage_key: Set(key.clone()),
        created_at: Set(state.clock.now()),
    }
    .insert(&state.db)
    .await?;
    Ok(HttpResponse::Created().json(UploadView {
        id,
        reference: format!("upload:{id}"),
        url: state.object_url(&key).await?,
        content_type: declared.mime(),
        size,
        created_at: row.created_at,
    }))
}

/// The image kind the request's `Content-Type` declares; anything else is 415.
fn declared_kind(request: &HttpRequest) -> Result<ImageKind, ApiError> {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .and_then(|mime| ImageKind::from_mime(&mime))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Content-Type must be image/png, image/jpeg or image/webp",
            )
        })
}

/// An upload the account made (the `uploads` table's one read).
pub async fn find_owned<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
    upload_id: Uuid,
) -> Result<Option<upload::Model>, DbErr> {
    upload::Entity::find_by_id(upload_id)
        .filter(upload::Column::AccountId.eq(account_id))
        .one(db)
        .await
}
