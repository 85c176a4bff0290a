//! Semantic checks of a parsed workflow document. Every problem is collected, not just the
//! first one.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use croner::parser::{CronParser, Seconds, Year};
use serde_saphyr::{Location, Spanned};

use super::Diagnostic;
use super::duration::parse_duration;
use super::limits::{
    MAX_ACTIVE_RUNS, MAX_BACKOFF, MAX_BACKOFF_MULTIPLIER, MAX_CATCHUP_LIMIT, MAX_EXEC_STRING,
    MAX_EXEC_TOTAL, MAX_OUTPUT, MAX_RETRIES, MAX_TIMEOUT,
};
use super::raw::{
    BACKOFF_KEYS, OrderedMap, RawBackoff, RawRun, RawTask, RawWorkflow, StrayKeys, TASK_KEYS,
    WORKFLOW_KEYS, is_absent,
};
use super::source::Source;
use super::suggest::{closest, did_you_mean, one_of};
use super::template::Template;
use super::types::{
    Backoff, CommandSpec, Overlap, Schedule, TaskIdx, TaskSpec, TriggerRule, WorkflowSpec,
};
use super::yaml_error;

/// Kinds a document may declare.
const KINDS: [&str; 3] = ["workflow", "monitor", "supervisor"];

const OVERLAPS: [(&str, Overlap); 4] = [
    ("skip", Overlap::Skip),
    ("queue", Overlap::Queue),
    ("cancel_previous", Overlap::CancelPrevious),
    ("allow", Overlap::Allow),
];

const TRIGGERS: [(&str, TriggerRule); 4] = [
    ("all_success", TriggerRule::AllSuccess),
    ("all_done", TriggerRule::AllDone),
    ("one_success", TriggerRule::OneSuccess),
    ("one_failed", TriggerRule::OneFailed),
];

const DEFAULT_CATCHUP_LIMIT: u32 = 10;

/// Name comparisons spent on did-you-mean suggestions per file, at most.
const SUGGEST_BUDGET: usize = 1_000_000;

/// What is wrong with `kind`, if anything.
pub fn kind_problem(kind: &str) -> Option<String> {
    match kind {
        "workflow" | "supervisor" | "monitor" => None,
        other => Some(format!(
            "unknown kind `{other}`{} (expected {})",
            did_you_mean(other, KINDS),
            one_of(&KINDS)
        )),
    }
}

/// The kind a document without `kind` most likely is, from the keys a workflow does not have:
/// a monitor's (`check`, `monitors`, ...) or a supervisor's (`children`, ...), else a workflow.
fn kind_of_keys(stray: &StrayKeys) -> &'static str {
    let has = |keys: &[&str]| {
        stray
            .unknown
            .iter()
            .any(|k| keys.contains(&k.value.as_str()) && !WORKFLOW_KEYS.contains(&k.value.as_str()))
    };
    if has(super::monitor::raw::ALL_DOC_KEYS) {
        "monitor"
    } else if has(super::supervisor::raw::SUPERVISOR_KEYS) {
        "supervisor"
    } else {
        "workflow"
    }
}

/// Validates the document `doc` read from `src`, returning the spec and where its name is
/// written, or every problem found.
pub fn check(
    src: &Source<'_>,
    doc: Spanned<RawWorkflow>,
) -> Result<(WorkflowSpec, Location), Vec<Diagnostic>> {
    let start = doc.referenced;
    let raw = doc.value;
    let mut c = Checker::new(src, start);
    if is_absent(&raw.kind) {
        if !meant(&raw.stray, WORKFLOW_KEYS).contains(&"kind") {
            let kind = kind_of_keys(&raw.stray);
            c.err(
                &start,
                format!("missing required key `kind`: add `kind: {kind}`"),
            );
            if kind != "workflow" {
                // Checked as a workflow, it would only be told what a workflow lacks.
                return Err(c.diags);
            }
        }
    } else if let Some(problem) = kind_problem(&raw.kind.value) {
        c.err(&raw.kind.referenced, problem);
        // Another kind of document (known, or unknown with keys a workflow does not have):
        // checking it as a workflow would only add noise. A typo in `workflow` is checked on.
        if KINDS.contains(&raw.kind.value.as_str()) || !raw.stray.unknown.is_empty() {
            return Err(c.diags);
        }
    }
    let name_at = raw.name.referenced;
    let spec = c.workflow(raw);
    if c.diags.is_empty() {
        Ok((spec, name_at))
    } else {
        // Sorted, and a value reached through several aliases is reported once.
        Err(c.into_sorted())
    }
}

