//! JSON from the ops API as HTML: the dashboard shows what the API answers, through the same
//! handlers, so a page and a script see the same thing. Objects become key/value tables,
//! lists of objects become tables with a column per key, and ids of generations link to their
//! page.
use actix_web::HttpResponse;
use maud::{Markup, html};
use serde_json::Value;

use super::form::Query;
use crate::api::error::ApiError;

/// The JSON an ops handler answered, or its error.
pub async fn json(answer: Result<HttpResponse, ApiError>) -> Result<Value, ApiError> {
    let response = answer?;
    let bytes = actix_web::body::to_bytes(response.into_body())
        .await
        .map_err(|_| ApiError::internal("an ops answer could not be read"))?;
    serde_json::from_slice(&bytes).map_err(ApiError::internal)
}

/// An error the page shows in place of what it asked for.
pub fn error(error: &ApiError) -> Markup {
    html! { p class="error" id="error" { (error.code) ": " (error.message) } }
}

/// Any value: nested objects and lists as tables.
pub fn value(value: &Value) -> Markup {
    match value {
        Value::Object(_) => object(value),
        Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
            table(items, None)
        }
        Value::Array(items) if items.is_empty() => html! { span class="note" { "none" } },
        Value::Array(items) => html! {
            @for (index, item) in items.iter().enumerate() {
                @if index > 0 { ", " } (scalar(item))
            }
        },
        other => scalar(other),
    }
}

/// An object as a two-column table.
pub fn object(value: &Value) -> Markup {
    let Value::Object(fields) = value else {
        return scalar(value);
    };
    html! {
        table class="fields" {
            @for (key, field) in fields {
                tr { th { (key) } td data-field=(key) { (cell(key, field, None)) } }
            }
        }
    }
}

/// A list of objects as one table, a column per key (in the order first seen); an `id`
/// links to `ids` followed by it, when given.
pub fn table(items: &[Value], ids: Option<&str>) -> Markup {
    let mut keys: Vec<&str> = Vec::new();
    for item in items {
        if let Value::Object(fields) = item {
            for key in fields.keys() {
                if !keys.contains(&key.as_str()) {
                    keys.push(key);
                }
            }
        }
    }
    columns(items, &keys, ids)
}

/// A list of objects as one table with the columns `keys`, in that order: what a page's
/// reader looks at first, the whole row being one click away.
pub fn columns(items: &[Value], keys: &[&str], ids: Option<&str>) -> Markup {
    html! {
        table {
            tr { @for key in keys { th { (key) } } }
            @for item in items {
                tr {
                    @for key in keys {
                        td data-field=(key) {
                            (cell(key, item.get(*key).unwrap_or(&Value::Null), ids))
                        }
                    }
                }
            }
        }
    }
}

/// One field: a generation's id links to its page (and an `id` to `ids`); nested values as
/// tables.
fn cell(key: &str, field: &Value, ids: Option<&str>) -> Markup {
    match (key, field, ids) {
        ("id", Value::String(id), Some(prefix)) => html! { a href={ (prefix) (id) } { (id) } },
        ("generation_id" | "retry_of" | "retried_as", Value::String(id), _) => {
            html! { a href={ "/ops/generations/" (id) } { (id) } }
        }
        (_, Value::Object(_) | Value::Array(_), _) => value(field),
        _ => scalar(field),
    }
}

fn scalar(value: &Value) -> Markup {
    match value {
        Value::Null => html! { span class="note" { "—" } },
        Value::String(text) => match chrono::DateTime::parse_from_rfc3339(text) {
            // An instant to the second, in UTC; the exact value on hover.
            Ok(at) => html! {
                time datetime=(text) title=(text) { (at.naive_utc().format("%Y-%m-%d %H:%M:%S")) }
            },
            Err(_) => html! { (text) },
        },
        other => html! { (other.to_string()) },
    }
}

/// The link to the page after this one: the same query (filters kept) with `cursor` replaced.
pub fn next_page(query: &Query, cursor: &str) -> String {
    let kept = query.0.iter().filter(|(key, _)| key != "cursor");
    let encoded = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .append_pair("cursor", cursor)
        .finish();
    format!("?{encoded}")
}

/// A filter form that reloads `action` with its fields in the URL, each showing its value in
/// `query`. `fields` are (query parameter, label, placeholder).
pub fn filters(action: &str, fields: &[(&str, &str, &str)], query: &Query) -> Markup {
    html! {
        form class="filters" method="get" action=(action) {
            @for (name, label, placeholder) in fields {
                label { (label) " "
                    input name=(name) value=(query.value(name)) placeholder=(placeholder);
                }
                " "
            }
            button type="submit" id="filter" { "Filter" }
        }
    }
}
