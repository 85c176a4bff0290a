//! Workflows: schedule, next fire, last run state, paused.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::{block, filter_suffix, header, list_table, note};
use crate::tui::app::App;
use crate::tui::keymap::Pane;

/// Draws the workflows pane.
pub fn render(frame: &mut Frame, area: Rect, app: &mut App) {
    let rows = app.workflow_rows();
    let title = format!(
        "Workflows ({}){}",
        rows.len(),
        filter_suffix(app, Pane::Workflows)
    );
    let b = block(app, title, true);
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
        app,
        &["NAME", "SCHEDULE", "NEXT FIRE", "LAST RUN", ""],
    ))
    .block(b);
    let len = rows.len();
    // Below the list, the selected workflow in detail when there is room.
    let (list, detail) = if area.height >= 16 {
        let [l, d] = Layout::vertical([Constraint::Min(5), Constraint::Length(8)]).areas(area);
        (l, Some(d))
    } else {
        (area, None)
    };
    list_table(frame, list, app, Pane::Workflows, table, len);
    if let Some(d) = detail {
        let sel = app.lists[Pane::Workflows.index()].selected.min(len - 1);
        render_detail(frame, d, app, &rows[sel].name);
    }
}

fn render_detail(frame: &mut Frame, area: Rect, app: &App, name: &str) {
    let t = &app.theme;
    let b = block(app, name.to_string(), false);
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
        w.params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("  ")
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
