//! Unit tests for spec loading: one per kind of problem, with exact positions.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::*;

const FILE: &str = "workflows/t.yaml";

fn problems(text: &str) -> Vec<Diagnostic> {
    match parse_str(Path::new(FILE), text) {
        Ok(spec) => panic!("expected problems, got workflow `{}`", spec.name),
        Err(d) => d,
    }
}

/// The only problem in `text`.
fn problem(text: &str) -> Diagnostic {
    let d = problems(text);
    assert_eq!(d.len(), 1, "expected one problem, got {d:#?}");
    d.into_iter().next().unwrap()
}

#[track_caller]
fn assert_at(d: &Diagnostic, line: usize, col: usize, words: &[&str]) {
    assert_eq!((d.line, d.col), (line, col), "wrong position for: {d}");
    for w in words {
        assert!(d.message.contains(w), "`{w}` missing in: {}", d.message);
    }
    assert!(
        !d.message.contains('\n'),
        "multi-line message: {:?}",
        d.message
    );
}

fn ok(text: &str) -> WorkflowSpec {
    parse_str(Path::new(FILE), text).unwrap_or_else(|d| {
        let shown: Vec<String> = d.iter().map(ToString::to_string).collect();
        panic!("unexpected problems:\n{}", shown.join("\n"))
    })
}

/// A fresh, empty directory under the system temp dir.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("opsconsole-spec-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const GOOD: &str = r#"kind: workflow
name: nightly-etl
description: "Nightly ETL"
schedule: "0 2 * * *"
timezone: Europe/Berlin
overlap: cancel_previous
catchup: true
max_active_runs: 2
params: { region: eu, n: 3, ratio: 1.50, on: true, empty: }
tasks:
  extract:
    run: ["./extract.sh", "{{ params.region }}", "--n={{params.n}}"]
    retries: 3
    backoff: { initial: 250ms, max: 1m, multiplier: 3, jitter: false }
    timeout: 1h30m
    env: { RUN: "run {{ run.id }} of {{ task.name }}", PORT: 8080 }
    cwd: data
  transform:
    run: "python3 transform.py"
    depends_on: [extract]
  load:
    run: ["./load.sh"]
    depends_on: [transform, extract]
    trigger: all_done
"#;

#[test]
fn valid_workflow_is_fully_converted() {
    let spec = ok(GOOD);
    assert_eq!(spec.name, "nightly-etl");
    assert_eq!(spec.description.as_deref(), Some("Nightly ETL"));
    assert_eq!(spec.file, PathBuf::from(FILE));
    assert_eq!(spec.overlap, Overlap::CancelPrevious);
    assert!(spec.catchup && !spec.fail_fast);
    assert_eq!((spec.catchup_limit, spec.max_active_runs), (10, Some(2)));
    let sched = spec.schedule.as_ref().unwrap();
    assert_eq!(sched.expr, "0 2 * * *");
    assert_eq!(sched.timezone, Some(chrono_tz::Europe::Berlin));
    assert_eq!(spec.params["n"], "3");
    assert_eq!(spec.params["ratio"], "1.50", "scalars keep their spelling");
    assert_eq!(spec.params["on"], "true");
    assert_eq!(spec.params["empty"], "");
    let names: Vec<&str> = spec.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["extract", "transform", "load"],
        "file order is kept"
    );
    let extract = &spec.tasks[0];
    assert_eq!(extract.retries, 3);
    assert_eq!(extract.timeout, Some(Duration::from_secs(5400)));
    assert_eq!(
        extract.backoff,
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(60),
            multiplier: 3.0,
            jitter: false
        }
    );
    assert_eq!(extract.cwd.as_deref(), Some(Path::new("data")));
    let params = spec.params.clone();
    let ctx = RenderContext {
        params: &params,
        run_id: 7,
        task_name: "extract",
    };
    let CommandSpec::Argv(argv) = &extract.run else {
        panic!("argv expected")
    };
    let rendered: Vec<String> = argv.iter().map(|t| t.render(&ctx)).collect();
    assert_eq!(rendered, ["./extract.sh", "eu", "--n=3"]);
    assert_eq!(extract.env["RUN"].render(&ctx), "run 7 of extract");
    assert_eq!(extract.env["PORT"].render(&ctx), "8080");
    assert!(
        matches!(&spec.tasks[1].run, CommandSpec::Shell(t) if t.render(&ctx) == "python3 transform.py")
    );
    assert_eq!(spec.tasks[1].depends_on, [0]);
    assert_eq!(spec.tasks[2].depends_on, [1, 0]);
    assert_eq!(spec.tasks[2].trigger, TriggerRule::AllDone);
    assert_eq!(spec.tasks[1].trigger, TriggerRule::AllSuccess);
    assert_eq!(spec.tasks[1].backoff, Backoff::default());
}

#[test]
fn defaults_apply() {
    let spec = ok("kind: workflow\nname: w\ntasks:\n  a: { run: \"true\" }\n");
    assert_eq!(spec.overlap, Overlap::Skip);
    assert!(!spec.catchup && !spec.fail_fast);
    assert_eq!((spec.catchup_limit, spec.max_active_runs), (10, None));
    assert!(spec.schedule.is_none() && spec.params.is_empty());
    assert_eq!(spec.tasks[0].retries, 0);
    assert_eq!(spec.tasks[0].timeout, None);
}

