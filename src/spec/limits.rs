//! Upper bounds of every duration and count in a workflow file. Each is far above what a
//! sensible workflow uses and far below where arithmetic on it could overflow; a value beyond
//! one is almost certainly a typo (`60h` for `60s`), so `validate` reports it at its position.
//! README.md's workflow-format section lists them; keep the two in step.

use std::time::Duration;

/// Longest `timeout` of a task: 30 days.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);

/// Longest `backoff.initial` and `backoff.max`: 1 day.
pub const MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);

/// Largest `backoff.multiplier`.
pub const MAX_BACKOFF_MULTIPLIER: f64 = 100.0;

/// Most `retries` of a task.
pub const MAX_RETRIES: u64 = 1_000;

/// Largest `max_active_runs` of a workflow.
pub const MAX_ACTIVE_RUNS: u64 = 10_000;

/// Largest `catchup_limit` of a workflow.
pub const MAX_CATCHUP_LIMIT: u64 = 1_000;

/// Largest `intensity` of a supervisor.
pub const MAX_INTENSITY: u64 = 10_000;

/// Longest `period` of a supervisor: 1 day.
pub const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// Longest `stable_after` of a service: 1 day.
pub const MAX_STABLE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Longest readiness `timeout` of a service: 1 day.
pub const MAX_READY_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Longest stop `grace` of a service: 1 hour.
pub const MAX_GRACE: Duration = Duration::from_secs(3600);

/// Most children of one supervisor.
pub const MAX_CHILDREN: usize = 10_000;

/// Deepest nesting of supervisors (inline or by name), the root at depth 1.
pub const MAX_NESTING: usize = 16;

/// Largest compiled size of a `ready.log` regular expression, in bytes.
pub const MAX_REGEX_BYTES: usize = 1 << 20;
