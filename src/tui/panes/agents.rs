//! Agents: slots used and free.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::widgets::{Row, Table};

use super::pane::{PaneDef, slots_gauge};
use crate::tui::app::App;
use crate::tui::draw::{block, header, note};
use crate::tui::keymap::{Arg, Pane};

/// The agents pane.
pub static PANE: PaneDef = PaneDef {
    pane: Pane::Agents,
    show_help: "agents pane",
    show_arg: Arg::None,
    bindings: &[],
    act: |_, _, _| None,
    fit: super::pane::fit_nothing,
    draw,
    rows: super::pane::no_rows,
};

/// Draws the agents pane.
fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let b = block(&app.theme, "Agents", true);
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
        &app.theme,
        &["AGENT", "PROCESS", "SLOTS", "BUSY", "FREE", "WAITING"],
    ));
    frame.render_widget(table, table_area);
    frame.render_widget(slots_gauge(&app.theme, s, "slots busy"), gauge);
}
