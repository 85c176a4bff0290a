//! DuckDB history: one writer thread owns the connection and appends batches of events;
//! reads for the CLI open the file separately (see [`query`]).

pub mod monitor;
pub mod query;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use duckdb::Connection;
use tokio::sync::{mpsc, oneshot, watch};

use crate::protocol::{Event, RunId};

/// Name of the history file inside the data dir.
pub const DB_FILE: &str = "state.duckdb";

/// Events waiting for the writer; beyond this, senders wait (backpressure, never loss).
const CHANNEL_CAPACITY: usize = 4096;
/// DuckDB's memory limit for one open history file: its cache, what a checkpoint pins, and a
/// query's sort. Measured with the store's worst case (every line a 64 KiB one, kept in
/// pieces of [`PIECE_BYTES`] in row groups of [`ROW_GROUP_ROWS`]): a checkpoint rewrites the
/// row group it appended to, which is then at most 2048 x 4000 bytes; see README "Limits".
const STORE_MEMORY: &str = "128MB";
/// Rows in one of DuckDB's row groups (its smallest: the vector size). A checkpoint rewrites
/// the whole row group it appended to, so what it must hold in memory is bounded by this
/// times the longest value of a row: DuckDB's default (122,880 rows) of 64 KiB lines made
/// a checkpoint need gigabytes and then fail for good.
pub(super) const ROW_GROUP_ROWS: u32 = 2048;
/// Longest piece of a line stored in one row. DuckDB keeps a longer string outside its
/// block ("overflow"), and a checkpoint of such strings needed several times their size in
/// memory; pieces this short stay inline. A line is stored as pieces `part` 0, 1, ... and
/// read back whole.
pub(crate) const PIECE_BYTES: usize = 4000;
/// The history file's name inside the writer's connection (the connection itself is an
/// in-memory database that attaches the file, to choose its row-group size).
const CATALOG: &str = "history";

/// What can go wrong with the history file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DuckDB reported an error.
    #[error("history store: {0}")]
    Db(#[from] duckdb::Error),
    /// The file was written by a newer opsconsole.
    #[error(
        "history store has schema version {found}, this opsconsole understands up to {supported}: upgrade opsconsole"
    )]
    TooNew {
        /// Version in the file.
        found: i32,
        /// Newest version this build knows.
        supported: i32,
    },
    /// The file could not be opened.
    #[error("cannot open history store {path}: {detail}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why, including who holds a lock.
        detail: String,
        /// Another process holds the file's lock (it may let go of it soon).
        locked: bool,
    },
    /// The writer has stopped (after an earlier error or shutdown).
    #[error("history store writer has stopped")]
    Closed,
    /// A write failed.
    #[error("history store write failed: {0}")]
    Write(String),
}

enum WriterMsg {
    Event(Event),
    /// Monitor names, results, states, incidents; retention and housekeeping.
    Monitor(monitor::MonitorWrite),
    Flush(oneshot::Sender<Result<(), String>>),
    /// A flush, then a checkpoint of the WAL into the file.
    Checkpoint(oneshot::Sender<Result<(), String>>),
    /// Write what came before, checkpoint and stop (other senders may still exist).
    Close,
}

/// Cheap handle for sending events to the writer.
#[derive(Clone)]
pub struct StoreSender {
    tx: mpsc::Sender<WriterMsg>,
    health: watch::Receiver<Option<String>>,
}

impl StoreSender {
    /// Queues an event for writing; waits only when the writer is far behind.
    pub async fn send(&self, event: Event) -> Result<(), StoreError> {
        self.tx
            .send(WriterMsg::Event(event))
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// Queues something about monitors for writing (results in batches); waits only when
    /// the writer is far behind. A flush covers it as it covers events.
    pub async fn send_monitor(&self, write: monitor::MonitorWrite) -> Result<(), StoreError> {
        self.tx
            .send(WriterMsg::Monitor(write))
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// Returns once every event sent before this call is committed to the file. While the
    /// file cannot be written this waits: the writer keeps the events and retries.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(WriterMsg::Flush(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await
            .map_err(|_| StoreError::Closed)?
            .map_err(StoreError::Write)
    }

    /// [`flush`](Self::flush), then a checkpoint, so that the file's size says what is stored
    /// (the benches measure bytes on disk this way). A checkpoint DuckDB postpones (another
    /// transaction is open) is not waited for.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(WriterMsg::Checkpoint(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await
            .map_err(|_| StoreError::Closed)?
            .map_err(StoreError::Write)
    }

