//! Local emulators of Replicate's and fal.ai's documented wire formats, for the adapters'
//! tests: one HTTP server per emulated provider, with misbehaviour on demand (outages, 402,
//! throttling, unknown statuses, failed results, silence). Replicate's callbacks are signed
//! per Standard Webhooks with `secret`; fal's are not. EvoLink's and FASHN's task APIs are
//! emulated by `task_api` in their wire formats (`evolink`, `fashn`).
#![allow(dead_code)]

pub mod evolink;
pub mod fashn;
pub mod task_api;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use atelier_actors::providers::signature::Secret;
use base64::Engine;
use serde_json::{Value, json};

pub const REPLICATE_TOKEN: &str = "r8_emulated";
pub const FAL_KEY: &str = "fal-emulated";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Accepts, works 50 ms, calls back.
    Normal,
    /// Every submission: 503.
    Unavailable,
    /// Every submission: 402, out of credit at the provider.
    OutOfCredit,
    /// Every submission: 404 with a JSON body, as for a model that does not exist.
    NotFound,
    /// The next `n` submissions are throttled (429; Replicate says when in its message, fal
    /// in `Retry-After`), after which it behaves normally.
    Throttled { n: usize, secs: u64 },
    /// Accepts and works, but never calls back: only a poll finds the result.
    Silent,
    /// Accepts and keeps every task running until `finish_all`.
    Hold,
    /// Replicate: the callback carries a status from the future; the task has succeeded.
    UnknownStatus,
    /// The task fails: Replicate `failed`, fal `COMPLETED` with a result endpoint answering 422.
    Fails,
}

struct Task {
    webhook: String,
    done: bool,
}

struct State {
    mode: Mode,
    tasks: HashMap<String, Task>,
    submissions: Vec<Instant>,
    next_id: u64,
    /// Where the result file redirects, when set.
    redirect_results_to: Option<String>,
}

#[derive(Clone)]
pub struct Emulator {
    pub url: String,
    pub secret: Secret,
    /// `whsec_...` for the adapter's configuration.
    pub secret_text: String,
    state: Arc<Mutex<State>>,
    http: reqwest::Client,
}

pub fn result_png() -> Vec<u8> {
    crate::common::png(8, 12, [10, 200, 30])
}

impl Emulator {
    pub async fn start(mode: Mode) -> Self {
        let secret_text = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes())
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let emulator = Self {
            url,
            secret: Secret::parse(&secret_text).unwrap(),
            secret_text,
            state: Arc::new(Mutex::new(State {
                mode,
                tasks: HashMap::new(),
                submissions: Vec::new(),
                next_id: 0,
                redirect_results_to: None,
            })),
            http: reqwest::Client::new(),
        };
        let shared = web::Data::new(emulator.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .route("/files/result.png", web::get().to(result_file))
                .route(
                    "/v1/models/{owner}/{name}/predictions",
                    web::post().to(replicate_create),
                )
                .route("/v1/predictions/{id}", web::get().to(replicate_get))
                .route("/v1/predictions/{id}/cancel", web::post().to(replicate_get))
                .route("/{owner}/{name}", web::post().to(fal_submit))
                .route(
                    "/{owner}/{name}/requests/{id}/status",
                    web::get().to(fal_status),
                )
                .route("/{owner}/{name}/requests/{id}", web::get().to(fal_result))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        emulator
    }

    /// The result file answers `302 Found` to `location` from now on.
    pub fn redirect_results_to(&self, location: &str) {
        self.state.lock().unwrap().redirect_results_to = Some(location.to_owned());
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    fn mode(&self) -> Mode {
        self.state.lock().unwrap().mode
    }

    /// When each submission arrived (refused ones included).
    pub fn submissions(&self) -> Vec<Instant> {
        self.state.lock().unwrap().submissions.clone()
    }

    /// The webhook URL of every task accepted, one per task: a generation's id is in its own.
    pub fn task_webhooks(&self) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state
            .tasks
            .values()
            .map(|task| task.webhook.clone())
            .collect()
    }

    pub fn output_url(&self) -> String {
        format!("{}/files/result.png", self.url)
    }

    /// Finishes every held task and calls back.
    pub async fn finish_all(&self) {
        let ids: Vec<String> = self.state.lock().unwrap().tasks.keys().cloned().collect();
        self.set_mode(Mode::Normal);
        for id in ids {
            self.finish(&id, Flavour::of(&id)).await;
        }
    }

