//! `POST /v1/api-keys` rotates the caller's key (the new one is shown once; the others keep
//! working for `api_keys.rotation_grace_secs`), `GET /v1/api-keys` lists the keys that still
//! work, masked.
use actix_web::{HttpRequest, HttpResponse, web};
use atelier_entities::api_key;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Client;
use super::error::ApiError;
use super::openapi::ErrorBody;
use super::query::Params;
use crate::accounts::{self, MAX_LIVE_KEYS, Rotation};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
struct KeyView {
    id: Uuid,
    /// The prefix and the last four characters (`????` for a key made before keys were
    /// listed).
    masked: String,
    created_at: DateTime<Utc>,
    /// When the key stops working; absent for a key without a grace period running.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
}

impl From<&api_key::Model> for KeyView {
    fn from(key: &api_key::Model) -> Self {
        Self {
            id: key.id,
            masked: accounts::masked_key(key),
            created_at: key.created_at,
            expires_at: key.expires_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct Rotated {
    #[serde(flatten)]
    key: KeyView,
    /// The key itself: shown this once.
    api_key: String,
    /// Until when the account's other keys keep working.
    previous_keys_expire_at: DateTime<Utc>,
}

#[utoipa::path(
    post, path = "/v1/api-keys", tag = "client",
    security(("api_key" = [])),
    responses(
        (status = 201, description = "The new key, shown this once; the others keep working until `previous_keys_expire_at`", body = Rotated),
        (status = 409, description = "`too_many_keys`: the account holds 10 keys that work", body = ErrorBody),
        (status = 422, description = "`unknown_parameter`: this endpoint takes no query parameter", body = ErrorBody)
    )
)]
pub async fn rotate(
    Client(account): Client,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    Params::parse(&request, &[])?;
    let now = state.clock.now();
    let secs = state.settings.api_keys.rotation_grace_secs;
    let grace = chrono::Duration::seconds(i64::try_from(secs).map_err(ApiError::internal)?);
    match accounts::rotate_key(&state.db, account.id, grace, now).await? {
        Rotation::Rotated(new) => {
            tracing::info!(account_id = %account.id, key_id = %new.row.id, "API key rotated");
            Ok(HttpResponse::Created().json(Rotated {
                key: KeyView::from(&new.row),
                api_key: new.secret,
                previous_keys_expire_at: now + grace,
            }))
        }
        Rotation::TooManyKeys => Err(ApiError::conflict(
            "too_many_keys",
            format!(
                "this account already holds {MAX_LIVE_KEYS} keys that work; rotate again once \
                 the grace period of an older one has ended"
            ),
        )),
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct KeyList {
    items: Vec<KeyView>,
}

#[utoipa::path(
    get, path = "/v1/api-keys", tag = "client",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The keys that still work, masked, newest first", body = KeyList),
        (status = 422, description = "`unknown_parameter`: this endpoint takes no query parameter", body = ErrorBody)
    )
)]
pub async fn list(
    Client(account): Client,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    Params::parse(&request, &[])?;
    let keys = accounts::live_keys(&state.db, account.id, state.clock.now()).await?;
    Ok(HttpResponse::Ok().json(KeyList {
        items: keys.iter().map(KeyView::from).collect(),
    }))
}
