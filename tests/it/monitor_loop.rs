//! The whole monitor loop with real processes (issue 21 item 3): a supervised HTTP service on
//! 127.0.0.1 is frozen with SIGSTOP -> its monitor turns unhealthy after the threshold -> the
//! intervention restarts it through the supervision machine (a new pid) -> healthy -> the
//! incident closes with the restart on it, Succeeded.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use opsconsole::protocol::Event;
use opsconsole::protocol::api::{Client, Request, Response};
use opsconsole::protocol::monitor::{Incident, MonitorChange, MonitorState, Outcome};
use opsconsole::protocol::service::ServiceState;
use tokio::sync::broadcast::error::TryRecvError;

use crate::common::Harness;
use crate::common::project::signal;

async fn call(h: &Harness, request: Request) -> Response {
    h.principal()
        .call(request)
        .await
        .expect("principal answers")
}

async fn api(h: &Harness) -> (ServiceState, Option<u32>) {
    match call(
        h,
        Request::Services {
            path: Some("web/api".into()),
        },
    )
    .await
    {
        Response::Services { nodes } => nodes
            .into_iter()
            .find(|n| n.path == "web/api")
            .map(|n| (n.state, n.pid))
            .unwrap_or((ServiceState::Stopped, None)),
        other => panic!("services: {other:?}"),
    }
}

async fn state(h: &Harness) -> Option<MonitorState> {
    match call(
        h,
        Request::Monitor {
            name: "web-api".into(),
        },
    )
    .await
    {
        Response::Monitor(d) => Some(d.summary.state),
        _ => None,
    }
}

async fn incidents(h: &Harness) -> Vec<Incident> {
    match call(
        h,
        Request::Incidents {
            open_only: false,
            limit: 10,
        },
    )
    .await
    {
        Response::Incidents { incidents } => incidents,
        other => panic!("incidents: {other:?}"),
    }
}

/// The real interpreter behind `python3` (a pyenv shim would stand between the pid and it).
fn python() -> Option<String> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !path.is_empty()).then_some(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_service_is_restarted_by_its_monitor_and_the_incident_closes() {
    let Some(python) = python() else {
        crate::common::skip("python3 is not installed");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let web = format!(
        "kind: supervisor\nname: web\nstrategy: one_for_one\nintensity: 5\nperiod: 30s\n\
         children:\n  - {{ name: api, run: [\"{python}\", \"-m\", \"http.server\", \"{port}\", \
         \"--bind\", \"127.0.0.1\"], ready: {{ tcp: \"127.0.0.1:{port}\" }}, \
         stop: {{ grace: 1s }} }}\n"
    );
    let monitor = format!(
        "kind: monitor\nname: web-api\nevery: 1s\ntimeout: 500ms\n\
         check: {{ http: {{ url: \"http://127.0.0.1:{port}/\" }} }}\n\
         conditions: [\"[STATUS] == 200\"]\nunhealthy_after: 2\nhealthy_after: 2\n\
         on_unhealthy: [ {{ restart: web/api }} ]\n"
    );
    let mut h = Harness::with_files(&[("web.yaml", &web), ("web-api.yaml", &monitor)], 2);
    let mut events = h.principal().subscribe();
    let t0 = Instant::now();
    let mut timeline: Vec<String> = Vec::new();
    let mut note = |t0: Instant, what: String| {
        let line = format!("{:>6.1}s  {what}", t0.elapsed().as_secs_f64());
        println!("{line}");
        timeline.push(line);
    };

    // Up and healthy first.
    let mut pid = None;
    let mut last = None;
    while t0.elapsed() < Duration::from_secs(60) {
        let (s, p) = api(&h).await;
        let m = state(&h).await;
        if m != last {
            note(t0, format!("monitor web-api: {m:?}"));
            last = m;
        }
        if s == ServiceState::Running && m == Some(MonitorState::Healthy) {
            pid = p;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pid = pid.expect("web/api running and its monitor healthy within 60 s");
    note(t0, format!("web/api runs as pid {pid}; SIGSTOP to it"));
    signal(pid, Signal::SIGSTOP).expect("SIGSTOP");

    // Then: unhealthy, restarted (a new pid), healthy again, incident closed.
    let mut closed = None;
    let mut new_pid = None;
    while t0.elapsed() < Duration::from_secs(120) {
        let m = state(&h).await;
        if m != last {
            note(t0, format!("monitor web-api: {m:?}"));
            last = m;
        }
        let (s, p) = api(&h).await;
        if p.is_some() && p != Some(pid) && new_pid != p {
            note(
                t0,
                format!("web/api runs again as pid {} ({s:?})", p.unwrap_or(0)),
            );
            new_pid = p;
        }
        if let Some(i) = incidents(&h).await.into_iter().find(|i| i.closed.is_some()) {
            closed = Some(i);
            if m == Some(MonitorState::Healthy) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = signal(pid, Signal::SIGCONT);
    let incident = closed.expect("the incident closed within 120 s");
    let incident_id = incident.id;
    note(t0, "incident closed".into());
    println!(
        "incident #{} on {}: opened {}, closed {}, cause: {}",
        incident.id.0,
        incident.monitor,
        incident.opened.format("%H:%M:%S%.3f"),
        incident
            .closed
            .map(|c| c.format("%H:%M:%S%.3f").to_string())
            .unwrap_or_default(),
        incident.cause
    );
    for a in &incident.attempts {
        println!(
            "  attempt at {} on {:?}: {} -> {:?}",
            a.at.format("%H:%M:%S%.3f"),
            a.trigger,
            a.action,
            a.outcome
        );
    }
    assert!(new_pid.is_some(), "web/api never ran again: {timeline:#?}");
    assert_eq!(incident.monitor, "web-api");
    assert!(
        incident
            .attempts
            .iter()
            .any(|a| a.action == "restart web/api" && a.outcome == Outcome::Succeeded),
        "{incident:#?}"
    );
    assert_eq!(state(&h).await, Some(MonitorState::Healthy));
    // Faces heard each change as it happened: the events carry the monitor's story.
    let mut heard = Vec::new();
    loop {
        match events.try_recv() {
            Ok(Event::Monitor(n)) if n.monitor == "web-api" => heard.push(n.change),
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
            Err(_) => break,
        }
    }
    println!("events: {heard:?}");
    let opened = heard.iter().position(
        |c| matches!(c, MonitorChange::IncidentOpened { incident, .. } if *incident == incident_id),
    );
    let unhealthy = heard.iter().position(|c| {
        matches!(
            c,
            MonitorChange::State {
                state: MonitorState::Unhealthy,
                ..
            }
        )
    });
    let closed_at = heard.iter().position(
        |c| matches!(c, MonitorChange::IncidentClosed { incident, .. } if *incident == incident_id),
    );
    assert!(
        unhealthy.is_some() && opened.is_some() && closed_at > opened,
        "unhealthy, then the incident opened, then closed: {heard:?}"
    );
    assert!(
        heard
            .iter()
            .any(|c| matches!(c, MonitorChange::Attempt { incident, .. } if *incident == Some(incident_id))),
        "the restart attempt was heard: {heard:?}"
    );
    // Recorded as the monitor's doing.
    if let Response::Actions { actions } = call(&h, Request::Actions { limit: 10 }).await {
        for a in &actions {
            println!(
                "action: {} {} {} {}",
                a.at.format("%H:%M:%S%.3f"),
                a.by,
                a.action,
                a.target
            );
        }
        assert!(
            actions
                .iter()
                .any(|a| a.by == "monitor:web-api" && a.action == "restart"),
            "{actions:?}"
        );
    }
    let _ = h.finish().await;
}