    /// Like [`flush`](Self::flush), but gives up after `limit` with the writer's problem.
    pub async fn flush_within(&self, limit: Duration) -> Result<(), StoreError> {
        match tokio::time::timeout(limit, self.flush()).await {
            Ok(done) => done,
            Err(_) => Err(StoreError::Write(self.problem().unwrap_or_else(|| {
                format!(
                    "not written within {}",
                    crate::humantime::format_duration(limit)
                )
            }))),
        }
    }

    /// Why the writer cannot store events right now (it keeps them and retries), if it cannot.
    pub fn problem(&self) -> Option<String> {
        self.health.borrow().clone()
    }

    /// Changes of [`problem`](Self::problem), for announcing them.
    pub fn health(&self) -> watch::Receiver<Option<String>> {
        self.health.clone()
    }
}

/// State found in the file when it was opened.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// The next unused run id.
    pub next_run_id: RunId,
    /// Runs that were not finished when the last process stopped, oldest first.
    pub unfinished: Vec<UnfinishedRun>,
    /// Last recorded fire time and paused flag of every workflow that has either.
    pub schedules: Vec<ScheduleState>,
    /// Services and subtrees an operator stopped and has not started since: they stay
    /// stopped when the principal starts again.
    pub held_services: Vec<String>,
    /// The last start number of every service and supervisor path: the next principal
    /// numbers its runs after them.
    pub service_starts: Vec<(String, u64)>,
    /// Starts of services and supervisors with a `starting` record and no end (the last
    /// principal died meanwhile): the next one records them as interrupted.
    pub interrupted_services: Vec<(String, u64)>,
    /// The previous principal recorded its dispatches (the file's schema had them): a queued
    /// attempt without one was never handed to any agent.
    pub dispatches_recorded: bool,
}

/// A run the previous principal left queued or running.
#[derive(Debug, Clone, PartialEq)]
pub struct UnfinishedRun {
    /// The run.
    pub run_id: RunId,
    /// Its workflow.
    pub workflow: String,
    /// Its effective parameters.
    pub params: std::collections::BTreeMap<String, String>,
    /// It had started (its tasks may have run).
    pub started: bool,
    /// Last recorded state and attempt of each task that has any.
    pub tasks: std::collections::HashMap<String, (crate::protocol::TaskState, u32)>,
    /// How many attempts of each task a principal's death interrupted (they do not use up
    /// its retries, but they are bounded).
    pub interrupted: std::collections::HashMap<String, u32>,
    /// The latest dispatch of each task that has one: which attempt went to which agent.
    pub dispatched: std::collections::HashMap<String, Dispatched>,
    /// The last line number stored per task attempt and stream: lines an agent sends again
    /// after a restart are not stored twice.
    pub output_marks: Vec<OutputMark>,
}

/// Where the latest attempt of a task was handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatched {
    /// The attempt.
    pub attempt: u32,
    /// The agent.
    pub agent: crate::protocol::agent::AgentId,
    /// Which start of the agent's process.
    pub instance: u64,
}

/// The highest line number stored for one attempt's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputMark {
    /// The task.
    pub task: String,
    /// The attempt.
    pub attempt: u32,
    /// The stream.
    pub stream: crate::protocol::Stream,
    /// The highest line number stored.
    pub last_seq: u64,
}

/// What the scheduler must remember about a workflow across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleState {
    /// The workflow.
    pub workflow: String,
    /// The fire time of its latest scheduled run.
    pub last_fire: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether its schedule is paused.
    pub paused: bool,
}

/// Read access next to the writer: a second connection to the same database.
pub type SharedReader = std::sync::Arc<std::sync::Mutex<query::Reader>>;

