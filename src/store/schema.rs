//! Table definitions and migrations. The version table says which migrations ran.

use duckdb::Connection;

use super::StoreError;

/// Schema version this build writes.
pub const CURRENT_VERSION: i32 = 9;

/// Migrations in order; entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: run history, task attempts, state events, log lines.
    r#"
    CREATE TABLE runs (
        run_id     BIGINT PRIMARY KEY,
        workflow   VARCHAR NOT NULL,
        params     VARCHAR NOT NULL,   -- JSON object of effective parameters
        trigger    VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL
    );
    CREATE TABLE run_events (
        run_id  BIGINT NOT NULL,
        state   VARCHAR NOT NULL,
        ts      TIMESTAMP NOT NULL,
        message VARCHAR
    );
    CREATE TABLE task_events (
        run_id  BIGINT NOT NULL,
        task    VARCHAR NOT NULL,
        attempt INTEGER NOT NULL,
        state   VARCHAR NOT NULL,
        ts      TIMESTAMP NOT NULL,
        message VARCHAR
    );
    CREATE TABLE task_attempts (
        run_id     BIGINT NOT NULL,
        task       VARCHAR NOT NULL,
        attempt    INTEGER NOT NULL,
        state      VARCHAR NOT NULL,
        started_at TIMESTAMP NOT NULL,
        ended_at   TIMESTAMP NOT NULL,
        exit_code  INTEGER,
        signal     INTEGER,
        message    VARCHAR
    );
    CREATE TABLE logs (
        run_id  BIGINT NOT NULL,
        task    VARCHAR NOT NULL,
        attempt INTEGER NOT NULL,
        stream  VARCHAR NOT NULL,
        seq     BIGINT NOT NULL,
        ts      TIMESTAMP NOT NULL,
        line    VARCHAR NOT NULL
    );
    "#,
    // 1 -> 2: the fire time a scheduled run is for, and pause/resume of schedules.
    r#"
    ALTER TABLE runs ADD COLUMN scheduled_for TIMESTAMP;
    CREATE TABLE workflow_state (
        workflow VARCHAR NOT NULL,
        paused   BOOLEAN NOT NULL,
        ts       TIMESTAMP NOT NULL
    );
    "#,
    // 2 -> 3: a persistent, strictly increasing event sequence. Order comes from it, never
    // from timestamps (a wall clock stepped back across a restart must not reorder history).
    // Rows from older files are numbered in their timestamp order.
    r#"
    ALTER TABLE runs ADD COLUMN event_seq BIGINT;
    ALTER TABLE run_events ADD COLUMN event_seq BIGINT;
    ALTER TABLE task_events ADD COLUMN event_seq BIGINT;
    ALTER TABLE task_attempts ADD COLUMN event_seq BIGINT;
    ALTER TABLE workflow_state ADD COLUMN event_seq BIGINT;
    ALTER TABLE logs ADD COLUMN event_seq BIGINT;
    UPDATE run_events SET event_seq = n.n FROM
        (SELECT rowid AS rid, row_number() OVER (ORDER BY ts, rowid) AS n FROM run_events) n
        WHERE run_events.rowid = n.rid;
    UPDATE task_events SET event_seq = n.n FROM
        (SELECT rowid AS rid, row_number() OVER (ORDER BY ts, rowid) AS n FROM task_events) n
        WHERE task_events.rowid = n.rid;
    UPDATE task_attempts SET event_seq = n.n FROM
        (SELECT rowid AS rid, row_number() OVER (ORDER BY ended_at, rowid) AS n FROM task_attempts) n
        WHERE task_attempts.rowid = n.rid;
    UPDATE workflow_state SET event_seq = n.n FROM
        (SELECT rowid AS rid, row_number() OVER (ORDER BY ts, rowid) AS n FROM workflow_state) n
        WHERE workflow_state.rowid = n.rid;
    UPDATE logs SET event_seq = n.n FROM
        (SELECT rowid AS rid, row_number() OVER (ORDER BY ts, task, attempt, seq, rowid) AS n FROM logs) n
        WHERE logs.rowid = n.rid;
    "#,
    // 3 -> 4: what happened to agents (joined, lost, cordoned, late results).
    r#"
    CREATE TABLE agent_events (
        agent     VARCHAR NOT NULL,
        kind      VARCHAR NOT NULL,
        state     VARCHAR NOT NULL,
        message   VARCHAR NOT NULL,
        ts        TIMESTAMP NOT NULL,
        event_seq BIGINT
    );
    "#,
    // 4 -> 5: supervised services: their lifecycle (starts, exits, restarts, holds) and output.
    r#"
    CREATE TABLE service_events (
        path      VARCHAR NOT NULL,
        start_no  BIGINT NOT NULL,
        kind      VARCHAR NOT NULL,
        pid       BIGINT,
        exit_code INTEGER,
        signal    INTEGER,
        message   VARCHAR,
        ts        TIMESTAMP NOT NULL,
        event_seq BIGINT
    );
    CREATE TABLE service_logs (
        path      VARCHAR NOT NULL,
        start_no  BIGINT NOT NULL,
        stream    VARCHAR NOT NULL,
        seq       BIGINT NOT NULL,
        ts        TIMESTAMP NOT NULL,
        line      VARCHAR NOT NULL,
        event_seq BIGINT
    );
    "#,
    // 5 -> 6: a line longer than a row's piece is stored as several rows, `part` 0, 1, ...
    // (see `PIECE_BYTES`); the lines stored before are one part each.
    r#"
    ALTER TABLE logs ADD COLUMN part INTEGER DEFAULT 0;
    ALTER TABLE service_logs ADD COLUMN part INTEGER DEFAULT 0;
    "#,
    // 6 -> 7: which agent (and which start of its process) each task attempt was handed to,
    // stored before the agent is told: a restarted principal adopts what agents still hold.
    r#"
    CREATE TABLE dispatches (
        run_id    BIGINT NOT NULL,
        task      VARCHAR NOT NULL,
        attempt   INTEGER NOT NULL,
        agent     VARCHAR NOT NULL,
        instance  BIGINT NOT NULL,
        ts        TIMESTAMP NOT NULL,
        event_seq BIGINT
    );
    "#,
    // 7 -> 8: who did what. `runs.triggered_by` is the CURVE key's name (or `local`,
    // `schedule`) of whoever started a run; `actions` lists every change a caller made
    // (trigger, cancel, retry, edit, pause, resume, cordon, drain, service control).
    r#"
    ALTER TABLE runs ADD COLUMN triggered_by VARCHAR;
    CREATE TABLE actions (
        ts        TIMESTAMP NOT NULL,
        caller    VARCHAR NOT NULL,
        action    VARCHAR NOT NULL,
        target    VARCHAR NOT NULL,
        event_seq BIGINT
    );
    "#,
    // 8 -> 9: monitors. Names are interned once (`monitor_id` is the health machine's index);
    // raw results are four narrow columns (at most 16 bytes a result on disk, measured by
    // `store::monitor::tests`), rolled up per minute and deleted past their retention;
    // states, incidents and attempts are insert-only rows, the latest by `event_seq` wins.
    r#"
    CREATE TABLE monitor_names (
        monitor_id UINTEGER NOT NULL,
        name       VARCHAR NOT NULL
    );
    CREATE TABLE monitor_results (
        monitor_id  UINTEGER NOT NULL,
        at_ms       BIGINT NOT NULL,      -- Unix time, ms
        response_ms UINTEGER NOT NULL,
        verdict     UTINYINT NOT NULL     -- 0 ok, 1 degraded, 2 failed
    );
    CREATE TABLE monitor_rollups (
        monitor_id UINTEGER NOT NULL,
        minute_ms  BIGINT NOT NULL,
        count      UINTEGER NOT NULL,
        failures   UINTEGER NOT NULL,
        min_ms     UINTEGER NOT NULL,
        avg_ms     UINTEGER NOT NULL,
        p95_ms     UINTEGER NOT NULL,
        max_ms     UINTEGER NOT NULL
    );
    CREATE TABLE monitor_states (
        monitor_id      UINTEGER NOT NULL,
        state           VARCHAR NOT NULL,
        health          VARCHAR NOT NULL,
        flapping        BOOLEAN NOT NULL,
        paused          BOOLEAN NOT NULL,
        since           TIMESTAMP NOT NULL,
        cause_condition VARCHAR,
        cause_seen      VARCHAR,
        event_seq       BIGINT
    );
    CREATE TABLE incidents (
        incident_id     BIGINT NOT NULL,
        monitor_id      UINTEGER NOT NULL,
        kind            VARCHAR NOT NULL,  -- opened | closed
        ts              TIMESTAMP NOT NULL,
        cause_condition VARCHAR,
        cause_seen      VARCHAR,
        event_seq       BIGINT
    );
    CREATE TABLE incident_attempts (
        incident_id BIGINT,
        monitor_id  UINTEGER NOT NULL,
        no          UINTEGER NOT NULL,
        trigger     VARCHAR NOT NULL,
        action      VARCHAR NOT NULL,
        outcome     VARCHAR NOT NULL,
        detail      VARCHAR,
        ts          TIMESTAMP NOT NULL,
        event_seq   BIGINT
    );
    "#,
];

