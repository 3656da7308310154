//! The process's Prometheus recorder: installed once, whatever number of applications the
//! process builds (the integration tests build many), and rendered by `GET /metrics`. What
//! each metric means and where it is recorded: `atelier_actors::metrics`.
use std::sync::OnceLock;

use atelier_actors::metrics::HISTOGRAMS;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The recorder's handle, installing it on the first call. `None` when another recorder was
/// installed first (an embedding program's own): the metrics go there, and `/metrics` says
/// so.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE.get_or_init(install).as_ref()
}

fn install() -> Option<PrometheusHandle> {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in HISTOGRAMS {
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
            .expect("the buckets are not empty");
    }
    match builder.install_recorder() {
        Ok(handle) => {
            atelier_actors::metrics::enable();
            Some(handle)
        }
        Err(error) => {
            tracing::warn!(%error, "cannot install the Prometheus recorder; /metrics stays empty");
            None
        }
    }
}