/// The open history store: the writer thread and a way to reach it.
pub struct Store {
    sender: StoreSender,
    writer: Option<JoinHandle<()>>,
    reader: SharedReader,
}

/// Path of the history file in `data_dir`.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DB_FILE)
}

/// Opens a connection to `path`, read-only or not, with a message that names the file.
pub(crate) fn connect(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    connect_with(path, read_only, STORE_MEMORY)
}

/// [`connect`] with DuckDB's memory limit `memory`.
fn connect_with(path: &Path, read_only: bool, memory: &str) -> Result<Connection, StoreError> {
    let open_error = |e: duckdb::Error| {
        let raw = e.to_string();
        StoreError::Open {
            path: path.to_path_buf(),
            locked: raw.contains("Could not set lock"),
            detail: explain_open_error(&raw),
        }
    };
    // DuckDB's own default is 80% of the machine's memory, most of it cache that a flood of
    // output fills; the principal keeps to a bound and lets DuckDB evict (or spill a big
    // query to its temp directory) past it.
    let config = duckdb::Config::default().max_memory(memory)?;
    if read_only {
        let config = config.access_mode(duckdb::AccessMode::ReadOnly)?;
        return Connection::open_with_flags(path, config).map_err(open_error);
    }
    // The writer appends small batches from one thread; DuckDB's worker pool would only
    // add hand-offs and take CPU from the task processes. The file is attached rather than
    // opened, since only ATTACH chooses the row-group size (see ROW_GROUP_ROWS); an
    // in-memory database has no temp directory of its own, so it is named (DuckDB's default
    // for a file).
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let config = config
        .threads(1)?
        .with("temp_directory", tmp.to_string_lossy())?;
    let conn = Connection::open_in_memory_with_flags(config)?;
    let file = path.to_string_lossy().replace('\'', "''");
    conn.execute_batch(&format!(
        "ATTACH '{file}' AS {CATALOG} (ROW_GROUP_SIZE {ROW_GROUP_ROWS}); USE {CATALOG};"
    ))
    .map_err(open_error)?;
    Ok(conn)
}

/// Another connection to the writer's database, reading the history file by default.
pub(crate) fn clone_connection(conn: &Connection) -> duckdb::Result<Connection> {
    let other = conn.try_clone()?;
    other.execute_batch(&format!("USE {CATALOG};"))?;
    Ok(other)
}

/// Memory allowed, once, to fold into the file a WAL that a previous opsconsole left too big
/// to checkpoint within [`STORE_MEMORY`] (before lines were stored in pieces, a flood of
/// long lines did, and every later start failed on it).
const RECOVERY_MEMORY: &str = "2GB";

/// Opens the file for writing with whatever WAL the last process left folded into it, so that
/// the writer starts with a checkpoint's worth of room. A WAL too big for the usual memory
/// limit is folded in once with a larger one.
fn open_checkpointed(path: &Path) -> Result<Connection, StoreError> {
    let checkpoint = |conn: &Connection| conn.execute_batch(&format!("CHECKPOINT {CATALOG}"));
    let first = connect(path, false).and_then(|c| match checkpoint(&c) {
        Ok(()) => Ok(c),
        Err(e) => Err(StoreError::Db(e)),
    });
    match first {
        Ok(conn) => return Ok(conn),
        Err(StoreError::Open { locked: true, .. }) => return first,
        Err(e) => tracing::warn!(
            "history store: {e}; folding the write-ahead log in with up to {RECOVERY_MEMORY}"
        ),
    }
    let conn = connect_with(path, false, RECOVERY_MEMORY)?;
    checkpoint(&conn)?;
    drop(conn);
    tracing::info!("history store: write-ahead log folded in");
    connect(path, false)
}

