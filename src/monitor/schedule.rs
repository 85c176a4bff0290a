//! [`Wheel`]: one hashed timer wheel for every monitor's next check. A monitor costs 12
//! bytes (its due tick and two links of an intrusive list in three arrays indexed by its
//! id), plus 4 bytes a bucket shared by all; setting, rescheduling and cancelling are O(1),
//! popping is O(due + entries of later rounds sharing the buckets walked).
//!
//! Times are durations since an origin the caller picks (as `supervisor::At`), cut into
//! ticks; a due time in the past is due at the next pop. [`first_delay`] spreads the first
//! check of each monitor over its interval by a hash of its name, as Prometheus spreads
//! scrapes, so a million monitors do not fire in the same second, and the same name keeps
//! the same phase across restarts.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// No entry (an empty bucket, the end of a list, an id not scheduled).
const NONE: u32 = u32::MAX;

/// Default tick: checks are due to within 100 ms.
pub const DEFAULT_TICK: Duration = Duration::from_millis(100);
/// Default buckets: 65,536 ticks of 100 ms span 109 minutes, longer than most intervals, so
/// a bucket rarely holds entries of later rounds.
pub const DEFAULT_BUCKETS: u32 = 1 << 16;

/// Every monitor's next check time.
#[derive(Debug, Clone)]
pub struct Wheel {
    tick_ns: u128,
    mask: u32,
    heads: Vec<u32>,
    next: Vec<u32>,
    prev: Vec<u32>,
    /// Due tick of each id; `NONE` when not scheduled.
    due: Vec<u32>,
    /// The first tick not yet popped.
    cursor: u32,
    len: usize,
}

impl Default for Wheel {
    fn default() -> Self {
        Wheel::new(DEFAULT_TICK, DEFAULT_BUCKETS)
    }
}

impl Wheel {
    /// A wheel of `buckets` (rounded up to a power of two) ticks of `tick` (at least 1 ms).
    pub fn new(tick: Duration, buckets: u32) -> Wheel {
        let buckets = buckets.clamp(2, 1 << 24).next_power_of_two();
        Wheel {
            tick_ns: tick.max(Duration::from_millis(1)).as_nanos(),
            mask: buckets - 1,
            heads: vec![NONE; buckets as usize],
            next: Vec::new(),
            prev: Vec::new(),
            due: Vec::new(),
            cursor: 0,
            len: 0,
        }
    }

    /// Ids scheduled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No id is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held by the wheel's arrays (for measuring).
    pub fn heap_bytes(&self) -> usize {
        4 * (self.heads.capacity()
            + self.next.capacity()
            + self.prev.capacity()
            + self.due.capacity())
    }

    fn tick_of(&self, at: Duration) -> u32 {
        (at.as_nanos() / self.tick_ns).min((NONE - 1) as u128) as u32
    }

    fn time_of(&self, tick: u32) -> Duration {
        let ns = tick as u128 * self.tick_ns;
        Duration::new((ns / 1_000_000_000) as u64, (ns % 1_000_000_000) as u32)
    }

    /// Makes room for ids up to `id` (so a load of a million does not grow in steps).
    pub fn reserve(&mut self, ids: usize) {
        if ids > self.due.len() {
            self.next.resize(ids, NONE);
            self.prev.resize(ids, NONE);
            self.due.resize(ids, NONE);
        }
    }

    /// Schedules `id` at `at` (since the origin), replacing a time it had.
    pub fn set(&mut self, id: u32, at: Duration) {
        if id == NONE {
            return;
        }
        self.reserve(id as usize + 1);
        self.cancel(id);
        let tick = self.tick_of(at).max(self.cursor);
        let b = (tick & self.mask) as usize;
        let i = id as usize;
        self.due[i] = tick;
        self.prev[i] = NONE;
        self.next[i] = self.heads[b];
        if self.heads[b] != NONE {
            self.prev[self.heads[b] as usize] = id;
        }
        self.heads[b] = id;
        self.len += 1;
    }

    /// Unschedules `id`; false when it was not scheduled.
    pub fn cancel(&mut self, id: u32) -> bool {
        let i = id as usize;
        let Some(&tick) = self.due.get(i) else {
            return false;
        };
        if tick == NONE {
            return false;
        }
        let (p, n) = (self.prev[i], self.next[i]);
        if p == NONE {
            self.heads[(tick & self.mask) as usize] = n;
        } else {
            self.next[p as usize] = n;
        }
        if n != NONE {
            self.prev[n as usize] = p;
        }
        self.due[i] = NONE;
        self.len -= 1;
        true
    }

