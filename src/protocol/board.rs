//! The seam between the monitor actor and everything that shows monitors: the actor writes
//! what it knows into a [`MonitorBoard`] (shared behind a lock), the engine reads it to answer
//! `monitors` and `incidents` at once, and asks the actor for what only it knows (a monitor's
//! detail) or can do (pause, resume, check now) through a [`MonitorLink`].
//!
//! A million monitors must fit: a row is a small fixed struct (the name shared with the name
//! index, kind and tags interned), and the counts per state are kept as rows change, so that
//! the counts cost nothing to read.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use super::api::{ApiError, ApiErrorKind};
use super::monitor::{
    Cause, Incident, IncidentId, MonitorAction, MonitorCounts, MonitorDetail, MonitorFilter,
    MonitorPage, MonitorState, MonitorSummary,
};

/// Closed incidents kept for `incidents` (older ones are in the store only).
pub const RECENT_INCIDENTS: usize = 1000;

/// Commands queued towards the monitor actor before senders wait.
const COMMAND_QUEUE: usize = 256;

/// A monitor's row on the board; stable until the next [`MonitorBoard::retain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BoardId(pub u32);

/// Set in [`Row::flags`] while flapping.
const FLAPPING: u8 = 1;
/// Set in [`Row::flags`] while an intervention runs.
const INTERVENING: u8 = 2;
/// No time or no response yet.
const NONE_MS: i64 = i64::MIN;
const NONE_US: u32 = u32::MAX;

/// One monitor, compact: about 56 bytes beside its name.
#[derive(Debug)]
struct Row {
    name: Arc<str>,
    /// Index into [`MonitorBoard::kinds`].
    kind: u16,
    /// Index into [`MonitorBoard::tag_sets`].
    tags: u32,
    state: MonitorState,
    flags: u8,
    /// Milliseconds since the epoch of the last check, or [`NONE_MS`].
    last_check_ms: i64,
    /// Microseconds of the last response (saturated), or [`NONE_US`].
    last_response_us: u32,
    /// The open incident's number, 0 when none.
    incident: u64,
    /// Why it is not healthy; `None` while healthy.
    cause: Option<Box<Cause>>,
}

/// What the monitor actor knows that faces list: every monitor's summary and the incidents.
#[derive(Debug, Default)]
pub struct MonitorBoard {
    rows: Vec<Row>,
    names: HashMap<Arc<str>, u32>,
    kinds: Vec<Arc<str>>,
    tag_sets: Vec<Arc<[Arc<str>]>>,
    tag_set_ids: HashMap<Arc<[Arc<str>]>, u32>,
    counts: MonitorCounts,
    open: BTreeMap<u64, Incident>,
    recent: VecDeque<Incident>,
    generation: u64,
    stats: MonitorStats,
}

/// The board as the actor and the engine share it.
pub type SharedBoard = Arc<RwLock<MonitorBoard>>;

impl MonitorBoard {
    /// An empty board, shared.
    pub fn shared() -> SharedBoard {
        Arc::new(RwLock::new(MonitorBoard::default()))
    }

    // ---- writes (the monitor actor) ----

    /// Adds the monitor `name` (state unknown), or updates its kind and tags keeping its
    /// state; returns its row.
    pub fn upsert(&mut self, name: &str, kind: &str, tags: &[String]) -> BoardId {
        let kind = self.intern_kind(kind);
        let tags = self.intern_tags(tags);
        self.generation += 1;
        if let Some(&i) = self.names.get(name) {
            let row = &mut self.rows[i as usize];
            row.kind = kind;
            row.tags = tags;
            return BoardId(i);
        }
        let i = u32::try_from(self.rows.len()).unwrap_or(u32::MAX);
        let name: Arc<str> = Arc::from(name);
        self.names.insert(name.clone(), i);
        self.rows.push(Row {
            name,
            kind,
            tags,
            state: MonitorState::Unknown,
            flags: 0,
            last_check_ms: NONE_MS,
            last_response_us: NONE_US,
            incident: 0,
            cause: None,
        });
        self.counts.total += 1;
        self.counts.unknown += 1;
        BoardId(i)
    }

