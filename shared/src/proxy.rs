//! Proxy-target policy: which upstreams a deployment lets proxy endpoints reach.
//!
//! Pure and shared: the edge checks every proxied request with it, and the control plane can
//! refuse a definition whose target its deployment would never reach. The check is on the
//! URL as written (scheme, host name, literal IP); names are not resolved here, so a public
//! name that resolves to a private address is the platform's to stop (Workers cannot reach
//! private networks from the public internet in the first place).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus those the
/// host's HTTP client sets itself: never forwarded in either direction.
pub const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Whether the client's header `name` goes to the upstream: not a connection header, not
/// the platform's (`cf-*`, `x-real-ip`), `Authorization` and `Cookie` only when the endpoint
/// forwards them, and not one the endpoint removes or overrides.
pub fn forward_request_header(name: &str, directive: &crate::ProxyDirective) -> bool {
    let lower = name.to_ascii_lowercase();
    if NOT_FORWARDED.contains(&lower.as_str()) || lower.starts_with("cf-") || lower == "x-real-ip" {
        return false;
    }
    if (lower == "authorization" && !directive.forward_authorization)
        || (lower == "cookie" && !directive.forward_cookies)
    {
        return false;
    }
    !directive.headers.remove.iter().any(|r| r.eq_ignore_ascii_case(name))
        && !directive.headers.set.keys().any(|k| k.eq_ignore_ascii_case(name))
}

/// What becomes of the upstream's response header `name`: dropped (`None`), or passed on
/// with `value` (cookies scoped to `cookie_path`). Bodies reach the client decoded, so
/// `content-encoding` no longer describes them.
pub fn pass_response_header(name: &str, value: &str, cookie_path: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if lower == "set-cookie" {
        Some(scope_set_cookie(value, cookie_path))
    } else if NOT_FORWARDED.contains(&lower.as_str()) || lower == "content-encoding" {
        None
    } else {
        Some(value.to_owned())
    }
}

/// What a deployment allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyPolicy {
    /// Allow `http://` targets (default: only `https://`).
    pub allow_http: bool,
    /// Allow loopback, private, link-local and other non-public addresses and names such as
    /// `localhost` (default: refused). Local development and tests need this.
    pub allow_private: bool,
}

/// Why a target is refused, in words for the error body.
pub fn check_target(url: &str, policy: ProxyPolicy) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("'{url}' is not a valid URL"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if policy.allow_http => {}
        Some("http") => return Err("only https:// targets are allowed by this deployment".into()),
        _ => return Err("targets must be http:// or https:// URLs".into()),
    }
    let host = uri.host().ok_or("the target has no host")?;
    if policy.allow_private {
        return Ok(());
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let private = match bare.parse::<IpAddr>() {
        Ok(ip) => !is_public(ip),
        Err(_) => {
            let name = bare.trim_end_matches('.').to_ascii_lowercase();
            // URL parsers read `127.1`, `0x7f.0.0.1`, `0177.0.0.1` and `2130706433` as IPv4
            // addresses (WHATWG URL): a last label of digits or hex is never a name here.
            let last = name.rsplit('.').next().unwrap_or_default();
            let numeric_last = !last.is_empty()
                && (last.chars().all(|c| c.is_ascii_digit())
                    || (last.starts_with("0x")
                        && last[2..].chars().all(|c| c.is_ascii_hexdigit())));
            numeric_last
                || name == "localhost"
                || !name.contains('.')
                || [".localhost", ".local", ".internal", ".localdomain", ".home.arpa"]
                    .iter()
                    .any(|suffix| name.ends_with(suffix))
        }
    };
    if private {
        return Err(format!(
            "'{host}' is a loopback, private or link-local address, which this deployment does not proxy to"
        ));
    }
    Ok(())
}

/// Rewrites an upstream's `Set-Cookie` so the cookie stays with the API it came from: every
/// API is served from the edge's one origin, so an unscoped cookie would be sent to the
/// others (and forwarded by their proxy endpoints). `Path` becomes `path`; `Domain` goes.
pub fn scope_set_cookie(value: &str, path: &str) -> String {
    let mut parts: Vec<&str> = value
        .split(';')
        .enumerate()
        .filter(|(i, part)| {
            let attr = part.trim().split('=').next().unwrap_or_default().to_ascii_lowercase();
            *i == 0 || (attr != "path" && attr != "domain")
        })
        .map(|(_, part)| part.trim())
        .collect();
    let scoped = format!("Path={path}");
    parts.push(&scoped);
    parts.join("; ")
}

