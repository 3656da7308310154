//! One file from a `multipart/form-data` body, as a browser form or `curl -F file=@image.png`
//! sends it: exactly one part, named `file`, read into memory up to a limit. Any other part is
//! refused rather than ignored, so that a client sending the wrong form learns it at once.
use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};
use futures::StreamExt;

use super::error::ApiError;

/// The name the file part must have.
pub const FILE_PART: &str = "file";

/// What the boundaries and part headers around the file may add to the body, in bytes.
const FRAMING_BYTES: usize = 16 * 1024;

/// The file part: its declared `Content-Type` (if any) and its bytes.
pub struct FilePart {
    pub content_type: Option<String>,
    pub bytes: web::BytesMut,
}

/// Whether the request's body is `multipart/form-data`.
pub fn is_form_data(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("multipart/form-data"))
}

/// Reads the body's one file part of at most `limit` bytes (413 past it, and past `limit` plus
/// the framing for the whole body, however many parts it has).
pub async fn one_file(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<FilePart, ApiError> {
    let body_limit = limit.saturating_add(FRAMING_BYTES);
    let mut seen = 0_usize;
    let bounded = payload.map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len();
        if seen > body_limit {
            return Err(PayloadError::Overflow);
        }
        Ok(chunk)
    });
    let mut form = Multipart::new(request.headers(), bounded);
    let mut field = match form.next().await {
        None => return Err(missing_file()),
        Some(field) => field.map_err(|error| refused(error, limit))?,
    };
    if field.name() != Some(FILE_PART) {
        return Err(unexpected_part(&field));
    }
    let content_type = field
        .content_type()
        .map(|mime| mime.essence_str().to_owned());
    let bytes = read_part(&mut field, limit).await?;
    drop(field);
    if let Some(extra) = form.next().await {
        let extra = extra.map_err(|error| refused(error, limit))?;
        return Err(unexpected_part(&extra));
    }
    Ok(FilePart {
        content_type,
        bytes,
    })
}

/// The part's bytes, refused (413) as soon as they grow past `limit`.
async fn read_part(field: &mut Field, limit: usize) -> Result<web::BytesMut, ApiError> {
    let mut bytes = web::BytesMut::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|error| refused(error, limit))?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn missing_file() -> ApiError {
    ApiError::invalid(
        "missing_file",
        format!("the form has no file: send one part named {FILE_PART:?}"),
    )
}

fn unexpected_part(field: &Field) -> ApiError {
    let name: String = field.name().unwrap_or_default().chars().take(64).collect();
    ApiError::invalid(
        "unexpected_part",
        format!("part {name:?}: the form takes one part, named {FILE_PART:?}, and nothing else"),
    )
}

/// A body the parser gave up on: too large (413) or not a well-formed form (400).
fn refused(error: MultipartError, limit: usize) -> ApiError {
    match error {
        MultipartError::Payload(PayloadError::Overflow) => ApiError::too_large(limit),
        error => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_multipart",
            format!("the multipart/form-data body does not parse: {error}"),
        ),
    }
}