    /// Sets a monitor's state and flags; the counts follow.
    pub fn set_state(
        &mut self,
        id: BoardId,
        state: MonitorState,
        flapping: bool,
        intervening: bool,
    ) {
        let Some(row) = self.rows.get_mut(id.0 as usize) else {
            return;
        };
        let c = &mut self.counts;
        *c.get_mut(row.state) -= 1;
        *c.get_mut(state) += 1;
        c.flapping -= u64::from(row.flags & FLAPPING != 0);
        c.intervening -= u64::from(row.flags & INTERVENING != 0);
        row.state = state;
        row.flags = (u8::from(flapping) * FLAPPING) | (u8::from(intervening) * INTERVENING);
        c.flapping += u64::from(flapping);
        c.intervening += u64::from(intervening);
        if state == MonitorState::Healthy {
            row.cause = None;
        }
        self.generation += 1;
    }

    /// Records a monitor's latest check: when, its response time, and why it failed.
    pub fn set_check(
        &mut self,
        id: BoardId,
        at: DateTime<Utc>,
        response: Option<Duration>,
        cause: Option<Cause>,
    ) {
        let Some(row) = self.rows.get_mut(id.0 as usize) else {
            return;
        };
        row.last_check_ms = at.timestamp_millis();
        row.last_response_us = response.map_or(NONE_US, |r| {
            u32::try_from(r.as_micros()).unwrap_or(NONE_US - 1)
        });
        row.cause = cause.map(Box::new);
        self.generation += 1;
    }

    /// Adds or replaces an incident: an open one is listed as its monitor's, a closed one
    /// moves to the recent ones.
    pub fn put_incident(&mut self, incident: Incident) {
        let n = incident.id.0;
        let row = self
            .names
            .get(incident.monitor.as_str())
            .map(|&i| i as usize);
        self.recent.retain(|r| r.id != incident.id);
        if incident.closed.is_none() {
            if let Some(r) = row {
                self.rows[r].incident = n;
            }
            self.open.insert(n, incident);
        } else {
            self.open.remove(&n);
            if let Some(r) = row.filter(|&r| self.rows[r].incident == n) {
                self.rows[r].incident = 0;
            }
            self.recent.push_front(incident);
            self.recent.truncate(RECENT_INCIDENTS);
        }
        self.counts.open_incidents = self.open.len() as u64;
        self.generation += 1;
    }

