//! The dialogs over the panes. Each owns its state, reads its own keys (returning what the
//! user chose, never touching the console) and draws itself; `modals.rs` turns their answers
//! into effects.

pub mod answer;
pub mod confirm;
pub mod conflict;
pub mod file_name;
pub mod filter;
pub mod form;
pub mod help;
pub mod palette;
pub mod search;

use super::line_input::LineInput;
pub use answer::Answer;
use confirm::Confirmed;
use conflict::SpecConflict;
use form::TriggerForm;
use palette::Palette;

/// A dialog on top of the panes; it gets every key while open.
#[derive(Debug, Clone)]
pub enum Modal {
    /// `:` command line.
    Palette(Palette),
    /// `/` filter of the focused list (edited live, in the list's own filter).
    Filter,
    /// `/` search in the logs.
    Search(LineInput),
    /// Yes/no question.
    Confirm {
        /// The question.
        question: String,
        /// What yes does.
        then: Confirmed,
    },
    /// Parameters of a trigger.
    Form(TriggerForm),
    /// Help generated from the key table.
    Help {
        /// First line shown.
        scroll: usize,
    },
    /// File name of a new workflow.
    FileName(LineInput),
    /// A save was refused because the file changed on disk: reload it or overwrite it.
    SpecConflict(SpecConflict),
}

#[cfg(test)]
mod tests {
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    use super::*;
    use crate::tui::keymap::{DialogKey, Key, dialog_key};

    fn labels<A>(table: &[DialogKey<A>]) -> Vec<String> {
        table
            .iter()
            .flat_map(|d| d.keys.iter().map(Key::label))
            .collect()
    }

    #[test]
    fn no_key_means_two_things_in_one_dialog() {
        let tables = [
            ("confirm", labels(confirm::KEYS)),
            ("conflict", labels(conflict::KEYS)),
            ("file name", labels(file_name::KEYS)),
            ("filter", labels(filter::KEYS)),
            ("form", labels(form::KEYS)),
            ("help", labels(help::KEYS)),
            ("palette", labels(palette::KEYS)),
            ("search", labels(search::KEYS)),
        ];
        for (name, mut keys) in tables {
            let all = keys.len();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), all, "a key is bound twice in the {name} dialog");
        }
    }

    #[test]
    fn a_dialog_key_without_modifiers_matches_whatever_is_held_and_ctrl_c_needs_ctrl() {
        let ev = |c, m| KeyEvent::new(KeyCode::Char(c), m);
        assert_eq!(
            dialog_key(confirm::KEYS, &ev('Y', KeyModifiers::SHIFT)),
            Some(Some(true))
        );
        assert_eq!(
            dialog_key(confirm::KEYS, &ev('c', KeyModifiers::CONTROL)),
            Some(None)
        );
        assert_eq!(
            dialog_key(confirm::KEYS, &ev('c', KeyModifiers::NONE)),
            None
        );
        assert_eq!(
            confirm::on_key(&KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
            Answer::Stay,
            "Enter out of habit says nothing"
        );
    }
}
