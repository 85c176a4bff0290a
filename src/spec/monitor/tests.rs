//! Monitor documents: every problem at its line and column, Gatus conditions unchanged,
//! fleets from lists and CSV files, names across files, and a million targets measured.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::protocol::check::{DnsRecord, HttpMethod, Probe};
use crate::protocol::monitor::{Action, Trigger};
use crate::spec::{Diagnostic, Document, load_paths, parse_document};

const FILE: &str = "workflows/m.yaml";

fn problems(text: &str) -> Vec<Diagnostic> {
    match parse_document(Path::new(FILE), text) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(d) => d,
    }
}

#[track_caller]
fn problem_at(text: &str, line: usize, col: usize, words: &str) {
    let d = problems(text);
    assert!(
        d.iter()
            .any(|d| (d.line, d.col) == (line, col) && d.message.contains(words)),
        "expected `{words}` at {line}:{col}, got:\n{}",
        d.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A directory holding `files`, loaded.
fn load(files: &[(&str, &str)]) -> (tempfile::TempDir, crate::spec::Catalog, Vec<Diagnostic>) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let (catalog, diags) = crate::spec::load_dir(dir.path());
    (dir, catalog, diags)
}

const TCP: &str = "kind: monitor\nname: db\ncheck: { tcp: { host: 127.0.0.1, port: 5432 } }\n";

#[test]
fn a_monitor_loads_with_its_defaults() {
    let (_d, catalog, diags) = load(&[("m.yaml", TCP)]);
    assert!(diags.is_empty(), "{diags:#?}");
    let m = catalog.monitors.get("db").expect("loaded");
    assert_eq!(m.every(), Duration::from_secs(60));
    assert_eq!(m.timeout(), Duration::from_secs(10));
    assert_eq!(m.thresholds().unhealthy_after, 3);
    assert_eq!(m.thresholds().healthy_after, 2);
    assert_eq!(m.quorum(), 1);
    assert_eq!(m.kind(), "tcp");
    let texts: Vec<&str> = m.conditions().iter().map(|c| &*c.text).collect();
    assert_eq!(texts, ["[CONNECTED] == true"]);
    match m.probe() {
        Probe::Tcp(t) => assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 5432)),
        other => panic!("{other:?}"),
    }
    assert!(catalog.monitors.get("nope").is_none());
    assert_eq!(catalog.monitors.len(), 1);
}