    /// Keeps only the monitors for which `keep(name)` is true (after a reload), in their
    /// order; rows move, so ids taken before are stale: look them up again with [`Self::id`].
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.rows.retain(|r| keep(&r.name));
        self.names.clear();
        let mut counts = MonitorCounts {
            open_incidents: self.open.len() as u64,
            ..MonitorCounts::default()
        };
        for (i, r) in self.rows.iter().enumerate() {
            self.names.insert(r.name.clone(), i as u32);
            counts.total += 1;
            *counts.get_mut(r.state) += 1;
            counts.flapping += u64::from(r.flags & FLAPPING != 0);
            counts.intervening += u64::from(r.flags & INTERVENING != 0);
        }
        self.counts = counts;
        self.generation += 1;
    }

    fn intern_kind(&mut self, kind: &str) -> u16 {
        if let Some(i) = self.kinds.iter().position(|k| **k == *kind) {
            return i as u16;
        }
        self.kinds.push(Arc::from(kind));
        (self.kinds.len() - 1).min(u16::MAX as usize) as u16
    }

    fn intern_tags(&mut self, tags: &[String]) -> u32 {
        let set: Arc<[Arc<str>]> = tags.iter().map(|t| Arc::from(t.as_str())).collect();
        if let Some(&i) = self.tag_set_ids.get(&set) {
            return i;
        }
        let i = self.tag_sets.len() as u32;
        self.tag_sets.push(set.clone());
        self.tag_set_ids.insert(set, i);
        i
    }

    // ---- reads (the engine) ----

    /// Changes so far: a reader that saw the same number saw the same board.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of monitors.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True without monitors.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Counts per state (kept as rows change: free to read).
    pub fn counts(&self) -> MonitorCounts {
        self.counts
    }

    /// The row of the monitor `name`.
    pub fn id(&self, name: &str) -> Option<BoardId> {
        self.names.get(name).map(|&i| BoardId(i))
    }

    /// The summary of row `id`.
    pub fn summary(&self, id: BoardId) -> Option<MonitorSummary> {
        self.rows.get(id.0 as usize).map(|r| self.summarise(r))
    }

    /// The summary of the monitor `name`.
    pub fn get(&self, name: &str) -> Option<MonitorSummary> {
        self.summary(self.id(name)?)
    }

    /// The monitors `filter` keeps, `limit` of them from `offset`, with the counts.
    pub fn page(&self, filter: &MonitorFilter, offset: usize, limit: usize) -> MonitorPage {
        let mut monitors = Vec::new();
        let matched = if filter.is_empty() {
            let end = offset.saturating_add(limit).min(self.rows.len());
            if offset < end {
                monitors.extend(self.rows[offset..end].iter().map(|r| self.summarise(r)));
            }
            self.rows.len()
        } else {
            let tag = filter.tag.as_deref();
            // Tag sets are few: which of them hold the tag is worked out once, not per row.
            let tag_sets: Vec<bool> = self
                .tag_sets
                .iter()
                .map(|s| tag.is_none_or(|t| s.iter().any(|x| **x == *t)))
                .collect();
            let name = filter.name.as_deref().map(str::to_lowercase);
            let mut matched = 0;
            for r in &self.rows {
                let keep = filter.state.is_none_or(|s| s == r.state)
                    && tag_sets.get(r.tags as usize).copied().unwrap_or(false)
                    && name
                        .as_deref()
                        .is_none_or(|n| contains_ignoring_case(&r.name, n));
                if !keep {
                    continue;
                }
                if matched >= offset && monitors.len() < limit {
                    monitors.push(self.summarise(r));
                }
                matched += 1;
            }
            matched
        };
        MonitorPage {
            counts: self.counts,
            matched: matched as u64,
            offset: offset as u64,
            monitors,
            running: false,
        }
    }

    /// Open incidents (oldest first), then unless `open_only` the recently closed ones
    /// (newest first); at most `limit`.
    pub fn incidents(&self, open_only: bool, limit: usize) -> Vec<Incident> {
        let open = self.open.values();
        let recent = self.recent.iter().filter(|_| !open_only);
        open.chain(recent).take(limit).cloned().collect()
    }

    /// The incident numbered `id`, open or recent.
    pub fn incident(&self, id: IncidentId) -> Option<&Incident> {
        self.open
            .get(&id.0)
            .or_else(|| self.recent.iter().find(|i| i.id == id))
    }

    fn summarise(&self, r: &Row) -> MonitorSummary {
        MonitorSummary {
            name: r.name.to_string(),
            kind: self
                .kinds
                .get(r.kind as usize)
                .map_or_else(String::new, |k| k.to_string()),
            state: r.state,
            flapping: r.flags & FLAPPING != 0,
            tags: self
                .tag_sets
                .get(r.tags as usize)
                .map(|s| s.iter().map(|t| t.to_string()).collect())
                .unwrap_or_default(),
            last_check: (r.last_check_ms != NONE_MS)
                .then(|| DateTime::from_timestamp_millis(r.last_check_ms))
                .flatten(),
            last_response: (r.last_response_us != NONE_US)
                .then(|| Duration::from_micros(u64::from(r.last_response_us))),
            cause: r.cause.as_deref().cloned(),
            incident: (r.incident != 0).then_some(IncidentId(r.incident)),
            intervening: r.flags & INTERVENING != 0,
        }
    }
}

/// How the monitor actor is doing, for the bench and operators (written by the actor).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MonitorStats {
    /// Monitors scheduled.
    pub loaded: u64,
    /// Results judged since start.
    pub checks: u64,
    /// Results handed to the store.
    pub results_stored: u64,
    /// Start of a check minus its due time, median over the last minute, ms.
    pub lag_ms_p50: u64,
    /// The same, 99th percentile.
    pub lag_ms_p99: u64,
}

impl MonitorBoard {
    /// The actor's figures.
    pub fn stats(&self) -> MonitorStats {
        self.stats
    }

    /// Sets the actor's figures (the monitor actor).
    pub fn set_stats(&mut self, stats: MonitorStats) {
        self.stats = stats;
    }
}

