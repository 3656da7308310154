//! The OpenAPI 3.1 document (`GET /openapi.json`) and the interactive docs (`/docs`).
//!
//! Each operation comes from its handler's `#[utoipa::path]` annotation, collected where the
//! resource is registered (`resource.rs`). The answers every endpoint of a kind can give
//! (docs/api.md, Errors) are added here, once, rather than on every annotation: 401, 403 and
//! 503 `database_busy` where the operation needs credentials, the body errors where it takes
//! a JSON body, 500 everywhere.
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Components, OpenApi, Ref, RefOr, Response};
use utoipa::{Modify, ToSchema};
use utoipa_swagger_ui::SwaggerUi;

/// Every error's body: `{"error": {"code", "message"}}` (`error.rs`).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
struct ErrorDetail {
    /// Stable and machine-readable, `snake_case`.
    code: String,
    /// For people; may change.
    message: String,
}

/// Raw bytes (an image, a stored object): the body of what is not JSON.
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> RefOr<utoipa::openapi::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Binary,
            )))
            .into()
    }
}

impl ToSchema for Binary {}

/// The security schemes the annotations name: `security(("api_key" = []))` and so on.
pub const API_KEY: &str = "api_key";
pub const ADMIN: &str = "admin_token";
pub const OPERATOR: &str = "operator_token";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Atelier",
        description = "A durable workflow engine for paid AI image generations. docs/api.md is \
                       the contract in prose; this document is generated from the handlers.",
        license(name = "MIT OR Apache-2.0")
    ),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes)
)]
struct Base;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Components::default);
        for (name, what) in [
            (API_KEY, "an account's API key (`atl_…`)"),
            (ADMIN, "the admin token (`ATELIER_ADMIN_TOKEN`)"),
            (
                OPERATOR,
                "the admin token or the read-only operator token (`ATELIER_OPS_READ_TOKEN`)",
            ),
        ] {
            let scheme = Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(format!("`Authorization: Bearer <token>`: {what}")))
                .build();
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

/// The document before the routes add their operations.
pub fn base() -> OpenApi {
    <Base as utoipa::OpenApi>::openapi()
}

/// Shared error answers, as `components.responses`, each an `ErrorBody`.
const SHARED: &[(&str, &str, &str)] = &[
    (
        "400",
        "BadRequest",
        "`malformed_json`, `malformed_query` or `unreadable_body`",
    ),
    (
        "401",
        "Unauthorized",
        "`missing_credentials` or `invalid_credentials`",
    ),
    (
        "403",
        "Forbidden",
        "`forbidden`: a token of another kind; `read_only` for the read-only operator token",
    ),
    ("413", "PayloadTooLarge", "`payload_too_large`"),
    ("415", "UnsupportedMediaType", "`unsupported_media_type`"),
    (
        "422",
        "InvalidBody",
        "`missing_field`, `unknown_field` or `invalid_field` (the message names the field)",
    ),
    (
        "500",
        "InternalError",
        "`internal_error`: ours to fix, logged",
    ),
    (
        "503",
        "DatabaseBusy",
        "`database_busy`: a statement waited past the database's lock or statement timeout; nothing was written, try again (`Retry-After: 1`)",
    ),
];

/// Adds the shared answers to every operation that can give them (an annotation's own
/// answer for the same status stays: it says more).
pub fn complete(mut openapi: OpenApi) -> OpenApi {
    let components = openapi.components.get_or_insert_with(Components::default);
    for (_, name, description) in SHARED {
        components
            .responses
            .insert((*name).to_owned(), RefOr::T(error_response(description)));
    }
    for item in openapi.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            add_shared(operation);
        }
    }
    openapi
}

fn add_shared(operation: &mut Operation) {
    let authenticated = operation
        .security
        .as_ref()
        .is_some_and(|security| !security.is_empty());
    let json_body = matches!(
        &operation.request_body,
        Some(RefOr::T(body)) if body.content.contains_key("application/json")
    );
    for (status, name, _) in SHARED {
        let applies = match *status {
            // Every operation with credentials reads the database (its keys at least).
            "401" | "403" | "503" => authenticated,
            "400" | "413" | "415" | "422" => json_body,
            _ => true,
        };
        if applies {
            operation
                .responses
                .responses
                .entry((*status).to_owned())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
        }
    }
}

fn error_response(description: &str) -> Response {
    Response::builder()
        .description(description)
        .content(
            "application/json",
            utoipa::openapi::Content::new(Some(Ref::from_schema_name("ErrorBody"))),
        )
        .build()
}

/// The finished document, served as it was serialised at start.
pub struct Document(String);

impl Document {
    pub fn new(openapi: &OpenApi) -> Self {
        Self(openapi.to_json().expect("the OpenAPI document serialises"))
    }
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document, OpenAPI 3.1", content_type = "application/json", body = Object))
)]
pub async fn document(document: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.0.clone())
}

/// The Swagger UI at `/docs/` (its files are in the binary), reading `/openapi.json`. No
/// validator: Swagger UI's default badge asks a public validator about the document.
pub fn docs() -> SwaggerUi {
    SwaggerUi::new("/docs/{_:.*}")
        .config(utoipa_swagger_ui::Config::from("/openapi.json").validator_url("none"))
}

/// `/docs` itself: to `/docs/`, where the UI's relative links resolve.
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/docs/"))
        .finish()
}
