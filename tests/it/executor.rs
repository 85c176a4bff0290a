//! The one executor behind tasks, services and command checks, driven through the local agent
//! as the principal drives it (the `AgentLink` trait), with real processes.

use std::time::{Duration, Instant};

use opsconsole::agent::LocalAgent;
use opsconsole::protocol::agent::{
    AgentEvent, AgentLink, Assignment, CheckProbe, Exit, ServiceStart, StopCause, StopPolicy,
    WorkEnd, WorkId, WorkKind,
};
use opsconsole::protocol::{AttemptKey, Outcome, RunId};
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(20);

fn task_id(n: u32) -> WorkId {
    WorkId::Task(AttemptKey {
        run_id: RunId(1),
        task_idx: 0,
        task: "t".into(),
        attempt: n,
    })
}

fn service_id() -> WorkId {
    WorkId::Service(ServiceStart {
        path: "web/api".into(),
        start: 1,
    })
}

fn job(id: WorkId, kind: WorkKind, script: &str, stop: StopPolicy) -> Assignment {
    Assignment {
        id,
        kind,
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: Vec::new(),
        cwd: None,
        stop,
        max_output: opsconsole::protocol::agent::DEFAULT_MAX_OUTPUT,
    }
}

fn term(grace_ms: u64) -> StopPolicy {
    StopPolicy::term(Duration::from_millis(grace_ms))
}

struct Agent {
    link: LocalAgent,
    events: mpsc::Receiver<AgentEvent>,
}

impl Agent {
    fn new() -> Self {
        let (tx, events) = mpsc::channel(1024);
        Self {
            link: LocalAgent::new(2, std::env::temp_dir(), tx, None),
            events,
        }
    }

    async fn next(&mut self) -> AgentEvent {
        tokio::time::timeout(LIMIT, self.events.recv())
            .await
            .expect("an event within the limit")
            .expect("the agent's channel is open")
    }

    /// Every event up to the end of the work, and the end.
    async fn until_end(&mut self) -> (Vec<AgentEvent>, WorkEnd) {
        let mut seen = Vec::new();
        loop {
            match self.next().await {
                AgentEvent::Finished(end) => return (seen, end),
                other => seen.push(other),
            }
        }
    }

    async fn run(&mut self, job: Assignment) -> (Vec<AgentEvent>, WorkEnd) {
        self.link.assign(job);
        self.until_end().await
    }
}

#[tokio::test]
async fn a_task_reports_its_exit_code_and_a_signal_that_was_not_ours() {
    let mut agent = Agent::new();
    let task = WorkKind::Task { timeout: None };
    let (_, end) = agent
        .run(job(task_id(1), task.clone(), "exit 3", term(1000)))
        .await;
    assert_eq!((end.exit.clone(), end.stopped), (Exit::Code(3), None));
    assert_eq!(end.outcome(), Outcome::Exited(3));

    let (_, end) = agent
        .run(job(task_id(2), task, "kill -KILL $$", term(1000)))
        .await;
    assert_eq!((end.exit.clone(), end.stopped), (Exit::Signal(9), None));
    assert_eq!(end.outcome(), Outcome::Signaled(9));
}

#[tokio::test]
async fn a_task_past_its_timeout_is_stopped_and_says_so() {
    let mut agent = Agent::new();
    let kind = WorkKind::Task {
        timeout: Some(Duration::from_millis(200)),
    };
    let (_, end) = agent
        .run(job(task_id(1), kind, "sleep 30", term(1000)))
        .await;
    assert_eq!(end.stopped, Some(StopCause::TimedOut));
    assert_eq!(end.exit, Exit::Signal(15), "stopped by SIGTERM");
    assert_eq!(end.outcome(), Outcome::TimedOut);
}

#[tokio::test]
async fn a_service_runs_until_stopped_with_its_own_signal_and_reports_its_pid_and_output() {
    let mut agent = Agent::new();
    let script = "trap 'echo got INT; exit 0' INT; echo up; while :; do sleep 0.05; done";
    let stop = StopPolicy {
        signal: libc::SIGINT,
        grace: Duration::from_secs(10),
    };
    agent
        .link
        .assign(job(service_id(), WorkKind::Service, script, stop));
    let pid = match agent.next().await {
        AgentEvent::Started { id, pid, .. } => {
            assert_eq!(id, service_id());
            pid.expect("a service reports its pid")
        }
        other => panic!("expected Started, got {other:?}"),
    };
    // Up and printing: it is not stopped by itself.
    match agent.next().await {
        AgentEvent::Output { id, lines, .. } => {
            assert_eq!(id, service_id());
            assert_eq!(lines[0].text, "up");
        }
        other => panic!("expected its output, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "still running"
    );
    agent.link.stop(&service_id());
    let (seen, end) = agent.until_end().await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, AgentEvent::Output { lines, .. }
            if lines.iter().any(|l| l.text == "got INT"))),
        "the stop signal was SIGINT: {seen:?}"
    );
    assert_eq!(end.exit, Exit::Code(0));
    assert_eq!(
        end.stopped,
        Some(StopCause::Requested),
        "a supervisor must see that it stopped this child itself"
    );
}

#[tokio::test]
async fn a_service_that_ignores_its_stop_signal_is_killed_after_its_own_grace() {
    let mut agent = Agent::new();
    let script = "trap '' TERM; echo up; while :; do sleep 0.05; done";
    agent
        .link
        .assign(job(service_id(), WorkKind::Service, script, term(300)));
    loop {
        if let AgentEvent::Output { .. } = agent.next().await {
            break;
        }
    }
    let asked = Instant::now();
    agent.link.stop(&service_id());
    let (_, end) = agent.until_end().await;
    assert!(
        asked.elapsed() >= Duration::from_millis(300),
        "grace honoured"
    );
    assert_eq!(end.exit, Exit::Signal(9), "SIGKILL after the grace");
    assert_eq!(end.stopped, Some(StopCause::Requested));
}

