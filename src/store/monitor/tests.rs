use std::path::Path;

use chrono::TimeZone;

use super::*;
use crate::monitor::health::{Health, Policy, Step};
use crate::monitor::judge::Judgement;
use crate::protocol::monitor::{Action, InterventionSpec};
use crate::store::Store;

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + s, 0)
        .single()
        .expect("valid")
}

/// What the monitor actor will do with each step: the store's half of it.
fn write_of(step: &Step) -> MonitorWrite {
    match step.clone() {
        Step::Changed {
            monitor,
            status,
            cause,
        } => MonitorWrite::State {
            monitor,
            status,
            cause,
        },
        Step::IncidentOpened {
            monitor,
            incident,
            at,
            cause,
        } => MonitorWrite::IncidentOpened {
            incident,
            monitor,
            at,
            cause,
        },
        Step::IncidentClosed {
            monitor,
            incident,
            at,
            ..
        } => MonitorWrite::IncidentClosed {
            incident,
            monitor,
            at,
        },
        Step::Attempt {
            monitor,
            incident,
            no,
            attempt,
        } => MonitorWrite::Attempt {
            incident,
            monitor,
            no,
            attempt,
        },
        Step::Intervene { .. } => MonitorWrite::Results(Vec::new()),
    }
}

fn policy() -> Policy {
    Policy {
        on_unhealthy: vec![InterventionSpec {
            action: Action::Restart {
                path: "web/api".into(),
            },
            cooldown: Duration::from_secs(60),
            max_attempts: 3,
        }],
        ..Policy::default()
    }
}

fn machine() -> Health {
    let mut h = Health::new();
    let p = h.add_policy(policy());
    for id in 0..3 {
        h.add(MonitorId(id), p, &[], t(0)).expect("policy");
    }
    h
}