/// True for names made of letters, digits, `_`, `.` and `-` that start with a letter, digit or
/// `_`: `..` and `.` would read as paths, and `-x` as an option on a command line.
pub(super) fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The allowed keys that the unknown keys of a mapping look like typos of: a missing required
/// key among them is not reported again as missing.
pub(super) fn meant(stray: &StrayKeys, allowed: &[&'static str]) -> Vec<&'static str> {
    stray
        .unknown
        .iter()
        .filter_map(|k| closest(&k.value, allowed.iter().copied()))
        .collect()
}

/// `720h (30 days)`: how a duration limit reads in a message.
pub(super) fn limit_words(limit: Duration) -> String {
    let hours = limit.as_secs() / 3600;
    match hours / 24 {
        0 => format!("{hours}h"),
        1 => format!("{hours}h (1 day)"),
        days => format!("{hours}h ({days} days)"),
    }
}

/// A task's `depends_on` entries resolved to indices, with where each was written.
type Deps = Vec<(TaskIdx, Location)>;

/// Collects the problems of one document (also used by the supervisor checks).
pub(super) struct Checker<'a> {
    pub(super) src: &'a Source<'a>,
    /// Where the document's mapping starts (for keys that are missing).
    pub(super) start: Location,
    pub(super) diags: Vec<Diagnostic>,
    /// Name comparisons left for did-you-mean suggestions.
    suggest_budget: usize,
}

impl<'a> Checker<'a> {
    /// A checker for the document read from `src` whose mapping starts at `start`.
    pub(super) fn new(src: &'a Source<'a>, start: Location) -> Self {
        Self {
            src,
            start,
            diags: Vec::new(),
            suggest_budget: SUGGEST_BUDGET,
        }
    }

    /// The problems found, in file order, each once.
    pub(super) fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.diags
            .sort_by(|a, b| (a.line, a.col, &a.message).cmp(&(b.line, b.col, &b.message)));
        self.diags.dedup();
        self.diags
    }
}

