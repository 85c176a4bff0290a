//! Monitors in the history file: interned names, compact raw results (written with the
//! Appender in batches, at most 16 bytes a result on disk), per-minute rollups, states,
//! incidents and intervention attempts; the housekeeping that rolls results up and deletes
//! raw ones past their retention in bounded steps; and the read side (recovery, incidents,
//! results, response-time series).
//!
//! Everything reaches the writer as a [`MonitorWrite`] through
//! [`StoreSender::send_monitor`](super::StoreSender::send_monitor). States, incidents and
//! attempts are insert-only rows numbered with the event sequence; readers take the latest.

use std::time::Duration;

use chrono::{DateTime, Utc};
use duckdb::{Appender, Connection, params};

use super::StoreError;
use super::query::Reader;
use crate::protocol::monitor::{
    Attempt, Cause, Incident, IncidentId, MonitorId, MonitorState, MonitorStatus, Outcome,
    ResultRollup, StoredResult, Trigger, Verdict,
};

/// How long raw results are kept unless told otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the writer does a housekeeping step while results arrive.
pub(super) const HOUSEKEEP_EVERY: Duration = Duration::from_secs(30);
/// Most minutes of results one housekeeping step rolls up, and most it deletes: a step's
/// cost is bounded by what a few minutes hold, so the writer is never held long.
const STEP_MINUTES: i64 = 5;
/// Minutes younger than this are not rolled up yet: results of a minute may still arrive
/// (a batch in flight, a slow probe).
const ROLLUP_DELAY_MS: i64 = 2 * 60_000;
const MINUTE_MS: i64 = 60_000;

/// Something for the store to keep about monitors.
#[derive(Debug, Clone, PartialEq)]
pub enum MonitorWrite {
    /// Interned names: each id is sent once, when it is first given out.
    Names(Vec<(MonitorId, String)>),
    /// A batch of raw results.
    Results(Vec<(MonitorId, StoredResult)>),
    /// A monitor's status changed (or was paused or resumed).
    State {
        /// The monitor.
        monitor: MonitorId,
        /// Its new status.
        status: MonitorStatus,
        /// Why, while not healthy.
        cause: Option<Cause>,
    },
    /// An incident opened.
    IncidentOpened {
        /// Its number.
        incident: IncidentId,
        /// The monitor.
        monitor: MonitorId,
        /// When.
        at: DateTime<Utc>,
        /// The first failing condition and what it saw.
        cause: Cause,
    },
    /// An incident closed.
    IncidentClosed {
        /// Its number.
        incident: IncidentId,
        /// The monitor.
        monitor: MonitorId,
        /// When.
        at: DateTime<Utc>,
    },
    /// An intervention attempt, or a later record of it (its outcome): the latest record of
    /// a number is the attempt's.
    Attempt {
        /// The incident it belongs to (`None`: a degraded stretch without one).
        incident: Option<IncidentId>,
        /// The monitor.
        monitor: MonitorId,
        /// Its number within the monitor's episode.
        no: u32,
        /// The attempt.
        attempt: Attempt,
    },
    /// Keep raw results this long from now on (the default is [`DEFAULT_RETENTION`]).
    Retention(Duration),
    /// Do a housekeeping step now, as if the time were `now` (tests; an operator's command).
    Housekeep {
        /// The time to judge ages by.
        now: DateTime<Utc>,
    },
}

impl MonitorWrite {
    /// What it costs in memory while held, roughly.
    pub(super) fn approx_bytes(&self) -> usize {
        match self {
            MonitorWrite::Names(names) => {
                names.iter().map(|(_, n)| n.len() + 24).sum::<usize>() + 64
            }
            MonitorWrite::Results(rows) => rows.len() * 32 + 64,
            _ => 256,
        }
    }
}

fn ts(at: DateTime<Utc>) -> duckdb::types::Value {
    duckdb::types::Value::Timestamp(duckdb::types::TimeUnit::Microsecond, at.timestamp_micros())
}

fn micros(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(v).unwrap_or_default()
}

