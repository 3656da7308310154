//! The built-in `simulator` provider: a provider HTTP API that Atelier serves itself under
//! `/simulator`, so `cargo run` does a real try-on with no account anywhere. It accepts a task,
//! fetches the two input images, pastes the garment onto the person photo, serves the PNG at an
//! expiring URL and calls the webhook back after a delay — through exactly the HTTP and webhook
//! path a real provider uses. Misbehaviour is configurable for tests and demos.
//!
//! It is reachable by anyone who can reach the port, so it behaves like a real provider: its
//! task routes want the API key Atelier sends (`simulator.api_key`), and results are served
//! only at URLs carrying a random token, until they expire.
//!
//! Tasks live in memory: after a restart the simulator has forgotten them, as a provider that
//! lost a task would have, and the engine's poll finds out. The table is bounded
//! (`simulator.max_tasks`) and tasks are forgotten `simulator.task_ttl_secs` after submission,
//! oldest first, without scanning the table.
use std::collections::{HashMap, VecDeque};
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use chrono::{DateTime, Utc};
use image::imageops::FilterType;
use rand::Rng;
use serde::{Deserialize, Serialize};

use atelier_actors::images::{ImageLimits, ImagePool};

use subtle::ConstantTimeEq;

use crate::api::auth::bearer;
use crate::api::error::ApiError;
use crate::api::json::ApiJson;
use crate::config::SimulatorSettings;

#[derive(Debug, Clone, Serialize)]
struct TaskView {
    id: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

struct SimTask {
    view: TaskView,
    result: Option<Vec<u8>>,
    result_expires_at: Option<DateTime<Utc>>,
    /// In the result URL: without it the result cannot be fetched, and it cannot be guessed
    /// from the task id.
    result_token: String,
}

/// The tasks by id, and their ids in submission order: the oldest are forgotten first.
#[derive(Default)]
struct Tasks {
    by_id: HashMap<String, SimTask>,
    by_age: VecDeque<(DateTime<Utc>, String)>,
}

impl Tasks {
    /// Forgets the tasks submitted before `cutoff`: only those are looked at.
    fn evict_before(&mut self, cutoff: DateTime<Utc>) {
        while let Some((submitted, _)) = self.by_age.front() {
            if *submitted >= cutoff {
                break;
            }
            if let Some((_, id)) = self.by_age.pop_front() {
                self.by_id.remove(&id);
            }
        }
    }
}

/// A random, URL-safe secret of 32 bytes.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[derive(Clone)]
pub struct Simulator {
    settings: SimulatorSettings,
    /// Where this simulator is reachable (`{public_url}/simulator`).
    base_url: String,
    tasks: Arc<Mutex<Tasks>>,
    /// What the task routes want as `Authorization: Bearer`.
    api_key: String,
    http: reqwest::Client,
    images: ImageLimits,
    pool: ImagePool,
    /// Where stored objects' links point besides us (S3), when they do.
    storage_origin: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitTask {
    person_image: String,
    garment_image: String,
    #[serde(default)]
    #[allow(dead_code)]
    prompt: Option<String>,
    webhook: Option<String>,
}

impl Simulator {
    /// `api_key` is what Atelier's simulator adapter sends.
    pub fn new(
        settings: SimulatorSettings,
        base_url: String,
        api_key: String,
        images: ImageLimits,
        pool: ImagePool,
    ) -> Self {
        Self {
            settings,
            api_key,
            base_url,
            tasks: Arc::default(),
            // It talks only to the Atelier serving it: never through a proxy from the
            // environment, and never for long.
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client with no proxy builds"),
            images,
            pool,
            storage_origin: None,
        }
    }

    /// Also fetches inputs from `origin` (`scheme://host[:port]`): where S3 links point.
    pub fn fetching_from_storage(mut self, origin: Option<String>) -> Self {
        self.storage_origin = origin;
        self
    }

    pub fn routes(config: &mut web::ServiceConfig) {
        config
            .route("/simulator/v1/tasks/{id}", web::put().to(submit))
            .route("/simulator/v1/tasks/{id}", web::get().to(status))
            .route("/simulator/v1/tasks/{id}", web::delete().to(cancel))
            .route("/simulator/v1/results/{id}/{token}", web::get().to(result));
    }

    /// Only Atelier, which has the key, may submit, read or cancel tasks.
    fn authorize(&self, request: &HttpRequest) -> Result<(), ApiError> {
        let token = bearer(request)?;
        if bool::from(token.as_bytes().ct_eq(self.api_key.as_bytes())) {
            return Ok(());
        }
        Err(ApiError::unauthorized(
            "invalid_credentials",
            "the simulator's API key is wrong",
        ))
    }

    fn view(&self, id: &str) -> Option<TaskView> {
        self.tasks
            .lock()
            .unwrap()
            .by_id
            .get(id)
            .map(|task| task.view.clone())
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut SimTask)) -> Option<TaskView> {
        let mut tasks = self.tasks.lock().unwrap();
        let task = tasks.by_id.get_mut(id)?;
        change(task);
        Some(task.view.clone())
    }

