//! Fair shares of the request socket's in-flight slots (issue 20, item 7).
//!
//! 17 viewer connections with 256 long polls each once filled every slot, and the operator's
//! `status` and `cancel` were refused. Now viewers and agents together hold at most
//! [`SHARED_SHARE`] of the [`MAX_IN_FLIGHT`] slots, so operators (and the local caller, who
//! is an operator) always have [`OPERATOR_RESERVE`]; one CURVE key holds at most
//! [`MAX_LONG_POLLS_PER_KEY`] long polls, whatever its connections; one connection at most
//! [`MAX_IN_FLIGHT_PER_PEER`] requests. A request over any of them is answered at once with a
//! `busy:` error naming the limit.

use std::collections::HashMap;

use bytes::Bytes;

use super::limits::{BusyCounts, RequestCounts};
use super::server::{MAX_IN_FLIGHT, MAX_IN_FLIGHT_PER_PEER};

/// Slots kept for operators: viewers and agents together never hold them.
pub const OPERATOR_RESERVE: usize = 512;

/// Slots viewers and agents may hold together.
pub const SHARED_SHARE: usize = MAX_IN_FLIGHT - OPERATOR_RESERVE;

/// Long polls (`wait_run`) one CURVE key may have in progress, over all its connections.
pub const MAX_LONG_POLLS_PER_KEY: usize = 64;

/// Who a request comes from, as the shares see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Requester {
    /// A viewer's or an agent's key (else an operator, or the local caller).
    pub shared: bool,
    /// Its CURVE key, when it has one.
    pub key: Option<Bytes>,
}

/// The limit a request was over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Limit {
    /// Every slot is taken.
    AllSlots,
    /// The connection has its requests in progress.
    PerConnection,
    /// Viewers and agents have their share.
    RoleShare,
    /// The key has its long polls.
    LongPollsPerKey,
}

impl Limit {
    /// The refusal sent to the caller: `busy:`, then the limit by name and number.
    pub(super) fn refusal(self) -> String {
        match self {
            Limit::AllSlots => format!(
                "busy: the principal is serving {MAX_IN_FLIGHT} requests already (all its request \
                 slots); try again shortly"
            ),
            Limit::PerConnection => format!(
                "busy: this connection has {MAX_IN_FLIGHT_PER_PEER} requests in progress already \
                 (the limit per connection); wait for some to end"
            ),
            Limit::RoleShare => format!(
                "busy: viewers and agents have {SHARED_SHARE} requests in progress already (their \
                 share of the {MAX_IN_FLIGHT} request slots; {OPERATOR_RESERVE} are kept for \
                 operators); try again shortly"
            ),
            Limit::LongPollsPerKey => format!(
                "busy: this key has {MAX_LONG_POLLS_PER_KEY} long polls (wait_run) in progress \
                 already (the limit per key); wait for some to end"
            ),
        }
    }
}

/// The slot a served request holds: what to give back when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Slot {
    shared: bool,
    long_poll_key: Option<Bytes>,
}

/// Slots taken, by share, and what was served and refused.
#[derive(Debug, Default)]
pub(super) struct Shares {
    serving: usize,
    shared: usize,
    long_polls: HashMap<Bytes, usize>,
    served: u64,
    busy: BusyCounts,
}

impl Shares {
    /// Requests being served.
    #[cfg(test)]
    pub(super) fn serving(&self) -> usize {
        self.serving
    }

