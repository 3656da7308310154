//! Builds the running service from `Settings`: database (migrated), ledger actor, expiry
//! sweeper, HTTP server. Tests build the same thing on port 0.
use std::net::TcpListener;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use atelier_actors::clock::saturating_after;
use atelier_actors::engine::registry::Engine;
use atelier_actors::engine::{Deps, EngineConfig, StepHook, UrlForKey};
use atelier_actors::ledger::store::LedgerStore;
use atelier_actors::ledger::{Ledger, sweeper};
use atelier_actors::providers::actor::{Limits, ProviderHandle};
use atelier_actors::providers::breaker::Breaker;
use atelier_actors::providers::cog::CogProvider;
use atelier_actors::providers::config::ProviderConfig;
use atelier_actors::providers::fal::FalProvider;
use atelier_actors::providers::replicate::ReplicateProvider;
use atelier_actors::providers::simulator::SimulatorProvider;
use atelier_actors::providers::{Provider, Providers};
use atelier_actors::storage::Storage;
use atelier_actors::workflow::writer::{DEFAULT_MAX_BATCH as WORKFLOW_BATCH, Workflows};
use atelier_actors::{Clock, db};
use atelier_migrations::{Migrator, MigratorTrait};
use sea_orm::DatabaseConnection;

use crate::api::{self, error::ApiError, json::JsonLimit};
use crate::config::{ConfigError, Settings};
use crate::signing::UrlSigner;
use crate::simulator::Simulator;
use crate::state::AppState;

