//! Who may do what on a CURVE endpoint. Authentication is the CURVE handshake's (see
//! [`super::keys`]): the key a connection proved it holds names the caller and, through the
//! authorized-keys file, gives its role. The HMAC token scheme that lived here is retired:
//! CURVE authenticates every message too, and also encrypts, and binds freshness to the
//! session (per-connection keys), not to a replay window in the principal's memory.

pub use crate::protocol::api::Role;

/// What the retired token options say instead of working.
pub const TOKENS_RETIRED: &str = "HMAC tokens are retired; use CURVE instead: `opsconsole keys \
     new NAME` makes a key pair, the principal takes `--keys FILE` (one line `ROLE NAME PUBKEY` \
     per client or agent, ROLE operator, viewer or agent), and clients and agents take \
     `--server-key KEY-or-FILE --key NAME.secret` (the principal prints its public key when it \
     starts)";
