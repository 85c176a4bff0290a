//! The choice after a save found its file changed on disk: reload it, overwrite it, or keep
//! editing.

use ratatui::Frame;
use ratatui::crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::answer::{Answer, CTRL_C, ESC, hints};
use crate::tui::draw::centered;
use crate::tui::keymap::{DialogKey, dialog_key, k};
use crate::tui::theme::Theme;

/// What the principal said about a file that changed under the editor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecConflict {
    /// File name relative to the workflows directory.
    pub file: String,
    /// What changed.
    pub message: String,
    /// Hash of the file now (`None`: it is gone); overwriting sends this as the base.
    pub hash: Option<String>,
    /// Its text now, to reload (`None`: gone or not text).
    pub text: Option<String>,
}

/// What the user chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// `o`: save the editor's text over what is on disk.
    Overwrite,
    /// `r`: replace the editor's text with what is on disk.
    Reload,
    /// Esc: back to the editor, nothing saved.
    KeepEditing,
}

/// Keys of the choice, in the order of its hints; `None` closes quietly.
pub static KEYS: &[DialogKey<Option<Choice>>] = &[
    DialogKey {
        keys: &[k('r'), k('R')],
        does: Some(Choice::Reload),
        label: "reload from disk",
    },
    DialogKey {
        keys: &[k('o'), k('O')],
        does: Some(Choice::Overwrite),
        label: "overwrite with your text",
    },
    DialogKey {
        keys: ESC,
        does: Some(Choice::KeepEditing),
        label: "keep editing",
    },
    DialogKey {
        keys: CTRL_C,
        does: None,
        label: "",
    },
];

/// `o` overwrites, `r` reloads, Esc keeps editing, Ctrl-C closes quietly.
pub fn on_key(key: &KeyEvent) -> Answer<Choice> {
    match dialog_key(KEYS, key) {
        Some(Some(choice)) => Answer::Done(choice),
        Some(None) => Answer::Close,
        None => Answer::Stay,
    }
}

/// Draws the choice over `body`.
pub fn draw(frame: &mut Frame, body: Rect, theme: &Theme, c: &SpecConflict) {
    let question = format!("Not saved: {}.", c.message);
    let w = (question.chars().count() as u16 + 4).clamp(50, body.width.saturating_sub(4));
    let popup = centered(body, w, 6);
    frame.render_widget(Clear, popup);
    // Nothing to reload when the file is gone.
    let keys = hints(KEYS, theme, "   ", |d| {
        c.text.is_some() || d != Some(Choice::Reload)
    });
    let lines = vec![Line::raw(question), Line::raw(""), Line::from(keys)];
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(theme.error())
                .title(" Changed on disk "),
        ),
        popup,
    );
}
