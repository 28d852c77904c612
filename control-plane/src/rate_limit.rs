//! Rate limits in fixed one-minute windows, as the edge counts them:
//! - the native runtime, per workspace: the workspace's own `rate_limit_rpm`, else its plan's
//!   (`WORKSPACE_RATE_LIMIT_RPM` 500 free, `PRO_RATE_LIMIT_RPM` 5000,
//!   `ENTERPRISE_RATE_LIMIT_RPM` 50000 — the names and defaults the Worker reads);
//! - the admin API, per client: `GLOBAL_RATE_LIMIT_RPM` (100), the client being its
//!   credential (a hash of the `Authorization` header) or, without one, its address.
//!
//! `0` turns a limit off. With `REDIS_URL`, a window's count lives in Redis (one `INCR` on a
//! key per window, [`Limiter::count`]), so the limits hold across replicas; without Redis, or
//! while it is down or slow (`REDIS_TIMEOUT_MS`), each process counts its own share here
//! ([`Limiter::check`]), silently.
//! An answer over the limit is a 429 with `Retry-After` and `X-RateLimit-Tier`, `-Limit`,
//! `-Remaining`, `-Reset`; answers under it carry the `X-RateLimit-*` headers too.

use foldhash::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use edgemock_shared::model::{PlanTier, WorkspaceRef};

const WINDOW_MS: i64 = 60_000;
/// Keys kept before windows that are over are swept out.
const SWEEP_AT: usize = 50_000;

/// The limits of one deployment.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub global_rpm: u32,
    pub free_rpm: u32,
    pub pro_rpm: u32,
    pub enterprise_rpm: u32,
}

impl Limits {
    /// The limit and tier of a workspace's mock traffic.
    pub fn for_workspace(&self, workspace: &WorkspaceRef) -> (u32, &'static str) {
        let (plan_rpm, tier) = match workspace.plan {
            PlanTier::Free => (self.free_rpm, "free"),
            PlanTier::Pro => (self.pro_rpm, "pro"),
            PlanTier::Enterprise => (self.enterprise_rpm, "enterprise"),
        };
        (workspace.rate_limit_rpm.unwrap_or(plan_rpm), tier)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub tier: &'static str,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window starts over.
    pub reset_seconds: u64,
}

impl Verdict {
    /// [`Verdict::headers`] as header values, without text in between.
    pub fn header_values(&self) -> [(axum::http::HeaderName, axum::http::HeaderValue); 4] {
        use axum::http::{HeaderName, HeaderValue};
        // Constants: `from_static` checks a name each time it runs, in a `const` once.
        const TIER: HeaderName = HeaderName::from_static("x-ratelimit-tier");
        const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
        const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
        const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
        [
            (TIER, HeaderValue::from_static(self.tier)),
            (LIMIT, limit_value(self.limit)),
            (REMAINING, number_value(self.remaining)),
            (RESET, reset_value(self.reset_seconds)),
        ]
    }

    pub fn headers(&self) -> [(&'static str, String); 4] {
        [
            ("x-ratelimit-tier", self.tier.to_owned()),
            ("x-ratelimit-limit", self.limit.to_string()),
            ("x-ratelimit-remaining", self.remaining.to_string()),
            ("x-ratelimit-reset", self.reset_seconds.to_string()),
        ]
    }
}

/// `x-ratelimit-reset` (0 to 60 seconds) without formatting or allocating: a mock answer
/// carries it on every request.
fn reset_value(seconds: u64) -> axum::http::HeaderValue {
    const SECONDS: [&str; 61] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
        "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31",
        "32", "33", "34", "35", "36", "37", "38", "39", "40", "41", "42", "43", "44", "45", "46",
        "47", "48", "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59", "60",
    ];
    usize::try_from(seconds)
        .ok()
        .and_then(|s| SECONDS.get(s))
        .map_or_else(|| seconds.into(), |s| axum::http::HeaderValue::from_static(s))
}

/// A number as a header value, in one allocation of its exact size: `HeaderValue::from(u32)`
/// makes two (a buffer, then a shared copy of it when frozen), on every mock answer.
fn number_value(n: u32) -> axum::http::HeaderValue {
    let mut digits = itoa::Buffer::new();
    axum::http::HeaderValue::from_str(digits.format(n)).unwrap_or_else(|_| n.into())
}

/// `x-ratelimit-limit`: a workspace's limit seldom changes, so each thread keeps the value it
/// formatted last (a clone shares its bytes).
fn limit_value(limit: u32) -> axum::http::HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<(u32, axum::http::HeaderValue)> =
            const { std::cell::RefCell::new((0, axum::http::HeaderValue::from_static("0"))) };
    }
    LAST.with_borrow_mut(|(last, value)| {
        if *last != limit {
            *value = limit.into();
            *last = limit;
        }
        value.clone()
    })
}

