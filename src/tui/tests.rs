//! Console state, keys and rendering without a terminal: unit tests of the key handling and
//! snapshot tests of every pane on ratatui's `TestBackend`, with fixed data and a fixed "now".
//!
//! Snapshots live in `tests/snapshots/console/`; `UPDATE_SNAPSHOTS=1` rewrites them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::{App, AppConfig, Effect, Purpose};
use super::dialogs::Modal;
use super::dialogs::confirm::Confirmed;
use super::keymap::{Context, Pane};
use super::logs::PageKind;
use super::render;
use super::theme::Theme;
use crate::protocol::agent::{AgentId, AgentInfo, AgentState, AgentStatus, WorkId};
use crate::protocol::api::{
    QueueReport, QueuedRun, QueuedTask, Request, Response, RunDetail, StatusReport, TaskDetail,
    TaskNode, WorkflowInfo, WorkflowStatus,
};
use crate::protocol::history::{RunSummary, StoredLine};
use crate::protocol::service::{ServiceAction, ServiceLogBatch, ServiceNode, ServiceState};
use crate::protocol::{AttemptKey, Event, LogBatch, LogLine, RunId, RunState, Stream, TaskState};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 14, 15, 0, 0)
        .single()
        .expect("valid time")
}

fn ago(secs: i64) -> DateTime<Utc> {
    now() - Duration::seconds(secs)
}

fn config(read_only: bool) -> AppConfig {
    AppConfig {
        read_only: read_only.then(|| "the console was started with --read-only".to_string()),
        owns_principal: true,
        themes_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/themes")),
        no_color: true,
        origin: "embedded".into(),
        local_time: false,
    }
}

fn run(id: u64, wf: &str, state: RunState, started: i64, took: Option<f64>) -> RunSummary {
    RunSummary {
        run_id: RunId(id),
        workflow: wf.into(),
        state,
        created_at: ago(started),
        started_at: Some(ago(started)),
        ended_at: took.map(|t| ago(started) + Duration::milliseconds((t * 1000.0) as i64)),
        duration_secs: took,
        failed_tasks: if state == RunState::Failed {
            vec!["validate".into()]
        } else {
            Vec::new()
        },
        message: None,
        triggered_by: None,
    }
}

