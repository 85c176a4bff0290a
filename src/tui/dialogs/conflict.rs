//! The choice after a save found its file changed on disk: reload it, overwrite it, or keep
//! editing.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::answer::{Answer, is_ctrl_c};
use crate::tui::draw::centered;
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

/// `o` overwrites, `r` reloads, Esc keeps editing, Ctrl-C closes quietly.
pub fn on_key(key: &KeyEvent) -> Answer<Choice> {
    match key.code {
        KeyCode::Char('o' | 'O') => Answer::Done(Choice::Overwrite),
        KeyCode::Char('r' | 'R') => Answer::Done(Choice::Reload),
        KeyCode::Esc => Answer::Done(Choice::KeepEditing),
        _ if is_ctrl_c(key) => Answer::Close,
        _ => Answer::Stay,
    }
}

/// Draws the choice over `body`.
pub fn draw(frame: &mut Frame, body: Rect, theme: &Theme, c: &SpecConflict) {
    let question = format!("Not saved: {}.", c.message);
    let w = (question.chars().count() as u16 + 4).clamp(50, body.width.saturating_sub(4));
    let popup = centered(body, w, 6);
    frame.render_widget(Clear, popup);
    let mut keys = Vec::new();
    if c.text.is_some() {
        keys.push(Span::styled("r", theme.hint_key()));
        keys.push(Span::raw(" reload from disk   "));
    }
    keys.extend([
        Span::styled("o", theme.hint_key()),
        Span::raw(" overwrite with your text   "),
        Span::styled("Esc", theme.hint_key()),
        Span::raw(" keep editing"),
    ]);
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
