//! A circuit breaker for one provider: after `threshold` consecutive failures that say the
//! provider is unwell (retryable errors, throttling, account problems) it opens, and calls are
//! refused at once for `cooldown`; then one probe is let through (half-open) and its outcome
//! closes the circuit again or reopens it. An account problem (bad key, no credit at the
//! provider) opens it at once: no call will succeed until an operator acts. An answer that
//! blames the task (`Permanent`) is the provider working as it should.
use std::time::{Duration, Instant};

use super::ProviderError;
use super::config::MAX_BREAKER_COOLDOWN_SECS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe is in flight; everything else waits for its outcome.
    HalfOpen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Proceed,
    /// The one call that tests a provider whose circuit was open.
    Probe,
    /// Refused without calling the provider; worth trying again after this long.
    Refuse {
        retry_after: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    circuit: Circuit,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            // Bounded as the setting is, so that `now + cooldown` cannot overflow.
            cooldown: cooldown.min(Duration::from_secs(MAX_BREAKER_COOLDOWN_SECS)),
            circuit: Circuit::Closed { failures: 0 },
        }
    }

    /// The circuit as it stands.
    pub fn circuit(&self) -> Circuit {
        self.circuit
    }

    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.circuit {
            Circuit::Closed { .. } => Admission::Proceed,
            Circuit::Open { until } if now >= until => {
                self.circuit = Circuit::HalfOpen;
                Admission::Probe
            }
            Circuit::Open { until } => Admission::Refuse {
                retry_after: until - now,
            },
            Circuit::HalfOpen => Admission::Refuse {
                retry_after: Duration::from_secs(1),
            },
        }
    }

    /// Opens the circuit until `until` because another process of the deployment opened its
    /// own (`providers/circuits.rs`): a closed circuit opens, an open one stays open at least
    /// until then; a half-open one is left to its probe, whose outcome is this process's own
    /// evidence. Whether the circuit was closed and is now open.
    pub fn open_until(&mut self, until: Instant) -> bool {
        match self.circuit {
            Circuit::Closed { .. } => {
                self.circuit = Circuit::Open { until };
                true
            }
            Circuit::Open { until: mine } if mine < until => {
                self.circuit = Circuit::Open { until };
                false
            }
            Circuit::Open { .. } | Circuit::HalfOpen => false,
        }
    }

    /// Records a call's outcome; returns the new circuit when it changed.
    pub fn record<T>(
        &mut self,
        outcome: &Result<T, ProviderError>,
        now: Instant,
    ) -> Option<Circuit> {
        let unwell = matches!(
            outcome,
            Err(ProviderError::Retryable(_)
                | ProviderError::RateLimited { .. }
                | ProviderError::Account(_))
        );
        let account = matches!(outcome, Err(ProviderError::Account(_)));
        let before = self.circuit;
        self.circuit = match (self.circuit, unwell) {
            (_, false) => Circuit::Closed { failures: 0 },
            (Circuit::Closed { failures }, true) if !account && failures + 1 < self.threshold => {
                Circuit::Closed {
                    failures: failures + 1,
                }
            }
            // The threshold reached, a failed probe, or a call admitted before the circuit
            // opened that failed too: open (again) for a full cooldown.
            (_, true) => Circuit::Open {
                until: now + self.cooldown,
            },
        };
        let changed = !matches!(
            (before, self.circuit),
            (Circuit::Closed { .. }, Circuit::Closed { .. })
                | (Circuit::Open { .. }, Circuit::Open { .. })
        );
        changed.then_some(self.circuit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> Result<(), ProviderError> {
        Err(ProviderError::Retryable("503".into()))
    }

    #[test]
    fn opens_after_the_threshold_and_refuses_until_the_cooldown() {
        let start = Instant::now();
        let mut breaker = Breaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            assert_eq!(breaker.admit(start), Admission::Proceed);
            assert_eq!(breaker.record(&failure(), start), None);
        }
        assert_eq!(breaker.admit(start), Admission::Proceed);
        let opened = breaker.record(&failure(), start);
        assert!(matches!(opened, Some(Circuit::Open { .. })));
        let later = start + Duration::from_secs(4);
        assert_eq!(
            breaker.admit(later),
            Admission::Refuse {
                retry_after: Duration::from_secs(6)
            }
        );
    }

    #[test]
    fn a_good_probe_closes_and_a_bad_one_reopens() {
        let start = Instant::now();
        let mut breaker = Breaker::new(1, Duration::from_secs(10));
        breaker.record(&failure(), start);
        let after = start + Duration::from_secs(10);
        assert_eq!(breaker.admit(after), Admission::Probe);
        // While the probe is out, others wait.
        assert!(matches!(breaker.admit(after), Admission::Refuse { .. }));
        assert!(matches!(
            breaker.record(&failure(), after),
            Some(Circuit::Open { .. })
        ));
        let again = after + Duration::from_secs(10);
        assert_eq!(breaker.admit(again), Admission::Probe);
        let closed = breaker.record(&Ok::<(), ProviderError>(()), again);
        assert_eq!(closed, Some(Circuit::Closed { failures: 0 }));
        assert_eq!(breaker.admit(again), Admission::Proceed);
    }

    #[test]
    fn an_account_problem_opens_at_once() {
        let start = Instant::now();
        let mut breaker = Breaker::new(5, Duration::from_secs(10));
        let account: Result<(), _> = Err(ProviderError::Account("invalid key".into()));
        assert!(matches!(
            breaker.record(&account, start),
            Some(Circuit::Open { .. })
        ));
        assert!(matches!(breaker.admit(start), Admission::Refuse { .. }));
    }

    #[test]
    fn another_process_opens_a_closed_circuit_and_extends_an_open_one() {
        let start = Instant::now();
        let later = start + Duration::from_secs(20);
        let mut breaker = Breaker::new(5, Duration::from_secs(10));
        assert!(breaker.open_until(later));
        assert_eq!(breaker.circuit(), Circuit::Open { until: later });
        // Already open for longer: kept.
        assert!(!breaker.open_until(start + Duration::from_secs(5)));
        assert_eq!(breaker.circuit(), Circuit::Open { until: later });
        let mut probing = Breaker::new(1, Duration::from_secs(10));
        probing.record(&failure(), start);
        assert_eq!(
            probing.admit(start + Duration::from_secs(10)),
            Admission::Probe
        );
        assert!(!probing.open_until(later), "the probe decides");
        assert_eq!(probing.circuit(), Circuit::HalfOpen);
    }

    #[test]
    fn a_rejected_task_is_the_provider_working() {
        let start = Instant::now();
        let mut breaker = Breaker::new(2, Duration::from_secs(10));
        breaker.record(&failure(), start);
        let rejected: Result<(), _> = Err(ProviderError::Permanent("bad image".into()));
        breaker.record(&rejected, start);
        breaker.record(&failure(), start);
        assert_eq!(breaker.circuit, Circuit::Closed { failures: 1 });
    }
}
