//! The integration suite, one binary: each module was once its own `tests/*.rs` binary that
//! compiled and linked the harness and the whole application again. The tests now share one
//! process, so anything process-wide (logging, the cached huge PNG) is set up once.
#[macro_use]
mod common;
mod emulators;

mod api;
mod chaos;
mod cli_bulk;
mod cluster;
mod cluster_providers;
mod cog;
mod completion_webhooks;
mod concurrency;
mod crash;
mod customer_api;
mod dashboard;
mod dashboard_pages;
mod evolink;
mod fashn;
mod generations_api;
mod hardening;
mod ledger_model;
mod metrics;
mod migrations;
mod openapi;
mod operator;
mod ops_accounts;
mod ops_generations;
mod ops_providers;
mod ops_timeouts;
mod providers;
mod retention;
mod s3;
mod streams;
mod unsigned_callbacks;
mod workflow;
mod workflow_crash;
