//! Crash consistency of the real binary: kill -9 of the principal at random moments, a wall
//! clock stepped back across a restart, a one-off `run` beside unfinished work, and an engine
//! that dies.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::common::project::{Project, Stopped, eventually, text};

impl Project {
    /// Starts a principal and waits until it listens.
    fn principal(&self, env: &[(&str, &str)]) -> Stopped {
        // A killed principal leaves its socket file; wait for the new one's.
        let sock = self.data().join("principal.sock");
        let _ = std::fs::remove_file(&sock);
        let mut cmd = self.cmd(&["principal"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn principal");
        assert!(
            eventually(Duration::from_secs(30), || sock.exists()),
            "principal listens"
        );
        Stopped(child)
    }

    fn history(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["history", "--json", "--limit", "1000"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .expect("history json")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls history until no run is queued or running.
    fn wait_all_ended(&self, limit: Duration) -> Vec<serde_json::Value> {
        let t0 = Instant::now();
        loop {
            let runs = self.history();
            if runs
                .iter()
                .all(|r| !matches!(r["state"].as_str(), Some("queued" | "running")))
            {
                return runs;
            }
            assert!(t0.elapsed() < limit, "runs did not end: {runs:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn kill(child: &mut Stopped, sig: Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.0.id() as i32), sig);
    let _ = child.0.wait();
}

/// Each task appends `start RUN TASK ATTEMPT` when it starts and `done ...` when it
/// succeeds; `b1` fails its first attempt, so retries are part of the story.
const TASK: &str = r#"echo "start $OPSCONSOLE_RUN_ID $OPSCONSOLE_TASK $OPSCONSOLE_ATTEMPT" >> marks
sleep 0.0$(( $$ % 8 + 2 ))
if [ "$OPSCONSOLE_TASK" = b1 ] && [ "$OPSCONSOLE_ATTEMPT" = 1 ]; then exit 3; fi
echo "done $OPSCONSOLE_RUN_ID $OPSCONSOLE_TASK $OPSCONSOLE_ATTEMPT" >> marks
"#;

const DAG: &str = "kind: workflow
name: dag
tasks:
  a:  { run: \"sh task.sh\", retries: 2, backoff: { initial: 10ms } }
  b1: { run: \"sh task.sh\", depends_on: [a], retries: 2, backoff: { initial: 10ms } }
  b2: { run: \"sh task.sh\", depends_on: [a], retries: 2, backoff: { initial: 10ms } }
  c:  { run: \"sh task.sh\", depends_on: [b1, b2], retries: 2, backoff: { initial: 10ms } }
";

const EDGES: &[(&str, &str)] = &[("a", "b1"), ("a", "b2"), ("b1", "c"), ("b2", "c")];

/// (kind, run, task, attempt) of every line the tasks wrote, in order.
fn marks(p: &Project) -> Vec<(String, u64, String, u32)> {
    let text = std::fs::read_to_string(p.path().join("marks")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.to_string(),
                f.get(1)?.parse().ok()?,
                f.get(2)?.to_string(),
                f.get(3)?.parse().ok()?,
            ))
        })
        .collect()
}

/// No parent starts again once one of its children has started: a child runs only after
/// its parents' results are durable, so a restart never runs those parents again.
fn check_no_parent_after_child(marks: &[(String, u64, String, u32)]) {
    let mut first_start: BTreeMap<(u64, &str), usize> = BTreeMap::new();
    for (i, (kind, run, task, _)) in marks.iter().enumerate() {
        if kind == "start" {
            first_start.entry((*run, task.as_str())).or_insert(i);
        }
    }
    for (i, (kind, run, task, attempt)) in marks.iter().enumerate() {
        if kind != "start" {
            continue;
        }
        for (parent, child) in EDGES {
            if task == parent
                && let Some(&c) = first_start.get(&(*run, *child))
            {
                assert!(
                    i < c,
                    "run {run}: {parent} (attempt {attempt}) started after its child {child} had \
                     started: {marks:?}"
                );
            }
        }
    }
}

#[test]
fn kill_9_at_random_moments_never_reruns_a_parent_or_fails_a_good_run() {
    let p = Project::new(&[("dag.yaml", DAG)]);
    std::fs::write(p.path().join("task.sh"), TASK).expect("script");
    let mut rng = fastrand::Rng::with_seed(
        std::env::var("CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0x5eed),
    );
    let mut triggered = 0;
    // Runs seen ended after a restart, with the number of marks at that time: a finished run
    // never starts a task again.
    let mut ended: BTreeMap<u64, usize> = BTreeMap::new();
    for round in 0..32 {
        let mut principal = p.principal(&[]);
        if round % 3 == 0 {
            let out = p.run(&["run", "dag"]);
            assert!(out.status.success(), "trigger: {}", text(&out.stderr));
            triggered += 1;
        }
        std::thread::sleep(Duration::from_millis(rng.u64(5..250)));
        kill(&mut principal, Signal::SIGKILL);
        // The watchdog stops the dead principal's tasks; give it a moment.
        std::thread::sleep(Duration::from_millis(30));
        let m = marks(&p);
        check_no_parent_after_child(&m);
        for (run, at) in &ended {
            assert!(
                !m[*at..].iter().any(|(k, r, _, _)| k == "start" && r == run),
                "run {run} had ended but started a task again: {m:?}"
            );
        }
        if let Ok(reader) = opsconsole::store::query::Reader::open(&p.data()) {
            let runs = reader
                .runs(&opsconsole::store::query::RunFilter {
                    workflow: None,
                    limit: 1000,
                })
                .expect("runs");
            for r in runs.iter().filter(|r| r.state.is_terminal()) {
                ended.entry(r.run_id.0).or_insert(m.len());
            }
        }
    }
    let mut principal = p.principal(&[]);
    let runs = p.wait_all_ended(Duration::from_secs(120));
    kill(&mut principal, Signal::SIGTERM);
    assert_eq!(
        runs.len(),
        triggered,
        "every accepted run is there: {runs:?}"
    );
    for r in &runs {
        assert_eq!(
            r["state"], "succeeded",
            "no run fails because of a restart or a task that succeeded: {r}"
        );
    }
    let m = marks(&p);
    check_no_parent_after_child(&m);
    // Every task of every run succeeded at least once, and the run's record says so.
    let done: BTreeSet<(u64, &str)> = m
        .iter()
        .filter(|x| x.0 == "done")
        .map(|x| (x.1, x.2.as_str()))
        .collect();
    for r in &runs {
        let id = r["run_id"].as_u64().expect("id");
        for t in ["a", "b1", "b2", "c"] {
            assert!(done.contains(&(id, t)), "run {id} task {t}: {m:?}");
        }
    }
    // No attempt number was used twice for a task of a run.
    let reader = opsconsole::store::query::Reader::open(&p.data()).expect("history");
    for r in &runs {
        let id = opsconsole::protocol::RunId(r["run_id"].as_u64().expect("id"));
        let attempts = reader.attempts(id).expect("attempts");
        let mut seen = BTreeSet::new();
        for a in &attempts {
            assert!(
                seen.insert((a.task.clone(), a.attempt)),
                "run {id}: {} attempt {} recorded twice: {attempts:?}",
                a.task,
                a.attempt
            );
        }
    }
}

/// A project whose principal was killed with -9 while run 1's one task (`touch started;
/// THEN`) ran, past the group-commit window, so that its start is in the file.
fn killed_mid_task(then: &str) -> Project {
    let p = Project::new(&[(
        "slow.yaml",
        &format!("kind: workflow\nname: slow\ntasks:\n  t: {{ run: \"touch started; {then}\" }}\n"),
    )]);
    let mut principal = p.principal(&[]);
    let out = p.run(&["run", "slow"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        eventually(Duration::from_secs(30), || p
            .path()
            .join("started")
            .exists()),
        "task started"
    );
    std::thread::sleep(Duration::from_millis(200));
    kill(&mut principal, Signal::SIGKILL);
    p
}

#[test]
fn a_wall_clock_stepped_back_across_a_restart_does_not_resurrect_a_finished_run() {
    let p = killed_mid_task("sleep 1");
    // The dead principal's clock ran a day ahead: its events carry tomorrow's timestamps.
    {
        let conn = duckdb::Connection::open(p.data().join("state.duckdb")).expect("open");
        conn.execute_batch(
            "UPDATE run_events SET ts = ts + INTERVAL 1 DAY;
             UPDATE task_events SET ts = ts + INTERVAL 1 DAY;",
        )
        .expect("shift clock");
    }
    // Today's principal resumes and finishes the run, with timestamps before the old ones.
    let mut principal = p.principal(&[]);
    let runs = p.wait_all_ended(Duration::from_secs(60));
    assert_eq!(runs[0]["state"], "succeeded", "{runs:?}");
    kill(&mut principal, Signal::SIGTERM);
    // The next start must not see the run as unfinished again.
    let mut principal = p.principal(&[]);
    std::thread::sleep(Duration::from_millis(300));
    let runs = p.history();
    kill(&mut principal, Signal::SIGTERM);
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0]["state"], "succeeded",
        "order comes from the stored sequence, not from timestamps: {runs:?}"
    );
    let attempts = opsconsole::store::query::Reader::open(&p.data())
        .expect("history")
        .attempts(opsconsole::protocol::RunId(1))
        .expect("attempts");
    assert_eq!(
        attempts.len(),
        2,
        "one interrupted attempt, one that succeeded, nothing more: {attempts:?}"
    );
}

#[test]
fn a_one_off_run_fires_no_schedules_and_leaves_other_unfinished_runs_alone() {
    let p = Project::new(&[
        (
            "every-second.yaml",
            "kind: workflow\nname: every-second\nschedule: \"* * * * * *\"\ntasks:\n  t: { run: \"true\" }\n",
        ),
        (
            "slow.yaml",
            "kind: workflow\nname: slow\ntasks:\n  t: { run: \"touch slow.$OPSCONSOLE_ATTEMPT; sleep 30\" }\n",
        ),
        (
            "quick.yaml",
            "kind: workflow\nname: quick\ntasks:\n  t: { run: \"sleep 2.5\" }\n",
        ),
    ]);
    // A principal dies with `slow` running (and maybe a scheduled run or two).
    let mut principal = p.principal(&[]);
    let out = p.run(&["run", "slow"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        eventually(Duration::from_secs(30), || p.path().join("slow.1").exists()),
        "slow started"
    );
    std::thread::sleep(Duration::from_millis(200));
    kill(&mut principal, Signal::SIGKILL);
    let _ = std::fs::remove_file(p.data().join("principal.sock"));
    let before = p.history();
    let out = p.run(&["run", "quick", "--wait"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let after = p.history();
    assert_eq!(
        after.len(),
        before.len() + 1,
        "only the one run was created (no scheduled fires): {after:?}"
    );
    let slow = after
        .iter()
        .find(|r| r["workflow"] == "slow")
        .expect("slow run");
    assert_eq!(
        slow["state"], "running",
        "the crashed principal's run is left for the next principal: {slow}"
    );
    assert!(
        !p.path().join("slow.2").exists(),
        "the one-off run did not resume `slow`"
    );
    // The next real principal takes it over.
    let mut principal = p.principal(&[]);
    assert!(
        eventually(Duration::from_secs(30), || p.path().join("slow.2").exists()),
        "slow resumed"
    );
    kill(&mut principal, Signal::SIGTERM);
}

#[test]
fn a_dead_engine_makes_the_principal_exit_non_zero_with_the_reason() {
    let p = Project::new(&[(
        "one.yaml",
        "kind: workflow\nname: one\ntasks:\n  t: { run: \"true\" }\n",
    )]);
    let mut principal = p.principal(&[("OPSCONSOLE_FAILPOINT", "engine-panic-on-trigger")]);
    let _ = p.run(&["run", "one"]);
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = principal.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the principal exits instead of serving nothing"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    use std::io::Read;
    let _ = principal
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    assert!(!status.success(), "{status:?}");
    assert!(err.contains("engine stopped"), "{err}");
}

#[test]
fn a_run_whose_resumption_fails_is_failed_with_the_reason_instead_of_crash_looping() {
    let p = killed_mid_task("sleep 30");
    let mut principal = p.principal(&[("OPSCONSOLE_FAILPOINT", "resume-panic")]);
    let runs = p.wait_all_ended(Duration::from_secs(30));
    assert_eq!(runs[0]["state"], "failed", "{runs:?}");
    assert!(
        runs[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("could not be resumed")),
        "{runs:?}"
    );
    // And the principal is still serving.
    let out = p.run(&["status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    kill(&mut principal, Signal::SIGTERM);
}