#[test]
fn unknown_key_suggests_the_close_one() {
    let d = problem("kind: workflow\nnmae: w\ntasks:\n  a: { run: x }\n");
    assert_at(&d, 2, 1, &["unknown key `nmae`", "did you mean `name`?"]);
    let d = problem("kind: workflow\nname: w\ntasks:\n  a:\n    run: x\n    depnds_on: [b]\n");
    assert_at(
        &d,
        6,
        5,
        &["unknown key `depnds_on`", "did you mean `depends_on`?"],
    );
    let d = problem("kind: workflow\nname: w\ntasks:\n  a: { run: x, backoff: { zzz: 1 } }\n");
    assert_at(
        &d,
        4,
        27,
        &["unknown key `zzz`", "initial, max, multiplier, jitter"],
    );
}

#[test]
fn wrong_type_points_at_the_value() {
    let d = problem("kind: workflow\nname: w\nfail_fast: maybe\ntasks:\n  a: { run: x }\n");
    assert_at(&d, 3, 12, &["wrong type", "true or false"]);
    let d = problem("kind: workflow\nname: w\ntasks:\n  a: { run: x, retries: -1 }\n");
    assert_at(&d, 4, 25, &["wrong type", "whole number"]);
    let d = problem("kind: workflow\nname: w\ntasks:\n  - a\n");
    assert_at(&d, 4, 3, &["wrong type", "mapping"]);
    let d = problem("kind: workflow\nname: [w]\ntasks:\n  a: { run: x }\n");
    assert_at(&d, 2, 7, &["wrong type", "string"]);
}

#[test]
fn missing_required_key_points_at_its_mapping() {
    let d = problem("kind: workflow\ntasks:\n  a: { run: x }\n");
    assert_at(&d, 1, 1, &["missing required key `name`"]);
    let d =
        problem("kind: workflow\nname: w\ntasks:\n  a:\n    run: x\n  b:\n    depends_on: [a]\n");
    assert_at(&d, 6, 3, &["task `b` is missing required key `run`"]);
    let d = problem("# header\nkind: workflow\nname: w\n");
    assert_at(&d, 2, 1, &["missing required key `tasks`"]);
    let d = problem("kind: workflow\nname: w\ntasks:\n");
    assert_at(&d, 3, 6, &["`tasks` is empty"]);
    let d = problem("kind: workflow\nname: w\ntasks: {}\n");
    assert_at(&d, 3, 8, &["`tasks` is empty"]);
    let d = problems("description: x\n");
    assert_eq!(d.len(), 3, "kind, name and tasks are all reported: {d:#?}");
}

#[test]
fn duplicate_task_name_points_at_second_occurrence() {
    let d = problem(
        "kind: workflow\nname: w\ntasks:\n  a: { run: x }\n  b: { run: y }\n  a: { run: z }\n",
    );
    assert_at(&d, 6, 3, &["duplicate task name `a`", "line 4"]);
}

#[test]
fn duplicate_fixed_key_points_at_second_occurrence() {
    let d = problem("kind: workflow\nname: w\ntasks:\n  a: { run: x }\nname: v\n");
    assert_at(&d, 5, 1, &["duplicate key `name`"]);
}

#[test]
fn duplicate_param_and_env_are_reported() {
    let d = problems(
        "kind: workflow\nname: w\nparams: { a: 1, a: 2 }\ntasks:\n  t: { run: x, env: { K: 1, K: 2 } }\n",
    );
    assert_eq!(d.len(), 2, "{d:#?}");
    assert_at(&d[0], 3, 17, &["duplicate parameter `a`"]);
    assert_at(&d[1], 5, 29, &["duplicate environment variable `K`"]);
}

#[test]
fn same_workflow_name_in_two_files() {
    let dir = TempDir::new();
    let body = "kind: workflow\nname: w\ntasks:\n  a: { run: x }\n";
    let first = dir.write("a.yaml", body);
    dir.write("b.yml", format!("# copy\n{body}"));
    let (catalog, d) = load_dir(&dir.0);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].file, dir.0.join("b.yml"));
    assert_at(
        &d[0],
        3,
        7,
        &["`w` is already defined in", &first.display().to_string()],
    );
    assert_eq!(catalog.get("w").unwrap().file, first);
}

/// On a reload the file that defined a name keeps it, even while it has problems, and a new
/// file that sorts first is the one refused, at its own name.
#[test]
fn on_a_reload_the_file_that_defined_a_name_keeps_it() {
    let dir = TempDir::new();
    let body = "kind: workflow\nname: w\ntasks:\n  a: { run: x }\n";
    let sup = "kind: supervisor\nname: s\nchildren:\n  - { name: c, run: x }\n";
    let orig = dir.write("zz.yaml", body);
    let orig_sup = dir.write("zz-sup.yaml", sup);
    let (before, d) = load_dir(&dir.0);
    assert!(d.is_empty(), "{d:#?}");
    let owners = before.owners();
    let newcomer = dir.write("0.yaml", format!("# new\n{body}"));
    let newcomer_sup = dir.write("0-sup.yaml", format!("# new\n{sup}"));
    let (catalog, d) = crate::spec::reload_dir(&dir.0, &owners);
    assert_eq!(d.len(), 2, "{d:#?}");
    let at = |file: &Path| d.iter().find(|x| x.file == file).expect("a problem there");
    assert_at(
        at(&newcomer),
        3,
        7,
        &[
            "workflow `w` is already defined in",
            &orig.display().to_string(),
        ],
    );
    assert_at(
        at(&newcomer_sup),
        3,
        7,
        &[
            "supervisor `s` is already defined in",
            &orig_sup.display().to_string(),
        ],
    );
    assert_eq!(catalog.get("w").unwrap().file, orig);
    assert_eq!(catalog.supervisors["s"].file, orig_sup);
    // A first load keeps today's rule: the first file in sorted order.
    let (fresh, _) = load_dir(&dir.0);
    assert_eq!(fresh.get("w").unwrap().file, newcomer);
    // The owner breaks: the name stays with it (its last good version runs), not the newcomer.
    dir.write("zz.yaml", "kind: workflow\nname: w\ntasks: {\n");
    let (catalog, d) = crate::spec::reload_dir(&dir.0, &owners);
    assert!(catalog.get("w").is_none(), "{catalog:#?}");
    assert_at(
        at_file(&d, &newcomer),
        3,
        7,
        &["workflow `w` is already defined in", "has problems now"],
    );
}

