//! The name of a new workflow file, typed on the message line.

use ratatui::crossterm::event::KeyEvent;
use ratatui::text::{Line, Span};

use super::answer::{Answer, CTRL_C, ENTER, ESC, LineKey};
use crate::tui::keymap::{DialogKey, dialog_key};
use crate::tui::line_input::LineInput;
use crate::tui::theme::Theme;

/// Keys of the file name besides those editing it.
pub static KEYS: &[DialogKey<LineKey>] = &[
    DialogKey {
        keys: ESC,
        does: LineKey::Cancel,
        label: "cancel",
    },
    DialogKey {
        keys: CTRL_C,
        does: LineKey::Cancel,
        label: "",
    },
    DialogKey {
        keys: ENTER,
        does: LineKey::Submit,
        label: "open the editor",
    },
];

/// Enter answers the name typed, Esc or Ctrl-C closes; other keys edit it.
pub fn on_key(name: &mut LineInput, key: &KeyEvent) -> Answer<String> {
    match dialog_key(KEYS, key) {
        Some(LineKey::Cancel) => Answer::Close,
        Some(LineKey::Submit) => Answer::Done(name.text().to_string()),
        None => {
            name.handle(key);
            Answer::Stay
        }
    }
}

/// The message line while the name is typed.
pub fn line(name: &LineInput, theme: &Theme) -> Line<'static> {
    let mut spans = vec![Span::styled("new workflow file: ", theme.hint_key())];
    spans.extend(name.spans(Default::default(), theme.muted()));
    spans.push(Span::styled(
        "  (e.g. backup.yaml) Enter opens, Esc cancels",
        theme.muted(),
    ));
    Line::from(spans)
}

/// A new workflow file name: a plain name, `.yaml` added when missing.
pub fn new_file_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("type a file name, e.g. backup.yaml".into());
    }
    if name.contains('/') || name.contains('\\') || name.starts_with('.') {
        return Err(format!(
            "`{name}`: a plain file name in the workflows directory, e.g. backup.yaml"
        ));
    }
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        Ok(name.to_string())
    } else {
        Ok(format!("{name}.yaml"))
    }
}
