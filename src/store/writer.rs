//! The store's one writer thread: numbers events in arrival order, commits them in groups,
//! and never drops a batch because a write failed.
//!
//! A failed commit (a full disk, an I/O error) keeps the batch and retries it with backoff;
//! events arriving meanwhile are held in memory up to a bound, past which senders wait.
//! A flush is answered only once everything before it is in the file. If DuckDB invalidated
//! the database after the error, the file is opened again (the write-ahead log has
//! everything committed before).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use duckdb::types::{TimeUnit, Value};
use duckdb::{Appender, Connection, params};
use tokio::sync::{mpsc, oneshot, watch};

use super::monitor::{HOUSEKEEP_EVERY, Housekeeping, MonitorWrite};
use super::{SharedReader, WriterMsg, connect};
use crate::protocol::{Event, Outcome, output_cost};

/// Largest number of events written in one transaction.
const MAX_BATCH: usize = 8192;
/// Monitor results one transaction appends at most: fewer than a row group, so that they go
/// through the WAL and are compressed together at a checkpoint (about 5 bytes a result). A
/// transaction that fills a row group makes DuckDB write it to the file at once, in blocks
/// of that commit's own: at 16,700 results a second that took 50 to 60 bytes a result.
const RESULTS_PER_COMMIT: usize = super::ROW_GROUP_ROWS as usize - 1;
/// How long the writer gathers events before committing them together. Each commit costs about
/// 1.5 ms of CPU (DuckDB parses and plans an INSERT for every appender it flushes) plus an
/// fsync, whatever it holds; at 20 ms that was 3% of a 2-core machine under load. Nothing waits
/// out the window: a trigger, a task whose dependents or retry wait, and a run's end ask for an
/// immediate commit; what a kill -9 takes from the window is re-run as an interrupted attempt.
const GROUP_COMMIT_WINDOW: Duration = Duration::from_millis(50);
/// Events held while the file cannot be written, in bytes (roughly); past it senders wait.
const MAX_HELD_BYTES: usize = 128 * 1024 * 1024;
/// First and longest pause between attempts to write a failed batch.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Output committed since the last checkpoint after which the writer checkpoints: the WAL
/// stays about this size, and replaying it (after a crash) or checkpointing it takes a bounded
/// amount of memory. DuckDB's own checkpoint at commit (at 16 MiB of WAL) is skipped while
/// another transaction is open, e.g. a console reading, and the WAL then grew without bound.
const CHECKPOINT_EVERY: usize = 16 * 1024 * 1024;
/// On close, how long to keep trying to write what is held before giving up (loudly).
const CLOSE_PATIENCE: Duration = Duration::from_secs(10);

/// An event waiting to be written, with its place in the file's sequence.
struct Pending {
    seq: u64,
    event: Item,
}

/// What is waiting to be written: an event, or something about monitors.
enum Item {
    Event(Event),
    Monitor(MonitorWrite),
}

/// The writer's state between commits.
pub(super) struct Writer {
    path: PathBuf,
    reader: SharedReader,
    health: watch::Sender<Option<String>>,
    next_seq: u64,
    pending: VecDeque<Pending>,
    held_bytes: usize,
    /// Flushes waiting for every event up to (and including) this sequence number.
    acks: VecDeque<(u64, oneshot::Sender<Result<(), String>>)>,
    /// Checkpoints asked for, answered after the next write and checkpoint.
    checkpoint_acks: Vec<oneshot::Sender<Result<(), String>>>,
    closing: bool,
    /// The channel has no senders left.
    disconnected: bool,
    /// When the writer first failed to write after being asked to stop.
    close_failing_since: Option<Instant>,
    /// A write failed since the last success: the next one first skips what the failed
    /// commit may have stored after all.
    after_failure: bool,
    /// Bytes (roughly) committed since the last checkpoint.
    since_checkpoint: usize,
    /// The fault test's FATAL error has been injected (see [`inject_fatal`]).
    fatal_injected: bool,
    /// Rollups and retention of monitor results.
    housekeeping: Housekeeping,
    /// A housekeeping step is asked for, at this time.
    housekeep_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the last housekeeping step ran.
    last_housekeep: Instant,
}

