//! `TaskApi`: an emulated asynchronous task API with unsigned callbacks, the shape EvoLink and
//! FASHN share: a submission names a callback URL and answers a task id, the task is read by
//! id, and its end is POSTed to the callback URL. This file keeps the tasks and the
//! misbehaviour (`TaskMode`); `evolink.rs` and `fashn.rs` speak the two wire formats.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;

use super::{evolink, fashn, result_png};

/// Which provider's wire format the emulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    EvoLink,
    Fashn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskMode {
    /// Accepts, works 50 ms, calls back.
    Normal,
    /// The task fails (and the callback says so).
    Fails,
    /// The callback and the first read carry a status from the future; later reads find the
    /// task completed.
    UnknownStatus,
    /// The next `n` submissions are throttled (429), with `Retry-After` when it is `Some`.
    Throttled { n: usize, retry_after: Option<u64> },
    /// Every submission is refused: our account at the provider has no balance left.
    OutOfCredit,
    /// Accepts and works, but never calls back: only a read finds the result.
    Silent,
    /// Accepts and keeps every task running until `finish_all`.
    Hold,
    /// The next `n` reads answer 200 with a body that is not JSON; then as `Normal`.
    MalformedReads { n: usize },
}

/// What a read of a task shows, for the wire format to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Not started yet (the first read of a running task).
    Queued,
    Running,
    Completed,
    Failed,
    Unknown,
    /// 200 with an unreadable body.
    Malformed,
}

/// Why a submission is refused, for the wire format to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unauthorized,
    Invalid(&'static str),
    OutOfCredit,
    Throttled(Option<u64>),
    NotFound,
}

struct Task {
    callback_url: String,
    done: bool,
    reads: usize,
    /// Every body POSTed to `callback_url`, in order.
    delivered: Vec<Vec<u8>>,
}

struct State {
    mode: TaskMode,
    tasks: HashMap<String, Task>,
    /// When each submission arrived, and its body (refused ones included).
    submissions: Vec<(Instant, Value)>,
    next_id: u64,
}

#[derive(Clone)]
pub struct TaskApi {
    pub url: String,
    pub wire: Wire,
    state: Arc<Mutex<State>>,
    http: reqwest::Client,
}

/// The API token each emulator wants as `Authorization: Bearer`.
pub const TASK_API_TOKEN: &str = "emulated-task-api-token";

