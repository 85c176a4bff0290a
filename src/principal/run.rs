//! One active run as a pure state machine: its tasks and their attempts, trigger rules, retries
//! and stops. No IO and no async: each transition updates the run and returns the [`Step`]s the
//! engine carries out (record an event, queue an attempt, set a timer, stop work), in order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::dag::{Dag, NodeState};
use crate::protocol::agent::{Assignment, StopPolicy, WorkId, WorkKind};
use crate::protocol::{AttemptKey, Outcome, RunId, RunState, TaskState};
use crate::spec::{RenderContext, TriggerRule, WorkflowSpec};

/// How many times a principal's death may interrupt one task before it is failed instead of
/// run again: a task that brings the principal down every time must not loop forever.
pub(crate) const MAX_INTERRUPTIONS: u32 = 10;

/// Something the engine must do after a transition of a run; the run's state is already
/// updated. Carried out in order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Step {
    /// Record that attempt `attempt` of task `idx` is now in `state`.
    Task {
        idx: usize,
        attempt: u32,
        state: TaskState,
        message: Option<String>,
    },
    /// Record that attempt `attempt` of task `idx` was interrupted by a principal's death.
    Interrupted { idx: usize, attempt: u32 },
    /// Attempt `attempt` of task `idx` waits for a slot; a `gated` one only once everything
    /// recorded before it is durable.
    Queue {
        idx: usize,
        attempt: u32,
        gated: bool,
    },
    /// Attempt `attempt` of task `idx` becomes due after `delay`.
    RetryAfter {
        idx: usize,
        attempt: u32,
        delay: Duration,
    },
    /// Ask the agent to stop the current attempt of task `idx`.
    Stop { idx: usize },
}

/// Where a task in `state` stands in its DAG.
fn node_of(state: TaskState) -> NodeState {
    match state {
        TaskState::Pending => NodeState::Waiting,
        TaskState::Queued | TaskState::Running | TaskState::Retrying => NodeState::Started,
        TaskState::Succeeded => NodeState::Succeeded,
        TaskState::Failed | TaskState::TimedOut => NodeState::Failed,
        TaskState::Skipped => NodeState::Skipped,
        TaskState::Cancelled => NodeState::Cancelled,
    }
}

/// One task of an active run.
pub(super) struct TaskCtx {
    pub name: Arc<str>,
    pub state: TaskState,
    /// Current (or last) attempt number; 0 before the first.
    pub attempt: u32,
    /// An agent holds the current attempt (dispatched, not yet finished).
    pub on_agent: bool,
    /// Attempts that do not count against `retries` (re-queued after a restart).
    pub extra_attempts: u32,
}

/// An active (queued or running) run.
pub(super) struct RunCtx {
    pub id: RunId,
    pub workflow: Arc<str>,
    pub spec: Arc<WorkflowSpec>,
    pub dag: Arc<Dag>,
    pub rules: Vec<TriggerRule>,
    pub params: BTreeMap<String, String>,
    pub state: RunState,
    /// The one record of where each task stands; change a state only through this type's
    /// methods, which keep the DAG's view (`nodes`) derived from it.
    pub tasks: Vec<TaskCtx>,
    /// `node_of` each task's state, kept beside it so that settling does not rebuild it.
    nodes: Vec<NodeState>,
    pub cancel_requested: bool,
    pub fail_fast_tripped: bool,
    /// Held until the workflow has no other active run (scheduled, overlap: queue).
    pub exclusive: bool,
}

impl RunCtx {
    pub fn new(
        id: RunId,
        spec: Arc<WorkflowSpec>,
        dag: Arc<Dag>,
        params: BTreeMap<String, String>,
    ) -> Self {
        let spec_len = spec.tasks.len();
        let tasks = spec
            .tasks
            .iter()
            .map(|t| TaskCtx {
                name: Arc::from(t.name.as_str()),
                state: TaskState::Pending,
                attempt: 0,
                on_agent: false,
                extra_attempts: 0,
            })
            .collect();
        Self {
            id,
            workflow: Arc::from(spec.name.as_str()),
            rules: spec.tasks.iter().map(|t| t.trigger).collect(),
            spec,
            dag,
            params,
            state: RunState::Queued,
            nodes: vec![NodeState::Waiting; spec_len],
            tasks,
            cancel_requested: false,
            fail_fast_tripped: false,
            exclusive: false,
        }
    }

