//! OTP-style supervision of trees of long-running services, as a pure state machine: no IO,
//! no clock, no tasks. The caller reports facts (a child was spawned, became ready, exited; a
//! timer is due; an operator asked for something), each with the time it happened, and gets
//! back the [`Step`]s to carry out, in order: spawn, stop, arm a timer, record an event.
//!
//! One [`Supervision`] holds every root supervisor of a catalog (a forest). Nodes are named
//! by paths: `web` is a root, `web/api` its child, `web/jobs/worker` deeper down.
//!
//! ```text
//! let mut sup = Supervision::new(&roots, fastrand::f64);
//! for step in sup.start_all(now) { carry_out(step) }          // Spawn web/api #1, ...
//! sup.child_started("web/api", 1, pid, now)?;                 // the executor spawned it
//! sup.child_ready("web/api", 1, now)?;                        // its probe passed: next child
//! sup.child_exited("web/api", 1, ExitStatus::Code(1), now)?;  // crash: Arm backoff, Record
//! sup.timer_due(&timer, now)?;                                // backoff over: Spawn #2
//! sup.reload(&new_roots, now);                               // catalog edited: only changes
//! ```

mod machine;
mod plan;
mod step;
mod tree;
mod view;

use std::time::Duration;

pub use machine::Supervision;
pub use step::{ExitStatus, Lifecycle, LifecycleEvent, Step, StopReason, Timer, TimerKind};
pub use view::{NodeKind, NodeState, NodeView};

/// A point in time on the caller's monotonic clock, as the time since an origin the caller
/// picked (e.g. when its actor started). Only differences matter; it serializes, unlike
/// `Instant`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct At(pub Duration);

impl At {
    /// `d` after the origin.
    pub fn from_origin(d: Duration) -> Self {
        At(d)
    }

    /// `d` later (saturating: a huge delay is "never", not a panic).
    pub fn after(self, d: Duration) -> Self {
        At(self.0.saturating_add(d))
    }

    /// How long after `earlier` this is (zero if it is not later).
    pub fn since(self, earlier: At) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

/// Why an operator command or a fact was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisionError {
    /// No supervisor or service has this path.
    #[error("no supervisor or service is called `{0}`")]
    UnknownPath(String),
    /// The fact is about processes, and this path names a supervisor.
    #[error("`{0}` is a supervisor, not a service")]
    NotAService(String),
}

#[cfg(test)]
mod tests;
