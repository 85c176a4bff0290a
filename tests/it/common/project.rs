//! The real `opsconsole` binary in a project directory of its own, for the tests that drive it
//! as a user would, and the process handles and polls they share.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_opsconsole");

/// A project directory: `workflows/` with the given files, data in `.opsconsole/`.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("workflows")).expect("mkdir");
        for (name, body) in files {
            std::fs::write(dir.path().join("workflows").join(name), body).expect("write");
        }
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The data dir (history file, sockets).
    pub fn data(&self) -> PathBuf {
        self.path().join(".opsconsole")
    }

    /// The principal's local socket, which exists once it listens.
    pub fn socket(&self) -> PathBuf {
        self.data().join("principal.sock")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args).current_dir(self.path()).env("NO_COLOR", "1");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run opsconsole")
    }

    /// `opsconsole principal EXTRA` for the project (real monitors: no failure point), once
    /// its local socket is up; stopped when dropped.
    pub fn real_principal(&self, extra: &[&str]) -> Stopped {
        let mut args = vec!["principal"];
        args.extend_from_slice(extra);
        let mut cmd = self.cmd(&args);
        cmd.env_remove("OPSCONSOLE_FAILPOINT");
        self.start_principal(cmd)
    }

    /// Starts `cmd`, a principal of this project (run as the caller built it: with a
    /// failure point, under `prlimit`, ...), its output discarded, once its local socket is
    /// up; stopped when dropped.
    pub fn start_principal(&self, mut cmd: Command) -> Stopped {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn principal");
        let child = Stopped(child);
        assert!(
            eventually(Duration::from_secs(60), || self.socket().exists()),
            "the principal did not start"
        );
        child
    }

    /// Starts opsconsole in the background with its output captured.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn opsconsole")
    }
}

/// A child process that is resumed, killed and waited for when the test ends, however it
/// ends (a failed assertion must not leave a principal behind).
pub struct Stopped(pub Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = signal(self.0.id(), Signal::SIGCONT);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Sends `sig` to the process `pid` (one this test started).
pub fn signal(pid: impl TryInto<i32>, sig: Signal) -> nix::Result<()> {
    // A pid that does not fit is no process (never -1 or 0: "every process" or "my group").
    let pid = pid.try_into().unwrap_or(i32::MAX);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
}

/// Polls `cond` every 20 ms for up to `limit`; true once it holds.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if t0.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port whose next two ports are free too (requests, events, agents).
pub fn free_port_triple() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Below the kernel's ephemeral range (32768 and up by default), so no outgoing connection,
    // of this test or any other, can take one of these ports as its source while a principal is
    // down between two starts; each call of this process gets its own three.
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = LOW + (std::process::id() % u32::from(SPAN / 3)) as u16 * 3;
    for _ in 0..SPAN / 3 {
        let step = NEXT.fetch_add(3, Ordering::Relaxed) % SPAN;
        let port = LOW + (base - LOW + step) % SPAN;
        let all: Vec<_> = (0..=2)
            .map(|i| std::net::TcpListener::bind(("127.0.0.1", port + i)))
            .collect();
        if all.iter().all(Result::is_ok) {
            return port;
        }
    }
    panic!(
        "no three free consecutive ports between {LOW} and {}",
        LOW + SPAN
    );
}

/// A `kind: supervisor` document of `children` (each a YAML list item, as written).
pub fn supervisor_doc(name: &str, strategy: &str, intensity: u32, children: &[String]) -> String {
    format!(
        "kind: supervisor\nname: {name}\nstrategy: {strategy}\nintensity: {intensity}\nperiod: 30s\nchildren:\n{}",
        children.concat()
    )
}

/// Every service node as `svc status --json` shows it (none when it cannot be read).
pub fn nodes(p: &Project) -> Vec<opsconsole::protocol::service::ServiceNode> {
    let out = p.run(&["svc", "status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}
