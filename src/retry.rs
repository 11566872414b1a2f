//! Retrying a dependency that is down (pure: the caller sleeps and acts; times are passed in).
//!
//! [`Backoff`]: exponential waits with full jitter between a base and a cap, and a limit on the
//! time spent retrying one operation. [`Breaker`]: a circuit breaker per dependency. Closed, it
//! lets attempts through and counts consecutive failures; at `threshold` failures it opens and
//! refuses attempts for `open_for`; then it is half-open and lets one probe through, which
//! closes it on success or opens it again on failure. So a dead warehouse is not hammered, and
//! the loader resumes by itself once a probe succeeds.

use std::time::{Duration, Instant};

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First wait.
    pub base: Duration,
    /// Longest wait.
    pub cap: Duration,
    /// Give up when an operation has failed for this long.
    pub max_elapsed: Duration,
}

impl Backoff {
    /// The wait before attempt `attempt` + 1 (`attempt` ≥ 1 failures so far), given a random
    /// `unit` in [0, 1): between half and all of `base · 2^(attempt-1)`, capped.
    pub fn wait(&self, attempt: u32, unit: f64) -> Duration {
        let full = self
            .base
            .saturating_mul(1_u32 << attempt.saturating_sub(1).min(20))
            .min(self.cap);
        full.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    /// Whether an operation failing since `since` should still be retried at `now`.
    pub fn keep_trying(&self, since: Instant, now: Instant) -> bool {
        now.saturating_duration_since(since) < self.max_elapsed
    }
}

/// The state of a [`Breaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Attempts go through.
    Closed,
    /// Attempts are refused until the instant.
    Open(Instant),
    /// One probe goes through.
    HalfOpen,
}

impl State {
    /// `closed`, `open` or `half-open`, for status lines and metrics.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open(_) => "open",
            State::HalfOpen => "half-open",
        }
    }
}

/// A circuit breaker (module doc).
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    failures: u32,
    state: State,
    /// Times it opened.
    pub opened: u64,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures, for `open_for`.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            open_for,
            failures: 0,
            state: State::Closed,
            opened: 0,
        }
    }

    /// The state at `now` (an open breaker whose time is up is half-open).
    pub fn state(&mut self, now: Instant) -> State {
        if let State::Open(until) = self.state
            && now >= until
        {
            self.state = State::HalfOpen;
        }
        self.state
    }

    /// How long to wait before an attempt may be made (zero when closed or half-open).
    pub fn wait(&mut self, now: Instant) -> Duration {
        match self.state(now) {
            State::Open(until) => until.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    /// An attempt succeeded: closed.
    pub fn success(&mut self) {
        self.failures = 0;
        self.state = State::Closed;
    }

    /// An attempt failed at `now`: opens at the threshold, or again after a failed probe.
    pub fn failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let probe_failed = self.state(now) == State::HalfOpen;
        if probe_failed || self.failures >= self.threshold {
            if !matches!(self.state, State::Open(_)) {
                self.opened += 1;
            }
            self.state = State::Open(now + self.open_for);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(10),
        };
        assert_eq!(b.wait(1, 1.0), Duration::from_millis(100));
        assert_eq!(b.wait(1, 0.0), Duration::from_millis(50));
        assert_eq!(b.wait(3, 1.0), Duration::from_millis(400));
        assert_eq!(b.wait(10, 1.0), Duration::from_secs(1));
        assert_eq!(b.wait(40, 0.0), Duration::from_millis(500));
        let t = Instant::now();
        assert!(b.keep_trying(t, t + Duration::from_secs(9)));
        assert!(!b.keep_trying(t, t + Duration::from_secs(10)));
    }

    #[test]
    fn the_breaker_opens_at_the_threshold_probes_and_closes() {
        let t = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(30));
        b.failure(t);
        b.failure(t);
        assert_eq!(b.state(t), State::Closed);
        b.failure(t);
        assert_eq!(b.state(t), State::Open(t + Duration::from_secs(30)));
        assert_eq!(b.wait(t + Duration::from_secs(10)), Duration::from_secs(20));
        assert_eq!(b.opened, 1);
        // Time is up: one probe. It fails: open again at once.
        let later = t + Duration::from_secs(30);
        assert_eq!(b.state(later), State::HalfOpen);
        assert_eq!(b.wait(later), Duration::ZERO);
        b.failure(later);
        assert_eq!(b.state(later), State::Open(later + Duration::from_secs(30)));
        assert_eq!(b.opened, 2);
        // The next probe succeeds: closed, and it takes `threshold` failures to open again.
        let probe = later + Duration::from_secs(30);
        assert_eq!(b.state(probe), State::HalfOpen);
        b.success();
        assert_eq!(b.state(probe), State::Closed);
        b.failure(probe);
        assert_eq!(b.state(probe).name(), "closed");
    }
}
