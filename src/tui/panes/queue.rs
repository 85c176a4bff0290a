//! Queue: runs held by `max_active_runs` and task attempts waiting for a slot or for an agent
//! with their labels, each with what it waits for.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Row, Table};

use super::pane::{PaneDef, draw_list, filter_suffix, fit_list};
use crate::tui::app::{App, Effect};
use crate::tui::draw::{block, header, note};
use crate::tui::keymap::{Action, Arg, Pane};

/// The queue pane.
pub static PANE: PaneDef = PaneDef {
    pane: Pane::Queue,
    show_help: "queue pane",
    show_arg: Arg::None,
    bindings: &[],
    act,
    fit,
    draw,
    rows: |app| app.queue_rows().len(),
};

fn act(app: &mut App, action: Action, _: Option<&str>) -> Option<Vec<Effect>> {
    (action == Action::Enter).then(|| show_run(app))
}

/// Enter: the selected entry's run in the runs pane, unfiltered.
fn show_run(app: &mut App) -> Vec<Effect> {
    let rows = app.queue_rows();
    let Some(id) = rows
        .get(app.view.list(Pane::Queue).selected)
        .map(|r| r.run_id)
    else {
        return Vec::new();
    };
    app.view.list_mut(Pane::Runs).filter.clear();
    app.view.show(Pane::Runs);
    match app.run_rows().iter().position(|r| r.run_id == id) {
        Some(i) => app.select_run_at(i).into_iter().collect(),
        None => Vec::new(),
    }
}

fn fit(app: &mut App, area: Rect) {
    let len = app.queue_rows().len();
    if matches!(app.data.queue, Some(Ok(_))) && len > 0 {
        fit_list(app, Pane::Queue, area, len);
    }
}

/// Draws the queue pane.
fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let rows = app.queue_rows();
    let title = format!("Queue ({}){}", rows.len(), filter_suffix(app, Pane::Queue));
    let b = block(&app.theme, title, true);
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
        .map(|r| {
            Row::new(vec![
                format!("#{}", r.run_id),
                r.workflow.clone(),
                r.what.clone(),
                r.waiting_for.clone(),
            ])
        })
        .collect();
    let len = table_rows.len();
    // The column cuts a long reason short; the selected row's shows in full on the border.
    let selected = &rows[app.view.list(Pane::Queue).selected.min(len - 1)];
    let b = b.title_bottom(Line::styled(
        format!(
            " #{} {}: {} ",
            selected.run_id, selected.what, selected.waiting_for
        ),
        app.theme.muted(),
    ));
    let table = Table::new(
        table_rows,
        [
            Constraint::Length(7),
            Constraint::Length(14),
            Constraint::Fill(1),
            Constraint::Fill(1),
        ],
    )
    .header(header(
        &app.theme,
        &["RUN", "WORKFLOW", "WAITING", "WAITING FOR"],
    ))
    .block(b);
    draw_list(frame, area, app, Pane::Queue, table, len);
}
