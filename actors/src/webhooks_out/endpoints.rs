//! The one owner of `webhook_endpoints`: registering, listing and deleting an account's
//! endpoints, which destinations may be registered, and which endpoints an event goes to.
//!
//! Registering and deleting lock the account's row (as the ledger does in every terminal
//! transition's transaction) and take their time under that lock. So an endpoint is either
//! seen by a transition's outbox write, or was created after the transition's time; and a
//! deletion the write did not see happened after it, or the write counts the endpoint as live
//! (`live_at`). That is what lets `verify` say which deliveries must exist.
use std::sync::Arc;

use atelier_entities::account;
use atelier_entities::webhook_endpoint::{self, Model as Endpoint};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::event::EventType;
use crate::Clock;
use crate::db;
use crate::outbound::Fetcher;

/// Longest endpoint URL accepted, in bytes (the column's size).
pub const MAX_URL_LEN: usize = 2048;
/// Random bytes behind a `whsec_` secret (Standard Webhooks: 24 to 64).
const SECRET_BYTES: usize = 32;

/// Why a URL cannot be an endpoint (answered 422).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BadDestination(pub String);

/// `raw` as an endpoint URL: absolute `https://` (or `http://` to an allowed host), no
/// credentials or fragment, at most `MAX_URL_LEN` bytes, and not a destination the
/// outgoing-fetch policy refuses on its face (a private or special IP literal, `localhost`).
/// Host names are judged again on every delivery, when connecting.
pub fn check_destination(raw: &str, policy: &Fetcher) -> Result<url::Url, BadDestination> {
    let bad = |why: &str| Err(BadDestination(format!("url: {why}")));
    if raw.len() > MAX_URL_LEN {
        return bad(&format!("longer than {MAX_URL_LEN} bytes"));
    }
    let Ok(url) = url::Url::parse(raw) else {
        return bad("not an absolute URL");
    };
    let Some(host) = url.host_str().filter(|host| !host.is_empty()) else {
        return bad("names no host");
    };
    let allowed = policy.allows(host);
    match url.scheme() {
        "https" => {}
        "http" if allowed => {}
        _ => return bad("must be https://"),
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return bad("must not carry credentials or a fragment");
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    if !allowed && (name == "localhost" || name.ends_with(".localhost")) {
        return bad("localhost is not a public destination");
    }
    if let Err(refused) = policy.check(&url) {
        return bad(&refused.0);
    }
    Ok(url)
}

/// The event types stored for an endpoint, in one column.
fn events_column(events: &[EventType]) -> String {
    let names: Vec<&str> = events.iter().map(|event| event.as_str()).collect();
    names.join(",")
}

/// The events `endpoint` subscribes to.
pub fn events_of(endpoint: &Endpoint) -> Vec<EventType> {
    endpoint
        .events
        .split(',')
        .filter_map(EventType::parse)
        .collect()
}

/// Whether `endpoint` hears about `event`.
pub fn subscribes(endpoint: &Endpoint, event: EventType) -> bool {
    events_of(endpoint).contains(&event)
}

/// Whether `endpoint` was registered and not yet deleted at `at`.
pub fn live_at(endpoint: &Endpoint, at: DateTime<Utc>) -> bool {
    endpoint.created_at <= at && endpoint.deleted_at.is_none_or(|deleted| deleted > at)
}

fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// What registering answers (not `Debug`: it carries the secret).
pub enum Registered {
    /// The new endpoint, its secret included (shown to the client this once).
    Created(Endpoint),
    /// The account already has `limit` endpoints.
    TooMany { limit: usize },
}

/// Registers `url` for `events` (checked by the caller with `check_destination`).
pub async fn register(
    db: &DatabaseConnection,
    clock: &Arc<dyn Clock>,
    account_id: Uuid,
    url: &url::Url,
    events: &[EventType],
    limit: usize,
) -> Result<Registered, DbErr> {
    db::with_retries("webhook endpoint registration", || async {
        let txn = db::begin_write(db).await?;
        let now = locked_now(&*txn, account_id, clock).await?;
        let live = webhook_endpoint::Entity::find()
            .filter(webhook_endpoint::Column::AccountId.eq(account_id))
            .filter(webhook_endpoint::Column::DeletedAt.is_null())
            .count(&*txn)
            .await?;
        if live >= limit as u64 {
            return Ok(Registered::TooMany { limit });
        }
        let endpoint = webhook_endpoint::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(account_id),
            url: Set(url.to_string()),
            events: Set(events_column(events)),
            secret: Set(new_secret()),
            created_at: Set(now),
            deleted_at: Set(None),
        }
        .insert(&*txn)
        .await?;
        txn.commit().await?;
        Ok(Registered::Created(endpoint))
    })
    .await
}

/// Locks the account's row (on PostgreSQL; SQLite's write transaction excludes every other
/// writer already) and reads the clock under the lock (see the module's comment).
async fn locked_now<C: ConnectionTrait>(
    txn: &C,
    account_id: Uuid,
    clock: &Arc<dyn Clock>,
) -> Result<DateTime<Utc>, DbErr> {
    let _: Vec<Uuid> = account::Entity::find()
        .select_only()
        .column(account::Column::Id)
        .filter(account::Column::Id.eq(account_id))
        .lock_exclusive()
        .into_tuple()
        .all(txn)
        .await?;
    Ok(clock.now())
}