fn at_file<'a>(d: &'a [Diagnostic], file: &Path) -> &'a Diagnostic {
    d.iter()
        .find(|x| x.file == file)
        .unwrap_or_else(|| panic!("no problem in {}: {d:#?}", file.display()))
}

#[test]
fn dependency_cycle_names_every_member() {
    let d = problem(
        "kind: workflow\nname: w\ntasks:\n  a:\n    run: x\n    depends_on: [c]\n  b:\n    run: x\n    depends_on: [a]\n  c:\n    run: x\n    depends_on: [b]\n  d: { run: x, depends_on: [a] }\n",
    );
    assert_at(&d, 6, 18, &["dependency cycle: a -> c -> b -> a"]);
    let d = problem(
        "kind: workflow\nname: w\ntasks:\n  a: { run: x, depends_on: [b, a] }\n  b: { run: y }\n",
    );
    assert_at(&d, 4, 32, &["`a` depends on itself"]);
}

#[test]
fn cycle_messages_stay_readable() {
    let d = problem(
        "kind: workflow\nname: w\ntasks:\n  a: { run: x, depends_on: [b] }\n  b: { run: x, depends_on: [a, c] }\n  c: { run: x, depends_on: [b] }\n",
    );
    assert_at(
        &d,
        4,
        29,
        &["dependency cycle: a -> b -> a", "also caught in it: c"],
    );
    let mut ring = String::from("kind: workflow\nname: w\ntasks:\n");
    for i in 0..30 {
        ring.push_str(&format!(
            "  t{i}: {{ run: x, depends_on: [t{}] }}\n",
            (i + 1) % 30
        ));
    }
    let d = problem(&ring);
    assert_at(
        &d,
        4,
        30,
        &["dependency cycle: t0 -> t1 -> ", "(19 more) -> t29 -> t0"],
    );
}

#[test]
fn unknown_dependency_points_at_the_entry() {
    let d = problem(
        "kind: workflow\nname: w\ntasks:\n  extract: { run: x }\n  load:\n    run: y\n    depends_on:\n      - extract\n      - extrct\n",
    );
    assert_at(
        &d,
        9,
        9,
        &["unknown task `extrct`", "did you mean `extract`?"],
    );
}

#[test]
fn bad_cron_expressions() {
    let wf = |sched: &str| {
        format!(
            "kind: workflow\nname: w\nschedule: {sched}\ntimezone: UTC\ntasks:\n  a: {{ run: x }}\n"
        )
    };
    assert_at(&problem(&wf("\"0 2 * *\"")), 3, 11, &["cron", "4 field(s)"]);
    assert_at(
        &problem(&wf("61 * * * *")),
        3,
        11,
        &["invalid cron expression `61 * * * *`", "minute"],
    );
    assert_at(
        &problem(&wf("\"0 25 * * *\"")),
        3,
        14,
        &["hour field `25`", "0-23"],
    );
    assert_at(
        &problem(&wf("0 0 2 * * 8")),
        3,
        21,
        &["day-of-week field `8`"],
    );
    assert_at(
        &problem(&wf("\"0 0 2 * * * 2030\"")),
        3,
        11,
        &["7 field(s)"],
    );
    assert!(
        ok(&wf("\"*/10 0 2 * * *\"")).schedule.is_some(),
        "6 fields: seconds first"
    );
    assert!(ok(&wf("\"@daily\"")).schedule.is_some());
    let d = problem(
        "kind: workflow\nname: w\nschedule: \"0 2 * * *\"\ntimezone: Europe/Berlinn\ntasks:\n  a: { run: x }\n",
    );
    assert_at(
        &d,
        4,
        11,
        &["unknown time zone", "did you mean `Europe/Berlin`?"],
    );
    let d = problem("kind: workflow\nname: w\ntimezone: UTC\ntasks:\n  a: { run: x }\n");
    assert_at(&d, 3, 11, &["`timezone` applies only to a `schedule`"]);
}

#[test]
fn bad_durations() {
    let d = problems(
        "kind: workflow\nname: w\ntasks:\n  a:\n    run: x\n    timeout: 5x\n    backoff: { initial: fast, max: 30 }\n",
    );
    assert_eq!(d.len(), 3, "{d:#?}");
    assert_at(
        &d[0],
        6,
        14,
        &["`timeout`", "invalid duration `5x`", "250ms"],
    );
    assert_at(&d[1], 7, 25, &["`backoff.initial`", "`fast`"]);
    assert_at(&d[2], 7, 36, &["`backoff.max`", "no unit"]);
    let d = problem("kind: workflow\nname: w\ntasks:\n  a: { run: x, timeout: 0s }\n");
    assert_at(&d, 4, 25, &["greater than 0"]);
}

