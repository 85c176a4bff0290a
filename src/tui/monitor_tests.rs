//! The Monitors pane, the incidents view and the Overview's monitors on `TestBackend`, fed
//! from a board filled as the `fake-monitors` failure point fills it; snapshots in
//! `tests/snapshots/console/` (`UPDATE_SNAPSHOTS=1` rewrites them).

use std::path::PathBuf;

use chrono::{DateTime, TimeZone, Utc};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, AppConfig, Effect, Purpose};
use super::keymap::Pane;
use super::tests::{check_snapshot, screen};
use super::theme::Theme;
use crate::principal::fake_monitors;
use crate::protocol::api::{Request, Response};
use crate::protocol::board::MonitorBoard;
use crate::protocol::monitor::{MonitorAction, MonitorState};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 14, 15, 0, 0)
        .single()
        .expect("valid time")
}

fn app(read_only: bool) -> App {
    let config = AppConfig {
        read_only: read_only.then(|| "the console was started with --read-only".to_string()),
        owns_principal: true,
        themes_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/themes")),
        no_color: true,
        origin: "embedded".into(),
        local_time: false,
    };
    App::new(config, Theme::monochrome(), now())
}

fn board(n: usize) -> MonitorBoard {
    let mut b = MonitorBoard::default();
    fake_monitors::fill(&mut b, n, now());
    b
}