    async fn process(self, id: String, request: SubmitTask) {
        tokio::time::sleep(Duration::from_millis(self.settings.delay_ms)).await;
        let fails = rand::rng().random_bool(self.settings.failure_rate.clamp(0.0, 1.0));
        let outcome = if fails {
            Err("the simulated model failed (failure_rate)".to_owned())
        } else {
            self.render(&request).await
        };
        let ttl = chrono::Duration::seconds(self.settings.result_ttl_secs);
        let expires_at = if self.settings.expired_results {
            Utc::now() - chrono::Duration::seconds(1)
        } else {
            Utc::now() + ttl
        };
        let base_url = &self.base_url;
        let Some(view) = self.update(&id, |task| match outcome {
            // Canceled while it was being rendered: it stays canceled.
            _ if task.view.status == "failed" => {}
            Ok(png) => {
                task.view.status = "succeeded";
                let token = &task.result_token;
                task.view.output = Some(format!("{base_url}/v1/results/{id}/{token}"));
                task.result = Some(png);
                task.result_expires_at = Some(expires_at);
            }
            Err(error) => {
                task.view.status = "failed";
                task.view.error = Some(error);
            }
        }) else {
            return;
        };
        let Some(webhook) = request.webhook.filter(|_| !self.settings.never_callback) else {
            return;
        };
        if !self.is_ours(&webhook) {
            tracing::warn!(task = %id, %webhook, "simulator refuses to call back outside Atelier");
            return;
        }
        let deliveries = if self.settings.duplicate_callbacks {
            2
        } else {
            1
        };
        for _ in 0..deliveries {
            if let Err(error) = self.http.post(&webhook).json(&view).send().await {
                tracing::warn!(task = %id, %error, "simulator could not deliver its callback");
            }
        }
    }

    /// Fetches both images and pastes the garment, scaled to half the person's width, onto
    /// the middle of the person photo.
    async fn render(&self, request: &SubmitTask) -> Result<Vec<u8>, String> {
        let person = self.fetch(&request.person_image).await?;
        let garment = self.fetch(&request.garment_image).await?;
        let limits = self.images;
        self.pool
            .run(move || compose(&person, &garment, &limits))
            .await?
    }

    /// The simulator only ever talks to the Atelier serving it: it is reachable by anyone who
    /// can reach the port, and must not become a way to make us fetch or post elsewhere.
    fn is_ours(&self, url: &str) -> bool {
        let ours = self.base_url.trim_end_matches("/simulator");
        url.strip_prefix(ours)
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// With S3 storage, the inputs it is handed are links into the bucket, not to us.
    fn is_our_storage(&self, url: &str) -> bool {
        self.storage_origin.as_deref().is_some_and(|origin| {
            url.strip_prefix(origin)
                .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        if !self.is_ours(url) && !self.is_our_storage(url) {
            return Err(format!("the simulator fetches only from {}", self.base_url));
        }
        let response = self
            .http
            .get(url)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|error| format!("cannot fetch {url}: {error}"))?;
        if !response.status().is_success() {
            return Err(format!("fetching an input answered {}", response.status()));
        }
        let bytes = response.bytes().await.map_err(|error| error.to_string())?;
        Ok(bytes.to_vec())
    }
}

/// Both images are decoded within `limits`: an oversized one is refused from its header.
pub fn compose(person: &[u8], garment: &[u8], limits: &ImageLimits) -> Result<Vec<u8>, String> {
    let mut person = limits
        .decode(person)
        .map_err(|error| format!("person image: {error}"))?
        .to_rgba8();
    let garment = limits
        .decode(garment)
        .map_err(|error| format!("garment image: {error}"))?;
    let width = (person.width() / 2).max(1);
    let height = ((garment.height() as u64 * width as u64) / garment.width().max(1) as u64)
        .clamp(1, person.height() as u64) as u32;
    let garment = garment
        .resize_exact(width, height, FilterType::Triangle)
        .to_rgba8();
    let x = (person.width() - width) / 2;
    let y = (person.height() - height) / 2;
    image::imageops::overlay(&mut person, &garment, x.into(), y.into());
    let mut png = Cursor::new(Vec::new());
    person
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|error| error.to_string())?;
    Ok(png.into_inner())
}

fn unknown_task() -> ApiError {
    ApiError::not_found("task_not_found", "no such task")
}

async fn submit(
    simulator: web::Data<Simulator>,
    request: HttpRequest,
    path: web::Path<String>,
    body: ApiJson<SubmitTask>,
) -> Result<HttpResponse, ApiError> {
    simulator.authorize(&request)?;
    let id = path.into_inner();
    if simulator.settings.rate_limited {
        return Ok(HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", "1"))
            .json(serde_json::json!({"detail": "Request was throttled."})));
    }
    if simulator.settings.reject_submissions {
        return Err(ApiError::invalid(
            "invalid_input",
            "the simulated model refuses these images (reject_submissions)",
        ));
    }
    match simulator.admit(&id)? {
        Admitted::Existing(view) => Ok(HttpResponse::Ok().json(view)),
        Admitted::New(view) => {
            actix_web::rt::spawn(simulator.get_ref().clone().process(id, body.0));
            Ok(HttpResponse::Created().json(view))
        }
    }
}

enum Admitted {
    /// Idempotent by id: a resubmission after a crash finds the task it started.
    Existing(TaskView),
    New(TaskView),
}

impl Simulator {
    /// Finds or records the task `id`, after forgetting the tasks past their time; refuses a
    /// new one while the table is full.
    fn admit(&self, id: &str) -> Result<Admitted, ApiError> {
        let mut tasks = self.tasks.lock().unwrap();
        let now = Utc::now();
        tasks.evict_before(now - chrono::Duration::seconds(self.settings.task_ttl_secs as i64));
        if let Some(task) = tasks.by_id.get(id) {
            return Ok(Admitted::Existing(task.view.clone()));
        }
        if tasks.by_id.len() >= self.settings.max_tasks {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "simulator_full",
                format!(
                    "the simulator holds {} tasks, its most; retry later",
                    self.settings.max_tasks
                ),
            ));
        }
        let view = TaskView {
            id: id.to_owned(),
            status: "queued",
            output: None,
            error: None,
        };
        let task = SimTask {
            view: view.clone(),
            result: None,
            result_expires_at: None,
            result_token: random_token(),
        };
        tasks.by_id.insert(id.to_owned(), task);
        tasks.by_age.push_back((now, id.to_owned()));
        Ok(Admitted::New(view))
    }
}