#[test]
fn empty_commands_are_all_reported() {
    let d = problems(
        "kind: workflow\nname: w\ntasks:\n  a: { run: [] }\n  b: { run: \"\" }\n  c: { run: [\"\"] }\n  d: { run: }\n  e: { run: [\"ok\", \"\"] }\n",
    );
    assert_eq!(d.len(), 4, "{d:#?}");
    assert_at(&d[0], 4, 13, &["empty command"]);
    assert_at(&d[1], 5, 13, &["empty command"]);
    assert_at(&d[2], 6, 14, &["empty command"]);
    assert_at(&d[3], 7, 11, &["empty command"]);
}

#[test]
fn unknown_template_reference_points_at_its_braces() {
    let d = problems(concat!(
        "kind: workflow\nname: w\nparams: { region: eu }\ntasks:\n",
        "  a:\n    run: echo {{ params.regoin }}\n", // 6: plain
        "  b:\n    run: \"x {{ run.id }} {{ nope }}\"\n", // 8: double-quoted, second one
        "  c:\n    run: ['ok', 'say {{ task.nam }}']\n", // 10: single-quoted argv element
        "  d:\n    run: x\n    env:\n      K: |\n        one\n        two {{ params.x }}\n", // 16: block
        "  e:\n    run: \"\\t {{ env.X }}\"\n", // 18: escape before the braces
    ));
    assert_eq!(d.len(), 5, "{d:#?}");
    assert_at(&d[0], 6, 15, &["unknown parameter `regoin`", "params:"]);
    assert_at(&d[1], 8, 26, &["unknown reference `{{ nope }}`"]);
    assert_at(&d[2], 10, 22, &["unknown reference `{{ task.nam }}`"]);
    assert_at(&d[3], 16, 13, &["unknown parameter `x`"]);
    assert_at(&d[4], 18, 14, &["unknown reference `{{ env.X }}`"]);
}

#[test]
fn unclosed_template_is_reported() {
    let d = problem("kind: workflow\nname: w\ntasks:\n  a: { run: 'echo {{ run.id' }\n");
    assert_at(&d, 4, 19, &["unclosed"]);
}

/// The classic "billion laughs": nine levels of nine aliases each (9^9 strings if expanded).
fn alias_bomb(indent: &str) -> String {
    let mut s = format!(
        "{indent}a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
    );
    for (prev, cur) in "abcdefgh".chars().zip("bcdefghi".chars()) {
        let refs = vec![format!("*{prev}"); 9].join(",");
        s.push_str(&format!("{indent}{cur}: &{cur} [{refs}]\n"));
    }
    s
}

#[test]
fn alias_bomb_is_rejected() {
    let top = alias_bomb("");
    assert!(!problems(&top).is_empty());
    let nested = format!(
        "kind: workflow\nname: w\nparams:\n{}tasks:\n  t: {{ run: x }}\n",
        alias_bomb("  ")
    );
    assert_eq!(problems(&nested)[0].line, 4);
    let in_run =
        "kind: workflow\nname: w\ntasks:\n  a: { run: &a [x, y] }\n  b: { run: [*a, *a] }\n";
    assert_at(&problem(in_run), 5, 14, &["wrong type"]);
}

/// Counts the strings of any nesting of sequences and mappings, expanding every alias.
struct Leaves(u64);

impl<'de> Deserialize<'de> for Leaves {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Leaves;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("anything")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Leaves, E> {
                Ok(Leaves(1))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Leaves, A::Error> {
                let mut n = 0;
                while let Some(Leaves(k)) = seq.next_element()? {
                    n += k;
                }
                Ok(Leaves(n))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Leaves, A::Error> {
                let mut n = 0;
                while let Some((_, Leaves(k))) = map.next_entry::<String, Leaves>()? {
                    n += k;
                }
                Ok(Leaves(n))
            }
        }
        d.deserialize_any(V)
    }
}

#[test]
fn parser_limits_stop_alias_expansion() {
    let options = yaml_error::options(serde_saphyr::DuplicateKeyPolicy::PassThrough);
    let err = serde_saphyr::from_str_with_options::<Leaves>(&alias_bomb(""), options)
        .map(|l| l.0)
        .expect_err("a 9-level alias bomb must not be expanded");
    assert!(
        yaml_error::message(&err).contains("alias bomb"),
        "{}",
        yaml_error::message(&err)
    );
    // A few legitimate aliases still work.
    let options = yaml_error::options(serde_saphyr::DuplicateKeyPolicy::PassThrough);
    let small = "a: &a [p, q]\nb: [*a, *a]\n";
    assert_eq!(
        serde_saphyr::from_str_with_options::<Leaves>(small, options)
            .unwrap()
            .0,
        6
    );
}

#[test]
fn non_utf8_file_points_at_first_bad_byte() {
    let dir = TempDir::new();
    let path = dir.write(
        "bad.yaml",
        b"kind: workflow\nname: w\ndescription: \"caf\xe9\"\n",
    );
    let (catalog, d) = load_paths(&[path]);
    assert!(catalog.workflows.is_empty());
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_at(&d[0], 3, 18, &["UTF-8", "0xe9"]);
    assert_eq!(
        d[0].source_line.as_deref(),
        Some("description: \"caf\u{fffd}\"")
    );
}