fn millis(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

fn trigger_str(t: Trigger) -> &'static str {
    match t {
        Trigger::Unhealthy => "unhealthy",
        Trigger::Degraded => "degraded",
        Trigger::Recovered => "recovered",
    }
}

fn trigger_of(s: &str) -> Trigger {
    match s {
        "degraded" => Trigger::Degraded,
        "recovered" => Trigger::Recovered,
        _ => Trigger::Unhealthy,
    }
}

fn outcome_parts(o: &Outcome) -> (&'static str, Option<&str>) {
    match o {
        Outcome::Started => ("started", None),
        Outcome::Succeeded => ("succeeded", None),
        Outcome::Failed(why) => ("failed", Some(why)),
        Outcome::Skipped(why) => ("skipped", Some(why)),
    }
}

/// What an intervention attempt that a previous process started and never saw end is
/// recorded as.
pub const INTERRUPTED_ATTEMPT: &str = "interrupted: the principal stopped before this attempt ended (it counts as one of the \
     incident's attempts)";

/// Records every intervention attempt whose latest record is `started` as failed with
/// [`INTERRUPTED_ATTEMPT`]: run when the file is opened, before anything can be in flight, so
/// no incident shows an attempt of a dead process as running forever. Returns how many.
pub(super) fn seal_interrupted_attempts(conn: &duckdb::Connection) -> Result<usize, StoreError> {
    let seq = super::schema::next_event_seq(conn)? as i64;
    let sealed = conn.execute(
        "INSERT INTO incident_attempts
         SELECT incident_id, monitor_id, no, trigger, action, 'failed', ?, ts,
                ? + row_number() OVER (ORDER BY monitor_id, no)
         FROM (SELECT incident_id, monitor_id, no,
                      arg_max(trigger, event_seq) AS trigger, arg_max(action, event_seq) AS action,
                      arg_max(outcome, event_seq) AS last, max(ts) AS ts
               FROM incident_attempts GROUP BY incident_id, monitor_id, no)
         WHERE last = 'started'",
        params![INTERRUPTED_ATTEMPT, seq - 1],
    )?;
    if sealed > 0 {
        tracing::info!(
            "{sealed} intervention attempt(s) interrupted by the last stop recorded as failed"
        );
    }
    Ok(sealed)
}

fn outcome_of(kind: &str, detail: Option<String>) -> Outcome {
    let detail = detail.unwrap_or_default();
    match kind {
        "started" => Outcome::Started,
        "succeeded" => Outcome::Succeeded,
        "skipped" => Outcome::Skipped(detail),
        _ => Outcome::Failed(detail),
    }
}

fn state_of(s: &str) -> MonitorState {
    s.parse().unwrap_or(MonitorState::Unknown)
}

/// The writer's appenders for monitor tables, created on first use.
#[derive(Default)]
pub(super) struct Appenders<'c> {
    names: Option<Appender<'c>>,
    results: Option<Appender<'c>>,
    states: Option<Appender<'c>>,
    incidents: Option<Appender<'c>>,
    attempts: Option<Appender<'c>>,
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