/// Why a writing session on one connection ended.
enum SessionEnd {
    /// Everything is written and the writer was asked to stop.
    Done,
    /// The connection is unusable after an error: open the file again.
    Broken,
}

impl Writer {
    pub(super) fn new(
        path: PathBuf,
        reader: SharedReader,
        health: watch::Sender<Option<String>>,
        next_seq: u64,
    ) -> Self {
        Self {
            path,
            reader,
            health,
            next_seq,
            pending: VecDeque::new(),
            held_bytes: 0,
            acks: VecDeque::new(),
            checkpoint_acks: Vec::new(),
            closing: false,
            disconnected: false,
            close_failing_since: None,
            after_failure: false,
            since_checkpoint: 0,
            fatal_injected: false,
            housekeeping: Housekeeping::default(),
            housekeep_at: None,
            last_housekeep: Instant::now(),
        }
    }

    /// Writes until closed, reopening the file when an error broke the connection.
    pub(super) fn run(mut self, conn: Connection, mut rx: mpsc::Receiver<WriterMsg>) {
        let mut conn = Some(conn);
        let mut pause = RETRY_FIRST;
        loop {
            let c = match conn.take() {
                Some(c) => c,
                None => match connect(&self.path, false) {
                    Ok(c) => {
                        match super::clone_connection(&c) {
                            Ok(r) => {
                                let mut guard =
                                    self.reader.lock().unwrap_or_else(|e| e.into_inner());
                                *guard = super::query::Reader::from_connection(r);
                            }
                            Err(e) => tracing::warn!("history store reader not renewed: {e}"),
                        }
                        tracing::info!("history store: reopened {}", self.path.display());
                        c
                    }
                    Err(e) => {
                        self.set_problem(format!("cannot reopen the history file: {e}"));
                        if self.give_up_closing() {
                            return;
                        }
                        self.wait_absorbing(&mut rx, pause);
                        pause = (pause * 2).min(RETRY_MAX);
                        continue;
                    }
                },
            };
            match self.session(&c, &mut rx) {
                SessionEnd::Done => {
                    if let Err(e) = c.execute_batch("CHECKPOINT") {
                        tracing::warn!("history store checkpoint on close failed: {e}");
                    }
                    return;
                }
                SessionEnd::Broken => {
                    drop(c);
                    self.wait_absorbing(&mut rx, pause);
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Gathers, numbers and commits events on one connection.
    fn session(&mut self, conn: &Connection, rx: &mut mpsc::Receiver<WriterMsg>) -> SessionEnd {
        // Kept across batches: creating an appender looks the table up in the catalog each time.
        let mut appenders = Appenders::default();
        let mut pause = RETRY_FIRST;
        if !self.fatal_injected && crate::failpoint::hit("store-fatal-on-commit") {
            self.fatal_injected = true;
            inject_fatal(conn);
        }
        loop {
            if self.pending.is_empty() && self.acks.is_empty() && self.checkpoint_acks.is_empty() {
                if self.closing || self.disconnected {
                    return SessionEnd::Done;
                }
                match rx.blocking_recv() {
                    Some(msg) => self.take(msg),
                    None => self.disconnected = true,
                }
            }
            self.gather(rx);
            self.housekeep(conn);
            match self.write_pending(conn, &mut appenders) {
                Ok(()) => {
                    pause = RETRY_FIRST;
                    if self.health.borrow().is_some() {
                        tracing::info!("history store: writing again, nothing was lost");
                        self.health.send_replace(None);
                    }
                    let asked = !self.checkpoint_acks.is_empty();
                    if (asked || self.since_checkpoint >= CHECKPOINT_EVERY)
                        && !self.checkpoint(conn)
                    {
                        return SessionEnd::Broken;
                    }
                    for ack in self.checkpoint_acks.drain(..) {
                        let _ = ack.send(Ok(()));
                    }
                }
                Err(e) => {
                    tracing::error!(
                        "history store write failed ({} event(s) held, retrying): {e}",
                        self.pending.len()
                    );
                    self.set_problem(format!("cannot write the history file: {e}"));
                    // A failed flush invalidates an appender; start over with fresh ones.
                    appenders = Appenders::default();
                    self.after_failure = true;
                    if self.give_up_closing() {
                        return SessionEnd::Done;
                    }
                    if is_broken(conn, &e) {
                        tracing::warn!(
                            "history store: DuckDB must reopen the file after that error; \
                             reopening it and writing the held events again"
                        );
                        return SessionEnd::Broken;
                    }
                    self.wait_absorbing(rx, pause);
                    pause = (pause * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// A bounded housekeeping step of monitor results when one is asked for or due (every
    /// [`HOUSEKEEP_EVERY`] while anything is written, sooner while it is behind). A failure is
    /// logged and tried again at the next step: housekeeping never holds events back.
    fn housekeep(&mut self, conn: &Connection) {
        if self.housekeep_at.is_none() && self.last_housekeep.elapsed() >= HOUSEKEEP_EVERY {
            self.housekeep_at = Some(chrono::Utc::now());
        }
        let Some(now) = self.housekeep_at.take() else {
            return;
        };
        self.last_housekeep = Instant::now();
        match self.housekeeping.step(conn, now) {
            Ok(report) => {
                if report.rolled + report.deleted > 0 {
                    tracing::debug!(
                        "history store: {} rollup row(s) written, {} raw result(s) deleted",
                        report.rolled,
                        report.deleted
                    );
                }
                if report.behind {
                    // Come back soon, not at once: events go first.
                    let soon = HOUSEKEEP_EVERY.saturating_sub(Duration::from_secs(1));
                    if let Some(earlier) = self.last_housekeep.checked_sub(soon) {
                        self.last_housekeep = earlier;
                    }
                }
            }
            Err(e) => tracing::warn!("history store housekeeping postponed: {e}"),
        }
    }

    /// Checkpoints the WAL into the file; false when that broke the connection (DuckDB
    /// invalidates a database after a failed checkpoint: it must be opened again). Any other
    /// failure (another transaction is open) is tried again after the next commit.
    fn checkpoint(&mut self, conn: &Connection) -> bool {
        match conn.execute_batch(&format!("CHECKPOINT {}", super::CATALOG)) {
            Ok(()) => {
                self.since_checkpoint = 0;
                true
            }
            Err(e) if is_broken(conn, &e) => {
                tracing::error!("history store checkpoint failed, reopening the file: {e}");
                self.after_failure = true;
                false
            }
            Err(e) => {
                tracing::debug!("history store checkpoint postponed: {e}");
                true
            }
        }
    }

    /// Group commit: gathers what arrives within a short window, since each DuckDB commit
    /// costs far more than the rows in it. A flush or close is served without waiting it out.
    fn gather(&mut self, rx: &mut mpsc::Receiver<WriterMsg>) {
        let window_end = Instant::now() + GROUP_COMMIT_WINDOW;
        loop {
            self.drain(rx);
            let urgent = !self.acks.is_empty()
                || !self.checkpoint_acks.is_empty()
                || self.closing
                || self.disconnected
                || self.pending.len() >= MAX_BATCH
                || self.held_bytes >= MAX_HELD_BYTES;
            if urgent || Instant::now() >= window_end {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Takes whatever is queued, within the memory bound.
    fn drain(&mut self, rx: &mut mpsc::Receiver<WriterMsg>) {
        while self.held_bytes < MAX_HELD_BYTES {
            match rx.try_recv() {
                Ok(msg) => self.take(msg),
                Err(mpsc::error::TryRecvError::Empty) => return,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.disconnected = true;
                    return;
                }
            }
        }
    }

    /// Waits `pause` before the next attempt, still taking messages (within the bound).
    fn wait_absorbing(&mut self, rx: &mut mpsc::Receiver<WriterMsg>, pause: Duration) {
        let until = Instant::now() + pause;
        while Instant::now() < until {
            self.drain(rx);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn take(&mut self, msg: WriterMsg) {
        let item = match msg {
            WriterMsg::Event(event) => Item::Event(event),
            WriterMsg::Monitor(MonitorWrite::Retention(keep)) => {
                self.housekeeping.retention = Some(keep);
                return;
            }
            WriterMsg::Monitor(MonitorWrite::Housekeep { now }) => {
                self.housekeep_at = Some(now);
                return;
            }
            WriterMsg::Monitor(MonitorWrite::Results(mut rows))
                if rows.len() > RESULTS_PER_COMMIT =>
            {
                // In pieces that each fit a transaction (see RESULTS_PER_COMMIT).
                while rows.len() > RESULTS_PER_COMMIT {
                    let rest = rows.split_off(RESULTS_PER_COMMIT);
                    self.hold(Item::Monitor(MonitorWrite::Results(rows)));
                    rows = rest;
                }
                Item::Monitor(MonitorWrite::Results(rows))
            }
            WriterMsg::Monitor(w) => Item::Monitor(w),
            other => return self.take_control(other),
        };
        self.hold(item);
    }

    /// Holds `item` for writing, numbered next.
    fn hold(&mut self, item: Item) {
        self.held_bytes += approx_bytes(&item);
        self.pending.push_back(Pending {
            seq: self.next_seq,
            event: item,
        });
        self.next_seq += 1;
    }

    /// A flush or a close.
    fn take_control(&mut self, msg: WriterMsg) {
        match msg {
            WriterMsg::Event(_) | WriterMsg::Monitor(_) => {}
            WriterMsg::Flush(ack) => {
                let upto = self.next_seq - 1;
                // A flush after a housekeeping request is answered once that step has run
                // (the loop runs it before the next write), so each request is a step of its
                // own instead of many requests collapsing into one later step.
                if self.housekeep_at.is_none() && self.pending.front().is_none_or(|p| p.seq > upto)
                {
                    let _ = ack.send(Ok(()));
                } else {
                    self.acks.push_back((upto, ack));
                }
            }
            WriterMsg::Checkpoint(ack) => self.checkpoint_acks.push(ack),
            WriterMsg::Close => self.closing = true,
        }
    }

    /// Commits the held events in order, in transactions of at most [`MAX_BATCH`]; answers
    /// each flush as soon as everything before it is in.
    fn write_pending<'c>(
        &mut self,
        conn: &'c Connection,
        appenders: &mut Appenders<'c>,
    ) -> duckdb::Result<()> {
        if self.after_failure {
            // A commit that reported an error may still have reached the file; writing its
            // rows again would duplicate them (and a run's row would violate its key). Each
            // held event is looked up by its own number: that the file has a later one does
            // not prove that it has this one, and skipping by the highest number stored would
            // drop a held batch from the middle of the history.
            if let (Some(first), Some(last)) = (self.pending.front(), self.pending.back()) {
                let stored = super::schema::stored_event_seqs(conn, first.seq, last.seq)?;
                for p in std::mem::take(&mut self.pending) {
                    if stored.contains(&p.seq) {
                        self.done_with(&p);
                    } else {
                        self.pending.push_back(p);
                    }
                }
            }
            self.after_failure = false;
        }
        while !self.pending.is_empty() {
            let n = commit_size(&self.pending);
            let (a, b) = self.pending.as_slices();
            let chunk: Vec<&Pending> = a.iter().chain(b.iter()).take(n).collect();
            write_batch(conn, appenders, &chunk)?;
            let last = chunk.last().map_or(0, |p| p.seq);
            self.since_checkpoint += chunk.iter().map(|p| approx_bytes(&p.event)).sum::<usize>();
            for p in self.pending.drain(..n).collect::<Vec<_>>() {
                self.done_with(&p);
            }
            while self.acks.front().is_some_and(|(upto, _)| *upto <= last) {
                if let Some((_, ack)) = self.acks.pop_front() {
                    let _ = ack.send(Ok(()));
                }
            }
        }
        // Flushes that came with nothing to write (or after the last event) are answered too.
        for (_, ack) in self.acks.drain(..) {
            let _ = ack.send(Ok(()));
        }
        Ok(())
    }

    fn set_problem(&self, problem: String) {
        self.health.send_replace(Some(problem));
    }

    /// While closing, the writer tries for a bounded time; then it reports what it could not
    /// store and stops, so that a process on a full disk still exits.
    fn give_up_closing(&mut self) -> bool {
        if !(self.closing || self.disconnected) {
            return false;
        }
        let since = *self.close_failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() < CLOSE_PATIENCE {
            return false;
        }
        let problem = self.health.borrow().clone().unwrap_or_default();
        tracing::error!(
            "history store: giving up on {} event(s) that could not be written: {problem}",
            self.pending.len()
        );
        crate::tell!(
            "error: {} history event(s) could not be written to {} ({problem}); free space and \
             check the data directory",
            self.pending.len(),
            self.path.display()
        );
        for (_, ack) in self.acks.drain(..) {
            let _ = ack.send(Err(problem.clone()));
        }
        for p in std::mem::take(&mut self.pending) {
            self.done_with(&p);
        }
        true
    }

    /// `p` is written (or given up on): it no longer counts against the memory bound, and
    /// its output's share of the agent's budget goes back, though a slow console may still
    /// hold the batch.
    fn done_with(&mut self, p: &Pending) {
        self.held_bytes = self.held_bytes.saturating_sub(approx_bytes(&p.event));
        match &p.event {
            Item::Event(Event::Logs(b)) => b.charge.release(),
            Item::Event(Event::ServiceLogs(b)) => b.charge.release(),
            _ => {}
        }
    }
}

/// Whether `conn` is unusable after `error`: DuckDB reports a FATAL error (a failed
/// checkpoint, say) once and then refuses every statement until the database is reopened
/// ("database has been invalidated ... must be restarted").
fn is_broken(conn: &Connection, error: &duckdb::Error) -> bool {
    let text = error.to_string();
    text.contains("FATAL")
        || text.contains("invalidated")
        || conn.execute_batch("SELECT 1").is_err()
}

/// Fault test `store-fatal-on-commit`: the next commit makes DuckDB checkpoint, and that
/// checkpoint fails with a FATAL error before it writes anything, as a checkpoint that ran
/// out of memory did; the commit's rows are lost with it (DuckDB writes no WAL for a commit
/// it checkpoints).
fn inject_fatal(conn: &Connection) {
    let set = conn.execute_batch(
        "SET debug_checkpoint_abort = 'before_header'; SET checkpoint_threshold = '1B';",
    );
    if let Err(e) = set {
        tracing::warn!("failpoint store-fatal-on-commit not set: {e}");
    }
}

/// What an event costs in memory while it is held, roughly.
fn approx_bytes(item: &Item) -> usize {
    match item {
        Item::Event(Event::Logs(b)) => output_cost(&b.lines) + 128,
        Item::Event(Event::ServiceLogs(b)) => output_cost(&b.lines) + 128,
        Item::Event(_) => 256,
        Item::Monitor(w) => w.approx_bytes(),
    }
}

/// `text` cut into pieces of at most [`PIECE_BYTES`](super::PIECE_BYTES) bytes, on character
/// boundaries, in order (an empty line is one empty piece).
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let t = rest?;
        if t.len() <= super::PIECE_BYTES {
            rest = None;
            return Some(t);
        }
        let mut cut = super::PIECE_BYTES;
        while !t.is_char_boundary(cut) {
            cut -= 1;
        }
        rest = Some(&t[cut..]);
        Some(&t[..cut])
    })
}

fn ts(at: chrono::DateTime<chrono::Utc>) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, at.timestamp_micros())
}

/// Lazily created appenders, one per table, all inside one transaction.
#[derive(Default)]
struct Appenders<'c> {
    runs: Option<Appender<'c>>,
    run_events: Option<Appender<'c>>,
    task_events: Option<Appender<'c>>,
    task_attempts: Option<Appender<'c>>,
    logs: Option<Appender<'c>>,
    workflow_state: Option<Appender<'c>>,
    agent_events: Option<Appender<'c>>,
    service_events: Option<Appender<'c>>,
    service_logs: Option<Appender<'c>>,
    dispatches: Option<Appender<'c>>,
    actions: Option<Appender<'c>>,
    monitor: super::monitor::Appenders<'c>,
}

fn appender<'c, 'a>(
    slot: &'a mut Option<Appender<'c>>,
    conn: &'c Connection,
    table: &str,
) -> duckdb::Result<&'a mut Appender<'c>> {
    if slot.is_none() {
        *slot = Some(conn.appender(table)?);
    }
    Ok(slot.as_mut().expect("set above"))
}

/// How many of the first `pending` events one transaction takes: at most [`MAX_BATCH`], and
/// results up to [`RESULTS_PER_COMMIT`] (always at least one event).
fn commit_size(pending: &VecDeque<Pending>) -> usize {
    let mut rows = 0;
    let mut n = 0;
    for p in pending.iter().take(MAX_BATCH) {
        let r = match &p.event {
            Item::Monitor(MonitorWrite::Results(batch)) => batch.len(),
            _ => 0,
        };
        if n > 0 && rows + r > RESULTS_PER_COMMIT {
            break;
        }
        rows += r;
        n += 1;
    }
    n.max(1).min(pending.len())
}

fn write_batch<'c>(
    conn: &'c Connection,
    appenders: &mut Appenders<'c>,
    batch: &[&Pending],
) -> duckdb::Result<()> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    let result = append_all(conn, appenders, batch);
    match result.and_then(|()| conn.execute_batch("COMMIT")) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn append_all<'c>(
    conn: &'c Connection,
    a: &mut Appenders<'c>,
    batch: &[&Pending],
) -> duckdb::Result<()> {
    for p in batch {
        let seq = p.seq as i64;
        let event = match &p.event {
            Item::Event(event) => event,
            Item::Monitor(w) => {
                a.monitor.append(conn, w, seq)?;
                continue;
            }
        };
        match event {
            Event::RunCreated {
                run_id,
                workflow,
                params,
                trigger,
                triggered_by,
                scheduled_for,
                at,
            } => {
                let params_json = serde_json::to_string(
                    &params
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                        .collect::<serde_json::Map<_, _>>(),
                )
                .unwrap_or_else(|_| "{}".into());
                appender(&mut a.runs, conn, "runs")?.append_row(params![
                    run_id.0 as i64,
                    workflow.as_ref(),
                    params_json,
                    trigger,
                    ts(*at),
                    scheduled_for.map(ts),
                    seq,
                    triggered_by.as_deref()
                ])?;
            }
            Event::WorkflowPaused {
                workflow,
                paused,
                at,
            } => {
                appender(&mut a.workflow_state, conn, "workflow_state")?.append_row(params![
                    workflow.as_ref(),
                    *paused,
                    ts(*at),
                    seq
                ])?;
            }
            Event::RunState {
                run_id,
                state,
                at,
                message,
                ..
            } => {
                appender(&mut a.run_events, conn, "run_events")?.append_row(params![
                    run_id.0 as i64,
                    state.as_str(),
                    ts(*at),
                    message.as_deref(),
                    seq
                ])?;
            }
            Event::TaskState {
                key,
                state,
                at,
                message,
            } => {
                appender(&mut a.task_events, conn, "task_events")?.append_row(params![
                    key.run_id.0 as i64,
                    key.task.as_ref(),
                    key.attempt,
                    state.as_str(),
                    ts(*at),
                    message.as_deref(),
                    seq
                ])?;
            }
            Event::Attempt(rec) => {
                let message = match rec.outcome {
                    Outcome::Exited(0) => None,
                    ref o => Some(o.describe()),
                };
                // An interrupted attempt is neither failed nor succeeded: it did not count.
                let state = match rec.outcome {
                    Outcome::Interrupted => "interrupted",
                    Outcome::Lost(_) => "lost",
                    ref o => o.task_state().as_str(),
                };
                appender(&mut a.task_attempts, conn, "task_attempts")?.append_row(params![
                    rec.key.run_id.0 as i64,
                    rec.key.task.as_ref(),
                    rec.key.attempt,
                    state,
                    ts(rec.started_at),
                    ts(rec.ended_at),
                    rec.outcome.exit_code(),
                    rec.outcome.signal(),
                    message,
                    seq
                ])?;
            }
            Event::Logs(b) => {
                let app = appender(&mut a.logs, conn, "logs")?;
                for line in &b.lines {
                    for (part, piece) in pieces(&line.text).enumerate() {
                        app.append_row(params![
                            b.key.run_id.0 as i64,
                            b.key.task.as_ref(),
                            b.key.attempt,
                            b.stream.as_str(),
                            line.seq as i64,
                            ts(line.at),
                            piece,
                            seq,
                            part as i32
                        ])?;
                    }
                }
            }
            Event::Agent(note) => {
                appender(&mut a.agent_events, conn, "agent_events")?.append_row(params![
                    note.agent.0.as_str(),
                    note.kind.as_str(),
                    note.state.as_str(),
                    note.message.as_str(),
                    ts(note.at),
                    seq
                ])?;
            }
            Event::Service(r) => {
                appender(&mut a.service_events, conn, "service_events")?.append_row(params![
                    r.path.as_str(),
                    r.start_no as i64,
                    r.kind.as_str(),
                    r.pid.map(i64::from),
                    r.exit_code,
                    r.signal,
                    r.message.as_deref(),
                    ts(r.at),
                    seq
                ])?;
            }
            Event::ServiceLogs(b) => {
                let app = appender(&mut a.service_logs, conn, "service_logs")?;
                for line in &b.lines {
                    for (part, piece) in pieces(&line.text).enumerate() {
                        app.append_row(params![
                            b.path.as_ref(),
                            b.start_no as i64,
                            b.stream.as_str(),
                            line.seq as i64,
                            ts(line.at),
                            piece,
                            seq,
                            part as i32
                        ])?;
                    }
                }
            }
            Event::Dispatched(d) => {
                appender(&mut a.dispatches, conn, "dispatches")?.append_row(params![
                    d.key.run_id.0 as i64,
                    d.key.task.as_ref(),
                    d.key.attempt,
                    d.agent.0.as_str(),
                    // Instances are random 64-bit numbers: kept bit for bit.
                    d.instance as i64,
                    ts(d.at),
                    seq
                ])?;
            }
            Event::Action(r) => {
                appender(&mut a.actions, conn, "actions")?.append_row(params![
                    ts(r.at),
                    r.by.as_str(),
                    r.action.as_str(),
                    r.target.as_str(),
                    seq
                ])?;
            }
            // Spec reloads are live news for faces; the files themselves are the record.
            Event::SpecsReloaded { .. }
            | Event::SpecProblems { .. }
            | Event::StoreHealth { .. }
            | Event::Monitor(_) => {}
        }
    }
    for app in [
        &mut a.runs,
        &mut a.run_events,
        &mut a.task_events,
        &mut a.task_attempts,
        &mut a.logs,
        &mut a.workflow_state,
        &mut a.agent_events,
        &mut a.service_events,
        &mut a.service_logs,
        &mut a.dispatches,
        &mut a.actions,
    ]
    .into_iter()
    .flatten()
    {
        app.flush()?;
    }
    a.monitor.flush()?;
    Ok(())
}