fn task(name: &str, deps: &[&str], state: TaskState, secs: Option<(i64, i64)>) -> TaskDetail {
    TaskDetail {
        name: name.into(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        state,
        attempt: u32::from(state != TaskState::Pending),
        max_attempts: 1,
        started_at: secs.map(|(s, _)| ago(s)),
        ended_at: secs.and_then(|(s, d)| (d > 0).then(|| ago(s) + Duration::seconds(d))),
    }
}

fn etl_detail() -> RunDetail {
    let mut flaky = task(
        "transform-events",
        &["extract"],
        TaskState::Retrying,
        Some((20, 2)),
    );
    flaky.attempt = 2;
    flaky.max_attempts = 4;
    RunDetail {
        summary: run(7, "etl", RunState::Running, 60, None),
        params: vec![("region".into(), "eu".into())],
        tasks: vec![
            task("extract", &[], TaskState::Succeeded, Some((60, 12))),
            task(
                "transform-orders",
                &["extract"],
                TaskState::Succeeded,
                Some((48, 3)),
            ),
            task(
                "transform-users",
                &["extract"],
                TaskState::Running,
                Some((48, 0)),
            ),
            flaky,
            task(
                "load",
                &["transform-orders", "transform-users", "transform-events"],
                TaskState::Pending,
                None,
            ),
            task("report", &["load", "extract"], TaskState::Pending, None),
        ],
        attempts: Vec::new(),
    }
}

/// An app filled with the answers a principal would give.
fn app_with_data(read_only: bool) -> App {
    let mut app = App::new(config(read_only), Theme::monochrome(), now());
    let status = StatusReport {
        pid: 4242,
        agent_messages_refused: 0,
        peers_closed: None,
        requests: None,
        started_at: ago(3600),
        slots: 4,
        busy_slots: 1,
        queued_tasks: 1,
        workflows: vec![
            WorkflowStatus {
                name: "etl".into(),
                schedule: Some("0 2 * * *".into()),
                paused: false,
                next_fires: vec![
                    Utc.with_ymd_and_hms(2026, 3, 15, 2, 0, 0)
                        .single()
                        .expect("t"),
                ],
                active_runs: vec![RunId(7)],
            },
            WorkflowStatus {
                name: "failure".into(),
                schedule: None,
                paused: false,
                next_fires: Vec::new(),
                active_runs: Vec::new(),
            },
            WorkflowStatus {
                name: "nightly-report".into(),
                schedule: Some("30 6 * * 1-5".into()),
                paused: true,
                next_fires: vec![
                    Utc.with_ymd_and_hms(2026, 3, 16, 6, 30, 0)
                        .single()
                        .expect("t"),
                ],
                active_runs: Vec::new(),
            },
        ],
        spec_problems: Vec::new(),
        store_problem: None,
        role: None,
        agents_endpoint: None,
        curve: None,
    };
    let workflows = status
        .workflows
        .iter()
        .map(|w| WorkflowInfo {
            name: w.name.clone(),
            description: (w.name == "etl")
                .then(|| "Extract once, transform three ways, load".into()),
            file: format!("{}.yaml", w.name),
            params: if w.name == "etl" {
                BTreeMap::from([
                    ("batch".to_string(), "100".to_string()),
                    ("region".to_string(), "eu".to_string()),
                ])
            } else {
                BTreeMap::new()
            },
            tasks: if w.name == "etl" {
                etl_detail()
                    .tasks
                    .into_iter()
                    .map(|t| TaskNode {
                        name: t.name,
                        depends_on: t.depends_on,
                    })
                    .collect()
            } else {
                Vec::new()
            },
            schedule: w.schedule.clone(),
            paused: w.paused,
            next_fires: w.next_fires.clone(),
        })
        .collect();
    let runs = vec![
        run(7, "etl", RunState::Running, 60, None),
        run(6, "failure", RunState::Failed, 600, Some(1.5)),
        run(5, "etl", RunState::Succeeded, 1800, Some(14.2)),
        run(4, "etl", RunState::Succeeded, 5400, Some(11.8)),
        run(3, "failure", RunState::Failed, 9000, Some(1.2)),
        run(2, "etl", RunState::Failed, 12000, Some(30.0)),
        run(1, "etl", RunState::Succeeded, 15000, Some(9.7)),
    ];
    let answers = vec![
        (Purpose::Status, Response::Status(status)),
        (Purpose::Workflows, Response::Workflows { workflows }),
        (Purpose::History, Response::Runs { runs }),
        (
            Purpose::Queue,
            Response::Queue(QueueReport {
                held_runs: vec![QueuedRun {
                    run_id: RunId(8),
                    workflow: "etl".into(),
                }],
                ready_tasks: vec![
                    QueuedTask {
                        run_id: RunId(7),
                        workflow: "etl".into(),
                        task: "transform-events".into(),
                        attempt: 2,
                        waiting_for: None,
                    },
                    QueuedTask {
                        run_id: RunId(7),
                        workflow: "etl".into(),
                        task: "train".into(),
                        attempt: 1,
                        waiting_for: Some(
                            "waiting for an agent labelled gpu=h100: no connected agent that \
                             takes work has these labels"
                                .into(),
                        ),
                    },
                ],
            }),
        ),
        (Purpose::Agents, Response::Agents { agents: agents() }),
        (Purpose::Services, Response::Services { nodes: services() }),
    ];
    for (p, r) in answers {
        let _ = app.on_response(p, Ok(r));
    }
    let _ = app.on_response(
        Purpose::Detail(RunId(7)),
        Ok(Response::Run(Box::new(etl_detail()))),
    );
    app
}

fn agent(
    id: &str,
    address: &str,
    state: AgentState,
    (busy, slots): (usize, usize),
    heard_ms: Option<u64>,
    labels: &[(&str, &str)],
    running: Vec<WorkId>,
) -> AgentStatus {
    AgentStatus {
        info: AgentInfo {
            id: AgentId(id.into()),
            slots,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            version: "0.4.0".into(),
        },
        address: address.into(),
        state,
        busy,
        heartbeat_age_ms: heard_ms,
        joined_at: ago(3000),
        running,
        refused: 0,
        key: None,
    }
}

fn work(run: u64, task: &str, attempt: u32) -> WorkId {
    WorkId::Task(AttemptKey {
        run_id: RunId(run),
        task_idx: 0,
        task: Arc::from(task),
        attempt,
    })
}

/// The in-process pool and two remote agents, one cordoned and one lost.
fn agents() -> Vec<AgentStatus> {
    vec![
        agent(
            "local",
            "local",
            AgentState::Ready,
            (1, 4),
            None,
            &[("local", "true")],
            vec![work(7, "transform-users", 1)],
        ),
        agent(
            "gpu-1",
            "gpu-box (pid 881)",
            AgentState::Cordoned,
            (2, 2),
            Some(400),
            &[("gpu", "a100"), ("zone", "eu")],
            vec![work(7, "transform-events", 2), work(9, "train-model", 1)],
        ),
        agent(
            "edge-2",
            "edge-7 (pid 77)",
            AgentState::Lost,
            (0, 2),
            Some(95_000),
            &[("zone", "us")],
            Vec::new(),
        ),
    ]
}

fn node(path: &str, state: ServiceState) -> ServiceNode {
    ServiceNode::example(path, state)
}

fn supervisor(path: &str, state: ServiceState, restarts: u32) -> ServiceNode {
    ServiceNode {
        supervisor: true,
        restarts_in_period: Some(restarts),
        intensity: Some(5),
        pid: None,
        ..node(path, state)
    }
}

/// `web` (api with a ready check, the nested supervisor `jobs` with a worker backing off, a
/// held `cron`) and `cache`, which gave up.
fn services() -> Vec<ServiceNode> {
    vec![
        ServiceNode {
            up_since: Some(ago(3720)),
            ..supervisor("web", ServiceState::Running, 1)
        },
        ServiceNode {
            pid: Some(4301),
            up_since: Some(ago(3720)),
            has_ready_check: true,
            ..node("web/api", ServiceState::Running)
        },
        supervisor("web/jobs", ServiceState::Running, 2),
        ServiceNode {
            pid: Some(4310),
            up_since: Some(ago(600)),
            ..node("web/jobs/w1", ServiceState::Running)
        },
        ServiceNode {
            start_no: 3,
            restarts: 2,
            backoff_until: Some(now() + Duration::seconds(4)),
            last_exit: Some("exit code 1".into()),
            ..node("web/jobs/w2", ServiceState::BackingOff)
        },
        ServiceNode {
            held: true,
            last_exit: Some("killed by signal SIGTERM".into()),
            ..node("web/cron", ServiceState::Stopped)
        },
        supervisor("cache", ServiceState::Failed, 6),
        ServiceNode {
            restarts: 6,
            last_exit: Some("exit code 137".into()),
            ..node("cache/redis", ServiceState::Stopped)
        },
    ]
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn type_str(app: &mut App, s: &str) -> Vec<Effect> {
    s.chars().flat_map(|c| app.on_key(key(c))).collect()
}

/// The screen as text, trailing spaces removed.
pub(super) fn screen(app: &mut App, w: u16, h: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    app.fit(ratatui::layout::Rect::new(0, 0, w, h));
    terminal.draw(|f| render::draw(f, app)).expect("draw");
    let buf = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..h {
        let mut line = String::new();
        for x in 0..w {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub(super) fn check_snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/snapshots/console"
    ))
    .join(format!("{name}.txt"));
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() || !path.exists() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(&path).expect("read snapshot");
    assert!(
        expected == actual,
        "snapshot {name} differs (UPDATE_SNAPSHOTS=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

fn logs_app() -> App {
    let mut app = app_with_data(false);
    let effects = app.open_logs(RunId(7), None);
    let generation = match effects.first() {
        Some(Effect::Call(_, Purpose::Logs { generation, .. })) => *generation,
        other => panic!("expected a logs request, got {other:?}"),
    };
    let line = |task: &str, stream: Stream, secs: i64, text: &str| StoredLine {
        seq: 0,
        task: task.into(),
        attempt: 1,
        stream,
        at: ago(secs),
        line: text.into(),
    };
    let lines = vec![
        line(
            "extract",
            Stream::Stdout,
            60,
            "extracting 100 rows for region eu",
        ),
        line(
            "extract",
            Stream::Stdout,
            55,
            "\x1b[32mok\x1b[0m 100 rows written to /tmp/extract.csv",
        ),
        line(
            "transform-orders",
            Stream::Stdout,
            48,
            "transform orders of run 7",
        ),
        line(
            "transform-events",
            Stream::Stderr,
            47,
            "a warning on stderr: upstream slow",
        ),
        line(
            "transform-users",
            Stream::Stdout,
            46,
            "a very long line that goes on and on to show what wrapping does to lines wider than the pane, with more words",
        ),
    ];
    let _ = app.on_response(
        Purpose::Logs {
            generation,
            kind: PageKind::Tail,
            offset: 0,
        },
        Ok(Response::Lines {
            lines,
            more: false,
            first: 0,
        }),
    );
    // A live line after the stored ones.
    app.on_event(Event::Logs(Arc::new(LogBatch {
        key: AttemptKey {
            run_id: RunId(7),
            task_idx: 2,
            task: Arc::from("transform-users"),
            attempt: 1,
        },
        stream: Stream::Stdout,
        charge: Default::default(),
        lines: vec![LogLine {
            seq: 1,
            at: ago(10),
            text: "users transformed: 42".into(),
        }],
    })));
    app
}

// ----- snapshots -----

#[test]
fn snapshot_every_pane_at_80x24_and_120x40() {
    for (w, h) in [(80u16, 24u16), (120, 40)] {
        for pane in Pane::ALL {
            let mut app = if pane == Pane::Logs {
                logs_app()
            } else {
                app_with_data(false)
            };
            app.view.pane = pane;
            let text = screen(&mut app, w, h);
            check_snapshot(&format!("{}-{w}x{h}", pane.name()), &text);
        }
    }
}

#[test]
fn snapshot_dag_focused_with_a_selected_task() {
    let mut app = app_with_data(false);
    app.view.pane = Pane::Runs;
    app.on_key(code(KeyCode::Enter));
    assert_eq!(app.context(), Context::Dag);
    app.on_key(key('l'));
    app.on_key(key('j'));
    check_snapshot("dag-focused-100x30", &screen(&mut app, 100, 30));
}

#[test]
fn snapshot_dialogs() {
    let mut app = app_with_data(false);
    app.view.pane = Pane::Workflows;
    app.on_key(key('t'));
    check_snapshot("trigger-form-80x24", &screen(&mut app, 80, 24));

    let mut app = app_with_data(false);
    app.view.pane = Pane::Runs;
    app.on_key(key('?'));
    check_snapshot("help-runs-80x24", &screen(&mut app, 80, 24));

    let mut app = app_with_data(false);
    type_str(&mut app, ":w");
    check_snapshot("palette-80x24", &screen(&mut app, 80, 24));

    let mut app = logs_app();
    app.on_key(key('w'));
    app.on_key(key('T'));
    type_str(&mut app, "/warning");
    app.on_key(code(KeyCode::Enter));
    check_snapshot("logs-wrap-search-80x24", &screen(&mut app, 80, 24));
}

#[test]
fn a_small_terminal_says_so_instead_of_drawing_garbage() {
    let mut app = app_with_data(false);
    let text = screen(&mut app, 60, 20);
    assert!(
        text.contains("terminal too small (need 80x24, have 60x20)"),
        "{text}"
    );
    assert!(!text.contains("Overview"));
}

#[test]
fn a_dag_of_150_tasks_scrolls_with_the_selection() {
    let mut app = app_with_data(false);
    let mut detail = etl_detail();
    detail.tasks = (0..150)
        .map(|i| {
            let deps: Vec<String> = if i < 10 {
                Vec::new()
            } else {
                vec![format!("t{:03}", i % 10)]
            };
            TaskDetail {
                depends_on: deps,
                ..task(&format!("t{i:03}"), &[], TaskState::Pending, None)
            }
        })
        .collect();
    let _ = app.on_response(
        Purpose::Detail(RunId(7)),
        Ok(Response::Run(Box::new(detail))),
    );
    app.view.pane = Pane::Runs;
    app.on_key(code(KeyCode::Enter));
    app.on_key(key('l'));
    app.on_key(key('G'));
    let text = screen(&mut app, 80, 24);
    assert!(
        text.contains("t149"),
        "the last task is scrolled into view:\n{text}"
    );
    assert!(
        !text.contains("t000"),
        "the first is scrolled away:\n{text}"
    );
}

// ----- keys and state -----

#[test]
fn tab_cycles_through_every_pane_and_back() {
    let mut app = app_with_data(false);
    let mut seen = vec![app.view.pane];
    for _ in 0..Pane::ALL.len() {
        app.on_key(code(KeyCode::Tab));
        seen.push(app.view.pane);
    }
    let n = Pane::ALL.len();
    assert_eq!(&seen[..n], &Pane::ALL);
    assert_eq!(seen[n], Pane::Overview);
    app.on_key(code(KeyCode::BackTab));
    assert_eq!(
        Some(&app.view.pane),
        Pane::ALL.last(),
        "back to the last pane"
    );
}

#[test]
fn slash_filters_the_focused_list_and_esc_clears_it() {
    let mut app = app_with_data(false);
    app.view.pane = Pane::Runs;
    assert_eq!(app.run_rows().len(), 7);
    app.on_key(key('/'));
    type_str(&mut app, "fail");
    assert!(matches!(app.view.modal, Some(Modal::Filter)));
    let ids: Vec<u64> = app.run_rows().iter().map(|r| r.run_id.0).collect();
    assert_eq!(ids, [6, 3, 2]);
    app.on_key(code(KeyCode::Enter));
    assert!(app.view.modal.is_none());
    assert_eq!(app.run_rows().len(), 3, "the filter stays after Enter");
    app.on_key(code(KeyCode::Esc));
    assert_eq!(app.run_rows().len(), 7);
}

#[test]
fn palette_completes_and_runs_commands() {
    let mut app = app_with_data(false);
    type_str(&mut app, ":wf e");
    app.on_key(code(KeyCode::Tab));
    match &app.view.modal {
        Some(Modal::Palette(p)) => assert_eq!(p.input, "wf etl"),
        other => panic!("palette expected, got {other:?}"),
    }
    app.on_key(code(KeyCode::Enter));
    assert_eq!(app.view.pane, Pane::Runs);
    assert!(app.run_rows().iter().all(|r| r.workflow == "etl"));

    type_str(&mut app, ":hist");
    app.on_key(code(KeyCode::Tab));
    app.on_key(code(KeyCode::Enter));
    assert_eq!(app.view.pane, Pane::History);

    type_str(&mut app, ":nope");
    app.on_key(code(KeyCode::Enter));
    let msg = app.view.message.clone().expect("an error");
    assert!(msg.error && msg.text.contains("unknown command"), "{msg:?}");
}

#[test]
fn q_asks_first_while_runs_are_active() {
    let mut app = app_with_data(false);
    assert_eq!(app.active_runs(), 1);
    let effects = app.on_key(key('q'));
    assert!(effects.is_empty());
    assert!(matches!(
        app.view.modal,
        Some(Modal::Confirm {
            then: Confirmed::Quit,
            ..
        })
    ));
    assert!(app.on_key(key('n')).is_empty());
    assert!(app.view.modal.is_none());
    app.on_key(key('q'));
    assert_eq!(app.on_key(key('y')), vec![Effect::Quit]);
}

#[test]
fn q_quits_at_once_when_nothing_runs() {
    let mut app = App::new(config(false), Theme::monochrome(), now());
    assert_eq!(app.on_key(key('q')), vec![Effect::Quit]);
}

#[test]
fn read_only_disables_actions_and_says_why() {
    let mut app = app_with_data(true);
    app.view.pane = Pane::Workflows;
    for k in ['t', 'p', 'e', 'n'] {
        let effects = app.on_key(key(k));
        assert!(effects.is_empty(), "{k}");
        assert!(app.view.modal.is_none(), "{k} opened a dialog");
        let msg = app.view.message.clone().expect("a message");
        assert!(msg.error && msg.text.contains("--read-only"), "{msg:?}");
    }
    app.view.pane = Pane::Runs;
    assert!(app.on_key(key('c')).is_empty());
    assert!(app.view.modal.is_none());
    // The hint bar shows them disabled; the help says why.
    let text = screen(&mut app, 100, 30);
    assert!(text.contains("[read-only]"));
    app.on_key(key('?'));
    let help = screen(&mut app, 100, 30);
    assert!(
        help.contains("are off: the console was started with"),
        "{help}"
    );
    assert!(help.contains("[disabled]"), "{help}");
}

#[test]
fn trigger_form_is_prefilled_and_sends_the_edited_params() {
    let mut app = app_with_data(false);
    app.view.pane = Pane::Workflows;
    // Rows are sorted by name: etl first.
    app.on_key(key('t'));
    let Some(Modal::Form(form)) = &app.view.modal else {
        panic!("form expected");
    };
    assert_eq!(form.workflow, "etl");
    assert_eq!(
        form.fields,
        vec![
            ("batch".into(), "100".into()),
            ("region".into(), "eu".into())
        ]
    );
    app.on_key(code(KeyCode::Down));
    app.on_key(code(KeyCode::Backspace));
    app.on_key(code(KeyCode::Backspace));
    type_str(&mut app, "us");
    let effects = app.on_key(code(KeyCode::Enter));
    let params = BTreeMap::from([
        ("batch".to_string(), "100".to_string()),
        ("region".to_string(), "us".to_string()),
    ]);
    assert_eq!(
        effects,
        vec![Effect::Call(
            Request::Trigger {
                workflow: "etl".into(),
                params
            },
            Purpose::Trigger("etl".into())
        )]
    );
    // The accepted run is selected in the runs pane, and its detail requested.
    let effects = app.on_response(
        Purpose::Trigger("etl".into()),
        Ok(Response::Accepted { run_id: RunId(9) }),
    );
    assert_eq!(app.view.pane, Pane::Runs);
    assert_eq!(app.view.selected_run, Some(RunId(9)));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Call(Request::RunDetail { run_id: RunId(9) }, _)))
    );
}

#[test]
fn cancel_asks_for_confirmation() {
    let mut app = app_with_data(false);
    app.view.pane = Pane::Runs;
    assert_eq!(app.view.selected_run, Some(RunId(7)));
    assert!(app.on_key(key('c')).is_empty());
    let effects = app.on_key(key('y'));
    assert_eq!(
        effects,
        vec![Effect::Call(
            Request::Cancel { run_id: RunId(7) },
            Purpose::Cancel(RunId(7))
        )]
    );
    // An ended run cannot be cancelled.
    app.on_key(key('j'));
    assert_eq!(app.view.selected_run, Some(RunId(6)));
    app.on_key(key('c'));
    assert!(app.view.modal.is_none());
}

#[test]
fn retry_pause_and_edit_send_their_requests() {
    let mut app = app_with_data(false);
    app.view.pane = Pane::Runs;
    app.on_key(key('j'));
    let effects = app.on_key(key('r'));
    assert_eq!(
        effects,
        vec![Effect::Call(
            Request::Retry { run_id: RunId(6) },
            Purpose::Retry(RunId(6))
        )]
    );
    app.view.pane = Pane::Workflows;
    app.on_key(key('j'));
    app.on_key(key('j'));
    assert_eq!(app.selected_workflow().as_deref(), Some("nightly-report"));
    let effects = app.on_key(key('p'));
    assert!(
        matches!(&effects[..], [Effect::Call(Request::Resume { workflow }, _)] if workflow == "nightly-report")
    );
    let effects = app.on_key(key('e'));
    assert!(
        matches!(&effects[..], [Effect::Call(Request::GetSpec { workflow }, _)] if workflow == "nightly-report")
    );
}

#[test]
fn editor_save_goes_through_put_spec_and_problems_are_reported() {
    let mut app = app_with_data(false);
    let _ = app.on_response(
        Purpose::GetSpec("etl".into()),
        Ok(Response::Spec {
            file: "etl.yaml".into(),
            text: "kind: workflow\nname: etl\ntasks: {}\n".into(),
            hash: Some("h1".into()),
        }),
    );
    assert!(app.view.editor.is_some());
    type_str(&mut app, "x");
    let effects = app.on_key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL));
    assert!(
        matches!(&effects[..], [Effect::Call(Request::PutSpec { file, text, base_hash }, _)] if file == "etl.yaml" && text.starts_with("xkind") && base_hash.as_deref() == Some("h1"))
    );
    let problem = crate::protocol::Diagnostic {
        file: "etl.yaml".into(),
        line: 1,
        col: 1,
        message: "unknown key `xkind`".into(),
        source_line: None,
    };
    app.on_response(
        Purpose::PutSpec("etl.yaml".into()),
        Ok(Response::SpecRejected {
            problems: vec![problem],
        }),
    );
    let msg = app.view.message.clone().expect("message");
    assert!(
        msg.error && msg.text.contains("etl.yaml:1:1: unknown key"),
        "{msg:?}"
    );
    // Esc with unsaved changes asks first.
    app.on_key(code(KeyCode::Esc));
    assert!(matches!(
        app.view.modal,
        Some(Modal::Confirm {
            then: Confirmed::DiscardEdits,
            ..
        })
    ));
    app.on_key(key('y'));
    assert!(app.view.editor.is_none());
}

