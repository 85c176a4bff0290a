//! Exit codes and the error line shared by every face (CLI commands and the console).

use std::process::ExitCode;

/// Exit code for a run that failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for invalid input (unknown workflow, bad parameter, invalid spec).
pub const EXIT_INVALID: u8 = 2;
/// Exit code after Ctrl-C (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit code after SIGTERM (128 + SIGTERM).
pub const EXIT_TERMINATED: u8 = 143;

/// Prints an error for the user and returns the exit code.
pub fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    crate::tell!("error: {message}");
    ExitCode::from(code)
}