#[test]
fn every_key_is_read() {
    let text = r#"kind: monitor
name: api
description: the public API
every: 30s
timeout: 2s
check:
  http:
    url: "https://127.0.0.1:8443/health"
    method: post
    headers: { Authorization: "Bearer x", X-Id: 7 }
    body: "{}"
    follow_redirects: false
    insecure_skip_verify: true
    max_body: 64KiB
conditions: ["[STATUS] == 200", "[BODY].status == ok"]
degraded_when: ["[RESPONSE_TIME] < 300"]
unhealthy_after: 5
healthy_after: 1
maintenance:
  - { cron: "0 3 * * SUN", duration: 1h, timezone: Europe/Berlin }
tags: [prod, api]
from: [{ region: eu }, { region: us, net: v6 }]
quorum: 2
on_unhealthy:
  - { restart: web/api, cooldown: 1m, max_attempts: 2 }
  - { run: page-oncall, params: { who: "{{ monitor }}", why: "{{ cause }}" } }
  - { command: ["./notify.sh", "x"], env: { A: 1 }, timeout: 30s }
on_recovered:
  - webhook: { url: "http://127.0.0.1:9/hook", headers: { X-Token: t }, timeout: 2s, retries: 1 }
"#;
    let Ok(Document::Monitor(doc)) = parse_document(Path::new(FILE), text) else {
        panic!("{:#?}", parse_document(Path::new(FILE), text).err());
    };
    let (set, diags) = super::build(
        vec![doc],
        &super::Names {
            workflows: &Default::default(),
            supervisors: &Default::default(),
        },
    );
    assert!(diags.is_empty(), "{diags:#?}");
    let m = set.get("api").expect("api");
    assert_eq!(m.description(), Some("the public API"));
    assert_eq!(
        (m.every(), m.timeout()),
        (Duration::from_secs(30), Duration::from_secs(2))
    );
    let Probe::Http(h) = m.probe() else { panic!() };
    assert_eq!(h.method, HttpMethod::Post);
    assert_eq!(h.headers[1], ("X-Id".to_string(), "7".to_string()));
    assert!(!h.follow_redirects && h.insecure_skip_verify);
    assert_eq!(h.max_body, 64 * 1024);
    assert_eq!(m.degraded_when().len(), 1);
    assert_eq!(m.thresholds().unhealthy_after, 5);
    assert_eq!(m.maintenance()[0].duration, Duration::from_secs(3600));
    assert_eq!(m.tags(), ["prod", "api"]);
    assert!(m.has_tag("api") && !m.has_tag("web"));
    assert_eq!(m.from().len(), 2);
    assert_eq!(m.quorum(), 2);
    let on = m.interventions(Trigger::Unhealthy);
    assert_eq!(on.len(), 3);
    assert_eq!(
        on[0].action,
        Action::Restart {
            path: "web/api".into()
        }
    );
    assert_eq!(
        (on[0].cooldown, on[0].max_attempts),
        (Duration::from_secs(60), 2)
    );
    let Action::Run { workflow, params } = &on[1].action else {
        panic!()
    };
    assert_eq!(workflow, "page-oncall");
    assert_eq!(
        params[0].1, "{{ monitor }}",
        "left for the principal to fill in"
    );
    let Action::Command {
        argv, env, timeout, ..
    } = &on[2].action
    else {
        panic!()
    };
    assert_eq!(
        (argv.len(), env[0].1.as_str(), *timeout),
        (2, "1", Duration::from_secs(30))
    );
    let rec = m.interventions(Trigger::Recovered);
    let Action::Webhook { retries, .. } = &rec[0].action else {
        panic!()
    };
    assert_eq!(*retries, 1);
    assert!(m.interventions(Trigger::Degraded).is_empty());
}

#[test]
fn other_check_kinds_are_read() {
    let docs = [
        (
            "check: { dns: { server: \"127.0.0.1:53\", name: example.com, type: mx } }",
            "dns",
        ),
        ("check: { tls: { host: example.com, port: 443 } }", "tls"),
        ("check: { icmp: { host: 10.0.0.1, count: 3 } }", "icmp"),
        (
            "check: { command: { run: \"test -f /tmp/x\", env: { A: b }, cwd: /tmp } }",
            "command",
        ),
        ("check: { push: { grace: 5m } }", "push"),
        (
            "check: { workflow: { name: nightly, succeeded_within: 26h } }",
            "workflow",
        ),
    ];
    for (check, kind) in docs {
        let text = format!("kind: monitor\nname: m\n{check}\n");
        let Ok(Document::Monitor(doc)) = parse_document(Path::new(FILE), &text) else {
            panic!(
                "{check}: {:#?}",
                parse_document(Path::new(FILE), &text).err()
            );
        };
        let (set, _) = super::build(
            vec![doc],
            &super::Names {
                workflows: &Default::default(),
                supervisors: &Default::default(),
            },
        );
        let m = set.get("m").expect("m");
        assert_eq!(m.kind(), kind);
        match m.probe() {
            Probe::Dns(d) => assert_eq!(d.record, DnsRecord::Mx),
            Probe::Command(c) => assert_eq!(c.argv, ["sh", "-c", "test -f /tmp/x"]),
            Probe::Icmp(i) => assert_eq!(i.count, 3),
            _ => {}
        }
    }
}

