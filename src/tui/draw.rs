//! Drawing helpers every pane and dialog shares: the screen's parts, centred popups, bordered
//! blocks, tables. A leaf: it knows the theme and nothing else of the console.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, TableState};

use super::theme::Theme;

/// Smallest usable terminal.
pub const MIN_WIDTH: u16 = 80;
/// Smallest usable terminal.
pub const MIN_HEIGHT: u16 = 24;

/// The rows of the screen: tab bar, body, message line, hint bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Screen {
    /// Tab bar.
    pub tabs: Rect,
    /// The focused pane (or the editor) and the dialogs over it.
    pub body: Rect,
    /// Message line.
    pub message: Rect,
    /// Key hints.
    pub hints: Rect,
}

/// The parts of a screen of `area`; `None` when it is smaller than the console needs.
pub fn screen(area: Rect) -> Option<Screen> {
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        return None;
    }
    let [tabs, body, message, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    Some(Screen {
        tabs,
        body,
        message,
        hints,
    })
}

/// A rectangle of `w`x`h` centred in `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

/// A bordered block with a title, highlighted when focused.
pub fn block(theme: &Theme, title: impl Into<String>, focused: bool) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(focused))
        .title(format!(" {} ", title.into()))
}

/// The inside of a bordered block drawn over `area`.
pub fn inner(area: Rect) -> Rect {
    Block::default().borders(Borders::ALL).inner(area)
}

/// A header row.
pub fn header(theme: &Theme, cells: &[&'static str]) -> Row<'static> {
    Row::new(cells.to_vec()).style(theme.muted())
}

/// A one-line note inside a block (empty lists, errors).
pub fn note(frame: &mut Frame, area: Rect, block: Block<'static>, text: String, style: Style) {
    frame.render_widget(Paragraph::new(Line::styled(text, style)).block(block), area);
}

/// Rows a bordered table with a header shows in `area`.
pub fn table_rows(area: Rect) -> usize {
    area.height.saturating_sub(3) as usize
}

/// The first row a table of `len` one-line rows shows in `rows` lines so that `selected` is
/// in view, starting from `offset`: what ratatui's `Table` works out while drawing, worked out
/// beforehand so that drawing changes nothing.
pub fn table_offset(offset: usize, selected: usize, len: usize, rows: usize) -> usize {
    if len == 0 {
        return offset;
    }
    let last = len - 1;
    let selected = selected.min(last);
    let start = offset.min(last).min(selected);
    if selected >= start + rows {
        selected + 1 - rows
    } else {
        start
    }
}

/// Draws a selectable table with its first shown row `offset` (see [`table_offset`]).
pub fn list_table(
    frame: &mut Frame,
    area: Rect,
    theme: &Theme,
    table: Table<'static>,
    offset: usize,
    selected: Option<usize>,
) {
    let mut state = TableState::default()
        .with_offset(offset)
        .with_selected(selected);
    frame.render_stateful_widget(
        table.row_highlight_style(theme.selected()),
        area,
        &mut state,
    );
}

/// `runs` -> `Runs`.
pub fn title_case(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::layout::Constraint;

    /// The offset ratatui's table settles on after one draw.
    fn drawn_offset(offset: usize, selected: usize, len: usize, height: u16) -> usize {
        let mut terminal = Terminal::new(TestBackend::new(20, height)).expect("terminal");
        let rows: Vec<Row> = (0..len).map(|i| Row::new(vec![i.to_string()])).collect();
        let table = Table::new(rows, [Constraint::Length(5)])
            .header(Row::new(vec!["H"]))
            .block(Block::default().borders(Borders::ALL));
        let mut state = TableState::default()
            .with_offset(offset)
            .with_selected(Some(selected));
        terminal
            .draw(|f| f.render_stateful_widget(table, f.area(), &mut state))
            .expect("draw");
        state.offset()
    }

    #[test]
    fn table_offset_is_what_ratatui_draws() {
        for height in [3u16, 4, 5, 8] {
            let rows = table_rows(Rect::new(0, 0, 20, height));
            for len in 1..12 {
                for selected in 0..len {
                    for offset in 0..len + 2 {
                        assert_eq!(
                            table_offset(offset, selected, len, rows),
                            drawn_offset(offset, selected, len, height),
                            "offset {offset} selected {selected} len {len} height {height}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn centered_stays_inside() {
        let area = Rect::new(2, 3, 10, 6);
        assert_eq!(centered(area, 4, 2), Rect::new(5, 5, 4, 2));
        assert_eq!(centered(area, 40, 20), area);
    }
}
