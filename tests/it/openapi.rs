//! The OpenAPI document (`GET /openapi.json`) against the routes the API registers, the
//! interactive docs at `/docs`, and the 405 with `Allow` for a method a path does not take.
use std::collections::BTreeSet;

use crate::common::{ADMIN_TOKEN, Backend, TestApp, error_code, on_database, settings};
use serde_json::Value;

database_tests!(
    undeclared_methods_answer_405_with_the_registered_methods,
    the_interactive_docs_are_served,
    an_optional_body_may_be_null,
    a_body_must_be_an_object_not_an_array,
    the_ops_actions_optional_bodies_may_be_null,
);

/// Methods OpenAPI path items hold.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `method path` without credentials.
async fn plain(app: &TestApp, method: reqwest::Method, path: &str) -> reqwest::Response {
    app.client
        .request(method, app.url(path))
        .send()
        .await
        .unwrap()
}

/// `POST path` with the admin token and `body` as it is written, JSON or not.
async fn admin_raw(app: &TestApp, path: &str, body: &'static str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn document(app: &TestApp) -> Value {
    let response = plain(app, reqwest::Method::GET, "/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

/// (METHOD, path) of every operation in the document.
fn documented(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|method| item.get(**method).is_some())
                .map(|method| (method.to_uppercase(), path.clone()))
        })
        .collect()
}

/// Both ways: a route registered without its annotation (or through anything but
/// `Routes::service`) is missing from the document, and the document names nothing that is not
/// served. The registered list is what `api::routes` handed to actix, not a copy kept here.
#[actix_web::test]
async fn the_document_names_exactly_the_registered_routes() {
    on_database(Backend::Sqlite, "openapi_routes", |url| async move {
        let app = TestApp::builder(&url).spawn().await;
        let document = document(&app).await;
        assert_eq!(document["openapi"], "3.1.0");
        let registered = atelier::api::registered_routes(&settings(&url).http);
        let registered_set: BTreeSet<(String, String)> = registered
            .iter()
            .map(|route| (route.method.to_string(), route.document_path()))
            .collect();
        assert_eq!(
            registered_set.len(),
            registered.len(),
            "a route registered twice"
        );
        assert!(registered_set.len() >= 25, "{registered_set:?}");
        let documented = documented(&document);
        let undocumented: Vec<_> = registered_set.difference(&documented).collect();
        assert!(
            undocumented.is_empty(),
            "registered, not in the document: {undocumented:?}"
        );
        let unserved: Vec<_> = documented.difference(&registered_set).collect();
        assert!(
            unserved.is_empty(),
            "in the document, not registered: {unserved:?}"
        );
        // The simulator is mounted only as a provider's stand-in, and is no part of the API.
        assert!(
            documented
                .iter()
                .all(|(_, path)| !path.starts_with("/simulator"))
        );
    })
    .await;
}

/// Every operation declares its answers: a success, 500, the error shape on every error, and
/// 401 and 403 where it needs credentials.
#[actix_web::test]
async fn every_operation_declares_its_error_answers() {
    on_database(Backend::Sqlite, "openapi_errors", |url| async move {
        let app = TestApp::builder(&url).spawn().await;
        let document = document(&app).await;
        for (method, path) in documented(&document) {
            let operation = &document["paths"][&path][method.to_lowercase()];
            let what = format!("{method} {path}");
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|status| status.starts_with('2')),
                "{what}: no success"
            );
            assert!(responses.contains_key("500"), "{what}: no 500");
            if operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty())
            {
                // 503: what reads the database may find it busy (`database_busy`).
                for status in ["401", "403", "503"] {
                    assert!(responses.contains_key(status), "{what}: no {status}");
                }
            }
            for (status, response) in responses
                .iter()
                .filter(|(status, _)| !status.starts_with('2'))
            {
                let response = resolve(&document, response);
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{what}: {status} is not in the error shape"
                );
            }
        }
        // Two views of one name would be one schema in the document, the other's answers
        // then breaking it (schemathesis found the account page's packages so).
        let schemas = &document["components"]["schemas"];
        assert!(schemas["OpsPackageView"]["properties"]["reference"].is_object());
        assert!(schemas["PackageView"]["properties"]["reference"].is_null());
        assert!(schemas["HoldPackageView"]["properties"]["package_id"].is_object());
        assert!(schemas["HoldView"]["properties"]["generation_id"].is_object());
        assert!(schemas["HoldStoryView"]["properties"]["settled_amount"].is_object());
        let error = &document["components"]["schemas"]["ErrorBody"];
        assert_eq!(error["required"], serde_json::json!(["error"]));
    })
    .await;
}

/// A `$ref` to a shared response, resolved.
fn resolve<'d>(document: &'d Value, response: &'d Value) -> &'d Value {
    match response["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/responses/");
            &document["components"]["responses"][name]
        }
        None => response,
    }
}