fn result(s: i64, ms: u32, verdict: Verdict) -> StoredResult {
    StoredResult {
        at: t(s),
        response_ms: ms,
        verdict,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_round_trip_and_recover_after_reopening_without_a_duplicate_incident() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(dir.path()).expect("open");
    let tx = store.sender();
    tx.send_monitor(MonitorWrite::Names(vec![
        (MonitorId(0), "api".into()),
        (MonitorId(1), "db".into()),
        (MonitorId(2), "cache".into()),
    ]))
    .await
    .expect("send");
    let mut h = machine();
    let mut steps = Vec::new();
    let bad = Judgement::failed("[STATUS] == 200", "503");
    // api: unhealthy with a restart attempted and succeeded; db: an incident that closed;
    // cache: paused.
    for s in 0..3 {
        h.record(MonitorId(0), &bad, t(s), &mut steps);
        h.record(MonitorId(1), &bad, t(s), &mut steps);
    }
    for s in 3..5 {
        h.record(MonitorId(1), &Judgement::ok(), t(s), &mut steps);
    }
    h.pause(MonitorId(2), true, t(5), &mut steps);
    let (no, incident) = steps
        .iter()
        .find_map(|s| match s {
            Step::Intervene {
                monitor: MonitorId(0),
                no,
                incident,
                ..
            } => Some((*no, *incident)),
            _ => None,
        })
        .expect("a restart");
    steps.push(Health::attempt_done(
        MonitorId(0),
        incident,
        no,
        Trigger::Unhealthy,
        &policy().on_unhealthy[0].action,
        Outcome::Succeeded,
        t(6),
    ));
    for step in &steps {
        tx.send_monitor(write_of(step)).await.expect("send");
    }
    let results: Vec<_> = (0..5)
        .map(|s| (MonitorId(0), result(s, 10 + s as u32, Verdict::Failed)))
        .collect();
    tx.send_monitor(MonitorWrite::Results(results))
        .await
        .expect("send");
    tx.flush().await.expect("flush");
    let live = store
        .reader()
        .lock()
        .expect("reader")
        .monitor_results(MonitorId(0), 3)
        .expect("results");
    assert_eq!(
        live.iter().map(|r| r.response_ms).collect::<Vec<_>>(),
        [12, 13, 14],
        "the newest, oldest first"
    );
    store.close().await.expect("close");

    // A new principal: recovery from the file.
    let (store, _) = Store::open(dir.path()).expect("reopen");
    let recovery = store
        .reader()
        .lock()
        .expect("reader")
        .monitor_recovery()
        .expect("recovery");
    assert_eq!(recovery.names.len(), 3);
    assert_eq!(recovery.names[0], (MonitorId(0), "api".to_string()));
    let api = recovery.states.iter().find(|(m, _)| *m == MonitorId(0));
    assert_eq!(api.map(|(_, s)| s.state), Some(MonitorState::Unhealthy));
    assert_eq!(recovery.paused().collect::<Vec<_>>(), [MonitorId(2)]);
    assert_eq!(recovery.open.len(), 1, "{:?}", recovery.open);
    let (monitor, open) = &recovery.open[0];
    assert_eq!(*monitor, MonitorId(0));
    assert_eq!(open.monitor, "api");
    assert_eq!(open.cause.condition, "[STATUS] == 200");
    assert_eq!(open.attempts.len(), 1, "two records, one attempt");
    assert_eq!(open.attempts[0].outcome, Outcome::Succeeded);
    assert_eq!(open.attempts[0].action, "restart web/api");
    assert_eq!(recovery.next_incident, IncidentId(3));

    let all = store
        .reader()
        .lock()
        .expect("reader")
        .incidents(false, 10)
        .expect("incidents");
    assert_eq!(
        all.iter()
            .map(|i| (i.id.0, i.closed.is_some()))
            .collect::<Vec<_>>(),
        [(open.id.0, false), (2, true)],
        "open first, then recent"
    );
    assert_eq!(all[1].monitor, "db");

    let mut again = machine();
    let repair = again.restore(
        &recovery.states,
        &recovery.open,
        recovery.next_incident,
        t(100),
    );
    assert!(repair.is_empty(), "{repair:?}");
    let mut steps = Vec::new();
    for s in 101..110 {
        again.record(MonitorId(0), &bad, t(s), &mut steps);
    }
    assert!(
        !steps
            .iter()
            .any(|s| matches!(s, Step::IncidentOpened { .. })),
        "{steps:?}"
    );
    assert_eq!(again.incident(MonitorId(0)), Some(open.id));
    assert_eq!(again.status(MonitorId(2)).map(|s| s.paused), Some(true));
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn housekeeping_rolls_up_minutes_and_deletes_raw_results_past_retention() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(dir.path()).expect("open");
    let tx = store.sender();
    let now = t(10 * 86_400);
    let m = MonitorId(4);
    // Eight days ago: 3 minutes of results, 4 a minute; and a minute of recent ones.
    let mut rows = Vec::new();
    for minute in 0..3i64 {
        for k in 0..4i64 {
            let at = 2 * 86_400 + minute * 60 + k * 15;
            let verdict = if k == 3 { Verdict::Failed } else { Verdict::Ok };
            rows.push((m, result(at, (10 * (k + 1)) as u32, verdict)));
        }
    }
    for k in 0..4i64 {
        rows.push((m, result(10 * 86_400 - 600 + k * 15, 7, Verdict::Ok)));
    }
    tx.send_monitor(MonitorWrite::Results(rows))
        .await
        .expect("send");
    tx.flush().await.expect("flush");
    // Steps are bounded: several are needed to reach now; each is a request here.
    for _ in 0..20 {
        tx.send_monitor(MonitorWrite::Housekeep { now })
            .await
            .expect("send");
        tx.flush().await.expect("flush");
    }
    {
        let reader = store.reader();
        let r = reader.lock().expect("reader");
        let rollups = r.monitor_rollups(m, t(0), now).expect("rollups");
        println!("rollups: {rollups:?}");
        assert_eq!(rollups.len(), 4, "three old minutes and the recent one");
        assert_eq!(
            rollups[0],
            ResultRollup {
                minute: t(2 * 86_400),
                count: 4,
                failures: 1,
                min_ms: 10,
                avg_ms: 25,
                p95_ms: 40,
                max_ms: 40,
            }
        );
        let raw = r.monitor_results(m, 100).expect("results");
        assert_eq!(raw.len(), 4, "results older than 7 days are deleted");
        // The sparkline reads rollups where raw results are gone.
        let series = r
            .response_series(m, t(0), now, Duration::from_secs(3600))
            .expect("series");
        println!("series: {series:?}");
        assert_eq!(series.iter().map(|p| p.count).sum::<u32>(), 16);
        assert_eq!(series.last().map(|p| p.avg_ms), Some(7));
    }
    store.close().await.expect("close");
}

fn file_bytes(dir: &Path) -> u64 {
    std::fs::metadata(crate::store::db_path(dir))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Prints the bytes a raw result takes on disk after a checkpoint, for 1,000,000 results of
/// 20,000 monitors checked every minute (ids in the order their checks are spread over the
/// minute, response times of 5-260 ms, 1 % failed), sent in batches of 4,096 each committed
/// on its own, as a busy actor's batches come (a transaction that filled a row group was
/// written to blocks of its own: 50 to 60 bytes a result).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_results_take_at_most_16_bytes_each_on_disk() {
    const MONITORS: u32 = 20_000;
    const ROUNDS: u32 = 50;
    let empty = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(empty.path()).expect("open");
    store.close().await.expect("close");
    let base = file_bytes(empty.path());

    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(dir.path()).expect("open");
    let tx = store.sender();
    // Each monitor's place in the minute, as the wheel spreads them.
    let mut order: Vec<(u64, u32)> = (0..MONITORS)
        .map(|id| {
            let offset = crate::monitor::schedule::first_delay(
                &format!("target-{id}"),
                Duration::from_secs(60),
                t(0),
            );
            (offset.as_millis() as u64, id)
        })
        .collect();
    order.sort_unstable();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut batch = Vec::with_capacity(4096);
    let started = std::time::Instant::now();
    for round in 0..ROUNDS {
        for &(offset, id) in &order {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let at = t(round as i64 * 60) + chrono::Duration::milliseconds(offset as i64);
            let verdict = if rng.is_multiple_of(100) {
                Verdict::Failed
            } else {
                Verdict::Ok
            };
            batch.push((
                MonitorId(id),
                StoredResult {
                    at,
                    response_ms: 5 + (rng >> 32) as u32 % 256,
                    verdict,
                },
            ));
            if batch.len() == 4096 {
                tx.send_monitor(MonitorWrite::Results(std::mem::take(&mut batch)))
                    .await
                    .expect("send");
                tx.flush().await.expect("flush");
            }
        }
    }
    tx.send_monitor(MonitorWrite::Results(batch))
        .await
        .expect("send");
    tx.flush().await.expect("flush");
    let write_s = started.elapsed().as_secs_f64();
    let n = (MONITORS * ROUNDS) as u64;
    {
        let reader = store.reader();
        let r = reader.lock().expect("reader");
        let conn = r.connection();
        let count: i64 = conn
            .query_row("SELECT count(*) FROM monitor_results", [], |r| r.get(0))
            .expect("count");
        assert_eq!(count as u64, n);
    }
    store.close().await.expect("close");
    let bytes = file_bytes(dir.path()).saturating_sub(base);
    let per = bytes as f64 / n as f64;
    let conn = crate::store::connect(&crate::store::db_path(dir.path()), true).expect("open");
    let mut stmt = conn
        .prepare(
            "SELECT column_name, string_agg(DISTINCT compression, ','), count(DISTINCT block_id)
             FROM pragma_storage_info('monitor_results') GROUP BY column_name ORDER BY 1",
        )
        .expect("prepare");
    let columns: Vec<(String, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    println!(
        "monitor results: {n} written through the Appender in {write_s:.2} s \
         ({:.0}/s); {bytes} bytes on disk after checkpoint = {per:.2} bytes/result; \
         columns: {columns:?}",
        n as f64 / write_s
    );
    assert!(per <= 16.0, "{per:.2} bytes a result");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_in_flight_when_the_principal_died_is_recorded_as_interrupted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(dir.path()).expect("open");
    let tx = store.sender();
    tx.send_monitor(MonitorWrite::Names(vec![(MonitorId(0), "api".into())]))
        .await
        .expect("send");
    let mut h = machine();
    let mut steps = Vec::new();
    let bad = Judgement::failed("[STATUS] == 200", "503");
    for s in 0..3 {
        h.record(MonitorId(0), &bad, t(s), &mut steps);
    }
    // The restart is started and recorded so; the process dies before it ends.
    assert!(
        steps.iter().any(|s| matches!(
            s,
            Step::Attempt {
                attempt: Attempt {
                    outcome: Outcome::Started,
                    ..
                },
                ..
            }
        )),
        "{steps:?}"
    );
    for step in &steps {
        tx.send_monitor(write_of(step)).await.expect("send");
    }
    tx.flush().await.expect("flush");
    drop(tx);
    store.close().await.expect("close");

    let open_attempts = |store: &Store| {
        let recovery = store
            .reader()
            .lock()
            .expect("reader")
            .monitor_recovery()
            .expect("recovery");
        assert_eq!(recovery.open.len(), 1, "{:?}", recovery.open);
        recovery.open[0].1.attempts.clone()
    };
    for reopening in 0..2 {
        let (store, _) = Store::open(dir.path()).expect("reopen");
        let attempts = open_attempts(&store);
        assert_eq!(attempts.len(), 1, "reopening {reopening}: {attempts:?}");
        assert_eq!(attempts[0].action, "restart web/api");
        assert_eq!(
            attempts[0].outcome,
            Outcome::Failed(INTERRUPTED_ATTEMPT.into()),
            "reopening {reopening}"
        );
        assert_eq!(attempts[0].at, t(2), "when it was decided");
        let rows: i64 = store
            .reader()
            .lock()
            .expect("reader")
            .connection()
            .query_row("SELECT count(*) FROM incident_attempts", [], |r| r.get(0))
            .expect("count");
        assert_eq!(
            rows, 2,
            "started, then sealed once, whatever the reopenings"
        );
        store.close().await.expect("close");
    }
}
