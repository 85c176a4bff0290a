//! History: runs, failure rate and durations per workflow, with a sparkline of durations.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, Sparkline, Table};

use super::pane::{PaneDef, draw_list, filter_suffix, fit_list};
use crate::humantime::format_secs;
use crate::tui::app::{App, Effect};
use crate::tui::draw::{block, header, note};
use crate::tui::keymap::{Action, Arg, Pane};

/// The history pane.
pub static PANE: PaneDef = PaneDef {
    pane: Pane::History,
    show_help: "history pane",
    show_arg: Arg::None,
    bindings: &[],
    act,
    fit,
    draw,
    rows: |app| app.history_rows().len(),
};

fn act(app: &mut App, action: Action, _: Option<&str>) -> Option<Vec<Effect>> {
    (action == Action::Enter).then(|| app.runs_of_selected_workflow())
}

/// Per-workflow figures on top, the selected workflow's runs below, then its durations.
fn areas(area: Rect, rows: usize) -> [Rect; 3] {
    let list_h = (rows as u16 + 3).clamp(5, (area.height / 3).max(5));
    Layout::vertical([
        Constraint::Length(list_h),
        Constraint::Min(3),
        Constraint::Length(6),
    ])
    .areas(area)
}

fn fit(app: &mut App, area: Rect) {
    let len = app.history_rows().len();
    if len > 0 {
        fit_list(app, Pane::History, areas(area, len)[0], len);
    }
}

/// Draws the history pane.
fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let rows = app.history_rows();
    let [list, runs, spark] = areas(area, rows.len());
    let title = format!(
        "History: last {} runs by workflow{}",
        app.data.runs.len(),
        filter_suffix(app, Pane::History)
    );
    let b = block(&app.theme, title, true);
    if rows.is_empty() {
        let text = app
            .data
            .errors
            .get("history")
            .cloned()
            .unwrap_or_else(|| "no runs yet".into());
        note(frame, area, b, text, app.theme.muted());
        return;
    }
    let table_rows: Vec<Row> = rows
        .iter()
        .map(|s| {
            Row::new(vec![
                s.name.clone(),
                s.runs.to_string(),
                format!("{:.0}%", s.failure_rate() * 100.0),
                s.mean_secs.map(format_secs).unwrap_or_else(|| "-".into()),
                s.durations_ms
                    .last()
                    .map(|d| format_secs(*d as f64 / 1000.0))
                    .unwrap_or_else(|| "-".into()),
            ])
        })
        .collect();
    let table = Table::new(
        table_rows,
        [
            Constraint::Fill(1),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(9),
        ],
    )
    .header(header(
        &app.theme,
        &["WORKFLOW", "RUNS", "FAILED", "MEAN", "LAST"],
    ))
    .block(b);
    let len = rows.len();
    draw_list(frame, list, app, Pane::History, table, len);
    let sel = app.view.list(Pane::History).selected.min(len - 1);
    let s = &rows[sel];
    render_runs(frame, runs, app, &s.name);
    // The newest runs that fit, oldest on the left.
    let width = spark.width.saturating_sub(2) as usize;
    let data: Vec<u64> = s
        .durations_ms
        .iter()
        .skip(s.durations_ms.len().saturating_sub(width))
        .copied()
        .collect();
    let max = data.iter().max().copied().unwrap_or(0);
    let title = format!(
        "Durations of {} (last {}, max {})",
        s.name,
        data.len(),
        format_secs(max as f64 / 1000.0)
    );
    frame.render_widget(
        Sparkline::default()
            .data(&data)
            .style(app.theme.run_state(crate::protocol::RunState::Running))
            .block(block(&app.theme, title, false)),
        spark,
    );
}

/// The selected workflow's runs, newest first, with state and duration.
fn render_runs(frame: &mut Frame, area: Rect, app: &App, workflow: &str) {
    let t = &app.theme;
    let runs: Vec<_> = app
        .data
        .runs
        .iter()
        .filter(|r| r.workflow == workflow)
        .take(area.height.saturating_sub(3) as usize)
        .collect();
    let rows: Vec<Row> = runs
        .iter()
        .map(|r| {
            Row::new(vec![
                Cell::from(format!("#{}", r.run_id)),
                Cell::from(Line::from(Span::styled(
                    r.state.as_str(),
                    t.run_state(r.state),
                ))),
                Cell::from(
                    r.started_at
                        .map(|s| app.fmt_time(s, "%m-%d %H:%M:%S"))
                        .unwrap_or_else(|| "-".into()),
                ),
                Cell::from(
                    r.duration_secs
                        .map(format_secs)
                        .unwrap_or_else(|| "-".into()),
                ),
                Cell::from(Line::from(Span::styled(
                    r.failed_tasks.join(", "),
                    t.error(),
                ))),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(6),
            Constraint::Length(10),
            Constraint::Length(15),
            Constraint::Length(8),
            Constraint::Fill(1),
        ],
    )
    .header(header(t, &["RUN", "STATE", "STARTED", "TOOK", "FAILED"]))
    .block(block(t, format!("Runs of {workflow}"), false));
    frame.render_widget(table, area);
}
