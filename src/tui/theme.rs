//! Console colours: a [`Theme`] maps each role (border, selection, task states, …) to a style.
//!
//! Themes are YAML files in `themes/` (`--theme NAME` or `:theme NAME`):
//!
//! ```yaml
//! name: dark
//! colors:             # the palette every role is derived from; each key is optional
//!   fg: white
//!   bg: reset
//!   accent: cyan
//!   muted: darkgray
//!   ok: green
//!   warning: yellow
//!   error: red
//!   running: lightblue
//!   selection_fg: black
//!   selection_bg: cyan
//!   search: yellow
//!   stderr: lightred
//! styles:             # optional per-role overrides
//!   selected: { fg: black, bg: "#87afff", bold: true }
//! ```
//!
//! Colours are names (`red`, `lightblue`, `darkgray`, `reset`), `"#rrggbb"` (quoted: an
//! unquoted `#` starts a YAML comment) or a 0-255 palette index. Unknown keys are errors.
//! With `NO_COLOR` the console uses [`Theme::monochrome`]: modifiers only, no colours.

use std::path::{Path, PathBuf};

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::protocol::agent::AgentState;
use crate::protocol::monitor::MonitorState;
use crate::protocol::service::ServiceState;
use crate::protocol::{RunState, TaskState};

/// Name of the built-in theme used when no file is given or the file is unusable.
pub const DEFAULT_THEME: &str = "dark";

/// Largest theme file accepted, in bytes.
const MAX_THEME_BYTES: u64 = 256 * 1024;

/// Styles for every role the console draws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Theme {
    name: String,
    base: Style,
    border: Style,
    border_focused: Style,
    title: Style,
    header: Style,
    selected: Style,
    muted: Style,
    error: Style,
    warning: Style,
    ok: Style,
    hint_key: Style,
    hint_text: Style,
    search_match: Style,
    stderr: Style,
    line_number: Style,
    pending: Style,
    queued: Style,
    running: Style,
    retrying: Style,
    succeeded: Style,
    failed: Style,
    timed_out: Style,
    cancelled: Style,
    skipped: Style,
    monitors: MonitorStyles,
}

/// How monitors are coloured by state (`colors:` keys `monitor_*` of a theme file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MonitorStyles {
    healthy: Style,
    degraded: Style,
    unhealthy: Style,
    /// Blocked, in maintenance or paused: nothing acts on them now.
    inactive: Style,
    unknown: Style,
    flapping: Style,
    intervening: Style,
}

