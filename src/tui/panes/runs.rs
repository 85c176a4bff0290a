//! Runs (filterable) with the DAG of the selected run.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::pane::{PaneDef, draw_list, filter_suffix, fit_list};
use crate::humantime::format_secs;
use crate::protocol::RunId;
use crate::protocol::api::Request;
use crate::tui::app::{App, Effect, Purpose};
use crate::tui::dag_view;
use crate::tui::dialogs::Modal;
use crate::tui::dialogs::confirm::Confirmed;
use crate::tui::draw::{block, header, inner, note};
use crate::tui::keymap::{Action, Arg, Binding, Context, Pane, Scope, b, code, k};
use ratatui::crossterm::event::KeyCode;

const DAG: Scope = Scope::In(&[Context::Dag]);
const RUNS: Scope = Scope::In(&[Context::Pane(Pane::Runs), Context::Dag]);
const LIST: Scope = Scope::In(&[Context::Pane(Pane::Runs)]);

/// Keys of the runs pane and of the DAG inside it.
pub static BINDINGS: &[Binding] = &[
    b(
        &[code(KeyCode::Left), k('h')],
        Action::Left,
        DAG,
        "previous column",
    ),
    b(
        &[code(KeyCode::Right), k('l')],
        Action::Right,
        DAG,
        "next column",
    ),
    b(
        &[code(KeyCode::Enter)],
        Action::OpenLogs,
        DAG,
        "logs of the selected task",
    )
    .hint("task logs"),
    b(
        &[k('c')],
        Action::Cancel,
        RUNS,
        "cancel the run (asks first)",
    )
    .cmd("cancel", Arg::Run)
    .hint("cancel")
    .mutating(),
    b(
        &[k('r')],
        Action::Retry,
        RUNS,
        "retry the failed tasks of the run",
    )
    .cmd("retry", Arg::Run)
    .hint("retry")
    .mutating(),
    b(&[k('l')], Action::OpenLogs, LIST, "logs of the run").hint("logs"),
];

/// The runs pane.
pub static PANE: PaneDef = PaneDef {
    pane: Pane::Runs,
    show_help: "runs pane",
    show_arg: Arg::None,
    bindings: BINDINGS,
    act,
    fit,
    draw,
    rows: |app| app.run_rows().len(),
};

fn act(app: &mut App, action: Action, arg: Option<&str>) -> Option<Vec<Effect>> {
    let dag = app.view.context() == Context::Dag;
    Some(match action {
        Action::Cancel => cancel(app, arg),
        Action::Retry => retry(app, arg),
        Action::OpenLogs => open_logs(app),
        Action::Left | Action::Right => {
            let d = if action == Action::Left { -1 } else { 1 };
            if dag {
                let v = &mut app.view.dag;
                v.selected = v.layout.step(v.selected, d, 0);
            }
            Vec::new()
        }
        Action::Enter => {
            if app
                .data
                .detail
                .as_ref()
                .is_some_and(|d| !d.tasks.is_empty())
            {
                app.view.dag.focus = true;
            } else if app.view.selected_run.is_some() {
                app.say("loading the run's tasks...");
            }
            Vec::new()
        }
        Action::Back if dag => {
            app.view.dag.focus = false;
            Vec::new()
        }
        Action::Back if !app.view.filter(Pane::Runs).is_empty() => {
            app.view.list_mut(Pane::Runs).filter.clear();
            app.anchor_runs();
            Vec::new()
        }
        _ => {
            let delta = action.step(app.view.page)?;
            if dag {
                move_in_dag(app, delta);
                Vec::new()
            } else {
                let len = app.run_rows().len();
                let cur = app.view.list(Pane::Runs).selected as isize;
                let next =
                    (cur.saturating_add(delta)).clamp(0, len.saturating_sub(1) as isize) as usize;
                app.select_run_at(next).into_iter().collect()
            }
        }
    })
}

fn move_in_dag(app: &mut App, delta: isize) {
    let v = &mut app.view.dag;
    let len = v.layout.columns.iter().map(Vec::len).max().unwrap_or(0) as isize;
    let d = delta.clamp(-len, len);
    v.selected = v.layout.step(v.selected, 0, d);
}

