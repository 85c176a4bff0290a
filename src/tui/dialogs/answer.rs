//! What a dialog answers to a key, and the key most of them close on.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// True for Ctrl-C, which closes most dialogs.
pub fn is_ctrl_c(key: &KeyEvent) -> bool {
    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL)
}

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
