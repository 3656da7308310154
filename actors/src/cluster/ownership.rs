//! This process's view of the shards it holds: what the engine asks before it starts a
//! workflow's actor, before each step, and for the due work it looks for.
//!
//! A lease counts as held here only until `validity` after the renewal that last confirmed it
//! was sent: the database's lease outlives that (it was extended from a later instant), so a
//! process that was frozen (SIGSTOP, a long pause) stops starting steps before another
//! process can take its shards, whatever the clocks say. The fence in every write is what
//! makes it safe; this only keeps a zombie from calling providers for work it no longer owns.
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::leases::Held;
use super::shard::{Fence, SHARDS, shard_of};

/// How this process may drive a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The only engine on the database (SQLite): no lease, no fence.
    Exclusive,
    /// Under the shard's lease: every write carries the fence.
    Fenced(Fence),
}

impl Claim {
    pub fn fence(self) -> Option<Fence> {
        match self {
            Claim::Exclusive => None,
            Claim::Fenced(fence) => Some(fence),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    epoch: i64,
    /// Being handed back: no new step starts; it goes once its actors are done.
    leaving: bool,
}

#[derive(Default)]
struct State {
    held: HashMap<i16, Lease>,
    /// When the renewal that last confirmed the leases was sent.
    confirmed_at: Option<Instant>,
}

pub struct Ownership {
    owner: Uuid,
    /// `None`: exclusive, every shard always held.
    validity: Option<Duration>,
    state: Mutex<State>,
    /// Running generation actors per shard, so a lease is handed back when its work is done.
    running: Vec<AtomicU32>,
}

impl Ownership {
    /// The only engine on its database.
    pub fn exclusive(owner: Uuid) -> Self {
        Self::new(owner, None)
    }

    /// Shards held through leases, each trusted for `validity` after its last renewal.
    pub fn leased(owner: Uuid, validity: Duration) -> Self {
        Self::new(owner, Some(validity))
    }

    fn new(owner: Uuid, validity: Option<Duration>) -> Self {
        Self {
            owner,
            validity,
            state: Mutex::new(State::default()),
            running: (0..SHARDS).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    pub fn owner(&self) -> Uuid {
        self.owner
    }

    pub fn is_exclusive(&self) -> bool {
        self.validity.is_none()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding it leaves plain data behind, still coherent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn confirmed(&self, state: &State) -> bool {
        match (self.validity, state.confirmed_at) {
            (None, _) => true,
            (Some(validity), Some(at)) => at.elapsed() < validity,
            (Some(_), None) => false,
        }
    }

    /// May a step of workflow `id` start now, and under which claim.
    pub fn claim(&self, id: Uuid) -> Option<Claim> {
        if self.is_exclusive() {
            return Some(Claim::Exclusive);
        }
        let shard = shard_of(id);
        let state = self.state();
        let lease = state.held.get(&shard).filter(|lease| !lease.leaving)?;
        self.confirmed(&state).then_some(Claim::Fenced(Fence {
            shard,
            owner: self.owner,
            epoch: lease.epoch,
        }))
    }

    /// Whether a step under `claim` may still start: the lease held at the same epoch, not
    /// being handed back, and confirmed recently enough.
    pub fn still_holds(&self, claim: Claim) -> bool {
        match claim {
            Claim::Exclusive => true,
            Claim::Fenced(fence) => {
                let state = self.state();
                let same = state
                    .held
                    .get(&fence.shard)
                    .is_some_and(|lease| lease.epoch == fence.epoch && !lease.leaving);
                same && self.confirmed(&state)
            }
        }
    }

    /// The shards whose due work this process looks for: `None` for all of them.
    pub fn due_shards(&self) -> Option<Vec<i16>> {
        if self.is_exclusive() {
            return None;
        }
        let state = self.state();
        if !self.confirmed(&state) {
            return Some(Vec::new());
        }
        let mut shards: Vec<i16> = state
            .held
            .iter()
            .filter(|(_, lease)| !lease.leaving)
            .map(|(shard, _)| *shard)
            .collect();
        if shards.len() == SHARDS {
            return None;
        }
        shards.sort_unstable();
        Some(shards)
    }

    /// A renewal sent at `sent_at` answered `held`: the leases are those. Answers the shards
    /// this process believed it held and no longer does (another took them).
    pub fn renewed(&self, held: &[Held], sent_at: Instant) -> Vec<i16> {
        let mut state = self.state();
        let mut lost = Vec::new();
        state.held.retain(|shard, lease| {
            let kept = held
                .iter()
                .any(|now| now.shard == *shard && now.epoch == lease.epoch);
            if !kept {
                lost.push(*shard);
            }
            kept
        });
        for now in held {
            state.held.entry(now.shard).or_insert(Lease {
                epoch: now.epoch,
                leaving: false,
            });
        }
        state.confirmed_at = Some(sent_at);
        lost.sort_unstable();
        lost
    }

    /// Leases just taken (by a statement sent after the last renewal's).
    pub fn taken(&self, taken: &[Held]) {
        let mut state = self.state();
        for lease in taken {
            state.held.insert(
                lease.shard,
                Lease {
                    epoch: lease.epoch,
                    leaving: false,
                },
            );
        }
    }

    /// Starts handing back `count` shards (of those not already leaving, any): their actors
    /// finish their step, none starts. Answers which.
    pub fn start_leaving(&self, count: usize, pick: &mut impl FnMut(&mut Vec<i16>)) -> Vec<i16> {
        let mut state = self.state();
        let mut staying: Vec<i16> = state
            .held
            .iter()
            .filter(|(_, lease)| !lease.leaving)
            .map(|(shard, _)| *shard)
            .collect();
        staying.sort_unstable();
        pick(&mut staying);
        staying.truncate(count);
        for shard in &staying {
            if let Some(lease) = state.held.get_mut(shard) {
                lease.leaving = true;
            }
        }
        staying
    }

    /// Shards being handed back whose actors are all done.
    pub fn idle_leaving(&self) -> Vec<i16> {
        let state = self.state();
        let mut idle: Vec<i16> = state
            .held
            .iter()
            .filter(|(shard, lease)| lease.leaving && self.running_in(**shard) == 0)
            .map(|(shard, _)| *shard)
            .collect();
        idle.sort_unstable();
        idle
    }

    /// Every held shard stops counting as held (a shutdown hands them all back).
    pub fn release_all(&self) -> Vec<i16> {
        let mut state = self.state();
        let mut all: Vec<i16> = state.held.drain().map(|(shard, _)| shard).collect();
        all.sort_unstable();
        all
    }

    /// `shards` were handed back.
    pub fn handed_back(&self, shards: &[i16]) {
        let mut state = self.state();
        for shard in shards {
            state.held.remove(shard);
        }
    }

    /// A write under `fence` was refused: the lease is gone (whatever the last renewal said).
    pub fn fenced_out(&self, fence: Fence) {
        let mut state = self.state();
        if state
            .held
            .get(&fence.shard)
            .is_some_and(|lease| lease.epoch == fence.epoch)
        {
            state.held.remove(&fence.shard);
        }
    }

    /// How many shards are held (leaving ones included), for the keeper and operators.
    pub fn held_count(&self) -> usize {
        if self.is_exclusive() {
            return SHARDS;
        }
        self.state().held.len()
    }

    /// A generation actor of `shard` started.
    pub fn started(&self, shard: i16) {
        self.running[shard as usize].fetch_add(1, Ordering::SeqCst);
    }

    /// A generation actor of `shard` ended.
    pub fn stopped(&self, shard: i16) {
        let _ =
            self.running[shard as usize].fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(1))
            });
    }

    fn running_in(&self, shard: i16) -> u32 {
        self.running[shard as usize].load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_in(shard: u8) -> Uuid {
        let mut bytes = *Uuid::now_v7().as_bytes();
        bytes[15] = shard;
        Uuid::from_bytes(bytes)
    }

    #[test]
    fn a_shard_is_claimed_only_while_held_confirmed_and_staying() {
        let owner = Uuid::now_v7();
        let ownership = Ownership::leased(owner, Duration::from_millis(200));
        let id = id_in(7);
        assert_eq!(ownership.claim(id), None, "nothing held yet");
        let lost = ownership.renewed(&[Held { shard: 7, epoch: 3 }], Instant::now());
        assert!(lost.is_empty());
        let claim = ownership.claim(id).expect("held");
        assert_eq!(
            claim.fence(),
            Some(Fence {
                shard: 7,
                owner,
                epoch: 3
            })
        );
        assert_eq!(ownership.claim(id_in(8)), None, "another shard");
        assert_eq!(ownership.due_shards(), Some(vec![7]));

        // Taken by another process and back at a higher epoch: the old claim is no good.
        let lost = ownership.renewed(&[Held { shard: 7, epoch: 5 }], Instant::now());
        assert_eq!(lost, vec![7]);
        assert!(!ownership.still_holds(claim));
        let claim = ownership.claim(id).expect("held again");
        assert!(ownership.still_holds(claim));

        // Being handed back: no new step, and gone from the due work.
        let mut first = |_: &mut Vec<i16>| {};
        assert_eq!(ownership.start_leaving(1, &mut first), vec![7]);
        assert!(!ownership.still_holds(claim));
        assert_eq!(ownership.claim(id), None);
        assert_eq!(ownership.due_shards(), Some(vec![]));
    }

    #[test]
    fn an_unconfirmed_lease_is_not_trusted() {
        let ownership = Ownership::leased(Uuid::now_v7(), Duration::from_millis(50));
        let sent = Instant::now();
        ownership.renewed(&[Held { shard: 1, epoch: 1 }], sent);
        let claim = ownership.claim(id_in(1)).expect("confirmed just now");
        std::thread::sleep(Duration::from_millis(80));
        assert!(
            !ownership.still_holds(claim),
            "a frozen process stops trusting its leases"
        );
        assert_eq!(ownership.claim(id_in(1)), None);
        assert_eq!(ownership.due_shards(), Some(vec![]));
    }

    #[test]
    fn a_leaving_shard_goes_once_its_actors_are_done() {
        let ownership = Ownership::leased(Uuid::now_v7(), Duration::from_secs(5));
        ownership.renewed(
            &[Held { shard: 1, epoch: 1 }, Held { shard: 2, epoch: 1 }],
            Instant::now(),
        );
        ownership.started(1);
        let mut all = |_: &mut Vec<i16>| {};
        assert_eq!(ownership.start_leaving(2, &mut all), vec![1, 2]);
        assert_eq!(ownership.idle_leaving(), vec![2]);
        ownership.stopped(1);
        assert_eq!(ownership.idle_leaving(), vec![1, 2]);
        ownership.handed_back(&[1, 2]);
        assert_eq!(ownership.held_count(), 0);
    }

    #[test]
    fn the_only_engine_holds_everything_unfenced() {
        let ownership = Ownership::exclusive(Uuid::now_v7());
        assert_eq!(ownership.claim(Uuid::now_v7()), Some(Claim::Exclusive));
        assert!(ownership.still_holds(Claim::Exclusive));
        assert_eq!(ownership.due_shards(), None);
        assert_eq!(ownership.held_count(), SHARDS);
    }
}
