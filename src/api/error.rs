//! The one error shape of the HTTP API: `{"error": {"code", "message"}}` with a fitting status.
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn malformed(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn forbidden_with(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn gone(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, code, message)
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds {limit} bytes"),
        )
    }

    /// A failure of ours; the detail goes to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; it has been logged",
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header(("Retry-After", "1"));
        }
        response.json(json!({"error": {"code": self.code, "message": self.message}}))
    }
}

impl From<sea_orm::DbErr> for ApiError {
    /// A statement that waited too long (a lock held elsewhere, past `lock_timeout` or
    /// `statement_timeout`) is worth retrying: 503 `database_busy`, as a stalled write is.
    /// Anything else is ours to fix.
    fn from(error: sea_orm::DbErr) -> Self {
        if atelier_actors::db::is_stall(&error) {
            tracing::warn!(%error, "request refused: the database is busy");
            return Self::busy();
        }
        Self::internal(error)
    }
}

impl ApiError {
    /// 503 `database_busy`: what waited too long for the database was rolled back.
    pub fn busy() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_busy",
            "the database is busy; nothing was written, try again shortly",
        )
    }
}

impl From<atelier_actors::batcher::BatchError> for ApiError {
    /// A write that waited too long (a lock held elsewhere) is worth retrying: 503 with
    /// `Retry-After`; anything else is ours to fix.
    fn from(error: atelier_actors::batcher::BatchError) -> Self {
        if error.is_stall() {
            tracing::warn!(%error, "write refused: the database is busy");
            return Self::busy();
        }
        Self::internal(error)
    }
}

impl From<atelier_actors::storage::StorageError> for ApiError {
    fn from(error: atelier_actors::storage::StorageError) -> Self {
        Self::internal(error)
    }
}
