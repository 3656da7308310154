//! `ApiJson<T>`: a JSON body extractor whose every failure is an `ApiError` naming the
//! problem: 413 past the size limit, 415 for another content type, 400 for broken JSON,
//! 422 for a well-formed body with a missing, unknown or mistyped field (the message names
//! the field's path).
use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{FromRequest, HttpRequest, web};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::error::ApiError;

pub struct ApiJson<T>(pub T);

/// The body size limit, registered as app data.
#[derive(Debug, Clone, Copy)]
pub struct JsonLimit(pub usize);

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = request
            .app_data::<web::Data<JsonLimit>>()
            .map_or(64 * 1024, |limit| limit.0);
        let declared_length = request
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok());
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let mut payload = payload.take();
        Box::pin(async move {
            if declared_length.is_some_and(|length| length > limit) {
                return Err(ApiError::too_large(limit));
            }
            let body = read_limited(&mut payload, limit).await?;
            if body.iter().all(u8::is_ascii_whitespace) {
                // An absent body reads as `{}`: optional fields take their defaults and
                // required ones are reported as missing.
                return parse(b"{}").map(ApiJson);
            }
            if let Some(content_type) = content_type {
                let essence = content_type
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase();
                if essence != "application/json" && !essence.ends_with("+json") {
                    return Err(ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "unsupported_media_type",
                        format!("expected Content-Type: application/json, got {essence}"),
                    ));
                }
            }
            if body.trim_ascii_start().starts_with(b"[") {
                // serde reads a struct from an array too, field by field in order: `[]` made
                // an account. Every body of this API is an object.
                return Err(ApiError::invalid(
                    "invalid_field",
                    "request body: expected a JSON object, not an array",
                ));
            }
            parse(&body).map(ApiJson)
        })
    }
}

/// Parses a JSON body into `T`, classifying failures for the client.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if !inner.is_data() {
            return ApiError::malformed(
                "malformed_json",
                format!("request body is not valid JSON: {inner}"),
            );
        }
        let detail = inner.to_string();
        let detail = detail
            .split(" at line ")
            .next()
            .unwrap_or_default()
            .to_owned();
        let code = if detail.starts_with("unknown field") {
            "unknown_field"
        } else if detail.starts_with("missing field") {
            "missing_field"
        } else {
            "invalid_field"
        };
        let field = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        ApiError::invalid(code, format!("{field}{detail}"))
    })
}

/// Reads a whole body, refusing it (413) as soon as it grows past `limit`, whatever
/// `Content-Length` said.
pub async fn read_limited(payload: &mut Payload, limit: usize) -> Result<web::BytesMut, ApiError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|error| ApiError::malformed("unreadable_body", error.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