/// Conditions copied from Gatus's README and docs, unchanged, in a monitor file.
#[test]
fn gatus_conditions_are_accepted_unchanged() {
    let conditions = [
        "[STATUS] == 200",
        "[STATUS] < 300",
        "[STATUS] <= 299",
        "[STATUS] > 400",
        "[STATUS] == any(200, 429)",
        "[CONNECTED] == true",
        "[RESPONSE_TIME] < 500",
        "[IP] == 127.0.0.1",
        "[BODY] == 1",
        "[BODY].user.name == john",
        "[BODY].data[0].id == 1",
        "[BODY].age == [BODY].id",
        "len([BODY].data) < 5",
        "len([BODY].name) == 8",
        "has([BODY].errors) == false",
        "[BODY].name == pat(john*)",
        "[BODY].id == any(1, 2)",
        "[CERTIFICATE_EXPIRATION] > 48h",
        "[DNS_RCODE] == NOERROR",
        "[BODY] == pat(*<h1>Example Domain</h1>*)",
        "[BODY].status == UP",
        "[BODY].data.id == 1",
    ];
    let list: String = conditions
        .iter()
        .map(|c| format!("  - \"{c}\"\n"))
        .collect();
    let text = format!(
        "kind: monitor\nname: gatus\ncheck: {{ http: {{ url: \"https://example.org/\" }} }}\n\
         conditions:\n{list}"
    );
    let Ok(Document::Monitor(doc)) = parse_document(Path::new(FILE), &text) else {
        panic!("{:#?}", parse_document(Path::new(FILE), &text).err());
    };
    let (set, _) = super::build(
        vec![doc],
        &super::Names {
            workflows: &Default::default(),
            supervisors: &Default::default(),
        },
    );
    let m = set.get("gatus").expect("gatus");
    let read: Vec<&str> = m.conditions().iter().map(|c| &*c.text).collect();
    assert_eq!(read, conditions);
}