impl Checker<'_> {
    pub(super) fn err(&mut self, loc: &Location, message: impl Into<String>) {
        self.diags.push(self.src.at(loc, message));
    }

    /// Reports the keys of a fixed mapping that are unknown or repeated; returns the allowed
    /// keys the unknown ones look like typos of (see [`meant`]).
    pub(super) fn stray(
        &mut self,
        stray: &StrayKeys,
        allowed: &[&'static str],
    ) -> Vec<&'static str> {
        for key in &stray.unknown {
            self.err(
                &key.referenced,
                yaml_error::unknown_key(&key.value, allowed),
            );
        }
        for key in &stray.repeated {
            self.err(
                &key.referenced,
                format!(
                    "duplicate key `{}`: a key may appear only once here",
                    key.value
                ),
            );
        }
        meant(stray, allowed)
    }

    /// A count read as `u64`, at most `max`; reports a larger one at its position.
    pub(super) fn count(&mut self, what: &str, raw: &Spanned<u64>, max: u64) -> Option<u32> {
        if raw.value > max {
            self.err(
                &raw.referenced,
                format!("`{what}` is {}, more than the limit of {max}", raw.value),
            );
            return None;
        }
        u32::try_from(raw.value).ok()
    }

    fn workflow(&mut self, raw: RawWorkflow) -> WorkflowSpec {
        let meant = self.stray(&raw.stray, WORKFLOW_KEYS);
        if is_absent(&raw.name) {
            if !meant.contains(&"name") {
                let start = self.start;
                self.err(&start, "missing required key `name`");
            }
        } else {
            self.name("workflow", &raw.name);
        }
        let schedule = self.schedule(raw.schedule.as_ref(), raw.timezone.as_ref());
        let overlap = raw
            .overlap
            .as_ref()
            .and_then(|o| self.choice("overlap policy", o, &OVERLAPS))
            .unwrap_or_default();
        let max_active_runs = raw.max_active_runs.as_ref().and_then(|max| {
            if max.value == 0 {
                self.err(&max.referenced, "`max_active_runs` must be at least 1");
                return None;
            }
            self.count("max_active_runs", max, MAX_ACTIVE_RUNS)
        });
        let catchup_limit = raw
            .catchup_limit
            .as_ref()
            .and_then(|l| self.count("catchup_limit", l, MAX_CATCHUP_LIMIT));
        let params = self.params(raw.params.as_ref());
        let tasks = self.tasks(&raw.tasks, &params, meant.contains(&"tasks"));
        WorkflowSpec {
            name: raw.name.value,
            description: raw.description,
            file: self.src.file().to_path_buf(),
            params,
            tasks,
            fail_fast: raw.fail_fast.unwrap_or(false),
            max_active_runs,
            schedule,
            overlap,
            catchup: raw.catchup.unwrap_or(false),
            catchup_limit: catchup_limit.unwrap_or(DEFAULT_CATCHUP_LIMIT),
        }
    }

    pub(super) fn name(&mut self, what: &str, name: &Spanned<String>) {
        if !valid_name(&name.value) {
            self.err(
                &name.referenced,
                format!(
                    "invalid {what} name `{}`: use only letters, digits, `_`, `.` and `-`, \
                     starting with a letter, digit or `_`",
                    name.value
                ),
            );
        }
    }

    pub(super) fn choice<T: Copy>(
        &mut self,
        what: &str,
        value: &Spanned<String>,
        options: &[(&str, T)],
    ) -> Option<T> {
        if let Some((_, v)) = options.iter().find(|(n, _)| *n == value.value) {
            return Some(*v);
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        self.err(
            &value.referenced,
            format!(
                "unknown {what} `{}`{} (expected {})",
                value.value,
                did_you_mean(&value.value, names.iter().copied()),
                one_of(&names)
            ),
        );
        None
    }

    pub(super) fn schedule(
        &mut self,
        expr: Option<&Spanned<String>>,
        timezone: Option<&Spanned<String>>,
    ) -> Option<Schedule> {
        let tz = timezone.and_then(|tz| self.timezone(tz));
        let Some(expr) = expr else {
            if let Some(tz) = timezone {
                self.err(
                    &tz.referenced,
                    "`timezone` applies only to a `schedule`: add a schedule or remove it",
                );
            }
            return None;
        };
        match parse_cron(&expr.value) {
            Ok(cron) if never_fires(&cron) => {
                self.err(
                    &expr.referenced,
                    format!(
                        "cron expression `{}` never fires (no date matches its day-of-month \
                         and month fields, e.g. 30 February): fix those fields",
                        expr.value
                    ),
                );
                None
            }
            Ok(cron) => Some(Schedule {
                expr: expr.value.clone(),
                cron: Arc::new(cron),
                timezone: tz,
            }),
            Err(CronProblem {
                message,
                field_offset: Some(offset),
            }) => {
                let d = self
                    .src
                    .value_diag(&expr.value, &expr.referenced, offset, message);
                self.diags.push(d);
                None
            }
            Err(CronProblem { message, .. }) => {
                self.err(&expr.referenced, message);
                None
            }
        }
    }

    fn timezone(&mut self, tz: &Spanned<String>) -> Option<chrono_tz::Tz> {
        match tz.value.parse::<chrono_tz::Tz>() {
            Ok(parsed) => Some(parsed),
            Err(_) => {
                let names = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name());
                self.err(
                    &tz.referenced,
                    format!(
                        "unknown time zone `{}`{} (use an IANA name such as `Europe/Berlin` or `UTC`)",
                        tz.value,
                        did_you_mean(&tz.value, names)
                    ),
                );
                None
            }
        }
    }

    fn params(&mut self, raw: Option<&OrderedMap<Option<String>>>) -> BTreeMap<String, String> {
        let mut params = BTreeMap::new();
        let mut first_line: HashMap<&str, u64> = HashMap::new();
        for (key, value) in raw.map(|m| m.entries.as_slice()).unwrap_or_default() {
            self.name("parameter", key);
            if let Some(line) = first_line.get(key.value.as_str()) {
                let message = format!(
                    "duplicate parameter `{}` (first declared at line {line})",
                    key.value
                );
                self.err(&key.referenced, message);
                continue;
            }
            first_line.insert(&key.value, key.referenced.line());
            params.insert(key.value.clone(), value.clone().unwrap_or_default());
        }
        params
    }

    fn tasks(
        &mut self,
        raw: &Spanned<OrderedMap<Spanned<RawTask>>>,
        params: &BTreeMap<String, String>,
        misspelt: bool,
    ) -> Vec<TaskSpec> {
        let entries = &raw.value.entries;
        if is_absent(raw) {
            if !misspelt {
                let start = self.start;
                self.err(
                    &start,
                    "missing required key `tasks`: a workflow needs at least one task",
                );
            }
            return Vec::new();
        }
        if entries.is_empty() {
            self.err(
                &raw.referenced,
                "`tasks` is empty: a workflow needs at least one task",
            );
            return Vec::new();
        }
        let index = self.task_index(entries);
        let names: Vec<&str> = entries.iter().map(|(k, _)| k.value.as_str()).collect();
        let mut deps: Vec<Deps> = Vec::with_capacity(entries.len());
        let mut tasks = Vec::with_capacity(entries.len());
        for (key, task) in entries {
            deps.push(self.depends_on(&key.value, &task.value, &index, &names));
            tasks.push(self.task(key, &task.value, params));
        }
        self.cycles(&names, &deps);
        for (task, d) in tasks.iter_mut().zip(deps) {
            let mut seen = HashSet::with_capacity(d.len());
            task.depends_on = d
                .into_iter()
                .map(|(i, _)| i)
                .filter(|i| seen.insert(*i))
                .collect();
        }
        tasks
    }

    /// Task name -> index of its first definition; reports bad and duplicate names.
    fn task_index<'r>(
        &mut self,
        entries: &'r [(Spanned<String>, Spanned<RawTask>)],
    ) -> HashMap<&'r str, TaskIdx> {
        let mut index: HashMap<&str, TaskIdx> = HashMap::with_capacity(entries.len());
        for (i, (key, _)) in entries.iter().enumerate() {
            self.name("task", key);
            if let Some(&first) = index.get(key.value.as_str()) {
                let line = entries[first].0.referenced.line();
                self.err(
                    &key.referenced,
                    format!(
                        "duplicate task name `{}` (first defined at line {line})",
                        key.value
                    ),
                );
            } else {
                index.insert(&key.value, i);
            }
        }
        index
    }

    fn depends_on(
        &mut self,
        task: &str,
        raw: &RawTask,
        index: &HashMap<&str, TaskIdx>,
        names: &[&str],
    ) -> Deps {
        let mut deps = Vec::new();
        for dep in raw.depends_on.as_deref().unwrap_or_default() {
            match index.get(dep.value.as_str()) {
                Some(&i) => deps.push((i, dep.referenced)),
                None => {
                    let hint = self.suggest_task(&dep.value, names);
                    self.err(
                        &dep.referenced,
                        format!(
                            "task `{task}` depends on unknown task `{}`{hint}",
                            dep.value
                        ),
                    );
                }
            }
        }
        deps
    }

    /// A did-you-mean among task names, while the comparison budget lasts (a huge file full
    /// of typos must not take quadratic time).
    pub(super) fn suggest_task(&mut self, word: &str, names: &[&str]) -> String {
        if self.suggest_budget < names.len() {
            return String::new();
        }
        self.suggest_budget -= names.len();
        did_you_mean(word, names.iter().copied())
    }

    fn task(
        &mut self,
        name: &Spanned<String>,
        raw: &RawTask,
        params: &BTreeMap<String, String>,
    ) -> TaskSpec {
        let meant = self.stray(&raw.stray, TASK_KEYS);
        let run = if is_absent(&raw.run) {
            if !meant.contains(&"run") {
                self.err(
                    &name.referenced,
                    format!("task `{}` is missing required key `run`", name.value),
                );
            }
            CommandSpec::Shell(Template::literal(""))
        } else {
            self.command(&raw.run, params)
        };
        let trigger = raw
            .trigger
            .as_ref()
            .and_then(|t| self.choice("trigger rule", t, &TRIGGERS))
            .unwrap_or_default();
        let timeout = raw
            .timeout
            .as_ref()
            .and_then(|t| self.duration("timeout", t, MAX_TIMEOUT));
        if let (Some(t), Some(Duration::ZERO)) = (&raw.timeout, timeout) {
            self.err(&t.referenced, "`timeout` must be greater than 0");
        }
        TaskSpec {
            name: name.value.clone(),
            run,
            depends_on: Vec::new(),
            trigger,
            retries: raw
                .retries
                .as_ref()
                .and_then(|r| self.count("retries", r, MAX_RETRIES))
                .unwrap_or(0),
            backoff: raw
                .backoff
                .as_ref()
                .map(|b| self.backoff(b))
                .unwrap_or_default(),
            timeout,
            max_output: self.max_output(raw.max_output.as_ref()),
            env: {
                self.exec_size(&name.referenced, &raw.run, raw.env.as_ref());
                self.env(raw.env.as_ref(), params)
            },
            cwd: raw.cwd.as_ref().map(Into::into),
            agent: self.agent_labels(raw.agent.as_ref()),
        }
    }

    /// `agent:` labels: short, printable names and values, a bounded number of them.
    fn agent_labels(
        &mut self,
        raw: Option<&OrderedMap<Spanned<String>>>,
    ) -> BTreeMap<String, String> {
        const MAX_LABELS: usize = 32;
        const MAX_LABEL_BYTES: usize = 128;
        let mut labels = BTreeMap::new();
        let entries = raw.map(|m| m.entries.as_slice()).unwrap_or_default();
        if entries.len() > MAX_LABELS {
            if let Some((key, _)) = entries.get(MAX_LABELS) {
                self.err(
                    &key.referenced,
                    format!("too many agent labels: at most {MAX_LABELS}"),
                );
            }
            return labels;
        }
        for (key, value) in entries {
            let bad = |s: &str| {
                s.is_empty()
                    || s.len() > MAX_LABEL_BYTES
                    || s.chars().any(|c| c.is_control() || c == '=' || c == ',')
            };
            if bad(&key.value) {
                self.err(
                    &key.referenced,
                    format!(
                        "invalid agent label `{}`: 1 to {MAX_LABEL_BYTES} bytes, without `=`, `,` \
                         or control characters (example: `agent: {{ gpu: \"true\" }}`)",
                        key.value
                    ),
                );
            } else if bad(&value.value) {
                self.err(
                    &value.defined,
                    format!(
                        "invalid value `{}` of agent label `{}`: 1 to {MAX_LABEL_BYTES} bytes, \
                         without `=`, `,` or control characters",
                        value.value, key.value
                    ),
                );
            } else if labels
                .insert(key.value.clone(), value.value.clone())
                .is_some()
            {
                self.err(
                    &key.referenced,
                    format!("duplicate agent label `{}`", key.value),
                );
            }
        }
        labels
    }

    pub(super) fn command(
        &mut self,
        run: &Spanned<RawRun>,
        params: &BTreeMap<String, String>,
    ) -> CommandSpec {
        const EMPTY: &str = "empty command: `run` needs a program, e.g. `run: [\"./job.sh\"]` or `run: \"make all\"`";
        match &run.value {
            RawRun::Missing => {
                self.err(&run.referenced, EMPTY);
                CommandSpec::Shell(Template::literal(""))
            }
            RawRun::Shell(text) => {
                let t = self.template(text, &run.defined, params);
                if text.trim().is_empty() {
                    self.err(&run.referenced, EMPTY);
                }
                CommandSpec::Shell(t)
            }
            RawRun::Argv(args) => {
                let argv: Vec<Template> = args
                    .iter()
                    .map(|a| self.template(&a.value, &a.defined, params))
                    .collect();
                match args.first() {
                    None => self.err(&run.referenced, EMPTY),
                    Some(prog) if prog.value.trim().is_empty() => self.err(&prog.referenced, EMPTY),
                    Some(_) => {}
                }
                CommandSpec::Argv(argv)
            }
        }
    }

    fn template(
        &mut self,
        text: &str,
        loc: &Location,
        params: &BTreeMap<String, String>,
    ) -> Template {
        match Template::parse(text, |p| params.contains_key(p)) {
            Ok(t) => t,
            Err(e) => {
                self.diags.push(self.src.template_diag(text, loc, &e));
                Template::literal(text)
            }
        }
    }

    /// Checks that a command and its environment can be handed to a process: each argument and
    /// `NAME=value` within the kernel's limit on one string, all of them within
    /// [`MAX_EXEC_TOTAL`]; `at` is where a total over the budget is reported. Sizes are those
    /// written (a parameter may make them larger when the task runs).
    pub(super) fn exec_size(
        &mut self,
        at: &Location,
        run: &Spanned<RawRun>,
        env: Option<&OrderedMap<Spanned<String>>>,
    ) {
        // Each string's length with its NUL, as the kernel counts it.
        let mut strings: Vec<(usize, &Location, String)> = Vec::new();
        match &run.value {
            RawRun::Shell(text) => {
                strings.push((text.len() + 1, &run.defined, "the `run` command".into()));
            }
            RawRun::Argv(args) => {
                for (i, a) in args.iter().enumerate() {
                    let what = format!("argument {} of `run`", i + 1);
                    strings.push((a.value.len() + 1, &a.defined, what));
                }
            }
            RawRun::Missing => {}
        }
        for (key, value) in env.map(|m| m.entries.as_slice()).unwrap_or_default() {
            let what = format!("environment variable `{}`", key.value);
            strings.push((
                key.value.len() + value.value.len() + 2,
                &value.defined,
                what,
            ));
        }
        let mut too_long = false;
        for (len, loc, what) in &strings {
            if *len > MAX_EXEC_STRING {
                too_long = true;
                self.err(
                    loc,
                    format!(
                        "{what} is {} bytes: the kernel hands at most {} KiB per argument or \
                         variable to a process (MAX_ARG_STRLEN), so it could not start; pass \
                         large data in a file instead",
                        len - 1,
                        MAX_EXEC_STRING / 1024
                    ),
                );
            }
        }
        let total: usize = strings.iter().map(|(len, ..)| len).sum();
        if !too_long && total > MAX_EXEC_TOTAL {
            self.err(
                at,
                format!(
                    "the command and environment variables here are {total} bytes together: at \
                     most {} KiB (the kernel's budget for a process's arguments and environment \
                     is shared with what it inherits); pass large data in a file instead",
                    MAX_EXEC_TOTAL / 1024
                ),
            );
        }
    }

    pub(super) fn env(
        &mut self,
        raw: Option<&OrderedMap<Spanned<String>>>,
        params: &BTreeMap<String, String>,
    ) -> BTreeMap<String, Template> {
        let mut env = BTreeMap::new();
        for (key, value) in raw.map(|m| m.entries.as_slice()).unwrap_or_default() {
            if key.value.is_empty() || key.value.contains(['=', '\0']) {
                self.err(
                    &key.referenced,
                    format!(
                        "invalid environment variable name `{}`: it must be non-empty and contain no `=`",
                        key.value
                    ),
                );
            }
            let t = self.template(&value.value, &value.defined, params);
            if env.insert(key.value.clone(), t).is_some() {
                self.err(
                    &key.referenced,
                    format!("duplicate environment variable `{}`", key.value),
                );
            }
        }
        env
    }

    /// A duration of at most `max`; reports a bad or longer one at its position.
    pub(super) fn duration(
        &mut self,
        what: &str,
        raw: &Spanned<String>,
        max: Duration,
    ) -> Option<Duration> {
        match parse_duration(&raw.value) {
            Ok(d) if d <= max => Some(d),
            Ok(_) => {
                let limit = limit_words(max);
                self.err(
                    &raw.referenced,
                    format!(
                        "`{what}` `{}` is longer than the limit of {limit}",
                        raw.value.trim()
                    ),
                );
                None
            }
            Err(e) => {
                self.err(&raw.referenced, format!("`{what}`: {e}"));
                None
            }
        }
    }

    /// `max_output:` of a task or a service, within its bounds; the default when absent.
    pub(super) fn max_output(&mut self, raw: Option<&Spanned<String>>) -> u64 {
        let default = crate::protocol::agent::DEFAULT_MAX_OUTPUT;
        let Some(raw) = raw else { return default };
        match super::size::parse_size(&raw.value) {
            Ok(n) if (1024..=MAX_OUTPUT).contains(&n) => n,
            Ok(_) => {
                self.err(
                    &raw.referenced,
                    format!(
                        "`max_output` `{}` is out of bounds: from 1 KiB to {}",
                        raw.value.trim(),
                        super::size::format_size(MAX_OUTPUT)
                    ),
                );
                default
            }
            Err(e) => {
                self.err(&raw.referenced, format!("`max_output`: {e}"));
                default
            }
        }
    }

    fn backoff(&mut self, raw: &RawBackoff) -> Backoff {
        self.backoff_from(raw, Backoff::default())
    }

    /// `raw` read over the defaults `b` (tasks and services default differently).
    pub(super) fn backoff_from(&mut self, raw: &RawBackoff, mut b: Backoff) -> Backoff {
        self.stray(&raw.stray, BACKOFF_KEYS);
        let initial = raw
            .initial
            .as_ref()
            .and_then(|i| self.duration("backoff.initial", i, MAX_BACKOFF));
        let max = raw
            .max
            .as_ref()
            .and_then(|m| self.duration("backoff.max", m, MAX_BACKOFF));
        let bad_max = raw.max.is_some() && max.is_none();
        if let Some(d) = initial {
            b.initial = d;
        }
        if let Some(d) = max {
            b.max = d;
        }
        if let Some(m) = &raw.multiplier {
            if m.value.is_finite() && (1.0..=MAX_BACKOFF_MULTIPLIER).contains(&m.value) {
                b.multiplier = m.value;
            } else {
                self.err(
                    &m.referenced,
                    format!(
                        "`backoff.multiplier` must be a number from 1 to {MAX_BACKOFF_MULTIPLIER}"
                    ),
                );
            }
        }
        if let Some(j) = raw.jitter {
            b.jitter = j;
        }
        // Only between values that were read: a bad one has been reported already.
        if let (Some(i), Some(_)) = (&raw.initial, initial)
            && !bad_max
            && b.initial > b.max
        {
            self.err(
                &i.referenced,
                format!(
                    "`backoff.initial` ({:?}) is longer than `backoff.max` ({:?})",
                    b.initial, b.max
                ),
            );
        }
        b
    }

    /// Reports each dependency cycle once, at the `depends_on` entry that closes it.
    fn cycles(&mut self, names: &[&str], deps: &[Deps]) {
        let edges: Vec<(usize, usize)> = deps
            .iter()
            .enumerate()
            .flat_map(|(child, d)| d.iter().map(move |&(parent, _)| (parent, child)))
            .collect();
        for members in crate::dag::cycles(names.len(), &edges) {
            let Some(path) = cycle_path(&members, deps) else {
                continue;
            };
            let (first, second) = (path[0], path[1]);
            let at = deps[first]
                .iter()
                .find(|(d, _)| *d == second)
                .map(|(_, loc)| *loc)
                .unwrap_or(Location::UNKNOWN);
            let message = cycle_message(names, &path, &members);
            self.err(&at, message);
        }
    }
}

