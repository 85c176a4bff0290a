//! The one key table: every key, `:` command, hint and help line comes from [`BINDINGS`].

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// The panes of the console, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pane {
    /// Counts, slots, next fires and recent failures.
    Overview,
    /// Every workflow with its schedule.
    Workflows,
    /// Runs with the DAG of the selected one.
    Runs,
    /// Held runs and tasks waiting for a slot.
    Queue,
    /// Live output of a run or a task.
    Logs,
    /// Durations and failure rates per workflow.
    History,
    /// Agent slots.
    Agents,
}

impl Pane {
    /// Every pane in Tab order.
    pub const ALL: [Pane; 7] = [
        Pane::Overview,
        Pane::Workflows,
        Pane::Runs,
        Pane::Queue,
        Pane::Logs,
        Pane::History,
        Pane::Agents,
    ];

    /// The name shown in the tab bar and used as a `:` command.
    pub fn name(self) -> &'static str {
        match self {
            Pane::Overview => "overview",
            Pane::Workflows => "workflows",
            Pane::Runs => "runs",
            Pane::Queue => "queue",
            Pane::Logs => "logs",
            Pane::History => "history",
            Pane::Agents => "agents",
        }
    }

    /// Position in [`Pane::ALL`].
    pub fn index(self) -> usize {
        Pane::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

/// Where a key is looked up: a pane, or the DAG inside the runs pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// A pane's main list.
    Pane(Pane),
    /// The DAG of the selected run (focused from the runs list with Enter).
    Dag,
}

/// What a key or a command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Leave the console (asks first while runs are active).
    Quit,
    /// Next pane.
    NextPane,
    /// Previous pane.
    PrevPane,
    /// Show a pane.
    Show(Pane),
    /// Move the selection up.
    Up,
    /// Move the selection down.
    Down,
    /// Move left (DAG columns, log scroll).
    Left,
    /// Move right.
    Right,
    /// A page up.
    PageUp,
    /// A page down.
    PageDown,
    /// First row.
    Top,
    /// Last row (in logs: follow again).
    Bottom,
    /// Drill into the selection.
    Enter,
    /// Back out (close a modal, leave the DAG, clear a filter).
    Back,
    /// Filter the focused list (search in logs).
    Filter,
    /// Open the `:` command palette.
    Palette,
    /// Show the help generated from this table.
    Help,
    /// Trigger the selected workflow (asks for parameters).
    Trigger,
    /// Cancel the selected run (asks first).
    Cancel,
    /// Retry the failed tasks of the selected run.
    Retry,
    /// Pause or resume the selected workflow's schedule.
    TogglePause,
    /// Edit the selected workflow's file.
    Edit,
    /// Create a workflow file from a template.
    NewWorkflow,
    /// Logs of the selected run or task.
    OpenLogs,
    /// Follow new log lines on or off.
    Follow,
    /// Wrap long log lines on or off.
    Wrap,
    /// Show timestamps on or off.
    Timestamps,
    /// Next search match.
    NextMatch,
    /// Previous search match.
    PrevMatch,
    /// Fetch everything again.
    Refresh,
    /// `:wf NAME`: show a workflow's runs.
    Workflow,
    /// `:theme NAME`: switch theme.
    Theme,
}

/// What argument a `:` command takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// None.
    None,
    /// A workflow name.
    Workflow,
    /// A theme name.
    Theme,
    /// An optional run id.
    Run,
}

/// One key: a code and its modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The key.
    pub code: KeyCode,
    /// Ctrl, Shift, ... (Shift is ignored for characters).
    pub mods: KeyModifiers,
}

const fn k(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        mods: KeyModifiers::NONE,
    }
}

const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        mods: KeyModifiers::CONTROL,
    }
}

const fn code(code: KeyCode) -> Key {
    Key {
        code,
        mods: KeyModifiers::NONE,
    }
}

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everywhere.
    Global,
    /// Only in these contexts.
    In(&'static [Context]),
}

