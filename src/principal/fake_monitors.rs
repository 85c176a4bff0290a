//! The `fake-monitors` failure point: a board of N made-up monitors in every state, with
//! incidents, and a small actor that answers detail and control, so that the monitor faces
//! can be tested before the real monitor actor exists. `OPSCONSOLE_FAKE_MONITORS=N` sets N
//! (default [`DEFAULT_COUNT`]). Never used outside tests.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::protocol::api::{ApiError, ApiErrorKind};
use crate::protocol::board::{BoardId, MonitorBoard, MonitorCommand, MonitorLink};
use crate::protocol::monitor::{
    Attempt, Cause, ConditionSeen, Incident, IncidentId, LocationSeen, MonitorAction,
    MonitorDetail, MonitorState, Outcome, ResultSeen, Trigger,
};

/// Monitors on the board unless `OPSCONSOLE_FAKE_MONITORS` says otherwise.
pub const DEFAULT_COUNT: usize = 200;

const KINDS: [&str; 5] = ["http", "tcp", "dns", "tls", "icmp"];

/// The link to a fake board when the failure point is on.
pub(crate) fn from_failpoint() -> Option<MonitorLink> {
    if !crate::failpoint::hit("fake-monitors") {
        return None;
    }
    let n = std::env::var("OPSCONSOLE_FAKE_MONITORS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_COUNT);
    Some(start(n, Utc::now()))
}

/// The name of fake monitor `i`.
pub fn name(i: usize) -> String {
    format!("mon-{i:06}")
}

/// The state of fake monitor `i`: every 50, one of each state but healthy; the rest healthy
/// (one of them flapping); an unhealthy one in two has an intervention running.
pub fn state(i: usize) -> (MonitorState, bool, bool) {
    match i % 50 {
        0 => (MonitorState::Unhealthy, false, i.is_multiple_of(100)),
        1 => (MonitorState::Degraded, false, false),
        2 => (MonitorState::Blocked, false, false),
        3 => (MonitorState::Maintenance, false, false),
        4 => (MonitorState::Paused, false, false),
        5 => (MonitorState::Unknown, false, false),
        7 => (MonitorState::Healthy, true, false),
        _ => (MonitorState::Healthy, false, false),
    }
}

/// A board of `n` fake monitors as of `now`, and an actor serving it.
pub(crate) fn start(n: usize, now: DateTime<Utc>) -> MonitorLink {
    let board = MonitorBoard::shared();
    let (link, rx) = MonitorLink::new(board);
    fill(&mut link.write(), n, now);
    tokio::spawn(serve(link.clone(), rx));
    link
}

fn cause() -> Cause {
    Cause {
        condition: "[STATUS] == 200".into(),
        seen: "[STATUS] = 503".into(),
    }
}

/// Fills `board` with `n` fake monitors and their incidents.
pub fn fill(board: &mut MonitorBoard, n: usize, now: DateTime<Utc>) {
    for i in 0..n {
        let mut tags = vec![if i.is_multiple_of(2) { "eu" } else { "us" }.to_string()];
        if i.is_multiple_of(3) {
            tags.push("web".into());
        }
        let id = board.upsert(&name(i), KINDS[i % KINDS.len()], &tags);
        let (state, flapping, intervening) = state(i);
        board.set_state(id, state, flapping, intervening);
        if state == MonitorState::Paused || state == MonitorState::Unknown {
            continue;
        }
        let failing = matches!(state, MonitorState::Unhealthy | MonitorState::Degraded);
        board.set_check(
            id,
            now - chrono::Duration::seconds((i % 60) as i64),
            Some(Duration::from_millis(10 + (i % 90) as u64)),
            failing.then(cause),
        );
        if state == MonitorState::Unhealthy {
            board.put_incident(incident(i, now, None, intervening));
        } else if state == MonitorState::Degraded {
            // A closed incident for the Incidents view's recent part.
            let opened = now - chrono::Duration::minutes(90);
            board.put_incident(incident(i, opened, Some(now), false));
        }
    }
}

fn incident(
    i: usize,
    opened: DateTime<Utc>,
    closed: Option<DateTime<Utc>>,
    running: bool,
) -> Incident {
    Incident {
        id: IncidentId(i as u64 + 1),
        monitor: name(i),
        opened: opened - chrono::Duration::minutes(5),
        closed,
        cause: cause(),
        attempts: vec![Attempt {
            at: opened - chrono::Duration::minutes(4),
            trigger: Trigger::Unhealthy,
            action: "restart web/api".into(),
            outcome: if running {
                Outcome::Started
            } else {
                Outcome::Failed("held: intensity reached".into())
            },
        }],
    }
}

/// Answers the engine as the monitor actor would.
async fn serve(link: MonitorLink, mut rx: mpsc::Receiver<MonitorCommand>) {
    while let Some(cmd) = rx.recv().await {
        match cmd {
            MonitorCommand::Control {
                name,
                action,
                reply,
            } => {
                let _ = reply.send(control(&link, &name, action));
            }
            MonitorCommand::Detail { name, reply } => {
                let _ = reply.send(detail(&link, &name, Utc::now()));
            }
            // No fake monitor is a push monitor (the engine refuses pings for them first).
            MonitorCommand::Ping { name, reply, .. } => {
                let _ = reply.send(Err(ApiError::new(
                    ApiErrorKind::InvalidInput,
                    format!("monitor `{name}` is not a push monitor"),
                )));
            }
        }
    }
}

fn unknown(name: &str) -> ApiError {
    ApiError::new(
        ApiErrorKind::NotFound,
        format!("no monitor named `{}`", crate::protocol::shown_name(name)),
    )
}

fn control(
    link: &MonitorLink,
    name: &str,
    action: MonitorAction,
) -> Result<crate::protocol::monitor::MonitorSummary, ApiError> {
    let mut board = link.write();
    let id: BoardId = board.id(name).ok_or_else(|| unknown(name))?;
    match action {
        MonitorAction::Pause => board.set_state(id, MonitorState::Paused, false, false),
        MonitorAction::Resume => board.set_state(id, MonitorState::Unknown, false, false),
        MonitorAction::Check => {
            board.set_check(id, Utc::now(), Some(Duration::from_millis(12)), None)
        }
    }
    board.summary(id).ok_or_else(|| unknown(name))
}

fn detail(link: &MonitorLink, name: &str, now: DateTime<Utc>) -> Result<MonitorDetail, ApiError> {
    detail_of(&link.read(), name, now)
}

/// The made-up detail of fake monitor `name` on `board` as of `now`.
pub fn detail_of(
    board: &MonitorBoard,
    name: &str,
    now: DateTime<Utc>,
) -> Result<MonitorDetail, ApiError> {
    let summary = board.get(name).ok_or_else(|| unknown(name))?;
    let failing = matches!(
        summary.state,
        MonitorState::Unhealthy | MonitorState::Degraded
    );
    let results = (0..10)
        .map(|k| ResultSeen {
            at: now - chrono::Duration::seconds(30 * k),
            ok: !failing || k > 3,
            response: Some(Duration::from_millis(20 + 7 * k as u64)),
            location: Some(if k % 2 == 0 { "region=eu" } else { "region=us" }.into()),
            message: (failing && k <= 3).then(|| cause().to_string()),
        })
        .collect();
    let status = if failing { "503" } else { "200" };
    let conditions = vec![
        ConditionSeen {
            condition: "[STATUS] == 200".into(),
            ok: !failing,
            seen: format!("[STATUS] = {status}"),
            degraded_when: false,
        },
        ConditionSeen {
            condition: "[RESPONSE_TIME] < 300".into(),
            ok: true,
            seen: "[RESPONSE_TIME] = 42".into(),
            degraded_when: false,
        },
    ];
    let series_ms = (0..60)
        .map(|k: u32| (k % 17 != 16).then_some(20 + (k * 37) % 90))
        .collect();
    let locations = ["region=eu", "region=us"]
        .iter()
        .enumerate()
        .map(|(k, l)| LocationSeen {
            location: (*l).into(),
            ok: Some(!(failing && k == 0)),
            at: Some(now),
            seen: format!(
                "[STATUS] = {}",
                if failing && k == 0 { "503" } else { "200" }
            ),
        })
        .collect();
    let incident = summary.incident.and_then(|id| board.incident(id).cloned());
    Ok(MonitorDetail {
        summary,
        results,
        conditions,
        series_ms,
        locations,
        incident,
    })
}
