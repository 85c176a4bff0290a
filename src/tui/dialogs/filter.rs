//! `/` on a list: its filter, edited live on the message line.

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::text::{Line, Span};

use crate::tui::line_input::LineInput;
use crate::tui::theme::Theme;

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
    match key.code {
        KeyCode::Esc => {
            filter.clear();
            FilterKey::Clear
        }
        KeyCode::Enter => FilterKey::Keep,
        _ => {
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