#[test]
fn every_problem_is_reported_at_its_line_and_column() {
    let head = "kind: monitor\nname: m\n";
    let tcp = "check: { tcp: { host: h, port: 1 } }\n";
    let cases: Vec<(String, usize, usize, &str)> = vec![
        (format!("{head}nmae: x\n{tcp}"), 3, 1, "unknown key `nmae`"),
        (
            "kind: monitor\ncheck: { push: {} }\n".into(),
            1,
            1,
            "missing required key `name`",
        ),
        (head.to_string(), 1, 1, "missing required key `check`"),
        (
            format!("kind: monitor\nname: \"a b\"\n{tcp}"),
            2,
            7,
            "not a valid name",
        ),
        (format!("{head}every: 30x\n{tcp}"), 3, 8, "invalid duration"),
        (
            format!("{head}every: 200h\n{tcp}"),
            3,
            8,
            "longer than the limit",
        ),
        (
            format!("{head}every: 500ms\n{tcp}"),
            3,
            8,
            "shorter than the least of 1s",
        ),
        (
            format!("{head}every: 10s\ntimeout: 10s\n{tcp}"),
            4,
            10,
            "must be shorter than `every`",
        ),
        (format!("{head}timeout: 0s\n{tcp}"), 3, 10, "greater than 0"),
        (
            "kind: monitor\nname: m\ncheck: {}\n".into(),
            3,
            8,
            "`check` needs one kind",
        ),
        (
            format!("{head}check: {{ tcp: {{ host: h, port: 1 }}, push: {{}} }}\n"),
            3,
            37,
            "not both `tcp` and `push`",
        ),
        (
            format!("{head}check: {{ htp: {{}} }}\n"),
            3,
            10,
            "unknown key `htp`",
        ),
        (
            format!("{head}check: {{ http: {{ url: /health }} }}\n"),
            3,
            23,
            "absolute http",
        ),
        (
            format!("{head}check: {{ http: {{ url: \"http://x/\", method: GOT }} }}\n"),
            3,
            44,
            "unknown method",
        ),
        (
            format!("{head}check: {{ tcp: {{ host: \"a b\", port: 1 }} }}\n"),
            3,
            23,
            "not a host name",
        ),
        (
            format!("{head}check: {{ tcp: {{ host: h, port: 70000 }} }}\n"),
            3,
            32,
            "not a port",
        ),
        (
            format!("{head}check: {{ tls: {{ host: h, port: 1, send: x }} }}\n"),
            3,
            35,
            "does not apply to a tls check",
        ),
        (
            format!("{head}check: {{ dns: {{ name: x, type: PTR }} }}\n"),
            3,
            32,
            "unknown record type",
        ),
        (
            format!("{head}check: {{ icmp: {{ host: h, count: 11 }} }}\n"),
            3,
            34,
            "more than the limit of 10",
        ),
        (
            format!("{head}check: {{ command: {{ run: \"\" }} }}\n"),
            3,
            26,
            "empty command",
        ),
        (
            format!("{head}check: {{ workflow: {{ name: w }} }}\n"),
            3,
            20,
            "succeeded_within",
        ),
        (
            format!("{head}{tcp}conditions: [\"[STATUS] = 200\"]\n"),
            4,
            15,
            "invalid condition",
        ),
        (
            format!("{head}{tcp}conditions:\n  - \"[RESPONSE_TIME] < fast\"\n"),
            5,
            24,
            "ordering needs a number",
        ),
        (
            format!("{head}{tcp}degraded_when: [\"[NOPE] == 1\"]\n"),
            4,
            18,
            "invalid condition in `degraded_when`",
        ),
        (
            format!("{head}{tcp}unhealthy_after: 0\n"),
            4,
            18,
            "at least 1",
        ),
        (
            format!("{head}{tcp}healthy_after: 5000\n"),
            4,
            16,
            "more than the limit of 1000",
        ),
        (
            format!("{head}{tcp}depends_on: [\"bad name\"]\n"),
            4,
            14,
            "not a valid name",
        ),
        (
            format!("{head}{tcp}maintenance: [{{ cron: \"61 * * * *\", duration: 1h }}]\n"),
            4,
            24,
            "minute field",
        ),
        (
            format!("{head}{tcp}maintenance: [{{ cron: \"0 3 * * *\" }}]\n"),
            4,
            15,
            "needs `duration`",
        ),
        (
            format!("{head}{tcp}maintenance: [{{ cron: \"0 3 * * *\", duration: 200h }}]\n"),
            4,
            46,
            "longer than the limit",
        ),
        (
            format!(
                "{head}{tcp}maintenance: [{{ cron: \"0 3 * * *\", duration: 1h, timezone: Mars/Base }}]\n"
            ),
            4,
            60,
            "unknown time zone",
        ),
        (
            format!("{head}{tcp}tags: [\"a b\"]\n"),
            4,
            8,
            "is not a tag",
        ),
        (
            format!("{head}{tcp}quorum: 1\n"),
            4,
            9,
            "`quorum` needs `from:`",
        ),
        (
            format!("{head}{tcp}from: [{{region: eu}}]\nquorum: 2\n"),
            5,
            9,
            "from 1 to the 1 of `from`",
        ),
        (
            format!("{head}{tcp}on_unhealthy: [{{ cooldown: 1m }}]\n"),
            4,
            16,
            "needs one action",
        ),
        (
            format!("{head}{tcp}on_unhealthy: [{{ restart: a, run: b }}]\n"),
            4,
            30,
            "not both `restart` and `run`",
        ),
        (
            format!("{head}{tcp}on_unhealthy: [{{ restart: \"web//api\" }}]\n"),
            4,
            27,
            "not the path of a supervised",
        ),
        (
            format!("{head}{tcp}on_unhealthy: [{{ restart: web, params: {{}} }}]\n"),
            4,
            32,
            "does not apply to a `restart` intervention",
        ),
        (
            format!("{head}{tcp}on_unhealthy: [{{ run: w, max_attempts: 0 }}]\n"),
            4,
            40,
            "at least 1",
        ),
        (
            format!("{head}{tcp}on_unhealthy: [{{ run: w, cooldown: 25h }}]\n"),
            4,
            36,
            "longer than the limit",
        ),
        (
            format!(
                "{head}{tcp}on_unhealthy: [{{ run: w, params: {{ a: \"{{{{ nope }}}}\" }} }}]\n"
            ),
            4,
            40,
            "unknown reference",
        ),
        (
            format!("{head}{tcp}on_degraded: [{{ webhook: {{ url: \"ftp://x\" }} }}]\n"),
            4,
            33,
            "absolute http",
        ),
        (
            format!(
                "{head}{tcp}on_recovered: [{{ webhook: {{ url: \"http://x/\", retries: 11 }} }}]\n"
            ),
            4,
            56,
            "more than the limit of 10",
        ),
        (
            format!("{head}check: {{ tcp: {{ host: \"{{{{ target.h }}}}\", port: 1 }} }}\n"),
            3,
            24,
            "needs `targets:`",
        ),
        (
            format!("{head}{tcp}targets: [{{ h: a }}]\n"),
            2,
            7,
            "must read a column",
        ),
        (
            format!(
                "kind: monitor\nname: \"m-{{{{ target.hots }}}}\"\n{tcp}targets: [{{ host: a }}]\n"
            ),
            2,
            10,
            "unknown target column `hots`: did you mean `host`?",
        ),
        (
            format!("{head}{tcp}targets: {{ csv: missing.csv }}\n"),
            4,
            17,
            "cannot read",
        ),
        (
            format!("{head}{tcp}defaults: {{ every: 1m }}\n"),
            4,
            11,
            "applies only to a file with `monitors:`",
        ),
        (
            "kind: monitor\nevery: 1m\nmonitors: []\n".into(),
            2,
            1,
            "goes under `defaults:`",
        ),
        (
            "kind: monitor\nmonitors: []\n".into(),
            2,
            11,
            "`monitors` is empty",
        ),
        (
            "kind: monitor\ndefaults: { name: x }\nmonitors: [{ name: a, check: { push: {} } }]\n"
                .into(),
            2,
            13,
            "does not apply to `defaults:`",
        ),
    ];
    for (text, line, col, words) in &cases {
        problem_at(text, *line, *col, words);
    }
}

