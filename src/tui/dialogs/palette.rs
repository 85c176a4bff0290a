//! The `:` command palette: parsing and completion over the key table's command names, its
//! keys and its drawing (the line at the bottom and the completions above it).

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::answer::{Answer, CTRL_C, ENTER, ESC};
use crate::tui::draw::block;
use crate::tui::keymap::{Arg, DialogKey, Row, Table, code, dialog_key};
use crate::tui::line_input::{Edit, LineInput};
use crate::tui::theme::Theme;

/// What the palette's keys do besides editing the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaletteKey {
    /// Complete the word being typed.
    Complete,
    /// Run the command.
    Run,
    /// Close.
    Close,
}

/// Keys of the palette besides those editing the line (Backspace on an empty line closes).
pub static KEYS: &[DialogKey<PaletteKey>] = &[
    DialogKey {
        keys: ESC,
        does: PaletteKey::Close,
        label: "close",
    },
    DialogKey {
        keys: CTRL_C,
        does: PaletteKey::Close,
        label: "",
    },
    DialogKey {
        keys: &[code(KeyCode::Tab)],
        does: PaletteKey::Complete,
        label: "complete",
    },
    DialogKey {
        keys: ENTER,
        does: PaletteKey::Run,
        label: "run",
    },
];

/// Names the palette can complete an argument from.
#[derive(Debug, Default, Clone)]
pub struct Names {
    /// Workflow names.
    pub workflows: Vec<String>,
    /// Theme names.
    pub themes: Vec<String>,
    /// Run ids, newest first.
    pub runs: Vec<String>,
    /// Agent ids, in the order they joined.
    pub agents: Vec<String>,
}

/// What the user typed after `:`.
#[derive(Debug, Default, Clone)]
pub struct Palette {
    /// The text after the colon.
    pub input: LineInput,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The command's row in the key table.
    pub binding: Row,
    /// Its argument, if one was given.
    pub arg: Option<String>,
}

/// Why a command line could not be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaletteError {
    /// Nothing typed.
    #[error("type a command, e.g. :runs (Tab completes)")]
    Empty,
    /// No such command.
    #[error("unknown command `:{0}`{1}")]
    Unknown(String, String),
    /// The command needs an argument.
    #[error("`:{0}` needs {1}")]
    MissingArg(&'static str, &'static str),
}

fn arg_names(arg: Arg, names: &Names) -> &[String] {
    match arg {
        Arg::None => &[],
        Arg::Workflow => &names.workflows,
        Arg::Theme => &names.themes,
        Arg::Run => &names.runs,
        Arg::Agent => &names.agents,
    }
}

fn arg_label(arg: Arg) -> &'static str {
    match arg {
        Arg::None => "nothing",
        Arg::Workflow => "a workflow name",
        Arg::Theme => "a theme name",
        Arg::Run => "a run id",
        Arg::Agent => "an agent id",
    }
}

