//! Queue: runs held by `max_active_runs` and task attempts waiting for a slot.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::widgets::{Row, Table};

use super::{block, filter_suffix, header, list_table, note};
use crate::tui::app::App;
use crate::tui::keymap::Pane;

/// Draws the queue pane.
pub fn render(frame: &mut Frame, area: Rect, app: &mut App) {
    let rows = app.queue_rows();
    let title = format!("Queue ({}){}", rows.len(), filter_suffix(app, Pane::Queue));
    let b = block(app, title, true);
    match &app.data.queue {
        None => return note(frame, area, b, "loading...".into(), app.theme.muted()),
        Some(Err(e)) => return note(frame, area, b, format!("queue: {e}"), app.theme.error()),
        Some(Ok(_)) if rows.is_empty() => {
            return note(
                frame,
                area,
                b,
                "nothing is waiting".into(),
                app.theme.muted(),
            );
        }
        Some(Ok(_)) => {}
    }
    let table_rows: Vec<Row> = rows
        .iter()
        .map(|(id, wf, what)| Row::new(vec![format!("#{id}"), wf.clone(), what.clone()]))
        .collect();
    let len = table_rows.len();
    let table = Table::new(
        table_rows,
        [
            Constraint::Length(7),
            Constraint::Length(20),
            Constraint::Fill(1),
        ],
    )
    .header(header(app, &["RUN", "WORKFLOW", "WAITING"]))
    .block(b);
    list_table(frame, area, app, Pane::Queue, table, len);
}
