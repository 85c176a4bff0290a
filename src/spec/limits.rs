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

/// Largest `max_output` of a task or a service: 1 GiB stored per attempt or start.
pub const MAX_OUTPUT: u64 = 1 << 30;

/// Largest compiled size of a `ready.log` regular expression, in bytes.
pub const MAX_REGEX_BYTES: usize = 1 << 20;

/// Longest environment variable (`NAME=value`) or command argument, in bytes: the kernel's
/// `MAX_ARG_STRLEN` (32 pages, 128 KiB, with the terminating NUL). A longer one cannot be
/// handed to a process at all (`execve` fails with "Argument list too long"). A `run:` string is
/// one argument (`sh -c TEXT`).
pub const MAX_EXEC_STRING: usize = 128 * 1024;

/// Most bytes of one task's or service's arguments and environment variables together: half of
/// the kernel's usual `ARG_MAX` budget (2 MiB, a quarter of the default 8 MiB stack), leaving
/// the other half for the environment the process inherits.
pub const MAX_EXEC_TOTAL: usize = 1024 * 1024;

// Monitors (`kind: monitor`).

/// Shortest `every` of a monitor.
pub const MIN_EVERY: Duration = Duration::from_secs(1);
/// Longest `every` of a monitor: 7 days.
pub const MAX_EVERY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest `timeout` of a check: 1 hour (and always less than `every`).
pub const MAX_CHECK_TIMEOUT: Duration = Duration::from_secs(3600);
/// Most entries of `conditions` (and of `degraded_when`).
pub const MAX_CONDITIONS: usize = 64;
/// Largest `unhealthy_after` / `healthy_after`.
pub const MAX_THRESHOLD: u64 = 1_000;
/// Most entries of `depends_on`.
pub const MAX_DEPENDS_ON: usize = 64;
/// Most `maintenance` windows of a monitor.
pub const MAX_WINDOWS: usize = 32;
/// Longest maintenance window: 7 days.
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most `tags` of a monitor.
pub const MAX_TAGS: usize = 32;
/// Most locations in `from`, and most labels in one location.
pub const MAX_LOCATIONS: usize = 16;
/// Most interventions per state change (`on_unhealthy`, ...).
pub const MAX_INTERVENTIONS: usize = 16;
/// Longest `cooldown` of an intervention: 1 day.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(24 * 3600);
/// Largest `max_attempts` of an intervention.
pub const MAX_ATTEMPTS: u64 = 100;
/// Most headers of a request, params of a run, or variables of a command.
pub const MAX_ENTRIES: usize = 64;
/// Largest request `body`, `send` or `expect`, in bytes.
pub const MAX_SEND_BYTES: usize = 64 * 1024;
/// Largest `max_body` of an http check: 64 MiB.
pub const MAX_BODY: u64 = 64 << 20;
/// Most echo requests of an icmp check.
pub const MAX_ICMP_COUNT: u64 = 10;
/// Longest `grace` of a push check and `succeeded_within` of a workflow check: 30 days.
pub const MAX_LATENESS: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest `timeout` of a command or webhook intervention: 1 day.
pub const MAX_ACTION_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Most `retries` of a webhook.
pub const MAX_WEBHOOK_RETRIES: u64 = 10;
/// Most entries of `monitors:` in one file, and of a `targets:` list written in it.
pub const MAX_LISTED: usize = 10_000;
/// Longest `description`, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;