/// One row of the key table.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    /// Keys that trigger it (the first is shown in hints).
    pub keys: &'static [Key],
    /// What it does.
    pub action: Action,
    /// Where it applies.
    pub scope: Scope,
    /// The `:` command name, if it has one.
    pub command: Option<&'static str>,
    /// The argument of the `:` command.
    pub arg: Arg,
    /// One line for help, hints and palette completion.
    pub help: &'static str,
    /// Its label in the hint bar of its contexts (not shown there when `None`).
    pub hint: Option<&'static str>,
    /// Changes engine state (disabled with `--read-only`).
    pub mutates: bool,
}

const fn b(keys: &'static [Key], action: Action, scope: Scope, help: &'static str) -> Binding {
    Binding {
        keys,
        action,
        scope,
        command: None,
        arg: Arg::None,
        help,
        hint: None,
        mutates: false,
    }
}

impl Binding {
    const fn cmd(mut self, name: &'static str, arg: Arg) -> Self {
        self.command = Some(name);
        self.arg = arg;
        self
    }
    const fn hint(mut self, label: &'static str) -> Self {
        self.hint = Some(label);
        self
    }
    const fn mutating(mut self) -> Self {
        self.mutates = true;
        self
    }
}

use Context as C;
use Pane as P;

const WF: Scope = Scope::In(&[C::Pane(P::Workflows)]);
const RUNS: Scope = Scope::In(&[C::Pane(P::Runs), C::Dag]);
const RUNS_LIST: Scope = Scope::In(&[C::Pane(P::Runs)]);
const LOGS: Scope = Scope::In(&[C::Pane(P::Logs)]);
const DAG: Scope = Scope::In(&[C::Dag]);
const G: Scope = Scope::Global;

