//! Agents: slots used and free.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Row, Table};

use super::{block, header, note, slots_gauge};
use crate::tui::app::App;

/// Draws the agents pane.
pub fn render(frame: &mut Frame, area: Rect, app: &mut App) {
    let b = block(app, "Agents", true);
    let Some(s) = app.data.status.as_ref() else {
        let text = app
            .data
            .errors
            .get("status")
            .cloned()
            .unwrap_or_else(|| "loading...".into());
        return note(frame, area, b, text, app.theme.muted());
    };
    let inner = b.inner(area);
    frame.render_widget(b, area);
    let [table_area, gauge] =
        Layout::vertical([Constraint::Length(3), Constraint::Length(1)]).areas(inner);
    let free = s.slots.saturating_sub(s.busy_slots);
    let table = Table::new(
        vec![Row::new(vec![
            "local".to_string(),
            format!("pid {}", s.pid),
            s.slots.to_string(),
            s.busy_slots.to_string(),
            free.to_string(),
            s.queued_tasks.to_string(),
        ])],
        [
            Constraint::Length(10),
            Constraint::Length(12),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(8),
        ],
    )
    .header(header(
        app,
        &["AGENT", "PROCESS", "SLOTS", "BUSY", "FREE", "WAITING"],
    ));
    frame.render_widget(table, table_area);
    frame.render_widget(slots_gauge(app, s, "slots busy"), gauge);
}
