//! What a supervisor is doing with its children: a set to stop (right to left, one at a time)
//! and then a set to start (left to right, each once its left sibling is ready).

use std::collections::BTreeSet;

use super::step::StopReason;

/// A supervisor's work in progress, by child index.
#[derive(Debug, Clone, Default)]
pub(super) struct Plan {
    /// Children to see stopped, the rightmost first.
    pub stop: BTreeSet<usize>,
    /// Children to see started afterwards, the leftmost first.
    pub start: BTreeSet<usize>,
    /// Why the children in `stop` are stopped.
    pub reason: Option<StopReason>,
    /// Set when the supervisor itself is going down once `stop` is done (`start` is empty).
    pub halt: Option<Halt>,
}

/// How a supervisor goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Halt {
    /// Its parent, an operator or a shutdown asked it to.
    Requested(StopReason),
    /// It exceeded its restart intensity (abnormal, escalated to its parent).
    GiveUp,
    /// Its significant children ended (normal).
    AutoShutdown,
}

impl Halt {
    /// The reason given to the children it stops.
    pub fn reason(self) -> StopReason {
        match self {
            Halt::Requested(r) => r,
            Halt::GiveUp => StopReason::GiveUp,
            Halt::AutoShutdown => StopReason::AutoShutdown,
        }
    }
}

impl Plan {
    /// Stop every one of `n` children and go down.
    pub fn halt(n: usize, halt: Halt) -> Self {
        Plan {
            stop: (0..n).collect(),
            start: BTreeSet::new(),
            reason: Some(halt.reason()),
            halt: Some(halt),
        }
    }

    /// Adds stops and starts to a plan that is not a halt (a halt wins over anything else).
    pub fn merge(
        &mut self,
        stop: impl IntoIterator<Item = usize>,
        start: impl IntoIterator<Item = usize>,
        reason: StopReason,
    ) {
        if self.halt.is_some() {
            return;
        }
        let before = self.stop.len();
        self.stop.extend(stop);
        if self.stop.len() > before || self.reason.is_none() {
            self.reason = Some(reason);
        }
        self.start.extend(start);
    }
}
