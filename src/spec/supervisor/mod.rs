//! `kind: supervisor` documents: their YAML shape (`raw`), the checks of one document
//! (`check`), and the resolution of supervisors used by name across files (`resolve`).

pub(super) mod check;
pub(super) mod nesting;
pub(super) mod raw;
pub(super) mod resolve;
pub(super) mod types;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Diagnostic;
use types::{AutoShutdown, Restart, ServiceSpec, Strategy};

/// A checked supervisor document whose uses of other documents (`supervisor: NAME`) are not
/// resolved yet: that needs every file, see [`super::load_dir`].
#[derive(Debug, Clone)]
pub struct SupervisorDraft {
    pub(super) name: String,
    pub(super) description: Option<String>,
    pub(super) file: PathBuf,
    pub(super) strategy: Strategy,
    pub(super) intensity: u32,
    pub(super) period: Duration,
    pub(super) auto_shutdown: AutoShutdown,
    pub(super) children: Vec<DraftChild>,
    /// Where the name is written (a diagnostic without message, for messages made later).
    pub(super) name_at: Diagnostic,
}

impl SupervisorDraft {
    /// The supervisor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file it was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Names of the supervisor documents it uses as children, anywhere in its tree.
    pub fn references(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.walk_refs(&mut |name, _| out.push(name.to_string()));
        out
    }

    /// Calls `f` with each use by name in the tree (file order) and where it is written.
    pub(super) fn walk_refs<'a>(&'a self, f: &mut impl FnMut(&'a str, &'a Diagnostic)) {
        for child in &self.children {
            match &child.kind {
                DraftKind::Service(_) => {}
                DraftKind::Inline(inline) => inline.walk_refs(f),
                DraftKind::Ref { at } => f(&child.name, at),
            }
        }
    }
}

/// A child of a [`SupervisorDraft`].
#[derive(Debug, Clone)]
pub(super) struct DraftChild {
    pub(super) name: String,
    pub(super) restart: Restart,
    pub(super) significant: bool,
    pub(super) kind: DraftKind,
}

/// What a draft child is; a use by name is named by the child's name.
#[derive(Debug, Clone)]
pub(super) enum DraftKind {
    Service(Arc<ServiceSpec>),
    Inline(Box<SupervisorDraft>),
    Ref {
        /// Where the used name is written.
        at: Diagnostic,
    },
}

/// `at` with `message`.
pub(super) fn diag_at(at: &Diagnostic, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        message: message.into(),
        ..at.clone()
    }
}

#[cfg(test)]
mod tests;