    /// Key of the current attempt of task `idx`.
    pub fn key(&self, idx: usize) -> AttemptKey {
        AttemptKey {
            run_id: self.id,
            task_idx: idx,
            task: self.tasks[idx].name.clone(),
            attempt: self.tasks[idx].attempt,
        }
    }

    /// Task `idx` as the DAG sees it.
    pub fn node(&self, idx: usize) -> NodeState {
        self.nodes[idx]
    }

    /// Puts task `idx` back where stored history says it stood (resuming or retrying a run).
    pub fn restore(&mut self, idx: usize, state: TaskState) {
        self.tasks[idx].state = state;
        self.nodes[idx] = node_of(state);
    }

    /// True when every task is decided and no attempt is still with an agent.
    pub fn is_done(&self) -> bool {
        self.nodes.iter().all(|n| n.is_finished()) && self.tasks.iter().all(|t| !t.on_agent)
    }

    /// The state the run ends in once it is done.
    pub fn final_state(&self) -> RunState {
        if self.cancel_requested {
            RunState::Cancelled
        } else if self.nodes.contains(&NodeState::Failed) {
            RunState::Failed
        } else {
            RunState::Succeeded
        }
    }

    /// Tasks that failed or timed out for good.
    pub fn failed_tasks(&self) -> Vec<String> {
        self.tasks
            .iter()
            .filter(|t| matches!(t.state, TaskState::Failed | TaskState::TimedOut))
            .map(|t| t.name.to_string())
            .collect()
    }

    fn set(
        &mut self,
        idx: usize,
        state: TaskState,
        message: Option<String>,
        steps: &mut Vec<Step>,
    ) {
        self.restore(idx, state);
        steps.push(Step::Task {
            idx,
            attempt: self.tasks[idx].attempt,
            state,
            message,
        });
    }

    /// Records task `idx` in `state`, outside the run's own rules (a retry of the run resets
    /// tasks, an agent reports a start).
    pub fn set_state(
        &mut self,
        idx: usize,
        state: TaskState,
        message: Option<String>,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        self.set(idx, state, message, &mut steps);
        steps
    }

    fn queue_next(&mut self, idx: usize, why: Option<String>, gated: bool, steps: &mut Vec<Step>) {
        let t = &mut self.tasks[idx];
        t.attempt = t.attempt.saturating_add(1);
        let attempt = t.attempt;
        self.set(idx, TaskState::Queued, why, steps);
        steps.push(Step::Queue {
            idx,
            attempt,
            gated,
        });
    }

    /// Runs task `idx` again under its next attempt number, once what came before is durable.
    pub fn requeue(&mut self, idx: usize, why: Option<String>) -> Vec<Step> {
        let mut steps = Vec::new();
        self.queue_next(idx, why, true, &mut steps);
        steps
    }

    /// Decides every task whose trigger rule can be decided: skips, and attempts to queue.
    pub fn settle(&mut self) -> Vec<Step> {
        // Settling marks what it decides in `nodes`; `set` below records the same.
        let settled = self.dag.settle(&mut self.nodes, &self.rules);
        let mut steps = Vec::new();
        for idx in settled.skipped {
            let why = Some("upstream tasks did not meet its trigger rule".to_string());
            self.set(idx, TaskState::Skipped, why, &mut steps);
        }
        for idx in settled.ready {
            // A root task has no parent result to wait for; a dependent starts only once its
            // parents' results are durable, so a crash can never run a parent again after
            // its children started. A retried run's tasks go on numbering from their earlier
            // attempts.
            let gated = !self.dag.parents(idx).is_empty();
            self.queue_next(idx, None, gated, &mut steps);
        }
        steps
    }