#[test]
fn new_workflow_asks_for_a_file_name() {
    let mut app = app_with_data(false);
    app.view.pane = Pane::Workflows;
    app.on_key(key('n'));
    type_str(&mut app, "../x");
    app.on_key(code(KeyCode::Enter));
    assert!(app.view.editor.is_none(), "a path is refused");
    for _ in 0..4 {
        app.on_key(code(KeyCode::Backspace));
    }
    type_str(&mut app, "backup");
    app.on_key(code(KeyCode::Enter));
    let session = app.view.editor.as_ref().expect("editor open");
    assert_eq!(session.file, "backup.yaml");
}

fn ctrl_s() -> KeyEvent {
    KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL)
}

/// An app editing `etl.yaml` (opened with hash `h1`).
fn editing_etl() -> App {
    let mut app = app_with_data(false);
    let _ = app.on_response(
        Purpose::GetSpec("etl".into()),
        Ok(Response::Spec {
            file: "etl.yaml".into(),
            text: "kind: workflow\nname: etl\n".into(),
            hash: Some("h1".into()),
        }),
    );
    assert!(app.view.editor.is_some());
    app
}

/// The text and base hash of the one save in `effects`.
fn put_spec(effects: &[Effect]) -> (String, Option<String>) {
    match effects {
        [
            Effect::Call(
                Request::PutSpec {
                    text, base_hash, ..
                },
                Purpose::PutSpec(f),
            ),
        ] if f == "etl.yaml" => (text.clone(), base_hash.clone()),
        other => panic!("expected one PutSpec, got {other:?}"),
    }
}

