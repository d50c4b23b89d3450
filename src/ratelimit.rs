//! A small in-memory limiter for sign-in: at most N events per key within a fixed
//! window. Two instances guard `POST /api/v1/auth/login`: attempts per client
//! address, and failures per account. State is per process (a restart forgets it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys kept before expired windows are swept.
const SWEEP_AT: usize = 10_000;

/// Counts events per key in fixed windows.
#[derive(Debug)]
pub struct Limiter {
    max: u32,
    window: Duration,
    counts: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Limiter {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` when `key` has used up its window, else `Ok`. Does not count.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match counts.get(key) {
            Some((start, n)) if now.duration_since(*start) < self.window && *n >= self.max => {
                Err(self.window - now.duration_since(*start))
            }
            _ => Ok(()),
        }
    }

    /// Counts one event for `key`.
    pub fn hit(&self, key: &str, now: Instant) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if counts.len() >= SWEEP_AT {
            let w = self.window;
            counts.retain(|_, (start, _)| now.duration_since(*start) < w);
        }
        let e = counts.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(e.0) >= self.window {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
    }

    /// Forgets `key` (a successful sign-in clears the account's failures).
    pub fn clear(&self, key: &str) {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

/// The two limiters of the sign-in endpoint.
#[derive(Debug)]
pub struct LoginLimits {
    /// Every attempt, per client address.
    pub per_address: Limiter,
    /// Failed attempts, per account (the login as typed, case-folded).
    pub per_account: Limiter,
}

impl LoginLimits {
    pub fn new(s: &crate::mail::config::AccountSettings) -> Self {
        Self {
            per_address: Limiter::new(s.login_max_attempts_per_address, s.login_window),
            per_account: Limiter::new(s.login_max_failures, s.login_window),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_until_the_window_ends() {
        let l = Limiter::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(l.check("a", t0).is_ok());
        l.hit("a", t0);
        l.hit("a", t0);
        let wait = l.check("a", t0 + Duration::from_secs(4)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(6));
        assert!(l.check("b", t0).is_ok());
        assert!(l.check("a", t0 + Duration::from_secs(10)).is_ok());
        l.clear("a");
        assert!(l.check("a", t0 + Duration::from_secs(1)).is_ok());
    }
}
