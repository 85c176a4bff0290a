//! Human-readable durations: `250ms`, `30s`, `5m`, `1h`, `1h30m`, `1.5s`.

use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Units accepted after a number, longest spelling first so `ms` wins over `m`.
const UNITS: [(&str, u128); 4] = [
    ("ms", 1_000_000),
    ("h", 3_600 * NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("s", NANOS_PER_SEC),
];

fn help(s: &str, what: &str) -> String {
    format!(
        "invalid duration `{s}`: {what}; write a number followed by a unit (ms, s, m or h), \
         e.g. 250ms, 30s, 1.5s, 5m, 1h or 1h30m"
    )
}

/// Parses a duration made of one or more `<number><unit>` parts.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err(help(s, "it is empty"));
    }
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (nanos, tail) = parse_part(rest).map_err(|what| help(s, &what))?;
        total = total
            .checked_add(nanos)
            .ok_or_else(|| help(s, "it is too large"))?;
        rest = tail;
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| help(s, "it is too large"))?;
    // The remainder of a division by 1e9 always fits in u32.
    let nanos = (total % NANOS_PER_SEC) as u32;
    Ok(Duration::new(secs, nanos))
}

/// One `<number><unit>` part at the start of `s`: its length in nanoseconds and the rest.
fn parse_part(s: &str) -> Result<(u128, &str), String> {
    let num_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let number = &s[..num_len];
    if number.is_empty() {
        return Err(if s.starts_with('-') {
            "it is negative".to_string()
        } else {
            format!("expected a number at `{s}`")
        });
    }
    let after = &s[num_len..];
    let Some((unit, scale)) = UNITS.iter().find(|(u, _)| after.starts_with(u)) else {
        return Err(if after.is_empty() {
            format!("`{number}` has no unit")
        } else {
            format!("unknown unit at `{after}`")
        });
    };
    let nanos = scaled(number, *scale)?;
    Ok((nanos, &after[unit.len()..]))
}

/// `number` (digits with an optional fraction) times `scale`, exactly, truncated to whole ns.
fn scaled(number: &str, scale: u128) -> Result<u128, String> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(format!("`{number}` is not a number"));
    }
    let too_large = || "it is too large".to_string();
    // Only digits reach here, so a failed parse is an overflow.
    let int_value: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| too_large())?
    };
    let mut total = int_value.checked_mul(scale).ok_or_else(too_large)?;
    // 18 digits of a fraction are finer than a nanosecond of any unit and fit the arithmetic.
    let frac = &frac[..frac.len().min(18)];
    if !frac.is_empty() {
        let numer: u128 = frac.parse().map_err(|_| too_large())?;
        let denom = 10u128.pow(frac.len() as u32);
        let part = numer.checked_mul(scale).ok_or_else(too_large)? / denom;
        total = total.checked_add(part).ok_or_else(too_large)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_documented_forms() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("0.25h"), Duration::from_secs(900));
        assert_eq!(ok("1m30s500ms"), Duration::from_millis(90_500));
    }

    #[test]
    fn rejects_with_accepted_forms_named() {
        for bad in [
            "",
            "30",
            "5x",
            "-1s",
            "s",
            "1..5s",
            "1 s",
            "99999999999999999999999h",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(
                err.contains("250ms") && err.contains("1h30m"),
                "{bad}: {err}"
            );
        }
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(
            parse_duration("1.2.3s")
                .unwrap_err()
                .contains("not a number")
        );
    }

    #[test]
    fn absurd_values_are_too_large_or_exact_never_a_panic() {
        let max = format!("{}s", u64::MAX);
        assert_eq!(parse_duration(&max), Ok(Duration::from_secs(u64::MAX)));
        for huge in [
            format!("{}0s", u64::MAX),
            format!("{}h", u64::MAX),
            format!("{}ms{}h", u64::MAX, u64::MAX),
            format!("{}h", u128::MAX),
            format!("{}0h", u128::MAX),
            format!("{}.5m", u128::MAX),
            "99999999999999999999999h".to_string(),
        ] {
            let err = parse_duration(&huge).unwrap_err();
            assert!(err.contains("it is too large"), "{huge}: {err}");
        }
        // A long fraction is cut at 18 digits, not an overflow.
        assert_eq!(
            parse_duration("0.1234567890123456789012345s"),
            Ok(Duration::from_nanos(123_456_789))
        );
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
    }
}