fn saved(app: &mut App, hash: &str) {
    app.on_response(
        Purpose::PutSpec("etl.yaml".into()),
        Ok(Response::SpecSaved {
            file: "etl.yaml".into(),
            workflows: vec!["etl".into()],
            hash: Some(hash.into()),
        }),
    );
}

#[test]
fn edits_typed_while_saving_are_kept_and_esc_asks() {
    let mut app = editing_etl();
    type_str(&mut app, "#");
    let (text, base) = put_spec(&app.on_key(ctrl_s()));
    assert_eq!(
        (text.as_str(), base.as_deref()),
        ("#kind: workflow\nname: etl\n", Some("h1"))
    );
    // Typed before the answer comes.
    type_str(&mut app, "late");
    assert!(
        app.on_key(ctrl_s()).is_empty(),
        "no second save while one is on its way"
    );
    saved(&mut app, "h2");
    let editor = &app.view.editor.as_ref().expect("still open").editor;
    assert!(editor.is_dirty(), "`late` was not in the saved text");
    assert!(editor.text().starts_with("#late"), "{}", editor.text());
    app.on_key(code(KeyCode::Esc));
    assert!(
        matches!(
            app.view.modal,
            Some(Modal::Confirm {
                then: Confirmed::DiscardEdits,
                ..
            })
        ),
        "Esc asks before dropping the late edits"
    );
    app.on_key(key('n'));
    assert!(app.view.editor.is_some());
    // The next save replaces what the first one wrote.
    let (_, base) = put_spec(&app.on_key(ctrl_s()));
    assert_eq!(base.as_deref(), Some("h2"));
}

#[test]
fn a_file_changed_on_disk_offers_reload_or_overwrite() {
    let mut app = editing_etl();
    type_str(&mut app, "#");
    put_spec(&app.on_key(ctrl_s()));
    let conflict = || {
        Ok(Response::SpecConflict {
            file: "etl.yaml".into(),
            message: "etl.yaml changed on disk since it was opened".into(),
            hash: Some("disk".into()),
            text: Some("kind: workflow\nname: etl\n# theirs\n".into()),
        })
    };
    app.on_response(Purpose::PutSpec("etl.yaml".into()), conflict());
    assert!(
        matches!(app.view.modal, Some(Modal::SpecConflict(_))),
        "{:?}",
        app.view.modal
    );
    let msg = app.view.message.clone().expect("message");
    assert!(msg.error && msg.text.contains("changed on disk"), "{msg:?}");
    assert!(
        msg.text.contains("r reload") && msg.text.contains("o overwrite"),
        "{msg:?}"
    );
    let shown = screen(&mut app, 100, 30);
    assert!(
        shown.contains("Changed on disk") && shown.contains("overwrite"),
        "{shown}"
    );

    // Esc keeps editing; the edits are still there and still unsaved.
    app.on_key(code(KeyCode::Esc));
    assert!(app.view.modal.is_none());
    let editor = &app.view.editor.as_ref().expect("open").editor;
    assert!(editor.is_dirty() && editor.text().starts_with("#kind"));

    // Overwrite: the same text again, based on what is on disk now.
    put_spec(&app.on_key(ctrl_s()));
    app.on_response(Purpose::PutSpec("etl.yaml".into()), conflict());
    let (text, base) = put_spec(&app.on_key(key('o')));
    assert_eq!(
        (text.as_str(), base.as_deref()),
        ("#kind: workflow\nname: etl\n", Some("disk"))
    );
    saved(&mut app, "mine");
    assert!(!app.view.editor.as_ref().expect("open").editor.is_dirty());

    // Reload: the text on disk replaces the edits.
    type_str(&mut app, "x");
    put_spec(&app.on_key(ctrl_s()));
    app.on_response(Purpose::PutSpec("etl.yaml".into()), conflict());
    assert!(app.on_key(key('r')).is_empty());
    let editor = &app.view.editor.as_ref().expect("open").editor;
    assert_eq!(editor.text(), "kind: workflow\nname: etl\n# theirs\n");
    assert!(!editor.is_dirty());
    assert_eq!(editor.base_hash().as_deref(), Some("disk"));

    // A deleted file: nothing to reload; overwrite creates it anew.
    type_str(&mut app, "y");
    put_spec(&app.on_key(ctrl_s()));
    app.on_response(
        Purpose::PutSpec("etl.yaml".into()),
        Ok(Response::SpecConflict {
            file: "etl.yaml".into(),
            message: "etl.yaml was deleted since it was opened".into(),
            hash: None,
            text: None,
        }),
    );
    app.on_key(key('r'));
    assert!(
        matches!(app.view.modal, Some(Modal::SpecConflict(_))),
        "r does nothing"
    );
    let (_, base) = put_spec(&app.on_key(key('o')));
    assert_eq!(base, None, "sent as a new file");
}

#[test]
fn a_new_file_never_takes_an_existing_name() {
    let mut app = app_with_data(false);
    app.view.pane = Pane::Workflows;
    app.on_key(key('n'));
    type_str(&mut app, "etl");
    app.on_key(code(KeyCode::Enter));
    assert!(app.view.editor.is_none(), "etl.yaml holds workflow etl");
    assert!(
        matches!(app.view.modal, Some(Modal::FileName(_))),
        "still asking for a name"
    );
    let msg = app.view.message.clone().expect("message");
    assert!(
        msg.error && msg.text.contains("file exists: etl.yaml"),
        "{msg:?}"
    );
    type_str(&mut app, "2");
    app.on_key(code(KeyCode::Enter));
    let session = app.view.editor.as_ref().expect("editor open");
    assert_eq!(session.file, "etl2.yaml");

    // A file the console did not know of: the principal refuses; the text stays, and a save
    // can be tried again.
    let effects = app.on_key(ctrl_s());
    assert!(
        matches!(
            &effects[..],
            [Effect::Call(
                Request::PutSpec {
                    base_hash: None,
                    ..
                },
                _
            )]
        ),
        "{effects:?}"
    );
    app.on_response(
        Purpose::PutSpec("etl2.yaml".into()),
        Ok(Response::Error(crate::protocol::api::ApiError::new(
            crate::protocol::api::ApiErrorKind::Conflict,
            "file exists: etl2.yaml is already in the workflows directory",
        ))),
    );
    let msg = app.view.message.clone().expect("message");
    assert!(msg.error && msg.text.contains("file exists"), "{msg:?}");
    let session = app.view.editor.as_ref().expect("editor stays open");
    assert!(session.editor.is_dirty() && !session.editor.is_saving());
    assert_eq!(app.on_key(ctrl_s()).len(), 1, "can save again");
}