/// The run a command names (`:cancel 12`), else the selected one; `Err` (already warned)
/// when the argument is not a run id.
fn run_arg(app: &mut App, arg: Option<&str>) -> Result<Option<RunId>, ()> {
    match arg.map(|a| a.parse::<RunId>()) {
        Some(Ok(id)) => Ok(Some(id)),
        Some(Err(e)) => {
            app.warn(e);
            Err(())
        }
        None => Ok(app.view.selected_run),
    }
}

fn cancel(app: &mut App, arg: Option<&str>) -> Vec<Effect> {
    let Ok(id) = run_arg(app, arg) else {
        return Vec::new();
    };
    let Some(id) = id else {
        app.warn("select a run to cancel");
        return Vec::new();
    };
    let known = app.data.runs.iter().find(|r| r.run_id == id);
    if known.is_some_and(|r| r.state.is_terminal()) {
        app.warn(format!("run {id} has already ended"));
    } else {
        let wf = known.map(|r| r.workflow.clone()).unwrap_or_default();
        app.view.modal = Some(Modal::Confirm {
            question: format!("Cancel run {id} of `{wf}`? Its tasks get SIGTERM."),
            then: Confirmed::CancelRun(id),
        });
    }
    Vec::new()
}

fn retry(app: &mut App, arg: Option<&str>) -> Vec<Effect> {
    let Ok(id) = run_arg(app, arg) else {
        return Vec::new();
    };
    match (id, app.selected_run_summary()) {
        (None, _) => app.warn("select a run to retry"),
        (Some(id), Some(r)) if Some(id) == app.view.selected_run && !r.state.is_terminal() => {
            app.warn(format!("run {id} is still active; retry it once it ended"))
        }
        (Some(id), _) => {
            app.say(format!("retrying the failed tasks of run {id}..."));
            return vec![Effect::Call(
                Request::Retry { run_id: id },
                Purpose::Retry(id),
            )];
        }
    }
    Vec::new()
}

/// Logs of the selected run, or of the selected task while the DAG has focus.
fn open_logs(app: &mut App) -> Vec<Effect> {
    let task = if app.view.context() == Context::Dag {
        app.data
            .detail
            .as_ref()
            .and_then(|d| d.tasks.get(app.view.dag.selected))
            .map(|t| t.name.clone())
    } else {
        None
    };
    match app.view.selected_run {
        Some(id) => app.open_logs(id, task),
        None => {
            app.warn("select a run first");
            Vec::new()
        }
    }
}

/// The list takes what its rows need, up to 40% of the pane (less while the DAG has focus);
/// the DAG the rest.
fn areas(app: &App, area: Rect) -> (Rect, Rect) {
    let want = app.run_rows().len() as u16 + 3;
    let cap = if app.view.dag.focus {
        6
    } else {
        (area.height * 2 / 5).max(9)
    };
    let list_h = want.clamp(5, cap);
    let [list, dag] =
        Layout::vertical([Constraint::Length(list_h), Constraint::Min(3)]).areas(area);
    (list, dag)
}

/// Inside the DAG's block: the graph and, when focused, a last row describing the selected
/// task in full.
fn dag_areas(inner: Rect, focused: bool) -> (Rect, Option<Rect>) {
    if focused && inner.height > 2 {
        let [g, f] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
        (g, Some(f))
    } else {
        (inner, None)
    }
}

fn fit(app: &mut App, area: Rect) {
    let (list, dag) = areas(app, area);
    let len = app.run_rows().len();
    if len > 0 {
        fit_list(app, Pane::Runs, list, len);
    }
    if app.data.detail.is_none() {
        return;
    }
    let focused = app.view.dag.focus;
    let (graph, _) = dag_areas(inner(dag), focused);
    let (w, h) = (graph.width as usize, graph.height as usize);
    let v = &mut app.view.dag;
    v.layout.fit(w);
    if focused {
        v.layout.scroll_to(v.selected, w, h, &mut v.scroll);
    }
}

/// Draws the runs pane.
fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let (list, dag) = areas(app, area);
    render_list(frame, list, app);
    render_dag(frame, dag, app);
}

