//! Interventions carried out for real, as the monitor actor carries them out: a restart of a
//! supervised service through the supervision machine (recorded as the monitor's action), a
//! workflow run with rendered params, a command through the executor, and webhooks to a local
//! HTTP server that fails first, or never answers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opsconsole::protocol::api::{Client, Request, Response};
use opsconsole::protocol::history::ActionRecord;
use opsconsole::protocol::monitor::{Action, Cause, IncidentId, MonitorState, Outcome};
use opsconsole::protocol::service::{ServiceAction, ServiceNode, ServiceState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::Harness;
use crate::common::project::{BIN, text};

async fn call(h: &Harness, request: Request) -> Response {
    h.principal()
        .call(request)
        .await
        .expect("principal answers")
}

fn cause() -> Option<Cause> {
    Some(Cause {
        condition: "[STATUS] == 200".into(),
        seen: "503".into(),
    })
}

/// Carries out `action` for monitor `api-health`, unhealthy on incident 7, within 120 s.
async fn intervene(h: &Harness, action: Action) -> Outcome {
    let work = h.principal().intervene(
        "api-health",
        MonitorState::Unhealthy,
        cause(),
        Some(IncidentId(7)),
        action,
        h.dir.path().to_path_buf(),
    );
    tokio::time::timeout(Duration::from_secs(120), work)
        .await
        .expect("the intervention ended within 120 s")
}

async fn services(h: &Harness) -> Vec<ServiceNode> {
    match call(h, Request::Services { path: None }).await {
        Response::Services { nodes } => nodes,
        other => panic!("services: {other:?}"),
    }
}

async fn service(h: &Harness, path: &str) -> Option<ServiceNode> {
    services(h).await.into_iter().find(|n| n.path == path)
}

/// Waits up to 30 s for `path` to be running; returns it.
async fn running(h: &Harness, path: &str) -> ServiceNode {
    let t0 = Instant::now();
    loop {
        if let Some(n) = service(h, path).await
            && n.state == ServiceState::Running
        {
            return n;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{path} never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn actions(h: &Harness) -> Vec<ActionRecord> {
    match call(h, Request::Actions { limit: 50 }).await {
        Response::Actions { actions } => actions,
        other => panic!("actions: {other:?}"),
    }
}

const WEB: &str = "kind: supervisor\nname: web\nstrategy: one_for_one\nintensity: 5\nperiod: 30s\n\
children:\n  - { name: api, run: \"echo ready; while :; do sleep 0.05; done\", \
ready: { log: ready, timeout: 5s }, stop: { grace: 2s } }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_intervention_restarts_the_service_and_is_recorded_as_the_monitors() {
    let mut h = Harness::with_files(&[("web.yaml", WEB)], 2);
    let before = running(&h, "web/api").await;

    let outcome = intervene(
        &h,
        Action::Restart {
            path: "web/api".into(),
        },
    )
    .await;
    assert_eq!(outcome, Outcome::Succeeded);
    let after = running(&h, "web/api").await;
    println!(
        "web/api before: pid {:?} start {}; after the intervention: pid {:?} start {}",
        before.pid, before.start_no, after.pid, after.start_no
    );
    assert!(after.start_no > before.start_no, "{before:?} -> {after:?}");
    assert_ne!(after.pid, before.pid);

    // A path that names nothing fails, naming it.
    let outcome = intervene(
        &h,
        Action::Restart {
            path: "web/nope".into(),
        },
    )
    .await;
    println!("restart of web/nope: {outcome:?}");
    let Outcome::Failed(why) = outcome else {
        panic!("an unknown path must fail")
    };
    assert!(why.contains("`web/nope`"), "{why}");

    // A service an operator stopped stays stopped: a monitor does not lift the hold.
    let stopped = h
        .principal()
        .call(Request::ServiceControl {
            path: "web/api".into(),
            action: ServiceAction::Stop,
        })
        .await
        .expect("stop");
    assert!(matches!(stopped, Response::Services { .. }), "{stopped:?}");
    let outcome = intervene(
        &h,
        Action::Restart {
            path: "web/api".into(),
        },
    )
    .await;
    println!("restart of a held web/api: {outcome:?}");
    let Outcome::Skipped(why) = outcome else {
        panic!("a held service must not be restarted")
    };
    assert!(why.contains("held"), "{why}");
    let held = service(&h, "web/api").await.expect("web/api");
    assert!(held.held && held.state != ServiceState::Running, "{held:?}");

    // The history says who did what.
    let rows: Vec<(String, String, String)> = actions(&h)
        .await
        .into_iter()
        .rev()
        .map(|a| (a.by, a.action, a.target))
        .collect();
    println!("actions, oldest first: {rows:#?}");
    let row = |by: &str, action: &str, target: &str| (by.into(), action.into(), target.into());
    assert_eq!(
        rows,
        vec![
            row("monitor:api-health", "restart", "web/api"),
            row("local", "stop", "web/api")
        ]
    );

    // And so does `history --actions`, from the file once the principal has stopped.
    let _ = h.finish().await;
    let out = std::process::Command::new(BIN)
        .args(["history", "--actions", "--data-dir"])
        .arg(h.dir.path())
        .env("NO_COLOR", "1")
        .current_dir(h.dir.path())
        .output()
        .expect("run opsconsole");
    let table = text(&out.stdout);
    println!("history --actions:\n{table}{}", text(&out.stderr));
    assert!(
        table
            .lines()
            .any(|l| l.contains("monitor:api-health") && l.contains("restart")),
        "{table}"
    );
}

const PAGE: &str = "kind: workflow\nname: page-oncall\n\
params: { who: nobody, state: none, why: none, incident: none }\ntasks:\n  \
page: { run: [\"echo\", \"paging for {{ params.who }} ({{ params.state }}) incident {{ params.incident }}: {{ params.why }}\"] }\n";

const BROKEN: &str = "kind: workflow\nname: broken-fix\ntasks:\n  \
fix: { run: \"echo trying; exit 4\" }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_intervention_triggers_the_workflow_with_rendered_params() {
    let mut h = Harness::with_files(&[("page.yaml", PAGE), ("broken.yaml", BROKEN)], 2);
    let params = vec![
        ("who".to_string(), "{{ monitor }}".to_string()),
        ("state".to_string(), "{{state}}".to_string()),
        ("why".to_string(), "{{ cause }}".to_string()),
        ("incident".to_string(), "#{{ incident }}".to_string()),
    ];
    let outcome = intervene(
        &h,
        Action::Run {
            workflow: "page-oncall".into(),
            params,
        },
    )
    .await;
    assert_eq!(outcome, Outcome::Succeeded);

    // The task echoed what it was given.
    let runs = match call(
        &h,
        Request::History {
            workflow: Some("page-oncall".into()),
            limit: 5,
        },
    )
    .await
    {
        Response::Runs { runs } => runs,
        other => panic!("history: {other:?}"),
    };
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run_id = runs[0].run_id;
    let mut lines = Vec::new();
    for _ in 0..100 {
        if let Response::Lines { lines: l, .. } = call(
            &h,
            Request::Logs {
                run_id,
                task: None,
                stream: None,
                offset: 0,
                limit: 10,
                from_end: false,
            },
        )
        .await
        {
            lines = l.into_iter().map(|l| l.line).collect();
        }
        if !lines.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("run {run_id} of page-oncall said: {lines:?}");
    assert_eq!(
        lines,
        ["paging for api-health (unhealthy) incident #7: [STATUS] == 200 (saw 503)"]
    );

    // A run that fails is a failed attempt, naming the workflow, the run and the task.
    let outcome = intervene(
        &h,
        Action::Run {
            workflow: "broken-fix".into(),
            params: vec![],
        },
    )
    .await;
    println!("run of broken-fix: {outcome:?}");
    let Outcome::Failed(why) = outcome else {
        panic!("a failed run must fail the attempt")
    };
    assert!(
        why.contains("workflow `broken-fix` run") && why.contains("failed: fix"),
        "{why}"
    );

    // A workflow that does not exist is not started, and says so.
    let outcome = intervene(
        &h,
        Action::Run {
            workflow: "nope".into(),
            params: vec![],
        },
    )
    .await;
    println!("run of nope: {outcome:?}");
    let Outcome::Failed(why) = outcome else {
        panic!("an unknown workflow must fail")
    };
    assert!(why.contains("`nope` not started"), "{why}");

    let triggers: Vec<(String, String)> = actions(&h)
        .await
        .into_iter()
        .rev()
        .map(|a| (a.by, a.target))
        .collect();
    println!("actions, oldest first: {triggers:?}");
    assert_eq!(triggers.len(), 2, "{triggers:?}");
    assert!(triggers.iter().all(|(by, _)| by == "monitor:api-health"));
    let _ = h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_intervention_runs_through_the_executor() {
    let mut h = Harness::new(&[], 1);
    std::fs::create_dir(h.dir.path().join("sub")).expect("mkdir");
    let sh = |script: &str| vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    let outcome = intervene(
        &h,
        Action::Command {
            argv: sh("echo \"$OPSCONSOLE_MONITOR $OPSCONSOLE_STATE $OPSCONSOLE_INCIDENT $FIX\" > out.txt"),
            env: vec![("FIX".into(), "flush".into())],
            cwd: Some("sub".into()),
            timeout: Duration::from_secs(10),
        },
    )
    .await;
    assert_eq!(outcome, Outcome::Succeeded);
    let written = std::fs::read_to_string(h.dir.path().join("sub/out.txt")).expect("out.txt");
    println!("the command wrote: {written:?}");
    assert_eq!(written, "api-health unhealthy 7 flush\n");

    let outcome = intervene(
        &h,
        Action::Command {
            argv: sh("echo starting; echo 'cache server refused' >&2; exit 3"),
            env: vec![],
            cwd: None,
            timeout: Duration::from_secs(10),
        },
    )
    .await;
    println!("failing command: {outcome:?}");
    assert_eq!(
        outcome,
        Outcome::Failed(
            "command `echo starting; echo 'cache server refused' >&2; exit 3` exited with \
             code 3; last output line: cache server refused"
                .into()
        )
    );

    // Past its timeout it is killed with whatever it started.
    let t0 = Instant::now();
    let outcome = intervene(
        &h,
        Action::Command {
            argv: sh("setsid sleep 30 & sleep 30"),
            env: vec![],
            cwd: None,
            timeout: Duration::from_millis(500),
        },
    )
    .await;
    println!("slow command: {outcome:?} after {:?}", t0.elapsed());
    let Outcome::Failed(why) = outcome else {
        panic!("a command past its timeout must fail")
    };
    assert!(why.contains("timed out"), "{why}");
    let _ = h.finish().await;
}

/// What a local webhook receiver saw: each request's head and body.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// An HTTP server on 127.0.0.1 that answers `statuses` in turn (the last one from then on),
/// or never answers when `statuses` is empty. Returns its URL and what it saw.
async fn receiver(statuses: Vec<u16>) -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        let mut n = 0usize;
        let mut held = Vec::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            let Some(status) = statuses
                .get(n.min(statuses.len().saturating_sub(1)))
                .copied()
            else {
                // Never answers: keep the connection open and silent.
                held.push(sock);
                continue;
            };
            n += 1;
            let log = log.clone();
            tokio::spawn(async move {
                let (head, body) = read_request(&mut sock).await;
                log.lock().expect("log").push((head, body));
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = sock.write_all(answer.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, seen)
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> (String, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = sock.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                return (head, body);
            }
        }
    }
    (String::from_utf8_lossy(&buf).to_string(), String::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_retried_until_it_succeeds_and_fails_within_its_time() {
    let mut h = Harness::new(&[], 1);
    let (url, seen) = receiver(vec![500, 500, 200]).await;
    let outcome = intervene(
        &h,
        Action::Webhook {
            url: url.clone(),
            headers: vec![("X-Token".into(), "s3cret".into())],
            timeout: Duration::from_secs(5),
            retries: 3,
        },
    )
    .await;
    let seen = seen.lock().expect("seen").clone();
    println!(
        "webhook answered 500, 500, 200: {outcome:?} after {} requests",
        seen.len()
    );
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(seen.len(), 3);
    let (head, body) = &seen[2];
    println!("the last request:\n{head}\n\n{body}");
    assert!(head.starts_with("POST /hook "), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("x-token: s3cret"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let json: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(
        json,
        serde_json::json!({
            "monitor": "api-health",
            "state": "unhealthy",
            "cause": { "condition": "[STATUS] == 200", "seen": "503" },
            "incident": 7,
        })
    );

    // Always 500: every try is made, then it fails with the last status.
    let (url, seen) = receiver(vec![500]).await;
    let outcome = intervene(
        &h,
        Action::Webhook {
            url: url.clone(),
            headers: vec![],
            timeout: Duration::from_secs(5),
            retries: 2,
        },
    )
    .await;
    println!("webhook that always answers 500: {outcome:?}");
    assert_eq!(seen.lock().expect("seen").len(), 3);
    assert_eq!(
        outcome,
        Outcome::Failed(format!(
            "webhook POST {url} failed after 3 tries: answered 500"
        ))
    );

    // Never answers: each try ends at its timeout, and the attempt fails naming the URL.
    let (url, _) = receiver(vec![]).await;
    let t0 = Instant::now();
    let outcome = intervene(
        &h,
        Action::Webhook {
            url: url.clone(),
            headers: vec![],
            timeout: Duration::from_millis(400),
            retries: 1,
        },
    )
    .await;
    println!(
        "webhook that never answers: {outcome:?} after {:?}",
        t0.elapsed()
    );
    let Outcome::Failed(why) = outcome else {
        panic!("a silent receiver must fail the attempt")
    };
    assert!(
        why.starts_with(&format!(
            "webhook POST {url} failed after 2 tries: timed out"
        )),
        "{why}"
    );
    let _ = h.finish().await;
}