    /// An attempt ended with `outcome`: retried after its backoff while the budget lasts,
    /// otherwise final; a failure under `fail_fast` stops the rest of the run.
    pub fn attempt_finished(&mut self, key: &AttemptKey, outcome: &Outcome) -> Vec<Step> {
        let idx = key.task_idx;
        let mut steps = Vec::new();
        if idx >= self.tasks.len() {
            return steps;
        }
        self.tasks[idx].on_agent = false;
        if self.tasks[idx].attempt != key.attempt {
            return steps; // superseded meanwhile
        }
        let state = outcome.task_state();
        let describe = outcome.describe();
        let task = &self.spec.tasks[idx];
        let budget = task.retries.saturating_add(self.tasks[idx].extra_attempts);
        let stopping = self.cancel_requested || self.fail_fast_tripped;
        match state {
            TaskState::Failed | TaskState::TimedOut if key.attempt <= budget && !stopping => {
                let delay = task.backoff.delay(key.attempt);
                let note = format!(
                    "attempt {}/{} {describe}; retrying in {}",
                    key.attempt,
                    budget.saturating_add(1),
                    crate::humantime::format_duration(delay)
                );
                self.set(idx, TaskState::Retrying, Some(note), &mut steps);
                steps.push(Step::RetryAfter {
                    idx,
                    attempt: key.attempt.saturating_add(1),
                    delay,
                });
            }
            _ => {
                let trip = node_of(state) == NodeState::Failed
                    && self.spec.fail_fast
                    && !self.fail_fast_tripped;
                let message = (state != TaskState::Succeeded).then_some(describe);
                self.set(idx, state, message, &mut steps);
                if trip {
                    steps.extend(self.stop(false, "fail_fast: another task failed"));
                }
            }
        }
        steps
    }

    /// A task's backoff has passed: its next attempt is queued, unless the task moved on.
    pub fn retry_due(&mut self, idx: usize, attempt: u32) -> Vec<Step> {
        let mut steps = Vec::new();
        let Some(t) = self.tasks.get_mut(idx) else {
            return steps;
        };
        if t.state == TaskState::Retrying && t.attempt.saturating_add(1) == attempt {
            t.attempt = attempt;
            self.set(idx, TaskState::Queued, None, &mut steps);
            // The failed attempt's record is durable before the next attempt starts.
            steps.push(Step::Queue {
                idx,
                attempt,
                gated: true,
            });
        }
        steps
    }

    /// The attempt a dead principal left running is recorded as interrupted (it does not use
    /// up a retry) and runs again under the next attempt number; after [`MAX_INTERRUPTIONS`]
    /// the task fails instead.
    pub fn interrupted(&mut self, idx: usize) -> Vec<Step> {
        let mut steps = Vec::new();
        let t = &mut self.tasks[idx];
        let attempt = t.attempt;
        t.extra_attempts = t.extra_attempts.saturating_add(1);
        let times = t.extra_attempts;
        steps.push(Step::Interrupted { idx, attempt });
        if times > MAX_INTERRUPTIONS {
            let why = format!(
                "interrupted by {times} principal restarts; not run again, since a task that \
                 stops the principal would otherwise loop"
            );
            self.set(idx, TaskState::Failed, Some(why), &mut steps);
        } else {
            let why = format!(
                "attempt {attempt} was interrupted by a principal restart; running it again"
            );
            self.queue_next(idx, Some(why), true, &mut steps);
        }
        steps
    }

    /// Stops the run's work: attempts with an agent are stopped, undecided tasks are marked
    /// cancelled (`user_cancel`) or skipped (fail_fast).
    pub fn stop(&mut self, user_cancel: bool, why: &str) -> Vec<Step> {
        if user_cancel {
            self.cancel_requested = true;
        } else {
            self.fail_fast_tripped = true;
        }
        let mut steps = Vec::new();
        for idx in 0..self.tasks.len() {
            if self.node(idx).is_finished() {
                continue;
            }
            if self.tasks[idx].on_agent {
                steps.push(Step::Stop { idx });
                continue;
            }
            let state = if user_cancel {
                TaskState::Cancelled
            } else {
                TaskState::Skipped
            };
            self.set(idx, state, Some(why.to_string()), &mut steps);
        }
        steps
    }

