//! What the one key table is made of: keys, bindings, where they apply, and the bindings that
//! apply everywhere. The panes declare their own rows; `panes::table` assembles the table, and
//! every key, `:` command, hint and help line comes from it.

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
    /// Every agent: state, slots, heartbeat, running work.
    Agents,
    /// The supervision trees: every supervisor and service with its state.
    Supervisors,
    /// Every monitor coloured by state, the selected one in detail; incidents.
    Monitors,
}

impl Pane {
    /// Every pane in Tab order.
    pub const ALL: [Pane; 9] = [
        Pane::Overview,
        Pane::Workflows,
        Pane::Runs,
        Pane::Queue,
        Pane::Logs,
        Pane::History,
        Pane::Agents,
        Pane::Supervisors,
        Pane::Monitors,
    ];

    /// The name shown in the tab bar and used as a `:` command.
    pub const fn name(self) -> &'static str {
        match self {
            Pane::Overview => "overview",
            Pane::Workflows => "workflows",
            Pane::Runs => "runs",
            Pane::Queue => "queue",
            Pane::Logs => "logs",
            Pane::History => "history",
            Pane::Agents => "agents",
            Pane::Supervisors => "supervisors",
            Pane::Monitors => "monitors",
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
    /// Cordon the selected agent, or uncordon it.
    ToggleCordon,
    /// Drain the selected agent (asks first).
    Drain,
    /// Start the selected service or subtree (asks first).
    ServiceStart,
    /// Stop the selected service or subtree and hold it stopped (asks first).
    ServiceStop,
    /// Restart the selected service or subtree (asks first).
    ServiceRestart,
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
    /// Check the selected monitor now.
    MonitorCheck,
    /// Pause the selected monitor, or resume it.
    MonitorPause,
    /// Show the selected monitor's incident.
    OpenIncident,
    /// The Monitors pane shows incidents instead of monitors, or monitors again.
    ToggleIncidents,
}

impl Action {
    /// How far a movement goes in a list whose view shows `page` rows; `None` for an action
    /// that is not a movement.
    pub fn step(self, page: usize) -> Option<isize> {
        let page = page.max(1) as isize;
        Some(match self {
            Action::Up => -1,
            Action::Down => 1,
            Action::PageUp => -page,
            Action::PageDown => page,
            Action::Top => isize::MIN / 2,
            Action::Bottom => isize::MAX / 2,
            _ => return None,
        })
    }
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
    /// An optional agent id.
    Agent,
}

/// One key: a code and its modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The key.
    pub code: KeyCode,
    /// Ctrl, Shift, ... (Shift is ignored for characters).
    pub mods: KeyModifiers,
}

/// A character key.
pub const fn k(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        mods: KeyModifiers::NONE,
    }
}

/// Ctrl and a character.
pub const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        mods: KeyModifiers::CONTROL,
    }
}

/// A key without modifiers.
pub const fn code(code: KeyCode) -> Key {
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

/// A binding without a command or a hint.
pub const fn b(keys: &'static [Key], action: Action, scope: Scope, help: &'static str) -> Binding {
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
    /// Also the `:` command `name` taking `arg`.
    pub const fn cmd(mut self, name: &'static str, arg: Arg) -> Self {
        self.command = Some(name);
        self.arg = arg;
        self
    }
    /// Shown in the hint bar as `label`.
    pub const fn hint(mut self, label: &'static str) -> Self {
        self.hint = Some(label);
        self
    }
    /// Disabled with `--read-only`.
    pub const fn mutating(mut self) -> Self {
        self.mutates = true;
        self
    }
}

/// Bindings that apply everywhere, shown before the panes' `1`..`9` rows in help.
pub static GLOBAL_HEAD: &[Binding] = &[
    b(&[k('?')], Action::Help, Scope::Global, "help")
        .cmd("help", Arg::None)
        .hint("help"),
    b(&[k('q'), ctrl('c')], Action::Quit, Scope::Global, "quit")
        .cmd("q", Arg::None)
        .hint("quit"),
    b(&[k(':')], Action::Palette, Scope::Global, "command palette").hint("command"),
    b(&[k('/')], Action::Filter, Scope::Global, "filter the list").hint("filter"),
    b(
        &[code(KeyCode::Tab)],
        Action::NextPane,
        Scope::Global,
        "next pane",
    )
    .hint("pane"),
    b(
        &[code(KeyCode::BackTab)],
        Action::PrevPane,
        Scope::Global,
        "previous pane",
    ),
    b(
        &[code(KeyCode::Up), k('k')],
        Action::Up,
        Scope::Global,
        "up",
    ),
    b(
        &[code(KeyCode::Down), k('j')],
        Action::Down,
        Scope::Global,
        "down",
    ),
    b(
        &[code(KeyCode::PageUp), ctrl('u')],
        Action::PageUp,
        Scope::Global,
        "page up",
    ),
    b(
        &[code(KeyCode::PageDown), ctrl('d')],
        Action::PageDown,
        Scope::Global,
        "page down",
    ),
    b(
        &[code(KeyCode::Home), k('g')],
        Action::Top,
        Scope::Global,
        "first row",
    ),
    b(
        &[code(KeyCode::End), k('G')],
        Action::Bottom,
        Scope::Global,
        "last row (logs: follow)",
    ),
    b(
        &[code(KeyCode::Enter)],
        Action::Enter,
        Scope::Global,
        "open the selection",
    )
    .hint("open"),
    b(&[code(KeyCode::Esc)], Action::Back, Scope::Global, "back"),
];

/// Bindings that apply everywhere, shown after the panes' `1`..`9` rows in help.
pub static GLOBAL_TAIL: &[Binding] = &[
    b(&[], Action::Workflow, Scope::Global, "runs of one workflow").cmd("wf", Arg::Workflow),
    b(&[], Action::Theme, Scope::Global, "switch theme").cmd("theme", Arg::Theme),
    b(
        &[ctrl('r')],
        Action::Refresh,
        Scope::Global,
        "fetch everything again",
    )
    .cmd("refresh", Arg::None),
];

/// The keys that show the panes, by position in the registry (`1` shows the first).
pub static PANE_KEYS: [Key; 9] = [
    k('1'),
    k('2'),
    k('3'),
    k('4'),
    k('5'),
    k('6'),
    k('7'),
    k('8'),
    k('9'),
];

/// The binding that shows `pane` with the key `key` (from [`PANE_KEYS`]).
pub const fn show_pane(key: &'static [Key], pane: Pane, help: &'static str, arg: Arg) -> Binding {
    b(key, Action::Show(pane), Scope::Global, help).cmd(pane.name(), arg)
}

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

/// A binding and the pane that declared it (`None`: it applies everywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// The binding.
    pub binding: &'static Binding,
    /// The pane whose file declared it; its actions go to that pane.
    pub owner: Option<Pane>,
}

