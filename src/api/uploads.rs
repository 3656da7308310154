//! Uploads: input images stored for use as `upload:<id>` in generation requests — created from
//! a raw image body or a `multipart/form-data` form, read, listed and deleted. The owner of the
//! `uploads` table, and of where an upload's object lives in storage.
//!
//! A generation keeps the storage key of the upload it names, and providers read the object
//! while the generation is live; so an upload a live generation uses cannot be deleted (409
//! `upload_in_use`) until that generation settles or is released.
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use atelier_actors::db::page_of;
use atelier_actors::storage::ImageKind;
use atelier_actors::workflow::read as workflows;
use atelier_entities::upload;
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Client;
use super::error::ApiError;
use super::images::Refusal;
use super::json::read_limited;
use super::multipart;
use super::openapi::{Binary, ErrorBody};
use super::query::{Page, Params};
use crate::state::AppState;

/// Where every upload's object lives: under the account, named by the upload's id.
const KEY_PREFIX: &str = "uploads/";

#[derive(Debug, Serialize, ToSchema)]
struct UploadView {
    id: Uuid,
    /// What to put in a generation request's image field.
    reference: String,
    /// A URL to read the image back (signed or presigned and expiring, or public).
    url: String,
    content_type: String,
    size: i64,
    created_at: DateTime<Utc>,
}

async fn view(state: &AppState, row: upload::Model) -> Result<UploadView, ApiError> {
    Ok(UploadView {
        id: row.id,
        reference: reference(row.id),
        url: state.object_url(&row.storage_key).await?,
        content_type: row.content_type,
        size: row.size,
        created_at: row.created_at,
    })
}

/// How a generation request names an upload.
pub fn reference(id: Uuid) -> String {
    format!("upload:{id}")
}

fn storage_key(account_id: Uuid, id: Uuid) -> String {
    format!("{KEY_PREFIX}{account_id}/{id}")
}

/// The upload whose object `key` is, if it is an upload's.
pub fn id_of_key(key: &str) -> Option<Uuid> {
    let (_account, id) = key.strip_prefix(KEY_PREFIX)?.split_once('/')?;
    Uuid::parse_str(id).ok()
}

/// The form `POST /v1/uploads` takes, as OpenAPI shows it.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadForm {
    /// The image, with its own `Content-Type` (PNG, JPEG or WebP).
    pub file: Binary,
}

fn not_found() -> ApiError {
    ApiError::not_found("upload_not_found", "no such upload")
}

#[utoipa::path(
    post, path = "/v1/uploads", tag = "client",
    security(("api_key" = [])),
    request_body(
        description = "A raw PNG, JPEG or WebP image, or a form with one part named `file`",
        content(
            (Binary = "image/png"),
            (Binary = "image/jpeg"),
            (Binary = "image/webp"),
            (UploadForm = "multipart/form-data", encoding(("file" = (content_type = "image/png, image/jpeg, image/webp")))),
        )
    ),
    responses(
        (status = 201, description = "The upload", body = UploadView),
        (status = 400, description = "`malformed_multipart`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: another or no `Content-Type`", body = ErrorBody),
        (status = 422, description = "`missing_file`, `unexpected_part`, `invalid_image`, `image_too_large`", body = ErrorBody)
    )
)]
pub async fn create(
    Client(account): Client,
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let limit = state.settings.http.upload_limit_bytes;
    let (declared, body) = if multipart::is_form_data(&request) {
        let file = multipart::one_file(&request, payload, limit).await?;
        (declared_kind(file.content_type.as_deref())?, file.bytes)
    } else {
        let header = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok());
        let declared = declared_kind(header)?;
        let mut payload = payload.into_inner();
        (declared, read_limited(&mut payload, limit).await?)
    };
    check_image(&state, declared, &body)?;
    let id = Uuid::now_v7();
    let key = storage_key(account.id, id);
    let size = body.len() as i64;
    state.storage.put(&key, body.freeze()).await?;
    let row = upload::Model {
        id,
        account_id: account.id,
        content_type: declared.mime().to_owned(),
        size,
        storage_key: key,
        created_at: state.clock.now(),
    };
    let row = insert(&state.db, &row).await?;
    tracing::info!(upload_id = %id, account_id = %account.id, size, "image uploaded");
    Ok(HttpResponse::Created().json(view(&state, row).await?))
}

/// The bytes hold an image of the declared kind, within the image limits — judged from the
/// header before anything is stored: a few kilobytes may declare gigapixels.
fn check_image(state: &AppState, declared: ImageKind, body: &[u8]) -> Result<(), ApiError> {
    match ImageKind::sniff(body) {
        Some(kind) if kind == declared => {}
        _ => {
            return Err(ApiError::invalid(
                "invalid_image",
                format!("the body is not valid {}", declared.mime()),
            ));
        }
    }
    state
        .settings
        .images
        .limits()
        .check(body)
        .map_err(|error| {
            let refusal = Refusal::from(error);
            ApiError::invalid(refusal.code, refusal.reason)
        })?;
    Ok(())
}

