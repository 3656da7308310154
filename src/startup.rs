//! Builds the running service from `Settings`, in this order: the database (on PostgreSQL
//! probed first; then migrated), the ledger's batching writer and the expiry sweeper, the
//! listener (whose real port fills in a missing `public_url`), storage and the URL signer, the
//! provider adapters behind their actors, the workflow writer, the engine (unless
//! `workflow.run_engine` is off) with the completion webhooks' sender and the pruner, and the HTTP server. Tests build the same thing on port 0,
//! with `Seams`.
use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use atelier_actors::batcher::BatchLimits;
use atelier_actors::clock::saturating_after;
use atelier_actors::cluster::listener::{self, OnNotify};
use atelier_actors::cluster::wakeups::{self, Wakeups};
use atelier_actors::engine::registry::{Drain, Engine, Wake};
use atelier_actors::engine::{Deps, FetchClients, StepHook};
use atelier_actors::images::ImagePool;
use atelier_actors::ledger::LedgerStore;
use atelier_actors::ledger::{Ledger, sweeper};
use atelier_actors::outbound::{Fetcher, host_of};
use atelier_actors::providers::actor::{Limits, ProviderHandle};
use atelier_actors::providers::breaker::Breaker;
use atelier_actors::providers::circuits::{self, SharedCircuits};
use atelier_actors::providers::cog::CogProvider;
use atelier_actors::providers::config::ProviderConfig;
use atelier_actors::providers::evolink::EvoLinkProvider;
use atelier_actors::providers::fal::FalProvider;
use atelier_actors::providers::fashn::FashnProvider;
use atelier_actors::providers::pauses::Pauses;
use atelier_actors::providers::replicate::ReplicateProvider;
use atelier_actors::providers::share::Share;
use atelier_actors::providers::simulator::SimulatorProvider;
use atelier_actors::providers::{Provider, Providers};
use atelier_actors::retention::{Pruner, PrunerHandle};
use atelier_actors::storage::Links;
use atelier_actors::storage::Storage;
use atelier_actors::storage::links::LocalSigner;
use atelier_actors::webhooks_out::sender::Sender;
use atelier_actors::workflow::{BatchFault, Workflows};
use atelier_actors::{Clock, db};
use atelier_migrations::{Migrator, MigratorTrait};
use sea_orm::DatabaseConnection;
use utoipa_actix_web::AppExt;

use crate::api::{self, error::ApiError, json::JsonLimit, streams::StreamSlots};
use crate::cluster::EngineShards;
use crate::config::{ConfigError, Settings};
use crate::signing::UrlSigner;
use crate::simulator::Simulator;
use crate::state::{AppState, Webhooks};

/// Connects (with the default timeouts) and applies pending migrations.
pub async fn open_database(url: &str) -> anyhow::Result<DatabaseConnection> {
    open_database_with(url, db::DbTimeouts::default()).await
}

