//! `/` on a list: its filter, edited live on the message line.

use ratatui::crossterm::event::KeyEvent;
use ratatui::text::{Line, Span};

use super::answer::{ENTER, ESC, LineKey};
use crate::tui::keymap::{DialogKey, dialog_key};
use crate::tui::line_input::LineInput;
use crate::tui::theme::Theme;

/// Keys of the filter besides those editing it.
pub static KEYS: &[DialogKey<LineKey>] = &[
    DialogKey {
        keys: ENTER,
        does: LineKey::Submit,
        label: "keep the filter",
    },
    DialogKey {
        keys: ESC,
        does: LineKey::Cancel,
        label: "clear the filter",
    },
];

/// What a key did to the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKey {
    /// Still typing.
    Stay,
    /// Enter: close, keeping the filter.
    Keep,
    /// Esc: close, clearing the filter.
    Clear,
}

/// Enter keeps the filter, Esc clears it; other keys edit it.
pub fn on_key(filter: &mut LineInput, key: &KeyEvent) -> FilterKey {
    match dialog_key(KEYS, key) {
        Some(LineKey::Cancel) => {
            filter.clear();
            FilterKey::Clear
        }
        Some(LineKey::Submit) => FilterKey::Keep,
        None => {
            filter.handle(key);
            FilterKey::Stay
        }
    }
}

/// The message line while the filter is typed.
pub fn line(filter: &LineInput, theme: &Theme) -> Line<'static> {
    let mut spans = vec![Span::styled("/", theme.hint_key())];
    spans.extend(filter.spans(Default::default(), theme.muted()));
    spans.push(Span::styled("  Enter keeps, Esc clears", theme.muted()));
    Line::from(spans)
}
