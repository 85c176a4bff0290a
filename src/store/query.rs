//! Read-side queries over the history file, for `history`, `logs` and tests.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::{StoreError, connect, db_path};
use crate::protocol::history::{AttemptRow, RunSummary, StoredLine};
use crate::protocol::{RunId, RunState, Stream, TaskState};

/// Filters for [`Reader::runs`].
#[derive(Debug, Clone)]
pub struct RunFilter {
    /// Only this workflow.
    pub workflow: Option<String>,
    /// At most this many, newest first.
    pub limit: usize,
}

impl Default for RunFilter {
    fn default() -> Self {
        Self {
            workflow: None,
            limit: 20,
        }
    }
}

/// Where one task of a run stands, from its recorded events.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskProgress {
    /// Task name.
    pub task: String,
    /// Latest state.
    pub state: TaskState,
    /// Latest attempt number.
    pub attempt: u32,
    /// When the latest attempt started running.
    pub started_at: Option<DateTime<Utc>>,
    /// When the task reached its (final) state, if it has.
    pub ended_at: Option<DateTime<Utc>>,
}

/// Filters for [`Reader::logs`].
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Only this task.
    pub task: Option<String>,
    /// Only this stream.
    pub stream: Option<Stream>,
}

/// Most bytes of line text in one page of lines (beside its count of lines): an answer must
/// fit in one message (16 MiB, with JSON's escapes), and a page of 10,000 lines of 64 KiB
/// would be 640 MiB. A page has at least one line.
pub const PAGE_BYTES: usize = 2 * 1024 * 1024;

/// Read-only view of a data dir's history file.
pub struct Reader {
    conn: duckdb::Connection,
}

/// `path` and `path/` (its subtree) as query parameters.
fn path_filter(path: Option<&str>) -> (Option<String>, Option<String>) {
    (path.map(str::to_string), path.map(|p| format!("{p}/")))
}

fn micros(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(v).unwrap_or_default()
}

impl Reader {
    /// Reads through an existing connection (the principal's, next to its writer).
    pub(crate) fn from_connection(conn: duckdb::Connection) -> Self {
        Self { conn }
    }

    /// The connection, for the read-side queries of other store modules.
    pub(super) fn connection(&self) -> &duckdb::Connection {
        &self.conn
    }

