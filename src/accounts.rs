//! Accounts and their API keys. A key is 32 random bytes shown once at creation; only its
//! SHA-256 is stored, which is enough for a secret of that entropy and keeps lookups to one
//! indexed equality.
use atelier_entities::account;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait,
    QueryFilter,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const API_KEY_PREFIX: &str = "atl_";

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

pub async fn create<C: ConnectionTrait>(
    db: &C,
    name: Option<String>,
    now: DateTime<Utc>,
) -> Result<NewAccount, DbErr> {
    let api_key = random_token(API_KEY_PREFIX);
    let account = account::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name),
        api_key_hash: Set(hash_secret(&api_key)),
        created_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(NewAccount { account, api_key })
}

pub async fn find_by_api_key<C: ConnectionTrait>(
    db: &C,
    api_key: &str,
) -> Result<Option<account::Model>, DbErr> {
    if !api_key.starts_with(API_KEY_PREFIX) {
        return Ok(None);
    }
    account::Entity::find()
        .filter(account::Column::ApiKeyHash.eq(hash_secret(api_key)))
        .one(db)
        .await
}

pub async fn find<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
) -> Result<Option<account::Model>, DbErr> {
    account::Entity::find_by_id(account_id).one(db).await
}