    /// When `id` is due (to the tick), if scheduled.
    pub fn due(&self, id: u32) -> Option<Duration> {
        match self.due.get(id as usize) {
            Some(&t) if t != NONE => Some(self.time_of(t)),
            _ => None,
        }
    }

    /// Appends to `out` the ids due at `now`, in order of due time (ids of one tick by
    /// number), and unschedules them. Stops after the tick at which `out` holds `max` or
    /// more (whole ticks are taken: a tick is never half popped).
    pub fn pop_due(&mut self, now: Duration, max: usize, out: &mut Vec<u32>) {
        let now_tick = self.tick_of(now);
        if now_tick < self.cursor || self.len == 0 {
            return;
        }
        if (now_tick - self.cursor) as u64 >= self.heads.len() as u64 {
            return self.pop_late(now_tick, max, out);
        }
        let mut tick = self.cursor;
        while tick <= now_tick {
            let start = out.len();
            let mut id = self.heads[(tick & self.mask) as usize];
            while id != NONE {
                let next = self.next[id as usize];
                if self.due[id as usize] == tick {
                    out.push(id);
                }
                id = next;
            }
            out[start..].sort_unstable();
            for &id in &out[start..] {
                self.cancel(id);
            }
            tick += 1;
            self.cursor = tick;
            if out.len() >= max {
                break;
            }
        }
    }

    /// [`pop_due`](Self::pop_due) after a gap longer than the wheel: one pass over every
    /// bucket.
    fn pop_late(&mut self, now_tick: u32, max: usize, out: &mut Vec<u32>) {
        let mut found: Vec<(u32, u32)> = Vec::new();
        for &head in &self.heads {
            let mut id = head;
            while id != NONE {
                let due = self.due[id as usize];
                if due <= now_tick {
                    found.push((due, id));
                }
                id = self.next[id as usize];
            }
        }
        found.sort_unstable();
        // Whole ticks, as pop_due takes them.
        let mut take = found.len();
        if found.len() > max {
            let last = found[max.max(1) - 1].0;
            take = found.partition_point(|&(d, _)| d <= last);
        }
        for &(_, id) in &found[..take] {
            self.cancel(id);
            out.push(id);
        }
        self.cursor = match found.get(take) {
            Some(&(due, _)) => due,
            None => now_tick + 1,
        };
    }