#[test]
fn empty_files() {
    assert_at(&problem(""), 1, 1, &["empty file"]);
    assert_at(&problem("# nothing yet\n\n"), 1, 1, &["empty file"]);
    assert_at(&problem("---\n"), 1, 1, &["empty file"]);
}

#[test]
fn large_files_load_or_are_rejected_with_the_limit() {
    let mut text = String::from("kind: workflow\nname: big\ntasks:\n");
    let mut i = 0;
    while text.len() < 3 * 1024 * 1024 {
        let dep = if i > 0 {
            format!(", depends_on: [t{}]", i - 1)
        } else {
            String::new()
        };
        text.push_str(&format!(
            "  t{i}: {{ run: [\"./step.sh\", \"{{{{ task.name }}}}\"]{dep} }}\n"
        ));
        i += 1;
    }
    let spec = ok(&text);
    assert_eq!(spec.tasks.len(), i);

    let dir = TempDir::new();
    let big = dir.write(
        "big.yaml",
        format!("{text}{}", "# padding\n".repeat(220_000)),
    );
    let (_, d) = load_paths(&[big]);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!((d[0].line, d[0].col), (0, 0));
    assert!(d[0].message.contains("4 MiB limit"), "{}", d[0].message);
    let huge_scalar = format!(
        "kind: workflow\nname: w\ndescription: \"{}\"\n",
        "x".repeat(5 << 20)
    );
    assert!(problem(&huge_scalar).message.contains("4 MiB limit"));
}

#[test]
fn other_kinds_are_not_workflows() {
    let d = problem("kind: monitor\nname: api\nevery: 30s\ncheck: { push: {} }\n");
    assert_at(&d, 1, 7, &["this is a `kind: monitor` document"]);
    // A supervisor is read as one (see supervisor/tests.rs), so its problems are its own.
    let d = problems("kind: supervisor\nname: web\ntasks:\n  a: { run: x }\n");
    assert_at(&d[0], 1, 1, &["missing required key `children`"]);
    assert_at(&d[1], 3, 1, &["unknown key `tasks`"]);
    let d = problem("kind: workflw\nname: w\ntasks:\n  a: { run: x }\n");
    assert_at(
        &d,
        1,
        7,
        &["unknown kind `workflw`", "did you mean `workflow`?"],
    );
    let d = problem("# a comment\nkind: cron\nevery: 1m\n");
    assert_at(&d, 2, 7, &["unknown kind `cron`"]);
    let d = problem("name: w\ntasks:\n  a: { run: x }\n");
    assert_at(
        &d,
        1,
        1,
        &["missing required key `kind`: add `kind: workflow`"],
    );
    // Without `kind`, a monitor's or a supervisor's keys say which kind to add, and nothing
    // is said of what a workflow would lack.
    for (text, kind) in [
        (
            "monitors:\n  - name: a\n    check: { push: {} }\n",
            "monitor",
        ),
        ("name: m\ncheck: { tcp: { host: a, port: 1 } }\n", "monitor"),
        ("name: s\nchildren:\n  web: { run: x }\n", "supervisor"),
    ] {
        let d = problem(text);
        assert_at(
            &d,
            1,
            1,
            &[&format!("missing required key `kind`: add `kind: {kind}`")],
        );
    }
}

#[test]
fn several_documents_are_rejected() {
    let body = "kind: workflow\nname: w\ntasks:\n  a: { run: x }\n";
    assert_at(
        &problem(&format!("{body}---\n{body}")),
        6,
        1,
        &["more than one YAML document"],
    );
}

#[test]
fn bad_choices_and_names() {
    let d = problems(concat!(
        "kind: workflow\nname: \"my flow\"\noverlap: skipp\nmax_active_runs: 0\n",
        "tasks:\n  a b: { run: x, trigger: all_sucess }\n"
    ));
    assert_eq!(d.len(), 5, "{d:#?}");
    assert_at(&d[0], 2, 7, &["invalid workflow name `my flow`"]);
    assert_at(
        &d[1],
        3,
        10,
        &["unknown overlap policy `skipp`", "did you mean `skip`?"],
    );
    assert_at(&d[2], 4, 18, &["at least 1"]);
    assert_at(&d[3], 6, 3, &["invalid task name `a b`"]);
    assert_at(
        &d[4],
        6,
        27,
        &["unknown trigger rule", "did you mean `all_success`?"],
    );
}

/// Names start with a letter, digit or `_`: `..`, `...`, `-` and `.x` are refused, for
/// workflows, tasks and supervisors alike; names valid before stay valid.
#[test]
fn names_that_read_as_paths_or_options_are_refused() {
    for name in ["..", "...", "-", ".", "-x", ".hidden"] {
        let d = problem(&format!(
            "kind: workflow\nname: \"{name}\"\ntasks:\n  a: {{ run: x }}\n"
        ));
        assert_at(
            &d,
            2,
            7,
            &[&format!("invalid workflow name `{name}`"), "starting with"],
        );
        let d = problem(&format!(
            "kind: workflow\nname: w\ntasks:\n  \"{name}\": {{ run: x }}\n"
        ));
        assert_at(&d, 4, 3, &[&format!("invalid task name `{name}`")]);
        let d = problem(&format!(
            "kind: supervisor\nname: \"{name}\"\nchildren:\n  - {{ name: a, run: x }}\n"
        ));
        assert_at(&d, 2, 7, &[&format!("invalid supervisor name `{name}`")]);
    }
    for name in ["a", "_a", "9", "a.b-c_d", "A..", "x-"] {
        ok(&format!(
            "kind: workflow\nname: \"{name}\"\ntasks:\n  \"{name}\": {{ run: x }}\n"
        ));
    }
}

