//! What a pane is ([`PaneDef`]) and the helpers the panes share for their lists.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::{Gauge, Table};

use crate::protocol::RunState;
use crate::protocol::api::StatusReport;
use crate::tui::app::{App, Effect};
use crate::tui::draw;
use crate::tui::keymap::{Action, Arg, Binding, Pane};
use crate::tui::theme::Theme;

/// A pane: its bindings and what it does.
pub struct PaneDef {
    /// Which pane.
    pub pane: Pane,
    /// Help of its `1`..`9` key and `:` command (`runs pane`).
    pub show_help: &'static str,
    /// The argument its `:` command takes.
    pub show_arg: Arg,
    /// Keys that apply in it (and in its inner contexts).
    pub bindings: &'static [Binding],
    /// Does `action` (of its own bindings, or a global one it does its own way); `None` leaves
    /// a global action to the global handler.
    pub act: fn(&mut App, Action, Option<&str>) -> Option<Vec<Effect>>,
    /// Fits the view state that depends on the pane's size (list offsets, page size) to `area`.
    pub fit: fn(&mut App, Rect),
    /// Draws the pane into `area`.
    pub draw: fn(&mut Frame, Rect, &App),
    /// Rows of its list as shown (filtered); 0 without a list.
    pub rows: fn(&App) -> usize,
}

/// Does nothing: for panes without a list to fit.
pub fn fit_nothing(_: &mut App, _: Rect) {}

/// No rows: for panes without a list.
pub fn no_rows(_: &App) -> usize {
    0
}

/// The agent slots in use as a gauge labelled `busy/slots {what}`.
pub fn slots_gauge(theme: &Theme, s: &StatusReport, what: &str) -> Gauge<'static> {
    gauge(
        theme,
        s.busy_slots,
        s.slots,
        format!("{}/{} {what}", s.busy_slots, s.slots),
    )
}

/// `busy` of `slots` as a gauge with `label`.
pub fn gauge(theme: &Theme, busy: usize, slots: usize, label: String) -> Gauge<'static> {
    let ratio = if slots == 0 {
        0.0
    } else {
        (busy as f64 / slots as f64).clamp(0.0, 1.0)
    };
    Gauge::default()
        .ratio(ratio)
        .label(label)
        .gauge_style(theme.run_state(RunState::Running))
}

/// The filter shown in a list's title.
pub fn filter_suffix(app: &App, pane: Pane) -> String {
    let f = app.view.filter(pane);
    if f.is_empty() {
        String::new()
    } else {
        format!(" /{f}")
    }
}

/// Fits a list of `len` rows drawn as a bordered table with a header in `area`: the page
/// size, the selection clamped, the first row shown.
pub fn fit_list(app: &mut App, pane: Pane, area: Rect, len: usize) {
    let rows = draw::table_rows(area);
    app.view.page = rows.max(1);
    let list = app.view.list_mut(pane);
    list.selected = list.selected.min(len.saturating_sub(1));
    list.offset = draw::table_offset(list.offset, list.selected, len, rows);
}

/// Draws a list fitted by [`fit_list`].
pub fn draw_list(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    pane: Pane,
    table: Table<'static>,
    len: usize,
) {
    let list = app.view.list(pane);
    draw::list_table(
        frame,
        area,
        &app.theme,
        table,
        list.offset,
        (len > 0).then_some(list.selected),
    );
}
