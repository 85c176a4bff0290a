//! Push monitors: a dead man's switch per monitor, as healthchecks.io and Gatus's external
//! endpoints do it. The watched job reports in (`opsconsole ping NAME [--fail]`, or the ping
//! URL); the monitor fails when nothing arrived within `every` + `grace` of the last ping (or
//! of the start of the watch).
//!
//! Pure: time is passed in, nothing here does IO. A million push monitors fit: one 16-byte
//! slot per monitor id in a dense `Vec`, no `String` per monitor.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::humantime::format_duration;
use crate::protocol::check::CheckResult;
use crate::protocol::monitor::MonitorId;

pub use crate::protocol::api::MAX_PING_MESSAGE;

/// A slot whose monitor is not a push monitor.
const NOT_PUSH: i64 = i64::MIN;
/// No ping has arrived since the watch began.
const NEVER: i64 = i64::MIN;

/// One push monitor's clock: 16 bytes.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Milliseconds since the epoch when the watch began, or [`NOT_PUSH`].
    since_ms: i64,
    /// Milliseconds since the epoch of the last ping, or [`NEVER`].
    last_ping_ms: i64,
}

const EMPTY: Slot = Slot {
    since_ms: NOT_PUSH,
    last_ping_ms: NEVER,
};

/// Why a ping was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The monitor is not watched as a push monitor.
    #[error("{0} is not a push monitor")]
    NotPush(MonitorId),
}

/// The dead man's switches of every push monitor, indexed by monitor id.
#[derive(Debug, Default)]
pub struct Pushes {
    slots: Vec<Slot>,
}

impl Pushes {
    /// No push monitors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Watches `id` as a push monitor from `now` (its first deadline counts from here); a
    /// monitor already watched keeps its clock (a reload changes nothing for it).
    pub fn watch(&mut self, id: MonitorId, now: DateTime<Utc>) {
        let i = id.0 as usize;
        if self.slots.len() <= i {
            self.slots.resize(i + 1, EMPTY);
        }
        let slot = &mut self.slots[i];
        if slot.since_ms == NOT_PUSH {
            *slot = Slot {
                since_ms: now.timestamp_millis(),
                last_ping_ms: NEVER,
            };
        }
    }

    /// Stops watching `id` (removed, or no longer a push monitor after a reload).
    pub fn unwatch(&mut self, id: MonitorId) {
        if let Some(slot) = self.slots.get_mut(id.0 as usize) {
            *slot = EMPTY;
        }
        while self.slots.last().is_some_and(|s| s.since_ms == NOT_PUSH) {
            self.slots.pop();
        }
    }

    /// True when `id` is watched as a push monitor.
    #[cfg(test)]
    pub fn is_push(&self, id: MonitorId) -> bool {
        self.slot(id).is_some()
    }

    /// When the last ping of `id` arrived.
    #[cfg(test)]
    pub fn last_ping(&self, id: MonitorId) -> Option<DateTime<Utc>> {
        let s = self.slot(id)?;
        (s.last_ping_ms != NEVER)
            .then(|| DateTime::from_timestamp_millis(s.last_ping_ms))
            .flatten()
    }

