//! Query strings of the list endpoints, parsed in one place. Each endpoint names the parameters
//! it reads; an unknown name or a name given twice is refused with 422 (and a string that does
//! not decode with 400) before the endpoint reads anything, so that a misspelt filter never
//! quietly lists everything.
use std::collections::HashMap;

use actix_web::{HttpRequest, web};
use serde::Serialize;

use super::error::ApiError;

/// The page size when `limit` is absent, and the largest one may ask for.
pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 200;

/// Longest parameter name quoted back in an error message.
const MAX_QUOTED: usize = 64;

/// A page of a list endpoint: its items, and the cursor that asks for the next page while
/// more follow.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    /// `null` on the last page.
    #[schema(value_type = Option<String>)]
    pub next_cursor: Option<C>,
}

/// A query string whose every parameter the endpoint knows, each given at most once.
#[derive(Debug)]
pub struct Params {
    values: HashMap<String, String>,
}

impl Params {
    /// Parses `request`'s query string, allowing only the names in `allowed`.
    pub fn parse(request: &HttpRequest, allowed: &[&str]) -> Result<Self, ApiError> {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(request.query_string())
            .map_err(|error| {
                ApiError::malformed("malformed_query", format!("query string: {error}"))
            })?
            .into_inner();
        let mut values = HashMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            let quoted: String = name.chars().take(MAX_QUOTED).collect();
            if !allowed.contains(&name.as_str()) {
                let known = if allowed.is_empty() {
                    "it takes none".to_owned()
                } else {
                    format!("it takes {}", allowed.join(", "))
                };
                return Err(ApiError::invalid(
                    "unknown_parameter",
                    format!("{quoted}: not a parameter of this endpoint; {known}"),
                ));
            }
            if values.insert(name, value).is_some() {
                return Err(ApiError::invalid(
                    "duplicate_parameter",
                    format!("{quoted}: given more than once"),
                ));
            }
        }
        Ok(Self { values })
    }

    /// The value of `name` as `parse` reads it; a value it refuses is 422 `code`, with a
    /// message saying what `name` must be.
    pub fn parsed<T>(
        &self,
        name: &str,
        code: &'static str,
        must_be: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ApiError> {
        match self.values.get(name) {
            None => Ok(None),
            Some(raw) => parse(raw)
                .map(Some)
                .ok_or_else(|| ApiError::invalid(code, format!("{name}: {must_be}"))),
        }
    }

    /// `limit`: 1 to `MAX_LIMIT`, `DEFAULT_LIMIT` when absent.
    pub fn limit(&self) -> Result<u64, ApiError> {
        let must_be = format!("must be an integer from 1 to {MAX_LIMIT}");
        let limit = self.parsed("limit", "invalid_limit", &must_be, |raw| {
            raw.parse::<u64>()
                .ok()
                .filter(|limit| (1..=MAX_LIMIT).contains(limit))
        })?;
        Ok(limit.unwrap_or(DEFAULT_LIMIT))
    }

    /// `cursor`, as `parse` reads the cursors this endpoint hands out.
    pub fn cursor<T>(&self, parse: impl FnOnce(&str) -> Option<T>) -> Result<Option<T>, ApiError> {
        self.parsed(
            "cursor",
            "invalid_cursor",
            "not a cursor this endpoint returned",
            parse,
        )
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn parse(query: &str, allowed: &[&str]) -> Result<Params, ApiError> {
        let request = TestRequest::with_uri(&format!("/x?{query}")).to_http_request();
        Params::parse(&request, allowed)
    }

    #[test]
    fn only_known_parameters_once_each() {
        assert_eq!(parse("limit=5", &["limit"]).unwrap().limit().unwrap(), 5);
        assert_eq!(
            parse("", &["limit"]).unwrap().limit().unwrap(),
            DEFAULT_LIMIT
        );
        assert_eq!(
            parse("limt=5", &["limit"]).unwrap_err().code,
            "unknown_parameter"
        );
        assert_eq!(parse("a=1", &[]).unwrap_err().code, "unknown_parameter");
        assert_eq!(
            parse("limit=5&limit=6", &["limit"]).unwrap_err().code,
            "duplicate_parameter"
        );
        for bad in ["limit=0", "limit=201", "limit=-1", "limit=", "limit=1.5"] {
            let params = parse(bad, &["limit"]).unwrap();
            assert_eq!(params.limit().unwrap_err().code, "invalid_limit", "{bad}");
        }
    }
}
