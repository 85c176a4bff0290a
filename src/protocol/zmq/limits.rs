//! What the principal's listening sockets let peers hold, and what they refused or closed
//! (issue 20, items 6 and 7), as `status` shows it.
//!
//! Receiving: before a peer has authenticated, its frames are bounded by the handshake (the
//! patched `zeromq` refuses any frame over 1 KiB); after, the message a connection is
//! receiving is reserved against [`RECV_PER_CONNECTION`] and, over every listening socket of
//! the process together, [`RECV_GLOBAL`]. A message that would exceed either closes its peer
//! (`over_budget`); a peer that sends a frame over 64 KiB at under 4 KiB/s (averaged over
//! 10 s windows) is closed too (`too_slow`). See `vendor/zeromq/src/recv_budget.rs`.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use zeromq::recv_budget::{RecvBudget, RecvLimits};

use super::MAX_FRAME;

/// Bytes one authenticated connection may have reserved for the message it is receiving:
/// the largest message and room for its framing.
pub const RECV_PER_CONNECTION: usize = MAX_FRAME + 64 * 1024;

/// Bytes all connections of all the principal's listening sockets may have reserved at once
/// for messages they are receiving.
pub const RECV_GLOBAL: usize = 128 * 1024 * 1024;

/// The receive budget every listening socket of this process shares.
pub(super) fn recv_budget() -> Arc<RecvBudget> {
    static BUDGET: OnceLock<Arc<RecvBudget>> = OnceLock::new();
    BUDGET
        .get_or_init(|| {
            RecvBudget::new(RecvLimits {
                per_connection: RECV_PER_CONNECTION,
                global: RECV_GLOBAL,
                ..RecvLimits::default()
            })
        })
        .clone()
}

/// Peers the principal closed for what they were sending, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeersClosed {
    /// A message would have exceeded the per-connection or the global receive budget.
    pub over_budget: u64,
    /// A large frame arrived at under the minimum rate.
    pub too_slow: u64,
}

impl PeersClosed {
    /// The counts of this process so far.
    pub fn now() -> PeersClosed {
        let budget = recv_budget();
        PeersClosed {
            over_budget: budget.over_budget(),
            too_slow: budget.too_slow(),
        }
    }
}

/// Requests of the socket a status was asked on: served, and refused as busy by limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Requests admitted to be served.
    pub served: u64,
    /// Requests answered `busy:` at once, by the limit they were over.
    pub busy: BusyCounts,
}

/// Requests refused as busy, by the limit they were over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusyCounts {
    /// Viewers and agents together had their share of the slots.
    pub role_share: u64,
    /// The key had its long polls already.
    pub long_polls_per_key: u64,
    /// The connection had its requests in progress already.
    pub per_connection: u64,
    /// Every slot was taken.
    pub all_slots: u64,
    /// Refusals (these and others, such as a viewer's `forbidden`) not even sent: the
    /// refusals being sent were at their own bound.
    pub dropped: u64,
}

impl BusyCounts {
    /// All requests refused as busy.
    pub fn total(&self) -> u64 {
        self.role_share + self.long_polls_per_key + self.per_connection + self.all_slots
    }
}
