//! What a dialog answers to a key, the keys every line dialog shares, and key hints drawn from
//! a dialog's key table.

use ratatui::text::Span;

use crate::tui::keymap::{DialogKey, Key, code, ctrl};
use crate::tui::theme::Theme;
use ratatui::crossterm::event::KeyCode;

/// What a key did to a dialog that either stays or closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// Stay open.
    Stay,
    /// Close without doing anything.
    Close,
    /// Close and do this.
    Done(T),
}

/// Esc.
pub const ESC: &[Key] = &[code(KeyCode::Esc)];
/// Enter.
pub const ENTER: &[Key] = &[code(KeyCode::Enter)];
/// Ctrl-C, which closes most dialogs.
pub const CTRL_C: &[Key] = &[ctrl('c')];

/// What the keys of a one-line dialog do (besides editing the line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKey {
    /// Answer the line.
    Submit,
    /// Close.
    Cancel,
}

/// The labelled keys of `table` as hint spans (`y yes   n no`), `sep` between them, leaving
/// out those `shown` refuses.
pub fn hints<A: Copy>(
    table: &[DialogKey<A>],
    theme: &Theme,
    sep: &'static str,
    shown: impl Fn(A) -> bool,
) -> Vec<Span<'static>> {
    let mut out = Vec::new();
    for d in table
        .iter()
        .filter(|d| !d.label.is_empty() && shown(d.does))
    {
        let Some(key) = d.keys.first() else {
            continue;
        };
        if !out.is_empty() {
            out.push(Span::raw(sep));
        }
        out.push(Span::styled(key.label(), theme.hint_key()));
        out.push(Span::raw(format!(" {}", d.label)));
    }
    out
}
