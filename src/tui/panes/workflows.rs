//! Workflows: schedule, next fire, last run state, paused.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use crate::tui::keymap::Binding;

use super::pane::{PaneDef, draw_list, filter_suffix, fit_list};
use crate::protocol::api::Request;
use crate::tui::app::{App, Effect, Purpose};
use crate::tui::dialogs::Modal;
use crate::tui::dialogs::form::TriggerForm;
use crate::tui::draw::{block, header, note};
use crate::tui::keymap::{Action, Arg, Context, Pane, Scope, b, k};
use crate::tui::line_input::LineInput;

const HERE: Scope = Scope::In(&[Context::Pane(Pane::Workflows)]);

/// Keys of the workflows pane.
pub static BINDINGS: &[Binding] = &[
    b(
        &[k('t')],
        Action::Trigger,
        HERE,
        "trigger a run (asks for parameters)",
    )
    .cmd("trigger", Arg::Workflow)
    .hint("trigger")
    .mutating(),
    b(
        &[k('p')],
        Action::TogglePause,
        HERE,
        "pause / resume the schedule",
    )
    .cmd("pause", Arg::Workflow)
    .hint("pause/resume")
    .mutating(),
    b(&[k('e')], Action::Edit, HERE, "edit the workflow's file")
        .cmd("edit", Arg::Workflow)
        .hint("edit")
        .mutating(),
    b(
        &[k('n')],
        Action::NewWorkflow,
        HERE,
        "new workflow file from a template",
    )
    .cmd("new", Arg::None)
    .hint("new")
    .mutating(),
];

/// The workflows pane.
pub static PANE: PaneDef = PaneDef {
    pane: Pane::Workflows,
    show_help: "workflows pane",
    show_arg: Arg::None,
    bindings: BINDINGS,
    act,
    fit,
    draw,
    rows: |app| app.workflow_rows().len(),
};

fn act(app: &mut App, action: Action, arg: Option<&str>) -> Option<Vec<Effect>> {
    // A `:` command names the workflow; a key acts on the selected one.
    let wf = || arg.map(str::to_string).or_else(|| app.selected_workflow());
    Some(match action {
        Action::Trigger => {
            let wf = wf();
            trigger(app, wf)
        }
        Action::TogglePause => {
            let wf = wf();
            toggle_pause(app, wf)
        }
        Action::Edit => {
            let wf = wf();
            edit(app, wf)
        }
        Action::NewWorkflow => {
            app.view.modal = Some(Modal::FileName(LineInput::default()));
            Vec::new()
        }
        Action::Enter => app.runs_of_selected_workflow(),
        _ => return None,
    })
}

