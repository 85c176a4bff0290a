//! Command-line faces: each subcommand of `opsconsole` lives in its own module.

pub mod agent;
pub mod check;
pub mod control;
pub mod history;
pub mod keys;
pub mod monitors;
pub mod principal;
pub mod run;
pub mod svc;
pub mod validate;

use std::io::IsTerminal;
use std::process::ExitCode;

pub use crate::exit::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_TERMINATED, fail};
pub use crate::principal::bootstrap::Dirs;

/// ANSI styling, off when the output is not a terminal or `NO_COLOR` is set.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Styling for standard output.
    pub fn stdout() -> Self {
        Self {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// Wraps `text` in an SGR code when colour is on.
    pub fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// Prints a failed request's error; invalid input and unknown names exit 2, the rest 1.
pub fn client_failure(e: crate::protocol::api::ClientError) -> ExitCode {
    use crate::protocol::api::{ApiErrorKind, ClientError};
    match &e {
        ClientError::Api(a)
            if matches!(a.kind, ApiErrorKind::NotFound | ApiErrorKind::InvalidInput) =>
        {
            fail(EXIT_INVALID, e)
        }
        _ => fail(EXIT_FAILED, e),
    }
}
