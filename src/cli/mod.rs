//! Command-line faces: each subcommand of `opsconsole` lives in its own module.

pub mod connect;
pub mod control;
pub mod history;
pub mod principal;
pub mod run;
pub mod validate;

use std::io::IsTerminal;
use std::process::ExitCode;

/// Exit code for a run that failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for invalid input (unknown workflow, bad parameter, invalid spec).
pub const EXIT_INVALID: u8 = 2;
/// Exit code after Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit code after SIGTERM (128 + SIGTERM).
pub const EXIT_TERMINATED: u8 = 143;

/// Paths every command works from.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Where workflow specs are read.
    pub workflows: std::path::PathBuf,
    /// Where history and runtime files live.
    pub data: std::path::PathBuf,
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

/// Prints an error for the user and returns the exit code.
pub fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

/// Starts an in-process principal over the data dir, printing spec problems: all of them when
/// `needed` names a workflow that did not load, otherwise a one-line warning. A `one_off`
/// principal serves one command's run only (see [`crate::principal::PrincipalConfig`]).
pub fn start_embedded(
    dirs: &Dirs,
    slots: usize,
    kill_grace: std::time::Duration,
    needed: Option<&str>,
    one_off: bool,
) -> Result<crate::principal::PrincipalHandle, ExitCode> {
    let (catalog, problems) = crate::spec::load_dir(&dirs.workflows);
    let missing = needed.is_some_and(|n| catalog.get(n).is_none());
    if missing {
        for p in &problems {
            eprintln!("{p}\n");
        }
    } else if !problems.is_empty() {
        eprintln!(
            "warning: {} problem(s) in workflow files; `opsconsole validate` lists them",
            problems.len()
        );
    }
    let (store, recovered) = open_store(&dirs.data).map_err(|e| fail(EXIT_FAILED, e))?;
    // This process now runs tasks: it adopts what they leave behind (see `agent::orphans`).
    if let Some(warning) = crate::agent::orphans::adopt(kill_grace) {
        tracing::warn!("{warning}");
    }
    let workdir = std::env::current_dir().unwrap_or_else(|_| ".".into());
    Ok(crate::principal::PrincipalHandle::start(
        catalog,
        store,
        recovered,
        crate::principal::PrincipalConfig {
            slots,
            kill_grace,
            workdir,
            workflows_dir: Some(dirs.workflows.clone()),
            spec_problems: problems,
            watchdog: true,
            one_off,
        },
    ))
}

/// How long a principal waits for commands that read the history file (`history`, `logs`
/// without a principal) to let go of it.
const READERS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the store for writing. Readers are short-lived, so while only readers hold the file
/// this retries (up to [`READERS_WAIT`]); a writer holding it is reported at once.
fn open_store(
    data_dir: &std::path::Path,
) -> Result<(crate::store::Store, crate::store::Recovered), crate::store::StoreError> {
    let until = std::time::Instant::now() + READERS_WAIT;
    loop {
        let err = match crate::store::Store::open(data_dir) {
            Ok(opened) => return Ok(opened),
            Err(e) => e,
        };
        // The failed open closed its descriptor, so this process holds no lock on the file
        // and may look at who does. A reader that has let go meanwhile (no holder now) is
        // worth another try as much as one still reading; only a writer is final.
        let locked = matches!(err, crate::store::StoreError::Open { locked: true, .. });
        let writer = matches!(
            connect::lock_holder(data_dir),
            Some(connect::Holder::Writer(_))
        );
        if !locked || writer || std::time::Instant::now() >= until {
            return Err(err);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
