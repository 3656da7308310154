//! Bulk loads for `atelier bench`: workflows that an earlier process left waiting, written
//! straight to the table in one statement per chunk (their holds are taken through the
//! ledger first). The service itself never writes here; it writes through `Workflows`.
use atelier_entities::workflow;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, IntoActiveModel};

/// Inserts `rows` as they are.
pub async fn insert_parked<C: ConnectionTrait>(
    db: &C,
    rows: Vec<workflow::Model>,
) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    let models = rows.into_iter().map(IntoActiveModel::into_active_model);
    workflow::Entity::insert_many(models)
        .exec_without_returning(db)
        .await?;
    Ok(())
}