    /// Takes a slot for a request of `caller` (`long_poll`: a `wait_run`) on a connection that
    /// has `of_connection` in progress, or says which limit refuses it (and counts that).
    pub(super) fn take(
        &mut self,
        caller: &Requester,
        long_poll: bool,
        of_connection: usize,
    ) -> Result<Slot, Limit> {
        let key_polls = |key: &Bytes| self.long_polls.get(key).copied().unwrap_or(0);
        let over = if self.serving >= MAX_IN_FLIGHT {
            Some(Limit::AllSlots)
        } else if of_connection >= MAX_IN_FLIGHT_PER_PEER {
            Some(Limit::PerConnection)
        } else if caller.shared && self.shared >= SHARED_SHARE {
            Some(Limit::RoleShare)
        } else if long_poll
            && caller
                .key
                .as_ref()
                .is_some_and(|k| key_polls(k) >= MAX_LONG_POLLS_PER_KEY)
        {
            Some(Limit::LongPollsPerKey)
        } else {
            None
        };
        if let Some(limit) = over {
            let count = match limit {
                Limit::AllSlots => &mut self.busy.all_slots,
                Limit::PerConnection => &mut self.busy.per_connection,
                Limit::RoleShare => &mut self.busy.role_share,
                Limit::LongPollsPerKey => &mut self.busy.long_polls_per_key,
            };
            *count += 1;
            return Err(limit);
        }
        self.serving += 1;
        self.served += 1;
        if caller.shared {
            self.shared += 1;
        }
        let long_poll_key = caller.key.clone().filter(|_| long_poll);
        if let Some(key) = &long_poll_key {
            *self.long_polls.entry(key.clone()).or_default() += 1;
        }
        Ok(Slot {
            shared: caller.shared,
            long_poll_key,
        })
    }

    /// Gives back the slot of a request that ended.
    pub(super) fn give_back(&mut self, slot: &Slot) {
        self.serving = self.serving.saturating_sub(1);
        if slot.shared {
            self.shared = self.shared.saturating_sub(1);
        }
        if let Some(key) = &slot.long_poll_key
            && let Some(n) = self.long_polls.get_mut(key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.long_polls.remove(key);
            }
        }
    }

    /// Counts a request dropped unanswered (even the refusals were at their bound).
    pub(super) fn count_dropped(&mut self) {
        self.busy.dropped += 1;
    }

    /// Requests dropped unanswered so far.
    pub(super) fn dropped(&self) -> u64 {
        self.busy.dropped
    }

    /// What was served and refused so far.
    pub(super) fn counts(&self) -> RequestCounts {
        RequestCounts {
            served: self.served,
            busy: self.busy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn viewer(key: &'static [u8]) -> Requester {
        Requester {
            shared: true,
            key: Some(Bytes::from_static(key)),
        }
    }

    #[test]
    fn viewers_leave_the_operators_reserve_and_keys_their_long_poll_cap() {
        let mut shares = Shares::default();
        let mut slots = Vec::new();
        // One key: its 65th long poll is refused, its other requests are not.
        for _ in 0..MAX_LONG_POLLS_PER_KEY {
            slots.push(
                shares
                    .take(&viewer(b"v0"), true, 0)
                    .expect("within the cap"),
            );
        }
        assert_eq!(
            shares.take(&viewer(b"v0"), true, 0),
            Err(Limit::LongPollsPerKey)
        );
        slots.push(
            shares
                .take(&viewer(b"v0"), false, 0)
                .expect("not a long poll"),
        );
        // Viewers fill their share; then only operators are served.
        while shares.serving() < SHARED_SHARE {
            slots.push(
                shares
                    .take(&viewer(b"v1"), false, 0)
                    .expect("within the share"),
            );
        }
        assert_eq!(shares.take(&viewer(b"v2"), false, 0), Err(Limit::RoleShare));
        let operator = Requester {
            shared: false,
            key: None,
        };
        for _ in 0..OPERATOR_RESERVE {
            slots.push(shares.take(&operator, false, 0).expect("reserved"));
        }
        assert_eq!(shares.take(&operator, false, 0), Err(Limit::AllSlots));
        assert_eq!(
            shares.take(&operator, false, MAX_IN_FLIGHT_PER_PEER),
            Err(Limit::AllSlots)
        );
        let counts = shares.counts();
        assert_eq!(counts.served, MAX_IN_FLIGHT as u64);
        assert_eq!(
            (
                counts.busy.long_polls_per_key,
                counts.busy.role_share,
                counts.busy.all_slots
            ),
            (1, 1, 2)
        );
        // Everything given back: all is served again.
        for slot in &slots {
            shares.give_back(slot);
        }
        assert_eq!(shares.serving(), 0);
        assert!(shares.long_polls.is_empty());
        assert!(shares.take(&viewer(b"v0"), true, 0).is_ok());
        assert_eq!(
            shares.take(&operator, false, MAX_IN_FLIGHT_PER_PEER),
            Err(Limit::PerConnection)
        );
    }
}
