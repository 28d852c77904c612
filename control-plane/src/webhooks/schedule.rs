//! When a failed delivery is tried again: retry `n` (1-based) waits
//! `WEBHOOK_RETRY_DELAY_MS × 2^(n-1)` plus up to 20 % jitter (so receivers that failed
//! together are not hit together again), or longer when the receiver's `Retry-After` asks
//! for it, up to [`MAX_RETRY_AFTER`].

use std::time::{Duration, SystemTime};

/// The longest any one retry waits, whatever the settings.
pub const MAX_DELAY: Duration = Duration::from_secs(24 * 3600);
/// The longest `Retry-After` honoured: a receiver cannot park a delivery for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Jitter added to each delay, as a fraction of it (at most).
pub const JITTER: f64 = 0.2;

/// The delay before retry `retry` (1-based), without jitter: `base × 2^(retry-1)`.
pub fn backoff(base: Duration, retry: u32) -> Duration {
    let factor = 1u32 << retry.saturating_sub(1).min(24);
    base.saturating_mul(factor).min(MAX_DELAY)
}

/// `delay` plus `fraction × JITTER × delay`, with `fraction` in `[0, 1)`.
pub fn with_jitter(delay: Duration, fraction: f64) -> Duration {
    delay.mul_f64(1.0 + JITTER * fraction.clamp(0.0, 1.0))
}

/// A fraction in `[0, 1)` from the system's randomness (0 if it has none).
pub fn random_fraction() -> f64 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.0;
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

/// What `Retry-After` asks for at `now`: delay-seconds or an HTTP date, capped at
/// [`MAX_RETRY_AFTER`]; `None` when it is neither.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The wait before retry `retry`: the back-off with jitter, or what the receiver asked for
/// if that is longer.
pub fn next_delay(
    base: Duration,
    retry: u32,
    fraction: f64,
    retry_after: Option<Duration>,
) -> Duration {
    let scheduled = with_jitter(backoff(base, retry), fraction);
    retry_after.map_or(scheduled, |asked| asked.max(scheduled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_base_and_caps() {
        let ms: Vec<u128> =
            (1..=5).map(|n| backoff(Duration::from_secs(1), n).as_millis()).collect();
        assert_eq!(ms, [1000, 2000, 4000, 8000, 16000]);
        assert_eq!(backoff(Duration::from_millis(100), 3), Duration::from_millis(400));
        assert_eq!(backoff(Duration::from_secs(3600), 20), MAX_DELAY);
    }

    #[test]
    fn jitter_adds_at_most_a_fifth() {
        let d = Duration::from_secs(10);
        assert_eq!(with_jitter(d, 0.0), d);
        assert_eq!(with_jitter(d, 0.5), Duration::from_secs(11));
        assert!(with_jitter(d, 0.999_999) < Duration::from_secs(12));
        for _ in 0..100 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f), "{f}");
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 07:28:00
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date in the past: no wait.
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(retry_after("99999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
        assert_eq!(retry_after("", now), None);
    }

    #[test]
    fn the_longer_of_schedule_and_request() {
        let base = Duration::from_millis(100);
        assert_eq!(next_delay(base, 2, 0.0, None), Duration::from_millis(200));
        assert_eq!(next_delay(base, 2, 0.0, Some(Duration::from_secs(2))), Duration::from_secs(2));
        assert_eq!(next_delay(base, 2, 0.0, Some(Duration::ZERO)), Duration::from_millis(200));
    }
}
