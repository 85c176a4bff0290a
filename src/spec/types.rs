//! Validated, ready-to-run workflow specs. Everything here has passed validation:
//! names are unique, dependencies exist and are acyclic, templates only reference
//! known names.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::template::Template;

/// Index of a task inside its workflow's `tasks` vector.
pub type TaskIdx = usize;

/// A validated `kind: workflow` document.
#[derive(Debug, Clone)]
pub struct WorkflowSpec {
    /// Unique workflow name.
    pub name: String,
    /// Free-form description shown in listings.
    pub description: Option<String>,
    /// File the workflow was read from.
    pub file: PathBuf,
    /// Parameter defaults; a run may override any declared key.
    pub params: BTreeMap<String, String>,
    /// Tasks in file order; `depends_on` holds indices into this vector.
    pub tasks: Vec<TaskSpec>,
    /// Cancel running tasks and skip the rest as soon as one task fails for good.
    pub fail_fast: bool,
    /// At most this many runs of the workflow are active at once (`None`: unlimited).
    pub max_active_runs: Option<u32>,
    /// Cron schedule, if any (the scheduler acts on it; here it is only validated).
    pub schedule: Option<Schedule>,
    /// What to do when a schedule fires while a run is still active.
    pub overlap: Overlap,
    /// Run missed fire times after downtime.
    pub catchup: bool,
    /// At most this many missed fire times are run on catch-up.
    pub catchup_limit: u32,
}

impl WorkflowSpec {
    /// Names of the tasks `task` depends on.
    pub fn parent_names(&self, task: &TaskSpec) -> Vec<String> {
        task.depends_on
            .iter()
            .map(|&d| self.tasks[d].name.clone())
            .collect()
    }
}

/// A cron schedule with its optional time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The expression as written (5 or 6 fields).
    pub expr: String,
    /// The parsed expression.
    pub cron: Arc<croner::Cron>,
    /// Time zone the expression is evaluated in (`None`: UTC).
    pub timezone: Option<chrono_tz::Tz>,
}

/// One task of a workflow.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    /// Unique (within the workflow) task name.
    pub name: String,
    /// What to execute.
    pub run: CommandSpec,
    /// Upstream tasks, as indices into `WorkflowSpec::tasks`.
    pub depends_on: Vec<TaskIdx>,
    /// When the task may start relative to its upstream tasks.
    pub trigger: TriggerRule,
    /// Extra attempts after the first one fails or times out.
    pub retries: u32,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// Per-attempt limit; the attempt is timed out after it.
    pub timeout: Option<Duration>,
    /// Most bytes of output stored per attempt; the lines past it are counted, not stored.
    pub max_output: u64,
    /// Extra environment variables (values are templates).
    pub env: BTreeMap<String, Template>,
    /// Working directory, relative paths resolved against the agent's working directory.
    pub cwd: Option<PathBuf>,
    /// Labels an agent must have (every one, with these values) to run the task; empty: any.
    pub agent: BTreeMap<String, String>,
}

/// How a task's process is started.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandSpec {
    /// Executed directly: program and arguments, each a template.
    Argv(Vec<Template>),
    /// Executed as `sh -c <string>`.
    Shell(Template),
}

impl CommandSpec {
    /// The program and its arguments, rendered (a shell string as `sh -c STRING`).
    pub fn argv(&self, ctx: &super::RenderContext<'_>) -> Vec<String> {
        match self {
            CommandSpec::Argv(parts) => parts.iter().map(|p| p.render(ctx)).collect(),
            CommandSpec::Shell(script) => {
                vec!["sh".to_string(), "-c".to_string(), script.render(ctx)]
            }
        }
    }
}

/// Airflow-style trigger rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    /// Every upstream task succeeded (the default). Otherwise the task is skipped.
    #[default]
    AllSuccess,
    /// Every upstream task finished, whatever its outcome.
    AllDone,
    /// At least one upstream task succeeded (starts as soon as one does).
    OneSuccess,
    /// At least one upstream task failed (starts as soon as one does).
    OneFailed,
}

/// What the scheduler does when a fire time comes while a run is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Drop the new fire time.
    #[default]
    Skip,
    /// Queue it behind the active run.
    Queue,
    /// Cancel the active run and start the new one.
    CancelPrevious,
    /// Start it alongside.
    Allow,
}

/// Exponential backoff between attempts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the second attempt.
    pub initial: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
    /// Growth factor per attempt (>= 1.0).
    pub multiplier: f64,
    /// Randomise each delay ("full jitter": uniformly in [delay/2, delay]).
    pub jitter: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: true,
        }
    }
}

impl Backoff {
    /// Delay to wait after attempt `failed_attempt` (1-based) failed: `initial` times
    /// `multiplier` to the power of the attempts before it, capped at `max`, then jittered.
    /// Never panics and never exceeds `max`, whatever the fields and the attempt number hold
    /// (validation bounds them, but a bad value must cost a wrong delay, not the engine).
    pub fn delay(&self, failed_attempt: u32) -> Duration {
        self.delay_with(failed_attempt, fastrand::f64())
    }

    /// [`Backoff::delay`] with the jitter drawn from `unit` (in `[0, 1)`, clamped): the same
    /// delay for the same inputs, so a caller with its own random source stays testable.
    pub fn delay_with(&self, failed_attempt: u32, unit: f64) -> Duration {
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let max = self.max.as_secs_f64();
        // Past 64 doublings (or fewer steps of a larger factor) every delay is at the cap.
        let exp = failed_attempt.saturating_sub(1).min(64) as i32;
        let multiplier = if self.multiplier.is_finite() {
            self.multiplier.max(1.0)
        } else {
            1.0
        };
        let raw = if self.initial.is_zero() {
            0.0 // not 0 * inf = NaN
        } else {
            self.initial.as_secs_f64() * multiplier.powi(exp)
        };
        // `min` and `max` drop a NaN operand, so this is a number in [0, max] (or 0).
        let capped = raw.min(max).max(0.0);
        let secs = if self.jitter {
            capped / 2.0 + unit * capped / 2.0
        } else {
            capped
        };
        // A cap near `u64::MAX` seconds rounds up past what a `Duration` holds.
        Duration::try_from_secs_f64(secs)
            .unwrap_or(self.max)
            .min(self.max)
    }
}