/// Opens the trigger form of `wf`, prefilled with its parameters' defaults.
fn trigger(app: &mut App, wf: Option<String>) -> Vec<Effect> {
    let Some(wf) = wf else {
        app.warn("select a workflow to trigger");
        return Vec::new();
    };
    let params: Vec<(String, String)> = app
        .data
        .workflows
        .iter()
        .find(|w| w.name == wf)
        .map(|w| {
            w.params
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    app.view.modal = Some(Modal::Form(TriggerForm::new(wf, params)));
    Vec::new()
}

fn toggle_pause(app: &mut App, wf: Option<String>) -> Vec<Effect> {
    let Some(wf) = wf else {
        app.warn("select a workflow");
        return Vec::new();
    };
    let paused = app
        .workflow_rows_all()
        .iter()
        .find(|r| r.name == wf)
        .is_some_and(|r| r.paused);
    let request = if paused {
        Request::Resume {
            workflow: wf.clone(),
        }
    } else {
        Request::Pause {
            workflow: wf.clone(),
        }
    };
    vec![Effect::Call(request, Purpose::Pause(wf))]
}

fn edit(app: &mut App, wf: Option<String>) -> Vec<Effect> {
    let Some(wf) = wf else {
        app.warn("select a workflow to edit");
        return Vec::new();
    };
    app.say(format!("opening `{wf}`..."));
    vec![Effect::Call(
        Request::GetSpec {
            workflow: wf.clone(),
        },
        Purpose::GetSpec(wf),
    )]
}

/// The list, and below it the selected workflow in detail when there is room.
fn areas(area: Rect) -> (Rect, Option<Rect>) {
    if area.height >= 16 {
        let [l, d] = Layout::vertical([Constraint::Min(5), Constraint::Length(8)]).areas(area);
        (l, Some(d))
    } else {
        (area, None)
    }
}

fn fit(app: &mut App, area: Rect) {
    let len = app.workflow_rows().len();
    if len > 0 {
        fit_list(app, Pane::Workflows, areas(area).0, len);
    }
}

/// Draws the workflows pane.
fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let rows = app.workflow_rows();
    let title = format!(
        "Workflows ({}){}",
        rows.len(),
        filter_suffix(app, Pane::Workflows)
    );
    let b = block(&app.theme, title, true);
    if rows.is_empty() {
        let text = app
            .data
            .errors
            .get("status")
            .cloned()
            .unwrap_or_else(|| "no workflows (n creates one)".into());
        note(frame, area, b, text, app.theme.muted());
        return;
    }
    let t = &app.theme;
    let table_rows: Vec<Row> = rows
        .iter()
        .map(|r| {
            let last = match r.last_state {
                Some(s) => Span::styled(s.as_str(), t.run_state(s)),
                None => Span::styled("-", t.muted()),
            };
            let state = if r.paused {
                Span::styled("paused", t.muted())
            } else if r.active > 0 {
                Span::raw(format!("{} active", r.active))
            } else {
                Span::raw("")
            };
            Row::new(vec![
                Cell::from(r.name.clone()),
                Cell::from(r.schedule.clone().unwrap_or_else(|| "-".into())),
                Cell::from(
                    r.next_fire
                        .filter(|_| !r.paused)
                        .map(|f| app.fmt_time(f, "%m-%d %H:%M"))
                        .unwrap_or_else(|| "-".into()),
                ),
                Cell::from(Line::from(last)),
                Cell::from(Line::from(state)),
            ])
        })
        .collect();
    let table = Table::new(
        table_rows,
        [
            Constraint::Fill(2),
            Constraint::Length(16),
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(9),
        ],
    )
    .header(header(
        &app.theme,
        &["NAME", "SCHEDULE", "NEXT FIRE", "LAST RUN", ""],
    ))
    .block(b);
    let len = rows.len();
    let (list, detail) = areas(area);
    draw_list(frame, list, app, Pane::Workflows, table, len);
    if let Some(d) = detail {
        let sel = app.view.list(Pane::Workflows).selected.min(len - 1);
        render_detail(frame, d, app, &rows[sel].name);
    }
}

fn render_detail(frame: &mut Frame, area: Rect, app: &App, name: &str) {
    let t = &app.theme;
    let b = block(t, name.to_string(), false);
    let Some(w) = app.data.workflows.iter().find(|w| w.name == name) else {
        let text = app
            .data
            .errors
            .get("workflows")
            .cloned()
            .unwrap_or_else(|| "loading...".into());
        return note(frame, area, b, text, t.muted());
    };
    let field = |k: &str, v: String| {
        Line::from(vec![
            Span::styled(format!("{k:<12}"), t.muted()),
            Span::raw(v),
        ])
    };
    let mut lines = Vec::new();
    if let Some(d) = &w.description {
        lines.push(Line::raw(d.clone()));
    }
    lines.push(field("file", w.file.clone()));
    let params = if w.params.is_empty() {
        "none".to_string()
    } else {
        crate::protocol::pairs_text(&w.params, "  ")
    };
    lines.push(field("params", params));
    let tasks = w
        .tasks
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    lines.push(field("tasks", format!("{} ({tasks})", w.tasks.len())));
    let fires = if w.paused {
        "paused (p resumes)".to_string()
    } else if w.next_fires.is_empty() {
        "not scheduled".to_string()
    } else {
        w.next_fires
            .iter()
            .take(3)
            .map(|f| app.fmt_time(*f, "%m-%d %H:%M"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    lines.push(field("next fires", fires));
    frame.render_widget(Paragraph::new(lines).block(b), area);
}
