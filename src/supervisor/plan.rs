//! What a supervisor is doing with its children: a set to stop (right to left, one at a time)
//! and then a set to start (left to right). Starts come in groups: within a group each child
//! waits until the one before it is ready (a supervisor starting its children, a rest_for_one
//! or one_for_all restart); separate groups do not wait for each other (one_for_one restarts,
//! operator restarts), so a child backing off never holds up an unrelated sibling's restart.

use std::collections::{BTreeMap, BTreeSet};

use super::step::StopReason;

/// Which start group a child's start belongs to.
pub(super) type Group = u64;

/// A supervisor's work in progress, by child index.
#[derive(Debug, Clone, Default)]
pub(super) struct Plan {
    /// Children to see stopped, the rightmost first.
    pub stop: BTreeSet<usize>,
    /// Children to see started afterwards, the leftmost first, each with its group.
    pub start: BTreeMap<usize, Group>,
    /// Why the children in `stop` are stopped.
    pub reason: Option<StopReason>,
    /// Set when the supervisor itself is going down once `stop` is done (`start` is empty).
    pub halt: Option<Halt>,
    /// The group of the supervisor's own start of its children, while it is under way: a
    /// child a reload adds meanwhile joins it, in its place.
    pub startup: Option<Group>,
    /// The next unused group.
    next_group: Group,
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
            reason: Some(halt.reason()),
            halt: Some(halt),
            ..Plan::default()
        }
    }

    /// Start every one of `n` children, in order, as one group (a supervisor's own start).
    pub fn startup(n: usize) -> Self {
        let mut plan = Plan::default();
        let group = plan.group();
        plan.start = (0..n).map(|i| (i, group)).collect();
        plan.startup = Some(group);
        plan
    }

    fn group(&mut self) -> Group {
        self.next_group += 1;
        self.next_group
    }

    /// Adds stops and starts to a plan that is not a halt (a halt wins over anything else);
    /// the starts are one new group, in order. A child already waiting to start keeps its
    /// place in its group: a crash during a supervisor's start does not let the children
    /// after it go ahead.
    pub fn merge(
        &mut self,
        stop: impl IntoIterator<Item = usize>,
        start: impl IntoIterator<Item = usize>,
        reason: StopReason,
    ) {
        let group = self.group();
        self.merge_into(stop, start, reason, Some(group));
    }

    /// Adds `start` to `group`, or each to a new group when `None`.
    fn merge_into(
        &mut self,
        stop: impl IntoIterator<Item = usize>,
        start: impl IntoIterator<Item = usize>,
        reason: StopReason,
        group: Option<Group>,
    ) {
        if self.halt.is_some() {
            return;
        }
        let before = self.stop.len();
        self.stop.extend(stop);
        if self.stop.len() > before || self.reason.is_none() {
            self.reason = Some(reason);
        }
        for i in start {
            let g = match group {
                Some(g) => g,
                None => self.group(),
            };
            self.start.entry(i).or_insert(g);
        }
    }

    /// Adds `start` to the supervisor's own start while it is under way (else each on its
    /// own), as a reload does with the children it adds or restarts.
    pub fn merge_reload(
        &mut self,
        stop: impl IntoIterator<Item = usize>,
        start: impl IntoIterator<Item = usize>,
        reason: StopReason,
    ) {
        let group = self.startup.filter(|g| self.start.values().any(|v| v == g));
        self.merge_into(stop, start, reason, group);
    }
}