    /// Admits a submission, or answers it with the refusal the mode calls for.
    fn admit(&self, flavour: Flavour, webhook: String) -> Result<String, Box<HttpResponse>> {
        let mut state = self.state.lock().unwrap();
        state.submissions.push(Instant::now());
        match state.mode {
            Mode::Unavailable => {
                return Err(Box::new(
                    HttpResponse::ServiceUnavailable().body("upstream unavailable"),
                ));
            }
            Mode::OutOfCredit => {
                return Err(Box::new(HttpResponse::PaymentRequired().json(
                    json!({"detail": "You have insufficient credit to run this model."}),
                )));
            }
            Mode::NotFound => {
                return Err(Box::new(HttpResponse::NotFound().json(
                    json!({"detail": "The requested resource could not be found: model-b4c9"}),
                )));
            }
            Mode::Throttled { n, secs } if n > 0 => {
                state.mode = Mode::Throttled { n: n - 1, secs };
                return Err(Box::new(match flavour {
                    Flavour::Replicate => HttpResponse::TooManyRequests().json(json!({
                        "detail": format!("Request was throttled. Your rate limit resets in ~{secs}s.")
                    })),
                    Flavour::Fal => HttpResponse::TooManyRequests()
                        .insert_header(("Retry-After", secs.to_string()))
                        .json(json!({"detail": "Too many requests"})),
                }));
            }
            _ => {}
        }
        state.next_id += 1;
        let id = format!("{}{}", flavour.prefix(), state.next_id);
        state.tasks.insert(
            id.clone(),
            Task {
                webhook,
                done: false,
            },
        );
        Ok(id)
    }

    /// Works on a task in the background, as the mode says.
    fn work(&self, id: String, flavour: Flavour) {
        if matches!(self.mode(), Mode::Hold) {
            return;
        }
        let emulator = self.clone();
        actix_web::rt::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            emulator.finish(&id, flavour).await;
        });
    }

    async fn finish(&self, id: &str, flavour: Flavour) {
        let mode = self.mode();
        let webhook = {
            let mut state = self.state.lock().unwrap();
            let Some(task) = state.tasks.get_mut(id) else {
                return;
            };
            task.done = true;
            task.webhook.clone()
        };
        if mode == Mode::Silent {
            return;
        }
        match flavour {
            Flavour::Replicate => {
                let mut body = self.prediction(id, mode);
                if mode == Mode::UnknownStatus {
                    body["status"] = "quantum_superposition".into();
                    body.as_object_mut().unwrap().remove("output");
                }
                self.post_signed(&webhook, &serde_json::to_vec(&body).unwrap())
                    .await;
            }
            Flavour::Fal => {
                let body = if mode == Mode::Fails {
                    json!({"request_id": id, "status": "ERROR", "error": "Invalid status code: 422",
                           "payload": {"detail": "no garment found"}})
                } else {
                    json!({"request_id": id, "status": "OK",
                           "payload": {"images": [{"url": self.output_url(), "width": 8, "height": 12}]}})
                };
                let _ = self.http.post(&webhook).json(&body).send().await;
            }
        }
    }

    /// Posts `body` to `url` signed as Replicate signs, now.
    pub async fn post_signed(&self, url: &str, body: &[u8]) -> reqwest::Response {
        let timestamp = chrono::Utc::now().timestamp();
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        self.http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", self.secret.sign(&id, timestamp, body))
            .body(body.to_vec())
            .send()
            .await
            .expect("deliver webhook")
    }

    fn prediction(&self, id: &str, mode: Mode) -> Value {
        let done = self
            .state
            .lock()
            .unwrap()
            .tasks
            .get(id)
            .is_some_and(|t| t.done);
        match (done, mode) {
            (false, _) => json!({"id": id, "status": "processing", "output": null}),
            (true, Mode::Fails) => json!({"id": id, "status": "failed", "output": null,
                                          "error": "CUDA out of memory", "metrics": {"predict_time": 0.4}}),
            (true, _) => json!({"id": id, "status": "succeeded", "output": [self.output_url()],
                                "metrics": {"predict_time": 1.5}}),
        }
    }
}

#[derive(Clone, Copy)]
enum Flavour {
    Replicate,
    Fal,
}