/// Answers every monitor request of `effects` from `board` as the principal would (a fake
/// actor: running), and what those answers ask for in turn.
fn serve(app: &mut App, board: &MonitorBoard, effects: Vec<Effect>) {
    let mut queue = effects;
    let mut rounds = 0;
    while !queue.is_empty() && rounds < 10 {
        rounds += 1;
        let mut next = Vec::new();
        for e in queue {
            let Effect::Call(request, purpose) = e else {
                continue;
            };
            let response = match request {
                Request::Monitors {
                    filter,
                    offset,
                    limit,
                } => {
                    let mut page = board.page(&filter, offset, limit);
                    page.running = true;
                    Response::Monitors(page)
                }
                Request::Monitor { name } => match fake_monitors::detail_of(board, &name, now()) {
                    Ok(d) => Response::Monitor(Box::new(d)),
                    Err(e) => Response::Error(e),
                },
                Request::Incidents { open_only, limit } => Response::Incidents {
                    incidents: board.incidents(open_only, limit),
                },
                _ => continue,
            };
            next.extend(app.on_response(purpose, Ok(response)));
        }
        queue = next;
    }
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

/// The console on the Monitors pane with `n` fake monitors read.
fn on_monitors(n: usize) -> (App, MonitorBoard) {
    let b = board(n);
    let mut app = app(false);
    let effects = app.on_key(key('9'));
    assert_eq!(app.view.pane, Pane::Monitors);
    serve(&mut app, &b, effects);
    (app, b)
}

#[test]
fn the_monitors_pane_lists_coloured_rows_with_counts_and_the_selected_detail() {
    let (mut app, _) = on_monitors(200);
    let s = screen(&mut app, 140, 40);
    assert!(
        s.contains("Monitors 200 — 4 unhealthy · 4 degraded · 4 unknown · 176 healthy"),
        "{s}"
    );
    assert!(s.contains("✗ [STATUS] == 200  saw [STATUS] = 503"), "{s}");
    assert!(s.contains("incident #1"), "{s}");
    check_snapshot("monitors", &s);
}

#[test]
fn the_incidents_view_lists_open_first_then_recent() {
    let (mut app, b) = on_monitors(200);
    let effects = app.on_key(key('i'));
    serve(&mut app, &b, effects);
    let s = screen(&mut app, 140, 24);
    assert!(s.contains("Incidents — 4 open, 4 recent"), "{s}");
    let first_closed = s.find("closed").expect("closed listed");
    assert!(s.rfind(" open ").is_some_and(|o| o < first_closed), "{s}");
    check_snapshot("monitors_incidents", &s);
    // Enter: the incident's monitor in the list.
    let effects = app.on_key(code(KeyCode::Enter));
    serve(&mut app, &b, effects);
    assert!(!app.view.monitors.incidents);
    assert_eq!(app.view.filter(Pane::Monitors), "mon-000000");
    assert_eq!(
        app.selected_monitor().map(|m| m.name.as_str()),
        Some("mon-000000")
    );
}

#[test]
fn the_overview_counts_monitors_per_state_and_lists_open_incidents() {
    let b = board(200);
    let mut app = app(false);
    let effects = app.refresh_effects();
    serve(&mut app, &b, effects);
    let s = screen(&mut app, 120, 30);
    assert!(s.contains("200 monitors: 4 unhealthy  4 degraded"), "{s}");
    assert!(
        s.contains("#1    mon-000000 [STATUS] == 200 (saw [STATUS] = 503)"),
        "{s}"
    );
    check_snapshot("overview_monitors", &s);
}

#[test]
fn keys_check_pause_resume_and_open_the_incident() {
    let (mut app, _) = on_monitors(200);
    let call = |effects: Vec<Effect>| match effects.as_slice() {
        [Effect::Call(Request::MonitorControl { name, action }, Purpose::MonitorControl(..))] => {
            (name.clone(), *action)
        }
        other => panic!("expected a control call, got {other:?}"),
    };
    assert_eq!(
        call(app.on_key(key('c'))),
        ("mon-000000".into(), MonitorAction::Check)
    );
    assert_eq!(
        call(app.on_key(key('p'))),
        ("mon-000000".into(), MonitorAction::Pause)
    );
    // mon-000004 is paused: `p` resumes it.
    for _ in 0..4 {
        app.on_key(code(KeyCode::Down));
    }
    assert_eq!(
        app.selected_monitor().map(|m| m.state),
        Some(MonitorState::Paused)
    );
    assert_eq!(
        call(app.on_key(key('p'))),
        ("mon-000004".into(), MonitorAction::Resume)
    );
    // `o` on a monitor without an incident says so; on mon-000000 it opens its incident.
    app.on_key(key('o'));
    assert!(!app.view.monitors.incidents);
    app.on_key(key('g'));
    app.on_key(key('o'));
    assert!(app.view.monitors.incidents);
    assert_eq!(app.view.monitors.incident_selected, 0);
    // Read-only: no control.
    let mut ro = app_read_only();
    assert!(ro.on_key(key('p')).is_empty());
    assert!(
        ro.view
            .message
            .as_ref()
            .is_some_and(|m| m.text.contains("disabled"))
    );
}

fn app_read_only() -> App {
    let b = board(10);
    let mut app = app(true);
    let effects = app.on_key(key('9'));
    serve(&mut app, &b, effects);
    app
}

#[test]
fn the_filter_reads_the_list_again_by_state_tag_and_name() {
    let (mut app, b) = on_monitors(200);
    let mut effects = app.on_key(key('/'));
    for c in "unhealthy tag:us".chars() {
        effects = app.on_key(key(c));
    }
    match effects.as_slice() {
        [
            Effect::Call(
                Request::Monitors {
                    filter, offset: 0, ..
                },
                _,
            ),
            ..,
        ] => {
            assert_eq!(filter.state, Some(MonitorState::Unhealthy));
            assert_eq!(filter.tag.as_deref(), Some("us"));
        }
        other => panic!("expected a read of the list, got {other:?}"),
    }
    serve(&mut app, &b, effects);
    app.on_key(code(KeyCode::Enter));
    let s = screen(&mut app, 140, 40);
    // Every fiftieth is unhealthy, all of them even: none in `us`.
    assert!(s.contains("nothing matches"), "{s}");
}

#[test]
fn a_million_monitors_are_read_a_window_at_a_time() {
    let (mut app, b) = on_monitors(1_000_000);
    let window = app.data.monitors.window.as_ref().expect("read");
    assert_eq!(window.matched, 1_000_000);
    assert!(window.monitors.len() <= super::panes::monitors::WINDOW);
    let s = screen(&mut app, 140, 40);
    assert!(s.contains("Monitors 1000000 — 20000 unhealthy"), "{s}");
    // The last row: one read of the window around it, not of everything before it.
    let effects = app.on_key(key('G'));
    let offset = match effects.as_slice() {
        [Effect::Call(Request::Monitors { offset, limit, .. }, _), ..] => {
            assert!(*limit <= super::panes::monitors::WINDOW);
            *offset
        }
        other => panic!("expected a window read, got {other:?}"),
    };
    assert!(
        offset >= 1_000_000 - super::panes::monitors::WINDOW,
        "{offset}"
    );
    // Until it comes, the rows in view show as not read yet; then the last one is selected.
    let s = screen(&mut app, 140, 40);
    assert!(s.contains('…'), "{s}");
    serve(&mut app, &b, effects);
    assert_eq!(
        app.selected_monitor().map(|m| m.name.as_str()),
        Some("mon-999999")
    );
    let s = screen(&mut app, 140, 40);
    assert!(s.contains("mon-999999"), "{s}");
    // Moving within the window reads nothing.
    assert!(
        app.on_key(code(KeyCode::Up))
            .iter()
            .all(|e| !matches!(e, Effect::Call(Request::Monitors { .. }, _)))
    );
}
