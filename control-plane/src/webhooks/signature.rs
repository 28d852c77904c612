//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): the receiver checks
//! `webhook-signature` against the HMAC-SHA256 of `"{webhook-id}.{webhook-timestamp}.{body}"`
//! keyed with the secret's bytes, so any Standard Webhooks library verifies our deliveries.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a Standard Webhooks secret; base64 of the key follows it.
pub const SECRET_PREFIX: &str = "whsec_";

/// The `webhook-signature` value for one attempt: `v1,` and base64 of the HMAC. `secret` is
/// `whsec_…` (or bare base64); `None` when it is not base64 (never for secrets we made).
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret)).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    Some(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification and its reference libraries.
    #[test]
    fn matches_the_specification_example() {
        let signature = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signature.as_deref(), Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
    }

    #[test]
    fn every_input_changes_it() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let base = sign(secret, "a", 1, "{}");
        assert_ne!(base, sign(secret, "b", 1, "{}"));
        assert_ne!(base, sign(secret, "a", 2, "{}"));
        assert_ne!(base, sign(secret, "a", 1, "{ }"));
        assert_ne!(base, sign("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "a", 1, "{}"));
        assert_eq!(sign("whsec_not base64!", "a", 1, "{}"), None);
    }
}
