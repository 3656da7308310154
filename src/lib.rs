//! The Atelier service: configuration, the HTTP API and the command line around the engine in
//! `atelier-actors`.
pub mod access_log;
pub mod accounts;
pub mod api;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod dashboard;
pub mod metrics;
pub mod ops;
pub mod ops_cli;
pub mod progress;
pub mod scratch;
pub mod signing;
pub mod simulator;
pub mod startup;
pub mod state;
pub mod stress;
pub mod telemetry;
