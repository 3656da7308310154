//! Schema migrations, applied at start (and by `atelier migrate`). Migrations are frozen once
//! landed: they describe tables with sea-query, never through the entities, so a later change
//! to an entity cannot rewrite history.
pub use sea_orm_migration::prelude::*;

mod m20261124_000001_ledger;
mod m20261124_000002_workflows;
mod m20261124_000003_provider_charge;
mod m20261201_000001_grant_reference_per_account;
mod m20261201_000010_event_versions;
mod m20261202_000010_customer_api;
mod m20261202_000020_completion_webhooks;
mod m20261203_000001_ops_audit;
mod m20261203_000010_retry_of;
mod m20261203_000011_ops_bulk_jobs;
mod m20261203_000020_account_disable;
mod m20261203_000030_provider_pauses;
mod m20261207_000010_shard_leases;
mod m20261207_000020_retention;
mod m20261208_000010_provider_circuits;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_ledger::Migration),
            Box::new(m20261124_000002_workflows::Migration),
            Box::new(m20261124_000003_provider_charge::Migration),
            Box::new(m20261201_000001_grant_reference_per_account::Migration),
            Box::new(m20261201_000010_event_versions::Migration),
            Box::new(m20261202_000010_customer_api::Migration),
            Box::new(m20261202_000020_completion_webhooks::Migration),
            Box::new(m20261203_000001_ops_audit::Migration),
            Box::new(m20261203_000010_retry_of::Migration),
            Box::new(m20261203_000011_ops_bulk_jobs::Migration),
            Box::new(m20261203_000020_account_disable::Migration),
            Box::new(m20261203_000030_provider_pauses::Migration),
            Box::new(m20261207_000010_shard_leases::Migration),
            Box::new(m20261207_000020_retention::Migration),
            Box::new(m20261208_000010_provider_circuits::Migration),
        ]
    }
}
