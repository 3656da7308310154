//! The one rule of which shard a workflow is in, and what a fenced write carries.
use uuid::Uuid;

/// How many shards there are: fixed, since a workflow's shard is the last byte of its id
/// (the migration that made `shard_leases` made one row for each).
pub const SHARDS: usize = 256;

/// The shard of a workflow: its id's last byte, which is random in a UUIDv7, so shards fill
/// evenly. Storage keys use the same byte (`workflow::inputs`).
pub fn shard_of(id: Uuid) -> i16 {
    i16::from(id.as_bytes()[15])
}

/// What a fenced write proves it may do: the writer (`owner`) held `shard` at `epoch` when it
/// started the step. The write's transaction refuses it unless the lease row still says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fence {
    pub shard: i16,
    pub owner: Uuid,
    pub epoch: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_is_the_last_byte_of_the_id() {
        let id = Uuid::parse_str("01890a5d-ac96-774b-bcce-b302099a8057").unwrap();
        assert_eq!(shard_of(id), 0x57);
        let last = Uuid::parse_str("01890a5d-ac96-774b-bcce-b302099a80ff").unwrap();
        assert_eq!(shard_of(last), 255);
        assert!((shard_of(Uuid::now_v7()) as usize) < SHARDS);
    }
}
