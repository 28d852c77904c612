//! Date formatting for templates, on top of the `time` crate.
//!
//! Formats are the names `iso` (RFC 3339, the default), `unix`, `unix_ms`, `rfc2822` and
//! `http` (IMF-fixdate), or a pattern in the tokens WireMock (Java) and Mockoon (date-fns)
//! users write: `yyyy yy MM M dd d HH H mm ss SSS`, plus `EEE` (weekday) and `MMM` (month
//! name); text in single quotes is literal. Times are UTC.

use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn at(ms: i64) -> Result<OffsetDateTime, String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|_| format!("{ms} ms is outside the supported date range"))
}

/// Formats Unix milliseconds `ms` in `format`.
pub fn format_ms(ms: i64, format: &str) -> Result<String, String> {
    let t = at(ms)?;
    match format {
        "iso" | "rfc3339" => t.format(&Rfc3339).map_err(|e| e.to_string()),
        "unix" => Ok(ms.div_euclid(1000).to_string()),
        "unix_ms" => Ok(ms.to_string()),
        "rfc2822" => t.format(&Rfc2822).map_err(|e| e.to_string()),
        "http" => Ok(format!(
            "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
            WEEKDAYS[usize::from(t.weekday().number_days_from_monday())],
            t.day(),
            MONTHS[usize::from(u8::from(t.month())) - 1],
            t.year(),
            t.hour(),
            t.minute(),
            t.second()
        )),
        pattern => Ok(format_pattern(&t, pattern)),
    }
}

fn format_pattern(t: &OffsetDateTime, pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let end =
                chars[i + 1..].iter().position(|&c| c == '\'').map_or(chars.len(), |p| i + 1 + p);
            out.extend(&chars[i + 1..end]);
            i = end + 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let month = u8::from(t.month());
        match (c, run) {
            ('y', 2) => out.push_str(&format!("{:02}", t.year().rem_euclid(100))),
            ('y', _) => out.push_str(&format!("{:04}", t.year())),
            ('M', 1) => out.push_str(&month.to_string()),
            ('M', 2) => out.push_str(&format!("{month:02}")),
            ('M', _) => out.push_str(MONTHS[usize::from(month) - 1]),
            ('d', 1) => out.push_str(&t.day().to_string()),
            ('d', _) => out.push_str(&format!("{:02}", t.day())),
            ('H', 1) => out.push_str(&t.hour().to_string()),
            ('H', _) => out.push_str(&format!("{:02}", t.hour())),
            ('m', _) => out.push_str(&format!("{:02}", t.minute())),
            ('s', _) => out.push_str(&format!("{:02}", t.second())),
            ('S', _) => out.push_str(&format!("{:03}", t.millisecond())),
            ('E', _) => {
                out.push_str(WEEKDAYS[usize::from(t.weekday().number_days_from_monday())]);
            }
            _ => out.extend(std::iter::repeat_n(c, run)),
        }
        i += run;
    }
    out
}

/// Parses an RFC 3339 date-time into Unix milliseconds.
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, String> {
    let t = OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map_err(|e| format!("'{text}' is not an RFC 3339 date-time: {e}"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|e| e.to_string())
}

/// Parses an offset such as `+3 days`, `-2h`, `90 minutes`, `1 week`, `500ms` into
/// milliseconds.
pub fn parse_offset_ms(text: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "offset '{text}' is not like '+3 days', '-2h', '30 minutes' (units: ms, s, m, h, d, w)"
        )
    };
    let t = text.trim();
    let digits_start = usize::from(t.starts_with(['+', '-']));
    let digits_end =
        t[digits_start..].find(|c: char| !c.is_ascii_digit()).map_or(t.len(), |i| i + digits_start);
    let n: i64 = t[..digits_end].trim_start_matches('+').parse().map_err(|_| bad())?;
    let unit_ms: i64 = match t[digits_end..].trim().to_ascii_lowercase().as_str() {
        "ms" | "millis" | "milliseconds" => 1,
        "s" | "sec" | "second" | "seconds" => 1000,
        "m" | "min" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        "w" | "week" | "weeks" => 604_800_000,
        _ => return Err(bad()),
    };
    n.checked_mul(unit_ms).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_offsets() {
        let ms = 1_709_208_000_123; // 2024-02-29T12:00:00.123Z, a Thursday
        let cases = [
            ("iso", "2024-02-29T12:00:00.123Z"),
            ("unix", "1709208000"),
            ("unix_ms", "1709208000123"),
            ("http", "Thu, 29 Feb 2024 12:00:00 GMT"),
            ("rfc2822", "Thu, 29 Feb 2024 12:00:00 +0000"),
            ("yyyy-MM-dd'T'HH:mm:ss.SSS", "2024-02-29T12:00:00.123"),
            ("d/M/yy", "29/2/24"),
            ("EEE dd MMM yyyy", "Thu 29 Feb 2024"),
            ("'at' H 'o''clock'", "at 12 oclock"),
        ];
        for (format, want) in cases {
            assert_eq!(format_ms(ms, format).unwrap(), want, "{format}");
        }
        assert_eq!(parse_rfc3339_ms("2024-02-29T12:00:00.123Z"), Ok(ms));
        for (offset, want) in [
            ("+3 days", 259_200_000),
            ("-2h", -7_200_000),
            ("90 minutes", 5_400_000),
            ("500ms", 500),
            ("1 week", 604_800_000),
        ] {
            assert_eq!(parse_offset_ms(offset), Ok(want), "{offset}");
        }
        for bad in ["", "soon", "3 fortnights", "+", "99999999999999999999 days"] {
            assert!(parse_offset_ms(bad).is_err(), "{bad}");
        }
        assert!(format_ms(i64::MAX, "iso").is_err());
    }
}
