//! Operator reads and checks that may meet a large database run within a time limit, and
//! answer 504 with their endpoint's own code past it.
use std::future::Future;
use std::time::Duration;

use actix_web::http::StatusCode;
use sea_orm::DbErr;

use crate::api::error::ApiError;

/// `work`, cut at `limit`: 504 `code` with `message` when it ran out of time, whether our timer
/// or PostgreSQL cut it (`statement_timeout`, set to the same limit, or `lock_timeout` for a
/// read waiting on a lock held elsewhere).
pub async fn within<T>(
    limit: Duration,
    code: &'static str,
    message: &str,
    work: impl Future<Output = Result<T, DbErr>>,
) -> Result<T, ApiError> {
    let timed_out = || ApiError::new(StatusCode::GATEWAY_TIMEOUT, code, message);
    match tokio::time::timeout(limit, work).await {
        Err(_) => Err(timed_out()),
        Ok(Err(error)) if atelier_actors::db::is_stall(&error) => Err(timed_out()),
        Ok(result) => Ok(result?),
    }
}