#[test]
fn opening_a_file_never_replaces_an_open_editor() {
    let mut app = editing_etl();
    type_str(&mut app, "mine");
    app.on_response(
        Purpose::GetSpec("failure".into()),
        Ok(Response::Spec {
            file: "failure.yaml".into(),
            text: "x".into(),
            hash: None,
        }),
    );
    let session = app.view.editor.as_ref().expect("open");
    assert_eq!(session.file, "etl.yaml");
    assert!(session.editor.text().starts_with("mine"));
    // An answer about a save of another file (an editor closed meanwhile) is not applied here.
    put_spec(&app.on_key(ctrl_s()));
    app.on_response(
        Purpose::PutSpec("failure.yaml".into()),
        Ok(Response::SpecSaved {
            file: "failure.yaml".into(),
            workflows: vec![],
            hash: None,
        }),
    );
    assert!(app.view.editor.as_ref().expect("open").editor.is_saving());
}

#[test]
fn events_update_runs_and_the_dag() {
    let mut app = app_with_data(false);
    app.on_event(Event::TaskState {
        key: AttemptKey {
            run_id: RunId(7),
            task_idx: 2,
            task: Arc::from("transform-users"),
            attempt: 1,
        },
        state: TaskState::Succeeded,
        at: ago(5),
        message: None,
    });
    let d = app.data.detail.as_ref().expect("detail");
    assert_eq!(d.tasks[2].state, TaskState::Succeeded);
    app.on_event(Event::RunCreated {
        run_id: RunId(8),
        workflow: Arc::from("etl"),
        params: Vec::new(),
        trigger: "schedule".into(),
        triggered_by: None,
        scheduled_for: None,
        at: now(),
    });
    assert_eq!(app.data.runs[0].run_id, RunId(8));
    assert_eq!(
        app.view.selected_run,
        Some(RunId(7)),
        "the selection stays on its run"
    );
    app.on_event(Event::RunState {
        run_id: RunId(7),
        workflow: Arc::from("etl"),
        state: RunState::Succeeded,
        at: now(),
        message: None,
    });
    assert_eq!(app.data.runs[1].state, RunState::Succeeded);
    assert!(app.refresh_wanted);
}

#[test]
fn logs_follow_scroll_search_and_page_older_lines() {
    let mut app = logs_app();
    assert_eq!(app.data.logs.lines().len(), 6);
    assert!(app.view.log_view.follow);
    type_str(&mut app, "/WARNING");
    app.on_key(code(KeyCode::Enter));
    assert_eq!(app.view.log_view.current_match, Some(3));
    assert!(
        !app.view.log_view.follow,
        "jumping to a match stops following"
    );
    app.on_key(key('G'));
    assert!(app.view.log_view.follow);
    app.on_key(key('f'));
    assert!(!app.view.log_view.follow);
    app.on_key(key('w'));
    assert!(app.view.log_view.wrap);
}

#[test]
fn mouse_wheel_moves_the_selection() {
    use ratatui::crossterm::event::{MouseEvent, MouseEventKind};
    let mut app = app_with_data(false);
    app.view.pane = Pane::Runs;
    let wheel = |kind| MouseEvent {
        kind,
        column: 10,
        row: 5,
        modifiers: KeyModifiers::NONE,
    };
    app.on_mouse(wheel(MouseEventKind::ScrollDown));
    assert_eq!(app.view.selected_run, Some(RunId(4)));
    app.on_mouse(wheel(MouseEventKind::ScrollUp));
    assert_eq!(app.view.selected_run, Some(RunId(7)));
}

#[test]
fn help_is_generated_from_the_key_table() {
    let mut app = app_with_data(false);
    app.view.pane = Pane::Logs;
    let lines = render::help_lines(&app);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    for b in super::panes::table()
        .bindings()
        .filter(|b| b.scope.applies(Context::Pane(Pane::Logs)))
    {
        assert!(text.contains(b.help), "help lacks `{}`", b.help);
    }
}

#[test]
fn help_lists_every_binding_of_every_context_and_hints_come_from_the_table() {
    for ctx in Pane::ALL
        .iter()
        .map(|p| Context::Pane(*p))
        .chain([Context::Dag])
    {
        let mut app = app_with_data(false);
        match ctx {
            Context::Pane(p) => app.view.pane = p,
            Context::Dag => {
                app.view.pane = Pane::Runs;
                app.on_key(code(KeyCode::Enter));
            }
        }
        assert_eq!(app.context(), ctx);
        let text: String = render::help_lines(&app)
            .iter()
            .map(|l| format!("{l}\n"))
            .collect();
        let table = super::panes::table();
        for b in table.bindings().filter(|b| b.scope.applies(ctx)) {
            assert!(text.contains(b.help), "help of {ctx:?} lacks `{}`", b.help);
        }
        for b in table.hints(ctx) {
            assert!(b.hint.is_some() && b.scope.applies(ctx), "{}", b.help);
        }
    }
}

#[test]
fn scrolling_above_the_buffer_fetches_older_lines_and_keeps_the_view() {
    let mut app = app_with_data(false);
    app.data.logs = super::logs::LogBuffer::with_capacity(5);
    app.view.log_height = 2;
    let effects = app.open_logs(RunId(7), Some("extract".into()));
    let Some(Effect::Call(_, Purpose::Logs { generation, .. })) = effects.first().cloned() else {
        panic!("expected a logs request");
    };
    let page = |range: std::ops::Range<u64>| -> Vec<StoredLine> {
        range
            .map(|i| StoredLine {
                seq: i,
                task: "extract".into(),
                attempt: 1,
                stream: Stream::Stdout,
                at: now(),
                line: format!("line {i}"),
            })
            .collect()
    };
    let _ = app.on_response(
        Purpose::Logs {
            generation,
            kind: PageKind::Tail,
            offset: 0,
        },
        Ok(Response::Lines {
            lines: page(0..8),
            more: false,
            first: 0,
        }),
    );
    assert_eq!(
        app.data.logs.first_offset(),
        3,
        "only the newest 5 lines are kept"
    );
    assert!(app.on_key(key('k')).is_empty());
    assert!(!app.view.log_view.follow, "scrolling up stops following");
    let effects = app.on_key(key('g'));
    let [
        Effect::Call(
            Request::Logs {
                offset,
                limit,
                task,
                ..
            },
            purpose,
        ),
    ] = &effects[..]
    else {
        panic!("expected an older page request, got {effects:?}");
    };
    assert_eq!((*offset, *limit, task.as_deref()), (0, 3, Some("extract")));
    let _ = app.on_response(
        purpose.clone(),
        Ok(Response::Lines {
            lines: page(0..3),
            more: true,
            first: 0,
        }),
    );
    let texts: Vec<&str> = app
        .data
        .logs
        .lines()
        .iter()
        .map(|e| e.text.as_str())
        .collect();
    assert_eq!(texts, ["line 0", "line 1", "line 2", "line 3", "line 4"]);
    assert_eq!(
        app.view.log_view.top, 3,
        "the same line stays at the top of the view"
    );
    // Following again reads the tail back (the buffer dropped it for the older lines).
    let effects = app.on_key(key('G'));
    assert!(
        matches!(
            &effects[..],
            [Effect::Call(Request::Logs { offset: 0, .. }, _)]
        ),
        "{effects:?}"
    );
    assert!(app.view.log_view.follow);
}

#[test]
fn theme_command_switches_the_theme() {
    let mut app = app_with_data(false);
    app.config.no_color = false;
    type_str(&mut app, ":theme light");
    app.on_key(code(KeyCode::Enter));
    assert_eq!(app.theme.name(), "light");
    type_str(&mut app, ":theme nope");
    app.on_key(code(KeyCode::Enter));
    assert!(
        app.view
            .message
            .as_ref()
            .is_some_and(|m| m.error && m.text.contains("nope"))
    );
}

