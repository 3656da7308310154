//! The real service on a free port, built by `TestApp::builder`, and stopped when dropped.
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use atelier::config::Settings;
use atelier::startup::{Application, Seams};
use atelier_actors::engine::StepHook;
use atelier_actors::workflow::BatchFault;
use atelier_actors::{Clock, ManualClock, SystemClock};

use super::{ADMIN_TOKEN, init_logs, settings, start_of_test_time};

/// How long dropping an app waits for its engine's running steps before it stops HTTP anyway.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// The real service on a free port.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: actix_web::web::Data<atelier::state::AppState>,
    /// Set when the app was started on a manual clock.
    pub clock: Option<Arc<ManualClock>>,
    server: ServerHandle,
}

/// What a test changes about its app: settings, the clock and the fault-injection seams.
pub struct TestAppBuilder {
    settings: Settings,
    clock: Option<Arc<ManualClock>>,
    seams: Seams,
}

impl TestApp {
    /// An app on `database_url` with the test settings (`common::settings`): HTTP only, no
    /// engine, on the system clock.
    pub fn builder(database_url: &str) -> TestAppBuilder {
        TestAppBuilder {
            settings: settings(database_url),
            clock: None,
            seams: Seams::default(),
        }
    }
}

impl TestAppBuilder {
    /// On a clock the test moves, starting at `start_of_test_time()`.
    pub fn manual_clock(mut self) -> Self {
        self.clock = Some(Arc::new(ManualClock::new(start_of_test_time())));
        self
    }

    /// Adjusts the settings.
    pub fn configure(mut self, configure: impl FnOnce(&mut Settings)) -> Self {
        configure(&mut self.settings);
        self
    }

    /// With the workflow engine running and a quick simulator, on settings `configure`
    /// adjusts (simulator behaviour, deadlines).
    pub fn engine(mut self, configure: impl FnOnce(&mut Settings)) -> Self {
        self.settings.workflow.run_engine = true;
        self.settings.simulator.delay_ms = 50;
        self.configure(configure)
    }

    /// With a hook the engine calls before every step.
    pub fn step_hook(mut self, hook: Option<StepHook>) -> Self {
        self.seams.step_hook = hook;
        self
    }

    /// With these seams, whole.
    pub fn seams(mut self, seams: Seams) -> Self {
        self.seams = seams;
        self
    }

    /// With the workflow writer failing the commands `fault` picks.
    pub fn fault(mut self, fault: BatchFault) -> Self {
        self.seams.batch_fault = Some(fault);
        self
    }

    /// Builds the application and serves it on a free port.
    pub async fn spawn(self) -> TestApp {
        init_logs();
        let app_clock: Arc<dyn Clock> = match &self.clock {
            Some(clock) => clock.clone(),
            None => Arc::new(SystemClock),
        };
        let app = Application::build_with_seams(
            &self.settings,
            ADMIN_TOKEN.to_owned(),
            app_clock,
            self.seams,
        )
        .await
        .expect("build application");
        let address = format!("http://127.0.0.1:{}", app.port());
        let state = app.state.clone();
        let server = app.into_server();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        TestApp {
            address,
            client: reqwest::Client::new(),
            state,
            clock: self.clock,
            server: handle,
        }
    }
}

impl Drop for TestApp {
    /// Stops the app as a shutdown would, so that a later app on the same database does not
    /// race it: the engine starts no step and its running ones finish, then HTTP stops. Then
    /// the app's own temporary directory goes.
    fn drop(&mut self) {
        if self.state.engine.is_some() {
            // The test's runtime is the one dropping us; the drain waits on a runtime of its
            // own.
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .expect("a runtime for the drain")
                        .block_on(async {
                            if let Some(engine) = &self.state.engine {
                                atelier::startup::drain(engine, STOP_LIMIT).await;
                            }
                        });
                });
            });
        }
        // The keeper hands the leases back on its own thread once the test's runtime runs
        // again (the pool's connections live there); SQLite's engine lock goes now.
        if let Some(shards) = &self.state.shards {
            shards.let_go();
        }
        // The command goes out now; the server future stops once the test's runtime polls it.
        drop(self.server.stop(false));
        let _ = std::fs::remove_dir_all(&self.state.settings.data_dir);
    }
}
