//! The in-memory state of one active run.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::dag::{Dag, NodeState};
use crate::protocol::agent::{Assignment, StopPolicy, WorkId, WorkKind};
use crate::protocol::{AttemptKey, RunId, RunState, TaskState};
use crate::spec::{CommandSpec, RenderContext, TriggerRule, WorkflowSpec};

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
    pub nodes: Vec<NodeState>,
    pub tasks: Vec<TaskCtx>,
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
            nodes: vec![NodeState::Waiting; spec.tasks.len()],
            spec,
            dag,
            params,
            state: RunState::Queued,
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

    /// The process to start for the current attempt of task `idx`.
    pub fn assignment(&self, idx: usize, workdir: &Path, stop: StopPolicy) -> Assignment {
        let task = &self.spec.tasks[idx];
        let ctx = RenderContext {
            params: &self.params,
            run_id: self.id.0,
            task_name: &task.name,
        };
        let argv = match &task.run {
            CommandSpec::Argv(parts) => parts.iter().map(|p| p.render(&ctx)).collect(),
            CommandSpec::Shell(script) => {
                vec!["sh".to_string(), "-c".to_string(), script.render(&ctx)]
            }
        };
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
            cwd: Some(match &task.cwd {
                Some(dir) => workdir.join(dir),
                None => workdir.to_path_buf(),
            }),
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