#[test]
fn an_empty_command_is_one_problem() {
    for run in ["\"\"", "\"  \""] {
        let text = format!("kind: monitor\nname: m\ncheck: {{ command: {{ run: {run} }} }}\n");
        let d = problems(&text);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(d[0].message.contains("empty command"), "{}", d[0]);
    }
}

#[test]
fn a_list_shares_its_defaults_and_a_fleet_renders_per_target() {
    let text = r#"kind: monitor
defaults:
  every: 20s
  tags: [shared]
  conditions: ["[CONNECTED] == true"]
monitors:
  - name: one
    check: { tcp: { host: 127.0.0.1, port: 1 } }
  - name: "edge-{{ target.host }}"
    every: 40s
    check: { tcp: { host: "{{ target.host }}", port: "{{ target.port }}" } }
    tags: [edge, "region:{{ target.region }}"]
    depends_on: [one]
    on_unhealthy: [{ restart: "edge/{{ target.host }}" }]
    targets:
      - { host: a, port: 81, region: eu }
      - { host: b, port: 82, region: us }
"#;
    let (_d, catalog, diags) = load(&[("m.yaml", text)]);
    assert!(diags.is_empty(), "{diags:#?}");
    let set = &catalog.monitors;
    assert_eq!(set.len(), 3);
    assert_eq!(
        set.get("one").expect("one").every(),
        Duration::from_secs(20)
    );
    let b = set.get("edge-b").expect("edge-b");
    assert_eq!(b.every(), Duration::from_secs(40));
    assert_eq!(b.tags(), ["edge", "region:us"]);
    assert!(b.has_tag("region:us"));
    assert_eq!(b.depends_on(), ["one"]);
    let Probe::Tcp(t) = b.probe() else { panic!() };
    assert_eq!((t.host.as_str(), t.port), ("b", 82));
    assert_eq!(
        b.interventions(Trigger::Unhealthy)[0].action,
        Action::Restart {
            path: "edge/b".into()
        }
    );
    let names: Vec<String> = set.iter().map(|v| v.name()).collect();
    assert_eq!(names, ["one", "edge-a", "edge-b"]);
    assert_eq!(set.find(2).map(|v| v.name()).as_deref(), Some("edge-b"));
    assert_eq!(set.find_id("edge-a"), Some(1));
}