/// Connects and applies pending migrations.
pub async fn open_database(url: &str) -> anyhow::Result<DatabaseConnection> {
    // One line each, without anyhow's chain: the database errors repeat their own text.
    let db = db::connect(url).await.map_err(|error| {
        anyhow::anyhow!(
            "cannot open database {}: {}",
            redact(url),
            db::describe(&error)
        )
    })?;
    Migrator::up(&db, None)
        .await
        .map_err(|error| anyhow::anyhow!("cannot apply migrations: {}", db::describe(&error)))?;
    Ok(db)
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{}{}@{}", &url[..scheme + 3], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

pub struct Application {
    port: u16,
    server: Server,
    pub state: web::Data<AppState>,
}

impl Application {
    pub async fn build(
        settings: &Settings,
        admin_token: String,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        Self::build_with_hook(settings, admin_token, clock, None).await
    }

    /// As `build`, with a hook the engine calls before every workflow step (fault injection).
    pub async fn build_with_hook(
        settings: &Settings,
        admin_token: String,
        clock: Arc<dyn Clock>,
        step_hook: Option<StepHook>,
    ) -> anyhow::Result<Self> {
        let db = open_database(&settings.database_url).await?;
        let ledger = Ledger::start(
            LedgerStore::new(db.clone(), clock.clone()),
            settings.ledger.max_batch,
        );
        sweeper::spawn(
            ledger.clone(),
            Duration::from_secs(settings.ledger.expiry_sweep_interval_secs),
        );

        let listener = TcpListener::bind(settings.bind)
            .with_context(|| format!("cannot listen on {}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let mut settings = settings.clone();
        if settings.public_url.is_none() {
            // With port 0 the bind address does not say where we are; the listener does.
            settings.public_url = Some(format!("http://{}:{port}", settings.bind.ip()));
        }
        let storage = Storage::local(&settings.data_dir)?;
        let signer =
            UrlSigner::load_or_create(settings.signing_secret.as_deref(), &settings.data_dir)?;
        let public_url = settings.public_url();
        let simulator = web::Data::new(Simulator::new(
            settings.simulator.clone(),
            format!("{public_url}/simulator"),
        ));
        let http_client = reqwest::Client::new();
        let providers = providers(&settings, &public_url, &http_client)?;
        let workflows = Workflows::start(db.clone(), clock.clone(), WORKFLOW_BATCH);
        let engine = settings.workflow.run_engine.then(|| {
            let url_signer = signer.clone();
            let url_clock = clock.clone();
            let url_base = public_url.clone();
            let ttl = settings.workflow.url_ttl_secs;
            let url_for_key: UrlForKey = Arc::new(move |key: &str| {
                url_signer.url(&url_base, key, saturating_after(url_clock.now(), ttl))
            });
            Engine::start_on_own_thread(Deps {
                db: db.clone(),
                workflows: workflows.clone(),
                storage: storage.clone(),
                providers: providers.clone(),
                clock: clock.clone(),
                http: http_client.clone(),
                url_for_key,
                config: EngineConfig {
                    public_url: public_url.clone(),
                    submit_deadline: Duration::from_secs(settings.workflow.submit_deadline_secs),
                    callback_deadline: Duration::from_secs(
                        settings.workflow.callback_deadline_secs,
                    ),
                    max_input_bytes: settings.http.upload_limit_bytes,
                    download_timeout: Duration::from_secs(settings.workflow.download_timeout_secs),
                    allowed_hosts: settings.inputs.allowed_hosts.clone(),
                    chain: settings.providers.chain.clone(),
                    prices: settings
                        .providers
                        .iter()
                        .map(|(name, config)| (name.clone(), config.cost))
                        .collect(),
                    ..EngineConfig::default()
                },
                step_hook,
            })
        });
        let state = web::Data::new(AppState {
            db,
            ledger,
            clock,
            admin_token,
            storage,
            signer,
            settings: Arc::new(settings.clone()),
            providers,
            engine,
            workflows,
        });
        let json_limit = web::Data::new(JsonLimit(settings.http.json_limit_bytes));
        let app_state = state.clone();
        let http = settings.http.clone();
        // Mounted only where it is a configured provider.
        let serve_simulator = settings
            .providers
            .iter()
            .any(|(name, config)| config.adapter_name(name) == "simulator");
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(simulator.clone())
                .app_data(json_limit.clone())
                .app_data(web::QueryConfig::default().error_handler(|error, _| {
                    ApiError::malformed("malformed_query", format!("query string: {error}")).into()
                }))
                .wrap(crate::access_log::middleware())
                .configure(|config| {
                    if serve_simulator {
                        Simulator::routes(config);
                    }
                })
                .configure(|config| api::routes(config, &http))
        })
        .shutdown_timeout(10);
        if settings.http.workers > 0 {
            server = server.workers(settings.http.workers);
        }
        let server = server.listen(listener)?.run();
        Ok(Self {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    /// The server future, for callers that spawn it (tests).
    pub fn into_server(self) -> Server {
        self.server
    }
}

/// An adapter per configured provider, each behind its provider actor.
fn providers(
    settings: &Settings,
    public_url: &str,
    http: &reqwest::Client,
) -> anyhow::Result<Providers> {
    let mut providers = Providers::new();
    for (name, config) in settings.providers.iter() {
        // An adapter refuses the settings it cannot work with: a configuration error.
        let adapter = adapter(name, config, public_url, http).map_err(ConfigError::Invalid)?;
        let limits = Limits {
            max_concurrency: config.max_concurrency,
            requests_per_second: config.requests_per_second.and_then(NonZeroU32::new),
            breaker: Breaker::new(
                config.breaker_threshold,
                Duration::from_secs(config.breaker_cooldown_secs),
            ),
        };
        providers.insert(
            name.clone(),
            Arc::new(ProviderHandle::start(adapter, limits)),
        );
    }
    Ok(providers)
}

/// The adapter `[providers.<name>]` asks for: adding a provider is a file in
/// `actors/src/providers/` and a line here.
fn adapter(
    name: &str,
    config: &ProviderConfig,
    public_url: &str,
    http: &reqwest::Client,
) -> Result<Arc<dyn Provider>, String> {
    let http = http.clone();
    Ok(match config.adapter_name(name) {
        "simulator" => Arc::new(SimulatorProvider::new(
            format!("{public_url}/simulator"),
            http,
        )),
        "cog" => Arc::new(CogProvider::new(name, config, http)?),
        "replicate" => Arc::new(ReplicateProvider::new(name, config, http)?),
        "fal" => Arc::new(FalProvider::new(name, config, http)?),
        other => {
            return Err(format!(
                "providers.{name}: no adapter {other:?} (known: simulator, cog, replicate, fal)"
            ));
        }
    })
}
