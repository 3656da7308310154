//! What a dashboard form sent (URL-encoded, as htmx posts a form), read into our own error
//! shape, and turned into the JSON body of the ops handler that does the work. The dashboard
//! never checks an input itself: the ops API's handler does, so a page and a script are
//! refused for the same reasons.
use actix_web::HttpResponse;
use actix_web::web::{self, Bytes};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::api::error::ApiError;
use crate::api::json::ApiJson;

/// The most a dashboard form may send; its longest field, a reason, is 1000 bytes.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// A form's fields, in the order sent.
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn parse(body: &Bytes) -> Result<Self, ApiError> {
        if body.len() > MAX_FORM_BYTES {
            return Err(ApiError::invalid(
                "form_too_large",
                format!("a dashboard form is at most {MAX_FORM_BYTES} bytes"),
            ));
        }
        let malformed = || ApiError::malformed("malformed_form", "the form could not be read");
        let text = std::str::from_utf8(body).map_err(|_| malformed())?;
        web::Query::<Vec<(String, String)>>::from_query(text)
            .map(|fields| Fields(fields.into_inner()))
            .map_err(|_| malformed())
    }

    /// The field `name`, trimmed, when it was sent and is not blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// The body of an action that takes only a reason: the form's `reason`, if any.
    pub fn reason_body<T: DeserializeOwned>(&self) -> Result<ApiJson<T>, ApiError> {
        body(serde_json::json!({ "reason": self.get("reason") }))
    }

    /// The non-blank fields among `names`, as a JSON object of strings.
    pub fn object(&self, names: &[&str]) -> Value {
        let mut object = Map::new();
        for name in names {
            if let Some(value) = self.get(name) {
                object.insert((*name).to_owned(), Value::String(value.to_owned()));
            }
        }
        Value::Object(object)
    }
}

/// The body an ops handler takes, from the JSON a form was turned into; a field the handler
/// refuses is refused the way the API refuses it.
pub fn body<T: DeserializeOwned>(value: Value) -> Result<ApiJson<T>, ApiError> {
    let bytes = serde_json::to_vec(&value).map_err(ApiError::internal)?;
    crate::api::json::parse(&bytes).map(ApiJson)
}

/// What an action answers the page: 204 when it was done (the page then refreshes its live
/// parts), else the ops API's error, which the page shows.
pub fn done(answer: Result<HttpResponse, ApiError>) -> HttpResponse {
    match answer {
        Ok(_) => HttpResponse::NoContent().finish(),
        Err(error) => error.into_response(),
    }
}

/// A page's query string as pairs, in the order given: the filters a page shows back in its
/// form and keeps in its links. A malformed one reads as empty here; the ops handler the page
/// asks refuses it by name.
#[derive(Debug, Default)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn of(request: &actix_web::HttpRequest) -> Self {
        web::Query::<Vec<(String, String)>>::from_query(request.query_string())
            .map(|query| Query(query.into_inner()))
            .unwrap_or_default()
    }

    /// The value of `name`, or nothing.
    pub fn value(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    }
}