#[test]
fn semantic_problems_are_reported_together_in_order() {
    let d = problems(concat!(
        "kind: workflow\nname: w\nschedule: \"0 2 * *\"\n",
        "tasks:\n",
        "  a: { run: [], depends_on: [b] }\n",
        "  b: { run: \"{{ x }}\", depends_on: [a, zz], timeout: 1y }\n",
        "  c: { run: ok, backoff: { multiplier: 0.5 } }\n",
    ));
    let at: Vec<(usize, usize)> = d.iter().map(|x| (x.line, x.col)).collect();
    assert_eq!(
        at,
        [
            (3, 11),
            (5, 13),
            (5, 30),
            (6, 14),
            (6, 40),
            (6, 54),
            (7, 40)
        ],
        "{d:#?}"
    );
    assert!(d[2].message.contains("dependency cycle: a -> b -> a"));
}

#[test]
fn display_shows_position_line_and_caret() {
    let d = Diagnostic {
        file: PathBuf::from("workflows/x.yaml"),
        line: 3,
        col: 4,
        message: "boom".into(),
        source_line: Some("\tab: c".into()),
    };
    assert_eq!(
        d.to_string(),
        "workflows/x.yaml:3:4: boom\n  |  \tab: c\n  |  \t  ^"
    );
    let whole = Diagnostic {
        line: 0,
        col: 0,
        source_line: None,
        ..d
    };
    assert_eq!(whole.to_string(), "workflows/x.yaml: boom");
}

#[test]
fn display_crops_very_long_lines_around_the_column() {
    let line = format!("{}X{}", "a".repeat(500), "b".repeat(500));
    let d = Diagnostic {
        file: PathBuf::from("f.yaml"),
        line: 1,
        col: 501,
        message: "m".into(),
        source_line: Some(line),
    };
    let text = d.to_string();
    let lines: Vec<&str> = text.lines().collect();
    let caret = lines[2].chars().count() - 1;
    assert_eq!(lines[1].chars().nth(caret), Some('X'), "{text}");
    assert!(lines[1].chars().count() < 140);
}

#[test]
fn load_dir_reads_sorted_yaml_files_only() {
    let dir = TempDir::new();
    dir.write(
        "b.yaml",
        "kind: workflow\nname: b\ntasks:\n  a: { run: x }\n",
    );
    dir.write(
        "a.yml",
        "kind: workflow\nname: a\ntasks:\n  a: { run: x }\n",
    );
    dir.write("notes.txt", "not yaml");
    dir.write(".#b.yaml", "editor lock file");
    let (catalog, d) = load_dir(&dir.0);
    assert!(d.is_empty(), "{d:#?}");
    let names: Vec<&String> = catalog.workflows.keys().collect();
    assert_eq!(names, ["a", "b"]);
    let again = load_paths(&[dir.0.clone(), dir.0.join("a.yml")]);
    assert!(
        again.1.is_empty(),
        "a file named twice is read once: {:#?}",
        again.1
    );
}

#[test]
fn missing_directory_is_one_clear_problem() {
    let (catalog, d) = load_dir(Path::new("/nonexistent/opsconsole/workflows"));
    assert!(catalog.workflows.is_empty());
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].line, d[0].col), (0, 0));
    assert!(
        d[0].message
            .contains("no workflows directory at /nonexistent/opsconsole/workflows")
    );
    assert!(d[0].message.contains("--workflows DIR"));
    let (_, d) = load_paths(&[PathBuf::from("/nonexistent/x.yaml")]);
    assert!(
        d[0].message.contains("cannot read /nonexistent/x.yaml"),
        "{}",
        d[0].message
    );
}

#[test]
fn unknown_keys_do_not_hide_the_other_problems() {
    let d = problems(concat!(
        "kind: workflow\nname: w\nowner: ops\n",
        "tasks:\n",
        "  a: { run: x, depends_on: [c], colour: red }\n",
        "  b: { run: y, depends_on: [nope], backoff: { initial: 1s, zzz: 2 } }\n",
        "  c: { run: z, depends_on: [a] }\n",
        "name: again\n",
    ));
    let at: Vec<(usize, usize)> = d.iter().map(|x| (x.line, x.col)).collect();
    assert_eq!(
        at,
        [(3, 1), (5, 29), (5, 33), (6, 29), (6, 60), (8, 1)],
        "{d:#?}"
    );
    assert!(d[0].message.contains("unknown key `owner`"), "{}", d[0]);
    assert!(d[1].message.contains("dependency cycle"), "{}", d[1]);
    assert!(d[2].message.contains("unknown key `colour`"), "{}", d[2]);
    assert!(d[3].message.contains("unknown task `nope`"), "{}", d[3]);
    assert!(d[4].message.contains("unknown key `zzz`"), "{}", d[4]);
    assert!(d[5].message.contains("duplicate key `name`"), "{}", d[5]);
}

