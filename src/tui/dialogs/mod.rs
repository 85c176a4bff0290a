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
pub use answer::{Answer, is_ctrl_c};
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
