//! DAG execution through the real engine: real processes, a real DuckDB file.

use std::collections::HashMap;

use crate::common::{Harness, numbered_tasks, workflow};
use opsconsole::protocol::RunState;
use opsconsole::protocol::api::{Client, ClientExt};
use opsconsole::protocol::history::AttemptRow;
use opsconsole::store::query::Reader;

fn attempts_by_task(
    reader: &Reader,
    run: opsconsole::protocol::RunId,
) -> HashMap<String, Vec<AttemptRow>> {
    let mut map: HashMap<String, Vec<AttemptRow>> = HashMap::new();
    for a in reader.attempts(run).expect("attempts") {
        map.entry(a.task.clone()).or_default().push(a);
    }
    map
}

fn states(reader: &Reader, run: opsconsole::protocol::RunId) -> HashMap<String, String> {
    reader
        .task_states(run)
        .expect("task states")
        .into_iter()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_and_fan_in_run_each_task_once_after_all_parents() {
    let wf = workflow(
        "fan",
        "",
        &[
            ("root", r#"{ run: "sleep 0.05" }"#),
            ("a", r#"{ run: "sleep 0.3", depends_on: [root] }"#),
            ("b", r#"{ run: "sleep 0.1", depends_on: [root] }"#),
            ("c", r#"{ run: "true", depends_on: [root] }"#),
            ("join", r#"{ run: "true", depends_on: [a, b, c] }"#),
        ],
    );
    let mut h = Harness::new(&[&wf], 8);
    let outcome = h.run("fan").await;
    assert_eq!(outcome.state, RunState::Succeeded);
    let reader = h.finish().await;
    let attempts = attempts_by_task(&reader, outcome.run_id);
    for task in ["root", "a", "b", "c", "join"] {
        assert_eq!(attempts[task].len(), 1, "{task} ran exactly once");
    }
    let join_start = attempts["join"][0].started_at;
    for parent in ["a", "b", "c"] {
        assert!(
            attempts[parent][0].ended_at <= join_start,
            "join started before {parent} ended"
        );
    }
    // Fan-out: the three branches overlapped instead of running one after another.
    assert!(attempts["b"][0].started_at < attempts["a"][0].ended_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diamond_with_failure_skips_downstream_and_keeps_independent_branch() {
    let wf = workflow(
        "diamond",
        "",
        &[
            ("top", r#"{ run: "true" }"#),
            ("left", r#"{ run: "exit 4", depends_on: [top] }"#),
            ("right", r#"{ run: "sleep 0.2", depends_on: [top] }"#),
            ("bottom", r#"{ run: "true", depends_on: [left, right] }"#),
            ("after", r#"{ run: "true", depends_on: [bottom] }"#),
            ("side", r#"{ run: "true", depends_on: [right] }"#),
        ],
    );
    let mut h = Harness::new(&[&wf], 4);
    let outcome = h.run("diamond").await;
    assert_eq!(outcome.state, RunState::Failed);
    assert_eq!(outcome.failed_tasks, vec!["left".to_string()]);
    let reader = h.finish().await;
    let s = states(&reader, outcome.run_id);
    assert_eq!(s["left"], "failed");
    assert_eq!(s["right"], "succeeded");
    assert_eq!(s["side"], "succeeded", "independent branch keeps running");
    assert_eq!(s["bottom"], "skipped");
    assert_eq!(s["after"], "skipped", "skips cascade transitively");
    let attempts = attempts_by_task(&reader, outcome.run_id);
    assert_eq!(attempts["left"][0].exit_code, Some(4));
    assert!(!attempts.contains_key("bottom"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_graph_of_200_parallel_tasks() {
    let wf = workflow("wide", "", &numbered_tasks(200, r#"["true"]"#, false));
    let mut h = Harness::new(&[&wf], 16);
    let outcome = h.run("wide").await;
    assert_eq!(outcome.state, RunState::Succeeded);
    let reader = h.finish().await;
    let attempts = reader.attempts(outcome.run_id).expect("attempts");
    assert_eq!(attempts.len(), 200);
    assert!(attempts.iter().all(|a| a.state == "succeeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_chain_of_200_tasks_runs_in_order() {
    let wf = workflow("deep", "", &numbered_tasks(200, r#"["true"]"#, true));
    let mut h = Harness::new(&[&wf], 4);
    let outcome = h.run("deep").await;
    assert_eq!(outcome.state, RunState::Succeeded);
    let reader = h.finish().await;
    let attempts = attempts_by_task(&reader, outcome.run_id);
    assert_eq!(attempts.len(), 200);
    for i in 1..200 {
        let prev = &attempts[&format!("t{}", i - 1)][0];
        let this = &attempts[&format!("t{i}")][0];
        assert!(
            prev.ended_at <= this.started_at,
            "t{i} started before t{} ended",
            i - 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_rules_all_done_one_success_one_failed() {
    let wf = workflow(
        "rules",
        "",
        &[
            ("ok", r#"{ run: "true" }"#),
            ("bad", r#"{ run: "false" }"#),
            ("slow_ok", r#"{ run: "sleep 0.5" }"#),
            (
                "done",
                r#"{ run: "true", depends_on: [ok, bad], trigger: all_done }"#,
            ),
            (
                "any_ok",
                r#"{ run: "true", depends_on: [bad, slow_ok], trigger: one_success }"#,
            ),
            (
                "any_bad",
                r#"{ run: "true", depends_on: [ok, bad], trigger: one_failed }"#,
            ),
            (
                "no_bad",
                r#"{ run: "true", depends_on: [ok, slow_ok], trigger: one_failed }"#,
            ),
            (
                "none_ok",
                r#"{ run: "true", depends_on: [bad], trigger: one_success }"#,
            ),
            ("strict", r#"{ run: "true", depends_on: [ok, bad] }"#),
        ],
    );
    let mut h = Harness::new(&[&wf], 8);
    let outcome = h.run("rules").await;
    assert_eq!(
        outcome.state,
        RunState::Failed,
        "`bad` failed, so the run failed"
    );
    let reader = h.finish().await;
    let s = states(&reader, outcome.run_id);
    assert_eq!(s["done"], "succeeded");
    assert_eq!(s["any_ok"], "succeeded");
    assert_eq!(s["any_bad"], "succeeded");
    assert_eq!(s["no_bad"], "skipped");
    assert_eq!(s["none_ok"], "skipped");
    assert_eq!(s["strict"], "skipped");
    // one_success starts as soon as one parent succeeded, not when all are done.
    let attempts = attempts_by_task(&reader, outcome.run_id);
    assert!(attempts["any_ok"][0].started_at >= attempts["slow_ok"][0].ended_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_success_starts_before_slow_sibling_finishes() {
    let wf = workflow(
        "early",
        "",
        &[
            ("fast", r#"{ run: "true" }"#),
            ("slow", r#"{ run: "sleep 1" }"#),
            (
                "early",
                r#"{ run: "true", depends_on: [fast, slow], trigger: one_success }"#,
            ),
        ],
    );
    let mut h = Harness::new(&[&wf], 4);
    let outcome = h.run("early").await;
    assert_eq!(outcome.state, RunState::Succeeded);
    let reader = h.finish().await;
    let attempts = attempts_by_task(&reader, outcome.run_id);
    assert!(attempts["early"][0].started_at < attempts["slow"][0].ended_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_cancels_running_tasks_and_skips_the_rest() {
    let wf = workflow(
        "ff",
        "fail_fast: true\n",
        &[
            ("boom", r#"{ run: "sleep 0.2; exit 1" }"#),
            ("long", r#"{ run: "sleep 30" }"#),
            ("later", r#"{ run: "true", depends_on: [long] }"#),
        ],
    );
    let mut h = Harness::new(&[&wf], 4);
    let outcome = h.run("ff").await;
    assert_eq!(outcome.state, RunState::Failed);
    let reader = h.finish().await;
    let s = states(&reader, outcome.run_id);
    assert_eq!(s["boom"], "failed");
    assert_eq!(s["long"], "cancelled");
    assert_eq!(s["later"], "skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_backoff_record_every_attempt() {
    let wf = workflow(
        "retry",
        "",
        &[(
            "flaky",
            r#"{ run: "test $OPSCONSOLE_ATTEMPT -ge 3", retries: 4, backoff: { initial: 50ms, max: 200ms, jitter: false } }"#,
        )],
    );
    let mut h = Harness::new(&[&wf], 2);
    let outcome = h.run("retry").await;
    assert_eq!(outcome.state, RunState::Succeeded);
    let reader = h.finish().await;
    let attempts = attempts_by_task(&reader, outcome.run_id);
    let flaky = &attempts["flaky"];
    assert_eq!(
        flaky.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(flaky[0].state, "failed");
    assert_eq!(flaky[2].state, "succeeded");
    // Backoff: 50 ms then 100 ms between attempts (no jitter).
    let gap = flaky[1].started_at - flaky[0].ended_at;
    assert!(
        gap.num_milliseconds() >= 50,
        "waited {gap} before attempt 2"
    );
    let gap = flaky[2].started_at - flaky[1].ended_at;
    assert!(
        gap.num_milliseconds() >= 100,
        "waited {gap} before attempt 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_process_group_and_retries() {
    let wf = workflow(
        "to",
        "",
        &[(
            "hang",
            r#"{ run: "sleep 30 & echo $! > grandchild.$OPSCONSOLE_ATTEMPT; wait", timeout: 300ms, retries: 1, backoff: { initial: 10ms } }"#,
        )],
    );
    let mut h = Harness::new(&[&wf], 2);
    let outcome = h.run("to").await;
    assert_eq!(outcome.state, RunState::Failed);
    let dir = h.dir.path().to_path_buf();
    let reader = h.finish().await;
    let attempts = attempts_by_task(&reader, outcome.run_id);
    assert_eq!(attempts["hang"].len(), 2);
    assert!(attempts["hang"].iter().all(|a| a.state == "timed_out"));
    for attempt in 1..=2 {
        let pid: i32 = std::fs::read_to_string(dir.join(format!("grandchild.{attempt}")))
            .expect("grandchild pid written")
            .trim()
            .parse()
            .expect("pid");
        assert!(
            !process_alive(pid),
            "grandchild {pid} of attempt {attempt} survived the timeout"
        );
    }
}

pub fn process_alive(pid: i32) -> bool {
    // A zombie still answers kill(0); check its state instead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .split(") ")
            .nth(1)
            .is_some_and(|rest| rest.starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_running_and_pending_tasks() {
    let wf = workflow(
        "c",
        "",
        &[
            ("long", r#"{ run: "sleep 30" }"#),
            ("next", r#"{ run: "true", depends_on: [long] }"#),
        ],
    );
    let mut h = Harness::new(&[&wf], 2);
    let mut events = h.principal().subscribe();
    let id = h.trigger("c", &[]).await;
    // Cancel once the task is really running.
    loop {
        if let Ok(opsconsole::protocol::Event::TaskState { state, .. }) = events.recv().await
            && state == opsconsole::protocol::TaskState::Running
        {
            break;
        }
    }
    assert!(h.principal().cancel(id).await.expect("alive"));
    let outcome = h.wait(id).await;
    assert_eq!(outcome.state, RunState::Cancelled);
    let reader = h.finish().await;
    let s = states(&reader, id);
    assert_eq!(s["long"], "cancelled");
    assert_eq!(s["next"], "cancelled");
    let runs = reader.runs(&Default::default()).expect("runs");
    assert_eq!(runs[0].state, RunState::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_active_runs_holds_later_runs_until_earlier_ones_end() {
    let wf = workflow(
        "one-at-a-time",
        "max_active_runs: 1\n",
        &[("t", r#"{ run: "sleep 0.2" }"#)],
    );
    let mut h = Harness::new(&[&wf], 8);
    let ids = [
        h.trigger("one-at-a-time", &[]).await,
        h.trigger("one-at-a-time", &[]).await,
        h.trigger("one-at-a-time", &[]).await,
    ];
    for id in ids {
        assert_eq!(h.wait(id).await.state, RunState::Succeeded);
    }
    let reader = h.finish().await;
    let mut runs = reader.runs(&Default::default()).expect("runs");
    assert_eq!(runs.len(), 3);
    runs.sort_by_key(|r| r.run_id);
    for pair in runs.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            a.ended_at.expect("ended") <= b.started_at.expect("started"),
            "run {} started before run {} ended",
            b.run_id,
            a.run_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_limit_bounds_concurrency_and_queue_is_fifo() {
    let wf = workflow("slots", "", &numbered_tasks(6, r#""sleep 0.2""#, false));
    let mut h = Harness::new(&[&wf], 2);
    let outcome = h.run("slots").await;
    assert_eq!(outcome.state, RunState::Succeeded);
    let reader = h.finish().await;
    let attempts = reader.attempts(outcome.run_id).expect("attempts");
    // At no instant were more than 2 processes running.
    for a in &attempts {
        let overlapping = attempts
            .iter()
            .filter(|b| b.started_at <= a.started_at && a.started_at < b.ended_at)
            .count();
        assert!(
            overlapping <= 2,
            "{overlapping} tasks ran at once with 2 slots"
        );
    }
    // FIFO: tasks started in the order they became ready (file order here).
    let mut by_start = attempts.clone();
    by_start.sort_by_key(|a| a.started_at);
    let order: Vec<&str> = by_start.iter().map(|a| a.task.as_str()).collect();
    assert_eq!(
        order[..2]
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        ["t0", "t1"].into()
    );
    assert_eq!(
        order[4..]
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        ["t4", "t5"].into()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_and_templates_reach_the_process() {
    let wf = workflow(
        "tpl",
        "params: { region: eu }\n",
        &[(
            "show",
            r#"{ run: ["sh", "-c", "echo \"$1 $GREETING $OPSCONSOLE_PARAM_REGION\"", "x", "{{ params.region }}-{{ task.name }}"], env: { GREETING: "run {{ run.id }}" } }"#,
        )],
    );
    let mut h = Harness::new(&[&wf], 2);
    let id = h.trigger("tpl", &[("region", "us")]).await;
    assert_eq!(h.wait(id).await.state, RunState::Succeeded);
    let reader = h.finish().await;
    let mut lines = Vec::new();
    reader
        .logs(id, &Default::default(), |l| {
            lines.push(l.line);
            Ok(())
        })
        .expect("logs");
    assert_eq!(lines, vec![format!("us-show run {id} us")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_status_are_served_by_the_principal_while_it_owns_the_store() {
    use opsconsole::protocol::api::{ApiErrorKind, ClientError, Request, Response};
    let wf = workflow("talk", "", &[("t", r#"{ run: "seq 1 25" }"#)]);
    let h = Harness::new(&[&wf], 2);
    let outcome = h.run("talk").await;
    let p = h.principal();

    let status = p.status().await.expect("status");
    assert_eq!(status.pid, std::process::id());
    assert_eq!(status.slots, 2);
    assert_eq!(status.workflows[0].name, "talk");
    assert!(status.workflows[0].active_runs.is_empty());

    let runs = match p
        .call(Request::History {
            workflow: None,
            limit: 5,
        })
        .await
    {
        Ok(Response::Runs { runs }) => runs,
        other => panic!("unexpected: {other:?}"),
    };
    assert_eq!(runs[0].run_id, outcome.run_id);

    // Paging through the output: 25 lines in pages of 10.
    let mut got = Vec::new();
    let mut offset = 0;
    loop {
        let request = Request::Logs {
            run_id: outcome.run_id,
            task: None,
            stream: None,
            offset,
            limit: 10,
            from_end: false,
        };
        let Ok(Response::Lines { lines, more, .. }) = p.call(request).await else {
            panic!("logs page");
        };
        offset += lines.len();
        got.extend(lines.into_iter().map(|l| l.line));
        if !more {
            break;
        }
    }
    assert_eq!(got, (1..=25).map(|i| i.to_string()).collect::<Vec<_>>());

    // The tail without reading what precedes it, then the page before it.
    let tail = |offset| Request::Logs {
        run_id: outcome.run_id,
        task: None,
        stream: None,
        offset,
        limit: 10,
        from_end: true,
    };
    let Ok(Response::Lines { lines, more, first }) = p.call(tail(0)).await else {
        panic!("tail page");
    };
    let texts: Vec<_> = lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(
        texts,
        ["16", "17", "18", "19", "20", "21", "22", "23", "24", "25"]
    );
    assert_eq!((first, more), (15, true));
    let Ok(Response::Lines { lines, more, first }) = p.call(tail(20)).await else {
        panic!("first page from the end");
    };
    let texts: Vec<_> = lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(texts, ["1", "2", "3", "4", "5"]);
    assert_eq!((first, more), (0, false));

    let missing = p
        .call(Request::Logs {
            run_id: opsconsole::protocol::RunId(999),
            task: None,
            stream: None,
            offset: 0,
            limit: 10,
            from_end: false,
        })
        .await;
    assert!(matches!(missing, Ok(Response::Error(e)) if e.kind == ApiErrorKind::NotFound));

    let unknown = p.trigger("nope", Default::default()).await;
    assert!(matches!(unknown, Err(ClientError::Api(e)) if e.kind == ApiErrorKind::InvalidInput));
}
