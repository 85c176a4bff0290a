//! Maintenance windows: a cron expression for each start, a duration, a timezone. Pure:
//! whether an instant is inside, and when that next changes (for the one timer that flips
//! the monitors of a window in and out).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Tz;

/// Most later starts followed to find the end of overlapping windows (a window longer than
/// its period never ends; this bounds the search).
const MAX_OVERLAPS: usize = 1024;

/// A window is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// The cron expression does not parse.
    #[error("invalid maintenance cron `{expr}`: {detail}")]
    Cron {
        /// As written.
        expr: String,
        /// croner's reason.
        detail: String,
    },
    /// A window of no length.
    #[error("a maintenance window needs a duration above zero")]
    Empty,
}

/// One maintenance window: from every start `cron` matches (on the wall clock of
/// `timezone`) for `duration`.
#[derive(Debug, Clone)]
pub struct Window {
    cron: Arc<croner::Cron>,
    duration: chrono::Duration,
    timezone: Tz,
}

impl Window {
    /// A window from its parts (croner 4 syntax, 5 or 6 fields).
    pub fn new(cron: &str, duration: Duration, timezone: Tz) -> Result<Window, WindowError> {
        let parsed = croner::Cron::from_str(cron).map_err(|e| WindowError::Cron {
            expr: cron.to_string(),
            detail: e.to_string(),
        })?;
        Window::from_cron(Arc::new(parsed), duration, timezone)
    }

    /// A window from a parsed cron (as the spec holds it).
    pub fn from_cron(
        cron: Arc<croner::Cron>,
        duration: Duration,
        timezone: Tz,
    ) -> Result<Window, WindowError> {
        let duration = chrono::Duration::from_std(duration).map_err(|_| WindowError::Empty)?;
        if duration <= chrono::Duration::zero() {
            return Err(WindowError::Empty);
        }
        Ok(Window {
            cron,
            duration,
            timezone,
        })
    }

    /// The latest start at or before `t`.
    fn last_start(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.trunc_subsecs(0).with_timezone(&self.timezone);
        let start = self.cron.find_previous_occurrence(&local, true).ok()?;
        let start = start.with_timezone(&Utc);
        (start <= t).then_some(start)
    }

    /// The first start strictly after `t`.
    fn next_start(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.trunc_subsecs(0).with_timezone(&self.timezone);
        let start = self.cron.find_next_occurrence(&local, false).ok()?;
        let start = start.with_timezone(&Utc);
        (start > t).then_some(start)
    }

    /// Whether `t` is inside this window: `start <= t < start + duration` for the latest
    /// start (an earlier start's window ends no later than a later one's).
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.last_start(t).is_some_and(|s| t < s + self.duration)
    }

    /// When [`contains`](Self::contains) next changes after `t`: the end of the window `t` is
    /// in (through any windows that start before it ends), or the next start. `None` when it
    /// never changes again.
    pub fn next_change(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Some(start) = self.last_start(t).filter(|&s| t < s + self.duration) else {
            return self.next_start(t);
        };
        let mut end = start + self.duration;
        let mut cursor = start;
        for _ in 0..MAX_OVERLAPS {
            match self.next_start(cursor) {
                Some(s) if s < end => {
                    end = end.max(s + self.duration);
                    cursor = s;
                }
                _ => return Some(end),
            }
        }
        None
    }
}

/// Whether `t` is inside any of `windows`.
pub fn inside(windows: &[Window], t: DateTime<Utc>) -> bool {
    windows.iter().any(|w| w.contains(t))
}

/// When [`inside`] next changes after `t` (`None`: never). Windows may overlap: the
/// earliest change of any window is checked, and a change that does not change the whole
/// (one window ends inside another) is skipped, a bounded number of times.
pub fn next_change(windows: &[Window], t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let now = inside(windows, t);
    let mut cursor = t;
    for _ in 0..MAX_OVERLAPS {
        let next = windows.iter().filter_map(|w| w.next_change(cursor)).min()?;
        if inside(windows, next) != now {
            return Some(next);
        }
        cursor = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .expect("valid")
    }

    #[test]
    fn a_nightly_window_contains_its_hour_and_says_when_it_changes() {
        let w = Window::new("0 2 * * *", Duration::from_secs(3600), Tz::UTC).expect("valid");
        assert!(!w.contains(utc(2026, 3, 1, 1, 59)));
        assert!(w.contains(utc(2026, 3, 1, 2, 0)));
        assert!(w.contains(utc(2026, 3, 1, 2, 59)));
        assert!(!w.contains(utc(2026, 3, 1, 3, 0)));
        assert_eq!(
            w.next_change(utc(2026, 3, 1, 1, 0)),
            Some(utc(2026, 3, 1, 2, 0))
        );
        assert_eq!(
            w.next_change(utc(2026, 3, 1, 2, 30)),
            Some(utc(2026, 3, 1, 3, 0))
        );
        assert_eq!(
            w.next_change(utc(2026, 3, 1, 3, 0)),
            Some(utc(2026, 3, 2, 2, 0))
        );
    }

    #[test]
    fn the_timezone_is_the_wall_clock_of_the_starts() {
        let berlin: Tz = "Europe/Berlin".parse().expect("zone");
        let w = Window::new("0 2 * * *", Duration::from_secs(1800), berlin).expect("valid");
        // 02:00 in Berlin in winter is 01:00 UTC.
        assert!(w.contains(utc(2026, 1, 10, 1, 10)));
        assert!(!w.contains(utc(2026, 1, 10, 2, 10)));
        // In summer 00:00 UTC.
        assert!(w.contains(utc(2026, 7, 10, 0, 10)));
    }

    #[test]
    fn overlapping_windows_end_with_the_last_of_them() {
        // Every 10 minutes for 15 minutes: always inside once started.
        let w = Window::new("*/10 * * * *", Duration::from_secs(900), Tz::UTC).expect("valid");
        assert!(w.contains(utc(2026, 3, 1, 5, 14)));
        assert_eq!(w.next_change(utc(2026, 3, 1, 5, 14)), None);
        // Two windows, one inside the other's hour: the union's edges.
        let a = Window::new("0 2 * * *", Duration::from_secs(3600), Tz::UTC).expect("valid");
        let b = Window::new("30 2 * * *", Duration::from_secs(3600), Tz::UTC).expect("valid");
        let both = [a, b];
        assert!(inside(&both, utc(2026, 3, 1, 3, 15)));
        assert_eq!(
            next_change(&both, utc(2026, 3, 1, 2, 10)),
            Some(utc(2026, 3, 1, 3, 30))
        );
        assert_eq!(
            next_change(&both, utc(2026, 3, 1, 4, 0)),
            Some(utc(2026, 3, 2, 2, 0))
        );
        assert!(!inside(&[], utc(2026, 3, 1, 2, 10)));
        assert_eq!(next_change(&[], utc(2026, 3, 1, 2, 10)), None);
    }

    #[test]
    fn bad_windows_are_refused() {
        assert!(matches!(
            Window::new("61 * * * *", Duration::from_secs(60), Tz::UTC),
            Err(WindowError::Cron { .. })
        ));
        assert_eq!(
            Window::new("0 2 * * *", Duration::ZERO, Tz::UTC).err(),
            Some(WindowError::Empty)
        );
    }
}