/// DuckDB allows one writing process per file; say so in our words, naming the holder.
fn explain_open_error(raw: &str) -> String {
    if !raw.contains("Could not set lock") {
        return raw.to_string();
    }
    let holder = raw
        .split("(PID ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .map(|pid| format!(" (PID {pid})"))
        .unwrap_or_default();
    format!(
        "another opsconsole process{holder} is using this data directory; wait for it to finish, \
         stop it, or pass a different --data-dir"
    )
}

impl Store {
    /// Opens (creating if needed) the history in `data_dir`, migrates it, and starts the writer.
    pub fn open(data_dir: &Path) -> Result<(Self, Recovered), StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Open {
            locked: false,
            path: data_dir.to_path_buf(),
            detail: format!("cannot create the data directory: {e}"),
        })?;
        let path = db_path(data_dir);
        let conn = open_checkpointed(&path)?;
        let found = schema::migrate(&conn)?;
        monitor::seal_interrupted_attempts(&conn)?;
        let mut recovered = recover(&conn)?;
        recovered.dispatches_recorded = found >= schema::DISPATCHES_VERSION;
        let next_seq = schema::next_event_seq(&conn)?;
        let reader = std::sync::Arc::new(std::sync::Mutex::new(query::Reader::from_connection(
            clone_connection(&conn)?,
        )));
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (health_tx, health) = watch::channel(None);
        let writer = writer::Writer::new(path, reader.clone(), health_tx, next_seq);
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(conn, rx))
            .map_err(|e| StoreError::Write(format!("cannot start the writer thread: {e}")))?;
        Ok((
            Self {
                sender: StoreSender { tx, health },
                writer: Some(writer),
                reader,
            },
            recovered,
        ))
    }

    /// A handle for sending events.
    pub fn sender(&self) -> StoreSender {
        self.sender.clone()
    }

    /// Queries on the same database, for requests served by the principal.
    pub fn reader(&self) -> SharedReader {
        self.reader.clone()
    }

    /// Writes everything still queued and closes the file.
    /// While the file cannot be written, the writer keeps trying for a bounded time and then
    /// reports what it could not store, so that this returns.
    pub async fn close(mut self) -> Result<(), StoreError> {
        let _ = self.sender.tx.send(WriterMsg::Close).await;
        let writer = self.writer.take();
        if let Some(w) = writer {
            tokio::task::spawn_blocking(move || w.join())
                .await
                .map_err(|e| StoreError::Write(e.to_string()))?
                .map_err(|_| StoreError::Write("writer thread panicked".into()))?;
        }
        match self.sender.problem() {
            Some(problem) => Err(StoreError::Write(problem)),
            None => Ok(()),
        }
    }
}