impl<'c> Appenders<'c> {
    /// Appends `w` (numbered `seq`) inside the writer's transaction. Retention and
    /// housekeeping requests are the writer's own business and never get here.
    pub(super) fn append(
        &mut self,
        conn: &'c Connection,
        w: &MonitorWrite,
        seq: i64,
    ) -> duckdb::Result<()> {
        match w {
            MonitorWrite::Names(names) => {
                let app = appender(&mut self.names, conn, "monitor_names")?;
                for (id, name) in names {
                    app.append_row(params![id.0, name.as_str()])?;
                }
            }
            MonitorWrite::Results(rows) => {
                let app = appender(&mut self.results, conn, "monitor_results")?;
                for (id, r) in rows {
                    app.append_row(params![
                        id.0,
                        r.at.timestamp_millis(),
                        r.response_ms,
                        r.verdict.code()
                    ])?;
                }
            }
            MonitorWrite::State {
                monitor,
                status,
                cause,
            } => {
                appender(&mut self.states, conn, "monitor_states")?.append_row(params![
                    monitor.0,
                    status.state.as_str(),
                    status.health.as_str(),
                    status.flapping,
                    status.paused,
                    ts(status.since),
                    cause.as_ref().map(|c| c.condition.as_str()),
                    cause.as_ref().map(|c| c.seen.as_str()),
                    seq
                ])?;
            }
            MonitorWrite::IncidentOpened {
                incident,
                monitor,
                at,
                cause,
            } => {
                appender(&mut self.incidents, conn, "incidents")?.append_row(params![
                    incident.0 as i64,
                    monitor.0,
                    "opened",
                    ts(*at),
                    cause.condition.as_str(),
                    cause.seen.as_str(),
                    seq
                ])?;
            }
            MonitorWrite::IncidentClosed {
                incident,
                monitor,
                at,
            } => {
                appender(&mut self.incidents, conn, "incidents")?.append_row(params![
                    incident.0 as i64,
                    monitor.0,
                    "closed",
                    ts(*at),
                    None::<&str>,
                    None::<&str>,
                    seq
                ])?;
            }
            MonitorWrite::Attempt {
                incident,
                monitor,
                no,
                attempt,
            } => {
                let (outcome, detail) = outcome_parts(&attempt.outcome);
                appender(&mut self.attempts, conn, "incident_attempts")?.append_row(params![
                    incident.map(|i| i.0 as i64),
                    monitor.0,
                    *no,
                    trigger_str(attempt.trigger),
                    attempt.action.as_str(),
                    outcome,
                    detail,
                    ts(attempt.at),
                    seq
                ])?;
            }
            MonitorWrite::Retention(_) | MonitorWrite::Housekeep { .. } => {}
        }
        Ok(())
    }

    /// Flushes every appender used (end of a batch).
    pub(super) fn flush(&mut self) -> duckdb::Result<()> {
        for app in [
            &mut self.names,
            &mut self.results,
            &mut self.states,
            &mut self.incidents,
            &mut self.attempts,
        ]
        .into_iter()
        .flatten()
        {
            app.flush()?;
        }
        Ok(())
    }
}

/// Where housekeeping stands: what is rolled up and what is deleted, in Unix ms.
#[derive(Debug, Clone, Default)]
pub(super) struct Housekeeping {
    /// Raw results are kept this long.
    pub retention: Option<Duration>,
    /// Results before this minute are rolled up (`None`: not read from the file yet).
    rolled_upto: Option<i64>,
    /// Results before this are deleted (`None`: not read yet).
    deleted_upto: Option<i64>,
}

/// What one housekeeping step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HousekeepReport {
    /// Rollup rows written.
    pub rolled: usize,
    /// Raw results deleted.
    pub deleted: usize,
    /// More is left to do (the next step should come soon).
    pub behind: bool,
}