#[test]
fn a_bad_csv_row_is_reported_at_its_line_and_column_and_the_rest_load() {
    let yaml = "kind: monitor\nname: \"web-{{ target.host }}\"\n\
                check: { tcp: { host: \"{{ target.host }}\", port: \"{{ target.port }}\" } }\n\
                targets: { csv: hosts.csv }\n";
    let csv = "host,port\n\
               # a comment\n\
               a,80\n\
               \"b\",81\n\
               c,99999\n\
               d e,82\n\
               e,83,extra\n\
               \"f,84\n\
               a,85\n\
               g,86\n";
    let (dir, catalog, diags) = load(&[("m.yaml", yaml), ("hosts.csv", csv)]);
    let at: Vec<(usize, usize, &str)> = diags
        .iter()
        .map(|d| (d.line, d.col, d.message.as_str()))
        .collect();
    let csv_path = dir.path().join("hosts.csv");
    assert!(diags[..5].iter().all(|d| d.file == csv_path), "{diags:#?}");
    assert!(
        at[0].0 == 5 && at[0].1 == 3 && at[0].2.contains("not a port"),
        "{at:?}"
    );
    assert!(
        at[1].0 == 6 && at[1].1 == 1 && at[1].2.contains("`name` renders as `web-d e`"),
        "{at:?}"
    );
    assert!(
        at[2].0 == 7 && at[2].1 == 6 && at[2].2.contains("3 cells, more than the 2"),
        "{at:?}"
    );
    assert!(
        at[3].0 == 8 && at[3].1 == 1 && at[3].2.contains("unclosed quote"),
        "{at:?}"
    );
    assert!(
        at[4].0 == 9 && at[4].2.contains("`web-a` is already defined"),
        "{at:?}"
    );
    assert_eq!(diags.len(), 5, "{diags:#?}");
    let names: Vec<String> = catalog.monitors.iter().map(|v| v.name()).collect();
    // The duplicate row is left out (its id is a gap).
    assert_eq!(names, ["web-a", "web-b", "web-g"]);
    assert_eq!(catalog.monitors.len(), 3);
    assert!(catalog.monitors.find(2).is_none());
    let Probe::Tcp(t) = catalog.monitors.get("web-a").expect("a").probe() else {
        panic!()
    };
    assert_eq!(t.port, 80, "the first `web-a` keeps the name");
    assert!(catalog.monitors.get("web-g").is_some());
    let d = &diags[1];
    assert_eq!(d.source_line.as_deref(), Some("d e,82"));
}

#[test]
fn a_targets_file_that_is_not_utf8_is_reported_at_its_first_bad_byte() {
    let yaml = "kind: monitor\nname: \"web-{{ target.host }}\"\n\
                check: { tcp: { host: \"{{ target.host }}\", port: 80 } }\n\
                targets: { csv: hosts.csv }\n";
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("m.yaml"), yaml).expect("write");
    std::fs::write(dir.path().join("hosts.csv"), b"host\na\nb\xe9c\n").expect("write");
    let (catalog, diags) = crate::spec::load_dir(dir.path());
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let d = &diags[0];
    assert_eq!(d.file, dir.path().join("hosts.csv"));
    // Line 3, the byte after `b`: columns count from 1, as everywhere else.
    assert_eq!((d.line, d.col), (3, 2), "{d}");
    assert!(
        d.message.contains("byte 0xe9") && d.message.contains("targets files must be UTF-8"),
        "{d}"
    );
    assert_eq!(d.source_line.as_deref(), Some("b\u{fffd}c"));
    assert!(catalog.monitors.is_empty());
}

#[test]
fn names_across_files_dependencies_and_cycles() {
    let a = "kind: monitor\nname: a\ncheck: { push: {} }\ndepends_on: [b]\n";
    let b = "kind: monitor\nname: b\ncheck: { push: {} }\ndepends_on: [a, ghost]\n";
    let c = "kind: monitor\nname: a\ncheck: { push: {} }\n";
    let (dir, catalog, diags) = load(&[("a.yaml", a), ("b.yaml", b), ("c.yaml", c)]);
    let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert!(
        diags.iter().any(|d| d.file == dir.path().join("c.yaml")
            && (d.line, d.col) == (2, 7)
            && d.message.contains("`a` is already defined")),
        "{text:#?}"
    );
    assert!(
        diags
            .iter()
            .any(|d| (d.line, d.col) == (4, 17) && d.message.contains("unknown monitor `ghost`")),
        "{text:#?}"
    );
    assert!(
        diags.iter().any(|d| d
            .message
            .contains("dependency cycle between monitors: a, b")),
        "{text:#?}"
    );
    assert_eq!(catalog.monitors.len(), 2);
}

