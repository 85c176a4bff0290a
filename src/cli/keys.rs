//! `opsconsole keys new NAME`: a CURVE key pair for a client, an agent or a principal.

use std::path::Path;
use std::process::ExitCode;

use super::{EXIT_FAILED, EXIT_INVALID, fail};
use crate::protocol::zmq::keys;

/// Writes `NAME.pub` and `NAME.secret` (0600), as `zmq_curve_keypair` makes them, and says
/// what to do with them.
pub fn new(name: &str) -> ExitCode {
    let file_name = Path::new(name)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    if file_name.is_empty()
        || !file_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        return fail(
            EXIT_INVALID,
            format!(
                "`{name}`: a key's name is letters, digits, `-`, `_`, `.`, `@` (it becomes \
                 NAME.pub, NAME.secret and the name in the authorized keys)"
            ),
        );
    }
    match keys::write_pair(Path::new(name)) {
        Ok((public, pair)) => {
            crate::say!(
                "wrote {} and {name}.secret (keep it secret: mode 0600)\npublic key: {}\n\
                 authorize it on the principal with a line in its --keys file:\n  operator \
                 {file_name} {}\n(or viewer, or agent)",
                public.display(),
                keys::public_text(&pair),
                keys::public_text(&pair)
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_FAILED, e),
    }
}
