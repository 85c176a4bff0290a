//! One module per pane; each draws state it was given and never talks to the engine.

pub mod agents;
pub mod form;
pub mod history;
pub mod logs;
pub mod overview;
pub mod queue;
pub mod runs;
pub mod workflows;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Gauge, Paragraph, Row, Table, TableState};

use super::app::App;
use super::keymap::Pane;

/// The agent slots in use as a gauge labelled `busy/slots {what}`.
fn slots_gauge(app: &App, s: &crate::protocol::api::StatusReport, what: &str) -> Gauge<'static> {
    let ratio = if s.slots == 0 {
        0.0
    } else {
        (s.busy_slots as f64 / s.slots as f64).clamp(0.0, 1.0)
    };
    Gauge::default()
        .ratio(ratio)
        .label(format!("{}/{} {what}", s.busy_slots, s.slots))
        .gauge_style(app.theme.run_state(crate::protocol::RunState::Running))
}

/// Draws the focused pane into `area`.
pub fn render(frame: &mut Frame, area: Rect, app: &mut App) {
    match app.pane {
        Pane::Overview => overview::render(frame, area, app),
        Pane::Workflows => workflows::render(frame, area, app),
        Pane::Runs => runs::render(frame, area, app),
        Pane::Queue => queue::render(frame, area, app),
        Pane::Logs => logs::render(frame, area, app),
        Pane::History => history::render(frame, area, app),
        Pane::Agents => agents::render(frame, area, app),
    }
}

/// A bordered block with a title, highlighted when focused.
pub fn block(app: &App, title: impl Into<String>, focused: bool) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(app.theme.border(focused))
        .title(format!(" {} ", title.into()))
}

/// A selectable table whose selection and scroll live in the pane's list state.
pub fn list_table(
    frame: &mut Frame,
    area: Rect,
    app: &mut App,
    pane: Pane,
    table: Table<'static>,
    len: usize,
) {
    let inner_rows = area.height.saturating_sub(3) as usize; // borders + header
    app.page = inner_rows.max(1);
    let list = &mut app.lists[pane.index()];
    list.selected = list.selected.min(len.saturating_sub(1));
    let mut state = TableState::default()
        .with_offset(list.offset)
        .with_selected((len > 0).then_some(list.selected));
    frame.render_stateful_widget(
        table.row_highlight_style(app.theme.selected()),
        area,
        &mut state,
    );
    app.lists[pane.index()].offset = state.offset();
}

/// A header row.
pub fn header(app: &App, cells: &[&'static str]) -> Row<'static> {
    Row::new(cells.to_vec()).style(app.theme.muted())
}

/// A one-line note inside a block (empty lists, errors).
pub fn note(frame: &mut Frame, area: Rect, block: Block<'static>, text: String, style: Style) {
    frame.render_widget(Paragraph::new(Line::styled(text, style)).block(block), area);
}

/// The filter shown in a list's title.
pub fn filter_suffix(app: &App, pane: Pane) -> String {
    let f = &app.lists[pane.index()].filter;
    if f.is_empty() {
        String::new()
    } else {
        format!(" /{f}")
    }
}
