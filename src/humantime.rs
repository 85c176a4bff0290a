//! Durations and times formatted for people.

use std::time::Duration;

/// `<1ms`, `850ms`, `1.2s`, `3m04s`, `2h05m`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 && !d.is_zero() {
        // "0ms" reads as "did not run"; it ran, just quickly.
        "<1ms".to_string()
    } else if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// Same as [`format_duration`] for fractional seconds.
pub fn format_secs(secs: f64) -> String {
    // Infinite or absurd values (a corrupt row) must not panic a face.
    format_duration(Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_a_readable_unit() {
        assert_eq!(format_duration(Duration::from_micros(300)), "<1ms");
        assert_eq!(format_duration(Duration::ZERO), "0ms");
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_millis(1250)), "1.2s");
        assert_eq!(format_duration(Duration::from_secs(184)), "3m04s");
        assert_eq!(format_duration(Duration::from_secs(7500)), "2h05m");
    }
}
