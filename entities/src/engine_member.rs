//! An engine process of the deployment, live while its heartbeat keeps `expires_at` ahead of
//! the database's clock. Its id is new at every start, so a restarted process is never taken
//! for the one that died.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "engine_members")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Where it runs, for operators: the host name and the process id.
    pub host: String,
    pub pid: i32,
    pub started_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