/// Deletes the account's endpoint: `false` when it has none by that id. Its pending
/// deliveries are not sent.
pub async fn delete(
    db: &DatabaseConnection,
    clock: &Arc<dyn Clock>,
    account_id: Uuid,
    id: Uuid,
) -> Result<bool, DbErr> {
    db::with_retries("webhook endpoint deletion", || async {
        let txn = db::begin_write(db).await?;
        let now = locked_now(&*txn, account_id, clock).await?;
        let deleted = webhook_endpoint::Entity::update_many()
            .set(webhook_endpoint::ActiveModel {
                deleted_at: Set(Some(now)),
                ..Default::default()
            })
            .filter(webhook_endpoint::Column::Id.eq(id))
            .filter(webhook_endpoint::Column::AccountId.eq(account_id))
            .filter(webhook_endpoint::Column::DeletedAt.is_null())
            .exec(&*txn)
            .await?;
        txn.commit().await?;
        Ok(deleted.rows_affected == 1)
    })
    .await
}

/// The account's live endpoints, oldest first (at most `max_endpoints_per_account`).
pub async fn list<C: ConnectionTrait>(db: &C, account_id: Uuid) -> Result<Vec<Endpoint>, DbErr> {
    webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::AccountId.eq(account_id))
        .filter(webhook_endpoint::Column::DeletedAt.is_null())
        .order_by_asc(webhook_endpoint::Column::Id)
        .all(db)
        .await
}

/// The account's live endpoint `id`; another account's, a deleted or an unknown one is `None`.
pub async fn find_owned<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
    id: Uuid,
) -> Result<Option<Endpoint>, DbErr> {
    webhook_endpoint::Entity::find_by_id(id)
        .filter(webhook_endpoint::Column::AccountId.eq(account_id))
        .filter(webhook_endpoint::Column::DeletedAt.is_null())
        .one(db)
        .await
}

/// The endpoints of `accounts` live at `at` or registered since (an outbox write, under the
/// accounts' locks).
pub async fn subscribed<C: ConnectionTrait>(
    db: &C,
    accounts: impl IntoIterator<Item = Uuid>,
    at: DateTime<Utc>,
) -> Result<Vec<Endpoint>, DbErr> {
    webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::AccountId.is_in(accounts))
        .filter(
            Condition::any()
                .add(webhook_endpoint::Column::DeletedAt.is_null())
                .add(webhook_endpoint::Column::DeletedAt.gt(at)),
        )
        .all(db)
        .await
}

/// Endpoints by id, deleted ones included (the sender's look-up).
pub async fn by_ids<C: ConnectionTrait>(
    db: &C,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<Vec<Endpoint>, DbErr> {
    webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::Id.is_in(ids))
        .all(db)
        .await
}

/// Every endpoint ever registered, deleted ones included, in pages after `after` (`verify`).
pub async fn page_all<C: ConnectionTrait>(
    db: &C,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Endpoint>, DbErr> {
    let mut query = webhook_endpoint::Entity::find()
        .order_by_asc(webhook_endpoint::Column::Id)
        .limit(limit);
    if let Some(after) = after {
        query = query.filter(webhook_endpoint::Column::Id.gt(after));
    }
    query.all(db).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, allowed: &[&str]) -> Result<String, String> {
        let policy = Fetcher::new(allowed.iter().map(|host| host.to_string())).unwrap();
        check_destination(raw, &policy)
            .map(|url| url.to_string())
            .map_err(|bad| bad.0)
    }

    #[test]
    fn private_literals_localhost_and_plain_http_are_refused_unless_allowed() {
        assert!(check("https://hooks.example.com/atelier", &[]).is_ok());
        for refused in [
            "https://127.0.0.1/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/hook",
            "https://[::ffff:10.0.0.1]/hook",
            "https://localhost/hook",
            "https://api.localhost./hook",
            "http://hooks.example.com/plain",
            "https://user:pass@hooks.example.com/",
            "ftp://hooks.example.com/",
            "not a url",
        ] {
            assert!(check(refused, &[]).is_err(), "{refused} accepted");
        }
        assert!(
            check(
                &format!("https://a.example/{}", "x".repeat(MAX_URL_LEN)),
                &[]
            )
            .is_err()
        );
        assert!(check("http://127.0.0.1:9000/hook", &["127.0.0.1"]).is_ok());
        assert!(check("http://localhost:9000/hook", &["localhost"]).is_ok());
    }

    #[test]
    fn an_endpoint_is_live_from_its_creation_until_its_deletion() {
        let at = |secs: i64| DateTime::from_timestamp(secs, 0).unwrap();
        let endpoint = Endpoint {
            id: Uuid::nil(),
            account_id: Uuid::nil(),
            url: "https://hooks.example.com".into(),
            events: "generation.settled".into(),
            secret: String::new(),
            created_at: at(10),
            deleted_at: Some(at(20)),
        };
        assert!(!live_at(&endpoint, at(9)));
        assert!(live_at(&endpoint, at(10)) && live_at(&endpoint, at(19)));
        assert!(!live_at(&endpoint, at(20)));
        assert!(subscribes(&endpoint, EventType::Settled));
        assert!(!subscribes(&endpoint, EventType::Released));
        assert!(new_secret().starts_with("whsec_"));
        assert!(crate::providers::signature::Secret::parse(&new_secret()).is_ok());
    }
}
