//! The DuckDB history file: migration on open, continuity across reopen, filters.

use crate::common::{Harness, workflow};
use opsconsole::protocol::RunState;
use opsconsole::store::query::RunFilter;
use opsconsole::store::{Store, StoreError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_history_and_continues_run_ids() {
    let a = workflow("a", "", &[("t", r#"{ run: "true" }"#)]);
    let b = workflow("b", "", &[("t", r#"{ run: "kill -9 $$" }"#)]);
    let mut h = Harness::new(&[&a, &b], 2);
    assert_eq!(h.run("a").await.state, RunState::Succeeded);
    let failed = h.run("b").await;
    assert_eq!(failed.state, RunState::Failed);
    let reader = h.finish().await;

    let attempts = reader.attempts(failed.run_id).expect("attempts");
    assert_eq!(attempts[0].signal, Some(9), "terminating signal recorded");
    assert_eq!(attempts[0].exit_code, None);
    assert!(
        attempts[0]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("SIGKILL")),
        "{:?}",
        attempts[0].message
    );

    let only_a = reader
        .runs(&RunFilter {
            workflow: Some("a".into()),
            limit: 10,
        })
        .expect("runs");
    assert_eq!(only_a.len(), 1);
    assert_eq!(only_a[0].workflow, "a");
    let b_runs = reader
        .runs(&RunFilter {
            workflow: Some("b".into()),
            limit: 10,
        })
        .expect("runs");
    assert_eq!(b_runs[0].failed_tasks, vec!["t".to_string()]);
    drop(reader);

    let (store, recovered) = Store::open(h.dir.path()).expect("reopen");
    assert_eq!(recovered.next_run_id.0, 3, "run ids are never reused");
    assert!(recovered.unfinished.is_empty());
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_from_a_newer_version_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = Store::open(dir.path()).expect("open");
    store.close().await.expect("close");
    {
        let conn =
            duckdb::Connection::open(opsconsole::store::db_path(dir.path())).expect("raw open");
        conn.execute_batch("INSERT INTO schema_version (version) VALUES (99)")
            .expect("bump version");
    }
    match Store::open(dir.path()) {
        Err(e @ StoreError::TooNew { found: 99, .. }) => {
            assert!(e.to_string().contains("upgrade opsconsole"), "{e}");
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_left_unfinished_by_a_dead_process_are_found_on_open() {
    let wf = workflow("w", "", &[("t", r#"{ run: "sleep 30" }"#)]);
    let h = Harness::new(&[&wf], 2);
    let id = h.trigger("w", &[]).await;
    // Simulate a crash: leak the principal so that nothing is cancelled or closed cleanly,
    // after making sure the run's first events reached the file.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let dir = h.dir.path().to_path_buf();
    let Harness {
        dir: tmp,
        principal,
    } = h;
    std::mem::forget(principal);
    // DuckDB holds one writer per file; a new process is what would open it next, so copy it.
    let copy = tempfile::tempdir().expect("temp dir");
    let _ = std::fs::copy(
        opsconsole::store::db_path(&dir),
        opsconsole::store::db_path(copy.path()),
    );
    let wal = opsconsole::store::db_path(&dir).with_extension("duckdb.wal");
    if wal.exists() {
        let _ = std::fs::copy(
            &wal,
            opsconsole::store::db_path(copy.path()).with_extension("duckdb.wal"),
        );
    }
    let (store, recovered) = Store::open(copy.path()).expect("open copy");
    assert_eq!(recovered.unfinished.len(), 1);
    let run = &recovered.unfinished[0];
    assert_eq!(run.run_id, id);
    assert!(run.started);
    assert_eq!(
        run.tasks.get("t"),
        Some(&(opsconsole::protocol::TaskState::Running, 1))
    );
    store.close().await.expect("close");
    drop(tmp);
}

/// A line longer than a stored piece (4000 bytes) is read back whole, cut nowhere inside a
/// character; a page of such lines stops at its byte bound and says more follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_are_stored_in_pieces_and_read_back_whole_a_page_at_a_time() {
    let run = r#"{ run: "L=a$(yes é | head -n 29999 | tr -d '\\n'); for i in $(seq 1 50); do echo \"$L\"; done" }"#;
    let w = workflow("long", "", &[("t", run)]);
    let mut h = Harness::new(&[&w], 2);
    let outcome = h.run("long").await;
    assert_eq!(outcome.state, RunState::Succeeded);
    let reader = h.finish().await;
    let line = format!("a{}", "é".repeat(29_999));
    let filter = opsconsole::store::query::LogFilter::default();
    let (first, more) = reader
        .logs_page(outcome.run_id, &filter, 0, 10_000)
        .expect("page");
    assert!(
        more && first.len() < 50,
        "{} lines, more: {more}",
        first.len()
    );
    let bytes: usize = first.iter().map(|l| l.line.len()).sum();
    assert!(bytes <= opsconsole::store::query::PAGE_BYTES + line.len());
    let (rest, more) = reader
        .logs_page(outcome.run_id, &filter, first.len(), 10_000)
        .expect("page");
    assert!(!more);
    let all: Vec<_> = first.iter().chain(&rest).collect();
    assert_eq!(all.len(), 50);
    assert!(
        all.iter().all(|l| l.line == line),
        "a line came back changed"
    );
    assert_eq!(
        reader.log_count(outcome.run_id, &filter).expect("count"),
        50
    );
}
