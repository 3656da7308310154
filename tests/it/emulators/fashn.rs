//! FASHN's wire format (<https://docs.fashn.ai>) for the `TaskApi` emulator:
//! `POST /v1/run?webhook_url=…` with `{model_name, inputs}` answers `{id, error: null}`,
//! `GET /v1/status/{id}` reads the prediction, and the webhook carries it; API errors are
//! `{error: "Name", message}`.
use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::task_api::{Refusal, TaskApi, View, read_task};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/v1/run", web::post().to(submit))
        .route("/v1/status/{id}", web::get().to(read_task));
}

/// The status and body FASHN answers a refusal with. Out of credits is a 429 too.
pub fn refusal(refusal: Refusal) -> (u16, Value) {
    let (status, name, message) = match refusal {
        Refusal::Unauthorized => (401, "UnauthorizedAccess", "Unauthorized: Invalid token"),
        Refusal::Invalid(what) => (400, "BadRequest", what),
        Refusal::OutOfCredit => (429, "OutOfCredits", "You have used up all your API credits"),
        Refusal::Throttled(_) => (429, "RateLimitExceeded", "Too many requests"),
        Refusal::NotFound => (
            404,
            "NotFound",
            "The prediction status is no longer tracked",
        ),
    };
    (status, json!({"error": name, "message": message}))
}

/// What `tryon-v1.6` requires: its name and both images; and (for us) the webhook.
fn webhook_url(query: &HashMap<String, String>, body: &Value) -> Result<String, Refusal> {
    let inputs = &body["inputs"];
    if body["model_name"].as_str().is_none()
        || inputs["model_image"].as_str().is_none()
        || inputs["garment_image"].as_str().is_none()
    {
        return Err(Refusal::Invalid(
            "model_name, inputs.model_image and inputs.garment_image are required",
        ));
    }
    query
        .get("webhook_url")
        .cloned()
        .ok_or(Refusal::Invalid("webhook_url"))
}

async fn submit(
    emulator: web::Data<TaskApi>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    body: web::Json<Value>,
) -> HttpResponse {
    let body = body.into_inner();
    let webhook = if TaskApi::authorized(&request) {
        webhook_url(&query, &body)
    } else {
        Err(Refusal::Unauthorized)
    };
    match emulator.admit(body, webhook, |n| format!("{}-u{n}", uuid::Uuid::new_v4())) {
        Ok(id) => HttpResponse::Ok().json(json!({"id": id, "error": null})),
        Err(refusal) => emulator.refuse(refusal),
    }
}

/// The prediction in the state `view` shows.
pub fn task_json(id: &str, view: View, output_url: &str) -> Value {
    match view {
        View::Queued => json!({"id": id, "status": "in_queue", "error": null}),
        View::Running => json!({"id": id, "status": "processing", "error": null}),
        View::Completed => {
            json!({"id": id, "status": "completed", "output": [output_url], "error": null})
        }
        View::Failed => json!({"id": id, "status": "failed", "error": {
            "name": "ImageLoadError", "message": "no garment found in the garment image"}}),
        View::Unknown | View::Malformed => {
            json!({"id": id, "status": "quantum_superposition", "error": null})
        }
    }
}