impl TaskApi {
    pub async fn start(wire: Wire, mode: TaskMode) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let emulator = Self {
            url: format!("http://{}", listener.local_addr().unwrap()),
            wire,
            state: Arc::new(Mutex::new(State {
                mode,
                tasks: HashMap::new(),
                submissions: Vec::new(),
                next_id: 0,
            })),
            http: reqwest::Client::new(),
        };
        let shared = web::Data::new(emulator.clone());
        let server = HttpServer::new(move || {
            let app = App::new()
                .app_data(shared.clone())
                .route("/files/result.png", web::get().to(result_file));
            match wire {
                Wire::EvoLink => app.configure(evolink::routes),
                Wire::Fashn => app.configure(fashn::routes),
            }
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        emulator
    }

    pub fn set_mode(&self, mode: TaskMode) {
        self.state.lock().unwrap().mode = mode;
    }

    fn mode(&self) -> TaskMode {
        self.state.lock().unwrap().mode
    }

    pub fn output_url(&self) -> String {
        format!("{}/files/result.png", self.url)
    }

    /// When each submission arrived (refused ones included).
    pub fn submissions(&self) -> Vec<Instant> {
        let state = self.state.lock().unwrap();
        state.submissions.iter().map(|(at, _)| *at).collect()
    }

    /// The body of each submission, in order.
    pub fn submitted_bodies(&self) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        state
            .submissions
            .iter()
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// How often the task `id` was read.
    pub fn reads(&self, id: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .tasks
            .get(id)
            .map_or(0, |task| task.reads)
    }

    /// How many callbacks were POSTed for the task `id`.
    pub fn deliveries(&self, id: &str) -> usize {
        let state = self.state.lock().unwrap();
        state.tasks.get(id).map_or(0, |task| task.delivered.len())
    }

    /// Whether `Authorization` carries the emulator's token.
    pub fn authorized(request: &HttpRequest) -> bool {
        let expected = format!("Bearer {TASK_API_TOKEN}");
        request
            .headers()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            == Some(expected.as_str())
    }

    /// Records a submission, then admits it as a task (its id, made with `make_id`) or refuses
    /// it as the mode says. The task starts working unless the mode holds it.
    pub fn admit(
        &self,
        body: Value,
        callback_url: Result<String, Refusal>,
        make_id: impl FnOnce(u64) -> String,
    ) -> Result<String, Refusal> {
        let mut state = self.state.lock().unwrap();
        state.submissions.push((Instant::now(), body));
        let callback_url = callback_url?;
        match state.mode {
            TaskMode::OutOfCredit => return Err(Refusal::OutOfCredit),
            TaskMode::Throttled { n, retry_after } if n > 0 => {
                state.mode = TaskMode::Throttled {
                    n: n - 1,
                    retry_after,
                };
                return Err(Refusal::Throttled(retry_after));
            }
            _ => {}
        }
        state.next_id += 1;
        let id = make_id(state.next_id);
        let task = Task {
            callback_url,
            done: false,
            reads: 0,
            delivered: Vec::new(),
        };
        state.tasks.insert(id.clone(), task);
        if state.mode != TaskMode::Hold {
            let emulator = self.clone();
            let id = id.clone();
            actix_web::rt::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                emulator.finish(&id).await;
            });
        }
        Ok(id)
    }

    /// A read of the task `id`: `None` for a task the emulator never made.
    pub fn read(&self, id: &str) -> Option<View> {
        let mut state = self.state.lock().unwrap();
        let mode = state.mode;
        if let TaskMode::MalformedReads { n } = mode
            && n > 0
        {
            state.mode = TaskMode::MalformedReads { n: n - 1 };
            return state.tasks.contains_key(id).then_some(View::Malformed);
        }
        let task = state.tasks.get_mut(id)?;
        task.reads += 1;
        Some(match (task.done, mode) {
            (false, _) if task.reads == 1 => View::Queued,
            (false, _) => View::Running,
            (true, TaskMode::Fails) => View::Failed,
            (true, TaskMode::UnknownStatus) if task.reads == 1 => View::Unknown,
            (true, _) => View::Completed,
        })
    }

    /// Finishes every held task and calls back.
    pub async fn finish_all(&self) {
        let ids: Vec<String> = self.state.lock().unwrap().tasks.keys().cloned().collect();
        self.set_mode(TaskMode::Normal);
        for id in ids {
            self.finish(&id).await;
        }
    }

    /// Marks the task done and, unless the mode is silent, calls back with what it ended as.
    async fn finish(&self, id: &str) {
        let mode = self.mode();
        let url = {
            let mut state = self.state.lock().unwrap();
            let Some(task) = state.tasks.get_mut(id) else {
                return;
            };
            task.done = true;
            task.callback_url.clone()
        };
        if mode == TaskMode::Silent {
            return;
        }
        let view = match mode {
            TaskMode::Fails => View::Failed,
            TaskMode::UnknownStatus => View::Unknown,
            _ => View::Completed,
        };
        let body = serde_json::to_vec(&self.task_json(id, view)).unwrap();
        self.deliver(id, &url, body).await;
    }

    /// The task object as this wire format shows it.
    pub fn task_json(&self, id: &str, view: View) -> Value {
        match self.wire {
            Wire::EvoLink => evolink::task_json(id, view, &self.output_url()),
            Wire::Fashn => fashn::task_json(id, view, &self.output_url()),
        }
    }

    async fn deliver(&self, id: &str, url: &str, body: Vec<u8>) -> Option<reqwest::StatusCode> {
        if let Some(task) = self.state.lock().unwrap().tasks.get_mut(id) {
            task.delivered.push(body.clone());
        }
        let sent = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        sent.ok().map(|response| response.status())
    }

    /// POSTs every task's last callback again, as a provider retrying a delivery does; the
    /// statuses Atelier answered.
    pub async fn redeliver_all(&self) -> Vec<Option<reqwest::StatusCode>> {
        let last: Vec<(String, String, Vec<u8>)> = {
            let state = self.state.lock().unwrap();
            state
                .tasks
                .iter()
                .filter_map(|(id, task)| {
                    let body = task.delivered.last()?.clone();
                    Some((id.clone(), task.callback_url.clone(), body))
                })
                .collect()
        };
        let mut answers = Vec::new();
        for (id, url, body) in last {
            answers.push(self.deliver(&id, &url, body).await);
        }
        answers
    }

    /// The refusal as this wire format answers it (with `Retry-After` when throttling says
    /// when).
    pub fn refuse(&self, refusal: Refusal) -> HttpResponse {
        let (status, body) = match self.wire {
            Wire::EvoLink => evolink::refusal(refusal),
            Wire::Fashn => fashn::refusal(refusal),
        };
        let mut response = HttpResponse::build(StatusCode::from_u16(status).unwrap());
        if let Refusal::Throttled(Some(seconds)) = refusal {
            response.insert_header(("Retry-After", seconds.to_string()));
        }
        response.json(body)
    }
}

/// `GET …/{id}`, in both wire formats: the task as it stands, or what the mode makes of it.
pub async fn read_task(
    emulator: web::Data<TaskApi>,
    request: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    if !TaskApi::authorized(&request) {
        return emulator.refuse(Refusal::Unauthorized);
    }
    match emulator.read(&id) {
        None => emulator.refuse(Refusal::NotFound),
        Some(View::Malformed) => HttpResponse::Ok()
            .content_type("application/json")
            .body("{\"id\": \"task-, \"status\": completed"),
        Some(view) => HttpResponse::Ok().json(emulator.task_json(&id, view)),
    }
}

async fn result_file() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("image/png")
        .body(result_png())
}