impl Drop for Store {
    /// A store dropped without [`Store::close`] (its owner died) still writes what it holds.
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            // Not a blocking send: this may run on an async worker. A full channel drains
            // quickly; give up after a few seconds rather than hang a dying process.
            for _ in 0..5000 {
                match self.sender.tx.try_send(WriterMsg::Close) {
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Ok(()) => {
                        let _ = writer.join();
                        return;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        }
    }
}

/// Marks runs left unfinished by a previous process and finds the next run id.
fn recover(conn: &Connection) -> Result<Recovered, StoreError> {
    let next: i64 = conn.query_row("SELECT coalesce(max(run_id), 0) + 1 FROM runs", [], |r| {
        r.get(0)
    })?;
    let unfinished = unfinished_runs(conn)?;
    let mut stmt = conn.prepare(
        "WITH fires AS (SELECT workflow, max(scheduled_for) AS last_fire FROM runs
                        WHERE scheduled_for IS NOT NULL GROUP BY workflow),
              pauses AS (SELECT workflow, arg_max(paused, event_seq) AS paused FROM workflow_state
                         GROUP BY workflow)
         SELECT workflow, epoch_us(fires.last_fire), coalesce(pauses.paused, false)
         FROM fires FULL OUTER JOIN pauses USING (workflow)
         ORDER BY workflow",
    )?;
    let schedules = stmt
        .query_map([], |r| {
            Ok(ScheduleState {
                workflow: r.get(0)?,
                last_fire: r
                    .get::<_, Option<i64>>(1)?
                    .and_then(chrono::DateTime::from_timestamp_micros),
                paused: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = conn.prepare(
        "SELECT path FROM (SELECT path, arg_max(kind, event_seq) AS last FROM service_events
                           WHERE kind IN ('held', 'released') GROUP BY path)
         WHERE last = 'held' ORDER BY path",
    )?;
    let held_services = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    let mut stmt =
        conn.prepare("SELECT path, max(start_no) FROM service_events GROUP BY path ORDER BY path")?;
    let service_starts = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?
        .collect::<Result<Vec<(String, u64)>, _>>()?;
    let mut stmt = conn.prepare(
        "SELECT path, start_no FROM service_events GROUP BY path, start_no
         HAVING bool_or(kind = 'starting')
            AND NOT bool_or(kind IN ('exited', 'stopped', 'gave_up', 'auto_shutdown', 'interrupted'))
         ORDER BY path, start_no",
    )?;
    let interrupted_services = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?
        .collect::<Result<Vec<(String, u64)>, _>>()?;
    Ok(Recovered {
        next_run_id: RunId(next as u64),
        unfinished,
        schedules,
        held_services,
        service_starts,
        interrupted_services,
        dispatches_recorded: false,
    })
}

/// Runs whose last recorded state is queued or running, with where each of their tasks stood.
fn unfinished_runs(conn: &Connection) -> Result<Vec<UnfinishedRun>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT r.run_id, r.workflow, r.params, coalesce(e.state, 'queued')
         FROM runs r
         LEFT JOIN (SELECT run_id, arg_max(state, event_seq) AS state FROM run_events GROUP BY run_id) e
           USING (run_id)
         WHERE e.state IS NULL OR e.state IN ('queued', 'running')
         ORDER BY r.run_id",
    )?;
    let runs = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut tasks_stmt = conn.prepare(
        "SELECT task, arg_max(state, event_seq), arg_max(attempt, event_seq) FROM task_events
         WHERE run_id = ? GROUP BY task",
    )?;
    let mut interrupted_stmt = conn.prepare(
        "SELECT task, count(*) FROM task_attempts WHERE run_id = ? AND state = 'interrupted'
         GROUP BY task",
    )?;
    let mut dispatched_stmt = conn.prepare(
        "SELECT task, arg_max(attempt, event_seq), arg_max(agent, event_seq),
                arg_max(instance, event_seq)
         FROM dispatches WHERE run_id = ? GROUP BY task",
    )?;
    let mut marks_stmt = conn.prepare(
        "SELECT task, attempt, stream, max(seq) FROM logs WHERE run_id = ?
         GROUP BY task, attempt, stream",
    )?;
    let mut out = Vec::with_capacity(runs.len());
    for (id, workflow, params, state) in runs {
        let dispatched = dispatched_stmt
            .query_map([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Dispatched {
                        attempt: r.get::<_, i64>(1)?.max(0) as u32,
                        agent: crate::protocol::agent::AgentId(r.get(2)?),
                        instance: r.get::<_, i64>(3)? as u64,
                    },
                ))
            })?
            .collect::<Result<_, _>>()?;
        let output_marks = marks_stmt
            .query_map([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter_map(|(task, attempt, stream, seq)| {
                Some(OutputMark {
                    task,
                    attempt: attempt.max(0) as u32,
                    stream: stream.parse().ok()?,
                    last_seq: seq.max(0) as u64,
                })
            })
            .collect();
        let tasks = tasks_stmt
            .query_map([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter_map(|(task, state, attempt)| {
                Some((task, (state.parse().ok()?, attempt.max(0) as u32)))
            })
            .collect();
        let interrupted = interrupted_stmt
            .query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(|(task, n)| (task, n.max(0) as u32))
            .collect();
        out.push(UnfinishedRun {
            run_id: RunId(id as u64),
            workflow,
            params: serde_json::from_str(&params).unwrap_or_default(),
            started: state == "running",
            tasks,
            interrupted,
            dispatched,
            output_marks,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lock_conflicts_name_the_holder() {
        let raw = "IO Error: Could not set lock on file \"/x/state.duckdb\": Conflicting lock is held in /usr/bin/opsconsole (PID 4242). See also https://duckdb.org";
        let msg = super::explain_open_error(raw);
        assert!(
            msg.starts_with("another opsconsole process (PID 4242) is using"),
            "{msg}"
        );
        assert_eq!(super::explain_open_error("disk full"), "disk full");
    }
}
