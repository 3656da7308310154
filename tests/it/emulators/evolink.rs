//! EvoLink's wire format (<https://docs.evolink.ai>) for the `TaskApi` emulator:
//! `POST /v1/images/generations` answers the task object, `GET /v1/tasks/{id}` reads it, and
//! the callback carries it; errors are `{error: {code, message, type}}`.
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::task_api::{Refusal, TaskApi, View, read_task};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/v1/images/generations", web::post().to(submit))
        .route("/v1/tasks/{id}", web::get().to(read_task));
}

/// The status and body EvoLink answers a refusal with.
pub fn refusal(refusal: Refusal) -> (u16, Value) {
    let (status, code, kind, message): (u16, Value, &str, &str) = match refusal {
        Refusal::Unauthorized => (401, 401.into(), "authentication_error", "Invalid token"),
        Refusal::Invalid(what) => (400, 400.into(), "invalid_request_error", what),
        Refusal::OutOfCredit => (
            402,
            402.into(),
            "insufficient_quota_error",
            "Insufficient account balance, please top up",
        ),
        Refusal::Throttled(_) => (429, 429.into(), "rate_limit_error", "Rate limit exceeded"),
        Refusal::NotFound => (
            404,
            "resource_not_found".into(),
            "not_found_error",
            "Task not found",
        ),
    };
    let body = json!({"error": {"code": code, "message": message, "type": kind}});
    (status, body)
}

/// What the docs require of an image-to-image request: a model, a prompt, at least one image
/// URL, and (for us) the callback URL.
fn callback_url(body: &Value) -> Result<String, Refusal> {
    let images = body["image_urls"].as_array().map_or(0, Vec::len);
    if body["model"].as_str().is_none() || body["prompt"].as_str().is_none() || images == 0 {
        return Err(Refusal::Invalid(
            "model, prompt and image_urls are required",
        ));
    }
    body["callback_url"]
        .as_str()
        .map(str::to_owned)
        .ok_or(Refusal::Invalid("callback_url"))
}

async fn submit(
    emulator: web::Data<TaskApi>,
    request: HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    let body = body.into_inner();
    let callback = if TaskApi::authorized(&request) {
        callback_url(&body)
    } else {
        Err(Refusal::Unauthorized)
    };
    let model = body["model"].clone();
    let admitted = emulator.admit(body, callback, |n| {
        format!("task-unified-{}-emu{n:04}", chrono::Utc::now().timestamp())
    });
    match admitted {
        Ok(id) => {
            let mut task = task_json(&id, View::Queued, "");
            task["model"] = model;
            task["usage"] = json!({"billing_rule": "per_call", "credits_reserved": 1.6});
            HttpResponse::Ok().json(task)
        }
        Err(refusal) => emulator.refuse(refusal),
    }
}

/// The task object in the state `view` shows.
pub fn task_json(id: &str, view: View, output_url: &str) -> Value {
    let (status, progress) = match view {
        View::Queued => ("pending", 0),
        View::Running => ("processing", 40),
        View::Completed => ("completed", 100),
        View::Failed => ("failed", 0),
        View::Unknown | View::Malformed => ("quantum_superposition", 70),
    };
    let mut task = json!({
        "created": 1_757_156_493,
        "id": id,
        "model": "gemini-2.5-flash-image",
        "object": "image.generation.task",
        "progress": progress,
        "status": status,
        "task_info": {"can_cancel": view == View::Queued},
        "type": "image",
    });
    match view {
        View::Completed => task["results"] = json!([output_url]),
        View::Failed => {
            task["error"] = json!({"code": "image_processing_error",
                                   "message": "no garment found in the second image"})
        }
        _ => {}
    }
    task
}
