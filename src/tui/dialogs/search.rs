//! `/` in the logs: the search text, typed on the message line and searched on Enter.

use ratatui::crossterm::event::KeyEvent;
use ratatui::text::{Line, Span};

use super::answer::{Answer, ENTER, ESC, LineKey};
use crate::tui::keymap::{DialogKey, dialog_key};
use crate::tui::line_input::LineInput;
use crate::tui::theme::Theme;

/// Keys of the search besides those editing it.
pub static KEYS: &[DialogKey<LineKey>] = &[
    DialogKey {
        keys: ENTER,
        does: LineKey::Submit,
        label: "search",
    },
    DialogKey {
        keys: ESC,
        does: LineKey::Cancel,
        label: "cancel",
    },
];

/// Enter answers the text to search, Esc closes; other keys edit it.
pub fn on_key(text: &mut LineInput, key: &KeyEvent) -> Answer<String> {
    match dialog_key(KEYS, key) {
        Some(LineKey::Cancel) => Answer::Close,
        Some(LineKey::Submit) => Answer::Done(text.text().to_string()),
        None => {
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
