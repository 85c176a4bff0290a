//! Command checks through the prober: run by the one executor, output bounded, and a check
//! that leaves a `setsid` escapee behind and never exits is killed at its timeout with it.

use std::time::{Duration, Instant};

use opsconsole::agent::check::Prober;
use opsconsole::protocol::check::{CommandProbe, Probe};

const LIMIT: Duration = Duration::from_secs(20);

fn sh(script: &str, max_output: usize) -> Probe {
    Probe::Command(CommandProbe {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("CHECK_WORD".into(), "hello".into())],
        cwd: None,
        max_output,
    })
}

/// True once `pid` has exited (gone, or a zombie waiting for its reaper).
fn gone(pid: i32) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
        .unwrap_or(true)
}

#[tokio::test]
async fn a_command_check_reports_its_exit_code_and_bounded_output() {
    let prober = Prober::new();
    let r = tokio::time::timeout(
        LIMIT,
        prober.run(&sh("echo $CHECK_WORD; echo oops >&2; exit 3", 4096), LIMIT),
    )
    .await
    .expect("in time");
    println!(
        "exit {:?}, output {:?}, error {:?}",
        r.exit_code, r.output, r.error
    );
    assert_eq!(r.exit_code, Some(3));
    assert_eq!(r.error, None);
    assert!(r.connected);
    assert!(
        r.output.contains("hello") && r.output.contains("oops"),
        "{:?}",
        r.output
    );

    let r = tokio::time::timeout(
        LIMIT,
        prober.run(&sh("yes 0123456789 | head -c 1000000", 1000), LIMIT),
    )
    .await
    .expect("in time");
    println!(
        "a flood of output: {} bytes kept, exit {:?}",
        r.output.len(),
        r.exit_code
    );
    assert_eq!(r.exit_code, Some(0));
    assert!(r.output.len() <= 1000, "{}", r.output.len());
}

#[tokio::test]
async fn a_command_check_that_never_exits_is_killed_with_its_setsid_escapee() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("escapee");
    let script = format!(
        "setsid sleep 300 & echo $! > '{}'; echo started; sleep 300",
        pidfile.display()
    );
    let prober = Prober::new();
    let t = Instant::now();
    let r = tokio::time::timeout(
        LIMIT,
        prober.run(&sh(&script, 4096), Duration::from_secs(1)),
    )
    .await
    .expect("the check ended");
    let took = t.elapsed();
    let escapee: i32 = std::fs::read_to_string(&pidfile)
        .expect("the escapee's pid")
        .trim()
        .parse()
        .expect("a pid");
    let error = r.error.clone().expect("an error");
    println!(
        "never exits: {error:?} after {took:?}, output {:?}",
        r.output
    );
    assert!(
        error.starts_with("timed out after 1s in phase run"),
        "{error}"
    );
    assert!(r.output.contains("started"));
    let t = Instant::now();
    while !gone(escapee) {
        assert!(
            t.elapsed() < LIMIT,
            "the setsid escapee {escapee} outlived its check"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "the setsid escapee {escapee} was gone {:?} after the check ended",
        t.elapsed()
    );
}