#[test]
fn run_and_restart_name_what_the_catalog_has() {
    let wf = "kind: workflow\nname: page\ntasks:\n  a: { run: \"true\" }\n";
    let sup = "kind: supervisor\nname: web\nchildren:\n  - { name: api, run: [\"./api\"] }\n";
    let mon = "kind: monitor\nname: m\ncheck: { workflow: { name: nightly, succeeded_within: 1h } }\n\
               on_unhealthy:\n  - { run: pager }\n  - { restart: web/apj }\n  - { restart: web/api }\n  - { restart: web }\n  - { run: page }\n";
    let (_d, catalog, diags) = load(&[("w.yaml", wf), ("s.yaml", sup), ("m.yaml", mon)]);
    let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert_eq!(diags.len(), 3, "{text:#?}");
    assert!(
        text.iter()
            .any(|t| t.contains("unknown workflow `nightly`")),
        "{text:#?}"
    );
    assert!(
        diags.iter().any(|d| (d.line, d.col) == (5, 5)
            && d.message
                .contains("`run: pager` names no workflow: did you mean `page`?")),
        "{text:#?}"
    );
    assert!(
        diags.iter().any(|d| (d.line, d.col) == (6, 5)
            && d.message
                .contains("has no child `apj`: did you mean `api`?")),
        "{text:#?}"
    );
    assert_eq!(catalog.monitors.len(), 1);
    // A file checked on its own does not know the other documents.
    assert!(parse_document(Path::new(FILE), mon).is_ok());
}

#[test]
fn a_monitor_document_is_not_a_workflow() {
    let d = crate::spec::parse_str(Path::new(FILE), TCP).expect_err("a monitor");
    assert_eq!((d[0].line, d[0].col), (1, 7));
    assert!(
        d[0].message.contains("`kind: monitor` document"),
        "{}",
        d[0].message
    );
}

/// Peak resident set of this process so far, in bytes (Linux).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Loads a million targets from a CSV file and prints the time, the heap held at rest per
/// monitor, and this process's peak RSS (other tests run beside it: an upper bound).
#[test]
fn a_million_targets_load_compactly() {
    const N: usize = 1_000_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut csv = String::with_capacity(N * 32);
    csv.push_str("host,port,region\n");
    for i in 0..N {
        use std::fmt::Write;
        let _ = writeln!(
            csv,
            "10.{}.{}.{},{},{}",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255,
            1000 + i % 50_000,
            ["eu", "us", "ap"][i % 3]
        );
    }
    std::fs::write(dir.path().join("fleet.csv"), &csv).expect("csv");
    drop(csv);
    let yaml = "kind: monitor\nname: \"host-{{ target.host }}-{{ target.port }}\"\nevery: 60s\n\
                check: { tcp: { host: \"{{ target.host }}\", port: \"{{ target.port }}\" } }\n\
                tags: [fleet, \"{{ target.region }}\"]\ntargets: { csv: fleet.csv }\n";
    let file: PathBuf = dir.path().join("fleet.yaml");
    std::fs::write(&file, yaml).expect("yaml");
    let rss_before = peak_rss();
    let t = Instant::now();
    let (catalog, diags) = load_paths(&[file]);
    let load_s = t.elapsed().as_secs_f64();
    assert!(diags.is_empty(), "{:#?}", &diags[..diags.len().min(5)]);
    let set = &catalog.monitors;
    assert_eq!(set.len(), N);
    let last = set.get("host-10.15.66.63-50999").expect("the last target");
    assert_eq!(last.tags(), ["fleet", "eu"]);
    let heap = set.heap_bytes();
    println!(
        "monitors: {N} CSV targets loaded in {load_s:.2} s; {:.1} bytes per monitor held at \
         rest (table + name index); peak RSS {} MiB before, {} MiB after (whole test process)",
        heap as f64 / N as f64,
        rss_before.unwrap_or(0) >> 20,
        peak_rss().unwrap_or(0) >> 20
    );
}