#[test]
fn a_misspelt_required_key_is_reported_once() {
    // `nmae` is the problem; "missing `name`" would only repeat it.
    let d = problem("kind: workflow\nnmae: w\ntasks:\n  a: { run: x }\n");
    assert_at(&d, 2, 1, &["unknown key `nmae`"]);
    let d = problems("kind: workflow\nnmae: w\ntasks:\n  a: { rn: x }\n");
    assert_eq!(d.len(), 2, "{d:#?}");
    assert_at(&d[1], 4, 8, &["unknown key `rn`", "did you mean `run`?"]);
    let d = problems("kidn: workflow\nname: w\ntaks:\n  a: { run: x }\n");
    assert_eq!(d.len(), 2, "{d:#?}");
    assert_at(&d[0], 1, 1, &["unknown key `kidn`", "`kind`"]);
    assert_at(&d[1], 3, 1, &["unknown key `taks`", "`tasks`"]);
}

#[test]
fn durations_and_counts_have_upper_bounds() {
    let d = problems(concat!(
        "kind: workflow\nname: w\nmax_active_runs: 1000000000000\ncatchup_limit: 5000\n",
        "tasks:\n",
        "  a:\n",
        "    run: x\n",
        "    timeout: 18446744073709551615s\n",
        "    retries: 1000000000000\n",
        "    backoff: { initial: 18446744073709551615s, max: 999999h, multiplier: 1e300 }\n",
        "  b: { run: x, timeout: 721h, backoff: { max: 25h } }\n",
    ));
    let at: Vec<(usize, usize)> = d.iter().map(|x| (x.line, x.col)).collect();
    assert_eq!(
        at,
        [
            (3, 18),
            (4, 16),
            (8, 14),
            (9, 14),
            (10, 25),
            (10, 53),
            (10, 74),
            (11, 25),
            (11, 47)
        ],
        "{d:#?}"
    );
    let words = [
        "`max_active_runs` is 1000000000000, more than the limit of 10000",
        "`catchup_limit` is 5000, more than the limit of 1000",
        "`timeout` `18446744073709551615s` is longer than the limit of 720h (30 days)",
        "`retries` is 1000000000000, more than the limit of 1000",
        "`backoff.initial` `18446744073709551615s` is longer than the limit of 24h (1 day)",
        "`backoff.max` `999999h` is longer than the limit of 24h (1 day)",
        "`backoff.multiplier` must be a number from 1 to 100",
        "`timeout` `721h` is longer than the limit of 720h",
        "`backoff.max` `25h` is longer",
    ];
    for (d, w) in d.iter().zip(words) {
        assert!(d.message.contains(w), "`{w}` not in {d}");
    }
    // Values beyond u64 are refused by the parser, at the value, as numbers too large.
    let d = problem(
        "kind: workflow\nname: w\ntasks:\n  a: { run: x, timeout: 99999999999999999999999h }\n",
    );
    assert_at(&d, 4, 25, &["`timeout`", "too large"]);
    let d = problem(
        "kind: workflow\nname: w\ntasks:\n  a: { run: x, retries: 100000000000000000000000 }\n",
    );
    assert_eq!(d.line, 4, "{d}");

    // The limits themselves are allowed.
    let spec = ok(concat!(
        "kind: workflow\nname: w\nmax_active_runs: 10000\ncatchup_limit: 1000\n",
        "tasks:\n",
        "  a:\n",
        "    run: x\n",
        "    timeout: 720h\n",
        "    retries: 1000\n",
        "    backoff: { initial: 24h, max: 24h, multiplier: 100 }\n",
    ));
    assert_eq!(spec.max_active_runs, Some(10_000));
    assert_eq!(spec.catchup_limit, 1000);
    assert_eq!(spec.tasks[0].retries, 1000);
    assert_eq!(spec.tasks[0].timeout, Some(limits::MAX_TIMEOUT));
    assert_eq!(spec.tasks[0].backoff.max, limits::MAX_BACKOFF);
}

#[test]
fn backoff_delay_saturates_for_any_attempt_and_any_fields() {
    let fixed = |initial: Duration, max: Duration, multiplier: f64| Backoff {
        initial,
        max,
        multiplier,
        jitter: false,
    };
    let b = fixed(Duration::from_secs(1), Duration::from_secs(60), 2.0);
    assert_eq!(b.delay(1), Duration::from_secs(1));
    assert_eq!(b.delay(2), Duration::from_secs(2));
    assert_eq!(b.delay(4), Duration::from_secs(8));
    assert_eq!(b.delay(7), Duration::from_secs(60));
    assert_eq!(
        b.delay(0),
        Duration::from_secs(1),
        "attempt 0 counts as the first"
    );
    for attempt in [64, 65, 1000, u32::MAX - 1, u32::MAX] {
        assert_eq!(
            b.delay(attempt),
            Duration::from_secs(60),
            "attempt {attempt}"
        );
    }
    // Fields no validation would let through: still a delay within `max`, never a panic.
    let huge = Duration::from_secs(u64::MAX);
    let odd = [
        fixed(huge, huge, 2.0),
        fixed(huge, huge, f64::MAX),
        fixed(Duration::from_secs(1), huge, f64::INFINITY),
        fixed(Duration::from_secs(1), huge, f64::NAN),
        fixed(Duration::ZERO, huge, f64::MAX),
        fixed(Duration::from_secs(1), huge, -5.0),
        fixed(huge, Duration::from_secs(3), 1e300),
        fixed(Duration::MAX, Duration::MAX, 1e300),
    ];
    for b in odd {
        for jitter in [false, true] {
            let b = Backoff { jitter, ..b };
            for attempt in [0, 1, 2, 63, 64, 65, u32::MAX] {
                let d = b.delay(attempt);
                assert!(d <= b.max, "{b:?} attempt {attempt}: {d:?}");
            }
        }
    }
    assert_eq!(
        fixed(Duration::ZERO, huge, f64::MAX).delay(9),
        Duration::ZERO
    );
    assert_eq!(
        fixed(Duration::from_secs(1), Duration::from_secs(60), f64::NAN).delay(9),
        Duration::from_secs(1),
        "a factor that is not a number does not grow the delay"
    );
    // Jitter stays within [delay/2, delay].
    let j = Backoff {
        jitter: true,
        ..fixed(Duration::from_secs(8), Duration::from_secs(60), 2.0)
    };
    for _ in 0..100 {
        let d = j.delay(1);
        assert!(
            d >= Duration::from_secs(4) && d <= Duration::from_secs(8),
            "{d:?}"
        );
    }
}