    /// The earliest due time, if any is scheduled (for how long to sleep).
    pub fn next_due(&self) -> Option<Duration> {
        if self.len == 0 {
            return None;
        }
        for tick in self.cursor..self.cursor.saturating_add(self.heads.len() as u32) {
            let mut id = self.heads[(tick & self.mask) as usize];
            while id != NONE {
                if self.due[id as usize] == tick {
                    return Some(self.time_of(tick));
                }
                id = self.next[id as usize];
            }
        }
        // Everything is more than a round away.
        self.due
            .iter()
            .filter(|&&t| t != NONE)
            .min()
            .map(|&t| self.time_of(t))
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms (the phase of a monitor must not
/// change with the compiler).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// How long after `now` the first check of monitor `name` is due: its phase within
/// `every` is a hash of its name, counted from the Unix epoch so that it survives restarts.
pub fn first_delay(name: &str, every: Duration, now: DateTime<Utc>) -> Duration {
    let every_ms = every.as_millis().max(1) as u64;
    let offset = fnv1a(name) % every_ms;
    let phase = (now.timestamp_millis().max(0) as u64) % every_ms;
    Duration::from_millis((offset + every_ms - phase) % every_ms)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn pops_in_due_order_and_only_what_is_due() {
        let mut w = Wheel::new(ms(10), 8);
        w.set(3, ms(50));
        w.set(1, ms(20));
        w.set(2, ms(20));
        w.set(7, ms(1000)); // a later round of a bucket walked
        let mut out = Vec::new();
        w.pop_due(ms(15), usize::MAX, &mut out);
        assert!(out.is_empty());
        w.pop_due(ms(55), usize::MAX, &mut out);
        assert_eq!(out, [1, 2, 3]);
        assert_eq!(w.len(), 1);
        assert_eq!(w.next_due(), Some(ms(1000)));
        out.clear();
        w.pop_due(ms(999), usize::MAX, &mut out);
        assert!(out.is_empty());
        w.pop_due(ms(1000), usize::MAX, &mut out);
        assert_eq!(out, [7]);
        assert!(w.is_empty());
        assert_eq!(w.next_due(), None);
    }

    #[test]
    fn reschedule_and_cancel_move_or_drop_an_id() {
        let mut w = Wheel::new(ms(10), 16);
        w.set(1, ms(30));
        w.set(2, ms(30));
        w.set(1, ms(90));
        assert_eq!(w.due(1), Some(ms(90)));
        assert!(w.cancel(2));
        assert!(!w.cancel(2));
        assert!(!w.cancel(99));
        let mut out = Vec::new();
        w.pop_due(ms(60), usize::MAX, &mut out);
        assert!(out.is_empty());
        w.pop_due(ms(100), usize::MAX, &mut out);
        assert_eq!(out, [1]);
        // A time in the past is due at the next pop.
        w.set(4, ms(5));
        w.pop_due(ms(110), usize::MAX, &mut out);
        assert_eq!(out, [1, 4]);
    }

    #[test]
    fn a_gap_longer_than_the_wheel_pops_everything_due_in_order_and_max_keeps_ticks_whole() {
        let mut w = Wheel::new(ms(10), 4);
        for id in 0..10u32 {
            w.set(id, ms(10 * (10 - id as u64)));
        }
        w.set(42, ms(5000));
        let mut out = Vec::new();
        w.pop_due(ms(60), 3, &mut out);
        assert_eq!(out, [9, 8, 7], "ticks 1, 2, 3");
        out.clear();
        w.pop_due(ms(200), usize::MAX, &mut out);
        assert_eq!(out, [6, 5, 4, 3, 2, 1, 0]);
        assert_eq!(w.len(), 1);
        assert_eq!(w.next_due(), Some(ms(5000)));
    }

    #[test]
    fn first_checks_spread_over_the_interval_and_keep_their_phase() {
        let every = Duration::from_secs(60);
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        let mut per_second = [0u32; 60];
        for i in 0..60_000 {
            let d = first_delay(&format!("target-{i}"), every, now);
            assert!(d < every);
            per_second[d.as_secs() as usize] += 1;
        }
        let (lo, hi) = (
            per_second.iter().min().copied().unwrap_or(0),
            per_second.iter().max().copied().unwrap_or(0),
        );
        println!("60,000 monitors over 60 s: {lo}..{hi} first checks a second");
        assert!(lo > 800 && hi < 1200, "{lo}..{hi}");
        // Ten seconds later the same monitor is due at the same instant.
        let later = now + chrono::Duration::seconds(10);
        let a = now + chrono::Duration::from_std(first_delay("api", every, now)).expect("small");
        let b =
            later + chrono::Duration::from_std(first_delay("api", every, later)).expect("small");
        assert_eq!((b - a).num_milliseconds() % 60_000, 0);
    }

    /// Prints the wheel's cost at a million monitors; asserts nothing about speed.
    #[test]
    fn a_million_monitors_measured() {
        const N: u32 = 1_000_000;
        let every = Duration::from_secs(60);
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        let delays: Vec<Duration> = (0..N)
            .map(|i| {
                first_delay(
                    &format!("10.{}.{}.{}:80", i >> 16, (i >> 8) & 255, i & 255),
                    every,
                    now,
                )
            })
            .collect();
        let mut w = Wheel::default();
        w.reserve(N as usize);
        let started = Instant::now();
        for (id, d) in delays.iter().enumerate() {
            w.set(id as u32, *d);
        }
        let set_s = started.elapsed().as_secs_f64();
        let bytes = w.heap_bytes() as f64 / N as f64;
        // One interval of pops in 100 ms steps, rescheduling each popped id an interval on.
        let started = Instant::now();
        let mut out = Vec::with_capacity(4096);
        let mut popped = 0u64;
        let mut t = Duration::ZERO;
        while t < every {
            out.clear();
            w.pop_due(t, usize::MAX, &mut out);
            for &id in &out {
                let due = delays[id as usize];
                assert!(due < t + DEFAULT_TICK && due + DEFAULT_TICK > t);
                w.set(id, due + every);
            }
            popped += out.len() as u64;
            t += DEFAULT_TICK;
        }
        let pop_s = started.elapsed().as_secs_f64();
        assert_eq!(popped, N as u64);
        assert_eq!(w.len(), N as usize);
        let started = Instant::now();
        for id in (0..N).step_by(2) {
            w.cancel(id);
        }
        let cancel_s = started.elapsed().as_secs_f64();
        println!(
            "wheel, 1,000,000 monitors: {:.0} sets/s, {:.0} pops+reschedules/s, {:.0} cancels/s, \
             {bytes:.2} bytes/monitor",
            N as f64 / set_s,
            popped as f64 / pop_s,
            (N / 2) as f64 / cancel_s
        );
    }
}