/// Every key and command of the console. Context-specific rows come before global ones so
/// that a pane can reuse a key (e.g. `l` opens logs in the runs pane, moves right in the DAG).
pub static BINDINGS: &[Binding] = &[
    // Workflows pane.
    b(
        &[k('t')],
        Action::Trigger,
        WF,
        "trigger a run (asks for parameters)",
    )
    .cmd("trigger", Arg::Workflow)
    .hint("trigger")
    .mutating(),
    b(
        &[k('p')],
        Action::TogglePause,
        WF,
        "pause / resume the schedule",
    )
    .cmd("pause", Arg::Workflow)
    .hint("pause/resume")
    .mutating(),
    b(&[k('e')], Action::Edit, WF, "edit the workflow's file")
        .cmd("edit", Arg::Workflow)
        .hint("edit")
        .mutating(),
    b(
        &[k('n')],
        Action::NewWorkflow,
        WF,
        "new workflow file from a template",
    )
    .cmd("new", Arg::None)
    .hint("new")
    .mutating(),
    // DAG focus.
    b(
        &[code(KeyCode::Left), k('h')],
        Action::Left,
        DAG,
        "previous column",
    ),
    b(
        &[code(KeyCode::Right), k('l')],
        Action::Right,
        DAG,
        "next column",
    ),
    b(
        &[code(KeyCode::Enter)],
        Action::OpenLogs,
        DAG,
        "logs of the selected task",
    )
    .hint("task logs"),
    // Runs pane and DAG.
    b(
        &[k('c')],
        Action::Cancel,
        RUNS,
        "cancel the run (asks first)",
    )
    .cmd("cancel", Arg::Run)
    .hint("cancel")
    .mutating(),
    b(
        &[k('r')],
        Action::Retry,
        RUNS,
        "retry the failed tasks of the run",
    )
    .cmd("retry", Arg::Run)
    .hint("retry")
    .mutating(),
    b(&[k('l')], Action::OpenLogs, RUNS_LIST, "logs of the run").hint("logs"),
    // Logs pane.
    b(&[k('f')], Action::Follow, LOGS, "follow new lines on/off")
        .cmd("follow", Arg::None)
        .hint("follow"),
    b(&[k('w')], Action::Wrap, LOGS, "wrap long lines on/off")
        .cmd("wrap", Arg::None)
        .hint("wrap"),
    b(&[k('T')], Action::Timestamps, LOGS, "timestamps on/off")
        .cmd("timestamps", Arg::None)
        .hint("time"),
    b(
        &[k('/')],
        Action::Filter,
        LOGS,
        "search (matches highlighted)",
    )
    .hint("search"),
    b(&[k('n')], Action::NextMatch, LOGS, "next match").hint("next match"),
    b(&[k('N')], Action::PrevMatch, LOGS, "previous match"),
    b(
        &[code(KeyCode::Left), k('h')],
        Action::Left,
        LOGS,
        "scroll left",
    ),
    b(
        &[code(KeyCode::Right), k('l')],
        Action::Right,
        LOGS,
        "scroll right",
    ),
    // Everywhere.
    b(&[k('?')], Action::Help, G, "help")
        .cmd("help", Arg::None)
        .hint("help"),
    b(&[k('q'), ctrl('c')], Action::Quit, G, "quit")
        .cmd("q", Arg::None)
        .hint("quit"),
    b(&[k(':')], Action::Palette, G, "command palette").hint("command"),
    b(&[k('/')], Action::Filter, G, "filter the list").hint("filter"),
    b(&[code(KeyCode::Tab)], Action::NextPane, G, "next pane").hint("pane"),
    b(
        &[code(KeyCode::BackTab)],
        Action::PrevPane,
        G,
        "previous pane",
    ),
    b(&[code(KeyCode::Up), k('k')], Action::Up, G, "up"),
    b(&[code(KeyCode::Down), k('j')], Action::Down, G, "down"),
    b(
        &[code(KeyCode::PageUp), ctrl('u')],
        Action::PageUp,
        G,
        "page up",
    ),
    b(
        &[code(KeyCode::PageDown), ctrl('d')],
        Action::PageDown,
        G,
        "page down",
    ),
    b(&[code(KeyCode::Home), k('g')], Action::Top, G, "first row"),
    b(
        &[code(KeyCode::End), k('G')],
        Action::Bottom,
        G,
        "last row (logs: follow)",
    ),
    b(
        &[code(KeyCode::Enter)],
        Action::Enter,
        G,
        "open the selection",
    )
    .hint("open"),
    b(&[code(KeyCode::Esc)], Action::Back, G, "back"),
    b(&[k('1')], Action::Show(P::Overview), G, "overview pane").cmd("overview", Arg::None),
    b(&[k('2')], Action::Show(P::Workflows), G, "workflows pane").cmd("workflows", Arg::None),
    b(&[k('3')], Action::Show(P::Runs), G, "runs pane").cmd("runs", Arg::None),
    b(&[k('4')], Action::Show(P::Queue), G, "queue pane").cmd("queue", Arg::None),
    b(
        &[k('5')],
        Action::Show(P::Logs),
        G,
        "logs pane (of a run: :logs 12)",
    )
    .cmd("logs", Arg::Run),
    b(&[k('6')], Action::Show(P::History), G, "history pane").cmd("history", Arg::None),
    b(&[k('7')], Action::Show(P::Agents), G, "agents pane").cmd("agents", Arg::None),
    b(&[], Action::Workflow, G, "runs of one workflow").cmd("wf", Arg::Workflow),
    b(&[], Action::Theme, G, "switch theme").cmd("theme", Arg::Theme),
    b(&[ctrl('r')], Action::Refresh, G, "fetch everything again").cmd("refresh", Arg::None),
];

impl Key {
    /// True when `ev` is this key (Shift is part of the character, so it is ignored).
    pub fn matches(&self, ev: &KeyEvent) -> bool {
        let mods = ev.modifiers - KeyModifiers::SHIFT;
        let want = self.mods - KeyModifiers::SHIFT;
        let code = match (ev.code, self.code) {
            // Some terminals report Shift+Tab as Tab with Shift.
            (KeyCode::Tab, KeyCode::BackTab) if ev.modifiers.contains(KeyModifiers::SHIFT) => {
                return mods == want;
            }
            (KeyCode::Tab, KeyCode::Tab) if ev.modifiers.contains(KeyModifiers::SHIFT) => {
                return false;
            }
            (c, _) => c,
        };
        code == self.code && mods == want
    }