impl Palette {
    /// Parses the input into a command and its argument.
    pub fn parse(&self, table: &Table) -> Result<Parsed, PaletteError> {
        let text = self.input.text().trim();
        if text.is_empty() {
            return Err(PaletteError::Empty);
        }
        let (name, arg) = match text.split_once(char::is_whitespace) {
            Some((n, a)) => (n, Some(a.trim().to_string()).filter(|a| !a.is_empty())),
            None => (text, None),
        };
        let binding = match table.command(name) {
            Some(b) => b,
            None => {
                let known: Vec<&str> = table.commands().filter_map(|b| b.command).collect();
                let hint = known
                    .iter()
                    .map(|k| (strsim::jaro_winkler(name, k), *k))
                    .filter(|(score, _)| *score >= 0.8)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, s)| format!("; did you mean `:{s}`?"))
                    .unwrap_or_default();
                return Err(PaletteError::Unknown(name.to_string(), hint));
            }
        };
        let required = matches!(binding.arg, Arg::Workflow | Arg::Theme);
        if arg.is_none()
            && required
            && let Some(name) = binding.command
            // trigger/pause/edit fall back to the selected workflow.
            && matches!(name, "wf" | "theme")
        {
            return Err(PaletteError::MissingArg(name, arg_label(binding.arg)));
        }
        Ok(Parsed { binding, arg })
    }

    /// Candidates for the word being typed: `(completed text, help)`.
    pub fn candidates(&self, names: &Names, table: &Table) -> Vec<(String, &'static str)> {
        let input = self.input.text();
        match input.split_once(' ') {
            None => table
                .commands()
                .filter_map(|b| Some((b.command?, b.help)))
                .filter(|(c, _)| c.starts_with(input))
                .map(|(c, h)| (c.to_string(), h))
                .collect(),
            Some((cmd, partial)) => {
                let Some(b) = table.command(cmd) else {
                    return Vec::new();
                };
                arg_names(b.arg, names)
                    .iter()
                    .filter(|n| n.starts_with(partial.trim_start()))
                    .map(|n| (format!("{cmd} {n}"), b.help))
                    .collect()
            }
        }
    }

    /// Completes the input: the only candidate (followed by a space when it takes an
    /// argument), or the longest prefix all candidates share.
    pub fn complete(&mut self, names: &Names, table: &Table) {
        let cands = self.candidates(names, table);
        match cands.as_slice() {
            [] => {}
            [(only, _)] => {
                let takes_arg =
                    !only.contains(' ') && table.command(only).is_some_and(|b| b.arg != Arg::None);
                self.input.set(only.clone());
                if takes_arg {
                    self.input.insert(' ');
                }
            }
            many => {
                let first = &many[0].0;
                let mut len = first.len();
                for (c, _) in &many[1..] {
                    len = len.min(
                        first
                            .char_indices()
                            .zip(c.chars())
                            .take_while(|((_, a), b)| a == b)
                            .last()
                            .map_or(0, |((i, a), _)| i + a.len_utf8()),
                    );
                }
                if len > self.input.text().len() {
                    self.input.set(&first[..len]);
                }
            }
        }
    }

    /// Tab completes, Enter answers the parsed command (or why it cannot run), Esc, Ctrl-C and
    /// Backspace on an empty line close; other keys edit the line.
    pub fn on_key(
        &mut self,
        key: &KeyEvent,
        names: &Names,
        table: &Table,
    ) -> Answer<Result<Parsed, PaletteError>> {
        match dialog_key(KEYS, key) {
            Some(PaletteKey::Close) => Answer::Close,
            Some(PaletteKey::Complete) => {
                self.complete(names, table);
                Answer::Stay
            }
            Some(PaletteKey::Run) => Answer::Done(self.parse(table)),
            None => match self.input.handle(key) {
                Edit::BackspaceEmpty => Answer::Close,
                _ => Answer::Stay,
            },
        }
    }

    /// The message line while a command is typed.
    pub fn line(&self, theme: &Theme) -> Line<'static> {
        let mut spans = vec![Span::styled(":", theme.hint_key())];
        spans.extend(self.input.spans(Default::default(), theme.muted()));
        Line::from(spans)
    }

    /// Draws the completions above the message line, at the bottom of `body`.
    pub fn draw(&self, frame: &mut Frame, body: Rect, theme: &Theme, names: &Names, table: &Table) {
        let cands = self.candidates(names, table);
        if cands.is_empty() {
            return;
        }
        let h = (cands.len() as u16).min(8) + 2;
        let w = 60.min(body.width);
        let popup = Rect::new(body.x, body.bottom().saturating_sub(h), w, h);
        frame.render_widget(Clear, popup);
        let lines: Vec<Line> = cands
            .iter()
            .take(8)
            .map(|(c, help)| {
                // Name the argument a command takes: `:wf NAME`.
                let arg = match table.command(c).map(|b| b.arg) {
                    Some(Arg::Workflow) if !c.contains(' ') => " NAME",
                    Some(Arg::Theme) if !c.contains(' ') => " NAME",
                    Some(Arg::Run) if !c.contains(' ') => " [RUN]",
                    _ => "",
                };
                let c = format!("{c}{arg}");
                Line::from(vec![
                    Span::styled(format!(":{c:<16}"), theme.hint_key()),
                    Span::styled(help.to_string(), theme.muted()),
                ])
            })
            .collect();
        frame.render_widget(
            Paragraph::new(lines).block(block(theme, "Tab completes", true)),
            popup,
        );
    }
}