    /// Opens the history in `data_dir` for reading.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = db_path(data_dir);
        if !path.exists() {
            return Err(StoreError::Open {
                locked: false,
                path,
                detail: "no history yet: run a workflow first (opsconsole run NAME --wait)".into(),
            });
        }
        let conn = connect(&path, true)?;
        if super::schema::version(&conn)? < super::schema::CURRENT_VERSION {
            // A file of an older opsconsole, and nobody is writing it (we could open it):
            // bring it up to date once, then read as usual.
            drop(conn);
            super::schema::migrate(&connect(&path, false)?)?;
            return Ok(Self {
                conn: connect(&path, true)?,
            });
        }
        Ok(Self { conn })
    }

    /// Lifecycle events of the service or subtree at `path` (every one for `None`), the
    /// newest `limit`, in order.
    pub fn service_events(
        &self,
        path: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::protocol::service::ServiceRecord>, StoreError> {
        use crate::protocol::service::{ServiceEventKind as K, ServiceRecord};
        let kinds = [
            K::Starting,
            K::Started,
            K::Ready,
            K::Exited,
            K::ReadyTimedOut,
            K::Restarting,
            K::Stopping,
            K::Stopped,
            K::GaveUp,
            K::AutoShutdown,
            K::Held,
            K::Released,
            K::Interrupted,
            K::Reserved,
        ];
        let (exact, prefix) = path_filter(path);
        let mut stmt = self.conn.prepare(
            "SELECT * FROM (
                 SELECT path, start_no, kind, pid, exit_code, signal, message, epoch_us(ts),
                        event_seq
                 FROM service_events WHERE (? IS NULL OR path = ? OR starts_with(path, ?))
                 ORDER BY event_seq DESC LIMIT ?)
             ORDER BY event_seq",
        )?;
        let rows = stmt.query_map(
            duckdb::params![exact, exact, prefix, limit.min(100_000) as i64],
            |r| {
                let kind: String = r.get(2)?;
                Ok(ServiceRecord {
                    path: r.get(0)?,
                    start_no: r.get::<_, i64>(1)?.max(0) as u64,
                    kind: kinds
                        .into_iter()
                        .find(|k| k.as_str() == kind)
                        .unwrap_or(K::Stopped),
                    pid: r.get::<_, Option<i64>>(3)?.map(|p| p.max(0) as u32),
                    exit_code: r.get(4)?,
                    signal: r.get(5)?,
                    message: r.get(6)?,
                    at: micros(r.get(7)?),
                })
            },
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The newest `limit` output lines of the service or subtree at `path`, in order.
    pub fn service_lines(
        &self,
        path: Option<&str>,
        limit: usize,
    ) -> Result<Vec<crate::protocol::service::ServiceLine>, StoreError> {
        let (exact, prefix) = path_filter(path);
        // Lines are chosen by their first piece, then read whole (see `PIECE_BYTES`).
        let mut stmt = self.conn.prepare(
            "WITH page AS (
                 SELECT path, start_no, seq, event_seq FROM service_logs
                 WHERE (? IS NULL OR path = ? OR starts_with(path, ?)) AND part = 0
                 ORDER BY event_seq DESC, seq DESC LIMIT ?)
             SELECT l.path, l.start_no, l.stream, l.seq, epoch_us(l.ts), l.line, l.part
             FROM service_logs l JOIN page USING (path, start_no, seq, event_seq)
             ORDER BY l.event_seq, l.seq, l.part",
        )?;
        let rows = stmt.query(duckdb::params![
            exact,
            exact,
            prefix,
            limit.min(100_000) as i64
        ])?;
        let mut lines = service_lines_of(rows, usize::MAX)?;
        // The newest lines, as many as fit in a page.
        let mut bytes = 0;
        let keep = lines
            .iter()
            .rev()
            .take_while(|l| {
                bytes += l.text.len();
                bytes <= PAGE_BYTES
            })
            .count()
            .max(1);
        lines.drain(..lines.len().saturating_sub(keep));
        Ok(lines)
    }

    /// Up to `limit` output lines of the service or subtree at `path`, in order, after the
    /// first `offset`: pages through all of them (new lines only ever come at the end).
    pub fn service_lines_from(
        &self,
        path: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<crate::protocol::service::ServiceLine>, StoreError> {
        let (exact, prefix) = path_filter(path);
        let mut stmt = self.conn.prepare(
            "WITH page AS (
                 SELECT path, start_no, seq, event_seq FROM service_logs
                 WHERE (? IS NULL OR path = ? OR starts_with(path, ?)) AND part = 0
                 ORDER BY event_seq, seq LIMIT ? OFFSET ?)
             SELECT l.path, l.start_no, l.stream, l.seq, epoch_us(l.ts), l.line, l.part
             FROM service_logs l JOIN page USING (path, start_no, seq, event_seq)
             ORDER BY l.event_seq, l.seq, l.part",
        )?;
        let rows = stmt.query(duckdb::params![
            exact,
            exact,
            prefix,
            limit.min(100_000) as i64,
            i64::try_from(offset).unwrap_or(i64::MAX)
        ])?;
        service_lines_of(rows, PAGE_BYTES)
    }

    /// Runs, newest first.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, StoreError> {
        self.summaries(filter.workflow.as_deref(), None, filter.limit)
    }

    /// One run as [`runs`](Self::runs) lists it; `None` when there is no such run.
    pub fn run(&self, run: RunId) -> Result<Option<RunSummary>, StoreError> {
        Ok(self.summaries(None, Some(run), 1)?.pop())
    }

    fn summaries(
        &self,
        workflow: Option<&str>,
        run: Option<RunId>,
        limit: usize,
    ) -> Result<Vec<RunSummary>, StoreError> {
        // A retried run goes back to running after it ended: it has ended only when its latest
        // state is final, and it started when it last went to running.
        let mut stmt = self.conn.prepare(
            "WITH ev AS (
                 SELECT run_id,
                        arg_max(state, event_seq) AS state,
                        arg_max(message, event_seq) AS message,
                        arg_max(ts, event_seq) FILTER (WHERE state = 'running') AS started_at,
                        arg_max(ts, event_seq) FILTER (WHERE state IN ('succeeded', 'failed', 'cancelled')) AS ended_at
                 FROM run_events GROUP BY run_id),
             last_attempt AS (
                 SELECT run_id, task, arg_max(state, attempt) AS state
                 FROM task_attempts GROUP BY run_id, task),
             failed AS (
                 SELECT run_id, string_agg(task, ',' ORDER BY task) AS tasks
                 FROM last_attempt WHERE state IN ('failed', 'timed_out') GROUP BY run_id)
             SELECT r.run_id, r.workflow, coalesce(ev.state, 'queued'),
                    epoch_us(r.created_at), epoch_us(ev.started_at),
                    CASE WHEN ev.state IN ('succeeded', 'failed', 'cancelled')
                         THEN epoch_us(ev.ended_at) END,
                    coalesce(failed.tasks, ''), ev.message, r.triggered_by
             FROM runs r LEFT JOIN ev USING (run_id) LEFT JOIN failed USING (run_id)
             WHERE (?::VARCHAR IS NULL OR r.workflow = ?::VARCHAR)
               AND (?::BIGINT IS NULL OR r.run_id = ?::BIGINT)
             ORDER BY r.run_id DESC
             LIMIT ?",
        )?;
        let id = run.map(|r| r.0 as i64);
        let limit = limit.max(1) as i64;
        let rows = stmt.query_map(duckdb::params![workflow, workflow, id, id, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<String>>(8)?,
            ))
        })?;
        let now = Utc::now();
        let mut out = Vec::new();
        for row in rows {
            let (id, workflow, state, created, started, ended, failed, message, triggered_by) =
                row?;
            let started_at = started.map(micros);
            let ended_at = ended.map(micros);
            let duration_secs = started_at.map(|s| {
                (ended_at.unwrap_or(now) - s)
                    .num_microseconds()
                    .unwrap_or(0) as f64
                    / 1e6
            });
            out.push(RunSummary {
                run_id: RunId(id as u64),
                workflow,
                state: state.parse().unwrap_or(RunState::Failed),
                created_at: micros(created),
                started_at,
                ended_at,
                duration_secs,
                failed_tasks: failed
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
                message,
                triggered_by,
            });
        }
        Ok(out)
    }

    /// The newest `limit` actions callers took (who did what to what), newest first.
    pub fn actions(
        &self,
        limit: usize,
    ) -> Result<Vec<crate::protocol::history::ActionRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT epoch_us(ts), caller, action, target FROM actions
             ORDER BY event_seq DESC LIMIT ?",
        )?;
        let rows = stmt.query_map([limit.max(1) as i64], |r| {
            Ok(crate::protocol::history::ActionRecord {
                at: micros(r.get::<_, i64>(0)?),
                by: r.get(1)?,
                action: r.get(2)?,
                target: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// What a retry needs of an ended run: its parameters, where each task stood, and the
    /// run's state; `None` when there is no such run.
    pub fn snapshot(
        &self,
        run: RunId,
    ) -> Result<Option<(super::UnfinishedRun, RunState)>, StoreError> {
        let Some(summary) = self.run(run)? else {
            return Ok(None);
        };
        let tasks = self
            .task_progress(run)?
            .into_iter()
            .map(|p| (p.task, (p.state, p.attempt)))
            .collect();
        let snapshot = super::UnfinishedRun {
            run_id: run,
            workflow: summary.workflow,
            params: self.params(run)?.into_iter().collect(),
            started: true,
            tasks,
            interrupted: Default::default(),
            dispatched: Default::default(),
            output_marks: Vec::new(),
        };
        Ok(Some((snapshot, summary.state)))
    }

    /// A run's effective parameters, in name order.
    pub fn params(&self, run: RunId) -> Result<Vec<(String, String)>, StoreError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT params FROM runs WHERE run_id = ?",
                [run.0 as i64],
                |r| r.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                duckdb::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        let map: std::collections::BTreeMap<String, String> = json
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default();
        Ok(map.into_iter().collect())
    }

    /// Where each task of a run stands: latest state and attempt, and when its latest attempt
    /// started and ended.
    pub fn task_progress(&self, run: RunId) -> Result<Vec<TaskProgress>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT task, arg_max(state, event_seq), arg_max(attempt, event_seq),
                    epoch_us(arg_max(ts, event_seq) FILTER (WHERE state = 'running')),
                    epoch_us(arg_max(ts, event_seq) FILTER (WHERE state IN
                        ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped')))
             FROM task_events WHERE run_id = ? GROUP BY task ORDER BY task",
        )?;
        let rows = stmt.query_map([run.0 as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (task, state, attempt, started, ended) = row?;
            let Ok(state) = state.parse::<TaskState>() else {
                continue;
            };
            let started_at = started.map(micros);
            // An end before the latest start belongs to an earlier attempt.
            let ended_at = ended
                .map(micros)
                .filter(|e| state.is_terminal() && started_at.is_none_or(|s| *e >= s));
            out.push(TaskProgress {
                task,
                state,
                attempt: attempt.max(0) as u32,
                started_at,
                ended_at,
            });
        }
        Ok(out)
    }

    /// True when the run exists.
    pub fn run_exists(&self, run: RunId) -> Result<bool, StoreError> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM runs WHERE run_id = ?",
            [run.0 as i64],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Every stored line of a run in output order, handed to `each` as it is read.
    pub fn logs(
        &self,
        run: RunId,
        filter: &LogFilter,
        each: impl FnMut(StoredLine) -> std::io::Result<()>,
    ) -> Result<usize, StoreError> {
        self.logs_range(run, filter, 0, i64::MAX, each)
    }

    /// How many lines a run has stored (that pass `filter`).
    pub fn log_count(&self, run: RunId, filter: &LogFilter) -> Result<usize, StoreError> {
        let task = filter.task.as_deref();
        let stream = filter.stream.map(Stream::as_str);
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM logs
             WHERE run_id = ? AND part = 0 AND (?::VARCHAR IS NULL OR task = ?::VARCHAR)
               AND (?::VARCHAR IS NULL OR stream = ?::VARCHAR)",
            duckdb::params![run.0 as i64, task, task, stream, stream],
            |r| r.get(0),
        )?;
        Ok(n.max(0) as usize)
    }

    /// One page of a run's lines: at most `limit` after skipping `offset`; `true` when more follow.
    pub fn logs_page(
        &self,
        run: RunId,
        filter: &LogFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<StoredLine>, bool), StoreError> {
        let mut lines = Vec::new();
        let limit = limit.min(i64::MAX as usize - 1);
        let (mut bytes, mut full) = (0, false);
        self.logs_range(run, filter, offset as i64, limit as i64 + 1, |l| {
            if bytes >= PAGE_BYTES {
                full = true;
                return Err(std::io::ErrorKind::StorageFull.into());
            }
            bytes += l.line.len();
            lines.push(l);
            Ok(())
        })?;
        let more = full || lines.len() > limit;
        lines.truncate(limit);
        Ok((lines, more))
    }

    fn logs_range(
        &self,
        run: RunId,
        filter: &LogFilter,
        offset: i64,
        limit: i64,
        mut each: impl FnMut(StoredLine) -> std::io::Result<()>,
    ) -> Result<usize, StoreError> {
        // Lines are chosen by their first piece, then read whole (see `PIECE_BYTES`): a
        // page of long lines costs DuckDB pieces, never a vector of whole 64 KiB lines.
        let mut stmt = self.conn.prepare(
            "WITH page AS (
                 SELECT event_seq, task, attempt, seq FROM logs
                 WHERE run_id = ? AND part = 0 AND (?::VARCHAR IS NULL OR task = ?::VARCHAR)
                   AND (?::VARCHAR IS NULL OR stream = ?::VARCHAR)
                 ORDER BY event_seq, task, attempt, seq
                 LIMIT ? OFFSET ?)
             SELECT l.task, l.attempt, l.stream, epoch_us(l.ts), l.line, l.seq, l.part
             FROM logs l JOIN page USING (event_seq, task, attempt, seq)
             WHERE l.run_id = ?
             ORDER BY l.event_seq, l.task, l.attempt, l.seq, l.part",
        )?;
        let task = filter.task.as_deref();
        let stream = filter.stream.map(Stream::as_str);
        let mut rows = stmt.query(duckdb::params![
            run.0 as i64,
            task,
            task,
            stream,
            stream,
            limit,
            offset,
            run.0 as i64
        ])?;
        let mut n = 0;
        let mut current: Option<StoredLine> = None;
        loop {
            let row = rows.next()?;
            if let (Some(r), Some(line)) = (row, current.as_mut())
                && r.get::<_, i32>(6)? > 0
            {
                line.line.push_str(&r.get::<_, String>(4)?);
                continue;
            }
            if let Some(line) = current.take() {
                n += 1;
                if each(line).is_err() {
                    // The reader went away (a closed pipe): stop quietly.
                    break;
                }
            }
            let Some(r) = row else { break };
            current = Some(StoredLine {
                task: r.get(0)?,
                attempt: r.get::<_, i64>(1)? as u32,
                stream: r.get::<_, String>(2)?.parse().unwrap_or(Stream::Stdout),
                at: micros(r.get(3)?),
                line: r.get(4)?,
                seq: r.get::<_, i64>(5)?.max(0) as u64,
            });
        }
        Ok(n)
    }

    /// Every finished attempt of a run, by task and attempt.
    pub fn attempts(&self, run: RunId) -> Result<Vec<AttemptRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT task, attempt, state, epoch_us(started_at), epoch_us(ended_at), exit_code, signal, message
             FROM task_attempts WHERE run_id = ? ORDER BY event_seq, task, attempt",
        )?;
        let rows = stmt.query_map([run.0 as i64], |r| {
            Ok(AttemptRow {
                task: r.get(0)?,
                attempt: r.get::<_, i64>(1)? as u32,
                state: r.get::<_, String>(2)?.parse().map_err(|e: String| {
                    duckdb::Error::FromSqlConversionFailure(2, duckdb::types::Type::Text, e.into())
                })?,
                started_at: micros(r.get(3)?),
                ended_at: micros(r.get(4)?),
                exit_code: r.get(5)?,
                signal: r.get(6)?,
                message: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Final state of every task of a run (the last recorded event per task).
    pub fn task_states(&self, run: RunId) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT task, arg_max(state, event_seq) FROM task_events WHERE run_id = ? GROUP BY task ORDER BY task",
        )?;
        let rows = stmt.query_map([run.0 as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

/// Rows of `service_logs` (path, start_no, stream, seq, micros, line, part) as whole lines,
/// up to the line that reaches `page_bytes` of text.
fn service_lines_of(
    mut rows: duckdb::Rows<'_>,
    page_bytes: usize,
) -> Result<Vec<crate::protocol::service::ServiceLine>, StoreError> {
    let mut out: Vec<crate::protocol::service::ServiceLine> = Vec::new();
    let mut bytes = 0;
    while let Some(r) = rows.next()? {
        if r.get::<_, i32>(6)? > 0
            && let Some(line) = out.last_mut()
        {
            let piece = r.get::<_, String>(5)?;
            bytes += piece.len();
            line.text.push_str(&piece);
            continue;
        }
        if bytes >= page_bytes {
            break;
        }
        let stream: String = r.get(2)?;
        out.push(crate::protocol::service::ServiceLine {
            path: r.get(0)?,
            start_no: r.get::<_, i64>(1)?.max(0) as u64,
            stream: if stream == "stderr" {
                crate::protocol::Stream::Stderr
            } else {
                crate::protocol::Stream::Stdout
            },
            at: micros(r.get(4)?),
            text: r.get(5)?,
        });
        bytes += out.last().map_or(0, |l| l.text.len());
    }
    Ok(out)
}
