//! The `:` command palette: parsing and completion over the key table's command names.

use super::keymap::{self, Arg, Binding};

/// Names the palette can complete an argument from.
#[derive(Debug, Default, Clone)]
pub struct Names {
    /// Workflow names.
    pub workflows: Vec<String>,
    /// Theme names.
    pub themes: Vec<String>,
    /// Run ids, newest first.
    pub runs: Vec<String>,
}

/// What the user typed after `:`.
#[derive(Debug, Default, Clone)]
pub struct Palette {
    /// The text after the colon.
    pub input: String,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The command's row in the key table.
    pub binding: &'static Binding,
    /// Its argument, if one was given.
    pub arg: Option<String>,
}

impl PartialEq for Binding {
    fn eq(&self, other: &Self) -> bool {
        self.command == other.command && self.action == other.action
    }
}
impl Eq for Binding {}

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

fn commands() -> impl Iterator<Item = &'static Binding> {
    keymap::BINDINGS.iter().filter(|b| b.command.is_some())
}

fn arg_names(arg: Arg, names: &Names) -> &[String] {
    match arg {
        Arg::None => &[],
        Arg::Workflow => &names.workflows,
        Arg::Theme => &names.themes,
        Arg::Run => &names.runs,
    }
}

fn arg_label(arg: Arg) -> &'static str {
    match arg {
        Arg::None => "nothing",
        Arg::Workflow => "a workflow name",
        Arg::Theme => "a theme name",
        Arg::Run => "a run id",
    }
}

impl Palette {
    /// Parses the input into a command and its argument.
    pub fn parse(&self) -> Result<Parsed, PaletteError> {
        let text = self.input.trim();
        if text.is_empty() {
            return Err(PaletteError::Empty);
        }
        let (name, arg) = match text.split_once(char::is_whitespace) {
            Some((n, a)) => (n, Some(a.trim().to_string()).filter(|a| !a.is_empty())),
            None => (text, None),
        };
        let binding = match keymap::command(name) {
            Some(b) => b,
            None => {
                let known: Vec<&str> = commands().filter_map(|b| b.command).collect();
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
    pub fn candidates(&self, names: &Names) -> Vec<(String, &'static str)> {
        match self.input.split_once(' ') {
            None => commands()
                .filter_map(|b| Some((b.command?, b.help)))
                .filter(|(c, _)| c.starts_with(self.input.as_str()))
                .map(|(c, h)| (c.to_string(), h))
                .collect(),
            Some((cmd, partial)) => {
                let Some(b) = keymap::command(cmd) else {
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
    pub fn complete(&mut self, names: &Names) {
        let cands = self.candidates(names);
        match cands.as_slice() {
            [] => {}
            [(only, _)] => {
                self.input = only.clone();
                let takes_arg = !self.input.contains(' ')
                    && keymap::command(&self.input).is_some_and(|b| b.arg != Arg::None);
                if takes_arg {
                    self.input.push(' ');
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
                if len > self.input.len() {
                    self.input = first[..len].to_string();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::keymap::Action;

    fn names() -> Names {
        Names {
            workflows: vec!["etl".into(), "etl-nightly".into(), "flaky".into()],
            themes: vec!["dark".into(), "light".into()],
            runs: vec!["3".into(), "2".into()],
        }
    }

    #[test]
    fn completes_a_unique_command_and_adds_a_space_for_its_argument() {
        let mut p = Palette { input: "w".into() };
        // `wf` and `workflows` and `wrap` share only `w`.
        p.complete(&names());
        assert_eq!(p.input, "w");
        p.input = "wo".into();
        p.complete(&names());
        assert_eq!(p.input, "workflows");
        p.input = "th".into();
        p.complete(&names());
        assert_eq!(p.input, "theme ");
    }

    #[test]
    fn completes_arguments_from_names() {
        let mut p = Palette {
            input: "wf fl".into(),
        };
        p.complete(&names());
        assert_eq!(p.input, "wf flaky");
        p.input = "wf e".into();
        p.complete(&names());
        assert_eq!(p.input, "wf etl");
        assert_eq!(p.candidates(&names()).len(), 2);
    }

    #[test]
    fn parses_commands_and_reports_unknown_ones_with_a_suggestion() {
        let p = Palette {
            input: "wf etl".into(),
        };
        let parsed = p.parse().expect("valid");
        assert_eq!(parsed.binding.action, Action::Workflow);
        assert_eq!(parsed.arg.as_deref(), Some("etl"));
        let err = Palette {
            input: "runz".into(),
        }
        .parse()
        .unwrap_err();
        assert!(err.to_string().contains("did you mean `:runs`"), "{err}");
        let err = Palette { input: "wf".into() }.parse().unwrap_err();
        assert_eq!(err, PaletteError::MissingArg("wf", "a workflow name"));
    }
}
