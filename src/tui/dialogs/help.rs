//! `?`: the help generated from the key table, scrollable.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::answer::is_ctrl_c;
use crate::tui::draw::{block, centered};
use crate::tui::theme::Theme;

/// The first line shown after `key`, or `None` when the help closes.
pub fn on_key(scroll: usize, key: &KeyEvent) -> Option<usize> {
    Some(match key.code {
        KeyCode::Esc | KeyCode::Char('q') | KeyCode::Char('?') => return None,
        KeyCode::Down | KeyCode::Char('j') => scroll + 1,
        KeyCode::Up | KeyCode::Char('k') => scroll.saturating_sub(1),
        KeyCode::PageDown => scroll + 10,
        KeyCode::PageUp => scroll.saturating_sub(10),
        _ if is_ctrl_c(key) => return None,
        _ => scroll,
    })
}

/// Draws `lines` over `body` from line `scroll`.
pub fn draw(
    frame: &mut Frame,
    body: Rect,
    theme: &Theme,
    lines: Vec<Line<'static>>,
    scroll: usize,
) {
    let popup = centered(body, 76, body.height.saturating_sub(2));
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((scroll.min(u16::MAX as usize) as u16, 0))
            .block(block(theme, "Help — Esc closes, ↑/↓ scroll", true)),
        popup,
    );
}