impl std::ops::Deref for Row {
    type Target = Binding;
    fn deref(&self) -> &Binding {
        self.binding
    }
}

impl PartialEq for Binding {
    fn eq(&self, other: &Self) -> bool {
        self.command == other.command && self.action == other.action
    }
}
impl Eq for Binding {}

/// The one key table, in the order help lists it.
#[derive(Debug, Clone, Default)]
pub struct Table {
    rows: Vec<Row>,
}

impl Table {
    /// A table of `rows`; context-specific rows should come before global ones.
    pub fn new(rows: Vec<Row>) -> Self {
        Self { rows }
    }

    /// Every row.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Every binding.
    pub fn bindings(&self) -> impl Iterator<Item = &'static Binding> + '_ {
        self.rows.iter().map(|r| r.binding)
    }

    /// The row `ev` triggers in `ctx`: context-specific rows win over global ones.
    pub fn lookup(&self, ctx: Context, ev: &KeyEvent) -> Option<Row> {
        let hit = |r: &&Row| r.keys.iter().any(|k| k.matches(ev));
        self.rows
            .iter()
            .filter(|r| matches!(r.scope, Scope::In(_)) && r.scope.applies(ctx))
            .find(hit)
            .or_else(|| {
                self.rows
                    .iter()
                    .filter(|r| r.scope == Scope::Global)
                    .find(hit)
            })
            .copied()
    }

    /// The global row doing `action`.
    pub fn global(&self, action: Action) -> Option<Row> {
        self.rows
            .iter()
            .find(|r| r.scope == Scope::Global && r.action == action)
            .copied()
    }

    /// The rows shown in the hint bar of `ctx`, context-specific first.
    pub fn hints(&self, ctx: Context) -> Vec<&'static Binding> {
        let mut out: Vec<&'static Binding> = self
            .bindings()
            .filter(|b| b.hint.is_some() && !b.keys.is_empty() && matches!(b.scope, Scope::In(_)))
            .filter(|b| b.scope.applies(ctx))
            .collect();
        // A context key shadows the global row with the same key (`/` searches in logs).
        let shadowed = |g: &Binding| {
            out.iter()
                .any(|b| b.keys.first().map(Key::label) == g.keys.first().map(Key::label))
        };
        let globals: Vec<&'static Binding> = self
            .bindings()
            .filter(|b| b.hint.is_some() && !b.keys.is_empty() && b.scope == Scope::Global)
            .filter(|g| !shadowed(g))
            .collect();
        out.extend(globals);
        out
    }

    /// The row named `name` in the `:` palette.
    pub fn command(&self, name: &str) -> Option<Row> {
        self.rows.iter().find(|r| r.command == Some(name)).copied()
    }

    /// The rows that are `:` commands.
    pub fn commands(&self) -> impl Iterator<Item = Row> + '_ {
        self.rows.iter().filter(|r| r.command.is_some()).copied()
    }
}

/// A key of a dialog and what it does there; each dialog's file declares its table.
#[derive(Debug, Clone, Copy)]
pub struct DialogKey<A: 'static> {
    /// Keys that do it. A key without modifiers matches whatever modifiers are held, as the
    /// dialogs always did; one with modifiers (Ctrl-C) needs them.
    pub keys: &'static [Key],
    /// What it does.
    pub does: A,
    /// Its label in the dialog's key hints (not shown when empty).
    pub label: &'static str,
}

/// What `ev` does in a dialog whose keys are `table`.
pub fn dialog_key<A: Copy>(table: &[DialogKey<A>], ev: &KeyEvent) -> Option<A> {
    let hit = |k: &Key| ev.code == k.code && ev.modifiers.contains(k.mods);
    table
        .iter()
        .find(|d| d.keys.iter().any(hit))
        .map(|d| d.does)
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
