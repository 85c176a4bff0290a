//! A principal process keeps its resources flat: after 1,000 runs and some idle time it has no
//! more open file descriptors or threads than after the first few runs. (Its own test binary,
//! so that nothing else runs in the process that drives it.)

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use opsconsole::protocol::RunState;
use opsconsole::protocol::api::ClientExt;
use opsconsole::protocol::zmq::{Endpoints, ZmqClient};

const BIN: &str = env!("CARGO_BIN_EXE_opsconsole");

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.count())
        .unwrap_or(usize::MAX)
}

/// Polls `f` until it is at most `limit` (work winds down asynchronously: pipes close after
/// the process exits, idle blocking-pool threads leave after their keep-alive).
fn settles_at_most(f: impl Fn() -> usize, limit: usize, within: Duration) -> usize {
    let t0 = Instant::now();
    loop {
        let n = f();
        if n <= limit || t0.elapsed() > within {
            return n;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn runs(client: &ZmqClient, n: usize) {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(
            client
                .trigger("one", Default::default())
                .await
                .expect("trigger"),
        );
    }
    for id in ids {
        let outcome = client.wait(id).await.expect("wait").expect("known run");
        assert_eq!(outcome.state, RunState::Succeeded);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_runs_leave_no_descriptors_or_threads_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("workflows")).expect("mkdir");
    std::fs::write(
        dir.path().join("workflows/one.yaml"),
        "kind: workflow\nname: one\ntasks:\n  t: { run: \"echo out; echo err >&2\" }\n",
    )
    .expect("write");
    let principal = Killed(
        Command::new(BIN)
            .args(["principal", "--slots", "4"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn principal"),
    );
    let data = dir.path().join(".opsconsole");
    let t0 = Instant::now();
    while !Path::new(&data.join("principal.sock")).exists() {
        assert!(t0.elapsed() < Duration::from_secs(30), "principal started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = ZmqClient::connect(&Endpoints::for_data_dir(&data), Duration::from_secs(60))
        .await
        .expect("connect");
    let pid = principal.0.id();
    let fds = move || count(&format!("/proc/{pid}/fd"));
    let threads = move || count(&format!("/proc/{pid}/task"));

    runs(&client, 20).await;
    let (fds_before, threads_before) = (fds(), threads());
    runs(&client, 1000).await;
    let within = Duration::from_secs(30);
    let fds_after = tokio::task::spawn_blocking(move || settles_at_most(fds, fds_before, within))
        .await
        .expect("join");
    let threads_after =
        tokio::task::spawn_blocking(move || settles_at_most(threads, threads_before, within))
            .await
            .expect("join");
    assert!(
        fds_after <= fds_before,
        "open descriptors grew from {fds_before} to {fds_after}"
    );
    assert!(
        threads_after <= threads_before,
        "threads grew from {threads_before} to {threads_after}"
    );
    let status = client.status().await.expect("status");
    assert_eq!((status.busy_slots, status.queued_tasks), (0, 0));
}