#[tokio::test(flavor = "current_thread")]
async fn the_loop_draws_only_when_something_changed() {
    use super::event_loop::{self, Ended, FrameStats, LoopOptions};
    let client = Arc::new(super::bench::FixedClient::new(now()));
    let mut app = App::new(config(false), Theme::monochrome(), now());
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    let mut stats = FrameStats::default();
    // A while with no input and no events (the count of frames is checked, not the time).
    let ended = event_loop::run(
        &mut terminal,
        futures::stream::pending(),
        client.clone(),
        &mut app,
        tokio::time::sleep(std::time::Duration::from_millis(1500)),
        LoopOptions {
            stats: Some(&mut stats),
            fixed_now: true,
        },
    )
    .await
    .expect("loop");
    assert_eq!(ended, Ended::Stopped);
    // The first frame and the frames for the first answers, then nothing.
    assert!(
        (1..=6).contains(&stats.frames.len()),
        "{} frames",
        stats.frames.len()
    );
    assert!(app.data.status.is_some(), "the loop fetched the status");

    // A burst of 1,000 events is coalesced into a few frames, not one per event.
    let before = stats.frames.len();
    let feed = {
        let client = client.clone();
        async move {
            tokio::task::yield_now().await;
            for i in 0..1000u64 {
                client.publish(Event::RunCreated {
                    run_id: RunId(100 + i),
                    workflow: Arc::from("etl"),
                    params: Vec::new(),
                    trigger: "manual".into(),
                    triggered_by: None,
                    scheduled_for: None,
                    at: now(),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    };
    event_loop::run(
        &mut terminal,
        futures::stream::pending(),
        client,
        &mut app,
        feed,
        LoopOptions {
            stats: Some(&mut stats),
            fixed_now: true,
        },
    )
    .await
    .expect("loop");
    let burst = stats.frames.len() - before;
    assert!(burst <= 10, "{burst} frames for one burst");
}

#[test]
fn failure_rate_counts_failed_against_succeeded_and_ignores_cancelled_runs() {
    let mut app = App::new(config(false), Theme::default_dark(), now());
    app.data.runs = vec![
        run(4, "w", RunState::Cancelled, 40, Some(1.0)),
        run(3, "w", RunState::Failed, 30, Some(1.0)),
        run(2, "w", RunState::Succeeded, 20, Some(1.0)),
        run(1, "w", RunState::Succeeded, 10, Some(1.0)),
    ];
    let rows = app.history_rows();
    assert_eq!((rows[0].runs, rows[0].failed, rows[0].ended), (4, 1, 3));
    assert!((rows[0].failure_rate() - 1.0 / 3.0).abs() < 1e-9);
}

#[test]
fn a_retried_run_shows_as_running_again_and_not_ended() {
    let mut app = app_with_data(false);
    for state in [RunState::Queued, RunState::Running] {
        app.on_event(Event::RunState {
            run_id: RunId(6),
            workflow: "failure".into(),
            state,
            at: now(),
            message: None,
        });
    }
    let r = app
        .data
        .runs
        .iter()
        .find(|r| r.run_id == RunId(6))
        .expect("run 6");
    assert_eq!(r.state, RunState::Running);
    assert_eq!(
        (r.started_at, r.ended_at, r.duration_secs),
        (Some(now()), None, None)
    );
}

#[test]
fn a_history_file_that_cannot_be_written_shows_in_the_header_until_it_can() {
    let mut app = app_with_data(false);
    assert!(!screen(&mut app, 120, 40).contains("HISTORY NOT WRITABLE"));
    app.on_event(Event::StoreHealth {
        problem: Some("cannot write the history file: No space left on device".into()),
        at: now(),
    });
    let shown = screen(&mut app, 120, 40);
    assert!(shown.contains("HISTORY NOT WRITABLE"), "{shown}");
    app.on_event(Event::StoreHealth {
        problem: None,
        at: now(),
    });
    assert!(!screen(&mut app, 120, 40).contains("HISTORY NOT WRITABLE"));
}

// ----- the agents pane -----

fn agents_pane() -> App {
    let mut app = app_with_data(false);
    app.view.pane = Pane::Agents;
    app
}

#[test]
fn the_agents_pane_lists_every_agent_with_heartbeat_and_running_work() {
    let mut app = agents_pane();
    let text = screen(&mut app, 120, 40);
    let line = |id: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("│{id} ")))
            .unwrap_or_else(|| panic!("no row for {id}:\n{text}"))
            .to_string()
    };
    let local = line("local");
    for want in [
        "ready",
        "local=true",
        "1/4",
        " - ",
        "0.4.0",
        "7/transform-users#1",
    ] {
        assert!(local.contains(want), "{want} in {local}");
    }
    let gpu = line("gpu-1");
    for want in [
        "gpu-box (pid 881)",
        "cordoned",
        "gpu=a100,zone=eu",
        "2/2",
        "400ms",
        "7/transform-events#2",
    ] {
        assert!(gpu.contains(want), "{want} in {gpu}");
    }
    let edge = line("edge-2");
    for want in ["lost", "0/2", "1m35s"] {
        assert!(edge.contains(want), "{want} in {edge}");
    }
    // Lost agents offer no slots: 1 + 2 busy of 4 + 2.
    assert!(text.contains("3/6 slots busy across 2 agents"), "{text}");
    // The selected agent in full, and the pane's keys in the hints.
    assert!(text.contains("local — ready"), "{text}");
    assert!(text.contains("c cordon/uncordon"), "{text}");
    assert!(text.contains("d drain"), "{text}");
    // At 80 columns running work is cut to fit, the rest counted.
    let narrow = screen(&mut app, 80, 24);
    assert!(narrow.contains("7/transform… +1"), "{narrow}");
}

#[test]
fn c_cordons_a_ready_agent_and_uncordons_a_cordoned_one() {
    let mut app = agents_pane();
    let local = AgentId("local".into());
    assert_eq!(
        app.on_key(key('c')),
        vec![Effect::Call(
            Request::Cordon {
                agent: local.clone(),
                cordon: true
            },
            Purpose::Cordon(local.clone(), true)
        )]
    );
    app.on_key(code(KeyCode::Down));
    let gpu = AgentId("gpu-1".into());
    assert_eq!(
        app.on_key(key('c')),
        vec![Effect::Call(
            Request::Cordon {
                agent: gpu.clone(),
                cordon: false
            },
            Purpose::Cordon(gpu.clone(), false)
        )]
    );
    // The answer is the list as it is now: shown at once.
    let mut now_ready = agents();
    now_ready[1].state = AgentState::Ready;
    app.on_response(
        Purpose::Cordon(gpu, false),
        Ok(Response::Agents { agents: now_ready }),
    );
    assert_eq!(
        app.selected_agent().map(|a| a.state),
        Some(AgentState::Ready)
    );
    assert!(
        app.view
            .message
            .as_ref()
            .is_some_and(|m| m.text == "agent gpu-1: ready")
    );
    // A lost agent is refused with the reason, nothing sent.
    app.on_key(code(KeyCode::Down));
    assert!(app.on_key(key('c')).is_empty());
    let msg = app.view.message.clone().expect("a message");
    assert!(msg.error && msg.text.contains("edge-2 is lost"), "{msg:?}");
}

#[test]
fn d_asks_first_then_drains() {
    let mut app = agents_pane();
    app.on_key(code(KeyCode::Down));
    assert!(app.on_key(key('d')).is_empty());
    let gpu = AgentId("gpu-1".into());
    let Some(Modal::Confirm { question, then }) = &app.view.modal else {
        panic!("a question expected, got {:?}", app.view.modal);
    };
    assert_eq!(*then, Confirmed::DrainAgent(gpu.clone()));
    assert!(question.contains("Drain agent gpu-1?"), "{question}");
    check_snapshot("agents-drain-80x24", &screen(&mut app, 80, 24));
    assert_eq!(
        app.on_key(key('y')),
        vec![Effect::Call(
            Request::Drain { agent: gpu.clone() },
            Purpose::Drain(gpu.clone())
        )]
    );
    // No drains nothing.
    app.on_key(key('d'));
    assert!(app.on_key(key('n')).is_empty());
    // A refusal by the principal shows like any request's error.
    app.on_response(
        Purpose::Drain(gpu),
        Ok(Response::Error(crate::protocol::api::ApiError::new(
            crate::protocol::api::ApiErrorKind::NotFound,
            "agent `gpu-1` is lost; there is nothing to drain",
        ))),
    );
    let msg = app.view.message.clone().expect("a message");
    assert!(
        msg.error && msg.text.starts_with("drain: agent `gpu-1`"),
        "{msg:?}"
    );
    // The palette names an agent: the in-process pool's question says how it comes back.
    type_str(&mut app, ":drain local");
    app.on_key(code(KeyCode::Enter));
    let Some(Modal::Confirm { question, .. }) = &app.view.modal else {
        panic!("a question expected");
    };
    assert!(question.contains("until uncordoned"), "{question}");
}

#[test]
fn read_only_refuses_cordon_and_drain_with_the_reason() {
    let mut app = app_with_data(true);
    app.view.pane = Pane::Agents;
    for k in ['c', 'd'] {
        assert!(app.on_key(key(k)).is_empty(), "{k}");
        assert!(app.view.modal.is_none(), "{k} opened a dialog");
        let msg = app.view.message.clone().expect("a message");
        assert!(
            msg.error && msg.text.starts_with("disabled:") && msg.text.contains("--read-only"),
            "{msg:?}"
        );
    }
    assert!(screen(&mut app, 120, 40).contains("[read-only]"));
}

#[test]
fn agents_are_read_on_an_agent_event_and_while_their_pane_shows() {
    let asks_agents = |effects: &[Effect]| {
        effects
            .iter()
            .any(|e| matches!(e, Effect::Call(Request::Agents, Purpose::Agents)))
    };
    let mut app = app_with_data(false);
    assert!(
        asks_agents(&app.refresh_effects()),
        "the first refresh reads them"
    );
    assert!(
        !asks_agents(&app.refresh_effects()),
        "not again while not shown"
    );
    assert!(!app.wants_poll());
    app.on_event(Event::Agent(crate::protocol::agent::AgentNote {
        agent: AgentId("gpu-1".into()),
        kind: crate::protocol::agent::AgentNoteKind::Lost,
        state: AgentState::Lost,
        message: "lost: silent for 6s".into(),
        at: now(),
    }));
    assert!(app.refresh_wanted);
    assert!(
        asks_agents(&app.refresh_effects()),
        "an agent event reads them"
    );
    assert!(!asks_agents(&app.refresh_effects()));
    // Shown, they are read on every refresh and every poll (heartbeat ages change).
    app.view.pane = Pane::Agents;
    assert!(app.wants_poll());
    assert!(asks_agents(&app.refresh_effects()));
    assert!(asks_agents(&app.poll_effects()));
    app.view.pane = Pane::Runs;
    assert!(app.poll_effects().is_empty());
}

#[test]
fn the_queue_says_what_a_task_waits_for() {
    let mut app = app_with_data(false);
    app.view.pane = Pane::Queue;
    let text = screen(&mut app, 120, 40);
    assert!(text.contains("WAITING FOR"), "{text}");
    assert!(text.contains("task transform-events #2"), "{text}");
    assert!(text.contains("a free slot"), "{text}");
    assert!(text.contains("an agent labelled gpu=h100"), "{text}");
    assert!(text.contains("max_active_runs"), "{text}");
}

// ----- the supervisors pane -----

fn supervisors_pane(read_only: bool) -> App {
    let mut app = app_with_data(read_only);
    app.view.pane = Pane::Supervisors;
    app
}

/// The screen line that shows node `name`.
fn tree_line(text: &str, name: &str) -> String {
    text.lines()
        .find(|l| l.contains(&format!(" {name} ")))
        .unwrap_or_else(|| panic!("no line for {name}:\n{text}"))
        .to_string()
}

#[test]
fn the_supervisors_pane_shows_the_trees_with_state_pid_uptime_restarts_and_readiness() {
    let mut app = supervisors_pane(false);
    let text = screen(&mut app, 120, 40);
    let api = tree_line(&text, "api");
    for want in ["● api", "running", "4301", "1h02m", "✓"] {
        assert!(api.contains(want), "{want} in {api}");
    }
    let web = tree_line(&text, "web");
    assert!(web.contains("▾ ● web") && web.contains("1/5"), "{web}");
    let w2 = tree_line(&text, "w2");
    for want in ["↻ w2", "backing off", "retry in 4.0s", "last: exit code 1"] {
        assert!(w2.contains(want), "{want} in {w2}");
    }
    let cron = tree_line(&text, "cron");
    assert!(cron.contains("stopped") && cron.contains("held"), "{cron}");
    let cache = tree_line(&text, "cache");
    for want in ["✗ cache", "failed", "6/5", "gave up"] {
        assert!(cache.contains(want), "{want} in {cache}");
    }
    // The nested workers are indented under `jobs`, under `web`.
    let indent = |name: &str| {
        let l = tree_line(&text, name);
        l[..l.find(name).unwrap_or(0)].chars().count()
    };
    assert!(indent("w1") > indent("jobs") && indent("jobs") > indent("web"));
    assert!(text.contains("2/5 services up"), "{text}");
    // The first node is selected and shown in full; the keys are in the hints.
    assert!(text.contains("web — running"), "{text}");
    for hint in ["s start", "x stop", "r restart", "l logs"] {
        assert!(text.contains(hint), "{hint} in\n{text}");
    }
}

#[test]
fn left_closes_a_subtree_and_right_or_enter_opens_it() {
    let mut app = supervisors_pane(false);
    let rows = |app: &App| (super::panes::def(Pane::Supervisors).rows)(app);
    assert_eq!(rows(&app), 8);
    app.on_key(code(KeyCode::Left));
    assert_eq!(rows(&app), 3, "web closed: web, cache and redis remain");
    app.on_key(code(KeyCode::Right));
    assert_eq!(rows(&app), 8);
    app.on_key(code(KeyCode::Enter));
    assert_eq!(rows(&app), 3);
    app.on_key(code(KeyCode::Enter));
    // Left on a service goes to its parent.
    for _ in 0..3 {
        app.on_key(code(KeyCode::Down));
    }
    assert_eq!(
        app.selected_service().map(|n| n.path.as_str()),
        Some("web/jobs/w1")
    );
    app.on_key(code(KeyCode::Left));
    assert_eq!(
        app.selected_service().map(|n| n.path.as_str()),
        Some("web/jobs")
    );
}

#[test]
fn r_asks_then_restarts_the_selected_service_and_the_answer_replaces_its_subtree() {
    let mut app = supervisors_pane(false);
    app.on_key(code(KeyCode::Down));
    assert!(
        app.on_key(key('r')).is_empty(),
        "nothing is sent before the answer"
    );
    let Some(Modal::Confirm { question, then }) = &app.view.modal else {
        panic!("a question expected, got {:?}", app.view.modal);
    };
    assert_eq!(
        *then,
        Confirmed::ServiceControl("web/api".into(), ServiceAction::Restart)
    );
    assert!(question.contains("Restart web/api?"), "{question}");
    let restart = Effect::Call(
        Request::ServiceControl {
            path: "web/api".into(),
            action: ServiceAction::Restart,
        },
        Purpose::ServiceControl("web/api".into(), ServiceAction::Restart),
    );
    assert_eq!(app.on_key(key('y')), vec![restart]);
    // No sends nothing.
    app.on_key(key('r'));
    assert!(app.on_key(key('n')).is_empty());
    // The answer holds the subtree at the path: that part of the trees is replaced.
    let restarted = ServiceNode {
        pid: Some(5000),
        start_no: 2,
        state: ServiceState::Starting,
        ..services()[1].clone()
    };
    app.on_response(
        Purpose::ServiceControl("web/api".into(), ServiceAction::Restart),
        Ok(Response::Services {
            nodes: vec![restarted],
        }),
    );
    let all = app.data.services.clone().expect("the trees");
    assert_eq!(all.len(), 8);
    assert_eq!(all[1].path, "web/api");
    assert_eq!((all[1].pid, all[1].start_no), (Some(5000), 2));
    assert_eq!(all[7].path, "cache/redis");
    let msg = app.view.message.clone().expect("a message");
    assert_eq!(msg.text, "web/api: restart sent, now starting");
    assert!(app.services_wanted, "a full read follows");
}

#[test]
fn x_on_a_supervisor_stops_its_subtree_and_s_starts_a_held_one() {
    let mut app = supervisors_pane(false);
    app.on_key(code(KeyCode::Down));
    app.on_key(code(KeyCode::Down));
    assert_eq!(
        app.selected_service().map(|n| n.path.as_str()),
        Some("web/jobs")
    );
    app.on_key(key('x'));
    let Some(Modal::Confirm { question, .. }) = &app.view.modal else {
        panic!("a question expected");
    };
    assert!(
        question.contains("supervisor web/jobs and the 2 node(s) under it"),
        "{question}"
    );
    assert!(question.contains("held"), "{question}");
    assert_eq!(
        app.on_key(key('y')),
        vec![Effect::Call(
            Request::ServiceControl {
                path: "web/jobs".into(),
                action: ServiceAction::Stop,
            },
            Purpose::ServiceControl("web/jobs".into(), ServiceAction::Stop),
        )]
    );
    // The held cron: starting it says it releases the hold.
    for _ in 0..3 {
        app.on_key(code(KeyCode::Down));
    }
    assert_eq!(
        app.selected_service().map(|n| n.path.as_str()),
        Some("web/cron")
    );
    app.on_key(key('s'));
    let Some(Modal::Confirm { question, then }) = &app.view.modal else {
        panic!("a question expected");
    };
    assert!(question.contains("releases the hold"), "{question}");
    assert_eq!(
        *then,
        Confirmed::ServiceControl("web/cron".into(), ServiceAction::Start)
    );
    check_snapshot("supervisors-confirm-80x24", &screen(&mut app, 80, 24));
}

#[test]
fn read_only_refuses_start_stop_and_restart_with_the_reason() {
    let mut app = supervisors_pane(true);
    for k in ['s', 'x', 'r'] {
        assert!(app.on_key(key(k)).is_empty(), "{k}");
        assert!(app.view.modal.is_none(), "{k} opened a dialog");
        let msg = app.view.message.clone().expect("a message");
        assert!(
            msg.error && msg.text.starts_with("disabled:") && msg.text.contains("--read-only"),
            "{msg:?}"
        );
    }
}

#[test]
fn the_overview_counts_the_services_up_and_the_supervisors_that_gave_up() {
    let mut app = app_with_data(false);
    let text = screen(&mut app, 120, 40);
    let line = text
        .lines()
        .find(|l| l.contains("services "))
        .unwrap_or_else(|| panic!("no services line:\n{text}"));
    assert!(
        line.contains("services 2/5 up · 1 supervisor gave up"),
        "{line}"
    );
    // The trees are read at start, whichever pane shows.
    let mut fresh = App::new(config(false), Theme::monochrome(), now());
    assert!(fresh.refresh_effects().iter().any(|e| matches!(
        e,
        Effect::Call(Request::Services { path: None }, Purpose::Services)
    )));
}

fn service_batch(path: &str, stream: Stream, texts: &[&str]) -> Event {
    Event::ServiceLogs(Arc::new(ServiceLogBatch {
        path: Arc::from(path),
        start_no: 1,
        stream,
        charge: Default::default(),
        lines: texts
            .iter()
            .enumerate()
            .map(|(i, t)| LogLine {
                seq: i as u64,
                at: ago(5),
                text: t.to_string(),
            })
            .collect(),
    }))
}

#[test]
fn service_output_shows_for_the_selected_service_and_l_follows_it_in_the_logs_pane() {
    let mut app = supervisors_pane(false);
    app.on_event(service_batch(
        "web/api",
        Stream::Stdout,
        &["listening on :8080"],
    ));
    app.on_event(service_batch(
        "web/jobs/w1",
        Stream::Stdout,
        &["job 1 done"],
    ));
    app.on_key(code(KeyCode::Down));
    let text = screen(&mut app, 120, 40);
    assert!(text.contains("output   listening on :8080"), "{text}");
    // A supervisor has no output of its own.
    app.on_key(code(KeyCode::Up));
    app.on_key(key('l'));
    assert_eq!(app.view.pane, Pane::Supervisors);
    assert!(app.view.message.as_ref().is_some_and(|m| m.error));
    app.on_key(code(KeyCode::Down));
    let effects = app.on_key(key('l'));
    assert!(
        matches!(
            effects.as_slice(),
            [Effect::Call(Request::ServiceLogs { path: Some(p), .. }, Purpose::ServiceLines(_))]
                if p == "web/api"
        ),
        "its stored output is read: {effects:?}"
    );
    assert_eq!(app.view.pane, Pane::Logs);
    // The store has an older line, and the one the console kept already.
    let kept = app
        .data
        .logs
        .lines()
        .back()
        .cloned()
        .expect("the kept line is shown at once");
    let stored = |at, text: &str| crate::protocol::service::ServiceLine {
        path: "web/api".into(),
        start_no: u64::from(kept.attempt),
        stream: Stream::Stdout,
        at,
        text: text.into(),
    };
    let older = kept.at - chrono::Duration::seconds(5);
    let _ = app.on_response(
        Purpose::ServiceLines("web/api".into()),
        Ok(Response::ServiceLines {
            lines: vec![stored(older, "starting up"), stored(kept.at, &kept.text)],
        }),
    );
    let shown: Vec<String> = app
        .data
        .logs
        .lines()
        .iter()
        .map(|e| e.text.clone())
        .collect();
    assert_eq!(
        shown,
        ["starting up", "listening on :8080"],
        "stored first, nothing twice"
    );
    app.on_event(service_batch(
        "web/api",
        Stream::Stderr,
        &["slow request: 2.1s"],
    ));
    app.on_event(service_batch(
        "web/jobs/w1",
        Stream::Stdout,
        &["job 2 done"],
    ));
    let text = screen(&mut app, 80, 24);
    assert!(text.contains("Logs service web/api (live)"), "{text}");
    assert!(text.contains("listening on :8080"), "{text}");
    assert!(text.contains("err slow request: 2.1s"), "{text}");
    assert!(
        !text.contains("job 2 done"),
        "another service's line:\n{text}"
    );
    check_snapshot("logs-service-80x24", &text);
    // Esc goes back to the tree; opening a run's logs leaves the service.
    app.on_key(code(KeyCode::Esc));
    assert_eq!(app.view.pane, Pane::Supervisors);
    app.open_logs(RunId(7), None);
    assert!(app.data.logs.service().is_none());
}

#[test]
fn services_are_read_after_service_events_and_while_their_pane_shows() {
    let asks = |effects: &[Effect]| {
        effects
            .iter()
            .any(|e| matches!(e, Effect::Call(Request::Services { .. }, Purpose::Services)))
    };
    let mut app = app_with_data(false);
    assert!(asks(&app.refresh_effects()), "the first refresh reads them");
    assert!(!asks(&app.refresh_effects()), "not again while not shown");
    assert!(app.services_effects().is_empty());
    app.on_event(Event::Service(crate::protocol::service::ServiceRecord {
        path: "web/api".into(),
        start_no: 2,
        kind: crate::protocol::service::ServiceEventKind::Started,
        pid: Some(5000),
        exit_code: None,
        signal: None,
        message: None,
        at: now(),
    }));
    assert!(app.services_wanted);
    assert!(!app.refresh_wanted, "only the trees are read again");
    assert!(asks(&app.services_effects()));
    assert!(
        app.services_effects().is_empty(),
        "one read for many events"
    );
    assert!(!app.wants_poll());
    app.view.pane = Pane::Supervisors;
    assert!(app.wants_poll());
    assert!(asks(&app.poll_effects()));
    assert!(asks(&app.refresh_effects()));
    app.view.pane = Pane::Overview;
    assert!(app.poll_effects().is_empty());
}

// ----- the palette's parsing and completion -----

mod palette {
    use crate::tui::dialogs::palette::{Names, Palette, PaletteError};
    use crate::tui::keymap::Action;
    use crate::tui::panes::table;

    fn names() -> Names {
        Names {
            workflows: vec!["etl".into(), "etl-nightly".into(), "flaky".into()],
            themes: vec!["dark".into(), "light".into()],
            runs: vec!["3".into(), "2".into()],
            agents: vec!["local".into(), "gpu-1".into()],
        }
    }

    #[test]
    fn completes_a_unique_command_and_adds_a_space_for_its_argument() {
        let mut p = Palette { input: "w".into() };
        // `wf` and `workflows` and `wrap` share only `w`.
        p.complete(&names(), table());
        assert_eq!(p.input, "w");
        p.input = "wo".into();
        p.complete(&names(), table());
        assert_eq!(p.input, "workflows");
        p.input = "th".into();
        p.complete(&names(), table());
        assert_eq!(p.input, "theme ");
    }

    #[test]
    fn completes_arguments_from_names() {
        let mut p = Palette {
            input: "wf fl".into(),
        };
        p.complete(&names(), table());
        assert_eq!(p.input, "wf flaky");
        p.input = "wf e".into();
        p.complete(&names(), table());
        assert_eq!(p.input, "wf etl");
        assert_eq!(p.candidates(&names(), table()).len(), 2);
    }

    #[test]
    fn parses_commands_and_reports_unknown_ones_with_a_suggestion() {
        let p = Palette {
            input: "wf etl".into(),
        };
        let parsed = p.parse(table()).expect("valid");
        assert_eq!(parsed.binding.action, Action::Workflow);
        assert_eq!(parsed.arg.as_deref(), Some("etl"));
        let err = Palette {
            input: "runz".into(),
        }
        .parse(table())
        .unwrap_err();
        assert!(err.to_string().contains("did you mean `:runs`"), "{err}");
        let err = Palette { input: "wf".into() }.parse(table()).unwrap_err();
        assert_eq!(err, PaletteError::MissingArg("wf", "a workflow name"));
    }
}