/// Longest list of task names spelled out in a cycle message.
const MAX_NAMES_SHOWN: usize = 12;

/// `names` joined with `sep`, eliding the middle of very long lists.
fn join_names(names: &[&str], sep: &str) -> String {
    if names.len() <= MAX_NAMES_SHOWN {
        return names.join(sep);
    }
    let head = &names[..MAX_NAMES_SHOWN - 2];
    let tail = &names[names.len() - 2..];
    format!(
        "{}{sep}... ({} more){sep}{}",
        head.join(sep),
        names.len() - head.len() - tail.len(),
        tail.join(sep)
    )
}

/// Describes the cycle walked by `path`, naming the other `members` of its strongly
/// connected group too.
fn cycle_message(names: &[&str], path: &[usize], members: &[usize]) -> String {
    let shown: Vec<&str> = path.iter().map(|&i| names[i]).collect();
    if path.len() == 2 {
        return format!(
            "task `{}` depends on itself (dependency cycle: {})",
            shown[0],
            shown.join(" -> ")
        );
    }
    let on_path: HashSet<usize> = path.iter().copied().collect();
    let others: Vec<&str> = members
        .iter()
        .filter(|m| !on_path.contains(m))
        .map(|&i| names[i])
        .collect();
    let also = if others.is_empty() {
        String::new()
    } else {
        format!("; also caught in it: {}", join_names(&others, ", "))
    };
    format!(
        "dependency cycle: {} (each task depends on the next){also}",
        join_names(&shown, " -> ")
    )
}