    /// How the key is written in hints and help.
    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Char(' ') => "Space".to_string(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "S-Tab".into(),
            KeyCode::Enter => "Enter".into(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::Home => "Home".into(),
            KeyCode::End => "End".into(),
            other => format!("{other:?}"),
        };
        if self.mods.contains(KeyModifiers::CONTROL) {
            format!("C-{base}")
        } else {
            base
        }
    }
}

impl Scope {
    /// True when the binding applies in `ctx`.
    pub fn applies(&self, ctx: Context) -> bool {
        match self {
            Scope::Global => true,
            Scope::In(list) => list.contains(&ctx),
        }
    }
}

/// The binding `ev` triggers in `ctx`: context-specific rows win over global ones.
pub fn lookup(ctx: Context, ev: &KeyEvent) -> Option<&'static Binding> {
    let hit = |b: &&Binding| b.keys.iter().any(|k| k.matches(ev));
    BINDINGS
        .iter()
        .filter(|b| matches!(b.scope, Scope::In(_)) && b.scope.applies(ctx))
        .find(hit)
        .or_else(|| {
            BINDINGS
                .iter()
                .filter(|b| b.scope == Scope::Global)
                .find(hit)
        })
}

/// The rows shown in the hint bar of `ctx`, context-specific first.
pub fn hints(ctx: Context) -> Vec<&'static Binding> {
    let mut out: Vec<&Binding> = BINDINGS
        .iter()
        .filter(|b| b.hint.is_some() && !b.keys.is_empty() && matches!(b.scope, Scope::In(_)))
        .filter(|b| b.scope.applies(ctx))
        .collect();
    // A context key shadows the global row with the same key (`/` searches in logs).
    let shadowed = |g: &Binding| {
        out.iter()
            .any(|b| b.keys.first().map(Key::label) == g.keys.first().map(Key::label))
    };
    let globals: Vec<&Binding> = BINDINGS
        .iter()
        .filter(|b| b.hint.is_some() && !b.keys.is_empty() && b.scope == Scope::Global)
        .filter(|g| !shadowed(g))
        .collect();
    out.extend(globals);
    out
}

/// The binding named `name` in the `:` palette.
pub fn command(name: &str) -> Option<&'static Binding> {
    BINDINGS.iter().find(|b| b.command == Some(name))
}

/// Every key of `binding` joined for display (`↑/k`).
pub fn keys_label(binding: &Binding) -> String {
    binding
        .keys
        .iter()
        .map(Key::label)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_means_two_things_in_one_context() {
        let contexts = Pane::ALL
            .iter()
            .map(|p| Context::Pane(*p))
            .chain([Context::Dag]);
        for ctx in contexts {
            let mut seen: Vec<(String, &str)> = Vec::new();
            for b in BINDINGS
                .iter()
                .filter(|b| matches!(b.scope, Scope::In(_)) && b.scope.applies(ctx))
            {
                for key in b.keys {
                    let label = key.label();
                    if let Some((_, other)) = seen.iter().find(|(l, _)| *l == label) {
                        panic!("{label} is both `{other}` and `{}` in {ctx:?}", b.help);
                    }
                    seen.push((label, b.help));
                }
            }
        }
    }

    #[test]
    fn context_keys_win_over_global_ones() {
        let slash = KeyEvent::new(KeyCode::Char('/'), KeyModifiers::NONE);
        let b = lookup(Context::Pane(Pane::Logs), &slash).expect("bound");
        assert_eq!(b.help, "search (matches highlighted)");
        let b = lookup(Context::Pane(Pane::Runs), &slash).expect("bound");
        assert_eq!(b.action, Action::Filter);
        let shift_t = KeyEvent::new(KeyCode::Char('T'), KeyModifiers::SHIFT);
        let b = lookup(Context::Pane(Pane::Logs), &shift_t).expect("bound");
        assert_eq!(b.action, Action::Timestamps);
    }
}
