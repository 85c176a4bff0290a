//! Runs (filterable) with the DAG of the selected run.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::{block, filter_suffix, header, list_table, note};
use crate::humantime::format_secs;
use crate::tui::app::App;
use crate::tui::dag_view;
use crate::tui::keymap::Pane;

/// Draws the runs pane.
pub fn render(frame: &mut Frame, area: Rect, app: &mut App) {
    // The list takes what its rows need, up to 40% of the pane (less while the DAG has focus).
    let want = app.run_rows().len() as u16 + 3;
    let cap = if app.dag_focus {
        6
    } else {
        (area.height * 2 / 5).max(9)
    };
    let list_h = want.clamp(5, cap);
    let [list, dag] =
        Layout::vertical([Constraint::Length(list_h), Constraint::Min(3)]).areas(area);
    render_list(frame, list, app);
    render_dag(frame, dag, app);
}

fn render_list(frame: &mut Frame, area: Rect, app: &mut App) {
    let t = &app.theme;
    let rows = app.run_rows();
    let title = format!("Runs ({}){}", rows.len(), filter_suffix(app, Pane::Runs));
    let b = block(app, title, !app.dag_focus);
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
        app,
        &["RUN", "WORKFLOW", "STATE", "STARTED", "TOOK", "FAILED"],
    ))
    .block(b);
    list_table(frame, area, app, Pane::Runs, table, len);
}

fn render_dag(frame: &mut Frame, area: Rect, app: &mut App) {
    let focused = app.dag_focus;
    let Some(detail) = app.data.detail.as_ref() else {
        let text = match (app.selected_run, app.data.errors.get("run detail")) {
            (_, Some(e)) => e.clone(),
            (Some(_), None) => "loading...".into(),
            (None, None) => "select a run to see its tasks".into(),
        };
        let b = block(app, "Tasks", focused);
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
    let b = block(app, title, focused);
    let inner = b.inner(area);
    frame.render_widget(b, area);
    // When focused, the last row describes the selected task in full.
    let (inner, footer) = if focused && inner.height > 2 {
        let [g, f] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
        (g, Some(f))
    } else {
        (inner, None)
    };
    let (w, h) = (inner.width as usize, inner.height as usize);
    app.dag_layout.fit(w);
    let sel = focused.then_some(app.dag_selected);
    if focused {
        app.dag_layout
            .scroll_to(app.dag_selected, w, h, &mut app.dag_scroll);
    }
    let Some(detail) = app.data.detail.as_ref() else {
        return;
    };
    dag_view::render(
        &detail.tasks,
        &app.dag_layout,
        sel,
        app.dag_scroll,
        app.now,
        &app.theme,
        inner,
        frame.buffer_mut(),
    );
    if let (Some(f), Some(t)) = (footer, detail.tasks.get(app.dag_selected)) {
        let text = dag_view::task_summary(t, app.now);
        frame.render_widget(Paragraph::new(Line::styled(text, app.theme.muted())), f);
    }
    let (total_w, total_h) = app.dag_layout.size();
    let muted = app.theme.muted();
    let buf = frame.buffer_mut();
    if total_h > h {
        let more = format!(
            " {}-{}/{} ",
            app.dag_scroll.1 + 1,
            (app.dag_scroll.1 + h).min(total_h),
            total_h
        );
        let x = area.right().saturating_sub(more.len() as u16 + 1);
        buf.set_string(x, area.bottom() - 1, more, muted);
    }
    // Arrows on the border where columns are out of view.
    if app.dag_scroll.0 > 0 {
        buf.set_string(area.x, inner.y, "◀", muted);
    }
    if total_w > app.dag_scroll.0 + w {
        buf.set_string(area.right() - 1, inner.y, "▶", muted);
    }
}