/// Connects with `timeouts` and applies pending migrations.
pub async fn open_database_with(
    url: &str,
    timeouts: db::DbTimeouts,
) -> anyhow::Result<DatabaseConnection> {
    // One line each, without anyhow's chain: the database errors repeat their own text.
    let db = db::connect_with(url, timeouts).await.map_err(|error| {
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

/// Fault injection for tests: a hook the engine calls before every workflow step, and one
/// the workflow writer asks about every command.
#[derive(Default, Clone)]
pub struct Seams {
    pub step_hook: Option<StepHook>,
    pub batch_fault: Option<BatchFault>,
    /// Called after each page of a bulk job; `false` stops the job there.
    pub bulk_page_hook: Option<crate::ops::bulk::PageHook>,
}

impl Application {
    pub async fn build(
        settings: &Settings,
        admin_token: String,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        Self::build_with_seams(settings, admin_token, clock, Seams::default()).await
    }

    /// As `build`, with fault injection.
    pub async fn build_with_seams(
        settings: &Settings,
        admin_token: String,
        clock: Arc<dyn Clock>,
        seams: Seams,
    ) -> anyhow::Result<Self> {
        let step_hook = seams.step_hook;
        // Once per process, before anything records.
        crate::metrics::handle();
        let db = open_database_with(&settings.database_url, settings.db_timeouts()).await?;
        let batch_deadline = Duration::from_millis(settings.database.batch_deadline_ms);
        let ledger = start_ledger(settings, &db, &clock, batch_deadline);
        let listener = TcpListener::bind(settings.bind)
            .with_context(|| format!("cannot listen on {}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let mut settings = with_public_url(settings, port);
        let storage = Storage::open(&settings.storage, &settings.data_dir)?;
        let signer =
            UrlSigner::load_or_create(settings.signing_secret.as_deref(), &settings.data_dir)?;
        let public_url = settings.public_url();
        let links = links(&settings, &storage, &signer, &public_url, &clock);
        let simulator = simulator(&mut settings, &public_url);
        let http_client = outbound_client(&settings)?;
        let provider_handles = providers(&settings, &public_url, &http_client)?;
        let providers = as_providers(&provider_handles);
        let pauses = load_pauses(&db).await?;
        let fetch_clients = fetch_clients(&settings, &public_url)?;
        let workflows = start_workflows(&settings, &db, &clock, batch_deadline, seams.batch_fault);
        let parts = EngineParts {
            db: &db,
            workflows: &workflows,
            storage: &storage,
            links: &links,
            providers: &providers,
            handles: &provider_handles,
            clock: &clock,
            public_url: &public_url,
            pauses: &pauses,
        };
        let (engine, shards) = start_engine_if_asked(&settings, parts, fetch_clients, step_hook)?;
        let webhooks = start_webhooks(&settings, &db, &clock)?;
        let wakeups = Wakeups::start(&db);
        let pruner = start_pruner(&settings, &db, &storage, &clock);
        let state = web::Data::new(AppState {
            db,
            ledger,
            clock,
            admin_token,
            storage,
            links,
            signer,
            settings: Arc::new(settings.clone()),
            providers,
            provider_handles,
            pauses,
            engine,
            shards,
            workflows,
            wakeups,
            webhooks,
            pruner,
            bulk_hook: seams.bulk_page_hook,
            streams: StreamSlots::new(settings.http.max_streams),
        });
        crate::ops::bulk::resume(state.clone());
        let server = http_server(&settings, state.clone(), simulator, listener)?;
        Ok(Self {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or Ctrl-C. The engine drains first — running steps finish,
    /// none starts — while HTTP still answers (a step may need it: the simulator serves its
    /// results, providers deliver callbacks); then HTTP stops gracefully.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let state = self.state.clone();
        let feed = self.state.workflows.feed().clone();
        actix_web::rt::spawn(async move {
            stop_signal().await;
            tracing::info!("stopping: draining the engine, handing its shards back, then HTTP");
            stop_engine(&state, DRAIN_LIMIT).await;
            // Open status streams end, so that the graceful stop need not wait them out.
            feed.close();
            handle.stop(true).await;
        });
        self.server.await
    }

    /// The server future, for callers that spawn it (tests).
    pub fn into_server(self) -> Server {
        self.server
    }
}

/// The workflow writer, each batch within `deadline`, failing what `fault` picks (tests).
fn start_workflows(
    settings: &Settings,
    db: &DatabaseConnection,
    clock: &Arc<dyn Clock>,
    deadline: Duration,
    fault: Option<BatchFault>,
) -> Workflows {
    let limits = BatchLimits {
        max_batch: settings.workflow.max_batch,
        deadline,
    };
    Workflows::start_with(db.clone(), clock.clone(), limits, fault)
}

/// The provider actors' handles as the engine and the API call them.
fn as_providers(handles: &BTreeMap<String, ProviderHandle>) -> Providers {
    handles
        .iter()
        .map(|(name, handle)| (name.clone(), Arc::new(handle.clone()) as Arc<dyn Provider>))
        .collect()
}

/// Starts the completion webhooks' sender where workflows are driven (it sends what their
/// transitions wrote), and returns it with the destination policy registration checks against.
fn start_webhooks(
    settings: &Settings,
    db: &DatabaseConnection,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<Webhooks> {
    let sender = if settings.workflow.run_engine {
        let sender = Sender::new(db.clone(), clock.clone(), settings.webhooks.clone())
            .context("cannot build the webhook client")?;
        Some(sender.spawn())
    } else {
        None
    };
    let policy = Fetcher::without_redirects(
        settings.webhooks.allowed_hosts.clone(),
        Duration::from_secs(settings.webhooks.connect_timeout_secs),
    )
    .context("cannot build the webhook client")?;
    Ok(Webhooks { policy, sender })
}

/// Starts the pruner (`[retention]`) where workflows are driven, unless everything is kept
/// forever.
fn start_pruner(
    settings: &Settings,
    db: &DatabaseConnection,
    storage: &Storage,
    clock: &Arc<dyn Clock>,
) -> Option<PrunerHandle> {
    (settings.workflow.run_engine && settings.retention.enabled()).then(|| {
        let config = settings.retention.clone();
        Pruner::new(db.clone(), storage.clone(), clock.clone(), config).spawn()
    })
}

/// The ledger's writer, each batch within `deadline`, and its expiry sweeper.
fn start_ledger(
    settings: &Settings,
    db: &DatabaseConnection,
    clock: &Arc<dyn Clock>,
    deadline: Duration,
) -> Ledger {
    let ledger = Ledger::start_with(
        LedgerStore::new(db.clone(), clock.clone()),
        BatchLimits {
            max_batch: settings.ledger.max_batch,
            deadline,
        },
    );
    let every = Duration::from_secs(settings.ledger.expiry_sweep_interval_secs);
    sweeper::spawn(ledger.clone(), every);
    ledger
}

/// The built-in simulator's server state. It and its adapter both live in this process: a key
/// made now (when none is configured) is shared by both, and never written anywhere.
fn simulator(settings: &mut Settings, public_url: &str) -> web::Data<Simulator> {
    let key = settings
        .simulator
        .api_key
        .get_or_insert_with(|| crate::simulator::random_token().into())
        .expose()
        .to_owned();
    web::Data::new(
        Simulator::new(
            settings.simulator.clone(),
            format!("{public_url}/simulator"),
            key,
            settings.images.limits(),
            ImagePool::new(settings.images.workers),
        )
        .fetching_from_storage(settings.storage.link_origin()),
    )
}

/// The URLs handed out for stored objects: on the local filesystem our own signed URLs, valid
/// for `workflow.url_ttl_secs` from when each is made; on S3 what `[storage]` chooses.
fn links(
    settings: &Settings,
    storage: &Storage,
    signer: &UrlSigner,
    public_url: &str,
    clock: &Arc<dyn Clock>,
) -> Links {
    let ttl_secs = settings.workflow.url_ttl_secs;
    let (signer, base, clock) = (signer.clone(), public_url.to_owned(), clock.clone());
    let local: LocalSigner =
        Arc::new(move |key: &str| signer.url(&base, key, saturating_after(clock.now(), ttl_secs)));
    Links::new(
        storage.clone(),
        &settings.storage,
        Duration::from_secs(ttl_secs),
        local,
    )
}

/// What each configured provider costs, for failover.
fn prices(settings: &Settings) -> HashMap<String, i64> {
    settings
        .providers
        .iter()
        .map(|(name, config)| (name.clone(), config.cost))
        .collect()
}

/// The actix server on `listener`, running.
fn http_server(
    settings: &Settings,
    app_state: web::Data<AppState>,
    simulator: web::Data<Simulator>,
    listener: TcpListener,
) -> anyhow::Result<Server> {
    let json_limit = web::Data::new(JsonLimit(settings.http.json_limit_bytes));
    let http = settings.http.clone();
    // Mounted only where it is a configured provider.
    let serve_simulator = settings
        .providers
        .iter()
        .any(|(name, config)| config.adapter_name(name) == "simulator");
    let mut server = HttpServer::new(move || {
        let (app, openapi) = App::new()
            .app_data(app_state.clone())
            .app_data(simulator.clone())
            .app_data(json_limit.clone())
            .app_data(web::QueryConfig::default().error_handler(|error, _| {
                ApiError::malformed("malformed_query", format!("query string: {error}")).into()
            }))
            .wrap(crate::access_log::middleware())
            // The simulator stands in for a provider: not part of the API nor of its document.
            .configure(|config| {
                if serve_simulator {
                    Simulator::routes(config);
                }
            })
            // The dashboard's HTML pages: not part of the API's document either.
            .configure(crate::dashboard::routes)
            .into_utoipa_app()
            .openapi(api::openapi::base())
            .configure(|config| api::routes(&mut api::Routes::new(config), &http))
            .split_for_parts();
        let document = api::openapi::Document::new(&api::openapi::complete(openapi));
        app.app_data(web::Data::new(document))
            .route("/docs", web::get().to(api::openapi::docs_redirect))
            .service(api::openapi::docs())
    })
    .shutdown_timeout(10)
    // Signals are ours (`run_until_stopped`): the engine must drain before HTTP stops.
    .disable_signals();
    if settings.http.workers > 0 {
        server = server.workers(settings.http.workers);
    }
    Ok(server.listen(listener)?.run())
}

/// Longest a shutdown waits for running workflow steps.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

async fn stop_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The engine half of a shutdown, also for callers that stop an app without a signal: the
/// engine drains (for at most `limit`), then its shards are handed back, so that another
/// process adopts them at its next tick instead of after the lease TTL.
pub async fn stop_engine(state: &AppState, limit: Duration) {
    if let Some(engine) = &state.engine {
        drain(engine, limit).await;
    }
    if let Some(shards) = &state.shards {
        shards.release(Duration::from_secs(5)).await;
    }
}

/// Asks the engine to drain until no step runs, for at most `limit`.
pub async fn drain(engine: &actix::Addr<Engine>, limit: Duration) {
    let started = std::time::Instant::now();
    while let Ok(running) = engine.send(Drain).await {
        if running == 0 {
            tracing::info!("engine drained");
            return;
        }
        if started.elapsed() >= limit {
            tracing::warn!(
                running,
                "engine still running steps at the drain limit; stopping anyway"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The client for calls to providers and downloads: no call waits forever on a host that
/// accepts and never answers.
fn outbound_client(settings: &Settings) -> anyhow::Result<reqwest::Client> {
    let outbound = &settings.outbound;
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(outbound.connect_timeout_secs))
        .read_timeout(Duration::from_secs(outbound.read_timeout_secs))
        .timeout(Duration::from_secs(outbound.request_timeout_secs))
        .build()
        .context("cannot build the HTTP client")
}

/// The outgoing-fetch policy's clients: inputs reach public addresses and the allowed hosts;
/// results also each provider's own host (a self-hosted Cog on a private network, the
/// simulator here).
fn fetch_clients(settings: &Settings, public_url: &str) -> anyhow::Result<FetchClients> {
    let allowed = settings.allowed_hosts();
    let provider_hosts =
        settings
            .providers
            .iter()
            .filter_map(|(name, config)| match config.adapter_name(name) {
                "simulator" => host_of(public_url),
                _ => config.base_url.as_deref().and_then(host_of),
            });
    let results = allowed.iter().cloned().chain(provider_hosts);
    Ok(FetchClients {
        inputs: Fetcher::new(allowed.clone()).context("cannot build the fetch client")?,
        results: Fetcher::new(results).context("cannot build the fetch client")?,
    })
}

/// An adapter per configured provider, each behind its provider actor.
fn providers(
    settings: &Settings,
    public_url: &str,
    http: &reqwest::Client,
) -> anyhow::Result<BTreeMap<String, ProviderHandle>> {
    let mut providers = BTreeMap::new();
    for (name, config) in settings.providers.iter() {
        // An adapter refuses the settings it cannot work with: a configuration error.
        let adapter =
            adapter(name, config, settings, public_url, http).map_err(ConfigError::Invalid)?;
        let limits = Limits {
            max_concurrency: config.max_concurrency,
            requests_per_second: config.requests_per_second.and_then(NonZeroU32::new),
            breaker: Breaker::new(
                config.breaker_threshold,
                Duration::from_secs(config.breaker_cooldown_secs),
            ),
            call_timeout: Duration::from_secs(settings.outbound.request_timeout_secs),
        };
        let handle = ProviderHandle::start_as(name.clone(), adapter, limits);
        providers.insert(name.clone(), handle);
    }
    Ok(providers)
}

/// The adapter `[providers.<name>]` asks for: adding a provider is a file in
/// `actors/src/providers/` and a line here.
fn adapter(
    name: &str,
    config: &ProviderConfig,
    settings: &Settings,
    public_url: &str,
    http: &reqwest::Client,
) -> Result<Arc<dyn Provider>, String> {
    let http = http.clone();
    Ok(match config.adapter_name(name) {
        "simulator" => Arc::new(SimulatorProvider::new(
            format!("{public_url}/simulator"),
            settings
                .simulator
                .api_key
                .as_ref()
                .map(|key| key.expose().to_owned())
                .unwrap_or_default(),
            http,
        )),
        "cog" => Arc::new(CogProvider::new(name, config, http)?),
        "replicate" => Arc::new(ReplicateProvider::new(name, config, http)?),
        "fal" => Arc::new(FalProvider::new(name, config, http)?),
        "evolink" => Arc::new(EvoLinkProvider::new(name, config, http)?),
        "fashn" => Arc::new(FashnProvider::new(name, config, http)?),
        other => {
            return Err(format!(
                "providers.{name}: no adapter {other:?} (known: simulator, cog, replicate, fal, \
                 evolink, fashn)"
            ));
        }
    })
}

/// What the engine shares with the rest of the service.
struct EngineParts<'a> {
    db: &'a DatabaseConnection,
    workflows: &'a Workflows,
    storage: &'a Storage,
    links: &'a Links,
    providers: &'a Providers,
    handles: &'a BTreeMap<String, ProviderHandle>,
    clock: &'a Arc<dyn Clock>,
    public_url: &'a str,
    pauses: &'a Pauses,
}

async fn load_pauses(db: &DatabaseConnection) -> anyhow::Result<Pauses> {
    Pauses::load(db)
        .await
        .map_err(|error| anyhow::anyhow!("cannot read the provider pauses: {error}"))
}

type EngineAndShards = (Option<actix::Addr<Engine>>, Option<EngineShards>);

/// The engine when `workflow.run_engine` says so, and the process's `LISTEN` either way.
fn start_engine_if_asked(
    settings: &Settings,
    parts: EngineParts<'_>,
    fetch: FetchClients,
    step_hook: Option<StepHook>,
) -> anyhow::Result<EngineAndShards> {
    if !settings.workflow.run_engine {
        listen(&parts, None);
        return Ok((None, None));
    }
    let (engine, shards) = start_engine(settings, &parts, fetch, step_hook)?;
    listen(&parts, Some((&engine, shards.ownership.owner())));
    Ok((Some(engine), Some(shards)))
}

/// Starts the engine on its own thread with `[workflow]` as it is and the settings it needs
/// from other sections.
fn start_engine(
    settings: &Settings,
    parts: &EngineParts<'_>,
    fetch: FetchClients,
    step_hook: Option<StepHook>,
) -> anyhow::Result<(actix::Addr<Engine>, EngineShards)> {
    let shards = EngineShards::prepare(&settings.database_url, parts.db, &settings.cluster)?;
    // The engine's copy follows pauses made through any process of the deployment.
    parts.pauses.spawn_refresh(parts.db.clone());
    let arbiter = actix::Arbiter::new();
    let deps = Deps {
        db: parts.db.clone(),
        workflows: parts.workflows.clone(),
        storage: parts.storage.clone(),
        providers: parts.providers.clone(),
        clock: parts.clock.clone(),
        fetch,
        links: parts.links.clone(),
        config: settings.workflow.clone(),
        public_url: parts.public_url.to_owned(),
        max_input_bytes: settings.inputs.max_bytes,
        image_limits: settings.images.limits(),
        chain: settings.providers.chain.clone(),
        prices: prices(settings),
        pauses: parts.pauses.clone(),
        step_hook,
        draining: Arc::default(),
        ownership: shards.ownership.clone(),
    };
    let engine = Engine::start_on(&arbiter.handle(), deps);
    let handles = parts.handles.clone();
    let on_live = Arc::new(move |live: atelier_actors::cluster::members::Live| {
        let share = Share::new(live.count, live.rank);
        handles.values().for_each(|handle| handle.share(share));
    });
    shards.start(
        parts.db,
        &settings.cluster,
        &arbiter.handle(),
        &engine,
        on_live,
    );
    Ok((engine, shards))
}

/// The process's one `LISTEN` (PostgreSQL): every process follows the other processes'
/// commits for its status streams; an engine (with its member id) also its wake-ups, and the
/// circuits other processes open for its provider actors, which share theirs from now on.
fn listen(parts: &EngineParts<'_>, engine: Option<(&actix::Addr<Engine>, uuid::Uuid)>) {
    let mut channels = vec![parts.workflows.feed().channel()];
    let Some((engine, me)) = engine else {
        listener::listen(parts.db, channels);
        return;
    };
    let woken = engine.clone();
    channels.push(wakeups::channel(move |id| woken.do_send(Wake(id))));
    if let Some(shared) = SharedCircuits::start(parts.db, me, parts.handles.clone()) {
        let on: OnNotify = Box::new(move |provider| shared.notified(provider));
        channels.push((circuits::CHANNEL, on));
    }
    listener::listen(parts.db, channels);
}

/// The settings with `public_url` filled in: with port 0 the bind address does not say where
/// we are; the listener (on `port`) does.
fn with_public_url(settings: &Settings, port: u16) -> Settings {
    let mut settings = settings.clone();
    if settings.public_url.is_none() {
        settings.public_url = Some(format!("http://{}:{port}", settings.bind.ip()));
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{from_toml, readme_provider_examples};

    /// The README's EvoLink and FASHN examples build their adapters (which check the keys
    /// each needs) as they stand. (Replicate's carries a placeholder secret, refused at start.)
    #[test]
    fn the_readme_task_api_examples_build_their_adapters() {
        let http = reqwest::Client::new();
        let mut built = Vec::new();
        for block in readme_provider_examples() {
            let settings = from_toml(&block).unwrap();
            let name = settings.default_provider.clone();
            if !["evolink", "fashn"].contains(&name.as_str()) {
                continue;
            }
            let config = &settings.providers[&name];
            let adapter = adapter(
                &name,
                config,
                &settings,
                "https://atelier.example.com",
                &http,
            )
            .unwrap_or_else(|error| panic!("{error}\n{block}"));
            assert_eq!(adapter.name(), name);
            built.push(name);
        }
        assert_eq!(built, ["evolink", "fashn"]);
    }
}
