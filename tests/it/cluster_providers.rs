//! Provider limits and circuits across engine processes on one PostgreSQL database (issue 13):
//! a provider's `max_concurrency` and `requests_per_second` split among the live engines and
//! whole again when one leaves; a circuit one process opens seen open by another.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use atelier_actors::providers::actor::{Limits, ProviderHandle};
use atelier_actors::providers::breaker::Breaker;
use atelier_actors::providers::circuits::{self, SharedCircuits};
use atelier_actors::providers::health::Health;
use atelier_actors::providers::simulator::SimulatorProvider;
use atelier_actors::providers::{Provider, ProviderError};
use uuid::Uuid;

use crate::common::{self, Backend, TestApp, free_port, wait_for};

/// Two engines with the simulator limited to 4 in flight and 10 calls a second for the
/// account: each takes 2 and 5 once both are live, as `/v1/ops/providers` says; when one
/// leaves, the other takes the whole again.
#[actix_web::test]
async fn provider_limits_are_split_among_the_live_engines() {
    common::on_database(Backend::Postgres, "shared_limits", |url| async move {
        let limited = |settings: &mut atelier::config::Settings| {
            let simulator = settings.providers.by_name.get_mut("simulator").unwrap();
            simulator.max_concurrency = 4;
            simulator.requests_per_second = Some(10);
        };
        let first = TestApp::builder(&url).engine(limited).spawn().await;
        wait_share(&first, (1, 4, 10.0)).await;
        let data_dir = first.state.settings.data_dir.clone();
        let second = TestApp::builder(&url)
            .engine(|settings| {
                limited(settings);
                settings.data_dir = data_dir;
            })
            .spawn()
            .await;
        wait_share(&first, (2, 2, 5.0)).await;
        wait_share(&second, (2, 2, 5.0)).await;
        let health = simulator_health(&second).await;
        assert_eq!(health.account_max_concurrency, 4);
        assert_eq!(health.account_requests_per_second, Some(10));
        let listed = first
            .get_json("/v1/ops/providers", common::ADMIN_TOKEN)
            .await;
        let simulator = &listed["items"][0];
        assert_eq!(simulator["share_of"], 2, "{simulator}");
        assert_eq!(simulator["max_concurrency"], 2);
        assert_eq!(simulator["account_max_concurrency"], 4);
        assert_eq!(simulator["requests_per_second"], 5.0);

        // Leaving hands the leases back and the membership goes: whole again.
        drop(second);
        wait_share(&first, (1, 4, 10.0)).await;
    })
    .await;
}

/// A provider actor of another engine process (its own member id) on the same database fails
/// until its circuit opens: the engine's own actor for that provider sees the circuit open
/// (the notification or, failing it, the refresh) and refuses calls, and the row says who
/// opened it and why.
#[actix_web::test]
async fn a_circuit_one_engine_opens_is_open_in_another() {
    common::on_database(Backend::Postgres, "shared_circuit", |url| async move {
        let engine = TestApp::builder(&url).engine(|_| {}).spawn().await;
        assert_eq!(simulator_health(&engine).await.circuit, "closed");
        crate::common::wait_listening(&engine.state.db, "atelier_circuit").await;
        let other = Uuid::now_v7();
        let failing = ProviderHandle::start_as(
            "simulator".into(),
            down(),
            Limits {
                max_concurrency: 4,
                requests_per_second: None,
                breaker: Breaker::new(2, Duration::from_secs(60)),
                call_timeout: Duration::from_secs(5),
            },
        );
        let handles = BTreeMap::from([("simulator".to_owned(), failing.clone())]);
        let _shared = SharedCircuits::start(&engine.state.db, other, handles).expect("PostgreSQL");
        let started = std::time::Instant::now();
        for _ in 0..2 {
            assert!(matches!(
                failing.poll("t").await,
                Err(ProviderError::Retryable(_))
            ));
        }

        wait_for("the circuit open here too", Duration::from_secs(10), || {
            let engine = &engine;
            async move {
                let circuit = simulator_health(engine).await.circuit;
                if circuit == "open" {
                    Ok(())
                } else {
                    Err(circuit)
                }
            }
        })
        .await;
        // The notification's path, unless it was lost (then the refresh's, within a second).
        eprintln!(
            "opened by another process, open here after {:?}",
            started.elapsed()
        );
        let here = &engine.state.provider_handles["simulator"];
        assert!(matches!(
            here.poll("t").await,
            Err(ProviderError::CircuitOpen { .. })
        ));
        let rows = circuits::open_now(&engine.state.db).await.unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(
            (rows[0].provider.as_str(), rows[0].opened_by),
            ("simulator", other)
        );
        assert!(rows[0].reason.starts_with("retryable: "), "{rows:?}");
        assert!(rows[0].remaining > Duration::from_secs(50), "{rows:?}");
    })
    .await;
}

/// A simulator adapter aimed at a port nobody listens on: every call fails, retryably.
fn down() -> Arc<SimulatorProvider> {
    let base = format!("http://127.0.0.1:{}/simulator", free_port());
    Arc::new(SimulatorProvider::new(
        base,
        "key".into(),
        reqwest::Client::new(),
    ))
}

async fn simulator_health(app: &TestApp) -> Health {
    app.state.provider_handles["simulator"]
        .health(chrono::Utc::now())
        .await
        .expect("the provider actor runs")
}

/// Waits until the app's simulator is split among `of` engines, `max_concurrency` and
/// `requests_per_second` its part.
async fn wait_share(app: &TestApp, (of, max_concurrency, rate): (usize, usize, f64)) {
    wait_for("the share", Duration::from_secs(20), || async move {
        let health = simulator_health(app).await;
        let seen = (
            health.share_of,
            health.max_concurrency,
            health.requests_per_second,
        );
        if seen == (of, max_concurrency, Some(rate)) {
            Ok(())
        } else {
            Err(seen)
        }
    })
    .await;
}
