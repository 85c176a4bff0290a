//! The trigger form: one line per parameter, prefilled with the workflow's defaults.

use std::collections::BTreeMap;

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::answer::{Answer, CTRL_C, ENTER, ESC};
use crate::tui::draw::{block, centered};
use crate::tui::keymap::{DialogKey, code, dialog_key};
use crate::tui::line_input::LineInput;
use crate::tui::theme::Theme;

/// What the form's keys do besides editing the focused field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormKey {
    /// Start the run.
    Submit,
    /// The field above.
    Prev,
    /// The field below.
    Next,
    /// Close.
    Cancel,
}

/// Keys of the form besides those editing a field, in the order of its hints.
pub static KEYS: &[DialogKey<FormKey>] = &[
    DialogKey {
        keys: ENTER,
        does: FormKey::Submit,
        label: "start run",
    },
    DialogKey {
        keys: &[code(KeyCode::Up), code(KeyCode::BackTab)],
        does: FormKey::Prev,
        label: "",
    },
    DialogKey {
        keys: &[code(KeyCode::Down), code(KeyCode::Tab)],
        does: FormKey::Next,
        label: "",
    },
    DialogKey {
        keys: ESC,
        does: FormKey::Cancel,
        label: "cancel",
    },
    DialogKey {
        keys: CTRL_C,
        does: FormKey::Cancel,
        label: "",
    },
];

/// The parameter form of a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerForm {
    /// The workflow.
    pub workflow: String,
    /// Parameter names and values, prefilled with defaults.
    pub fields: Vec<(String, LineInput)>,
    /// The field being edited.
    pub focus: usize,
}

impl TriggerForm {
    /// A form for `workflow` with `params` (name, default) as its fields.
    pub fn new(workflow: String, params: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            workflow,
            fields: params
                .into_iter()
                .map(|(k, v)| (k, LineInput::new(v)))
                .collect(),
            focus: 0,
        }
    }

    /// Enter answers the parameters, Esc or Ctrl-C closes, ↑/↓ (Tab) change the field, other
    /// keys edit the focused one.
    pub fn on_key(&mut self, key: &KeyEvent) -> Answer<BTreeMap<String, String>> {
        match dialog_key(KEYS, key) {
            Some(FormKey::Cancel) => return Answer::Close,
            Some(FormKey::Submit) => {
                return Answer::Done(
                    self.fields
                        .iter()
                        .map(|(k, v)| (k.clone(), v.text().to_string()))
                        .collect(),
                );
            }
            Some(FormKey::Prev) => self.focus = self.focus.saturating_sub(1),
            Some(FormKey::Next) => {
                self.focus = (self.focus + 1).min(self.fields.len().saturating_sub(1));
            }
            None => {
                if let Some((_, v)) = self.fields.get_mut(self.focus) {
                    v.handle(key);
                }
            }
        }
        Answer::Stay
    }

    /// Draws the form over `body`.
    pub fn draw(&self, frame: &mut Frame, body: Rect, theme: &Theme) {
        let h = (self.fields.len() as u16 + 5).min(body.height);
        let popup = centered(body, 60, h);
        frame.render_widget(Clear, popup);
        let t = theme;
        let mut lines: Vec<Line> = if self.fields.is_empty() {
            vec![Line::styled("no parameters", t.muted())]
        } else {
            self.fields
                .iter()
                .enumerate()
                .map(|(i, (k, v))| {
                    let mut spans = vec![Span::styled(format!("{k:>16} = "), t.muted())];
                    if i == self.focus {
                        spans.extend(v.spans(t.selected(), t.selected()));
                    } else {
                        spans.push(Span::raw(v.text().to_string()));
                    }
                    Line::from(spans)
                })
                .collect()
        };
        lines.push(Line::raw(""));
        lines.push(Line::from(vec![
            Span::styled("Enter", t.hint_key()),
            Span::raw(" start run  "),
            Span::styled("↑/↓", t.hint_key()),
            Span::raw(" field  "),
            Span::styled("Esc", t.hint_key()),
            Span::raw(" cancel"),
        ]));
        frame.render_widget(
            Paragraph::new(lines).block(block(theme, format!("Trigger {}", self.workflow), true)),
            popup,
        );
    }
}