#[tokio::test]
async fn a_check_keeps_its_output_up_to_the_bound_and_streams_nothing() {
    let mut agent = Agent::new();
    let id = WorkId::Check(CheckProbe {
        monitor: "disk".into(),
        probe: 1,
    });
    let kind = WorkKind::Check {
        timeout: Duration::from_secs(10),
        max_output: 100,
    };
    let script = "echo first; echo oops >&2; head -c 100000 /dev/zero | tr '\\0' x; exit 2";
    let (seen, end) = agent.run(job(id, kind, script, term(1000))).await;
    assert!(
        !seen.iter().any(|e| matches!(e, AgentEvent::Output { .. })),
        "a check's output is returned, not streamed: {seen:?}"
    );
    let output = end.output.expect("a check returns its output");
    assert!(output.len() <= 100, "bounded: {} bytes", output.len());
    // Both streams through one pipe, as `2>&1`: in the order written.
    assert!(output.starts_with("first\noops\nxxx"), "{output:?}");
    assert_eq!(end.exit, Exit::Code(2));
}

/// A check's output keeps the order its lines were written in, whichever stream each took: the
/// last line of a failing command is its last word.
#[tokio::test]
async fn a_check_keeps_the_order_of_its_two_streams() {
    let mut agent = Agent::new();
    let id = WorkId::Check(CheckProbe {
        monitor: "order".into(),
        probe: 1,
    });
    let kind = WorkKind::Check {
        timeout: Duration::from_secs(10),
        max_output: 1 << 16,
    };
    let script = "for i in $(seq 1 100); do echo out $i; echo err $i >&2; done; exit 1";
    let (_, end) = agent.run(job(id, kind, script, term(1000))).await;
    let want: String = (1..=100).map(|i| format!("out {i}\nerr {i}\n")).collect();
    assert_eq!(end.output.as_deref(), Some(want.as_str()));
}

#[tokio::test]
async fn a_check_past_its_timeout_is_stopped() {
    let mut agent = Agent::new();
    let id = WorkId::Check(CheckProbe {
        monitor: "slow".into(),
        probe: 1,
    });
    let kind = WorkKind::Check {
        timeout: Duration::from_millis(200),
        max_output: 1024,
    };
    let (_, end) = agent.run(job(id, kind, "sleep 30", term(1000))).await;
    assert_eq!(end.stopped, Some(StopCause::TimedOut));
}

#[tokio::test]
async fn a_command_that_cannot_start_is_reported_not_started() {
    let mut agent = Agent::new();
    let mut j = job(task_id(1), WorkKind::Task { timeout: None }, "", term(1000));
    j.argv = vec!["/nonexistent/program".into()];
    let (seen, end) = agent.run(j).await;
    assert!(
        seen.is_empty(),
        "no Started for what never started: {seen:?}"
    );
    assert!(
        matches!(&end.exit, Exit::NotStarted(why) if why.contains("not found")),
        "{:?}",
        end.exit
    );
}

/// Whether `own`, a child of this process, is still alive once a task has run beside it and
/// the orphan sweeper (which this process runs, as a principal does) has had its look.
async fn outlives_a_task(mut own: std::process::Child) -> bool {
    let _ = opsconsole::agent::orphans::adopt(Duration::from_millis(500));
    let mut agent = Agent::new();
    let (_, end) = agent
        .run(job(
            task_id(1),
            WorkKind::Task { timeout: None },
            "true",
            term(100),
        ))
        .await;
    assert_eq!(end.outcome(), Outcome::Exited(0));
    // The sweeper looks often for 2 s after a task ends, and stops what it takes for an
    // escapee at once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // An error here (ECHILD) means the sweeper reaped it: it was stopped.
    let alive = matches!(own.try_wait(), Ok(None));
    let _ = own.kill();
    let _ = own.wait();
    alive
}

/// The process hosting the executor has children of its own: one that `timeout` puts in its
/// own group (as the tests beside this one start their scripts) has neither a task's token nor
/// its mark, and is not taken for a task's escapee once the tasks have ended.
#[tokio::test]
async fn a_child_of_the_host_in_its_own_group_is_not_taken_for_an_escapee() {
    // Clear of any mark: the suite runs executors beside this test, and a child spawned while
    // one marks its leader would carry that task's mark.
    let own = opsconsole::agent::orphans::unmarked(|| {
        std::process::Command::new("timeout")
            .args(["20", "sleep", "20"])
            .spawn()
    })
    .expect("timeout");
    assert!(
        outlives_a_task(own).await,
        "the host's own child was stopped by the orphan sweeper"
    );
}

/// As the console tests start their consoles: `setsid`, a session of its own. Spawned
/// plainly, the sweeper took it for an untokened escapee once a task had ended.
#[tokio::test]
async fn a_child_of_the_host_in_its_own_session_spawned_apart_is_left_alone() {
    let (own, _registration) = crate::common::spawn_apart(|| {
        std::process::Command::new("setsid")
            .args(["sleep", "20"])
            .spawn()
    })
    .expect("setsid");
    assert!(
        outlives_a_task(own).await,
        "a child spawned apart was stopped by the orphan sweeper"
    );
}