async fn undeclared_methods_answer_405_with_the_registered_methods(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    for (method, path, allow) in [
        ("DELETE", "/v1/balance", "GET"),
        ("PUT", "/v1/generations", "POST, GET"),
        (
            "PATCH",
            "/v1/uploads/0190aaaa-0000-7000-8000-000000000000",
            "GET, DELETE",
        ),
        ("GET", "/webhooks/simulator/x", "POST"),
        ("POST", "/openapi.json", "GET"),
        ("POST", "/v1/files/results/a/b", "GET"),
        ("DELETE", "/v1/ops/audit", "GET"),
        ("GET", "/v1/balance", "GET"),
    ] {
        let method: reqwest::Method = method.parse().unwrap();
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        if method.as_str() == allow {
            // The control: a method the path takes is not refused for its method.
            assert_ne!(response.status(), 405, "{method} {path}");
            continue;
        }
        let header = response
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(header.as_deref(), Some(allow), "{method} {path}");
        assert_eq!(
            error_code(response, 405).await,
            "method_not_allowed",
            "{method} {path}"
        );
    }
    // A path nobody registered is still 404, without Allow.
    let response = plain(&app, reqwest::Method::PUT, "/v1/nothing-here").await;
    assert!(response.headers().get("allow").is_none());
    assert_eq!(error_code(response, 404).await, "not_found");
}

async fn the_interactive_docs_are_served(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let bare = no_redirects.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(bare.status(), 308);
    assert_eq!(bare.headers()["location"], "/docs/");
    let page = plain(&app, reqwest::Method::GET, "/docs/").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    // The page's own files are in the binary (vendored), and it reads our document.
    let init = plain(&app, reqwest::Method::GET, "/docs/swagger-initializer.js").await;
    assert_eq!(init.status(), 200);
    let init = init.text().await.unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
    // Offline: no validator badge asking a public server about the document.
    assert!(init.contains(r#""validatorUrl": "none""#), "{init}");
    let bundle = plain(&app, reqwest::Method::GET, "/docs/swagger-ui-bundle.js").await;
    assert_eq!(bundle.status(), 200);
    assert!(bundle.bytes().await.unwrap().len() > 100_000);
}

/// The document calls `POST /v1/accounts`' body optional and nullable (schemathesis sent
/// `null`, which was refused with 422): `null` reads as no body.
async fn an_optional_body_may_be_null(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    for body in ["null", "", "{}"] {
        let response = admin_raw(&app, "/v1/accounts", body).await;
        assert_eq!(response.status(), 201, "{body:?}");
    }
    let named = app
        .admin_post("/v1/accounts", &serde_json::json!({"name": "a"}))
        .await;
    assert_eq!(named.json::<Value>().await.unwrap()["name"], "a");
}

/// The ops actions whose body the document calls optional take `null` for it, as an empty
/// body (schemathesis sent `null`).
async fn the_ops_actions_optional_bodies_may_be_null(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (account_id, _) = app.create_account().await;
    let issued = admin_raw(
        &app,
        &format!("/v1/ops/accounts/{account_id}/api-keys"),
        "null",
    )
    .await;
    assert_eq!(issued.status(), 201);
    let enable = admin_raw(
        &app,
        &format!("/v1/ops/accounts/{account_id}/enable"),
        "null",
    )
    .await;
    assert_eq!(error_code(enable, 409).await, "not_disabled");
    let unknown = "0190aaaa-0000-7000-8000-000000000000";
    for action in ["cancel", "wake", "retry"] {
        let path = format!("/v1/ops/generations/{unknown}/{action}");
        let response = admin_raw(&app, &path, "null").await;
        assert_eq!(
            error_code(response, 404).await,
            "generation_not_found",
            "{action}"
        );
    }
}

/// serde reads a struct from a JSON array, field by field (schemathesis found `[]` making an
/// account): a body that is an array is refused, and nothing is written.
async fn a_body_must_be_an_object_not_an_array(url: String) {
    let app = TestApp::builder(&url).spawn().await;
    let (account_id, _) = app.create_account().await;
    for (path, body) in [
        ("/v1/accounts".to_owned(), "[]"),
        ("/v1/accounts".to_owned(), " [\"name\"]"),
        (
            format!("/v1/accounts/{account_id}/grants"),
            r#"[5, null, "ref"]"#,
        ),
    ] {
        let response = admin_raw(&app, &path, body).await;
        assert_eq!(
            error_code(response, 422).await,
            "invalid_field",
            "{path} {body}"
        );
    }
    let balance = app
        .get(&format!("/v1/accounts/{account_id}/balance"), ADMIN_TOKEN)
        .await;
    assert_eq!(balance.json::<Value>().await.unwrap()["available"], 0);
}