    /// A ping arrived (ok = false: `opsconsole ping NAME --fail`): the result to record now.
    /// The message is kept (cut to [`MAX_PING_MESSAGE`] bytes) as the result's `[BODY]`.
    pub fn ping(
        &mut self,
        id: MonitorId,
        ok: bool,
        message: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<CheckResult, PushError> {
        let slot = self
            .slots
            .get_mut(id.0 as usize)
            .filter(|s| s.since_ms != NOT_PUSH)
            .ok_or(PushError::NotPush(id))?;
        slot.last_ping_ms = now.timestamp_millis();
        let message = message
            .map(|m| crate::protocol::prefix_within(m, MAX_PING_MESSAGE))
            .unwrap_or("");
        let error = (!ok).then(|| {
            if message.is_empty() {
                "the job reported a failure (ping --fail)".to_string()
            } else {
                // Shown on terminals (`monitor show`, incidents): one line, and no escape
                // that could drive them. `[BODY]` keeps the words as sent.
                let shown = crate::protocol::escape_controls(message);
                format!("the job reported a failure: {shown}")
            }
        });
        Ok(CheckResult {
            started: Some(now),
            // The job did report in: `[CONNECTED]` says a ping arrived, ok or not.
            connected: true,
            error,
            body: message.to_string(),
            ..CheckResult::default()
        })
    }

    /// The monitor's deadline came (every + grace after the last ping or the start):
    /// `Some(failed result)` when nothing arrived in time, else `None`; and when to look next
    /// (the time left until the deadline, or `every` after a failure, so that a silent job
    /// fails once per interval as any check would).
    pub fn due(
        &mut self,
        id: MonitorId,
        every: Duration,
        grace: Duration,
        now: DateTime<Utc>,
    ) -> (Option<CheckResult>, Duration) {
        let Some(s) = self.slot(id) else {
            return (None, every);
        };
        let base = s.last_ping_ms.max(s.since_ms);
        let allowed = every.saturating_add(grace);
        let deadline = base.saturating_add(i64::try_from(allowed.as_millis()).unwrap_or(i64::MAX));
        let now_ms = now.timestamp_millis();
        if now_ms < deadline {
            let left = Duration::from_millis((deadline - now_ms) as u64);
            return (None, left);
        }
        let silent = Duration::from_millis(now_ms.saturating_sub(base).max(0) as u64);
        let at = |ms: i64| {
            DateTime::from_timestamp_millis(ms)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                .unwrap_or_default()
        };
        let what = if s.last_ping_ms == NEVER {
            format!("no ping since the watch began at {}", at(s.since_ms))
        } else {
            format!("no ping since {}", at(s.last_ping_ms))
        };
        let why = format!(
            "{what} ({} ago; expected every {} + grace {})",
            format_duration(silent),
            format_duration(every),
            format_duration(grace)
        );
        (
            Some(CheckResult::failed(Some(now), Duration::ZERO, why)),
            every.max(Duration::from_millis(1)),
        )
    }

    fn slot(&self, id: MonitorId) -> Option<&Slot> {
        self.slots
            .get(id.0 as usize)
            .filter(|s| s.since_ms != NOT_PUSH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_secs(60);
    const GRACE: Duration = Duration::from_secs(10);

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("in range")
    }

    fn watched(id: u32) -> Pushes {
        let mut p = Pushes::new();
        p.watch(MonitorId(id), t(0));
        p
    }

    #[test]
    fn pings_in_time_keep_it_healthy() {
        let id = MonitorId(3);
        let mut p = watched(3);
        // Before the first deadline (start + every + grace) nothing fails; the wheel is told
        // how long is left.
        assert_eq!(
            p.due(id, EVERY, GRACE, t(30)),
            (None, Duration::from_secs(40))
        );
        for k in 1..=10 {
            let now = t(k * 55);
            let r = p.ping(id, true, Some("done"), now).expect("a push monitor");
            assert!(r.connected && r.error.is_none(), "{r:?}");
            assert_eq!(r.body, "done");
            assert_eq!(r.started, Some(now));
            let (failed, next) = p.due(id, EVERY, GRACE, t(k * 55 + 69));
            assert_eq!((failed, next), (None, Duration::from_secs(1)));
        }
        assert_eq!(p.last_ping(id), Some(t(550)));
    }

    #[test]
    fn no_ping_within_every_and_grace_fails_saying_since_when() {
        let id = MonitorId(0);
        let mut p = watched(0);
        let (failed, next) = p.due(id, EVERY, GRACE, t(70));
        let failed = failed.expect("nothing arrived in 70s");
        let why = failed.error.as_deref().unwrap_or_default();
        println!("never pinged: {why}");
        assert!(
            why.contains("no ping since the watch began at 2027-01-15T08:00:00Z"),
            "{why}"
        );
        assert!(why.contains("expected every 1m00s + grace 10.0s"), "{why}");
        assert!(!failed.connected);
        assert_eq!(next, EVERY, "a silent job fails once per interval");

        p.ping(id, true, None, t(100)).expect("a push monitor");
        assert!(p.due(id, EVERY, GRACE, t(169)).0.is_none());
        let failed = p.due(id, EVERY, GRACE, t(200)).0.expect("late");
        let why = failed.error.unwrap_or_default();
        println!("late: {why}");
        assert!(
            why.starts_with("no ping since 2027-01-15T08:01:40Z (1m40s ago"),
            "{why}"
        );
    }

    #[test]
    fn a_fail_ping_fails_at_once_with_its_message() {
        let id = MonitorId(1);
        let mut p = watched(1);
        let r = p
            .ping(id, false, Some("backup: disk full"), t(5))
            .expect("a push monitor");
        assert_eq!(
            r.error.as_deref(),
            Some("the job reported a failure: backup: disk full")
        );
        assert_eq!(r.body, "backup: disk full");
        // What a job sends reaches operators' terminals in the failure: escaped there.
        let sent = "{\"disk\":\n \"full\"}\u{1b}[2J";
        let r = p.ping(id, false, Some(sent), t(5)).expect("a push monitor");
        assert_eq!(
            r.error.as_deref(),
            Some("the job reported a failure: {\"disk\":\\n \"full\"}\\u{1b}[2J")
        );
        assert_eq!(r.body, sent, "conditions read what was sent");
        let r = p.ping(id, false, None, t(6)).expect("a push monitor");
        assert_eq!(
            r.error.as_deref(),
            Some("the job reported a failure (ping --fail)")
        );
        // A failed ping still shows the job is alive: the deadline counts from it.
        assert!(p.due(id, EVERY, GRACE, t(75)).0.is_none());
    }

    #[test]
    fn a_ping_for_a_monitor_that_is_not_a_push_monitor_is_refused() {
        let mut p = watched(2);
        assert_eq!(
            p.ping(MonitorId(7), true, None, t(1)),
            Err(PushError::NotPush(MonitorId(7)))
        );
        assert_eq!(
            p.ping(MonitorId(0), true, None, t(1)),
            Err(PushError::NotPush(MonitorId(0))),
            "a hole below a push monitor's slot is not one"
        );
        p.unwatch(MonitorId(2));
        assert!(p.ping(MonitorId(2), true, None, t(1)).is_err());
        assert!(!p.is_push(MonitorId(2)));
        assert_eq!(p.due(MonitorId(2), EVERY, GRACE, t(500)), (None, EVERY));
    }

    #[test]
    fn a_long_message_is_cut_at_a_character_boundary() {
        let mut p = watched(0);
        let long = "é".repeat(MAX_PING_MESSAGE);
        let r = p.ping(MonitorId(0), true, Some(&long), t(1)).expect("push");
        assert!(r.body.len() <= MAX_PING_MESSAGE && r.body.len() >= MAX_PING_MESSAGE - 1);
        assert!(r.body.chars().all(|c| c == 'é'));
    }

    #[test]
    fn watching_again_keeps_the_clock_and_slots_stay_small() {
        let mut p = watched(0);
        p.ping(MonitorId(0), true, None, t(50)).expect("push");
        p.watch(MonitorId(0), t(60));
        assert_eq!(p.last_ping(MonitorId(0)), Some(t(50)));
        assert_eq!(std::mem::size_of::<Slot>(), 16);
        let mut many = Pushes::new();
        for i in 0..1_000_000 {
            many.watch(MonitorId(i), t(0));
        }
        assert_eq!(many.slots.len(), 1_000_000);
        assert!(many.slots.capacity() * std::mem::size_of::<Slot>() <= 32 << 20);
    }
}
