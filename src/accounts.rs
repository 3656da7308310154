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