impl Housekeeping {
    /// One bounded step at `now`: rolls up at most [`STEP_MINUTES`] complete minutes, then
    /// deletes at most that many minutes of results older than the retention, each in its own
    /// short transaction.
    pub(super) fn step(
        &mut self,
        conn: &Connection,
        now: DateTime<Utc>,
    ) -> duckdb::Result<HousekeepReport> {
        let mut report = HousekeepReport::default();
        let now_ms = now.timestamp_millis();
        // The first result at or after `lower`: empty stretches are skipped, and row groups
        // wholly before `lower` are pruned by their zone maps.
        let first_from = |lower: i64| -> duckdb::Result<Option<i64>> {
            conn.query_row(
                "SELECT min(at_ms) FROM monitor_results WHERE at_ms >= ?",
                [lower],
                |r| r.get(0),
            )
        };
        // Rollups.
        let lower = match self.rolled_upto {
            Some(m) => m,
            None => conn
                .query_row("SELECT max(minute_ms) FROM monitor_rollups", [], |r| {
                    r.get::<_, Option<i64>>(0)
                })?
                .map_or(i64::MIN, |m| m + MINUTE_MS),
        };
        let ready = (now_ms - ROLLUP_DELAY_MS).div_euclid(MINUTE_MS) * MINUTE_MS;
        if let Some(first) = first_from(lower)? {
            let from = (first.div_euclid(MINUTE_MS) * MINUTE_MS).max(lower);
            let to = ready.min(from + STEP_MINUTES * MINUTE_MS);
            if to > from {
                conn.execute_batch("BEGIN TRANSACTION")?;
                let n = conn.execute(
                    "INSERT INTO monitor_rollups
                     SELECT monitor_id, (at_ms // 60000) * 60000 AS minute_ms, count(*),
                            count(*) FILTER (WHERE verdict = 2), min(response_ms),
                            round(avg(response_ms)), quantile_disc(response_ms, 0.95),
                            max(response_ms)
                     FROM monitor_results WHERE at_ms >= ? AND at_ms < ?
                     GROUP BY monitor_id, minute_ms",
                    params![from, to],
                );
                match n.and_then(|n| conn.execute_batch("COMMIT").map(|()| n)) {
                    Ok(n) => report.rolled = n,
                    Err(e) => {
                        let _ = conn.execute_batch("ROLLBACK");
                        return Err(e);
                    }
                }
                self.rolled_upto = Some(to);
                report.behind |= to < ready;
            } else {
                self.rolled_upto = Some(from);
            }
        } else if lower != i64::MIN {
            self.rolled_upto = Some(lower);
        }
        // Retention: never delete what is not rolled up yet.
        let retention = self.retention.unwrap_or(DEFAULT_RETENTION);
        let keep_from = now_ms - retention.as_millis().min(i64::MAX as u128) as i64;
        let cutoff = keep_from.min(self.rolled_upto.unwrap_or(i64::MIN));
        if let Some(from) = first_from(self.deleted_upto.unwrap_or(i64::MIN))? {
            let to = cutoff.min(from.saturating_add(STEP_MINUTES * MINUTE_MS));
            if to > from {
                report.deleted =
                    conn.execute("DELETE FROM monitor_results WHERE at_ms < ?", params![to])?;
                self.deleted_upto = Some(to);
                report.behind |= to < cutoff;
            }
        }
        Ok(report)
    }
}

/// What a restarted principal needs to continue its monitors.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorRecovery {
    /// Every interned name.
    pub names: Vec<(MonitorId, String)>,
    /// The last status of every monitor that has one (pauses included).
    pub states: Vec<(MonitorId, MonitorStatus)>,
    /// Incidents still open, each attempt once with its latest record.
    pub open: Vec<(MonitorId, Incident)>,
    /// The number the next incident gets.
    pub next_incident: IncidentId,
}

impl MonitorRecovery {
    /// The monitors an operator paused.
    pub fn paused(&self) -> impl Iterator<Item = MonitorId> + '_ {
        self.states
            .iter()
            .filter(|(_, s)| s.paused)
            .map(|(id, _)| *id)
    }
}

/// One point of a response-time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesPoint {
    /// The bucket's start.
    pub at: DateTime<Utc>,
    /// Results in it.
    pub count: u32,
    /// Of which failed.
    pub failures: u32,
    /// Mean response, ms.
    pub avg_ms: u32,
    /// Slowest response, ms.
    pub max_ms: u32,
}

