//! Commands notice a principal that died or does not answer, and a principal and readers of
//! the history file starting at the same time do not trip over each other's file lock.

use std::io::Read;
use std::process::{Child, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::project::{Project, Stopped, eventually, signal, text};

/// Starts `opsconsole principal` and waits until it listens.
fn start_principal(p: &Project) -> Stopped {
    let mut child = p.spawn(&["principal", "--kill-grace", "1s"]);
    let up = eventually(Duration::from_secs(60), || {
        p.socket().exists() || child.try_wait().ok().flatten().is_some()
    });
    if !up || !p.socket().exists() {
        let out = child.wait_with_output().expect("principal ended");
        panic!("the principal did not start: {}", text(&out.stderr));
    }
    Stopped(child)
}

/// Waits for `child` to end within `limit`; `None` (and the child killed) if it does not.
fn wait_bounded(mut child: Child, limit: Duration) -> Option<Output> {
    let ended = eventually(limit, || child.try_wait().ok().flatten().is_some());
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    child.wait_with_output().ok()
}

const SLOW: &str =
    "kind: workflow\nname: slow\ntasks:\n  t: { run: \"echo started; touch ready; sleep 60\" }\n";

#[test]
fn logs_follow_ends_with_an_error_when_the_principal_is_killed() {
    let p = Project::new(&[("slow.yaml", SLOW)]);
    let mut principal = start_principal(&p);
    assert!(p.run(&["run", "slow"]).status.success());
    assert!(eventually(Duration::from_secs(30), || p
        .path()
        .join("ready")
        .exists()));
    let mut follower = p.spawn(&["logs", "1", "--follow"]);
    // Following for real: the stored line has been printed.
    let mut stdout = follower.stdout.take().expect("stdout");
    let (tx, printed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(text(&buf[..n])).is_err() {
                break;
            }
        }
    });
    let first = printed
        .recv_timeout(Duration::from_secs(30))
        .expect("`logs --follow` printed the stored line");
    assert!(first.contains("started"), "{first}");
    let pid = principal.0.id();
    signal(pid, Signal::SIGKILL).expect("kill -9");
    let _ = principal.0.wait();
    let out = wait_bounded(follower, Duration::from_secs(60))
        .expect("`logs --follow` still waits for a principal that was killed");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("lost the principal (pid {pid})")),
        "{err}"
    );
}

#[test]
fn a_principal_that_does_not_answer_is_reported_as_such() {
    let p = Project::new(&[("slow.yaml", SLOW)]);
    let principal = start_principal(&p);
    let pid = principal.0.id();
    signal(pid, Signal::SIGSTOP).expect("stop");
    for args in [&["status"][..], &["run", "slow"], &["history"]] {
        let out = wait_bounded(
            p.cmd(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn"),
            Duration::from_secs(60),
        )
        .unwrap_or_else(|| panic!("`{}` hangs on a stopped principal", args.join(" ")));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!("a principal (pid {pid}) is running"))
                && err.contains("not answering"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("no principal is running"), "{args:?}: {err}");
        assert!(
            !err.contains("another opsconsole process"),
            "{args:?}: {err}"
        );
    }
    signal(pid, Signal::SIGCONT).expect("continue");
    let out = p.run(&["status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("principal pid {pid}")));
    drop(principal);
}

#[test]
fn a_principal_starts_while_history_reads_the_file_in_a_loop() {
    let p = Project::new(&[(
        "quick.yaml",
        "kind: workflow\nname: quick\ntasks:\n  t: { run: \"echo hi\" }\n",
    )]);
    let first = p.run(&["run", "quick", "--wait"]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let p = Arc::new(p);
    for round in 0..5 {
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (p, stop) = (p.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let mut runs = 0;
                while !stop.load(Ordering::Relaxed) {
                    let out = p.run(&["history"]);
                    runs += 1;
                    if !out.status.success() {
                        failures.push(text(&out.stderr));
                    }
                }
                (runs, failures)
            })
        };
        // Let the loop get going, so the principal meets a reader holding the file.
        std::thread::sleep(Duration::from_millis(150));
        let principal = start_principal(&p);
        // A few more reads through the principal.
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let (runs, failures) = reader.join().expect("reader thread");
        assert!(runs > 0);
        assert!(
            failures.is_empty(),
            "round {round}: {} of {runs} `history` failed: {failures:?}",
            failures.len()
        );
        let mut principal = principal;
        signal(principal.0.id(), Signal::SIGTERM).expect("stop");
        let status = principal.0.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "round {round}");
    }
}
