//! Schedules driven by the real engine and clock: fire, overlap policies, pause that persists.
//! Every schedule here fires each second (6-field cron), so the tests take a few seconds.

use std::time::Duration;

use crate::common::{Harness, workflow};
use opsconsole::protocol::RunState;
use opsconsole::protocol::api::{ApiErrorKind, Client, ClientExt, Request, Response};
use opsconsole::protocol::history::RunSummary;
use opsconsole::store::query::RunFilter;

fn every_second(name: &str, extra: &str, run: &str) -> String {
    workflow(
        name,
        &format!("schedule: \"* * * * * *\"\n{extra}"),
        &[("t", &format!("{{ run: \"{run}\" }}") as &str)],
    )
}

async fn runs(h: &Harness) -> Vec<RunSummary> {
    match h
        .principal()
        .call(Request::History {
            workflow: None,
            limit: 100,
        })
        .await
    {
        Ok(Response::Runs { runs: r }) => r,
        other => panic!("history: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_and_status_shows_next_fire_times() {
    let h = Harness::new(&[&every_second("tick", "", "true")], 2);
    let status = h.principal().status().await.expect("status");
    assert_eq!(status.workflows[0].schedule.as_deref(), Some("* * * * * *"));
    assert_eq!(status.workflows[0].next_fires.len(), 3);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let runs = runs(&h).await;
    assert!(!runs.is_empty(), "the schedule fired");
    assert!(runs.iter().all(|r| r.workflow == "tick"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_skip_keeps_a_single_active_run() {
    let h = Harness::new(&[&every_second("busy", "overlap: skip\n", "sleep 30")], 2);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let runs = runs(&h).await;
    assert_eq!(
        runs.len(),
        1,
        "fire times during the active run are skipped: {runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_queue_runs_one_after_another() {
    let mut h = Harness::new(
        &[&every_second("queued", "overlap: queue\n", "sleep 1.2")],
        4,
    );
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let reader = h.finish().await;
    let mut runs = reader
        .runs(&RunFilter {
            workflow: None,
            limit: 100,
        })
        .expect("runs");
    runs.sort_by_key(|r| r.run_id);
    let finished: Vec<&RunSummary> = runs
        .iter()
        .filter(|r| r.state == RunState::Succeeded)
        .collect();
    assert!(finished.len() >= 2, "{runs:?}");
    for pair in finished.windows(2) {
        assert!(
            pair[0].ended_at.expect("ended") <= pair[1].started_at.expect("started"),
            "queued runs overlapped: {pair:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_cancel_previous_replaces_the_active_run() {
    let mut h = Harness::new(
        &[&every_second(
            "replace",
            "overlap: cancel_previous\n",
            "sleep 30",
        )],
        4,
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let reader = h.finish().await;
    let runs = reader
        .runs(&RunFilter {
            workflow: None,
            limit: 100,
        })
        .expect("runs");
    assert!(runs.len() >= 2, "{runs:?}");
    let cancelled = runs
        .iter()
        .filter(|r| r.state == RunState::Cancelled)
        .count();
    assert!(
        cancelled >= runs.len() - 1,
        "older runs were cancelled: {runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_persists_across_restart_and_resume_fires_again() {
    let doc = every_second("pausable", "", "true");
    let h = Harness::new(&[&doc], 2);
    let paused = h
        .principal()
        .call(Request::Pause {
            workflow: "pausable".into(),
        })
        .await;
    assert!(
        matches!(paused, Ok(Response::Paused { paused: true, .. })),
        "{paused:?}"
    );
    let before = runs(&h).await.len();
    let dir = h.stop().await;

    let h = Harness::in_dir(dir, &[&doc], 2);
    let status = h.principal().status().await.expect("status");
    assert!(status.workflows[0].paused, "paused after restart");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(
        runs(&h).await.len(),
        before,
        "a paused schedule does not fire"
    );

    let resumed = h
        .principal()
        .call(Request::Resume {
            workflow: "pausable".into(),
        })
        .await;
    assert!(matches!(
        resumed,
        Ok(Response::Paused { paused: false, .. })
    ));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(runs(&h).await.len() > before, "fires again after resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_an_unscheduled_or_unknown_workflow_is_refused() {
    let plain = workflow("plain", "", &[("t", r#"{ run: "true" }"#)]);
    let h = Harness::new(&[&plain], 2);
    for (name, kind) in [
        ("plain", ApiErrorKind::InvalidInput),
        ("ghost", ApiErrorKind::NotFound),
    ] {
        let r = h
            .principal()
            .call(Request::Pause {
                workflow: name.into(),
            })
            .await;
        assert!(
            matches!(&r, Ok(Response::Error(e)) if e.kind == kind),
            "{name}: {r:?}"
        );
    }
}