/// A closed walk `a -> b -> ... -> a` through `members` (sorted) following `depends_on`
/// edges, starting at the first member: the shortest one, found breadth-first.
fn cycle_path(members: &[usize], deps: &[Deps]) -> Option<Vec<usize>> {
    let start = *members.first()?;
    let mut came_from: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &(next, _) in &deps[node] {
            if next == start {
                let mut path = vec![start, node];
                let mut cur = node;
                while cur != start {
                    cur = *came_from.get(&cur)?;
                    path.push(cur);
                }
                // `path` is start, node, ..., start: reverse the middle to walk forwards.
                let last = path.len() - 1;
                path[1..last].reverse();
                return Some(path);
            }
            if members.binary_search(&next).is_ok() && !came_from.contains_key(&next) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

/// Meaning and range of each field of a 5-field expression (a 6th, seconds, comes first).
const CRON_FIELDS: [(&str, &str); 6] = [
    ("seconds", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT"),
];

/// A cron problem: the message and the byte offset of the field it is about, if one is.
struct CronProblem {
    message: String,
    field_offset: Option<usize>,
}

fn cron_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// Parses a 5- or 6-field cron expression (or an `@daily`-style nickname).
fn parse_cron(expr: &str) -> Result<croner::Cron, CronProblem> {
    let fields: Vec<(usize, &str)> = fields_with_offsets(expr);
    let nickname = expr.trim_start().starts_with('@');
    if !nickname && !(5..=6).contains(&fields.len()) {
        return Err(CronProblem {
            message: format!(
                "invalid cron expression `{expr}`: it has {} field(s), expected 5 \
                 (minute hour day-of-month month day-of-week) or 6 (seconds first)",
                fields.len()
            ),
            field_offset: None,
        });
    }
    let parser = cron_parser();
    parser.parse(expr).map_err(|e| {
        bad_field(&parser, expr, &fields).unwrap_or_else(|| CronProblem {
            message: format!("invalid cron expression `{expr}`: {}", cron_detail(&e)),
            field_offset: None,
        })
    })
}

/// The first field that is invalid on its own (all other fields `*`).
fn bad_field(parser: &CronParser, expr: &str, fields: &[(usize, &str)]) -> Option<CronProblem> {
    let names = &CRON_FIELDS[6 - fields.len()..];
    for (i, &(offset, field)) in fields.iter().enumerate() {
        let alone: Vec<&str> = (0..fields.len())
            .map(|j| if j == i { field } else { "*" })
            .collect();
        if let Err(e) = parser.parse(&alone.join(" ")) {
            let (name, range) = names[i];
            return Some(CronProblem {
                message: format!(
                    "invalid cron expression `{expr}`: {name} field `{field}` is invalid \
                     ({}; allowed: {range})",
                    cron_detail(&e)
                ),
                field_offset: Some(offset),
            });
        }
    }
    None
}

/// True for an expression no date matches (`0 0 30 2 *`): a schedule that silently never
/// runs. Without a year field a match repeats at least every few years (29 February), so one
/// search from a fixed date settles it, and croner bounds that search.
fn never_fires(cron: &croner::Cron) -> bool {
    use chrono::TimeZone;
    let Some(start) = chrono::Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single() else {
        return false;
    };
    cron.find_next_occurrence(&start, true).is_err()
}

/// Whitespace-separated fields and their byte offsets.
fn fields_with_offsets(expr: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in expr
        .char_indices()
        .chain(std::iter::once((expr.len(), ' ')))
    {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, &expr[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    out
}

/// croner's error text, without its prefix and final period, starting in lower case.
fn cron_detail(e: &croner::errors::CronError) -> String {
    let text = e.to_string();
    let text = text
        .split_once(": ")
        .map_or(text.as_str(), |(_, rest)| rest);
    let text = text.trim_end_matches('.');
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}
