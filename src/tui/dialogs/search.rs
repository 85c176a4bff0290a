//! `/` in the logs: the search text, typed on the message line and searched on Enter.

use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::text::{Line, Span};

use super::answer::Answer;
use crate::tui::line_input::LineInput;
use crate::tui::theme::Theme;

/// Enter answers the text to search, Esc closes; other keys edit it.
pub fn on_key(text: &mut LineInput, key: &KeyEvent) -> Answer<String> {
    match key.code {
        KeyCode::Esc => Answer::Close,
        KeyCode::Enter => Answer::Done(text.text().to_string()),
        _ => {
            text.handle(key);
            Answer::Stay
        }
    }
}

/// The message line while the search is typed.
pub fn line(text: &LineInput, theme: &Theme) -> Line<'static> {
    let mut spans = vec![Span::styled("search /", theme.hint_key())];
    spans.extend(text.spans(Default::default(), theme.muted()));
    spans.push(Span::styled("  Enter searches, Esc cancels", theme.muted()));
    Line::from(spans)
}
