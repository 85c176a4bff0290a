//! `opsconsole validate` end to end: the real binary on fixture files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FIXTURES: &str = "tests/fixtures/validate";

/// Runs `opsconsole validate ARGS` in the crate root (so fixture paths stay relative).
fn validate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_opsconsole"))
        .arg("validate")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run opsconsole")
}

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit code 1, that stderr starts with `file:line:col: <words...>` and that the
/// summary counts `problems` problem(s).
#[track_caller]
fn assert_fails_at(name: &str, line: usize, col: usize, words: &str, problems: usize) {
    let out = validate(&[&fixture(name)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{name}: {err}");
    let prefix = format!("{}:{line}:{col}: {words}", fixture(name));
    assert!(err.starts_with(&prefix), "expected `{prefix}`, got:\n{err}");
    let summary = format!("\n{problems} problem(s) in 1 file(s)\n");
    assert!(err.ends_with(&summary), "expected `{summary}`, got:\n{err}");
    assert!(out.stdout.is_empty(), "nothing on stdout on failure");
}

#[test]
fn unknown_key() {
    assert_fails_at(
        "unknown_key.yaml",
        2,
        1,
        "unknown key `nmae`: did you mean `name`?",
        1,
    );
}

#[test]
fn wrong_type() {
    assert_fails_at("wrong_type.yaml", 6, 14, "wrong type", 1);
}

#[test]
fn missing_required_key() {
    assert_fails_at("missing_name.yaml", 1, 1, "missing required key `name`", 1);
}

#[test]
fn duplicate_task_name() {
    assert_fails_at(
        "duplicate_task.yaml",
        6,
        3,
        "duplicate task name `build`",
        1,
    );
}

#[test]
fn dependency_cycle() {
    assert_fails_at("cycle.yaml", 6, 18, "dependency cycle: a -> c -> b -> a", 1);
}

#[test]
fn unknown_dependency() {
    assert_fails_at(
        "unknown_dep.yaml",
        5,
        37,
        "task `load` depends on unknown task `extrct`: did you mean `extract`?",
        1,
    );
}

#[test]
fn bad_cron() {
    assert_fails_at(
        "bad_cron.yaml",
        3,
        14,
        "invalid cron expression `0 25 * * *`",
        1,
    );
}

#[test]
fn bad_duration() {
    assert_fails_at(
        "bad_duration.yaml",
        6,
        14,
        "`timeout`: invalid duration `5 minutes`",
        1,
    );
}

#[test]
fn empty_commands() {
    assert_fails_at("empty_command.yaml", 4, 13, "empty command", 3);
    let err = stderr(&validate(&[&fixture("empty_command.yaml")]));
    assert!(err.contains(&format!(
        "\n\n{}:5:13: empty command",
        fixture("empty_command.yaml")
    )));
    assert!(err.contains(&format!(
        "\n\n{}:6:14: empty command",
        fixture("empty_command.yaml")
    )));
}

#[test]
fn unknown_template_reference() {
    assert_fails_at("bad_template.yaml", 6, 31, "unknown parameter `regoin`", 1);
}

#[test]
fn alias_bomb() {
    // Its keys are unknown too, but reading past them must not expand the bomb.
    assert_fails_at(
        "alias_bomb.yaml",
        6,
        8,
        "too many alias expansions (`*name`): the document is rejected as a possible alias bomb",
        1,
    );
}

#[test]
fn not_utf8() {
    assert_fails_at("not_utf8.yaml", 3, 18, "invalid UTF-8", 1);
}

#[test]
fn empty_file() {
    assert_fails_at("empty.yaml", 1, 1, "empty file", 1);
}

#[test]
fn monitor_with_a_timeout_in_its_check() {
    // `timeout` is the monitor's, beside `every`, not the check kind's.
    assert_fails_at("monitor.yaml", 4, 55, "unknown key `timeout`", 1);
}

#[test]
fn many_problems_in_one_file() {
    assert_fails_at("many_problems.yaml", 3, 11, "invalid cron expression", 6);
}

#[test]
fn diagnostic_shows_source_line_and_caret() {
    let err = stderr(&validate(&[&fixture("unknown_dep.yaml")]));
    let expected = format!(
        "{}:5:37: task `load` depends on unknown task `extrct`: did you mean `extract`?\n  |    load: {{ run: ./load, depends_on: [extrct] }}\n  |  {}^\n",
        fixture("unknown_dep.yaml"),
        " ".repeat(36)
    );
    assert!(
        err.starts_with(&expected),
        "expected:\n{expected}\ngot:\n{err}"
    );
}

#[test]
fn same_name_in_two_files() {
    let out = validate(&[&fixture("dupname")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let prefix = format!(
        "{}:3:7: workflow `same` is already defined in {}",
        fixture("dupname/b.yaml"),
        fixture("dupname/a.yaml")
    );
    assert!(err.starts_with(&prefix), "expected `{prefix}`, got:\n{err}");
}

#[test]
fn several_files_are_all_reported() {
    let out = validate(&[
        &fixture("unknown_key.yaml"),
        &fixture("cycle.yaml"),
        &fixture("good"),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("{}:2:1:", fixture("unknown_key.yaml"))));
    assert!(err.contains(&format!("\n\n{}:6:18:", fixture("cycle.yaml"))));
    assert!(err.ends_with("\n2 problem(s) in 2 file(s)\n"), "{err}");
}

#[test]
fn good_files_pass() {
    let out = validate(&["--workflows", &fixture("good")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout.starts_with("ok: 2 workflow(s) in 2 file(s)\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hello") && stdout.contains("nightly-etl"),
        "{stdout}"
    );
}

#[test]
fn repo_workflows_directory_passes() {
    // The examples shipped in `workflows/`; until they exist, the good fixtures stand in.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = if root.join("workflows").is_dir() {
        "workflows".to_string()
    } else {
        fixture("good")
    };
    let out = validate(&["--workflows", &dir]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));
}

#[test]
fn missing_workflows_directory() {
    let out = validate(&["--workflows", "no/such/dir"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with(
        "no/such/dir: no workflows directory at no/such/dir: create it or pass --workflows DIR\n"
    ), "{err}");
}

/// A scratch directory for generated files, removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("opsconsole-validate-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A valid workflow of about `bytes` bytes (a long chain of tasks).
fn big_workflow(bytes: usize) -> String {
    let mut text = String::from("kind: workflow\nname: big\nparams: { region: eu }\ntasks:\n");
    let mut i = 0;
    while text.len() < bytes {
        text.push_str(&format!(
            "  t{i}:\n    run: [\"./step.sh\", \"{{{{ params.region }}}}\"]\n"
        ));
        if i > 0 {
            text.push_str(&format!("    depends_on: [t{}]\n", i - 1));
        }
        i += 1;
    }
    text
}

#[test]
fn three_megabytes_load_and_five_are_rejected() {
    let scratch = Scratch::new("big");
    let three = scratch.0.join("three.yaml");
    std::fs::write(&three, big_workflow(3 << 20)).unwrap();
    let out = validate(&[three.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let five = scratch.0.join("five.yaml");
    std::fs::write(&five, big_workflow(5 << 20)).unwrap();
    let out = validate(&[five.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with(&format!(
            "{}: file is 5.0 MiB, larger than the 4 MiB limit",
            five.display()
        )),
        "{err}"
    );
}

/// Runs `opsconsole ARGS` in `dir`, killed (and the test failed) if it takes over 60 s: a
/// command that blocks on a FIFO must fail the test, not hang it.
fn bounded(dir: &Path, args: &[&str]) -> Output {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_opsconsole"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run opsconsole");
    let t0 = std::time::Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if t0.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "`opsconsole {}` still running after 60 s:\n{}",
                args.join(" "),
                stderr(&out)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

const GOOD: &str =
    "kind: workflow\nname: good\ntasks:\n  hello: { run: \"echo hello from good\" }\n";

/// A project whose `workflows/` holds one good file beside every kind of odd one.
fn odd_project(tag: &str) -> Scratch {
    let scratch = Scratch::new(tag);
    let wf = scratch.0.join("workflows");
    std::fs::create_dir(&wf).unwrap();
    std::fs::write(wf.join("good.yaml"), GOOD).unwrap();
    nix::unistd::mkfifo(&wf.join("fifo.yaml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::os::unix::fs::symlink("/dev/zero", wf.join("zero.yaml")).unwrap();
    let big = std::fs::File::create(wf.join("big.yaml")).unwrap();
    big.set_len(10_000_000).unwrap();
    std::fs::write(wf.join("latin1.yaml"), b"kind: workflow\nname: caf\xe9\n").unwrap();
    std::fs::write(wf.join("empty.yaml"), "").unwrap();
    scratch
}

#[test]
fn odd_files_are_problems_never_read_blindly() {
    let p = odd_project("odd");
    let out = bounded(&p.0, &["validate"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for (file, words) in [
        ("big.yaml", "file is 9.5 MiB, larger than the 4 MiB limit"),
        ("empty.yaml:1:1", "empty file"),
        ("fifo.yaml", "is a named pipe (FIFO), not a regular file"),
        ("latin1.yaml:2:10", "invalid UTF-8 (byte 0xe9)"),
        (
            "zero.yaml",
            "is a character device (through a symbolic link)",
        ),
    ] {
        let line = format!("workflows/{file}: ");
        let found = err
            .split("\n\n")
            .find(|d| d.starts_with(&line))
            .unwrap_or_else(|| panic!("no problem for {file}:\n{err}"));
        assert!(found.contains(words), "{found}");
    }
    assert!(err.ends_with("\n5 problem(s) in 5 file(s)\n"), "{err}");

    // Named one by one, they are reported the same way.
    let out = bounded(
        &p.0,
        &["validate", "workflows/fifo.yaml", "workflows/zero.yaml"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.ends_with("\n2 problem(s) in 2 file(s)\n"), "{err}");

    // A one-off run and a principal both start beside them and run the good workflow.
    let out = bounded(&p.0, &["run", "good", "--wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello from good"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut principal = Command::new(env!("CARGO_BIN_EXE_opsconsole"))
        .arg("principal")
        .current_dir(&p.0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start principal");
    let sock = p.0.join(".opsconsole/principal.sock");
    let t0 = std::time::Instant::now();
    while !sock.exists() && t0.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = bounded(&p.0, &["run", "good", "--wait"]);
    let status = bounded(&p.0, &["status"]);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(principal.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let stopped = principal.wait().expect("wait");
    assert!(
        out.status.success(),
        "through the principal: {}",
        stderr(&out)
    );
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.contains("5 problem(s) in workflow files"),
        "{status}"
    );
    assert!(status.contains("fifo.yaml"), "{status}");
    assert_eq!(stopped.code(), Some(0));
}

#[test]
fn an_unknown_key_does_not_hide_the_other_problems() {
    let scratch = Scratch::new("all");
    let file = scratch.0.join("all.yaml");
    std::fs::write(
        &file,
        concat!(
            "kind: workflow\n",
            "name: all\n",
            "owner: ops\n",
            "tasks:\n",
            "  a: { run: x, depends_on: [c] }\n",
            "  b: { run: y, depends_on: [nope] }\n",
            "  c: { run: z, depends_on: [a] }\n",
        ),
    )
    .unwrap();
    let out = validate(&[file.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let f = file.display();
    assert!(
        err.starts_with(&format!("{f}:3:1: unknown key `owner`")),
        "{err}"
    );
    assert!(
        err.contains(&format!("\n\n{f}:5:29: dependency cycle: a -> c -> a")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "\n\n{f}:6:29: task `b` depends on unknown task `nope`"
        )),
        "{err}"
    );
    assert!(err.ends_with("\n3 problem(s) in 1 file(s)\n"), "{err}");
}

#[test]
fn absurd_durations_and_counts_are_refused_where_written() {
    let scratch = Scratch::new("absurd");
    let file = scratch.0.join("absurd.yaml");
    std::fs::write(
        &file,
        concat!(
            "kind: workflow\n",
            "name: absurd\n",
            "tasks:\n",
            "  a:\n",
            "    run: x\n",
            "    retries: 1000000000000\n",
            "    backoff: { initial: 1s, max: 18446744073709551615s }\n",
        ),
    )
    .unwrap();
    let out = validate(&[file.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let f = file.display();
    assert!(
        err.starts_with(&format!(
            "{f}:6:14: `retries` is 1000000000000, more than the limit of 1000"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "\n\n{f}:7:34: `backoff.max` `18446744073709551615s` is longer than the limit of 24h (1 day)"
        )),
        "{err}"
    );
    assert!(err.ends_with("\n2 problem(s) in 1 file(s)\n"), "{err}");
}

/// A 1 MB environment variable could never be handed to a process (the kernel takes at most
/// 128 KiB per variable): `validate` refuses it at its position, for a task and a service.
#[test]
fn an_environment_variable_over_the_kernels_limit_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let big = "x".repeat(1_000_000);
    let task = dir.path().join("task.yaml");
    std::fs::write(
        &task,
        format!(
            "kind: workflow\nname: w\ntasks:\n  t:\n    run: env\n    env: {{ BIG: \"{big}\" }}\n"
        ),
    )
    .unwrap();
    let service = dir.path().join("svc.yaml");
    std::fs::write(
        &service,
        format!("kind: supervisor\nname: s\nchildren:\n  - {{ name: a, run: env, env: {{ BIG: {big} }} }}\n"),
    )
    .unwrap();
    for (file, line, col) in [(&task, 6, 17), (&service, 4, 38)] {
        let out = validate(&[file.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            &err[..err.len().min(2000)]
        );
        let prefix = format!(
            "{}:{line}:{col}: environment variable `BIG` is 1000004 bytes: the kernel hands at most 128 KiB",
            file.display()
        );
        assert!(
            err.starts_with(&prefix),
            "expected `{prefix}`, got:\n{}",
            &err[..err.len().min(2000)]
        );
        assert!(err.len() < 10_000, "the message does not repeat the value");
    }
}