    /// The process to start for the current attempt of task `idx`.
    pub fn assignment(&self, idx: usize, stop: StopPolicy) -> Assignment {
        let task = &self.spec.tasks[idx];
        let ctx = RenderContext {
            params: &self.params,
            run_id: self.id.0,
            task_name: &task.name,
        };
        let argv = task.run.argv(&ctx);
        let mut env = vec![
            ("OPSCONSOLE_WORKFLOW".to_string(), self.spec.name.clone()),
            ("OPSCONSOLE_RUN_ID".to_string(), self.id.to_string()),
            ("OPSCONSOLE_TASK".to_string(), task.name.clone()),
            (
                "OPSCONSOLE_ATTEMPT".to_string(),
                self.tasks[idx].attempt.to_string(),
            ),
        ];
        env.extend(
            self.params
                .iter()
                .map(|(k, v)| (format!("OPSCONSOLE_PARAM_{}", env_name(k)), v.clone())),
        );
        env.extend(task.env.iter().map(|(k, v)| (k.clone(), v.render(&ctx))));
        Assignment {
            id: WorkId::Task(self.key(idx)),
            kind: WorkKind::Task {
                timeout: task.timeout,
            },
            stop,
            argv,
            env,
            // Relative to the agent's working directory, which the agent adds.
            cwd: task.cwd.clone(),
            max_output: task.max_output,
        }
    }
}