/// The image kind a `Content-Type` (the request's, or the file part's) declares; anything
/// else is 415.
fn declared_kind(content_type: Option<&str>) -> Result<ImageKind, ApiError> {
    content_type
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
                "Content-Type must be image/png, image/jpeg or image/webp (or multipart/form-data \
                 with one such part named \"file\")",
            )
        })
}

/// The caller's upload named in the path; anything else (another account's, an unknown or
/// malformed id) is 404.
async fn owned(
    state: &AppState,
    account_id: Uuid,
    raw_id: &str,
) -> Result<upload::Model, ApiError> {
    let id = Uuid::parse_str(raw_id).map_err(|_| not_found())?;
    find_owned(&state.db, account_id, id)
        .await?
        .ok_or_else(not_found)
}

#[utoipa::path(
    get, path = "/v1/uploads/{id}", tag = "client",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The upload's id")),
    responses(
        (status = 200, description = "The upload, its `url` signed afresh", body = UploadView),
        (status = 404, description = "`upload_not_found`", body = ErrorBody)
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
    get, path = "/v1/uploads", tag = "client",
    security(("api_key" = [])),
    params(
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 200, description = "Page size, 50 when absent"),
        ("cursor" = Option<uuid::Uuid>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "The caller's uploads, newest first", body = Page<UploadView, Uuid>),
        (status = 400, description = "`malformed_query`", body = ErrorBody),
        (status = 422, description = "`invalid_limit`, `invalid_cursor`, `unknown_parameter`, `duplicate_parameter`", body = ErrorBody)
    )
)]
pub async fn list(
    Client(account): Client,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&request, &["limit", "cursor"])?;
    let limit = params.limit()?;
    let before = params.cursor(|raw| Uuid::parse_str(raw).ok())?;
    let (rows, next) = page(&state.db, account.id, before, limit).await?;
    Ok(HttpResponse::Ok().json(Page {
        items: futures::future::try_join_all(rows.into_iter().map(|row| view(&state, row))).await?,
        next_cursor: next,
    }))
}

/// Deletes the row, then the object: a row never names a missing object, and an object whose
/// delete failed is only garbage (logged). Live generations are looked for before and again
/// after the row goes: one created meanwhile either shows in the second look (the row is put
/// back, 409) or commits after it, and then finds the row gone and is released
/// (`generations::release_if_an_upload_vanished`).
#[utoipa::path(
    delete, path = "/v1/uploads/{id}", tag = "client",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The upload's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`upload_not_found`", body = ErrorBody),
        (status = 409, description = "`upload_in_use`: a live generation uses it", body = ErrorBody)
    )
)]
pub async fn delete(
    Client(account): Client,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = owned(&state, account.id, &path).await?;
    if in_use(&state, &row).await? {
        return Err(upload_in_use());
    }
    let deleted = upload::Entity::delete_many()
        .filter(upload::Column::Id.eq(row.id))
        .filter(upload::Column::AccountId.eq(account.id))
        .exec(&state.db)
        .await?;
    if deleted.rows_affected == 0 {
        // A concurrent delete won; its caller removes the object.
        return Err(not_found());
    }
    if in_use(&state, &row).await? {
        insert(&state.db, &row).await?;
        return Err(upload_in_use());
    }
    if let Err(error) = state.storage.delete(&row.storage_key).await {
        tracing::warn!(upload_id = %row.id, %error, "upload deleted, but its object stays");
    }
    tracing::info!(upload_id = %row.id, account_id = %account.id, "upload deleted");
    Ok(HttpResponse::NoContent().finish())
}

async fn in_use(state: &AppState, row: &upload::Model) -> Result<bool, DbErr> {
    workflows::live_with_input(&state.db, row.account_id, &row.storage_key).await
}

fn upload_in_use() -> ApiError {
    ApiError::conflict(
        "upload_in_use",
        "a generation that is not finished uses this upload; delete it once that generation \
         has settled or been released",
    )
}

async fn insert<C: ConnectionTrait>(db: &C, row: &upload::Model) -> Result<upload::Model, DbErr> {
    upload::ActiveModel {
        id: Set(row.id),
        account_id: Set(row.account_id),
        content_type: Set(row.content_type.clone()),
        size: Set(row.size),
        storage_key: Set(row.storage_key.clone()),
        created_at: Set(row.created_at),
    }
    .insert(db)
    .await
}

/// An upload the account made.
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

/// One page of the account's uploads, newest first (ids are UUIDv7); `before` is the last id
/// of the previous page, and the cursor returned is `Some` while older ones remain.
async fn page<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
    before: Option<Uuid>,
    limit: u64,
) -> Result<(Vec<upload::Model>, Option<Uuid>), DbErr> {
    let mut query = upload::Entity::find()
        .filter(upload::Column::AccountId.eq(account_id))
        .order_by_desc(upload::Column::Id)
        .limit(limit + 1);
    if let Some(before) = before {
        query = query.filter(upload::Column::Id.lt(before));
    }
    let rows = query.all(db).await?;
    Ok(page_of(rows, limit, |row| row.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_is_found_from_its_key() {
        let (account, id) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(id_of_key(&storage_key(account, id)), Some(id));
        assert_eq!(id_of_key(&format!("inputs/ab/{id}-person_image")), None);
        assert_eq!(id_of_key("uploads/x"), None);
    }
}