/// Whose requests a count is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A workspace's mock traffic, by workspace id.
    Workspace,
    /// An admin API client, by a hash of its credential (or `anonymous`).
    Client,
}

impl Scope {
    /// As keys, metrics and logs name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Workspace => "workspace",
            Self::Client => "client",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Self::Workspace => "ws",
            Self::Client => "client",
        }
    }
}

/// One key's count in its window, both in one word (the window's minute above, the count
/// below), so that a request counts with one atomic update and no lock.
#[derive(Debug, Default)]
struct Window(AtomicU64);

impl Window {
    /// Counts one request in `minute` if fewer than `limit` were; whether it was counted,
    /// and the window's count after. A request of a minute before the window's (one that
    /// arrived before a minute turned and is counted after) counts in the window's minute:
    /// starting its own would throw away the newer minute's count.
    fn take(&self, minute: u32, limit: u32) -> (bool, u32) {
        let mut seen = self.0.load(Ordering::Relaxed);
        loop {
            let stored = (seen >> 32) as u32;
            // Minutes compared as wrapping numbers: a stored one ahead is negative behind.
            let minute = if (minute.wrapping_sub(stored) as i32) < 0 { stored } else { minute };
            let count = if stored == minute { seen as u32 } else { 0 };
            if count >= limit {
                return (false, count);
            }
            let next = (u64::from(minute) << 32) | u64::from(count + 1);
            match self.0.compare_exchange_weak(seen, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return (true, count + 1),
                Err(now) => seen = now,
            }
        }
    }

    fn is_of(&self, minute: u32) -> bool {
        (self.0.load(Ordering::Relaxed) >> 32) as u32 == minute
    }
}

/// The minute a window starts at, as [`Window`] keeps it (it wraps in the year 10,000; only
/// equality matters).
fn minute_of(window_ms: i64) -> u32 {
    (window_ms / WINDOW_MS) as u32
}

/// Most keys of one scope a thread keeps in its [`Near`] copy; past that it starts again.
const MAX_NEAR: usize = 256;

/// A thread's references to the [`Window`]s it counted in, by scope and key: a request
/// finds its key's counter without the limiter's lock (a lock every core takes is two
/// writes to a line they share, and the map behind it more lines they read and write).
/// It holds one limiter's keys (a process has one; tests several, which then take turns).
#[derive(Default)]
struct Near {
    limiter: u64,
    keys: [HashMap<String, Arc<Window>>; 2],
}

thread_local! {
    static NEAR: std::cell::RefCell<Near> = std::cell::RefCell::default();
}

/// Counters by scope and key for the current window.
#[derive(Debug)]
pub struct Limiter {
    /// This limiter's number, as [`Near`] copies name it.
    id: u64,
    /// One map per [`Scope`] (its index), each behind its own lock: admin calls and mock
    /// traffic never wait for each other, and a key needs no prefix (no allocation per
    /// request). The lock is taken for a key a thread has not counted before; the count
    /// itself is the [`Window`]'s.
    counts: [Mutex<HashMap<String, Arc<Window>>>; 2],
    /// With `REDIS_URL`: the counts every replica shares.
    shared: Option<Arc<crate::redis::Redis>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Self::shared(None)
    }
}

impl Limiter {
    /// A limiter that counts in `redis` while it answers, and here otherwise.
    pub fn shared(redis: Option<Arc<crate::redis::Redis>>) -> Self {
        static IDS: AtomicU64 = AtomicU64::new(1);
        let id = IDS.fetch_add(1, Ordering::Relaxed);
        Self { id, counts: Default::default(), shared: redis }
    }

