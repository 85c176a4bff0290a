//! [`Stats`]: the actor's figures for the board ([`MonitorStats`]): monitors loaded, checks
//! judged, results stored, and the lag of check starts behind their due time over the last
//! minute, as p50 and p99 from a small histogram (six slots of ten seconds, log buckets).

use std::sync::OnceLock;

use chrono::{DateTime, Utc};

use crate::protocol::board::{MonitorStats, SharedBoard};

/// Seconds per slot of the lag window.
const SLOT_SECS: i64 = 10;
/// Slots in the window (a minute).
const SLOTS: usize = 6;
/// Buckets of the lag histogram.
const BUCKETS: usize = 64;

/// Upper bounds (ms) of the buckets: 0, 1, 2, ... growing by a fifth, the last open.
fn bounds() -> &'static [u64; BUCKETS] {
    static B: OnceLock<[u64; BUCKETS]> = OnceLock::new();
    B.get_or_init(|| {
        let mut b = [0u64; BUCKETS];
        for i in 1..BUCKETS {
            b[i] = (b[i - 1] + 1).max(b[i - 1] * 6 / 5);
        }
        b[BUCKETS - 1] = u64::MAX;
        b
    })
}

#[derive(Clone, Copy)]
struct Slot {
    /// Which ten seconds (since the epoch) it counts.
    at: i64,
    counts: [u32; BUCKETS],
}

/// The actor's counters.
pub(crate) struct Stats {
    /// Monitors loaded.
    pub loaded: u64,
    /// Results judged.
    pub checks: u64,
    /// Results handed to the store.
    pub results_stored: u64,
    slots: [Slot; SLOTS],
    published: i64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            loaded: 0,
            checks: 0,
            results_stored: 0,
            slots: [Slot {
                at: i64::MIN,
                counts: [0; BUCKETS],
            }; SLOTS],
            published: i64::MIN,
        }
    }
}

impl Stats {
    /// A check started `lag_ms` after it was due, at `now`.
    pub(crate) fn lag(&mut self, lag_ms: u64, now: DateTime<Utc>) {
        let at = now.timestamp().div_euclid(SLOT_SECS);
        let slot = &mut self.slots[at.rem_euclid(SLOTS as i64) as usize];
        if slot.at != at {
            slot.at = at;
            slot.counts = [0; BUCKETS];
        }
        let b = bounds().partition_point(|&x| x < lag_ms).min(BUCKETS - 1);
        slot.counts[b] = slot.counts[b].saturating_add(1);
    }

    /// The `q` quantile (0..=1) of the lags of the last minute, ms (0 without any).
    pub(crate) fn lag_quantile(&self, q: f64, now: DateTime<Utc>) -> u64 {
        let at = now.timestamp().div_euclid(SLOT_SECS);
        let mut sum = [0u64; BUCKETS];
        for s in self.slots.iter().filter(|s| s.at > at - SLOTS as i64) {
            for (t, c) in sum.iter_mut().zip(s.counts) {
                *t += u64::from(c);
            }
        }
        let total: u64 = sum.iter().sum();
        if total == 0 {
            return 0;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in sum.iter().enumerate() {
            seen += c;
            if seen >= want {
                return bounds()[i.min(BUCKETS - 2)];
            }
        }
        bounds()[BUCKETS - 2]
    }

    /// The figures as the board shows them.
    pub(crate) fn figures(&self, now: DateTime<Utc>) -> MonitorStats {
        MonitorStats {
            loaded: self.loaded,
            checks: self.checks,
            results_stored: self.results_stored,
            lag_ms_p50: self.lag_quantile(0.5, now),
            lag_ms_p99: self.lag_quantile(0.99, now),
        }
    }

    /// Writes the figures on the board, at most once a second; true once a minute (for a
    /// log line).
    pub(crate) fn publish(&mut self, board: &SharedBoard, now: DateTime<Utc>) -> bool {
        let second = now.timestamp();
        if second == self.published {
            return false;
        }
        let minute = second.div_euclid(60) != self.published.div_euclid(60);
        self.published = second;
        let figures = self.figures(now);
        board
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .set_stats(figures);
        minute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_quantiles_come_from_the_last_minute_only() {
        let mut s = Stats::default();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        assert_eq!(s.lag_quantile(0.5, t0), 0);
        for _ in 0..98 {
            s.lag(3, t0);
        }
        s.lag(900, t0);
        s.lag(5000, t0);
        let p50 = s.lag_quantile(0.5, t0);
        let p99 = s.lag_quantile(0.99, t0);
        assert!((3..=4).contains(&p50), "{p50}");
        assert!((900..=1100).contains(&p99), "{p99}");
        // Two minutes later they are gone.
        let later = t0 + chrono::Duration::seconds(120);
        assert_eq!(s.lag_quantile(0.99, later), 0);
        s.lag(10, later);
        assert!((10..=12).contains(&s.lag_quantile(0.5, later)));
    }
}