/// Whether `ip` is a public unicast address: not loopback, private, link-local, CGNAT,
/// unique-local, documentation, benchmarking, multicast or reserved (IPv4 carried in IPv6
/// judged as the IPv4 address). The control plane checks resolved addresses with it.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        // 100.64.0.0/10, carrier-grade NAT.
        || (a == 100 && (64..128).contains(&b))
        // 192.0.0.0/24, IETF protocol assignments.
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        // 198.18.0.0/15, benchmarking.
        || (a == 198 && (18..20).contains(&b))
        // 240.0.0.0/4, reserved.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    let first = seg[0];
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // Forms that carry an IPv4 address: IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96)
    // and 6to4 (2002::/16). They are as public as the address they carry.
    if seg[..6] == [0; 6] || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0; 4]) {
        return is_public_v4(embedded(seg[6], seg[7]));
    }
    if first == 0x2002 {
        return is_public_v4(embedded(seg[1], seg[2]));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local, 2001:db8::/32 documentation.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first == 0x2001 && ip.segments()[1] == 0x0db8))
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_rules_for_both_directions() {
        let mut directive = crate::ProxyDirective {
            url: "https://api.example.com/x".into(),
            headers: crate::model::HeaderRules::default(),
            timeout_ms: None,
            forward_authorization: false,
            forward_cookies: true,
        };
        directive.headers.remove.push("X-Drop".into());
        directive.headers.set.insert("x-over".into(), "v".into());
        for (name, forwarded) in [
            ("accept", true),
            ("Authorization", false),
            ("cookie", true),
            ("Connection", false),
            ("cf-ray", false),
            ("x-drop", false),
            ("X-Over", false),
        ] {
            assert_eq!(forward_request_header(name, &directive), forwarded, "{name}");
        }
        assert_eq!(pass_response_header("Content-Encoding", "gzip", "/m"), None);
        assert_eq!(pass_response_header("transfer-encoding", "chunked", "/m"), None);
        assert_eq!(pass_response_header("x-up", "1", "/m").as_deref(), Some("1"));
        let cookie = pass_response_header("Set-Cookie", "a=1; Path=/", "/mock/p").unwrap();
        assert!(cookie.contains("Path=/mock/p"), "{cookie}");
    }

    use super::*;

    #[test]
    fn cookies_are_scoped_to_their_api() {
        let cases = [
            ("sid=1", "sid=1; Path=/mock/shop"),
            ("sid=1; Path=/; Domain=example.com; HttpOnly", "sid=1; HttpOnly; Path=/mock/shop"),
            ("a=b;path=/x;Secure;SameSite=Lax", "a=b; Secure; SameSite=Lax; Path=/mock/shop"),
        ];
        for (raw, want) in cases {
            assert_eq!(scope_set_cookie(raw, "/mock/shop"), want, "{raw}");
        }
    }

    #[test]
    fn targets_by_policy() {
        let strict = ProxyPolicy::default();
        let local = ProxyPolicy { allow_http: true, allow_private: true };
        let cases = [
            ("https://api.example.com/v1", true, true),
            ("https://93.184.216.34", true, true),
            ("https://[2606:4700::1111]", true, true),
            ("http://api.example.com", false, true),
            ("https://localhost:8080", false, true),
            ("https://app.localhost", false, true),
            ("https://printer.local", false, true),
            ("https://intranet", false, true),
            ("https://127.0.0.1", false, true),
            ("https://10.1.2.3", false, true),
            ("https://172.16.0.1", false, true),
            ("https://192.168.1.1", false, true),
            ("https://169.254.169.254/latest/meta-data", false, true),
            ("https://100.64.0.1", false, true),
            ("https://0.0.0.0", false, true),
            ("https://[::1]", false, true),
            ("https://[fd00::1]", false, true),
            ("https://[fe80::1]", false, true),
            ("https://[::ffff:127.0.0.1]", false, true),
            ("https://[::127.0.0.1]", false, true),
            ("https://[64:ff9b::a9fe:a9fe]", false, true),
            ("https://[2002:7f00:1::]", false, true),
            ("https://[64:ff9b::5db8:d822]", true, true),
            ("https://127.1", false, true),
            ("https://0x7f.0.0.1", false, true),
            ("https://0177.0.0.1", false, true),
            ("https://2130706433", false, true),
            ("https://169.254.43518", false, true),
            ("https://v1.api2.example.com", true, true),
            ("ftp://example.com", false, false),
            ("not a url", false, false),
        ];
        for (url, strict_ok, local_ok) in cases {
            assert_eq!(check_target(url, strict).is_ok(), strict_ok, "{url} strict");
            assert_eq!(check_target(url, local).is_ok(), local_ok, "{url} local");
        }
    }
}
