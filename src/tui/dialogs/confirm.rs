//! A yes/no question; only an explicit `y` says yes.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::answer::{Answer, is_ctrl_c};
use crate::protocol::RunId;
use crate::tui::draw::{block, centered};
use crate::tui::theme::Theme;

/// What a confirmation leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmed {
    /// Cancel this run.
    CancelRun(RunId),
    /// Quit (stopping active runs).
    Quit,
    /// Close the editor without saving.
    DiscardEdits,
}

/// `y` answers yes (`Done(true)`), `n` or Esc no (`Done(false)`), Ctrl-C closes quietly.
pub fn on_key(key: &KeyEvent) -> Answer<bool> {
    match key.code {
        // Only an explicit `y`: Enter out of habit must not discard edits or cancel runs.
        KeyCode::Char('y') | KeyCode::Char('Y') => Answer::Done(true),
        KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => Answer::Done(false),
        _ if is_ctrl_c(key) => Answer::Close,
        _ => Answer::Stay,
    }
}

/// Draws the question over `body`.
pub fn draw(frame: &mut Frame, body: Rect, theme: &Theme, question: &str) {
    let w = (question.chars().count() as u16 + 4).clamp(30, body.width.saturating_sub(4));
    let popup = centered(body, w, 5);
    frame.render_widget(Clear, popup);
    let lines = vec![
        Line::raw(question.to_string()),
        Line::raw(""),
        Line::from(vec![
            Span::styled("y", theme.hint_key()),
            Span::raw(" yes   "),
            Span::styled("n", theme.hint_key()),
            Span::raw(" no"),
        ]),
    ];
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(block(theme, "Confirm", true)),
        popup,
    );
}