/// `hay` contains `needle` (already lower case), ignoring ASCII case, without allocating.
fn contains_ignoring_case(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// What the engine asks of the monitor actor.
#[derive(Debug)]
pub enum MonitorCommand {
    /// Pause, resume or check a monitor now; answered with its summary after the change.
    Control {
        /// The monitor.
        name: String,
        /// What to do.
        action: MonitorAction,
        /// The answer.
        reply: oneshot::Sender<Result<MonitorSummary, ApiError>>,
    },
    /// A monitor in full: last results, conditions with the values seen, response series,
    /// per-location results, open incident.
    Detail {
        /// The monitor.
        name: String,
        /// The answer.
        reply: oneshot::Sender<Result<MonitorDetail, ApiError>>,
    },
    /// A push monitor's job reported in: record the result of the ping; answered with the
    /// monitor's summary after it, or refused when `name` is not a push monitor.
    Ping {
        /// The monitor.
        name: String,
        /// False: the job reports a failure.
        ok: bool,
        /// What the job says (already cut to `MAX_PING_MESSAGE` bytes).
        message: Option<String>,
        /// The answer.
        reply: oneshot::Sender<Result<MonitorSummary, ApiError>>,
    },
}

/// How the engine reaches the monitors: the board to read, the actor to ask.
#[derive(Debug, Clone)]
pub struct MonitorLink {
    board: SharedBoard,
    commands: Option<mpsc::Sender<MonitorCommand>>,
}

/// How long the engine waits for the monitor actor's answer.
pub const MONITOR_PATIENCE: Duration = Duration::from_secs(10);

impl MonitorLink {
    /// A link to an actor that writes `board` and serves the commands of the receiver.
    pub fn new(board: SharedBoard) -> (Self, mpsc::Receiver<MonitorCommand>) {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        (
            Self {
                board,
                commands: Some(tx),
            },
            rx,
        )
    }

    /// A link when no monitor actor runs: an empty board; control and detail are refused.
    pub fn idle() -> Self {
        Self {
            board: MonitorBoard::shared(),
            commands: None,
        }
    }

    /// True when an actor serves commands.
    pub fn running(&self) -> bool {
        self.commands.as_ref().is_some_and(|c| !c.is_closed())
    }

    /// The shared board.
    pub fn board(&self) -> &SharedBoard {
        &self.board
    }

    /// The board to read (a poisoned lock is read anyway: rows are plain data).
    pub fn read(&self) -> RwLockReadGuard<'_, MonitorBoard> {
        self.board.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The board to write.
    pub fn write(&self) -> RwLockWriteGuard<'_, MonitorBoard> {
        self.board.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Pauses, resumes or checks `name` now; its summary after the change.
    pub async fn control(
        &self,
        name: String,
        action: MonitorAction,
    ) -> Result<MonitorSummary, ApiError> {
        self.ask(|reply| MonitorCommand::Control {
            name,
            action,
            reply,
        })
        .await
    }

    /// `name` in full.
    pub async fn detail(&self, name: String) -> Result<MonitorDetail, ApiError> {
        self.ask(|reply| MonitorCommand::Detail { name, reply })
            .await
    }

    /// Records a ping of the push monitor `name`; its summary after it.
    pub async fn ping(
        &self,
        name: String,
        ok: bool,
        message: Option<String>,
    ) -> Result<MonitorSummary, ApiError> {
        self.ask(|reply| MonitorCommand::Ping {
            name,
            ok,
            message,
            reply,
        })
        .await
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, ApiError>>) -> MonitorCommand,
    ) -> Result<T, ApiError> {
        let not_running = || ApiError::new(ApiErrorKind::Unavailable, "monitors are not running");
        let tx = self.commands.as_ref().ok_or_else(not_running)?;
        let (reply, rx) = oneshot::channel();
        let asked = async {
            tx.send(command(reply)).await.map_err(|_| not_running())?;
            rx.await.map_err(|_| not_running())?
        };
        match tokio::time::timeout(MONITOR_PATIENCE, asked).await {
            Ok(answer) => answer,
            Err(_) => Err(ApiError::new(
                ApiErrorKind::Unavailable,
                "the monitors did not answer in time; try again",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::monitor::{Attempt, Outcome, Trigger};

    fn board(n: usize) -> MonitorBoard {
        let mut b = MonitorBoard::default();
        for i in 0..n {
            let tags = vec![if i.is_multiple_of(2) { "eu" } else { "us" }.to_string()];
            b.upsert(&format!("mon-{i}"), "http", &tags);
        }
        b
    }

    fn incident(id: u64, monitor: &str, closed: bool) -> Incident {
        Incident {
            id: IncidentId(id),
            monitor: monitor.into(),
            opened: Utc::now(),
            closed: closed.then(Utc::now),
            cause: Cause {
                condition: "[STATUS] == 200".into(),
                seen: "[STATUS] = 503".into(),
            },
            attempts: vec![Attempt {
                at: Utc::now(),
                trigger: Trigger::Unhealthy,
                action: "restart web/api".into(),
                outcome: Outcome::Started,
            }],
        }
    }

    #[test]
    fn counts_follow_every_change_of_state_and_flag() {
        let mut b = board(10);
        assert_eq!((b.counts().total, b.counts().unknown), (10, 10));
        let id = b.id("mon-3").expect("listed");
        b.set_state(id, MonitorState::Unhealthy, true, true);
        b.set_state(BoardId(4), MonitorState::Healthy, false, false);
        let c = b.counts();
        assert_eq!((c.unknown, c.unhealthy, c.healthy), (8, 1, 1));
        assert_eq!((c.flapping, c.intervening), (1, 1));
        b.set_state(id, MonitorState::Healthy, false, false);
        let c = b.counts();
        assert_eq!(
            (c.unhealthy, c.healthy, c.flapping, c.intervening),
            (0, 2, 0, 0)
        );
        // The same name again keeps its row and state.
        assert_eq!(b.upsert("mon-3", "tcp", &[]), id);
        assert_eq!(
            b.get("mon-3").map(|s| (s.kind, s.state)),
            Some(("tcp".into(), MonitorState::Healthy))
        );
        assert_eq!(b.counts().total, 10);
    }

    #[test]
    fn pages_filter_by_state_tag_and_name_and_count_what_matched() {
        let mut b = board(100);
        for i in (0..100).step_by(10) {
            b.set_state(BoardId(i), MonitorState::Unhealthy, false, false);
        }
        let all = b.page(&MonitorFilter::default(), 95, 10);
        assert_eq!((all.matched, all.monitors.len()), (100, 5));
        assert_eq!(all.monitors[0].name, "mon-95");
        let f = MonitorFilter::parse("unhealthy tag:eu").expect("parses");
        let p = b.page(&f, 2, 3);
        assert_eq!(p.matched, 10, "every tenth is unhealthy, all of them even");
        let names: Vec<_> = p.monitors.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["mon-20", "mon-30", "mon-40"]);
        let f = MonitorFilter::parse("MON-9").expect("parses");
        assert_eq!(b.page(&f, 0, 100).matched, 11, "mon-9 and mon-90..99");
        assert!(MonitorFilter::parse("state:sick").is_err());
    }

    #[test]
    fn incidents_list_open_first_then_recent_and_mark_their_monitor() {
        let mut b = board(3);
        b.put_incident(incident(1, "mon-1", false));
        b.put_incident(incident(2, "mon-2", false));
        assert_eq!(b.get("mon-1").and_then(|s| s.incident), Some(IncidentId(1)));
        b.put_incident(incident(1, "mon-1", true));
        assert_eq!(b.get("mon-1").and_then(|s| s.incident), None);
        b.put_incident(incident(3, "mon-0", true));
        let ids: Vec<u64> = b.incidents(false, 10).iter().map(|i| i.id.0).collect();
        assert_eq!(ids, [2, 3, 1], "open first, then the newest closed");
        assert_eq!(b.incidents(true, 10).len(), 1);
        assert_eq!(b.counts().open_incidents, 1);
    }

    #[test]
    fn retain_drops_rows_and_recounts() {
        let mut b = board(6);
        b.set_state(BoardId(5), MonitorState::Paused, false, false);
        b.retain(|n| n != "mon-0");
        assert_eq!(b.len(), 5);
        assert_eq!(b.id("mon-5"), Some(BoardId(4)));
        let c = b.counts();
        assert_eq!((c.total, c.paused, c.unknown), (5, 1, 4));
    }

    #[tokio::test]
    async fn an_idle_link_says_monitors_are_not_running() {
        let link = MonitorLink::idle();
        assert!(!link.running());
        let err = link
            .control("x".into(), MonitorAction::Pause)
            .await
            .expect_err("refused");
        assert_eq!(err.kind, ApiErrorKind::Unavailable);
        assert!(err.message.contains("monitors are not running"), "{err}");
    }
}
