//! A small in-memory limiter for sign-in: at most N events per key within a fixed
//! window. Two instances guard `POST /api/v1/auth/login`: attempts per client
//! address, and failures per account. State is per process (a restart forgets it).
//!
//! Memory is bounded whatever clients send: keys are short (an address, an
//! employee id, or a digest of an unknown login; logins longer than
//! [`MAX_LOGIN_LEN`] are refused before they get here) and a limiter keeps at most
//! [`MAX_KEYS`] of them: when full, expired windows are swept, then the oldest
//! windows are dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most keys one limiter keeps (about 100 bytes each).
pub const MAX_KEYS: usize = 100_000;

/// The longest login (username or email) the sign-in endpoint takes, in bytes;
/// longer ones are refused before they reach a limiter (an email is at most 254).
pub const MAX_LOGIN_LEN: usize = 320;

/// Counts events per key in fixed windows.
#[derive(Debug)]
pub struct Limiter {
    max: u32,
    window: Duration,
    max_keys: usize,
    counts: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Limiter {
    pub fn new(max: u32, window: Duration) -> Self {
        Self::with_max_keys(max, window, MAX_KEYS)
    }

    /// A limiter keeping at most `max_keys` keys.
    pub fn with_max_keys(max: u32, window: Duration, max_keys: usize) -> Self {
        Self {
            max,
            window,
            max_keys: max_keys.max(1),
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// How many keys are kept now.
    pub fn len(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// True when no key is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        if counts.len() >= self.max_keys && !counts.contains_key(key) {
            let w = self.window;
            counts.retain(|_, (start, _)| now.duration_since(*start) < w);
            // Still full of live windows: drop the oldest down to 90%, so that
            // this is paid once per tenth of `max_keys` new keys, not every hit.
            let target = self.max_keys - (self.max_keys / 10).max(1);
            if counts.len() > target {
                let excess = counts.len() - target;
                let mut starts: Vec<Instant> = counts.values().map(|(s, _)| *s).collect();
                let (_, nth, _) = starts.select_nth_unstable(excess - 1);
                let nth = *nth;
                counts.retain(|_, (start, _)| *start > nth);
            }
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
    /// Failed attempts, per account (the employee the login names, by username or
    /// email alike; a digest of the folded login when it names nobody).
    pub per_account: Limiter,
}

impl LoginLimits {
    /// `per_address`: attempts per client address, `per_account`: failures
    /// per account, both within `window` (`[accounts] login_*`).
    pub fn new(per_address: u32, per_account: u32, window: Duration) -> Self {
        Self {
            per_address: Limiter::new(per_address, window),
            per_account: Limiter::new(per_account, window),
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

    #[test]
    fn keeps_at_most_max_keys() {
        let l = Limiter::with_max_keys(3, Duration::from_secs(60), 100);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            l.hit(&format!("k{i}"), t0 + Duration::from_millis(u64::from(i)));
            assert!(l.len() <= 100, "{} keys after {i}", l.len());
        }
        // The newest keys are the ones kept.
        let last = t0 + Duration::from_millis(9_999);
        l.hit("k9999", last);
        l.hit("k9999", last);
        assert!(l.check("k9999", last).is_err());
    }
}
