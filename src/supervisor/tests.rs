//! The supervision semantics, each with plain calls: facts in, steps out.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::spec::{StopSignal, SupervisorSpec};

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);

/// The root supervisors of `docs` (each a whole file), loaded as `validate` would.
fn roots(docs: &[&str]) -> Vec<Arc<SupervisorSpec>> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir: PathBuf =
        std::env::temp_dir().join(format!("opsconsole-svm-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (i, doc) in docs.iter().enumerate() {
        std::fs::write(dir.join(format!("{i}.yaml")), doc).unwrap();
    }
    let (catalog, problems) = crate::spec::load_dir(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(problems.is_empty(), "{problems:#?}");
    catalog.supervisor_roots().cloned().collect()
}

/// A supervision under test with its clock.
struct H {
    sup: Supervision,
    now: At,
}

impl H {
    fn new(docs: &[&str]) -> Self {
        Self {
            sup: Supervision::new(&roots(docs), || 0.5),
            now: At::default(),
        }
    }

    /// Moves the clock on by `d`.
    fn wait(&mut self, d: Duration) {
        self.now = self.now.after(d);
    }

    fn start_all(&mut self) -> Vec<Step> {
        self.sup.start_all(self.now)
    }

    fn started(&mut self, path: &str, pid: u32) -> Vec<Step> {
        let no = self.no(path);
        self.sup
            .child_started(path, no, Some(pid), self.now)
            .unwrap()
    }

    fn ready(&mut self, path: &str) -> Vec<Step> {
        let no = self.no(path);
        self.sup.child_ready(path, no, self.now).unwrap()
    }

    fn exit(&mut self, path: &str, code: i32) -> Vec<Step> {
        let no = self.no(path);
        self.sup
            .child_exited(path, no, ExitStatus::Code(code), self.now)
            .unwrap()
    }

    /// The exit that follows a `Stop` with SIGTERM.
    fn term(&mut self, path: &str) -> Vec<Step> {
        let no = self.no(path);
        self.sup
            .child_exited(path, no, ExitStatus::Signal(15), self.now)
            .unwrap()
    }

    fn reload(&mut self, docs: &[&str]) -> Vec<Step> {
        self.sup.reload(&roots(docs), self.now)
    }

    fn paths(&self) -> Vec<String> {
        self.sup
            .view(self.now)
            .into_iter()
            .map(|v| v.path)
            .collect()
    }

    fn due(&mut self, timer: &Timer) -> Vec<Step> {
        self.sup.timer_due(timer, self.now).unwrap()
    }

    fn no(&self, path: &str) -> u64 {
        self.view(path).start_no
    }

    fn view(&self, path: &str) -> NodeView {
        self.sup.node(path, self.now).expect(path)
    }

    fn state(&self, path: &str) -> NodeState {
        self.view(path).state
    }

    /// Brings every service it is asked to spawn up (spawned, and ready when it has a
    /// check), following the steps until nothing more is spawned; returns every step.
    fn bring_up(&mut self, mut steps: Vec<Step>) -> Vec<Step> {
        let mut all = Vec::new();
        while let Some(path) = spawns(&steps).first().cloned() {
            all.append(&mut steps);
            steps = self.started(&path, 100);
            if self.state(&path) == NodeState::Starting {
                steps.extend(self.ready(&path));
            }
        }
        all.append(&mut steps);
        all
    }

    /// Reports the exit of every service it is asked to stop, until nothing more is.
    fn stop_through(&mut self, mut steps: Vec<Step>) -> Vec<Step> {
        let mut all = Vec::new();
        while let Some(path) = stops(&steps).first().cloned() {
            all.append(&mut steps);
            steps = self.term(&path);
        }
        all.append(&mut steps);
        all
    }
}

fn spawns(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Spawn { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

fn stops(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Stop { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

/// The one timer of `kind` armed in `steps`, with its delay.
#[track_caller]
fn armed(steps: &[Step], kind: TimerKind) -> (Timer, Duration) {
    let found: Vec<(Timer, Duration)> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Arm { timer, after } if timer.kind == kind => Some((timer.clone(), *after)),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "one {kind:?} timer expected in {steps:#?}");
    found.into_iter().next().unwrap()
}

fn events(steps: &[Step], path: &str) -> Vec<LifecycleEvent> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Record(l) if l.path == path => Some(l.event.clone()),
            _ => None,
        })
        .collect()
}

fn three(strategy: &str) -> String {
    format!(
        "kind: supervisor\nname: web\nstrategy: {strategy}\nintensity: 100\nchildren:\n  \
         - {{ name: a, run: x }}\n  - {{ name: b, run: x }}\n  - {{ name: c, run: x }}\n"
    )
}

#[test]
fn start_is_left_to_right_each_child_once_its_predecessor_is_ready() {
    let mut h = H::new(&["kind: supervisor\nname: web\nchildren:\n  \
         - { name: a, run: x, ready: { log: up, timeout: 5s } }\n  - { name: b, run: x }\n  \
         - { name: c, run: x }\n"]);
    let steps = h.start_all();
    assert_eq!(spawns(&steps), ["web/a"], "only the first child");
    let (timer, after) = armed(&steps, TimerKind::ReadyTimeout);
    assert_eq!(
        (timer.path.as_str(), timer.start_no, after),
        ("web/a", 1, 5 * S)
    );
    assert_eq!(h.state("web"), NodeState::Starting);
    let steps = h.started("web/a", 11);
    assert!(
        spawns(&steps).is_empty(),
        "a is spawned, not ready: b waits"
    );
    assert_eq!(
        events(&steps, "web/a"),
        [LifecycleEvent::Started { pid: Some(11) }]
    );
    let steps = h.ready("web/a");
    assert_eq!(spawns(&steps), ["web/b"]);
    // Without a readiness check, spawned is ready.
    let steps = h.started("web/b", 12);
    assert_eq!(spawns(&steps), ["web/c"]);
    let steps = h.started("web/c", 13);
    assert!(spawns(&steps).is_empty());
    assert_eq!(events(&steps, "web"), [LifecycleEvent::Ready]);
    for p in ["web", "web/a", "web/b", "web/c"] {
        assert_eq!(h.state(p), NodeState::Running, "{p}");
    }
    assert_eq!(h.view("web/c").pid, Some(13));
}

#[test]
fn stop_is_right_to_left_each_child_after_the_one_to_its_right_exited() {
    let mut h = H::new(&[
        "kind: supervisor\nname: web\nchildren:\n  - { name: a, run: x }\n  \
         - name: inner\n    children:\n      - { name: x, run: y }\n      - { name: y, run: y }\n  \
         - { name: c, run: x, stop: { signal: INT, grace: 2s } }\n",
    ]);
    let up = h.start_all();
    let up = h.bring_up(up);
    assert_eq!(
        spawns(&up),
        ["web/a", "web/inner/x", "web/inner/y", "web/c"]
    );
    let steps = h.sup.shutdown(h.now);
    assert_eq!(stops(&steps), ["web/c"], "the rightmost first, alone");
    let Step::Stop {
        policy, start_no, ..
    } = steps
        .iter()
        .find(|s| matches!(s, Step::Stop { .. }))
        .unwrap()
    else {
        unreachable!()
    };
    assert_eq!(
        (policy.signal, policy.grace, *start_no),
        (StopSignal::Int, 2 * S, 1)
    );
    let steps = h.term("web/c");
    assert_eq!(
        stops(&steps),
        ["web/inner/y"],
        "then the nested tree, right to left"
    );
    assert_eq!(
        events(&steps, "web/c")[0],
        LifecycleEvent::Exited {
            status: ExitStatus::Signal(15),
            requested: true
        }
    );
    assert_eq!(stops(&h.term("web/inner/y")), ["web/inner/x"]);
    let steps = h.term("web/inner/x");
    assert_eq!(stops(&steps), ["web/a"]);
    assert_eq!(events(&steps, "web/inner"), [LifecycleEvent::Stopped]);
    assert!(!h.sup.is_idle());
    let steps = h.term("web/a");
    assert!(events(&steps, "web").contains(&LifecycleEvent::Stopped));
    assert!(h.sup.is_idle());
    assert!(
        spawns(&steps).is_empty(),
        "nothing restarts during a shutdown"
    );
}

#[test]
fn several_roots_start_independently_and_stop_last_first() {
    let one =
        "kind: supervisor\nname: a\nchildren:\n  - { name: s, run: x, ready: { notify: true } }\n";
    let two = "kind: supervisor\nname: b\nchildren:\n  - { name: s, run: x }\n";
    let mut h = H::new(&[one, two]);
    assert_eq!(
        spawns(&h.start_all()),
        ["a/s", "b/s"],
        "a root does not wait for another"
    );
    h.started("a/s", 1);
    h.ready("a/s");
    h.started("b/s", 2);
    // Separate trees have no order between them: they stop at once, the shutdown takes
    // the longest tree's stop, not the sum.
    assert_eq!(stops(&h.sup.shutdown(h.now)), ["b/s", "a/s"]);
    assert!(stops(&h.term("b/s")).is_empty());
    assert!(!h.sup.is_idle());
    h.term("a/s");
    assert!(h.sup.is_idle());
}

#[test]
fn inside_a_tree_the_shutdown_still_stops_right_to_left_one_at_a_time() {
    let two = "kind: supervisor\nname: b\nchildren:\n  - { name: s, run: x }\n";
    let mut h = H::new(&[&three("one_for_one"), two]);
    let up = h.start_all();
    for path in spawns(&up) {
        let steps = h.started(&path, 1);
        h.bring_up(steps);
    }
    assert!(
        ["web/a", "web/b", "web/c", "b/s"]
            .iter()
            .all(|p| h.state(p) == NodeState::Running)
    );
    let mut asked = stops(&h.sup.shutdown(h.now));
    asked.sort();
    assert_eq!(
        asked,
        ["b/s", "web/c"],
        "both trees at once, each its last child"
    );
    assert_eq!(stops(&h.term("web/c")), ["web/b"]);
    assert_eq!(stops(&h.term("web/b")), ["web/a"]);
}

#[test]
fn one_for_one_restarts_only_the_crashed_child_after_its_backoff() {
    let mut h = H::new(&[&three("one_for_one")]);
    let up = h.start_all();
    h.bring_up(up);
    h.wait(S);
    let steps = h.exit("web/b", 1);
    assert!(stops(&steps).is_empty() && spawns(&steps).is_empty());
    let (timer, after) = armed(&steps, TimerKind::Backoff);
    assert_eq!(
        (timer.path.as_str(), timer.start_no, after),
        ("web/b", 1, 100 * MS)
    );
    assert_eq!(
        events(&steps, "web/b"),
        [
            LifecycleEvent::Exited {
                status: ExitStatus::Code(1),
                requested: false
            },
            LifecycleEvent::Restarting { after: 100 * MS }
        ]
    );
    assert_eq!(
        h.state("web/b"),
        NodeState::BackingOff {
            until: h.now.after(100 * MS)
        }
    );
    h.wait(100 * MS);
    let steps = h.due(&timer);
    assert_eq!(spawns(&steps), ["web/b"]);
    assert_eq!(h.no("web/b"), 2);
    assert_eq!((h.no("web/a"), h.no("web/c")), (1, 1), "siblings untouched");
    assert_eq!(h.view("web/b").restarts, 1);
    assert_eq!(h.view("web").restarts_in_period, Some(1));
}

#[test]
fn one_for_all_stops_all_in_reverse_then_starts_all_in_order() {
    let mut h = H::new(&[&three("one_for_all")]);
    let up = h.start_all();
    h.bring_up(up);
    let steps = h.exit("web/b", 1);
    assert_eq!(stops(&steps), ["web/c"]);
    let (timer, _) = armed(&steps, TimerKind::Backoff);
    assert_eq!(stops(&h.term("web/c")), ["web/a"]);
    let steps = h.term("web/a");
    assert_eq!(
        spawns(&steps),
        ["web/a"],
        "all stopped: a starts again at once"
    );
    let steps = h.started("web/a", 2);
    assert!(spawns(&steps).is_empty(), "b waits out its backoff");
    h.wait(100 * MS);
    assert_eq!(spawns(&h.due(&timer)), ["web/b"]);
    assert_eq!(spawns(&h.started("web/b", 3)), ["web/c"]);
    h.started("web/c", 4);
    assert_eq!((h.no("web/a"), h.no("web/b"), h.no("web/c")), (2, 2, 2));
    assert_eq!(
        h.view("web").restarts_in_period,
        Some(1),
        "one crash, one restart"
    );
}

#[test]
fn rest_for_one_restarts_the_crashed_child_and_those_after_it() {
    let mut h = H::new(&[&three("rest_for_one")]);
    let up = h.start_all();
    h.bring_up(up);
    let steps = h.exit("web/b", 1);
    assert_eq!(stops(&steps), ["web/c"]);
    let (timer, _) = armed(&steps, TimerKind::Backoff);
    assert!(
        spawns(&h.term("web/c")).is_empty(),
        "b is still backing off"
    );
    assert_eq!(spawns(&h.due(&timer)), ["web/b"]);
    assert_eq!(spawns(&h.started("web/b", 5)), ["web/c"]);
    h.started("web/c", 6);
    assert_eq!((h.no("web/a"), h.no("web/b"), h.no("web/c")), (1, 2, 2));
}

#[test]
fn a_temporary_child_is_never_restarted_not_even_with_its_siblings() {
    let mut h = H::new(&[
        "kind: supervisor\nname: web\nstrategy: one_for_all\nchildren:\n  \
         - { name: a, run: x }\n  - { name: t, run: x, restart: temporary }\n  - { name: c, run: x }\n",
    ]);
    let up = h.start_all();
    h.bring_up(up);
    let steps = h.exit("web/a", 1);
    assert_eq!(stops(&steps), ["web/c"]);
    let (timer, _) = armed(&steps, TimerKind::Backoff);
    assert_eq!(
        stops(&h.term("web/c")),
        ["web/t"],
        "stopped with the others"
    );
    h.term("web/t");
    let steps = h.due(&timer);
    let steps = h.bring_up(steps);
    assert_eq!(spawns(&steps), ["web/a", "web/c"], "t is not started again");
    assert_eq!(h.state("web/t"), NodeState::Stopped);
    // Its own crash does not restart it either.
    let mut h = H::new(&[
        "kind: supervisor\nname: web\nchildren:\n  - { name: t, run: x, restart: temporary }\n",
    ]);
    let up = h.start_all();
    h.bring_up(up);
    let steps = h.exit("web/t", 1);
    assert_eq!(
        events(&steps, "web/t").last(),
        Some(&LifecycleEvent::Stopped)
    );
    assert!(spawns(&steps).is_empty() && !steps.iter().any(|s| matches!(s, Step::Arm { .. })));
    assert_eq!(h.view("web").restarts_in_period, Some(0));
}

#[test]
fn transient_is_restarted_only_after_an_abnormal_exit_of_its_own() {
    let doc = "kind: supervisor\nname: web\nstrategy: one_for_all\nchildren:\n  \
         - { name: a, run: x }\n  - { name: t, run: x, restart: transient }\n";
    let mut h = H::new(&[doc]);
    let up = h.start_all();
    h.bring_up(up);
    let steps = h.exit("web/t", 0);
    assert!(
        stops(&steps).is_empty() && spawns(&steps).is_empty(),
        "exit 0: left stopped"
    );
    assert_eq!(h.state("web/t"), NodeState::Stopped);
    assert_eq!(h.state("web/a"), NodeState::Running, "no strategy applied");

    let mut h = H::new(&[doc]);
    let up = h.start_all();
    h.bring_up(up);
    let steps = h.exit("web/t", 3);
    assert_eq!(stops(&steps), ["web/a"], "abnormal: one_for_all applies");
    // A stop we asked for (SIGTERM) is normal: a, stopped by the strategy, is restarted as
    // a sibling, not counted as a crash of its own.
    let steps = h.term("web/a");
    assert_eq!(spawns(&steps), ["web/a"]);
    assert_eq!(h.view("web/a").restarts, 0);
    assert_eq!(h.view("web/t").restarts, 1);
    // A transient child stopped by a shutdown is not restarted either.
    let mut h = H::new(&[doc]);
    let up = h.start_all();
    h.bring_up(up);
    let down = h.sup.shutdown(h.now);
    let steps = h.stop_through(down);
    assert!(spawns(&steps).is_empty() && h.sup.is_idle());
}

#[test]
fn exceeding_intensity_stops_the_children_and_fails_the_root_visibly() {
    let mut h = H::new(&[
        "kind: supervisor\nname: web\nintensity: 2\nperiod: 10s\nchildren:\n  \
         - { name: a, run: x }\n  - { name: b, run: x, backoff: { initial: 1s } }\n",
    ]);
    let up = h.start_all();
    h.bring_up(up);
    for round in 1..=2 {
        let steps = h.exit("web/b", 1);
        let (timer, _) = armed(&steps, TimerKind::Backoff);
        h.wait(2 * S);
        let steps = h.due(&timer);
        h.bring_up(steps);
        assert_eq!(h.view("web").restarts_in_period, Some(round));
    }
    let steps = h.exit("web/b", 1);
    assert_eq!(
        events(&steps, "web"),
        [LifecycleEvent::GaveUp {
            restarts: 3,
            period: 10 * S
        }]
    );
    let a = events(&steps, "web/a");
    assert_eq!(
        a,
        [LifecycleEvent::Stopping {
            reason: StopReason::GiveUp
        }]
    );
    assert_eq!(
        stops(&steps),
        ["web/a"],
        "the remaining children are stopped"
    );
    assert_eq!(h.state("web"), NodeState::Stopping);
    h.term("web/a");
    assert_eq!(
        h.state("web"),
        NodeState::Failed,
        "the root gave up and shows it"
    );
    assert!(h.sup.is_idle(), "the forest does not restart a root");
    // An operator may start it again: a new incarnation with a clean count.
    let steps = h.sup.start("web", h.now).unwrap();
    assert_eq!(spawns(&steps), ["web/a"]);
    assert_eq!(h.view("web").restarts_in_period, Some(0));
}

#[test]
fn restarts_spread_over_more_than_the_period_do_not_give_up() {
    let mut h = H::new(&[
        "kind: supervisor\nname: web\nintensity: 1\nperiod: 10s\nchildren:\n  \
         - { name: b, run: x }\n",
    ]);
    let up = h.start_all();
    h.bring_up(up);
    for _ in 0..5 {
        let steps = h.exit("web/b", 1);
        let (timer, _) = armed(&steps, TimerKind::Backoff);
        h.wait(11 * S);
        let steps = h.due(&timer);
        h.bring_up(steps);
    }
    assert_eq!(h.state("web"), NodeState::Running);
    assert_eq!(h.view("web/b").restarts, 5);
}

#[test]
fn a_nested_supervisor_that_gives_up_is_restarted_by_its_parent() {
    let mut h = H::new(&[
        "kind: supervisor\nname: web\nstrategy: rest_for_one\nchildren:\n  \
         - { name: a, run: x }\n  - name: inner\n    intensity: 0\n    children:\n      \
         - { name: x, run: y }\n      - { name: y, run: y }\n  - { name: c, run: x }\n",
    ]);
    let up = h.start_all();
    h.bring_up(up);
    // inner may not restart at all: x's crash makes it give up, stopping y.
    let steps = h.exit("web/inner/x", 1);
    assert_eq!(
        events(&steps, "web/inner")[0],
        LifecycleEvent::GaveUp {
            restarts: 1,
            period: 30 * S
        }
    );
    assert_eq!(stops(&steps), ["web/inner/y"]);
    // Then web applies rest_for_one to inner: c is stopped, inner and c start again.
    let steps = h.term("web/inner/y");
    assert_eq!(
        events(&steps, "web/inner").last(),
        Some(&LifecycleEvent::Restarting {
            after: Duration::ZERO
        })
    );
    assert_eq!(stops(&steps), ["web/c"]);
    let steps = h.term("web/c");
    let steps = h.bring_up(steps);
    assert_eq!(spawns(&steps), ["web/inner/x", "web/inner/y", "web/c"]);
    assert_eq!(h.state("web/inner"), NodeState::Running);
    assert_eq!(h.view("web/inner").restarts, 1);
    assert_eq!(h.view("web").restarts_in_period, Some(1));
    assert_eq!(h.no("web/a"), 1, "a is before inner: untouched");
}

#[test]
fn backoff_grows_by_the_multiplier_up_to_max_and_jitter_is_injected() {
    let mut h = H::new(
        &["kind: supervisor\nname: web\nintensity: 100\nchildren:\n  \
         - { name: b, run: x, backoff: { initial: 100ms, max: 350ms, multiplier: 2 } }\n  \
         - { name: j, run: x, backoff: { initial: 100ms, jitter: true } }\n"],
    );
    let up = h.start_all();
    h.bring_up(up);
    let mut delays = Vec::new();
    for _ in 0..4 {
        let steps = h.exit("web/b", 1);
        let (timer, after) = armed(&steps, TimerKind::Backoff);
        delays.push(after);
        h.wait(after);
        let steps = h.due(&timer);
        h.bring_up(steps);
    }
    assert_eq!(delays, [100 * MS, 200 * MS, 350 * MS, 350 * MS]);
    // Jitter spreads a delay over [d/2, d]; the random source gives 0.5 here.
    let (_, after) = armed(&h.exit("web/j", 1), TimerKind::Backoff);
    assert_eq!(after, 75 * MS);
}

#[test]
fn a_service_up_for_stable_after_backs_off_from_initial_again() {
    let mut h = H::new(
        &["kind: supervisor\nname: web\nintensity: 100\nchildren:\n  \
         - { name: b, run: x, stable_after: 10s }\n"],
    );
    let up = h.start_all();
    h.bring_up(up);
    let crash = |h: &mut H, up_for: Duration| {
        h.wait(up_for);
        let (timer, after) = armed(&h.exit("web/b", 1), TimerKind::Backoff);
        h.wait(after);
        let steps = h.due(&timer);
        h.bring_up(steps);
        after
    };
    assert_eq!(crash(&mut h, S), 100 * MS);
    assert_eq!(crash(&mut h, S), 200 * MS);
    assert_eq!(crash(&mut h, S), 400 * MS);
    assert_eq!(crash(&mut h, 10 * S), 100 * MS, "up for 10s: stable");
}

#[test]
fn a_readiness_timeout_counts_as_a_crash() {
    let mut h = H::new(&["kind: supervisor\nname: web\nchildren:\n  \
         - { name: a, run: x, ready: { tcp: \"127.0.0.1:1\", timeout: 2s } }\n  - { name: b, run: x }\n"]);
    let steps = h.start_all();
    let (timer, _) = armed(&steps, TimerKind::ReadyTimeout);
    h.started("web/a", 7);
    h.wait(2 * S);
    let steps = h.due(&timer);
    assert_eq!(events(&steps, "web/a")[0], LifecycleEvent::ReadyTimedOut);
    assert_eq!(stops(&steps), ["web/a"]);
    let steps = h.term("web/a");
    let (_, after) = armed(&steps, TimerKind::Backoff);
    assert_eq!(after, 100 * MS, "restarted after a backoff, like a crash");
    assert_eq!(h.view("web/a").restarts, 1);
    assert_eq!(h.view("web").restarts_in_period, Some(1));
    assert!(spawns(&steps).is_empty(), "b still waits for a to be ready");
    assert_eq!(h.state("web/b"), NodeState::Stopped);
}

#[test]
fn a_service_stopped_by_an_operator_stays_stopped_until_started() {
    let mut h = H::new(&[&three("one_for_all")]);
    let up = h.start_all();
    h.bring_up(up);
    let steps = h.sup.stop("web/b", h.now).unwrap();
    assert_eq!(stops(&steps), ["web/b"]);
    assert!(spawns(&h.term("web/b")).is_empty());
    assert!(h.view("web/b").held);
    // A crash of a sibling restarts everything but b.
    let steps = h.exit("web/a", 1);
    let steps = h.stop_through(steps);
    let (timer, _) = armed(&steps, TimerKind::Backoff);
    let steps = h.due(&timer);
    let steps = h.bring_up(steps);
    assert_eq!(spawns(&steps), ["web/a", "web/c"]);
    assert_eq!(h.state("web/b"), NodeState::Stopped);
    let steps = h.sup.start("web/b", h.now).unwrap();
    assert_eq!(spawns(&steps), ["web/b"]);
    assert!(!h.view("web/b").held);
}

#[test]
fn an_operator_stop_of_a_subtree_holds_the_supervisor() {
    let mut h = H::new(&[
        "kind: supervisor\nname: web\nchildren:\n  - { name: a, run: x }\n  \
         - name: inner\n    children:\n      - { name: x, run: y }\n      - { name: y, run: y }\n",
    ]);
    let up = h.start_all();
    h.bring_up(up);
    let steps = h.sup.stop("web/inner", h.now).unwrap();
    let steps = h.stop_through(steps);
    assert_eq!(stops(&steps), ["web/inner/y", "web/inner/x"]);
    assert!(spawns(&steps).is_empty());
    assert_eq!(h.state("web/inner"), NodeState::Stopped);
    assert_eq!(h.state("web"), NodeState::Running);
    // Starting a service below a held supervisor starts the supervisor for that service
    // only: its sibling stays down, now held in its own right, and each change is recorded.
    let steps = h.sup.start("web/inner/y", h.now).unwrap();
    assert_eq!(events(&steps, "web/inner")[0], LifecycleEvent::Released);
    assert_eq!(events(&steps, "web/inner/x"), [LifecycleEvent::Held]);
    assert_eq!(spawns(&h.bring_up(steps)), ["web/inner/y"]);
    assert!(h.view("web/inner/x").held && !h.view("web/inner").held);
    assert_eq!(h.state("web/inner"), NodeState::Running);
    assert_eq!(h.state("web/inner/x"), NodeState::Stopped);
    // Started in its turn, x comes back as well.
    let steps = h.sup.start("web/inner/x", h.now).unwrap();
    assert_eq!(events(&steps, "web/inner/x")[0], LifecycleEvent::Released);
    assert_eq!(spawns(&steps), ["web/inner/x"]);
}

#[test]
fn a_hold_is_kept_by_path_when_its_node_is_removed_and_comes_back() {
    let mut h = H::new(&[&web(&format!("{A}{B}{C}"))]);
    let up = h.start_all();
    h.bring_up(up);
    let steps = h.sup.stop("web/b", h.now).unwrap();
    assert_eq!(events(&steps, "web/b")[0], LifecycleEvent::Held);
    h.term("web/b");
    h.reload(&[&web(&format!("{A}{C}"))]);
    assert_eq!(h.paths(), ["web", "web/a", "web/c"]);
    let steps = h.reload(&[&web(&format!("{A}{B}{C}"))]);
    assert!(spawns(&steps).is_empty(), "{steps:#?}");
    assert!(h.view("web/b").held);
    // The whole root too.
    let steps = h.sup.stop("web", h.now).unwrap();
    let steps = h.stop_through(steps);
    assert!(spawns(&steps).is_empty());
    assert_eq!(h.state("web"), NodeState::Stopped);
    let steps = h.reload(&[]);
    let steps = h.stop_through(steps);
    assert!(spawns(&steps).is_empty());
    let steps = h.reload(&[&web(&format!("{A}{B}{C}"))]);
    assert!(spawns(&steps).is_empty(), "{steps:#?}");
    assert!(h.view("web").held && h.view("web/b").held);
}

#[test]
fn restored_holds_apply_without_being_recorded_again() {
    let mut h = H::new(&[&three("one_for_one")]);
    h.sup
        .restore_holds(["web/b".to_string(), "web/gone".to_string()]);
    let up = h.start_all();
    assert!(
        !up.iter()
            .any(|s| matches!(s, Step::Record(l) if l.event == LifecycleEvent::Held)),
        "{up:#?}"
    );
    let steps = h.bring_up(up);
    assert_eq!(spawns(&steps), ["web/a", "web/c"]);
    assert!(h.view("web/b").held);
    // A held path that has no node yet is held once a reload brings one.
    let doc = three("one_for_one").replace(
        "name: c, run: x }",
        "name: c, run: x }\n  - { name: gone, run: x }",
    );
    let steps = h.reload(&[&doc]);
    assert!(spawns(&steps).is_empty(), "{steps:#?}");
    assert!(h.view("web/gone").held);
}

#[test]
fn an_operator_restart_of_a_held_service_records_the_release() {
    let mut h = H::new(&[&three("one_for_one")]);
    let up = h.start_all();
    h.bring_up(up);
    h.sup.stop("web/b", h.now).unwrap();
    h.term("web/b");
    let steps = h.sup.restart("web/b", h.now).unwrap();
    assert_eq!(events(&steps, "web/b")[0], LifecycleEvent::Released);
    assert_eq!(spawns(&steps), ["web/b"]);
    // Not held: a restart of one that is not records no release.
    let steps = h.sup.restart("web/a", h.now).unwrap();
    assert!(!events(&steps, "web/a").contains(&LifecycleEvent::Released));
}

/// `web` with a flaky first child that backs off 20 s and two more.
fn flaky_first(strategy: &str) -> String {
    format!(
        "kind: supervisor\nname: web\nstrategy: {strategy}\nintensity: 100\nchildren:\n  \
         - {{ name: a, run: x, backoff: {{ initial: 20s, max: 20s }} }}\n  \
         - {{ name: b, run: x }}\n  - {{ name: c, run: x }}\n"
    )
}

#[test]
fn a_one_for_one_restart_does_not_wait_for_a_sibling_backing_off() {
    let mut h = H::new(&[&flaky_first("one_for_one")]);
    let up = h.start_all();
    h.bring_up(up);
    h.wait(S);
    let (slow, after) = armed(&h.exit("web/a", 1), TimerKind::Backoff);
    assert_eq!(after, 20 * S);
    let (timer, after) = armed(&h.exit("web/c", 1), TimerKind::Backoff);
    assert_eq!(after, 100 * MS);
    h.wait(100 * MS);
    assert_eq!(spawns(&h.due(&timer)), ["web/c"], "c does not wait for a");
    h.started("web/c", 7);
    assert_eq!(h.state("web/c"), NodeState::Running);
    // An operator restart does not wait either.
    let steps = h.sup.restart("web/b", h.now).unwrap();
    assert_eq!(spawns(&h.term("web/b")), ["web/b"], "{steps:#?}");
    h.wait(20 * S);
    assert_eq!(spawns(&h.due(&slow)), ["web/a"]);
}

#[test]
fn a_rest_for_one_restart_waits_only_for_the_children_it_restarts() {
    let mut h = H::new(&[
        "kind: supervisor\nname: web\nstrategy: rest_for_one\nintensity: 100\n\
         children:\n  - { name: a, run: x, ready: { log: up, timeout: 60s } }\n  \
         - { name: b, run: x }\n  - { name: c, run: x }\n",
    ]);
    let up = h.start_all();
    h.bring_up(up);
    h.wait(S);
    // An operator stops a and starts it again: it is slow to be ready.
    h.sup.stop("web/a", h.now).unwrap();
    h.term("web/a");
    assert_eq!(spawns(&h.sup.start("web/a", h.now).unwrap()), ["web/a"]);
    h.started("web/a", 9);
    assert_eq!(h.state("web/a"), NodeState::Starting);
    // b crashes meanwhile: b and c are restarted, in order, without waiting for a.
    let steps = h.exit("web/b", 1);
    let steps = h.stop_through(steps);
    let (timer, _) = armed(&steps, TimerKind::Backoff);
    h.wait(100 * MS);
    let steps = h.due(&timer);
    assert_eq!(spawns(&steps), ["web/b"], "b does not wait for a");
    assert_eq!(spawns(&h.started("web/b", 10)), ["web/c"], "c waits for b");
    assert_eq!(h.state("web/a"), NodeState::Starting);
}

#[test]
fn an_operator_restart_is_immediate_and_not_counted() {
    let mut h = H::new(&[&three("one_for_one")]);
    let up = h.start_all();
    h.bring_up(up);
    let steps = h.sup.restart("web/b", h.now).unwrap();
    assert_eq!(stops(&steps), ["web/b"]);
    assert_eq!(
        events(&steps, "web/b"),
        [LifecycleEvent::Stopping {
            reason: StopReason::Restart
        }]
    );
    let steps = h.term("web/b");
    assert_eq!(spawns(&steps), ["web/b"]);
    h.bring_up(steps);
    assert_eq!(h.view("web").restarts_in_period, Some(0));
    // A whole tree: stopped right to left, started left to right.
    let steps = h.sup.restart("web", h.now).unwrap();
    let steps = h.stop_through(steps);
    assert_eq!(stops(&steps), ["web/c", "web/b", "web/a"]);
    let steps = h.bring_up(steps);
    assert_eq!(spawns(&steps), ["web/a", "web/b", "web/c"]);
    assert_eq!(h.no("web"), 2);
}

#[test]
fn any_significant_child_ending_shuts_the_supervisor_down() {
    let mut h = H::new(&[
        "kind: supervisor\nname: web\nauto_shutdown: any_significant\nchildren:\n  \
         - { name: a, run: x }\n  - { name: job, run: x, restart: transient, significant: true }\n",
    ]);
    let up = h.start_all();
    h.bring_up(up);
    let steps = h.exit("web/job", 0);
    assert!(events(&steps, "web").contains(&LifecycleEvent::AutoShutdown));
    assert_eq!(stops(&steps), ["web/a"]);
    h.term("web/a");
    assert_eq!(
        h.state("web"),
        NodeState::Stopped,
        "a normal end, not a failure"
    );
}

#[test]
fn all_significant_waits_for_every_significant_child() {
    let mut h = H::new(&[
        "kind: supervisor\nname: web\nauto_shutdown: all_significant\nchildren:\n  \
         - { name: a, run: x }\n  - { name: j1, run: x, restart: temporary, significant: true }\n  \
         - { name: j2, run: x, restart: temporary, significant: true }\n",
    ]);
    let up = h.start_all();
    h.bring_up(up);
    let steps = h.exit("web/j1", 1);
    assert!(stops(&steps).is_empty(), "j2 still runs");
    let steps = h.exit("web/j2", 0);
    assert_eq!(stops(&steps), ["web/a"]);
    h.term("web/a");
    assert_eq!(h.state("web"), NodeState::Stopped);
}

#[test]
fn late_facts_about_an_old_start_are_ignored() {
    let mut h = H::new(&[&three("one_for_one")]);
    let up = h.start_all();
    h.bring_up(up);
    let (timer, _) = armed(&h.exit("web/b", 1), TimerKind::Backoff);
    h.due(&timer);
    h.started("web/b", 9);
    assert_eq!(h.no("web/b"), 2);
    let now = h.now;
    assert!(
        h.sup
            .child_exited("web/b", 1, ExitStatus::Code(1), now)
            .unwrap()
            .is_empty()
    );
    assert!(h.sup.child_ready("web/b", 1, now).unwrap().is_empty());
    assert!(
        h.sup
            .child_started("web/b", 1, Some(5), now)
            .unwrap()
            .is_empty()
    );
    assert!(
        h.sup.timer_due(&timer, now).unwrap().is_empty(),
        "a stale backoff"
    );
    let stale = Timer {
        path: "web/b".into(),
        start_no: 1,
        kind: TimerKind::ReadyTimeout,
    };
    assert!(h.sup.timer_due(&stale, now).unwrap().is_empty());
    assert_eq!(
        (h.state("web/b"), h.view("web/b").pid),
        (NodeState::Running, Some(9))
    );
    // A backoff cut short by an operator stop does not fire later.
    let (timer, _) = armed(&h.exit("web/b", 1), TimerKind::Backoff);
    h.sup.stop("web/b", now).unwrap();
    assert!(h.sup.timer_due(&timer, now).unwrap().is_empty());
    assert_eq!(h.state("web/b"), NodeState::Stopped);
}

#[test]
fn a_failed_spawn_is_a_crash() {
    let mut h = H::new(&[&three("one_for_one")]);
    h.start_all();
    let now = h.now;
    let steps = h
        .sup
        .child_exited(
            "web/a",
            1,
            ExitStatus::SpawnFailed("no such file".into()),
            now,
        )
        .unwrap();
    let (_, after) = armed(&steps, TimerKind::Backoff);
    assert_eq!(after, 100 * MS);
    assert_eq!(
        h.view("web/a").last_exit,
        Some(ExitStatus::SpawnFailed("no such file".into()))
    );
}

#[test]
fn a_held_service_is_not_started_by_start_all() {
    let mut h = H::new(&[&three("one_for_one")]);
    h.sup.stop("web/b", h.now).unwrap();
    let up = h.start_all();
    let steps = h.bring_up(up);
    assert_eq!(spawns(&steps), ["web/a", "web/c"]);
    assert_eq!(h.state("web"), NodeState::Running);
}

#[test]
fn view_shows_the_tree_in_order_and_everything_serializes() {
    let mut h = H::new(&[
        "kind: supervisor\nname: web\nintensity: 7\nchildren:\n  - { name: a, run: x }\n  \
         - name: inner\n    children:\n      - { name: x, run: y }\n",
    ]);
    let up = h.start_all();
    let steps = h.bring_up(up);
    h.wait(3 * S);
    let view = h.sup.view(h.now);
    let paths: Vec<(&str, usize)> = view.iter().map(|v| (v.path.as_str(), v.depth)).collect();
    assert_eq!(
        paths,
        [
            ("web", 0),
            ("web/a", 1),
            ("web/inner", 1),
            ("web/inner/x", 2)
        ]
    );
    let web = &view[0];
    assert_eq!(
        (web.kind, web.intensity, web.restarts_in_period),
        (NodeKind::Supervisor, Some(7), Some(0))
    );
    let a = &view[1];
    assert_eq!(
        (a.kind, a.pid, a.since),
        (NodeKind::Service, Some(100), Some(At::default()))
    );
    assert_eq!(h.now.since(a.since.unwrap()), 3 * S, "uptime");
    let json = serde_json::to_string(&(&steps, &view)).unwrap();
    let back: (Vec<Step>, Vec<NodeView>) = serde_json::from_str(&json).unwrap();
    assert_eq!(back, (steps, view));
}

#[test]
fn unknown_paths_and_supervisors_as_services_are_refused() {
    let mut h = H::new(&[&three("one_for_one")]);
    let now = h.now;
    assert_eq!(
        h.sup.stop("web/nope", now),
        Err(SupervisionError::UnknownPath("web/nope".into()))
    );
    assert_eq!(
        h.sup.start("", now),
        Err(SupervisionError::UnknownPath(String::new()))
    );
    assert_eq!(
        h.sup.child_started("web", 1, Some(1), now),
        Err(SupervisionError::NotAService("web".into()))
    );
    assert!(h.sup.service("web/a").is_some() && h.sup.service("web").is_none());
}

// ---- hot reload ------------------------------------------------------------------------

fn web(children: &str) -> String {
    format!("kind: supervisor\nname: web\nintensity: 100\nchildren:\n{children}")
}

const A: &str = "  - { name: a, run: x }\n";
const B: &str = "  - { name: b, run: x, stop: { signal: INT, grace: 2s } }\n";
const C: &str = "  - { name: c, run: x }\n";

#[test]
fn reload_leaves_unchanged_children_alone_counters_included() {
    let doc = web(&format!("{A}{B}{C}"));
    let mut h = H::new(&[&doc]);
    let up = h.start_all();
    h.bring_up(up);
    let (timer, _) = armed(&h.exit("web/b", 1), TimerKind::Backoff);
    h.wait(S);
    h.due(&timer);
    h.started("web/b", 7);
    let before = h.sup.view(h.now);
    let steps = h.reload(&[&doc]);
    assert!(
        spawns(&steps).is_empty() && stops(&steps).is_empty(),
        "{steps:#?}"
    );
    assert_eq!(h.sup.view(h.now), before, "same runs, pids, restarts");
    assert_eq!(h.view("web/b").restarts, 1);
    assert_eq!(h.view("web").restarts_in_period, Some(1));
}

#[test]
fn reload_restarts_a_changed_service_alone_with_its_old_stop_then_the_new_spec() {
    let mut h = H::new(&[&web(&format!("{A}{B}{C}"))]);
    let up = h.start_all();
    h.bring_up(up);
    let changed = "  - { name: b, run: y }\n";
    let steps = h.reload(&[&web(&format!("{A}{changed}{C}"))]);
    assert_eq!(stops(&steps), ["web/b"]);
    assert!(spawns(&steps).is_empty());
    let policy = steps.iter().find_map(|s| match s {
        Step::Stop { policy, .. } => Some(*policy),
        _ => None,
    });
    assert_eq!(
        policy.map(|p| (p.signal, p.grace)),
        Some((StopSignal::Int, 2 * S)),
        "the stop policy of the run being stopped"
    );
    assert!(events(&steps, "web/b").contains(&LifecycleEvent::Stopping {
        reason: StopReason::Reload
    }));
    let steps = h.term("web/b");
    assert_eq!(spawns(&steps), ["web/b"]);
    assert_eq!(h.no("web/b"), 2);
    assert_eq!((h.no("web/a"), h.no("web/c")), (1, 1), "siblings untouched");
    let spec = h.sup.service("web/b").unwrap();
    assert_eq!(
        spec.stop.signal,
        StopSignal::Term,
        "the new spec is spawned"
    );
    assert_eq!(h.view("web/b").restarts, 0, "a reload is not a crash");
    h.started("web/b", 8);
    assert_eq!(h.state("web/b"), NodeState::Running);
    // Its next stop uses the new policy.
    let steps = h.sup.stop("web/b", h.now).unwrap();
    let policy = steps.iter().find_map(|s| match s {
        Step::Stop { policy, .. } => Some(*policy),
        _ => None,
    });
    assert_eq!(policy.map(|p| p.signal), Some(StopSignal::Term));
}

#[test]
fn reload_stops_a_removed_child_shows_it_stopping_then_forgets_it() {
    let mut h = H::new(&[&web(&format!("{A}{B}{C}"))]);
    let up = h.start_all();
    h.bring_up(up);
    let steps = h.reload(&[&web(&format!("{A}{C}"))]);
    assert_eq!(stops(&steps), ["web/b"]);
    assert!(spawns(&steps).is_empty());
    assert_eq!(h.state("web/b"), NodeState::Stopping);
    assert_eq!(h.paths(), ["web", "web/a", "web/c", "web/b"]);
    assert_eq!(
        h.sup.stop("web/b", h.now),
        Err(SupervisionError::UnknownPath("web/b".into())),
        "no operator command on a removed node"
    );
    let steps = h.term("web/b");
    assert!(spawns(&steps).is_empty(), "not restarted");
    assert_eq!(h.paths(), ["web", "web/a", "web/c"]);
    assert!(h.sup.node("web/b", h.now).is_none());
    // The remaining children are in their new places: c crashing restarts c.
    let (timer, _) = armed(&h.exit("web/c", 1), TimerKind::Backoff);
    h.wait(S);
    assert_eq!(spawns(&h.due(&timer)), ["web/c"]);
    assert_eq!(h.no("web/a"), 1);
}

#[test]
fn reload_starts_a_new_child_in_its_place_once_its_left_sibling_is_ready() {
    let slow = "  - { name: a, run: x, ready: { log: up, timeout: 5s } }\n";
    let mut h = H::new(&[&web(&format!("{slow}{B}"))]);
    assert_eq!(spawns(&h.start_all()), ["web/a"]);
    h.started("web/a", 1);
    // Mid-start, n comes between a (not ready yet) and b.
    let n = "  - { name: n, run: x }\n";
    let steps = h.reload(&[&web(&format!("{slow}{n}{B}"))]);
    assert!(spawns(&steps).is_empty(), "a is not ready: n waits");
    assert_eq!(h.paths(), ["web", "web/a", "web/n", "web/b"]);
    assert_eq!(spawns(&h.ready("web/a")), ["web/n"]);
    assert_eq!(spawns(&h.started("web/n", 2)), ["web/b"]);
    let steps = h.started("web/b", 3);
    assert_eq!(events(&steps, "web"), [LifecycleEvent::Ready]);
    // Up and running: a new last child starts right away.
    let steps = h.reload(&[&web(&format!("{slow}{n}{B}{C}"))]);
    assert_eq!(spawns(&steps), ["web/c"]);
    assert!(stops(&steps).is_empty());
    assert_eq!((h.no("web/a"), h.no("web/n"), h.no("web/b")), (1, 1, 1));
}

#[test]
fn reload_takes_a_new_strategy_and_intensity_without_restarts() {
    let mut h = H::new(&[&three("one_for_one")]);
    let up = h.start_all();
    h.bring_up(up);
    let doc = three("one_for_all").replace("intensity: 100", "intensity: 7");
    let steps = h.reload(&[&doc]);
    assert!(
        spawns(&steps).is_empty() && stops(&steps).is_empty(),
        "{steps:#?}"
    );
    assert_eq!(h.view("web").intensity, Some(7));
    assert_eq!(h.state("web"), NodeState::Running);
    // The new strategy applies to the next crash.
    assert_eq!(stops(&h.exit("web/b", 1)), ["web/c"]);
}

#[test]
fn reload_stops_a_removed_root_tree_right_to_left_and_leaves_the_others() {
    let nested = "kind: supervisor\nname: web\nchildren:\n  - { name: a, run: x }\n  \
         - name: inner\n    children:\n      - { name: x, run: y }\n      - { name: y, run: y }\n  \
         - { name: c, run: x }\n";
    let other = "kind: supervisor\nname: db\nchildren:\n  - { name: pg, run: x }\n";
    let mut h = H::new(&[nested]);
    let up = h.start_all();
    h.bring_up(up);
    // A new root starts on its own.
    let steps = h.reload(&[nested, other]);
    assert_eq!(spawns(&steps), ["db/pg"]);
    h.bring_up(steps);
    assert_eq!(h.state("db"), NodeState::Running);
    let steps = h.reload(&[other]);
    assert_eq!(
        stops(&steps),
        ["web/c"],
        "the last child of the removed root first"
    );
    assert_eq!(h.state("web"), NodeState::Stopping);
    assert_eq!(stops(&h.term("web/c")), ["web/inner/y"]);
    assert_eq!(stops(&h.term("web/inner/y")), ["web/inner/x"]);
    assert_eq!(stops(&h.term("web/inner/x")), ["web/a"]);
    assert!(h.paths().contains(&"web/a".to_string()));
    let steps = h.term("web/a");
    assert!(events(&steps, "web").contains(&LifecycleEvent::Stopped));
    assert!(spawns(&steps).is_empty());
    assert_eq!(h.paths(), ["db", "db/pg"]);
    assert_eq!(h.no("db/pg"), 1);
    // A root added back is a new root and starts.
    assert_eq!(spawns(&h.reload(&[nested, other])), ["web/a"]);
}

#[test]
fn reload_keeps_an_operator_hold_on_changed_and_unchanged_children() {
    let mut h = H::new(&[&web(&format!("{A}{B}{C}"))]);
    let up = h.start_all();
    h.bring_up(up);
    h.sup.stop("web/a", h.now).unwrap();
    h.term("web/a");
    h.sup.stop("web/b", h.now).unwrap();
    h.term("web/b");
    let changed = "  - { name: b, run: y }\n";
    let steps = h.reload(&[&web(&format!("{A}{changed}{C}"))]);
    assert!(
        spawns(&steps).is_empty() && stops(&steps).is_empty(),
        "{steps:#?}"
    );
    for p in ["web/a", "web/b"] {
        assert!(h.view(p).held, "{p}");
        assert_eq!(h.state(p), NodeState::Stopped, "{p}");
    }
    // Started by the operator, b runs the new spec.
    assert_eq!(spawns(&h.sup.start("web/b", h.now).unwrap()), ["web/b"]);
    assert_eq!(
        h.sup.service("web/b").unwrap().stop.signal,
        StopSignal::Term
    );
}

#[test]
fn reload_while_backing_off_keeps_the_backoff_unless_the_service_changed() {
    let mut h = H::new(&[&web(&format!("{A}{B}{C}"))]);
    let up = h.start_all();
    h.bring_up(up);
    let (timer, _) = armed(&h.exit("web/b", 1), TimerKind::Backoff);
    // Unchanged: still backing off, restarted when the timer is due.
    let steps = h.reload(&[&web(&format!("{A}{B}{C}"))]);
    assert!(spawns(&steps).is_empty() && stops(&steps).is_empty());
    assert!(matches!(h.state("web/b"), NodeState::BackingOff { .. }));
    h.wait(S);
    assert_eq!(spawns(&h.due(&timer)), ["web/b"]);
    h.started("web/b", 5);
    // Crashes again; changed meanwhile: started afresh with the new spec, no wait.
    let (timer, _) = armed(&h.exit("web/b", 1), TimerKind::Backoff);
    let changed = "  - { name: b, run: y }\n";
    let steps = h.reload(&[&web(&format!("{A}{changed}{C}"))]);
    assert_eq!(spawns(&steps), ["web/b"]);
    assert_eq!(h.no("web/b"), 3);
    h.wait(S);
    assert!(
        h.due(&timer).is_empty(),
        "the old backoff no longer applies"
    );
    // Removed while backing off: stopped and forgotten at once; its timer is ignored.
    h.started("web/b", 6);
    let (timer, _) = armed(&h.exit("web/b", 1), TimerKind::Backoff);
    let steps = h.reload(&[&web(&format!("{A}{C}"))]);
    assert_eq!(events(&steps, "web/b"), [LifecycleEvent::Stopped]);
    assert_eq!(h.paths(), ["web", "web/a", "web/c"]);
    h.wait(S);
    assert!(h.due(&timer).is_empty());
}

#[test]
fn reload_turns_a_service_into_a_supervisor_once_it_is_down() {
    let mut h = H::new(&[&web(&format!("{A}{B}{C}"))]);
    let up = h.start_all();
    h.bring_up(up);
    let tree = "  - name: b\n    children:\n      - { name: x, run: y }\n";
    let steps = h.reload(&[&web(&format!("{A}{tree}{C}"))]);
    assert_eq!(stops(&steps), ["web/b"]);
    let steps = h.term("web/b");
    assert_eq!(spawns(&steps), ["web/b/x"]);
    assert_eq!(h.view("web/b").kind, NodeKind::Supervisor);
    h.started("web/b/x", 9);
    assert_eq!(h.state("web/b"), NodeState::Running);
    assert_eq!(h.paths(), ["web", "web/a", "web/b", "web/b/x", "web/c"]);
    // And back: the tree is stopped, then b is a service again.
    let steps = h.reload(&[&web(&format!("{A}{B}{C}"))]);
    assert_eq!(stops(&steps), ["web/b/x"]);
    assert_eq!(spawns(&h.term("web/b/x")), ["web/b"]);
    assert_eq!(h.paths(), ["web", "web/a", "web/b", "web/c"]);
    assert!(h.sup.node("web/b/x", h.now).is_none());
}

#[test]
fn reload_of_a_nested_supervisor_restarts_only_its_changed_child() {
    let doc = |y: &str| {
        format!(
            "kind: supervisor\nname: web\nchildren:\n  - {{ name: a, run: x }}\n  \
             - name: inner\n    children:\n      - {{ name: x, run: y }}\n      \
             - {{ name: y, run: {y} }}\n"
        )
    };
    let mut h = H::new(&[&doc("y")]);
    let up = h.start_all();
    h.bring_up(up);
    let steps = h.reload(&[&doc("z")]);
    assert_eq!(stops(&steps), ["web/inner/y"]);
    assert_eq!(spawns(&h.term("web/inner/y")), ["web/inner/y"]);
    assert_eq!(h.no("web/inner/x"), 1);
    assert_eq!(
        h.no("web/inner"),
        1,
        "the nested supervisor is not restarted"
    );
}

#[test]
fn reload_of_a_changed_root_that_gave_up_starts_it_again_and_an_unchanged_one_stays_down() {
    let crashy = "kind: supervisor\nname: web\nintensity: 0\nchildren:\n  - { name: a, run: x }\n";
    let mut h = H::new(&[crashy]);
    let up = h.start_all();
    h.bring_up(up);
    h.exit("web/a", 1);
    assert_eq!(h.state("web"), NodeState::Failed);
    assert!(spawns(&h.reload(&[crashy])).is_empty(), "nothing changed");
    assert_eq!(h.state("web"), NodeState::Failed);
    let fixed = crashy.replace("run: x", "run: y");
    let steps = h.reload(&[&fixed]);
    assert_eq!(spawns(&steps), ["web/a"], "the fixed file is tried again");
    assert_eq!(h.view("web").restarts_in_period, Some(0));
    h.bring_up(steps);
    assert_eq!(h.state("web"), NodeState::Running);
}

#[test]
fn reload_of_a_changed_nested_supervisor_that_gave_up_under_a_failed_root_starts_the_tree() {
    let doc = |run: &str| {
        format!(
            "kind: supervisor\nname: web\nintensity: 0\nchildren:\n  - {{ name: a, run: x }}\n  \
             - name: inner\n    intensity: 0\n    children:\n      - {{ name: w, run: \"{run}\" }}\n"
        )
    };
    let mut h = H::new(&[&doc("x")]);
    let up = h.start_all();
    h.bring_up(up);
    let steps = h.exit("web/inner/w", 1);
    h.stop_through(steps);
    assert_eq!(h.state("web"), NodeState::Failed);
    let steps = h.reload(&[&doc("y")]);
    assert_eq!(spawns(&steps), ["web/a"]);
    h.bring_up(steps);
    assert_eq!(h.state("web/inner/w"), NodeState::Running);
}

#[test]
fn reload_starts_a_changed_service_that_had_ended_but_not_a_held_one() {
    let doc = |run: &str| {
        web(&format!(
            "  - {{ name: a, run: {run}, restart: temporary }}\n  - {{ name: b, run: {run} }}\n"
        ))
    };
    let mut h = H::new(&[&doc("x")]);
    let up = h.start_all();
    h.bring_up(up);
    h.exit("web/a", 0);
    assert_eq!(h.state("web/a"), NodeState::Stopped);
    let steps = h.sup.stop("web/b", h.now).unwrap();
    h.stop_through(steps);
    assert!(spawns(&h.reload(&[&doc("x")])).is_empty());
    let steps = h.reload(&[&doc("y")]);
    assert_eq!(spawns(&steps), ["web/a"], "the held one stays stopped");
    assert_eq!(h.no("web/a"), 2);
    assert_eq!(h.state("web/b"), NodeState::Stopped);
}

#[test]
fn reloads_that_add_and_remove_children_reuse_the_slots_of_forgotten_ones() {
    let mut h = H::new(&[&web(A)]);
    let up = h.start_all();
    h.bring_up(up);
    let mut most = 0;
    for i in 0..50 {
        let steps = h.reload(&[&web(&format!("{A}  - {{ name: n{i}, run: x }}\n"))]);
        let steps = h.bring_up(steps);
        h.stop_through(steps);
        most = most.max(h.sup.slots());
    }
    let steps = h.reload(&[&web(A)]);
    h.stop_through(steps);
    assert_eq!(h.paths(), ["web", "web/a"]);
    assert!(most <= 6, "the tree grew to {most} slots over 50 reloads");
}

#[test]
fn start_numbers_continue_those_of_an_earlier_principal_and_of_a_child_brought_back() {
    let mut h = H::new(&[&web(&format!("{A}{B}"))]);
    h.sup
        .continue_starts([("web/a".to_string(), 7), ("web".to_string(), 3)]);
    let up = h.start_all();
    h.bring_up(up);
    assert_eq!(h.no("web/a"), 8, "after the earlier principal's 7");
    assert_eq!(h.no("web/b"), 1);
    assert_eq!(h.no("web"), 4);
    let steps = h.reload(&[&web(A)]);
    h.stop_through(steps);
    let steps = h.reload(&[&web(&format!("{A}{B}"))]);
    assert_eq!(spawns(&steps), ["web/b"]);
    assert_eq!(
        h.no("web/b"),
        2,
        "a child brought back is not numbered 1 again"
    );
}

#[test]
fn reload_stops_removed_siblings_one_at_a_time_right_to_left() {
    let mut h = H::new(&[&web(&format!("{A}{B}{C}"))]);
    let up = h.start_all();
    h.bring_up(up);
    let steps = h.reload(&[&web(A)]);
    assert_eq!(stops(&steps), ["web/c"], "the rightmost first, alone");
    assert_eq!(stops(&h.term("web/c")), ["web/b"], "then the next");
    let steps = h.term("web/b");
    assert!(stops(&steps).is_empty() && spawns(&steps).is_empty());
    assert_eq!(h.paths(), ["web", "web/a"]);
    assert_eq!(h.no("web/a"), 1, "the one kept was left alone");
}