/// Why a theme file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    /// The file could not be read.
    #[error("cannot read theme file {}: {source}", path.display())]
    Read {
        /// The theme file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is larger than any theme needs.
    #[error("{}: theme file too large ({size} bytes, at most {MAX_THEME_BYTES})", path.display())]
    TooLarge {
        /// The theme file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// The YAML is malformed or holds an unknown key or a bad colour.
    #[error("{}: {message}", located(path, *line, *col))]
    Parse {
        /// The theme file.
        path: PathBuf,
        /// 1-based line; 0 when unknown.
        line: usize,
        /// 1-based column; 0 when unknown.
        col: usize,
        /// One-line description.
        message: String,
    },
}

impl Default for Theme {
    fn default() -> Self {
        Self::default_dark()
    }
}

impl Theme {
    /// The built-in dark theme (also what `themes/dark.yaml` ships).
    pub fn default_dark() -> Self {
        Self::from_palette(DEFAULT_THEME, &Palette::dark())
    }

    /// No colours at all, only modifiers, for `NO_COLOR`: selection is reversed, errors bold
    /// and underlined, muted text dim, so everything stays distinguishable.
    pub fn monochrome() -> Self {
        let plain = Style::new();
        let bold = Style::new().add_modifier(Modifier::BOLD);
        let dim = Style::new().add_modifier(Modifier::DIM);
        let under = Style::new().add_modifier(Modifier::UNDERLINED);
        let error = bold.add_modifier(Modifier::UNDERLINED);
        Self {
            name: "monochrome".to_string(),
            base: plain,
            border: plain,
            border_focused: bold,
            title: bold,
            header: bold.add_modifier(Modifier::UNDERLINED),
            selected: Style::new().add_modifier(Modifier::REVERSED),
            muted: dim,
            error,
            warning: under,
            ok: bold,
            hint_key: bold,
            hint_text: plain,
            search_match: bold.add_modifier(Modifier::REVERSED),
            stderr: Style::new().add_modifier(Modifier::ITALIC),
            line_number: dim,
            pending: dim,
            queued: dim,
            running: bold,
            retrying: under,
            succeeded: plain,
            failed: error,
            timed_out: error,
            cancelled: Style::new().add_modifier(Modifier::ITALIC),
            skipped: dim.add_modifier(Modifier::CROSSED_OUT),
            monitors: MonitorStyles {
                healthy: plain,
                degraded: under,
                unhealthy: error,
                inactive: dim,
                unknown: dim,
                flapping: Style::new().add_modifier(Modifier::ITALIC),
                intervening: bold.add_modifier(Modifier::ITALIC),
            },
        }
    }

    /// Loads one theme file.
    pub fn load(path: &Path) -> Result<Theme, ThemeError> {
        let read_err = |source| ThemeError::Read {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_err)?.len();
        if size > MAX_THEME_BYTES {
            return Err(ThemeError::TooLarge {
                path: path.to_path_buf(),
                size,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        let fallback = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| DEFAULT_THEME.to_string());
        Self::parse(path, &text, &fallback)
    }

    /// Parses theme YAML; `fallback_name` is used when the file has no `name:`.
    fn parse(path: &Path, text: &str, fallback_name: &str) -> Result<Theme, ThemeError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Err(ThemeError::Parse {
                path: path.to_path_buf(),
                line: 1,
                col: 1,
                message: "empty theme file: expected `name:`, `colors:` and optional `styles:`"
                    .to_string(),
            });
        }
        let file: ThemeFile = serde_saphyr::from_str(text).map_err(|err| {
            let (line, col) = err
                .location()
                .map(|l| (l.line() as usize, l.column() as usize))
                .unwrap_or((0, 0));
            ThemeError::Parse {
                path: path.to_path_buf(),
                line,
                col,
                message: yaml_message(&err),
            }
        })?;
        let name = file.name.unwrap_or_else(|| fallback_name.to_string());
        let mut palette = Palette::dark();
        palette.apply(&file.colors);
        let mut theme = Self::from_palette(&name, &palette);
        theme.apply(&file.styles);
        Ok(theme)
    }

    /// The theme called `name` from `themes_dir` (or a path to a `.yaml` file), for
    /// `--theme` / `:theme`. A missing or broken file falls back to the built-in dark theme
    /// and comes with a warning saying where the problem is and what to do. With `no_color`
    /// the result is [`Theme::monochrome`] (the file is still checked, so a broken file is
    /// still reported).
    pub fn resolve(themes_dir: &Path, name: &str, no_color: bool) -> (Theme, Option<String>) {
        let (theme, warning) = Self::resolve_colored(themes_dir, name);
        if no_color {
            (Self::monochrome(), warning)
        } else {
            (theme, warning)
        }
    }

    fn resolve_colored(themes_dir: &Path, name: &str) -> (Theme, Option<String>) {
        let name = name.trim();
        let fallback = "using the built-in dark theme";
        let Some(path) = theme_path(themes_dir, name) else {
            if name.is_empty() || name == DEFAULT_THEME {
                return (Self::default_dark(), None);
            }
            let names = Self::names(themes_dir).join(", ");
            let wanted = if looks_like_path(name) {
                PathBuf::from(name)
            } else {
                themes_dir.join(format!("{name}.yaml"))
            };
            let warning = format!(
                "theme `{name}` not found (no file {}): {fallback}; available themes: {names}",
                wanted.display()
            );
            return (Self::default_dark(), Some(warning));
        };
        match Self::load(&path) {
            Ok(theme) => (theme, None),
            Err(err) => {
                let warning = format!(
                    "cannot use theme `{name}`: {err}; {fallback} instead - fix the file, or \
                     choose another theme with --theme or :theme"
                );
                (Self::default_dark(), Some(warning))
            }
        }
    }

    /// Names of the themes available in `themes_dir` plus the built-in one, sorted.
    pub fn names(themes_dir: &Path) -> Vec<String> {
        let mut names = vec![DEFAULT_THEME.to_string()];
        if let Ok(entries) = std::fs::read_dir(themes_dir) {
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
                if is_yaml
                    && path.is_file()
                    && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                {
                    names.push(stem.to_string());
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// The theme's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Text and background of every pane.
    pub fn base(&self) -> Style {
        self.base
    }

    /// Pane borders; the focused pane's border stands out.
    pub fn border(&self, focused: bool) -> Style {
        if focused {
            self.border_focused
        } else {
            self.border
        }
    }

    /// Pane titles.
    pub fn title(&self) -> Style {
        self.title
    }

    /// Table headers.
    pub fn header(&self) -> Style {
        self.header
    }

    /// The selected row.
    pub fn selected(&self) -> Style {
        self.selected
    }

    /// Secondary text (timestamps, ids, hints).
    pub fn muted(&self) -> Style {
        self.muted
    }

    /// Errors.
    pub fn error(&self) -> Style {
        self.error
    }

    /// Warnings.
    pub fn warning(&self) -> Style {
        self.warning
    }

    /// Success.
    pub fn ok(&self) -> Style {
        self.ok
    }

    /// A key in the hints bar.
    pub fn hint_key(&self) -> Style {
        self.hint_key
    }

    /// The description next to a key in the hints bar.
    pub fn hint_text(&self) -> Style {
        self.hint_text
    }

    /// A search match in the logs.
    pub fn search_match(&self) -> Style {
        self.search_match
    }

    /// Task output written to stderr.
    pub fn stderr(&self) -> Style {
        self.stderr
    }

    /// Line numbers in the editor gutter.
    pub fn line_number(&self) -> Style {
        self.line_number
    }

    /// A run's state.
    pub fn run_state(&self, state: RunState) -> Style {
        match state {
            RunState::Queued => self.queued,
            RunState::Running => self.running,
            RunState::Succeeded => self.succeeded,
            RunState::Failed => self.failed,
            RunState::Cancelled => self.cancelled,
        }
    }

    /// An agent's state: ready reads as fine, cordoned and draining as a warning, lost as an
    /// error, drained (gone on purpose) as muted.
    pub fn agent_state(&self, state: AgentState) -> Style {
        match state {
            AgentState::Ready => self.ok,
            AgentState::Cordoned | AgentState::Draining => self.warning,
            AgentState::Lost => self.error,
            AgentState::Drained => self.muted,
        }
    }

    /// A service's or supervisor's state: up reads as fine, on the way up or down as a
    /// warning, backing off in the accent (cyan in the dark theme), stopped as muted, a
    /// supervisor that gave up as an error.
    pub fn service_state(&self, state: ServiceState) -> Style {
        match state {
            ServiceState::Running => self.ok,
            ServiceState::Starting | ServiceState::Pending | ServiceState::Stopping => self.warning,
            ServiceState::BackingOff => self.hint_key,
            ServiceState::Stopped => self.muted,
            ServiceState::Failed => self.error,
        }
    }

    /// A task's state.
    pub fn task_state(&self, state: TaskState) -> Style {
        match state {
            TaskState::Pending => self.pending,
            TaskState::Queued => self.queued,
            TaskState::Running => self.running,
            TaskState::Retrying => self.retrying,
            TaskState::Succeeded => self.succeeded,
            TaskState::Failed => self.failed,
            TaskState::TimedOut => self.timed_out,
            TaskState::Cancelled => self.cancelled,
            TaskState::Skipped => self.skipped,
        }
    }

    fn from_palette(name: &str, p: &Palette) -> Self {
        let fg = Style::new().fg(p.fg);
        let accent = Style::new().fg(p.accent);
        let muted = Style::new().fg(p.muted);
        let bold = Modifier::BOLD;
        Self {
            name: name.to_string(),
            base: Style::new().fg(p.fg).bg(p.bg),
            border: muted,
            border_focused: accent.add_modifier(bold),
            title: accent.add_modifier(bold),
            header: fg.add_modifier(bold),
            selected: Style::new()
                .fg(p.selection_fg)
                .bg(p.selection_bg)
                .add_modifier(bold),
            muted,
            error: Style::new().fg(p.error).add_modifier(bold),
            warning: Style::new().fg(p.warning),
            ok: Style::new().fg(p.ok),
            hint_key: accent.add_modifier(bold),
            hint_text: muted,
            search_match: Style::new().fg(p.selection_fg).bg(p.search),
            stderr: Style::new().fg(p.stderr),
            line_number: muted,
            pending: muted,
            queued: fg,
            running: Style::new().fg(p.running).add_modifier(bold),
            retrying: Style::new().fg(p.warning),
            succeeded: Style::new().fg(p.ok),
            failed: Style::new().fg(p.error).add_modifier(bold),
            timed_out: Style::new().fg(p.error).add_modifier(bold),
            cancelled: Style::new().fg(p.warning).add_modifier(Modifier::DIM),
            skipped: muted.add_modifier(Modifier::CROSSED_OUT),
            monitors: MonitorStyles {
                healthy: Style::new().fg(p.monitor_healthy),
                degraded: Style::new().fg(p.monitor_degraded),
                unhealthy: Style::new().fg(p.monitor_unhealthy).add_modifier(bold),
                inactive: Style::new().fg(p.monitor_inactive),
                unknown: muted,
                flapping: Style::new().fg(p.monitor_flapping),
                intervening: Style::new().fg(p.monitor_intervening).add_modifier(bold),
            },
        }
    }

    /// A monitor: by its state (healthy green, degraded yellow, unhealthy red, blocked,
    /// maintenance and paused gray), magenta while flapping, cyan while an intervention runs.
    pub fn monitor_state(&self, state: MonitorState, flapping: bool, intervening: bool) -> Style {
        let m = &self.monitors;
        if intervening {
            return m.intervening;
        }
        if flapping {
            return m.flapping;
        }
        match state {
            MonitorState::Healthy => m.healthy,
            MonitorState::Degraded => m.degraded,
            MonitorState::Unhealthy => m.unhealthy,
            MonitorState::Unknown => m.unknown,
            MonitorState::Blocked | MonitorState::Maintenance | MonitorState::Paused => m.inactive,
        }
    }

    fn apply(&mut self, o: &Overrides) {
        let roles: [(&Option<StyleSpec>, &mut Style); 24] = [
            (&o.base, &mut self.base),
            (&o.border, &mut self.border),
            (&o.border_focused, &mut self.border_focused),
            (&o.title, &mut self.title),
            (&o.header, &mut self.header),
            (&o.selected, &mut self.selected),
            (&o.muted, &mut self.muted),
            (&o.error, &mut self.error),
            (&o.warning, &mut self.warning),
            (&o.ok, &mut self.ok),
            (&o.hint_key, &mut self.hint_key),
            (&o.hint_text, &mut self.hint_text),
            (&o.search_match, &mut self.search_match),
            (&o.stderr, &mut self.stderr),
            (&o.line_number, &mut self.line_number),
            (&o.pending, &mut self.pending),
            (&o.queued, &mut self.queued),
            (&o.running, &mut self.running),
            (&o.retrying, &mut self.retrying),
            (&o.succeeded, &mut self.succeeded),
            (&o.failed, &mut self.failed),
            (&o.timed_out, &mut self.timed_out),
            (&o.cancelled, &mut self.cancelled),
            (&o.skipped, &mut self.skipped),
        ];
        for (spec, style) in roles {
            if let Some(spec) = spec {
                *style = spec.patch(*style);
            }
        }
    }

    /// Every role's style, for tests.
    #[cfg(test)]
    fn all_styles(&self) -> Vec<Style> {
        vec![
            self.base,
            self.border,
            self.border_focused,
            self.title,
            self.header,
            self.selected,
            self.muted,
            self.error,
            self.warning,
            self.ok,
            self.hint_key,
            self.hint_text,
            self.search_match,
            self.stderr,
            self.line_number,
            self.pending,
            self.queued,
            self.running,
            self.retrying,
            self.succeeded,
            self.failed,
            self.timed_out,
            self.cancelled,
            self.skipped,
        ]
    }
}

/// `path:line:col`, or just the path when the position is unknown.
fn located(path: &Path, line: usize, col: usize) -> String {
    match (line, col) {
        (0, _) => path.display().to_string(),
        (line, 0) => format!("{}:{line}", path.display()),
        (line, col) => format!("{}:{line}:{col}", path.display()),
    }
}

/// `themes_dir/NAME.yaml` (or `.yml`), or `name` itself when it is a path to a file.
fn theme_path(themes_dir: &Path, name: &str) -> Option<PathBuf> {
    if name.is_empty() {
        return None;
    }
    if looks_like_path(name) {
        let path = Path::new(name);
        return path.is_file().then(|| path.to_path_buf());
    }
    ["yaml", "yml"]
        .iter()
        .map(|ext| themes_dir.join(format!("{name}.{ext}")))
        .find(|p| p.is_file())
}

/// True when a `--theme` value is a file path rather than a theme name.
fn looks_like_path(name: &str) -> bool {
    name.contains(std::path::MAIN_SEPARATOR) || name.ends_with(".yaml") || name.ends_with(".yml")
}

/// One line from a serde-saphyr error, without location or snippet.
fn yaml_message(err: &serde_saphyr::Error) -> String {
    use serde_saphyr::MessageFormatter as _;
    let mut err = err;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = err
    {
        err = error;
    }
    let text = serde_saphyr::DefaultMessageFormatter
        .format_message(err)
        .into_owned();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The colours every role is derived from.
#[derive(Debug, Clone)]
struct Palette {
    fg: Color,
    bg: Color,
    accent: Color,
    muted: Color,
    ok: Color,
    warning: Color,
    error: Color,
    running: Color,
    selection_fg: Color,
    selection_bg: Color,
    search: Color,
    stderr: Color,
    monitor_healthy: Color,
    monitor_degraded: Color,
    monitor_unhealthy: Color,
    monitor_inactive: Color,
    monitor_flapping: Color,
    monitor_intervening: Color,
}

impl Palette {
    fn dark() -> Self {
        Self {
            fg: Color::Gray,
            bg: Color::Reset,
            accent: Color::Cyan,
            muted: Color::DarkGray,
            ok: Color::Green,
            warning: Color::Yellow,
            error: Color::LightRed,
            running: Color::LightBlue,
            selection_fg: Color::Black,
            selection_bg: Color::Cyan,
            search: Color::Yellow,
            stderr: Color::LightRed,
            monitor_healthy: Color::Green,
            monitor_degraded: Color::Yellow,
            monitor_unhealthy: Color::LightRed,
            monitor_inactive: Color::Gray,
            monitor_flapping: Color::Magenta,
            monitor_intervening: Color::Cyan,
        }
    }

    fn apply(&mut self, c: &Colors) {
        let slots: [(Option<Color>, &mut Color); 18] = [
            (c.fg, &mut self.fg),
            (c.bg, &mut self.bg),
            (c.accent, &mut self.accent),
            (c.muted, &mut self.muted),
            (c.ok, &mut self.ok),
            (c.warning, &mut self.warning),
            (c.error, &mut self.error),
            (c.running, &mut self.running),
            (c.selection_fg, &mut self.selection_fg),
            (c.selection_bg, &mut self.selection_bg),
            (c.search, &mut self.search),
            (c.stderr, &mut self.stderr),
            (c.monitor_healthy, &mut self.monitor_healthy),
            (c.monitor_degraded, &mut self.monitor_degraded),
            (c.monitor_unhealthy, &mut self.monitor_unhealthy),
            (c.monitor_inactive, &mut self.monitor_inactive),
            (c.monitor_flapping, &mut self.monitor_flapping),
            (c.monitor_intervening, &mut self.monitor_intervening),
        ];
        for (value, slot) in slots {
            if let Some(value) = value {
                *slot = value;
            }
        }
    }
}

/// A theme file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    name: Option<String>,
    #[serde(default)]
    colors: Colors,
    #[serde(default)]
    styles: Overrides,
}

/// `colors:` of a theme file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Colors {
    #[serde(default, deserialize_with = "color")]
    fg: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    bg: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    accent: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    muted: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    ok: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    warning: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    error: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    running: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    selection_fg: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    selection_bg: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    search: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    stderr: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    monitor_healthy: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    monitor_degraded: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    monitor_unhealthy: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    monitor_inactive: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    monitor_flapping: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    monitor_intervening: Option<Color>,
}

/// `styles:` of a theme file: per-role overrides.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Overrides {
    base: Option<StyleSpec>,
    border: Option<StyleSpec>,
    border_focused: Option<StyleSpec>,
    title: Option<StyleSpec>,
    header: Option<StyleSpec>,
    selected: Option<StyleSpec>,
    muted: Option<StyleSpec>,
    error: Option<StyleSpec>,
    warning: Option<StyleSpec>,
    ok: Option<StyleSpec>,
    hint_key: Option<StyleSpec>,
    hint_text: Option<StyleSpec>,
    search_match: Option<StyleSpec>,
    stderr: Option<StyleSpec>,
    line_number: Option<StyleSpec>,
    pending: Option<StyleSpec>,
    queued: Option<StyleSpec>,
    running: Option<StyleSpec>,
    retrying: Option<StyleSpec>,
    succeeded: Option<StyleSpec>,
    failed: Option<StyleSpec>,
    timed_out: Option<StyleSpec>,
    cancelled: Option<StyleSpec>,
    skipped: Option<StyleSpec>,
}

/// One role's override: colours and modifiers; `bold: false` removes a default modifier.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StyleSpec {
    #[serde(default, deserialize_with = "color")]
    fg: Option<Color>,
    #[serde(default, deserialize_with = "color")]
    bg: Option<Color>,
    bold: Option<bool>,
    dim: Option<bool>,
    italic: Option<bool>,
    underlined: Option<bool>,
    reversed: Option<bool>,
    crossed_out: Option<bool>,
}

impl StyleSpec {
    fn patch(&self, mut style: Style) -> Style {
        if let Some(fg) = self.fg {
            style = style.fg(fg);
        }
        if let Some(bg) = self.bg {
            style = style.bg(bg);
        }
        let flags = [
            (self.bold, Modifier::BOLD),
            (self.dim, Modifier::DIM),
            (self.italic, Modifier::ITALIC),
            (self.underlined, Modifier::UNDERLINED),
            (self.reversed, Modifier::REVERSED),
            (self.crossed_out, Modifier::CROSSED_OUT),
        ];
        for (flag, modifier) in flags {
            match flag {
                Some(true) => style = style.add_modifier(modifier),
                Some(false) => style = style.remove_modifier(modifier),
                None => {}
            }
        }
        style
    }
}

const COLOR_EXPECTED: &str = "a colour: a name (red, lightblue, darkgray, reset), \"#rrggbb\" in \
                              quotes, or a palette index 0-255";

/// Deserializes a present colour value; a null (often an unquoted `#rrggbb`, which YAML reads
/// as a comment) is an error rather than "no colour".
fn color<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Color>, D::Error> {
    d.deserialize_any(ColorVisitor).map(Some)
}

struct ColorVisitor;

impl<'de> Visitor<'de> for ColorVisitor {
    type Value = Color;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(COLOR_EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Color, E> {
        let v = v.trim();
        if v.starts_with('#') && v.len() != 7 {
            return Err(E::custom(format!(
                "invalid colour `{v}`: write hex colours as \"#rrggbb\" (six digits)"
            )));
        }
        v.parse::<Color>()
            .map_err(|_| E::custom(format!("unknown colour `{v}`: expected {COLOR_EXPECTED}")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Color, E> {
        u8::try_from(v)
            .map(Color::Indexed)
            .map_err(|_| E::custom(format!("colour index {v} out of range: expected 0-255")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Color, E> {
        u8::try_from(v)
            .map(Color::Indexed)
            .map_err(|_| E::custom(format!("colour index {v} out of range: expected 0-255")))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Color, E> {
        Err(E::custom(format!(
            "missing colour (a `#rrggbb` colour must be quoted, or YAML reads it as a \
             comment): expected {COLOR_EXPECTED}"
        )))
    }

    fn visit_none<E: de::Error>(self) -> Result<Color, E> {
        self.visit_unit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Theme, ThemeError> {
        Theme::parse(Path::new("themes/t.yaml"), text, "t")
    }

    fn shipped_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("themes")
    }

    #[test]
    fn every_shipped_theme_loads() {
        let dir = shipped_dir();
        for name in ["dark", "light", "high-contrast"] {
            let path = dir.join(format!("{name}.yaml"));
            let theme = Theme::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(theme.name(), name);
            let (resolved, warning) = Theme::resolve(&dir, name, false);
            assert_eq!(warning, None);
            assert_eq!(resolved, theme);
        }
        let names = Theme::names(&dir);
        for name in ["dark", "light", "high-contrast"] {
            assert!(names.contains(&name.to_string()), "{names:?}");
        }
    }

    #[test]
    fn shipped_dark_matches_builtin() {
        let theme = Theme::load(&shipped_dir().join("dark.yaml")).unwrap();
        assert_eq!(theme, Theme::default_dark());
    }

    #[test]
    fn colours_names_hex_and_index() {
        let theme = parse(
            "name: x\ncolors:\n  fg: lightblue\n  bg: \"#102030\"\n  accent: 208\n  muted: dark-gray\n",
        )
        .unwrap();
        assert_eq!(theme.name(), "x");
        assert_eq!(theme.base().fg, Some(Color::LightBlue));
        assert_eq!(theme.base().bg, Some(Color::Rgb(0x10, 0x20, 0x30)));
        assert_eq!(theme.title().fg, Some(Color::Indexed(208)));
        assert_eq!(theme.muted().fg, Some(Color::DarkGray));
    }

    #[test]
    fn role_overrides_patch_the_derived_style() {
        let theme = parse(
            "colors: { error: red }\nstyles:\n  selected: { fg: white, bg: blue, bold: false, underlined: true }\n  error: { reversed: true }\n",
        )
        .unwrap();
        assert_eq!(theme.name(), "t", "the file stem names an unnamed theme");
        let sel = theme.selected();
        assert_eq!((sel.fg, sel.bg), (Some(Color::White), Some(Color::Blue)));
        assert!(sel.add_modifier.contains(Modifier::UNDERLINED));
        assert!(sel.sub_modifier.contains(Modifier::BOLD));
        let err = theme.error();
        assert_eq!(err.fg, Some(Color::Red));
        assert!(
            err.add_modifier
                .contains(Modifier::BOLD | Modifier::REVERSED)
        );
    }

    #[test]
    fn unknown_key_is_an_error_with_line_and_column() {
        let err = parse("name: x\ncolors:\n  fg: white\n  acent: cyan\n").unwrap_err();
        let ThemeError::Parse {
            line, col, message, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!((*line, *col), (4, 3), "{err}");
        assert!(message.contains("acent"), "{message}");
        assert!(err.to_string().starts_with("themes/t.yaml:4:3: "), "{err}");
    }

    #[test]
    fn bad_colours_are_errors() {
        let err = parse("colors:\n  fg: purpleish\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown colour `purpleish`"),
            "{err}"
        );
        assert!(err.to_string().contains(":2:"), "{err}");
        let err = parse("colors:\n  fg: 300\n").unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
        // Unquoted hex is a YAML comment: say so instead of silently ignoring it.
        let err = parse("colors:\n  fg: #ff0000\n").unwrap_err();
        assert!(err.to_string().contains("quoted"), "{err}");
        let err = parse("styles:\n  selcted: { bold: true }\n").unwrap_err();
        assert!(err.to_string().contains("selcted"), "{err}");
        let err = parse("# nothing\n").unwrap_err();
        assert!(err.to_string().contains("empty theme file"), "{err}");
    }

    #[test]
    fn resolve_falls_back_with_a_warning_naming_file_line_col() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("broken.yaml"),
            "name: broken\ncolors:\n  fg: nope\n",
        )
        .unwrap();
        let (theme, warning) = Theme::resolve(dir.path(), "broken", false);
        assert_eq!(theme, Theme::default_dark());
        let warning = warning.expect("a warning");
        assert!(
            warning.starts_with("cannot use theme `broken`: "),
            "{warning}"
        );
        assert!(warning.contains("broken.yaml:3:7"), "{warning}");
        assert!(warning.contains("nope"), "{warning}");
        assert!(warning.contains("built-in dark theme"), "{warning}");
        assert!(warning.contains("--theme"), "{warning}");
        let (theme, warning) = Theme::resolve(dir.path(), "missing", false);
        assert_eq!(theme, Theme::default_dark());
        let warning = warning.unwrap();
        assert!(warning.contains("missing.yaml"), "{warning}");
        assert!(
            warning.contains("available themes: broken, dark"),
            "{warning}"
        );
        // A path works as well as a name.
        let path = dir.path().join("broken.yaml");
        let (_, warning) = Theme::resolve(dir.path(), path.to_str().unwrap(), false);
        assert!(warning.unwrap().contains("broken.yaml:3:7"));
        let (_, warning) = Theme::resolve(dir.path(), "/nowhere/x.yaml", false);
        assert!(warning.unwrap().contains("no file /nowhere/x.yaml"));
        // The built-in name needs no file.
        assert_eq!(Theme::resolve(dir.path(), "dark", false).1, None);
        assert_eq!(
            Theme::names(dir.path()),
            vec!["broken".to_string(), "dark".to_string()]
        );
    }

    #[test]
    fn no_color_has_no_colours_but_stays_distinguishable() {
        let dir = shipped_dir();
        let (theme, warning) = Theme::resolve(&dir, "light", true);
        assert_eq!(warning, None);
        for style in theme.all_styles() {
            assert_eq!((style.fg, style.bg), (None, None), "{style:?}");
            assert_eq!(style.underline_color, None);
        }
        assert!(theme.selected().add_modifier.contains(Modifier::REVERSED));
        assert_ne!(theme.selected(), theme.base());
        assert_ne!(theme.error(), theme.base());
        assert_ne!(theme.border(true), theme.border(false));
        assert_ne!(
            theme.task_state(TaskState::Failed),
            theme.task_state(TaskState::Succeeded)
        );
        assert_ne!(
            theme.task_state(TaskState::Running),
            theme.task_state(TaskState::Queued)
        );
        assert_ne!(
            theme.run_state(RunState::Failed),
            theme.run_state(RunState::Cancelled)
        );
        // A broken file is still reported under NO_COLOR.
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("b.yaml"), "colours: {}\n").unwrap();
        let (theme, warning) = Theme::resolve(tmp.path(), "b", true);
        assert_eq!(theme, Theme::monochrome());
        assert!(warning.unwrap().contains("colours"));
    }

    #[test]
    fn states_have_distinct_styles_in_the_dark_theme() {
        let t = Theme::default_dark();
        assert_ne!(
            t.task_state(TaskState::Failed),
            t.task_state(TaskState::Succeeded)
        );
        assert_ne!(
            t.run_state(RunState::Running),
            t.run_state(RunState::Queued)
        );
        assert_eq!(
            t.run_state(RunState::Failed),
            t.task_state(TaskState::Failed)
        );
    }
}