#[test]
fn odd_files_in_the_directory_are_reported_and_good_ones_load() {
    let dir = TempDir::new();
    dir.write(
        "good.yaml",
        "kind: workflow\nname: good\ntasks:\n  a: { run: x }\n",
    );
    nix::unistd::mkfifo(&dir.0.join("fifo.yaml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.0.join("zero.yaml")).unwrap();
    dir.write(
        "real.txt",
        "kind: workflow\nname: linked\ntasks:\n  a: { run: x }\n",
    );
    std::os::unix::fs::symlink(dir.0.join("real.txt"), dir.0.join("link.yml")).unwrap();
    std::os::unix::fs::symlink(dir.0.join("gone"), dir.0.join("dangling.yaml")).unwrap();
    std::fs::create_dir(dir.0.join("sub.yaml")).unwrap();
    dir.write("latin1.yaml", b"kind: workflow\nname: caf\xe9\n");
    dir.write("empty.yaml", "");
    let big = std::fs::File::create(dir.0.join("big.yaml")).unwrap();
    big.set_len(10 << 20).unwrap();

    let (catalog, d) = load_dir(&dir.0);
    assert_eq!(
        catalog.workflows.keys().collect::<Vec<_>>(),
        ["good", "linked"],
        "a symbolic link to a regular file is read"
    );
    let mut by_file: Vec<(String, &str)> = d
        .iter()
        .map(|p| {
            let name = p.file.file_name().unwrap().to_string_lossy().into_owned();
            (name, p.message.as_str())
        })
        .collect();
    by_file.sort();
    let expect = [
        ("big.yaml", "10.0 MiB, larger than the 4 MiB limit"),
        ("dangling.yaml", "dangling symbolic link"),
        ("empty.yaml", "empty file"),
        ("fifo.yaml", "named pipe (FIFO)"),
        ("latin1.yaml", "invalid UTF-8"),
        ("sub.yaml", "is a directory"),
        ("zero.yaml", "character device (through a symbolic link)"),
    ];
    assert_eq!(by_file.len(), expect.len(), "{d:#?}");
    for ((file, message), (want_file, words)) in by_file.iter().zip(expect) {
        assert_eq!(file, want_file);
        assert!(message.contains(words), "{file}: {message}");
    }
    // Named explicitly, an odd file is reported the same way.
    let (_, d) = load_paths(&[dir.0.join("fifo.yaml"), dir.0.join("zero.yaml")]);
    assert_eq!(d.len(), 2, "{d:#?}");
}

#[test]
fn a_schedule_that_never_fires_is_refused() {
    for never in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 0 31 2 *"] {
        let text =
            format!("kind: workflow\nname: w\nschedule: \"{never}\"\ntasks:\n  a: {{ run: x }}\n");
        let d = problem(&text);
        assert_at(&d, 3, 11, &["never fires", never]);
    }
    // Rare is not never.
    for rare in ["0 0 29 2 *", "0 0 31 12 *", "0 0 13 * 5"] {
        let text =
            format!("kind: workflow\nname: w\nschedule: \"{rare}\"\ntasks:\n  a: {{ run: x }}\n");
        assert!(ok(&text).schedule.is_some(), "{rare}");
    }
}

#[test]
fn max_output_is_a_size_within_bounds_for_tasks_and_services() {
    let spec = parse_str(
        Path::new(FILE),
        "kind: workflow\nname: w\ntasks:\n  a: { run: x, max_output: 512KiB }\n  b: { run: x }\n",
    )
    .expect("valid");
    assert_eq!(spec.tasks[0].max_output, 512 * 1024);
    assert_eq!(spec.tasks[1].max_output, 64 << 20, "the default");
    let d = problems(
        "kind: workflow\nname: w\ntasks:\n  a: { run: x, max_output: 2GiB }\n  b: { run: x, max_output: 5 parsecs }\n  c: { run: x, max_output: 10 }\n",
    );
    assert_at(&d[0], 4, 28, &["`max_output`", "from 1 KiB to 1 GiB"]);
    assert_at(&d[1], 5, 28, &["`max_output`", "unknown unit"]);
    assert_at(&d[2], 6, 28, &["`max_output`", "out of bounds"]);
}
