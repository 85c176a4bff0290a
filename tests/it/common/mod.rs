//! Helpers shared by the integration tests: real principals on real DuckDB files in temp dirs.
#![allow(dead_code)]

pub mod project;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use opsconsole::principal::{PrincipalConfig, PrincipalHandle, RunOutcome};
use opsconsole::protocol::RunId;
use opsconsole::protocol::api::ClientExt;
use opsconsole::spec::{Catalog, parse_str};
use opsconsole::store::Store;
use opsconsole::store::query::Reader;

/// Gives up on a test that cannot run here because of `why` (a tool or a privilege it needs is
/// missing): prints `skipped: WHY`, or, when the `CI` environment variable is set, fails with
/// it, since CI installs everything the tests need (`.ci/run`) and a skip there would hide a
/// test that never ran. Call it, then return from the test.
#[track_caller]
pub fn skip(why: impl std::fmt::Display) {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("this test cannot run, and CI is set, so it fails rather than skips: {why}");
    }
    eprintln!("skipped: {why}");
}

/// A principal over a temp data dir, with the given workflow documents.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub principal: Option<PrincipalHandle>,
}

pub fn catalog(docs: &[&str]) -> Catalog {
    let mut catalog = Catalog::default();
    for doc in docs {
        let spec = parse_str(Path::new("test.yaml"), doc)
            .unwrap_or_else(|d| panic!("test workflow invalid: {d:?}"));
        catalog.workflows.insert(spec.name.clone(), Arc::new(spec));
    }
    catalog
}

impl Harness {
    pub fn new(docs: &[&str], slots: usize) -> Self {
        Self::in_dir(tempfile::tempdir().expect("temp dir"), docs, slots)
    }

    /// A principal over an existing data dir (a restart).
    pub fn in_dir(dir: tempfile::TempDir, docs: &[&str], slots: usize) -> Self {
        let (store, recovered) = Store::open(dir.path()).expect("open store");
        let principal = PrincipalHandle::start(
            catalog(docs),
            store,
            recovered,
            PrincipalConfig {
                slots,
                kill_grace: Duration::from_millis(500),
                workflows_dir: None,
                spec_problems: Vec::new(),
                watchdog: false,
                one_off: false,
                agent_heartbeat: opsconsole::principal::DEFAULT_AGENT_HEARTBEAT,
                workdir: dir.path().to_path_buf(),
            },
        );
        Self {
            dir,
            principal: Some(principal),
        }
    }

    /// A principal over a `workflows/` directory in the temp dir holding `files` (name, text),
    /// watched and writable as in production.
    pub fn with_files(files: &[(&str, &str)], slots: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let wf_dir = dir.path().join("workflows");
        std::fs::create_dir(&wf_dir).expect("workflows dir");
        for (name, text) in files {
            std::fs::write(wf_dir.join(name), text).expect("write workflow");
        }
        let (catalog, problems) = opsconsole::spec::load_dir(&wf_dir);
        let (store, recovered) = Store::open(dir.path()).expect("open store");
        let principal = PrincipalHandle::start(
            catalog,
            store,
            recovered,
            PrincipalConfig {
                slots,
                kill_grace: Duration::from_millis(500),
                workflows_dir: Some(wf_dir),
                spec_problems: problems,
                watchdog: false,
                one_off: false,
                agent_heartbeat: opsconsole::principal::DEFAULT_AGENT_HEARTBEAT,
                workdir: dir.path().to_path_buf(),
            },
        );
        Self {
            dir,
            principal: Some(principal),
        }
    }

    /// The watched workflows directory of [`with_files`](Self::with_files).
    pub fn workflows_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("workflows")
    }

    pub fn principal(&self) -> &PrincipalHandle {
        self.principal.as_ref().expect("running")
    }

    pub async fn trigger(&self, workflow: &str, params: &[(&str, &str)]) -> RunId {
        let params: BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.principal()
            .trigger(workflow, params)
            .await
            .expect("trigger accepted")
    }

    pub async fn run(&self, workflow: &str) -> RunOutcome {
        let id = self.trigger(workflow, &[]).await;
        self.wait(id).await
    }

    pub async fn wait(&self, id: RunId) -> RunOutcome {
        tokio::time::timeout(Duration::from_secs(120), self.principal().wait(id))
            .await
            .expect("run finished within 120 s")
            .expect("principal alive")
            .expect("run known")
    }

    /// Stops the principal (flushing the store) and hands back its data dir.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(p) = self.principal.take() {
            p.shutdown().await;
        }
        self.dir
    }

    /// Stops the principal (flushing the store) and opens the history for reading.
    pub async fn finish(&mut self) -> Reader {
        if let Some(p) = self.principal.take() {
            p.shutdown().await;
        }
        Reader::open(self.dir.path()).expect("open history")
    }
}

/// A `kind: workflow` document from a list of (task, flow-mapping body) pairs.
pub fn workflow<S: AsRef<str>>(name: &str, extra: &str, tasks: &[(S, S)]) -> String {
    let mut s = format!("kind: workflow\nname: {name}\n{extra}tasks:\n");
    for (task, body) in tasks {
        s.push_str(&format!("  {}: {}\n", task.as_ref(), body.as_ref()));
    }
    s
}

/// `n` tasks named `t0..` with the same body, each depending on the previous when `chain`.
pub fn numbered_tasks(n: usize, run: &str, chain: bool) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let dep = match i {
                i if chain && i > 0 => format!(", depends_on: [t{}]", i - 1),
                _ => String::new(),
            };
            (format!("t{i}"), format!("{{ run: {run}{dep} }}"))
        })
        .collect()
}

/// Runs `cmd` to its end as `Command::output` does, registered as this process's own child
/// (see [`spawn_apart`]): this binary runs executors and their orphan sweeper beside the test,
/// which would take a child in its own process group (as `timeout` makes itself) for an orphan.
pub fn output_apart(cmd: &mut std::process::Command) -> std::io::Result<std::process::Output> {
    use std::process::Stdio;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (child, _registration) = spawn_apart(|| cmd.spawn())?;
    child.wait_with_output()
}

/// Spawns `spawn`'s child registered as this process's own (see `orphans::spawn_apart`); the
/// registration lasts as long as what is returned with it.
pub fn spawn_apart(
    spawn: impl FnOnce() -> std::io::Result<std::process::Child>,
) -> std::io::Result<(
    std::process::Child,
    opsconsole::agent::orphans::Registration,
)> {
    opsconsole::agent::orphans::spawn_apart(spawn, |c| Some(c.id()))
}
