//! Accounts and their API keys, the owner of the `accounts` and `api_keys` tables.
//!
//! A key is 32 random bytes shown once, when it is made; only its SHA-256 is stored, which is
//! enough for a secret of that entropy and keeps the check to one indexed equality, whose time
//! does not depend on how much of a guess is right.
//!
//! Rotating makes a new key and gives every other key of the account a grace period: each
//! still works until `now + grace` (or its own earlier expiry), then answers 401. An account
//! holds at most `MAX_LIVE_KEYS` keys that still work; expired ones are deleted at the next
//! rotation.
use atelier_actors::db::{begin_write, is_postgres};
use atelier_entities::{account, api_key};
use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, ExprTrait, JoinType, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex(&bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Longest account name, in characters.
pub const MAX_NAME_LEN: usize = 200;

/// The rule for an account's name, the same for the HTTP API and the CLI: absent, or 1 to
/// `MAX_NAME_LEN` characters that are not all whitespace.
pub fn check_name(name: Option<&str>) -> Result<(), String> {
    match name {
        Some(name) if name.trim().is_empty() || name.chars().count() > MAX_NAME_LEN => Err(
            format!("must be 1 to {MAX_NAME_LEN} characters, not only whitespace"),
        ),
        _ => Ok(()),
    }
}

pub struct NewAccount {
    pub account: account::Model,
    /// Shown to the caller once; not recoverable afterwards.
    pub api_key: String,
}

/// Makes the account and its first key in one transaction.
pub async fn create(
    db: &DatabaseConnection,
    name: Option<String>,
    now: DateTime<Utc>,
) -> Result<NewAccount, DbErr> {
    let api_key = new_secret();
    let txn = begin_write(db).await?;
    let account = account::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name),
        // The column predates `api_keys` and must be unique: it keeps the first key's hash.
        api_key_hash: Set(hash_secret(&api_key)),
        created_at: Set(now),
        disabled_at: Set(None),
        disabled_reason: Set(None),
    }
    .insert(&*txn)
    .await?;
    insert_key(&*txn, account.id, &api_key, now).await?;
    txn.commit().await?;
    Ok(NewAccount { account, api_key })
}

pub async fn find<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
) -> Result<Option<account::Model>, DbErr> {
    account::Entity::find_by_id(account_id).one(db).await
}

pub const API_KEY_PREFIX: &str = "atl_";

/// Most keys that still work one account may hold: its current key and those still in their
/// grace period.
pub const MAX_LIVE_KEYS: u64 = 10;

/// A key just made: the row, and the key itself, which is never shown again.
pub struct NewKey {
    pub row: api_key::Model,
    pub secret: String,
}

/// A new key, to be stored with `insert_key`.
fn new_secret() -> String {
    random_token(API_KEY_PREFIX)
}

/// Stores the key `secret` for the account (in the caller's transaction).
async fn insert_key<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<api_key::Model, DbErr> {
    let last_four = secret[secret.len() - 4..].to_owned();
    api_key::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(account_id),
        key_hash: Set(hash_secret(secret)),
        last_four: Set(Some(last_four)),
        created_at: Set(now),
        expires_at: Set(None),
    }
    .insert(db)
    .await
}

/// The account whose key `secret` is, if that key still works at `now`: one query, as every
/// request makes it.
pub async fn find_by_api_key<C: ConnectionTrait>(
    db: &C,
    secret: &str,
    now: DateTime<Utc>,
) -> Result<Option<account::Model>, DbErr> {
    if !secret.starts_with(API_KEY_PREFIX) {
        return Ok(None);
    }
    let key_of_account = api_key::Entity::belongs_to(account::Entity)
        .from(api_key::Column::AccountId)
        .to(account::Column::Id)
        .into();
    account::Entity::find()
        .join_rev(JoinType::InnerJoin, key_of_account)
        .filter(api_key::Column::KeyHash.eq(hash_secret(secret)))
        .filter(works_at(now))
        .one(db)
        .await
}

/// Keys that have not expired at `now`.
fn works_at(now: DateTime<Utc>) -> SimpleExpr {
    api_key::Column::ExpiresAt
        .is_null()
        .or(api_key::Column::ExpiresAt.gt(now))
}

/// The account's keys that still work at `now`, newest first.
pub async fn live_keys<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<api_key::Model>, DbErr> {
    api_key::Entity::find()
        .filter(api_key::Column::AccountId.eq(account_id))
        .filter(works_at(now))
        .order_by_desc(api_key::Column::Id)
        .limit(MAX_LIVE_KEYS)
        .all(db)
        .await
}

pub enum Rotation {
    Rotated(NewKey),
    /// The account already holds `MAX_LIVE_KEYS` keys that work.
    TooManyKeys,
}