impl Reader {
    /// Monitor names, states, open incidents and the next incident number.
    pub fn monitor_recovery(&self) -> Result<MonitorRecovery, StoreError> {
        let conn = self.connection();
        let mut stmt = conn.prepare(
            "SELECT monitor_id, any_value(name) FROM monitor_names GROUP BY monitor_id
             ORDER BY monitor_id",
        )?;
        let names = stmt
            .query_map([], |r| Ok((MonitorId(r.get(0)?), r.get::<_, String>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut stmt = conn.prepare(
            "SELECT monitor_id, arg_max(state, event_seq), arg_max(health, event_seq),
                    arg_max(flapping, event_seq), arg_max(paused, event_seq),
                    epoch_us(arg_max(since, event_seq))
             FROM monitor_states GROUP BY monitor_id ORDER BY monitor_id",
        )?;
        let states = stmt
            .query_map([], |r| {
                Ok((
                    MonitorId(r.get(0)?),
                    MonitorStatus {
                        state: state_of(&r.get::<_, String>(1)?),
                        health: state_of(&r.get::<_, String>(2)?),
                        flapping: r.get(3)?,
                        paused: r.get(4)?,
                        since: micros(r.get(5)?),
                    },
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let open = self
            .incident_list(true, usize::MAX)?
            .into_iter()
            .collect::<Vec<_>>();
        let next: i64 = conn.query_row(
            "SELECT coalesce(max(incident_id), 0) + 1 FROM incidents",
            [],
            |r| r.get(0),
        )?;
        Ok(MonitorRecovery {
            names,
            states,
            open,
            next_incident: IncidentId(next.max(1) as u64),
        })
    }

    /// Incidents, open ones first, then the most recently opened; at most `limit`.
    pub fn incidents(&self, open_only: bool, limit: usize) -> Result<Vec<Incident>, StoreError> {
        Ok(self
            .incident_list(open_only, limit)?
            .into_iter()
            .map(|(_, i)| i)
            .collect())
    }

    fn incident_list(
        &self,
        open_only: bool,
        limit: usize,
    ) -> Result<Vec<(MonitorId, Incident)>, StoreError> {
        let conn = self.connection();
        let mut stmt = conn.prepare(
            "WITH o AS (SELECT incident_id, monitor_id, ts, cause_condition, cause_seen
                        FROM incidents WHERE kind = 'opened'),
                  c AS (SELECT incident_id, max(ts) AS closed FROM incidents
                        WHERE kind = 'closed' GROUP BY incident_id),
                  n AS (SELECT monitor_id, any_value(name) AS name FROM monitor_names
                        GROUP BY monitor_id)
             SELECT o.incident_id, o.monitor_id, coalesce(n.name, '#' || CAST(o.monitor_id AS VARCHAR)),
                    epoch_us(o.ts), epoch_us(c.closed), o.cause_condition, o.cause_seen
             FROM o LEFT JOIN c USING (incident_id) LEFT JOIN n USING (monitor_id)
             WHERE NOT ? OR c.closed IS NULL
             ORDER BY c.closed IS NOT NULL, o.ts DESC, o.incident_id DESC
             LIMIT ?",
        )?;
        let mut out = stmt
            .query_map(params![open_only, limit.min(1_000_000) as i64], |r| {
                Ok((
                    MonitorId(r.get(1)?),
                    Incident {
                        id: IncidentId(r.get::<_, i64>(0)?.max(0) as u64),
                        monitor: r.get(2)?,
                        opened: micros(r.get(3)?),
                        closed: r.get::<_, Option<i64>>(4)?.map(micros),
                        cause: Cause {
                            condition: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                            seen: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                        },
                        attempts: Vec::new(),
                    },
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        if out.is_empty() {
            return Ok(out);
        }
        // Every attempt in one query, not one query per incident: after a restart with
        // 100,000 open incidents, one query each took minutes before the monitors came back.
        let at: std::collections::HashMap<u64, usize> = out
            .iter()
            .enumerate()
            .map(|(i, (_, incident))| (incident.id.0, i))
            .collect();
        let mut stmt = conn.prepare(
            "SELECT incident_id, no, arg_max(trigger, event_seq), arg_max(action, event_seq),
                    arg_max(outcome, event_seq), arg_max(detail, event_seq),
                    epoch_us(min(ts))
             FROM incident_attempts WHERE incident_id IS NOT NULL
             GROUP BY incident_id, no ORDER BY incident_id, no",
        )?;
        let attempts = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?.max(0) as u64,
                    Attempt {
                        trigger: trigger_of(&r.get::<_, String>(2)?),
                        action: r.get(3)?,
                        outcome: outcome_of(&r.get::<_, String>(4)?, r.get(5)?),
                        at: micros(r.get(6)?),
                    },
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for (id, attempt) in attempts {
            if let Some(&i) = at.get(&id) {
                out[i].1.attempts.push(attempt);
            }
        }
        Ok(out)
    }

    /// The newest `limit` raw results of `monitor`, oldest first.
    pub fn monitor_results(
        &self,
        monitor: MonitorId,
        limit: usize,
    ) -> Result<Vec<StoredResult>, StoreError> {
        let mut stmt = self.connection().prepare(
            "SELECT * FROM (SELECT at_ms, response_ms, verdict FROM monitor_results
                            WHERE monitor_id = ? ORDER BY at_ms DESC LIMIT ?)
             ORDER BY at_ms",
        )?;
        let rows = stmt.query_map(params![monitor.0, limit.min(1_000_000) as i64], |r| {
            Ok(StoredResult {
                at: millis(r.get(0)?),
                response_ms: r.get(1)?,
                verdict: Verdict::from_code(r.get(2)?).unwrap_or(Verdict::Failed),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Response times of `monitor` in `[from, to)` in buckets of `step` (at least a second),
    /// for a sparkline: from raw results while they are kept, from the rollups before that
    /// (at their minute's resolution). Empty buckets are left out.
    pub fn response_series(
        &self,
        monitor: MonitorId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        let step_ms = (step.as_millis() as i64).max(1000);
        let (from_ms, to_ms) = (from.timestamp_millis(), to.timestamp_millis());
        let mut stmt = self.connection().prepare(
            "WITH raw AS (
                 SELECT (at_ms // $1) * $1 AS b, count(*)::UINTEGER AS n,
                        (count(*) FILTER (WHERE verdict = 2))::UINTEGER AS f,
                        round(avg(response_ms))::UINTEGER AS a, max(response_ms) AS m
                 FROM monitor_results WHERE monitor_id = $2 AND at_ms >= $3 AND at_ms < $4
                 GROUP BY b),
                  first_raw AS (SELECT coalesce(min(b), $4) AS t FROM raw),
                  old AS (
                 SELECT (minute_ms // $1) * $1 AS b, sum(count)::UINTEGER AS n,
                        sum(failures)::UINTEGER AS f,
                        round(sum(avg_ms::BIGINT * count) / sum(count))::UINTEGER AS a,
                        max(max_ms) AS m
                 FROM monitor_rollups, first_raw
                 WHERE monitor_id = $2 AND minute_ms >= $3 AND minute_ms < least($4, t)
                 GROUP BY b)
             SELECT b, n, f, a, m FROM old UNION ALL SELECT b, n, f, a, m FROM raw
             ORDER BY b",
        )?;
        let rows = stmt.query_map(params![step_ms, monitor.0, from_ms, to_ms], |r| {
            Ok(SeriesPoint {
                at: millis(r.get(0)?),
                count: r.get(1)?,
                failures: r.get(2)?,
                avg_ms: r.get(3)?,
                max_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Per-minute rollups of `monitor` in `[from, to)`, oldest first.
    pub fn monitor_rollups(
        &self,
        monitor: MonitorId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ResultRollup>, StoreError> {
        let mut stmt = self.connection().prepare(
            "SELECT minute_ms, count, failures, min_ms, avg_ms, p95_ms, max_ms
             FROM monitor_rollups WHERE monitor_id = ? AND minute_ms >= ? AND minute_ms < ?
             ORDER BY minute_ms",
        )?;
        let rows = stmt.query_map(
            params![monitor.0, from.timestamp_millis(), to.timestamp_millis()],
            |r| {
                Ok(ResultRollup {
                    minute: millis(r.get(0)?),
                    count: r.get(1)?,
                    failures: r.get(2)?,
                    min_ms: r.get(3)?,
                    avg_ms: r.get(4)?,
                    p95_ms: r.get(5)?,
                    max_ms: r.get(6)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

#[cfg(test)]
mod tests;