fn render_list(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let rows = app.run_rows();
    let title = format!("Runs ({}){}", rows.len(), filter_suffix(app, Pane::Runs));
    let b = block(t, title, !app.view.dag.focus);
    if rows.is_empty() {
        let text = app.data.errors.get("history").cloned().unwrap_or_else(|| {
            "no runs yet: trigger one from the workflows pane (2, then t)".into()
        });
        note(frame, area, b, text, t.muted());
        return;
    }
    let table_rows: Vec<Row> = rows
        .iter()
        .map(|r| {
            let started = r
                .started_at
                .map(|s| app.fmt_time(s, "%m-%d %H:%M:%S"))
                .unwrap_or_else(|| "-".into());
            let duration = match (r.duration_secs, r.started_at) {
                (Some(d), _) => format_secs(d),
                (None, Some(s)) if !r.state.is_terminal() => {
                    format_secs(((app.now - s).num_milliseconds().max(0)) as f64 / 1000.0)
                }
                _ => "-".into(),
            };
            Row::new(vec![
                Cell::from(format!("#{}", r.run_id)),
                Cell::from(r.workflow.clone()),
                Cell::from(Line::from(Span::styled(
                    r.state.as_str(),
                    t.run_state(r.state),
                ))),
                Cell::from(started),
                Cell::from(duration),
                Cell::from(Line::from(Span::styled(
                    r.failed_tasks.join(","),
                    t.error(),
                ))),
            ])
        })
        .collect();
    let len = rows.len();
    let table = Table::new(
        table_rows,
        [
            Constraint::Length(6),
            Constraint::Fill(1),
            Constraint::Length(10),
            Constraint::Length(15),
            Constraint::Length(8),
            Constraint::Fill(1),
        ],
    )
    .header(header(
        t,
        &["RUN", "WORKFLOW", "STATE", "STARTED", "TOOK", "FAILED"],
    ))
    .block(b);
    draw_list(frame, area, app, Pane::Runs, table, len);
}

fn render_dag(frame: &mut Frame, area: Rect, app: &App) {
    let focused = app.view.dag.focus;
    let v = &app.view.dag;
    let Some(detail) = app.data.detail.as_ref() else {
        let text = match (app.view.selected_run, app.data.errors.get("run detail")) {
            (_, Some(e)) => e.clone(),
            (Some(_), None) => "loading...".into(),
            (None, None) => "select a run to see its tasks".into(),
        };
        let b = block(&app.theme, "Tasks", focused);
        note(frame, area, b, text, app.theme.muted());
        return;
    };
    let s = &detail.summary;
    let done = detail
        .tasks
        .iter()
        .filter(|t| t.state.is_terminal())
        .count();
    let title = format!(
        "Run #{} {} — {} — {done}/{} tasks{}",
        s.run_id,
        s.workflow,
        s.state,
        detail.tasks.len(),
        if focused {
            ""
        } else {
            " (Enter: select tasks)"
        }
    );
    let b = block(&app.theme, title, focused);
    let inner = b.inner(area);
    frame.render_widget(b, area);
    let (inner, footer) = dag_areas(inner, focused);
    let (w, h) = (inner.width as usize, inner.height as usize);
    let sel = focused.then_some(v.selected);
    dag_view::render(
        &detail.tasks,
        &v.layout,
        sel,
        v.scroll,
        app.now,
        &app.theme,
        inner,
        frame.buffer_mut(),
    );
    if let (Some(f), Some(t)) = (footer, detail.tasks.get(v.selected)) {
        let text = dag_view::task_summary(t, app.now);
        frame.render_widget(Paragraph::new(Line::styled(text, app.theme.muted())), f);
    }
    let (total_w, total_h) = v.layout.size();
    let muted = app.theme.muted();
    let buf = frame.buffer_mut();
    if total_h > h {
        let more = format!(
            " {}-{}/{} ",
            v.scroll.1 + 1,
            (v.scroll.1 + h).min(total_h),
            total_h
        );
        let x = area.right().saturating_sub(more.len() as u16 + 1);
        buf.set_string(x, area.bottom() - 1, more, muted);
    }
    // Arrows on the border where columns are out of view.
    if v.scroll.0 > 0 {
        buf.set_string(area.x, inner.y, "◀", muted);
    }
    if total_w > v.scroll.0 + w {
        buf.set_string(area.right() - 1, inner.y, "▶", muted);
    }
}
