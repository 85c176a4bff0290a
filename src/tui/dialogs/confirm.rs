//! A yes/no question; only an explicit `y` says yes.

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::answer::{Answer, CTRL_C, hints};
use crate::protocol::RunId;
use crate::protocol::agent::AgentId;
use crate::protocol::service::ServiceAction;
use crate::tui::draw::{block, centered};
use crate::tui::keymap::{DialogKey, code, dialog_key, k};
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
    /// Drain this agent.
    DrainAgent(AgentId),
    /// Start, stop or restart the service or subtree at this path.
    ServiceControl(String, ServiceAction),
}

/// Keys of the question: `Some(yes)`, or `None` to close quietly. Only an explicit `y` says
/// yes: Enter out of habit must not discard edits or cancel runs.
pub static KEYS: &[DialogKey<Option<bool>>] = &[
    DialogKey {
        keys: &[k('y'), k('Y')],
        does: Some(true),
        label: "yes",
    },
    DialogKey {
        keys: &[k('n'), k('N'), code(KeyCode::Esc)],
        does: Some(false),
        label: "no",
    },
    DialogKey {
        keys: CTRL_C,
        does: None,
        label: "",
    },
];

/// `y` answers yes (`Done(true)`), `n` or Esc no (`Done(false)`), Ctrl-C closes quietly.
pub fn on_key(key: &KeyEvent) -> Answer<bool> {
    match dialog_key(KEYS, key) {
        Some(Some(yes)) => Answer::Done(yes),
        Some(None) => Answer::Close,
        None => Answer::Stay,
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
        Line::from(hints(KEYS, theme, "   ", |_| true)),
    ];
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(block(theme, "Confirm", true)),
        popup,
    );
}