async fn status(
    simulator: web::Data<Simulator>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    simulator.authorize(&request)?;
    let view = simulator.view(&path).ok_or_else(unknown_task)?;
    Ok(HttpResponse::Ok().json(view))
}

async fn cancel(
    simulator: web::Data<Simulator>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    simulator.authorize(&request)?;
    let view = simulator
        .update(&path, |task| {
            if task.view.status != "succeeded" {
                task.view.status = "failed";
                task.view.error = Some("canceled".into());
            }
        })
        .ok_or_else(unknown_task)?;
    Ok(HttpResponse::Ok().json(view))
}

/// The result at its URL: the token is the credential (a provider's CDN URL needs none
/// besides its signature), compared in constant time.
async fn result(
    simulator: web::Data<Simulator>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, token) = path.into_inner();
    let (png, expires_at) = {
        let tasks = simulator.tasks.lock().unwrap();
        let task = tasks
            .by_id
            .get(&id)
            .filter(|task| bool::from(task.result_token.as_bytes().ct_eq(token.as_bytes())))
            .ok_or_else(unknown_task)?;
        (
            task.result.clone().ok_or_else(unknown_task)?,
            task.result_expires_at,
        )
    };
    if expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(ApiError::new(
            StatusCode::GONE,
            "result_expired",
            "this result URL has expired",
        ));
    }
    tokio::time::sleep(Duration::from_millis(simulator.settings.result_delay_ms)).await;
    let oversized = simulator.settings.oversized_results;
    let body = if oversized {
        // A "result" far larger than anything Atelier accepts.
        let mut padded = png;
        padded.resize(64 * 1024 * 1024, 0);
        padded
    } else {
        png
    };
    Ok(HttpResponse::Ok().content_type("image/png").body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
        let image = image::RgbImage::from_pixel(width, height, image::Rgb(rgb));
        let mut bytes = Cursor::new(Vec::new());
        image.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
        bytes.into_inner()
    }

    #[test]
    fn the_garment_lands_in_the_middle_of_the_person() {
        let limits = ImageLimits::default();
        let composed = compose(
            &png(40, 60, [255, 255, 255]),
            &png(10, 10, [0, 0, 255]),
            &limits,
        )
        .unwrap();
        let image = image::load_from_memory(&composed).unwrap().to_rgba8();
        assert_eq!((image.width(), image.height()), (40, 60));
        assert_eq!(
            image.get_pixel(20, 30).0,
            [0, 0, 255, 255],
            "garment in the middle"
        );
        assert_eq!(
            image.get_pixel(1, 1).0,
            [255, 255, 255, 255],
            "person at the edge"
        );
        assert!(compose(b"not an image", &png(1, 1, [0, 0, 0]), &limits).is_err());
    }

    #[test]
    fn compose_refuses_an_oversized_image_from_its_header() {
        let limits = ImageLimits::default();
        // A few kilobytes that would decode to 400 MB (and as much again as RGBA).
        let bomb = png(10_000, 10_000, [9, 9, 9]);
        let small = png(10, 10, [0, 0, 0]);
        for (person, garment) in [(&bomb, &small), (&small, &bomb)] {
            let error = compose(person, garment, &limits).unwrap_err();
            assert!(error.contains("at most 8192×8192"), "{error}");
        }
    }
}
