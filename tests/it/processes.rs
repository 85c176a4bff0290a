//! Task processes that escape their process group or are orphaned, with the real binary:
//! they are stopped with their task, and orphans are reaped (no zombies), also as PID 1.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::common::project::{BIN, Project, Stopped, eventually, signal, text};

impl Project {
    /// The pids that the three tasks of [`ESCAPING`] left behind, once each has written its own.
    fn escaped_pids(&self) -> Vec<i32> {
        let escaped = [
            self.pids("held.pid"),
            self.pids("detached.pid"),
            self.pids("stripped.pid"),
        ]
        .concat();
        assert_eq!(escaped.len(), 3, "every task wrote its escaped pid");
        escaped
    }

    /// The pids a task wrote, one a line, to `name`.
    fn pids(&self, name: &str) -> Vec<i32> {
        std::fs::read_to_string(self.path().join(name))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

/// `/proc/PID/stat`'s state letter and parent pid; `None` once the pid is gone.
fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Running: exists and is not a zombie.
fn alive(pid: i32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// Zombie children of `parent`.
fn zombie_children(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| proc_stat(pid) == Some(('Z', parent)))
        .collect()
}

fn wait_for_socket(p: &Project, principal: &mut Child) {
    let up = eventually(Duration::from_secs(60), || {
        p.socket().exists() || principal.try_wait().ok().flatten().is_some()
    });
    assert!(up && p.socket().exists(), "the principal did not start");
}

/// Ways out of a task's process group: `setsid` with the output pipes held, `setsid` of a
/// shell whose child holds nothing, and `setsid` with the task's token removed.
const ESCAPING: &str = "kind: workflow\nname: esc\ntasks:\n  holds-pipes: { run: \"setsid sleep 100 & echo $! > held.pid\" }\n  stripped: { run: \"env -u OPSCONSOLE_TASK_TOKEN setsid sleep 100 & echo $! > stripped.pid\" }\n  detached: { run: \"setsid sh -c 'echo $$ > detached.pid; sleep 100' >/dev/null 2>&1 < /dev/null & while [ ! -s detached.pid ]; do sleep 0.05; done\" }\n";

#[test]
fn processes_escaping_with_setsid_are_stopped_when_their_run_ends() {
    let p = Project::new(&[("esc.yaml", ESCAPING)]);
    let mut principal = p.spawn(&["principal", "--kill-grace", "1s"]);
    wait_for_socket(&p, &mut principal);
    let principal = Stopped(principal);
    let out = p.run(&["run", "esc", "--wait"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let escaped = p.escaped_pids();
    // Gone entirely: stopped, and (adopted by the principal) reaped rather than left a zombie.
    let gone = eventually(Duration::from_secs(20), || {
        escaped.iter().all(|&pid| proc_stat(pid).is_none())
    });
    let left: Vec<_> = escaped.iter().map(|&pid| (pid, proc_stat(pid))).collect();
    assert!(gone, "escaped processes outlived their run: {left:?}");
    drop(principal);
}

#[test]
fn processes_escaping_a_one_off_run_do_not_outlive_it() {
    let p = Project::new(&[("esc.yaml", ESCAPING)]);
    let out = p.run(&["run", "esc", "--wait", "--kill-grace", "1s"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let escaped = p.escaped_pids();
    let stopped = eventually(Duration::from_secs(20), || {
        escaped.iter().all(|&pid| !alive(pid))
    });
    assert!(stopped, "escaped processes outlived `opsconsole run`");
}

#[test]
fn processes_escaping_with_setsid_do_not_outlive_a_killed_principal() {
    let p = Project::new(&[(
        "long.yaml",
        "kind: workflow\nname: long\ntasks:\n  t: { run: \"setsid sleep 300 & echo $! > escaped.pid; wait\" }\n",
    )]);
    let mut principal = p.spawn(&["principal", "--kill-grace", "1s"]);
    wait_for_socket(&p, &mut principal);
    let mut principal = Stopped(principal);
    assert!(p.run(&["run", "long"]).status.success());
    assert!(
        eventually(Duration::from_secs(30), || p.pids("escaped.pid").len() == 1),
        "the task started"
    );
    let escaped = p.pids("escaped.pid")[0];
    assert!(alive(escaped), "the escaped process runs");
    signal(principal.0.id() as i32, Signal::SIGKILL).expect("kill -9");
    let _ = principal.0.wait();
    assert!(
        eventually(Duration::from_secs(20), || !alive(escaped)),
        "the escaped process outlived the principal"
    );
}

#[test]
fn orphans_of_tasks_are_reaped_by_the_principal() {
    let p = Project::new(&[(
        "bg.yaml",
        "kind: workflow\nname: bg\ntasks:\n  a: { run: \"sleep 30 & echo $! >> bg.pids\" }\n  b: { run: \"sleep 30 & echo $! >> bg.pids\" }\n  c: { run: \"sleep 30 & echo $! >> bg.pids\", depends_on: [a, b] }\n",
    )]);
    let mut principal = p.spawn(&["principal", "--kill-grace", "1s"]);
    wait_for_socket(&p, &mut principal);
    let principal = Stopped(principal);
    let pid = principal.0.id() as i32;
    let out = p.run(&["run", "bg", "--wait"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let orphans = p.pids("bg.pids");
    assert_eq!(orphans.len(), 3);
    assert!(
        eventually(Duration::from_secs(20), || orphans
            .iter()
            .all(|&o| proc_stat(o).is_none())
            && zombie_children(pid).is_empty()),
        "orphans left: {:?}; zombie children of the principal: {:?}",
        orphans
            .iter()
            .map(|&o| (o, proc_stat(o)))
            .collect::<Vec<_>>(),
        zombie_children(pid)
    );
}

#[test]
fn no_zombies_when_the_principal_runs_as_pid_1() {
    let p = Project::new(&[(
        "bg.yaml",
        "kind: workflow\nname: bg\ntasks:\n  a: { run: \"sleep 30 &\" }\n  b: { run: \"sleep 30 &\" }\n  c: { run: \"sleep 30 & sleep 30 &\", depends_on: [a, b] }\n",
    )]);
    // A new pid namespace with its own /proc, as in a container: opsconsole is PID 1 there.
    let unshare = Command::new("unshare")
        .args([
            "-fp",
            "--mount-proc",
            "--kill-child",
            BIN,
            "principal",
            "--kill-grace",
            "1s",
        ])
        .current_dir(p.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut unshare = match unshare {
        Ok(c) => c,
        Err(e) => {
            crate::common::skip(format!("cannot run unshare (util-linux): {e}"));
            return;
        }
    };
    let up = eventually(Duration::from_secs(60), || {
        p.socket().exists() || unshare.try_wait().ok().flatten().is_some()
    });
    if !up || !p.socket().exists() {
        let _ = unshare.kill();
        let out = unshare.wait_with_output().expect("unshare ended");
        let stderr = text(&out.stderr);
        if stderr.starts_with("unshare:") {
            // unshare itself was refused (no privilege for new namespaces here).
            crate::common::skip(format!("cannot make a pid namespace: {}", stderr.trim()));
            return;
        }
        // Whatever stopped the principal as PID 1 is a failure to look at, not a missing tool.
        panic!(
            "the principal did not start as PID 1 under unshare -fp --mount-proc ({}): {}",
            out.status,
            text(&out.stderr)
        );
    }
    let unshare_pid = unshare.id() as i32;
    let _unshare = Stopped(unshare);
    // unshare forks; its child is the principal, PID 1 inside.
    let principal = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|&pid| proc_stat(pid).is_some_and(|(_, ppid)| ppid == unshare_pid))
        .expect("the principal under unshare");
    for _ in 0..2 {
        let out = p.run(&["run", "bg", "--wait"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    assert!(
        eventually(Duration::from_secs(20), || zombie_children(principal)
            .is_empty()),
        "zombies under PID 1: {:?}",
        zombie_children(principal)
    );
    signal(principal, Signal::SIGTERM).expect("stop the principal");
}