    /// As [`Limiter::check`], but across replicas while Redis is configured and up; in this
    /// process otherwise. Without Redis it awaits nothing: it is `check`.
    pub async fn count(
        &self,
        scope: Scope,
        key: &str,
        limit: u32,
        tier: &'static str,
        now_ms: i64,
    ) -> Option<Verdict> {
        if let Some(redis) = &self.shared
            && limit != 0
            && redis.is_up()
            // Boxed: the Redis call's state stays out of every request's future.
            && let Some(verdict) =
                Box::pin(shared_check(redis, scope, key, limit, tier, now_ms)).await
        {
            return Some(verdict);
        }
        self.check(scope, key, limit, tier, now_ms)
    }

    /// Counts one request of `scope` under `key` against `limit` at `now_ms`; `None` when
    /// `limit` is 0.
    pub fn check(
        &self,
        scope: Scope,
        key: &str,
        limit: u32,
        tier: &'static str,
        now_ms: i64,
    ) -> Option<Verdict> {
        if limit == 0 {
            return None;
        }
        let window = now_ms - now_ms.rem_euclid(WINDOW_MS);
        let minute = minute_of(window);
        let (allowed, count) = NEAR.with_borrow_mut(|near| {
            if near.limiter != self.id {
                *near = Near { limiter: self.id, ..Near::default() };
            }
            let keys = &mut near.keys[scope as usize];
            if let Some(counter) = keys.get(key) {
                return counter.take(minute, limit);
            }
            if keys.len() >= MAX_NEAR {
                keys.clear();
            }
            let counter = self.window(scope, key, minute);
            let taken = counter.take(minute, limit);
            keys.insert(key.to_owned(), counter);
            taken
        });
        let reset_ms = window + WINDOW_MS - now_ms;
        Some(Verdict {
            allowed,
            tier,
            limit,
            remaining: limit.saturating_sub(count),
            reset_seconds: u64::try_from(reset_ms).unwrap_or_default().div_ceil(1000),
        })
    }

    /// The counter of `key` in `scope`, made if it has none.
    fn window(&self, scope: Scope, key: &str, minute: u32) -> Arc<Window> {
        let mut counts =
            self.counts[scope as usize].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if counts.len() >= SWEEP_AT {
            // Kept: a counter of this window, and one a thread holds (it counts in it, so
            // another for its key would split the count).
            // The holders first: with none (none can appear while the lock is held), the
            // word is final, once the fence pairs with the last holder's release of it.
            counts.retain(|_, counter| {
                Arc::strong_count(counter) > 1 || {
                    std::sync::atomic::fence(Ordering::Acquire);
                    counter.is_of(minute)
                }
            });
        }
        counts.entry(key.to_owned()).or_default().clone()
    }
}

/// One request counted in Redis: the key is the window's (`{prefix}rl:{scope}:{key}:{minute}`), and
/// expires a window after the window ends. `None` when Redis did not answer in time.
async fn shared_check(
    redis: &crate::redis::Redis,
    scope: Scope,
    key: &str,
    limit: u32,
    tier: &'static str,
    now_ms: i64,
) -> Option<Verdict> {
    let window = now_ms - now_ms.rem_euclid(WINDOW_MS);
    let redis_key = format!("{}rl:{}:{key}:{}", redis.prefix(), scope.prefix(), window / WINDOW_MS);
    let ttl = std::time::Duration::from_millis(2 * WINDOW_MS.unsigned_abs());
    let count = redis.increment(&redis_key, ttl).await?;
    let count = u32::try_from(count).unwrap_or(u32::MAX);
    let reset_ms = window + WINDOW_MS - now_ms;
    // Every request is counted, refused ones too (the local count stops at the limit): the
    // headers read the same either way.
    Some(Verdict {
        allowed: count <= limit,
        tier,
        limit,
        remaining: limit.saturating_sub(count),
        reset_seconds: u64::try_from(reset_ms).unwrap_or_default().div_ceil(1000),
    })
}

#[cfg(test)]
mod tests {
    use super::Limiter;
    use super::Scope::Workspace as W;

    #[test]
    fn fixed_windows() {
        let limiter = Limiter::default();
        let at = 1_800_000_000_000_i64; // the start of a minute
        let v = limiter.check(W, "k", 2, "free", at).unwrap();
        assert!(v.allowed && v.remaining == 1 && v.reset_seconds == 60);
        assert!(limiter.check(W, "k", 2, "free", at + 1).unwrap().allowed);
        let over = limiter.check(W, "k", 2, "free", at + 59_500).unwrap();
        assert!(!over.allowed && over.remaining == 0 && over.reset_seconds == 1);
        // Another key, and the next window, start from zero.
        assert!(limiter.check(W, "other", 2, "free", at + 2).unwrap().allowed);
        assert!(limiter.check(W, "k", 2, "free", at + 60_000).unwrap().allowed);
        assert!(limiter.check(W, "k", 0, "free", at).is_none());
    }