impl Flavour {
    fn prefix(self) -> &'static str {
        match self {
            Flavour::Replicate => "pred-",
            Flavour::Fal => "req-",
        }
    }

    fn of(id: &str) -> Self {
        if id.starts_with("pred-") {
            Flavour::Replicate
        } else {
            Flavour::Fal
        }
    }
}

async fn result_file(emulator: web::Data<Emulator>) -> HttpResponse {
    let redirect = emulator.state.lock().unwrap().redirect_results_to.clone();
    match redirect {
        Some(location) => HttpResponse::Found()
            .insert_header(("location", location))
            .finish(),
        None => HttpResponse::Ok()
            .content_type("image/png")
            .body(result_png()),
    }
}

fn authorized(request: &HttpRequest, expected: &str) -> bool {
    request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        == Some(expected)
}

async fn replicate_create(
    emulator: web::Data<Emulator>,
    request: HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    if !authorized(&request, &format!("Bearer {REPLICATE_TOKEN}")) {
        return HttpResponse::Unauthorized().json(json!({"detail": "Invalid token."}));
    }
    let (Some(webhook), Some(_)) = (body["webhook"].as_str(), body["input"].as_object()) else {
        return HttpResponse::UnprocessableEntity().json(json!({"detail": "input and webhook"}));
    };
    match emulator.admit(Flavour::Replicate, webhook.to_owned()) {
        Ok(id) => {
            emulator.work(id.clone(), Flavour::Replicate);
            HttpResponse::Created().json(json!({"id": id, "status": "starting"}))
        }
        Err(refusal) => *refusal,
    }
}

async fn replicate_get(
    emulator: web::Data<Emulator>,
    request: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    if !authorized(&request, &format!("Bearer {REPLICATE_TOKEN}")) {
        return HttpResponse::Unauthorized().finish();
    }
    if !emulator
        .state
        .lock()
        .unwrap()
        .tasks
        .contains_key(id.as_str())
    {
        return HttpResponse::NotFound().json(json!({"detail": "Not found."}));
    }
    HttpResponse::Ok().json(emulator.prediction(&id, emulator.mode()))
}

async fn fal_submit(
    emulator: web::Data<Emulator>,
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    body: web::Json<Value>,
) -> HttpResponse {
    if !authorized(&request, &format!("Key {FAL_KEY}")) {
        return HttpResponse::Unauthorized().json(json!({"detail": "No user found"}));
    }
    let Some(webhook) = query.get("fal_webhook") else {
        return HttpResponse::BadRequest().finish();
    };
    if body.get("human_image_url").is_none() {
        return HttpResponse::UnprocessableEntity().finish();
    }
    match emulator.admit(Flavour::Fal, webhook.clone()) {
        Ok(id) => {
            emulator.work(id.clone(), Flavour::Fal);
            let base = format!("{}{}", emulator.url, request.path());
            HttpResponse::Ok().json(json!({
                "request_id": id,
                "status_url": format!("{base}/requests/{id}/status"),
                "response_url": format!("{base}/requests/{id}"),
            }))
        }
        Err(refusal) => *refusal,
    }
}

fn fal_done(emulator: &Emulator, id: &str) -> Option<bool> {
    let state = emulator.state.lock().unwrap();
    state.tasks.get(id).map(|task| task.done)
}

async fn fal_status(
    emulator: web::Data<Emulator>,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    match fal_done(&emulator, &path.2) {
        None => HttpResponse::NotFound().json(json!({"detail": "Request not found"})),
        Some(false) => HttpResponse::Ok().json(json!({"status": "IN_PROGRESS"})),
        Some(true) => HttpResponse::Ok()
            .json(json!({"status": "COMPLETED", "metrics": {"inference_time": 1.5}})),
    }
}

async fn fal_result(
    emulator: web::Data<Emulator>,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    match fal_done(&emulator, &path.2) {
        Some(true) if emulator.mode() == Mode::Fails => HttpResponse::UnprocessableEntity()
            .json(json!({"detail": [{"msg": "no garment found", "type": "value_error"}]})),
        Some(true) => HttpResponse::Ok().json(json!({
            "images": [{"url": emulator.output_url(), "content_type": "image/png"}]
        })),
        Some(false) => {
            HttpResponse::BadRequest().json(json!({"detail": "Request is still in progress"}))
        }
        None => HttpResponse::NotFound().finish(),
    }
}