/// The next unused event sequence number in the file.
pub fn next_event_seq(conn: &Connection) -> duckdb::Result<u64> {
    let max: i64 = conn.query_row(
        "SELECT coalesce(max(m), 0) FROM (
             SELECT max(event_seq) AS m FROM runs UNION ALL
             SELECT max(event_seq) FROM run_events UNION ALL
             SELECT max(event_seq) FROM task_events UNION ALL
             SELECT max(event_seq) FROM task_attempts UNION ALL
             SELECT max(event_seq) FROM workflow_state UNION ALL
             SELECT max(event_seq) FROM agent_events UNION ALL
             SELECT max(event_seq) FROM service_events UNION ALL
             SELECT max(event_seq) FROM service_logs UNION ALL
             SELECT max(event_seq) FROM dispatches UNION ALL
             SELECT max(event_seq) FROM actions UNION ALL
             SELECT max(event_seq) FROM monitor_states UNION ALL
             SELECT max(event_seq) FROM incidents UNION ALL
             SELECT max(event_seq) FROM incident_attempts UNION ALL
             SELECT max(event_seq) FROM logs)",
        [],
        |r| r.get(0),
    )?;
    Ok(max.max(0) as u64 + 1)
}

/// The event sequence numbers from `first` to `last` that the file has, in any table.
pub fn stored_event_seqs(
    conn: &Connection,
    first: u64,
    last: u64,
) -> duckdb::Result<std::collections::HashSet<u64>> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT event_seq FROM (
             SELECT event_seq FROM runs UNION ALL
             SELECT event_seq FROM run_events UNION ALL
             SELECT event_seq FROM task_events UNION ALL
             SELECT event_seq FROM task_attempts UNION ALL
             SELECT event_seq FROM workflow_state UNION ALL
             SELECT event_seq FROM agent_events UNION ALL
             SELECT event_seq FROM service_events UNION ALL
             SELECT event_seq FROM service_logs UNION ALL
             SELECT event_seq FROM dispatches UNION ALL
             SELECT event_seq FROM actions UNION ALL
             SELECT event_seq FROM monitor_states UNION ALL
             SELECT event_seq FROM incidents UNION ALL
             SELECT event_seq FROM incident_attempts UNION ALL
             SELECT event_seq FROM logs)
         WHERE event_seq BETWEEN ? AND ?",
    )?;
    let rows = stmt.query_map([first as i64, last as i64], |r| r.get::<_, i64>(0))?;
    rows.map(|r| r.map(|s| s.max(0) as u64)).collect()
}

/// The schema version recorded in the file (0 for a new file).
pub fn version(conn: &Connection) -> Result<i32, StoreError> {
    let exists: i64 = conn.query_row(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'",
        [],
        |r| r.get(0),
    )?;
    if exists == 0 {
        return Ok(0);
    }
    Ok(conn.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?)
}

/// The first schema version whose principals recorded every dispatch (`dispatches`).
pub const DISPATCHES_VERSION: i32 = 7;

/// Brings the schema up to [`CURRENT_VERSION`], refusing files from a newer build; the version
/// found before.
pub fn migrate(conn: &Connection) -> Result<i32, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)",
    )?;
    let version: i32 = conn.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    if version > CURRENT_VERSION {
        return Err(StoreError::TooNew {
            found: version,
            supported: CURRENT_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        conn.execute_batch("BEGIN TRANSACTION")?;
        let step = conn.execute_batch(sql).and_then(|()| {
            conn.execute(
                "INSERT INTO schema_version (version) VALUES (?)",
                [i as i32 + 1],
            )
            .map(drop)
        });
        match step {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e.into());
            }
        }
    }
    Ok(version)
}
