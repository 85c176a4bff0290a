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
