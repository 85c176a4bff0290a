//! The real `opsconsole` console in a pseudo-terminal, read back through a VT100 emulator.
//!
//! Every wait has a time limit and the child is killed when a test ends, so a broken console
//! fails a test instead of hanging it. Nothing here asserts on timing.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::pty::{Winsize, openpty};

/// Longest wait for anything to appear (the first start opens a fresh DuckDB file).
const WAIT: Duration = Duration::from_secs(60);

const HELLO: &str = "\
kind: workflow
name: hello
description: Says hello
params:
  who: world
tasks:
  greet:
    run: echo \"hello-from-{{ params.who }}\"
  after:
    run: echo after-done
    depends_on: [greet]
";

/// A console running in a pseudo-terminal.
struct Console {
    child: Child,
    _registration: opsconsole::agent::orphans::Registration,
    master: File,
    screen: Arc<Mutex<vt100::Parser>>,
    _dir: tempfile::TempDir,
}

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Console {
    /// From the Workflows pane: `t` on `hello`, and Enter in the form (its default `who`).
    fn trigger_hello(&mut self) {
        self.send("2");
        self.wait_for("hello");
        self.send("t");
        self.wait_for("Trigger hello");
        self.wait_for("who = world");
        self.send("\r");
    }

    /// Starts `opsconsole ARGS` in a temp dir holding `workflows/hello.yaml`.
    fn start(args: &[&str], rows: u16, cols: u16) -> Console {
        Self::start_with(&[], args, rows, cols)
    }

    /// Same, with more files (name, text) in `workflows/`.
    fn start_with(files: &[(&str, &str)], args: &[&str], rows: u16, cols: u16) -> Console {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("workflows")).expect("mkdir");
        std::fs::write(dir.path().join("workflows/hello.yaml"), HELLO).expect("write spec");
        for (name, text) in files {
            std::fs::write(dir.path().join("workflows").join(name), text).expect("write file");
        }
        Self::spawn(dir, args, rows, cols)
    }

    /// Starts `opsconsole ARGS` in the directory of another console (a temp dir of its own
    /// that points there keeps the paths simple: `--workflows` and `--data-dir` are absolute).
    fn start_in(dir: &Path, args: &[&str], rows: u16, cols: u16) -> Console {
        let own = tempfile::tempdir().expect("temp dir");
        let workflows = dir.join("workflows");
        let data = dir.join(".opsconsole");
        let mut all: Vec<&str> = vec![
            "--workflows",
            workflows.to_str().expect("utf-8 path"),
            "--data-dir",
            data.to_str().expect("utf-8 path"),
        ];
        all.extend_from_slice(args);
        Self::spawn(own, &all, rows, cols)
    }

    fn spawn(dir: tempfile::TempDir, args: &[&str], rows: u16, cols: u16) -> Console {
        Self::spawn_env(dir, args, rows, cols, &[])
    }

    /// Same, with these environment variables set (failure points).
    fn spawn_env(
        dir: tempfile::TempDir,
        args: &[&str],
        rows: u16,
        cols: u16,
        env: &[(&str, &str)],
    ) -> Console {
        let pty = openpty(Some(&winsize(rows, cols)), None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsconsole"));
        cmd.args(args)
            .current_dir(dir.path())
            .env("TERM", "xterm-256color")
            .env_remove("OPSCONSOLE_THEME")
            .env_remove("NO_COLOR")
            .env_remove("OPSCONSOLE_WORKFLOWS")
            .env_remove("OPSCONSOLE_DATA_DIR")
            .envs(env.iter().copied())
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave));
        // The pseudo-terminal becomes the child's controlling terminal, as in a real shell.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // In a session of its own: registered, so this binary's orphan sweeper (the executor
        // tests run one) never takes it for a task's escapee.
        let (child, registration) =
            crate::common::spawn_apart(|| cmd.spawn()).expect("start opsconsole");
        drop(cmd); // closes our copies of the slave side, so reads end when the child exits
        let master = File::from(pty.master);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(rows, cols, 0)));
        let mut reader = master.try_clone().expect("dup master");
        let feed = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // EIO once the child has exited and the slave is closed.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut p) = feed.lock() {
                    p.process(&buf[..n]);
                }
            }
        });
        Console {
            child,
            _registration: registration,
            master,
            screen,
            _dir: dir,
        }
    }

    fn dir(&self) -> &Path {
        self._dir.path()
    }

    fn contents(&self) -> String {
        self.screen
            .lock()
            .map(|p| p.screen().contents())
            .unwrap_or_default()
    }

    /// Waits until the screen shows `text`; fails with the screen when it does not.
    fn wait_for(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            let s = self.contents();
            if s.contains(text) {
                if std::env::var_os("CONSOLE_TEST_SCREENS").is_some() {
                    eprintln!("=== `{text}` ===\n{s}");
                }
                return s;
            }
            if start.elapsed() > WAIT {
                panic!("`{text}` did not appear; the screen shows:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).expect("write keys");
        self.master.flush().expect("flush");
        // Separate keys from what follows, so that Esc is not read as the start of a sequence.
        std::thread::sleep(Duration::from_millis(150));
    }

    fn resize(&self, rows: u16, cols: u16) {
        self.screen
            .lock()
            .expect("screen")
            .screen_mut()
            .set_size(rows, cols);
        let ws = winsize(rows, cols);
        // The kernel sends SIGWINCH to the child's process group.
        let r = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ as _, &ws) };
        assert_eq!(r, 0, "TIOCSWINSZ");
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Let the reader thread take in the last bytes.
                std::thread::sleep(Duration::from_millis(200));
                return status;
            }
            if start.elapsed() > WAIT {
                panic!(
                    "the console did not exit; the screen shows:\n{}",
                    self.contents()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn alternate_screen(&self) -> bool {
        self.screen
            .lock()
            .map(|p| p.screen().alternate_screen())
            .unwrap_or(true)
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn trigger_a_run_watch_it_succeed_read_its_logs_and_quit() {
    let mut c = Console::start(&[], 30, 100);
    c.wait_for("Overview");
    c.trigger_hello();
    let screen = c.wait_for("succeeded");
    assert!(screen.contains("#1"), "the new run is listed:\n{screen}");
    c.send("l");
    c.wait_for("hello-from-world");
    c.send("q");
    let status = c.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    assert!(!c.alternate_screen(), "the alternate screen was left");
    // Raw mode is off again: the terminal echoes and reads lines.
    let attrs = nix::sys::termios::tcgetattr(&c.master).expect("tcgetattr");
    use nix::sys::termios::LocalFlags;
    assert!(
        attrs
            .local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO)
    );
}

#[test]
fn the_run_dag_shows_task_states() {
    let mut c = Console::start(&[], 30, 100);
    c.wait_for("Overview");
    c.trigger_hello();
    c.wait_for("succeeded");
    // Both tasks with their state symbols, in dependency order.
    c.wait_for("✓ greet");
    c.wait_for("✓ after");
    c.send("q");
    c.wait_exit();
}

#[test]
fn a_workflow_edited_with_a_mistake_is_rejected_at_its_line() {
    let mut c = Console::start(&[], 30, 100);
    c.wait_for("Overview");
    c.send("2");
    c.wait_for("hello");
    c.send("e");
    c.wait_for("kind: workflow");
    // Line 3 becomes an unknown key.
    c.send("\x1b[B");
    c.send("\x1b[B");
    c.send("colour: blue\r");
    c.send("\x13"); // Ctrl-S
    let screen = c.wait_for("hello.yaml:3:");
    assert!(
        screen.contains("colour"),
        "the problem names the key:\n{screen}"
    );
    // Nothing was written.
    let on_disk = std::fs::read_to_string(c.dir().join("workflows/hello.yaml")).expect("read");
    assert_eq!(on_disk, HELLO);
    c.send("\x1b"); // close: asks because of unsaved changes
    c.wait_for("Discard");
    c.send("y");
    c.send("q");
    c.wait_exit();
}

#[test]
fn a_small_terminal_gets_a_message_and_resizing_brings_the_console_back() {
    let mut c = Console::start(&[], 20, 60);
    c.wait_for("terminal too small (need 80x24");
    c.resize(30, 100);
    c.wait_for("Overview");
    c.send("q");
    assert!(c.wait_exit().success());
}

#[test]
fn read_only_shows_actions_disabled_with_the_reason() {
    let mut c = Console::start(&["--read-only"], 30, 100);
    c.wait_for("[read-only]");
    c.send("2");
    c.wait_for("hello");
    c.send("t");
    c.wait_for("--read-only");
    c.send("q");
    c.wait_exit();
}

#[test]
fn sigterm_restores_the_terminal() {
    let mut c = Console::start(&[], 30, 100);
    c.wait_for("Overview");
    assert!(c.alternate_screen());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("kill");
    let status = c.wait_exit();
    assert_eq!(status.code(), Some(143));
    assert!(!c.alternate_screen(), "the alternate screen was left");
}

/// `opsconsole ARGS` in `dir`, waited for, with its output.
fn opsconsole(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_opsconsole"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run opsconsole")
}

#[test]
fn other_commands_reach_the_console_s_embedded_principal() {
    let mut c = Console::start(&[], 30, 100);
    c.wait_for("embedded");
    c.send("2");
    c.wait_for("hello");
    // The console owns the data dir; `status` goes through its socket instead of the file.
    let out = opsconsole(c.dir(), &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello"));
    // A run triggered elsewhere shows up live.
    let out = opsconsole(c.dir(), &["run", "hello"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.send("3");
    c.wait_for("succeeded");
    c.send("q");
    assert!(c.wait_exit().success());
}

#[test]
fn the_console_attaches_to_a_running_principal_and_leaves_it_running() {
    let c0 = Console::start(&["principal"], 30, 100);
    c0.wait_for("listening on");
    let mut c = Console::start_in(c0.dir(), &[], 30, 100);
    c.wait_for("attached to");
    // Runs and their events travel over the principal's socket.
    c.trigger_hello();
    c.wait_for("succeeded");
    c.wait_for("✓ after");
    c.send("q");
    assert!(c.wait_exit().success());
    // The principal still answers.
    let out = opsconsole(c0.dir(), &["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn without_a_terminal_the_console_explains_and_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_opsconsole"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs a terminal"), "{err}");
}

/// `opsconsole attach` to a CURVE endpoint: the header names the address and the role; a
/// viewer's console shows actions disabled with the reason, an operator's runs work.
#[test]
fn attach_over_curve_shows_the_address_and_the_role() {
    let keys = tempfile::tempdir().expect("temp dir");
    let public = |name: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_opsconsole"))
            .args(["keys", "new", name])
            .current_dir(keys.path())
            .output()
            .expect("keys new");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(keys.path().join(format!("{name}.pub")))
            .expect("pub")
            .trim()
            .to_string()
    };
    let authorized = keys.path().join("authorized");
    std::fs::write(
        &authorized,
        format!(
            "operator alice {}\nviewer vic {}\n",
            public("alice"),
            public("vic")
        ),
    )
    .unwrap();
    let c0 = Console::start(
        &[
            "principal",
            "--listen",
            "tcp://127.0.0.1:0",
            "--keys",
            authorized.to_str().unwrap(),
        ],
        30,
        200,
    );
    let screen = c0.wait_for("CURVE: keys of");
    let endpoint = screen
        .split("listening on ")
        .filter_map(|s| s.split_whitespace().next())
        .find(|s| s.starts_with("tcp://"))
        .expect("the tcp endpoint on screen")
        .to_string();
    let server_pub = c0.dir().join(".opsconsole/server.pub");
    let server_pub = server_pub.to_str().unwrap();
    let secret = |name: &str| keys.path().join(format!("{name}.secret"));
    let (vic, alice) = (secret("vic"), secret("alice"));

    let mut viewer = Console::start_in(
        c0.dir(),
        &[
            "attach",
            &endpoint,
            "--server-key",
            server_pub,
            "--key",
            vic.to_str().unwrap(),
        ],
        30,
        160,
    );
    viewer.wait_for("as viewer");
    viewer.wait_for("[read-only]");
    viewer.send("2");
    viewer.wait_for("hello");
    viewer.send("t");
    viewer.wait_for("viewer's key");
    viewer.send("q");
    assert!(viewer.wait_exit().success());

    let mut operator = Console::start_in(
        c0.dir(),
        &[
            "attach",
            &endpoint,
            "--server-key",
            server_pub,
            "--key",
            alice.to_str().unwrap(),
        ],
        30,
        120,
    );
    operator.wait_for("as operator");
    operator.trigger_hello();
    operator.wait_for("succeeded");
    operator.send("q");
    assert!(operator.wait_exit().success());

    // Without keys nothing answers, and attach says so instead of showing an empty console.
    let mut stranger = Console::start_in(c0.dir(), &["attach", &endpoint], 30, 160);
    stranger.wait_for("no principal answers");
    stranger.wait_for("--server-key");
    assert!(!stranger.wait_exit().success());
}

/// An attached console whose principal goes away says it is reconnecting, and picks up again,
/// without a restart, when a principal answers once more.
#[test]
fn an_attached_console_shows_reconnecting_and_resumes_when_the_principal_is_back() {
    let mut c0 = Console::start(&["principal"], 30, 100);
    c0.wait_for("listening on");
    let mut c = Console::start_in(c0.dir(), &[], 30, 120);
    c.wait_for("attached to");
    c0.send("\x03"); // Ctrl-C: the principal stops
    c0.wait_exit();
    c.wait_for("RECONNECTING");
    let mut c1 = Console::start_in(c0.dir(), &["principal"], 30, 100);
    c1.wait_for("listening on");
    c.wait_for("reconnected");
    assert!(!c.contents().contains("RECONNECTING"), "{}", c.contents());
    // And it works again: a run goes through the new principal.
    c.trigger_hello();
    c.wait_for("succeeded");
    c.send("q");
    assert!(c.wait_exit().success());
    c1.send("\x03");
    c1.wait_exit();
}

const WEB: &str = "\
kind: supervisor
name: web
children:
  - { name: api, run: \"echo up; exec sleep 30\" }
";

/// `(start_no, pid)` of `path` as `opsconsole svc status --json` reports it.
fn service_run(dir: &Path, path: &str) -> Option<(u64, u64)> {
    let out = opsconsole(dir, &["svc", "status", "--json"]);
    let nodes: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let node = nodes.as_array()?.iter().find(|n| n["path"] == path)?;
    Some((node["start_no"].as_u64()?, node["pid"].as_u64()?))
}

/// Polls `check` every 100 ms for at most `limit`.
fn within<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = check() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[test]
fn a_service_is_restarted_from_the_supervisors_pane() {
    let mut c = Console::start_with(&[("web.yaml", WEB)], &[], 30, 120);
    c.wait_for("Overview");
    c.send("8");
    c.wait_for("● api");
    let limit = Duration::from_secs(15);
    let (start_no, pid) =
        within(limit, || service_run(c.dir(), "web/api")).expect("web/api running");
    c.send("\x1b[B"); // from `web` down to `api`
    c.wait_for("web/api — running");
    c.send("r");
    c.wait_for("Restart web/api?");
    c.send("y");
    let (again, new_pid) = within(limit, || {
        service_run(c.dir(), "web/api").filter(|(n, p)| *n > start_no && *p != pid)
    })
    .unwrap_or_else(|| {
        panic!(
            "web/api was not restarted; the screen shows:\n{}",
            c.contents()
        )
    });
    assert_eq!(again, start_no + 1);
    c.wait_for(&format!("{new_pid}"));
    c.send("q");
    assert!(c.wait_exit().success());
    // Quitting the console stopped its principal and with it the service's `sleep`.
    let gone = within(limit, || {
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(new_pid as i32), None);
        alive.is_err().then_some(())
    });
    assert!(gone.is_some(), "pid {new_pid} outlived the console");
}

#[test]
fn the_monitors_pane_lists_fake_monitors_with_their_detail_and_incidents() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("workflows")).expect("mkdir");
    std::fs::write(dir.path().join("workflows/hello.yaml"), HELLO).expect("write spec");
    let env = [
        ("OPSCONSOLE_FAILPOINT", "fake-monitors"),
        ("OPSCONSOLE_FAKE_MONITORS", "200"),
    ];
    let mut c = Console::spawn_env(dir, &[], 40, 140, &env);
    // The Overview counts the monitors and lists the open incidents.
    c.wait_for("200 monitors: 4 unhealthy");
    c.wait_for("4 open incident(s)");
    c.send("9");
    let screen = c.wait_for("Monitors 200 — 4 unhealthy · 4 degraded");
    assert!(screen.contains("mon-000000"), "{screen}");
    // The first monitor is selected: its conditions with the values seen, its incident.
    let screen = c.wait_for("saw [STATUS] = 503");
    assert!(screen.contains("incident #1"), "{screen}");
    assert!(screen.contains("response, last hour"), "{screen}");
    println!("{screen}");
    // Filtered by state with `/`.
    c.send("/");
    c.send("paused\r");
    let screen = c.wait_for("mon-000004");
    assert!(!screen.contains("mon-000000 "), "{screen}");
    c.send("\x1b");
    c.wait_for("mon-000000");
    // `o` opens its incident among all of them.
    c.send("o");
    c.wait_for("Incidents — 4 open, 4 recent");
    c.send("q");
    c.wait_exit();
}
