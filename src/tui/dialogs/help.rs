//! `?`: the help generated from the key table, scrollable.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::answer::CTRL_C;
use crate::tui::draw::{block, centered};
use crate::tui::keymap::{DialogKey, code, dialog_key, k};
use crate::tui::theme::Theme;

/// Keys of the help: lines to scroll by, `None` to close.
pub static KEYS: &[DialogKey<Option<isize>>] = &[
    DialogKey {
        keys: &[code(KeyCode::Esc), k('q'), k('?')],
        does: None,
        label: "closes",
    },
    DialogKey {
        keys: &[code(KeyCode::Down), k('j')],
        does: Some(1),
        label: "",
    },
    DialogKey {
        keys: &[code(KeyCode::Up), k('k')],
        does: Some(-1),
        label: "",
    },
    DialogKey {
        keys: &[code(KeyCode::PageDown)],
        does: Some(10),
        label: "",
    },
    DialogKey {
        keys: &[code(KeyCode::PageUp)],
        does: Some(-10),
        label: "",
    },
    DialogKey {
        keys: CTRL_C,
        does: None,
        label: "",
    },
];

/// The first line shown after `key`, or `None` when the help closes.
pub fn on_key(scroll: usize, key: &KeyEvent) -> Option<usize> {
    match dialog_key(KEYS, key) {
        Some(Some(d)) => Some(scroll.saturating_add_signed(d)),
        Some(None) => None,
        None => Some(scroll),
    }
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