    /// Threads count in one window per key: exactly the limit is allowed, whichever thread
    /// each request is on.
    #[test]
    fn threads_share_the_count() {
        let limiter = std::sync::Arc::new(Limiter::default());
        let at = 1_800_000_000_000_i64;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || {
                    (0..500)
                        .filter(|_| limiter.check(W, "k", 1000, "free", at).unwrap().allowed)
                        .count()
                })
            })
            .collect();
        let allowed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(allowed, 1000);
        assert_eq!(limiter.check(W, "k", 1000, "free", at).unwrap().remaining, 0);
    }

    /// A sweep keeps the counter a thread holds: a thread that counts the key for the first
    /// time after it must count in the same window, not in a new one of its own.
    #[test]
    fn a_sweep_keeps_counters_in_use() {
        let limiter = std::sync::Arc::new(Limiter::default());
        let at = 1_800_000_000_000_i64;
        assert!(limiter.check(W, "k", 2, "free", at).unwrap().allowed);
        let next = at + super::WINDOW_MS;
        let on_other_thread = |f: Box<dyn FnOnce(&Limiter) + Send>| {
            let limiter = limiter.clone();
            std::thread::spawn(move || f(&limiter)).join().unwrap();
        };
        // Enough keys, in the next window, for a sweep.
        on_other_thread(Box::new(move |l| {
            for n in 0..super::SWEEP_AT + 1 {
                l.check(W, &format!("spray-{n}"), 2, "free", next);
            }
        }));
        assert!(limiter.check(W, "k", 2, "free", next).unwrap().allowed, "this thread, 1 of 2");
        on_other_thread(Box::new(move |l| {
            assert!(l.check(W, "k", 2, "free", next).unwrap().allowed, "another thread, 2 of 2");
            assert!(!l.check(W, "k", 2, "free", next).unwrap().allowed, "3 of 2");
        }));
        assert!(!limiter.check(W, "k", 2, "free", next).unwrap().allowed);
    }

    /// A request that arrived before the minute turned, counted after a request of the new
    /// minute, counts in the new minute and leaves its count.
    #[test]
    fn a_late_request_counts_in_the_newer_window() {
        let limiter = Limiter::default();
        let at = 1_800_000_000_000_i64 + super::WINDOW_MS;
        assert_eq!(limiter.check(W, "k", 3, "free", at).unwrap().remaining, 2);
        assert_eq!(limiter.check(W, "k", 3, "free", at - 1).unwrap().remaining, 1, "late");
        assert_eq!(limiter.check(W, "k", 3, "free", at + 1).unwrap().remaining, 0);
        assert!(!limiter.check(W, "k", 3, "free", at + 2).unwrap().allowed);
    }

    #[tokio::test]
    async fn without_redis_count_is_check() {
        let (counted, checked) = (Limiter::shared(None), Limiter::default());
        let at = 1_800_000_000_000_i64;
        for n in 0..4 {
            let want = checked.check(W, "k", 3, "free", at + n);
            assert_eq!(counted.count(W, "k", 3, "free", at + n).await, want, "request {n}");
        }
        assert!(counted.count(W, "k", 0, "free", at).await.is_none());
    }

    /// The header values made without formatting say what formatting would.
    #[test]
    fn header_values_are_the_numbers() {
        for (limit, remaining, reset) in
            [(100, 99, 60), (100, 0, 0), (7, 3, 1), (4_000_000_000, 1, 59), (100, 5, 61)]
        {
            let verdict = super::Verdict {
                allowed: true,
                tier: "pro",
                limit,
                remaining,
                reset_seconds: reset,
            };
            let values: Vec<(String, String)> = verdict
                .header_values()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                .collect();
            let text: Vec<(String, String)> =
                verdict.headers().iter().map(|(n, v)| ((*n).to_owned(), v.clone())).collect();
            assert_eq!(values, text);
        }
    }
}