/// `my-param.x` -> `MY_PARAM_X`.
fn env_name(param: &str) -> String {
    param
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str) -> RunCtx {
        let spec =
            crate::spec::parse_str(std::path::Path::new("t.yaml"), yaml).expect("valid spec");
        let dag = Dag::for_workflow(&spec).expect("acyclic");
        RunCtx::new(RunId(1), Arc::new(spec), Arc::new(dag), BTreeMap::new())
    }

    fn idx(run: &RunCtx, name: &str) -> usize {
        run.tasks
            .iter()
            .position(|t| &*t.name == name)
            .expect("task exists")
    }

    /// Hands the queued attempt of `name` to an agent and returns its key.
    fn dispatch(run: &mut RunCtx, name: &str) -> AttemptKey {
        let i = idx(run, name);
        assert_eq!(run.tasks[i].state, TaskState::Queued, "{name} is queued");
        run.tasks[i].on_agent = true;
        run.set_state(i, TaskState::Running, None);
        run.key(i)
    }

    fn queued(steps: &[Step]) -> Vec<(usize, u32, bool)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Queue {
                    idx,
                    attempt,
                    gated,
                } => Some((*idx, *attempt, *gated)),
                _ => None,
            })
            .collect()
    }

    const CHAIN: &str = "kind: workflow\nname: w\ntasks:\n  a: { run: \"true\" }\n  b: { run: \"true\", depends_on: [a] }\n";

    #[test]
    fn a_dependent_is_queued_after_its_parent_and_waits_for_durability() {
        let mut r = run(CHAIN);
        let (a, b) = (idx(&r, "a"), idx(&r, "b"));
        assert_eq!(
            queued(&r.settle()),
            vec![(a, 1, false)],
            "a root is not gated"
        );
        assert_eq!(r.tasks[b].state, TaskState::Pending);
        let key = dispatch(&mut r, "a");
        let steps = r.attempt_finished(&key, &Outcome::Exited(0));
        assert!(steps.contains(&Step::Task {
            idx: a,
            attempt: 1,
            state: TaskState::Succeeded,
            message: None
        }));
        assert_eq!(
            queued(&r.settle()),
            vec![(b, 1, true)],
            "a dependent is gated"
        );
        assert!(!r.is_done());
        let key = dispatch(&mut r, "b");
        r.attempt_finished(&key, &Outcome::Exited(0));
        assert!(r.is_done());
        assert_eq!(r.final_state(), RunState::Succeeded);
    }

    #[test]
    fn a_failure_is_retried_after_its_backoff_then_final_and_skips_its_dependents() {
        let mut r = run(
            "kind: workflow\nname: w\ntasks:\n  a: { run: \"false\", retries: 1, backoff: { initial: 2s, jitter: false } }\n  b: { run: \"true\", depends_on: [a] }\n",
        );
        let (a, b) = (idx(&r, "a"), idx(&r, "b"));
        r.settle();
        let key = dispatch(&mut r, "a");
        let steps = r.attempt_finished(&key, &Outcome::Exited(1));
        assert_eq!(r.tasks[a].state, TaskState::Retrying);
        assert!(steps.contains(&Step::RetryAfter {
            idx: a,
            attempt: 2,
            delay: Duration::from_secs(2)
        }));
        assert!(r.retry_due(a, 3).is_empty(), "a stale timer does nothing");
        assert_eq!(queued(&r.retry_due(a, 2)), vec![(a, 2, true)]);
        let key = dispatch(&mut r, "a");
        assert_eq!(key.attempt, 2);
        r.attempt_finished(&key, &Outcome::Exited(1));
        assert_eq!(r.tasks[a].state, TaskState::Failed, "the budget is spent");
        r.settle();
        assert_eq!(r.tasks[b].state, TaskState::Skipped);
        assert!(r.is_done());
        assert_eq!(r.final_state(), RunState::Failed);
        assert_eq!(r.failed_tasks(), vec!["a".to_string()]);
    }

    #[test]
    fn fail_fast_stops_running_work_and_skips_what_has_not_started() {
        let mut r = run(
            "kind: workflow\nname: w\nfail_fast: true\ntasks:\n  a: { run: \"false\" }\n  b: { run: \"sleep 9\" }\n  c: { run: \"true\", depends_on: [b] }\n",
        );
        let (b, c) = (idx(&r, "b"), idx(&r, "c"));
        r.settle();
        let ka = dispatch(&mut r, "a");
        let kb = dispatch(&mut r, "b");
        let steps = r.attempt_finished(&ka, &Outcome::Exited(1));
        assert!(steps.contains(&Step::Stop { idx: b }), "{steps:?}");
        assert_eq!(r.tasks[c].state, TaskState::Skipped);
        assert!(!r.is_done(), "b is still with its agent");
        r.attempt_finished(&kb, &Outcome::Cancelled);
        assert!(r.is_done());
        assert_eq!(r.final_state(), RunState::Failed);
    }

    #[test]
    fn a_cancel_marks_undecided_tasks_and_the_run_ends_cancelled() {
        let mut r = run(CHAIN);
        let (a, b) = (idx(&r, "a"), idx(&r, "b"));
        r.settle();
        let key = dispatch(&mut r, "a");
        let steps = r.stop(true, "cancelled by user");
        assert!(steps.contains(&Step::Stop { idx: a }));
        assert_eq!(r.tasks[b].state, TaskState::Cancelled);
        r.attempt_finished(&key, &Outcome::Cancelled);
        assert!(r.is_done());
        assert_eq!(r.final_state(), RunState::Cancelled);
    }

    #[test]
    fn interruptions_do_not_use_up_retries_but_are_bounded() {
        let mut r = run(CHAIN);
        let a = idx(&r, "a");
        r.settle();
        for n in 1..=MAX_INTERRUPTIONS {
            dispatch(&mut r, "a");
            r.tasks[a].on_agent = false; // the principal died with it running
            let steps = r.interrupted(a);
            assert_eq!(steps[0], Step::Interrupted { idx: a, attempt: n });
            assert_eq!(queued(&steps), vec![(a, n + 1, true)]);
        }
        dispatch(&mut r, "a");
        r.tasks[a].on_agent = false;
        r.interrupted(a);
        assert_eq!(r.tasks[a].state, TaskState::Failed, "no endless loop");
    }

    #[test]
    fn a_late_result_of_a_superseded_attempt_changes_nothing() {
        let mut r = run(CHAIN);
        let a = idx(&r, "a");
        r.settle();
        let old = dispatch(&mut r, "a");
        r.tasks[a].on_agent = false;
        r.interrupted(a);
        assert!(r.attempt_finished(&old, &Outcome::Exited(0)).is_empty());
        assert_eq!(r.tasks[a].state, TaskState::Queued);
    }
}
