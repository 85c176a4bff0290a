//! Command-line faces: each subcommand of `opsconsole` lives in its own module.

/// `println!` for a command's output: when the reader has gone (`opsconsole logs | head`)
/// the command ends quietly with success instead of panicking; another write error ends it
/// with a message.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that never panics: a long-running part (the principal, an agent, the
/// watchdog) whose stderr reader went away must go on with its work.
#[macro_export]
macro_rules! tell {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `print!` to match [`say!`].
#[macro_export]
macro_rules! say_raw {
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!($($arg)*))
    };
}

pub mod agent;
pub mod control;
pub mod history;
pub mod principal;
pub mod run;
pub mod svc;
pub mod validate;

use std::io::IsTerminal;
use std::process::ExitCode;

pub use crate::exit::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_TERMINATED, fail};
pub use crate::principal::bootstrap::Dirs;

/// Writes command output (see [`say!`]).
pub fn write_out(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(text).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(i32::from(EXIT_FAILED));
    }
}

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