/// Makes a new key and gives the account's other keys until `now + grace` to stop working, in
/// one transaction (the account's row locked on PostgreSQL, so that two rotations take turns).
pub async fn rotate_key(
    db: &DatabaseConnection,
    account_id: Uuid,
    grace: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<Rotation, DbErr> {
    let txn = begin_write(db).await?;
    if is_postgres(db) {
        account::Entity::find_by_id(account_id)
            .lock_exclusive()
            .one(&*txn)
            .await?;
    }
    api_key::Entity::delete_many()
        .filter(api_key::Column::AccountId.eq(account_id))
        .filter(api_key::Column::ExpiresAt.lte(now))
        .exec(&*txn)
        .await?;
    let live = api_key::Entity::find()
        .filter(api_key::Column::AccountId.eq(account_id))
        .count(&*txn)
        .await?;
    if live >= MAX_LIVE_KEYS {
        return Ok(Rotation::TooManyKeys);
    }
    let until = now + grace;
    api_key::Entity::update_many()
        .col_expr(api_key::Column::ExpiresAt, Expr::value(until))
        .filter(api_key::Column::AccountId.eq(account_id))
        .filter(
            api_key::Column::ExpiresAt
                .is_null()
                .or(api_key::Column::ExpiresAt.gt(until)),
        )
        .exec(&*txn)
        .await?;
    let secret = new_secret();
    let row = insert_key(&*txn, account_id, &secret, now).await?;
    txn.commit().await?;
    Ok(Rotation::Rotated(NewKey { row, secret }))
}

/// How a listing shows a key: the prefix and its last four characters.
pub fn masked_key(key: &api_key::Model) -> String {
    format!(
        "{API_KEY_PREFIX}…{}",
        key.last_four.as_deref().unwrap_or("????")
    )
}

/// Longest account search text, in characters.
pub const MAX_QUERY_LEN: usize = MAX_NAME_LEN;

/// One page of accounts matching `query` (every account without one), newest first; `before`
/// is the last id of the previous page. `query` matches an id, an id's prefix (hex digits,
/// hyphens optional) or a piece of the name, ignoring case (ASCII case only on SQLite).
pub async fn search<C: ConnectionTrait>(
    db: &C,
    query: Option<&str>,
    before: Option<Uuid>,
    limit: u64,
) -> Result<(Vec<account::Model>, Option<Uuid>), DbErr> {
    let mut select = account::Entity::find()
        .order_by_desc(account::Column::Id)
        .limit(limit + 1);
    if let Some(query) = query {
        select = select.filter(matching(query));
    }
    if let Some(before) = before {
        select = select.filter(account::Column::Id.lt(before));
    }
    let rows = select.all(db).await?;
    Ok(atelier_actors::db::page_of(rows, limit, |row| row.id))
}

/// Accounts whose name holds `query`, ignoring case, or whose id starts with it.
fn matching(query: &str) -> sea_orm::Condition {
    let escaped: String = query
        .to_lowercase()
        .chars()
        .flat_map(|c| match c {
            '!' | '%' | '_' => vec!['!', c],
            c => vec![c],
        })
        .collect();
    let pattern = sea_orm::sea_query::LikeExpr::new(format!("%{escaped}%")).escape('!');
    let name = Expr::expr(sea_orm::sea_query::Func::lower(Expr::col((
        account::Entity,
        account::Column::Name,
    ))))
    .like(pattern);
    let mut condition = sea_orm::Condition::any().add(name);
    if let Some((low, high)) = id_prefix_range(query) {
        condition = condition.add(account::Column::Id.between(low, high));
    }
    condition
}

/// The ids starting with `prefix` (hex digits, hyphens anywhere, any case), as the range
/// [prefix then zeros, prefix then f's]: ids compare bytewise on both databases, so a range
/// serves the primary key's index where a text match could not.
pub fn id_prefix_range(prefix: &str) -> Option<(Uuid, Uuid)> {
    let digits: String = prefix.chars().filter(|c| *c != '-').collect();
    if digits.is_empty() || digits.len() > 32 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let padded = |fill: char| {
        let mut text = digits.clone();
        text.extend(std::iter::repeat_n(fill, 32 - digits.len()));
        Uuid::parse_str(&text).ok()
    };
    Some((padded('0')?, padded('f')?))
}

/// Disables the account (`Some(reason)`) or enables it (`None`); the account as it is now,
/// `None` when there is no such account. Whether it was already so is the caller's to check.
pub async fn set_disabled<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
    disabled: Option<String>,
    now: DateTime<Utc>,
) -> Result<Option<account::Model>, DbErr> {
    let at = disabled.as_ref().map(|_| now);
    account::Entity::update_many()
        .col_expr(account::Column::DisabledAt, Expr::value(at))
        .col_expr(account::Column::DisabledReason, Expr::value(disabled))
        .filter(account::Column::Id.eq(account_id))
        .exec(db)
        .await?;
    find(db, account_id).await
}

/// Makes every key of the account that still works stop working at `now`; how many did.
/// Revoked keys are kept (expired) until the account's next rotation deletes them.
pub async fn revoke_keys<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let revoked = api_key::Entity::update_many()
        .col_expr(api_key::Column::ExpiresAt, Expr::value(now))
        .filter(api_key::Column::AccountId.eq(account_id))
        .filter(works_at(now))
        .exec(db)
        .await?;
    Ok(revoked.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_prefix_is_a_range_of_ids() {
        let (low, high) = id_prefix_range("0192AB-c").unwrap();
        assert_eq!(low.to_string(), "0192abc0-0000-0000-0000-000000000000");
        assert_eq!(high.to_string(), "0192abcf-ffff-ffff-ffff-ffffffffffff");
        let full = "0192abcd-0000-7000-8000-000000000001";
        assert_eq!(
            id_prefix_range(full),
            Some((full.parse().unwrap(), full.parse().unwrap()))
        );
        for not_hex in ["", "-", "alice", "0192abcg", &"0".repeat(33)] {
            assert_eq!(id_prefix_range(not_hex), None, "{not_hex}");
        }
    }
}
