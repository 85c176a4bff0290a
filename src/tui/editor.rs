//! Inline editor for workflow files: a [`TextArea`] with line numbers, a title with the file
//! name and a modified marker, and a panel listing validation problems under the text.
//!
//! Keys: Ctrl-S saves ([`EditorOutcome::Save`] with the full text; the console sends it with
//! [`Editor::base_hash`], then calls [`Editor::mark_saved`], [`Editor::set_problems`] or
//! [`Editor::save_failed`]); Esc closes, or asks first when there are unsaved changes (text
//! typed while a save was on its way counts: "saved" is the text that was sent); every other key edits (ratatui-textarea's
//! default bindings: arrows, Home/End, PageUp/PageDown, …), plus the undo/redo keys people
//! expect: Ctrl-Z undo, Ctrl-Shift-Z or Ctrl-R redo (the text area's own Ctrl-U works too).

use std::path::Path;

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui_textarea::{CursorMove, TextArea};

use super::theme::Theme;
use crate::protocol::Diagnostic;

/// The hint shown in the editor's title.
pub const HINT: &str = "Ctrl-S save · Esc close";

/// Most problem lines shown under the text (the rest are counted).
const MAX_PROBLEM_ROWS: usize = 6;

/// What the console should do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditorOutcome {
    /// Keep editing.
    Continue,
    /// Validate and save this text (the whole file).
    Save(String),
    /// Ctrl-S while the previous save has not been answered yet: nothing sent.
    SaveInProgress,
    /// Close the editor: nothing unsaved.
    Close,
    /// Unsaved changes: ask before closing.
    AskDiscard,
}

/// A file being edited.
#[derive(Debug)]
pub struct Editor {
    file: String,
    textarea: TextArea<'static>,
    /// The lines as last opened or saved, to tell whether there are unsaved changes.
    saved: Vec<String>,
    /// Hash of the file's content as last opened or saved (what a save replaces); `None` for
    /// a file that does not exist yet.
    base_hash: Option<String>,
    /// The lines of the save on its way, until it is answered.
    in_flight: Option<Vec<String>>,
    /// The file had CRLF line ends; they are kept on save.
    crlf: bool,
    dirty: bool,
    problems: Vec<Diagnostic>,
    /// Styles last handed to the text area (setting them re-lays out the text).
    applied: Option<(Style, Style, Style)>,
}

impl Editor {
    /// Edits `text` of `file` (`file` is shown in the title and used in messages), as read
    /// from disk; its hash is computed here.
    pub fn open(file: String, text: String) -> Self {
        Self::open_file(file, text, None)
    }

    /// Edits `text` of `file` whose content hashes to `hash` (as the principal reported it;
    /// computed from `text` when `None`).
    pub fn open_file(file: String, text: String, hash: Option<String>) -> Self {
        let base_hash = hash.or_else(|| Some(crate::spec::content_hash(text.as_bytes())));
        let crlf = text.contains("\r\n");
        let lines: Vec<String> = text
            .split('\n')
            .map(|l| {
                if crlf {
                    l.strip_suffix('\r').unwrap_or(l)
                } else {
                    l
                }
            })
            .map(str::to_string)
            .collect();
        let mut textarea = TextArea::new(lines.clone());
        textarea.set_tab_length(2);
        textarea.set_cursor_line_style(Style::new());
        Self {
            file,
            saved: textarea.lines().to_vec(),
            base_hash,
            in_flight: None,
            textarea,
            crlf,
            dirty: false,
            problems: Vec::new(),
            applied: None,
        }
    }

    /// A new workflow file from a small valid template, named after the file. It counts as
    /// unsaved (the file does not exist yet).
    pub fn new_from_template(file: String) -> Self {
        let text = template(&workflow_name(&file));
        let mut editor = Self::open(file, text);
        editor.saved.clear();
        editor.base_hash = None;
        editor.dirty = true;
        // Start on the first task's command.
        let row = editor
            .textarea
            .lines()
            .iter()
            .position(|l| l.trim_start().starts_with("run:"))
            .unwrap_or(0);
        editor.jump(row, 0);
        editor.textarea.move_cursor(CursorMove::End);
        editor
    }

    /// Handles one key.
    pub fn handle_key(&mut self, key: KeyEvent) -> EditorOutcome {
        if key.kind == KeyEventKind::Release {
            return EditorOutcome::Continue;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('s' | 'S') if ctrl => {
                if self.in_flight.is_some() {
                    EditorOutcome::SaveInProgress
                } else {
                    EditorOutcome::Save(self.begin_save())
                }
            }
            KeyCode::Char('z') if ctrl => self.changed(|t| t.undo()),
            KeyCode::Char('Z') if ctrl => self.changed(|t| t.redo()),
            KeyCode::Esc => {
                if self.dirty {
                    EditorOutcome::AskDiscard
                } else {
                    EditorOutcome::Close
                }
            }
            _ => self.changed(|t| t.input(key)),
        }
    }

    /// Applies an edit; `edit` says whether the text changed.
    fn changed(&mut self, edit: impl FnOnce(&mut TextArea<'static>) -> bool) -> EditorOutcome {
        if edit(&mut self.textarea) {
            self.dirty = self.textarea.lines() != self.saved.as_slice();
        }
        EditorOutcome::Continue
    }

    /// Shows `problems` (every one, `line:col message`) under the text and moves the cursor to
    /// the first one that has a position.
    pub fn set_problems(&mut self, problems: Vec<Diagnostic>) {
        self.in_flight = None;
        if let Some(first) = problems.iter().find(|p| p.line > 0) {
            self.jump(first.line - 1, first.col.saturating_sub(1));
        }
        self.problems = problems;
    }

    /// The problems shown, as last set.
    pub fn problems(&self) -> &[Diagnostic] {
        &self.problems
    }

    /// The text to send for a save, remembered as the save on its way.
    pub fn begin_save(&mut self) -> String {
        self.in_flight = Some(self.textarea.lines().to_vec());
        self.text()
    }

    /// What the save on its way replaces: the hash to send as `base_hash`.
    pub fn base_hash(&self) -> Option<String> {
        self.base_hash.clone()
    }

    /// True while a save has not been answered.
    pub fn is_saving(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The save on its way was written; the file now hashes to `hash` (computed from the text
    /// sent when `None`). Only the text that was sent counts as saved: anything typed since
    /// stays an unsaved change.
    pub fn mark_saved(&mut self, hash: Option<String>) {
        if let Some(sent) = self.in_flight.take() {
            let eol = if self.crlf { "\r\n" } else { "\n" };
            let hash = hash.unwrap_or_else(|| crate::spec::content_hash(sent.join(eol).as_bytes()));
            self.base_hash = Some(hash);
            self.saved = sent;
        }
        self.dirty = self.textarea.lines() != self.saved.as_slice();
        self.problems.clear();
    }

    /// The save on its way was refused or failed: nothing was written.
    pub fn save_failed(&mut self) {
        self.in_flight = None;
    }

    /// True with unsaved changes.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The file being edited.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The whole text, line ends as in the opened file.
    pub fn text(&self) -> String {
        self.textarea
            .lines()
            .join(if self.crlf { "\r\n" } else { "\n" })
    }

    /// The cursor as a 0-based (row, column in characters).
    pub fn cursor(&self) -> (usize, usize) {
        let c = self.textarea.cursor();
        (c.0, c.1)
    }

    /// Draws the editor into `area`: text with line numbers (problem lines marked in the
    /// gutter) and, when there are problems, a panel listing them. Styles come from the last
    /// [`Editor::apply_theme`].
    pub fn render(&self, frame: &mut Frame, area: Rect, theme: &Theme) {
        let problem_rows = self.problems.len().min(MAX_PROBLEM_ROWS) as u16;
        let [text_area, problems_area] = if self.problems.is_empty() {
            [area, Rect::default()]
        } else {
            Layout::vertical([Constraint::Min(3), Constraint::Length(problem_rows + 2)]).areas(area)
        };

        let mut title = vec![Span::styled(format!(" {} ", self.file), theme.title())];
        if self.dirty {
            title.push(Span::styled("[+] ", theme.warning()));
        }
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(theme.border(true))
            .style(theme.base())
            .title(Line::from(title))
            .title_top(
                Line::from(vec![Span::styled(format!(" {HINT} "), theme.hint_text())])
                    .right_aligned(),
            );
        let inner = block.inner(text_area);
        frame.render_widget(block, text_area);
        frame.render_widget(&self.textarea, inner);
        self.mark_problem_lines(frame, inner, theme);

        if !self.problems.is_empty() {
            self.render_problems(frame, problems_area, theme);
        }
    }

    /// Styles the text area with `theme` (a no-op when it already is).
    pub fn apply_theme(&mut self, theme: &Theme) {
        let styles = (theme.base(), theme.line_number(), theme.selected());
        if self.applied == Some(styles) {
            return;
        }
        self.textarea.set_style(styles.0);
        self.textarea.set_line_number_style(styles.1);
        self.textarea.set_selection_style(styles.2);
        self.applied = Some(styles);
    }

    /// Restyles the gutter of every visible line that has a problem, with a `>` marker.
    fn mark_problem_lines(&self, frame: &mut Frame, inner: Rect, theme: &Theme) {
        let (top_row, top_col) = self.textarea.scroll_offset();
        let gutter = self.textarea.line_number_width();
        // Scrolled right, the gutter has scrolled out of view with the text.
        if top_col != 0 || gutter == 0 {
            return;
        }
        let style = theme.error();
        let buf = frame.buffer_mut();
        for p in self.problems.iter().filter(|p| p.line > 0) {
            let Some(screen_row) = (p.line - 1).checked_sub(usize::from(top_row)) else {
                continue;
            };
            if screen_row >= usize::from(inner.height) {
                continue;
            }
            let y = inner.y + screen_row as u16;
            for dx in 0..gutter.min(inner.width) {
                if let Some(cell) = buf.cell_mut((inner.x + dx, y)) {
                    cell.set_style(style);
                    if dx == 0 {
                        cell.set_char('>');
                    }
                }
            }
        }
    }

    fn render_problems(&self, frame: &mut Frame, area: Rect, theme: &Theme) {
        let count = self.problems.len();
        let title = format!(" {count} problem{} ", if count == 1 { "" } else { "s" });
        let block = Block::default()
            .borders(Borders::ALL)
            .border_style(theme.error())
            .style(theme.base())
            .title(Span::styled(title, theme.error()));
        let shown = if count > MAX_PROBLEM_ROWS {
            MAX_PROBLEM_ROWS - 1
        } else {
            count
        };
        let mut lines: Vec<Line<'static>> = self
            .problems
            .iter()
            .take(shown)
            .map(|p| {
                let at = if p.line == 0 {
                    "file".to_string()
                } else {
                    format!("{}:{}", p.line, p.col)
                };
                Line::from(vec![
                    Span::styled(format!("{at:>7}"), theme.error()),
                    Span::styled(format!("  {}", p.message), theme.base()),
                ])
            })
            .collect();
        if shown < count {
            lines.push(Line::styled(
                format!("{:>7}  … and {} more", "", count - shown),
                theme.muted(),
            ));
        }
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }

    /// Moves the cursor to 0-based `row`, `col` (clamped to the text).
    fn jump(&mut self, row: usize, col: usize) {
        let clamp = |v: usize| u16::try_from(v).unwrap_or(u16::MAX);
        self.textarea
            .move_cursor(CursorMove::Jump(clamp(row), clamp(col)));
    }
}

/// Checks `text` as the workflow file `file` (no I/O): the problems to show, none when valid.
/// Any kind of document is accepted; supervisors it uses by name are checked on reload.
pub fn validate(file: &Path, text: &str) -> Vec<Diagnostic> {
    match crate::spec::parse_document(file, text) {
        Ok(_) => Vec::new(),
        Err(problems) => problems,
    }
}

/// A workflow name from a file name: its stem, with characters a name may not hold replaced.
fn workflow_name(file: &str) -> String {
    let stem = Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches(|c| c == '-' || c == '.');
    if name.is_empty() {
        "new-workflow".to_string()
    } else {
        name.to_string()
    }
}

fn template(name: &str) -> String {
    format!(
        "# Workflow `{name}`. Ctrl-S saves and validates; a valid save reloads it.\n\
         # Each task runs a command; `depends_on` makes a task wait for others.\n\
         kind: workflow\n\
         name: {name}\n\
         description: What this workflow does\n\
         tasks:\n\
         \x20 hello:\n\
         \x20   run: echo \"hello from run {{{{ run.id }}}}\"\n\
         \x20 goodbye:\n\
         \x20   run: echo goodbye\n\
         \x20   depends_on: [hello]\n"
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    fn diag(line: usize, col: usize, message: &str) -> Diagnostic {
        Diagnostic {
            file: PathBuf::from("workflows/etl.yaml"),
            line,
            col,
            message: message.to_string(),
            source_line: None,
        }
    }

    #[test]
    fn open_keeps_the_text_exactly() {
        for text in ["a\nb\n", "a\nb", "", "x\r\ny\r\n", "\tindent\n\n"] {
            let e = Editor::open("f.yaml".into(), text.to_string());
            assert_eq!(e.text(), text);
            assert!(!e.is_dirty());
            assert_eq!(e.file(), "f.yaml");
        }
    }

    #[test]
    fn typing_makes_it_dirty_and_ctrl_s_saves_the_full_text() {
        let mut e = Editor::open("f.yaml".into(), "name: a\n".into());
        assert_eq!(e.handle_key(key(KeyCode::End)), EditorOutcome::Continue);
        assert!(!e.is_dirty(), "moving the cursor changes nothing");
        for c in "bc".chars() {
            assert_eq!(e.handle_key(key(KeyCode::Char(c))), EditorOutcome::Continue);
        }
        assert!(e.is_dirty());
        assert_eq!(
            e.handle_key(ctrl('s')),
            EditorOutcome::Save("name: abc\n".into())
        );
        assert!(e.is_dirty(), "dirty until the console says it was saved");
        assert_eq!(e.handle_key(key(KeyCode::Esc)), EditorOutcome::AskDiscard);
        e.mark_saved(None);
        assert!(!e.is_dirty());
        assert_eq!(e.handle_key(key(KeyCode::Esc)), EditorOutcome::Close);
    }

    #[test]
    fn text_typed_while_a_save_is_on_its_way_stays_unsaved() {
        let text = "name: a\n";
        let mut e = Editor::open("f.yaml".into(), text.into());
        let opened = crate::spec::content_hash(text.as_bytes());
        assert_eq!(e.base_hash(), Some(opened.clone()));
        e.handle_key(key(KeyCode::End));
        e.handle_key(key(KeyCode::Char('b')));
        assert_eq!(
            e.handle_key(ctrl('s')),
            EditorOutcome::Save("name: ab\n".into())
        );
        assert!(e.is_saving());
        assert_eq!(
            e.base_hash(),
            Some(opened),
            "the save replaces what was opened"
        );
        e.handle_key(key(KeyCode::Char('c')));
        assert_eq!(
            e.handle_key(ctrl('s')),
            EditorOutcome::SaveInProgress,
            "one save at a time"
        );
        e.mark_saved(None);
        assert!(!e.is_saving());
        assert!(e.is_dirty(), "`c` was typed after the save was sent");
        assert_eq!(e.handle_key(key(KeyCode::Esc)), EditorOutcome::AskDiscard);
        assert_eq!(
            e.base_hash(),
            Some(crate::spec::content_hash(b"name: ab\n")),
            "the next save replaces what was written"
        );
        // Removing the late edit is back to the saved text: clean.
        e.handle_key(key(KeyCode::Backspace));
        assert!(!e.is_dirty());

        // A refused save sends nothing more and keeps the base.
        e.handle_key(key(KeyCode::Char('d')));
        assert!(matches!(e.handle_key(ctrl('s')), EditorOutcome::Save(_)));
        e.save_failed();
        assert!(!e.is_saving() && e.is_dirty());
        assert!(matches!(e.handle_key(ctrl('s')), EditorOutcome::Save(_)));
        e.mark_saved(Some("abc".into()));
        assert_eq!(
            e.base_hash().as_deref(),
            Some("abc"),
            "the principal's hash wins"
        );
        assert!(!e.is_dirty());
    }

    #[test]
    fn a_new_file_has_no_base() {
        let e = Editor::new_from_template("x.yaml".into());
        assert_eq!(e.base_hash(), None);
        let crlf = Editor::open_file("c.yaml".into(), "a\r\nb\r\n".into(), None);
        assert_eq!(
            crlf.base_hash(),
            Some(crate::spec::content_hash(b"a\r\nb\r\n"))
        );
    }

    #[test]
    fn ctrl_z_undoes_and_ctrl_r_redoes() {
        let mut e = Editor::open("f.yaml".into(), "x".into());
        e.handle_key(key(KeyCode::Char('y')));
        assert_eq!(e.text(), "yx");
        e.handle_key(ctrl('z'));
        assert_eq!(e.text(), "x");
        assert!(!e.is_dirty(), "undone back to the saved text");
        e.handle_key(ctrl('r'));
        assert_eq!(e.text(), "yx");
        assert!(e.is_dirty());
    }

    #[test]
    fn undoing_back_to_the_saved_text_is_clean() {
        let mut e = Editor::open("f.yaml".into(), "x".into());
        e.handle_key(key(KeyCode::Char('y')));
        assert!(e.is_dirty());
        e.handle_key(key(KeyCode::Backspace));
        assert!(!e.is_dirty());
        assert_eq!(e.handle_key(key(KeyCode::Esc)), EditorOutcome::Close);
    }

    #[test]
    fn enter_and_release_events() {
        let mut e = Editor::open("f.yaml".into(), "ab".into());
        e.handle_key(key(KeyCode::Right));
        e.handle_key(key(KeyCode::Enter));
        assert_eq!(e.text(), "a\nb");
        let mut release = key(KeyCode::Char('z'));
        release.kind = KeyEventKind::Release;
        assert_eq!(e.handle_key(release), EditorOutcome::Continue);
        assert_eq!(e.text(), "a\nb");
    }

    #[test]
    fn set_problems_moves_the_cursor_and_mark_saved_clears_them() {
        let mut e = Editor::open("f.yaml".into(), "one\ntwo\nthree: x\nfour\n".into());
        e.set_problems(vec![
            diag(0, 0, "whole file"),
            diag(3, 8, "bad"),
            diag(1, 1, "x"),
        ]);
        assert_eq!(
            e.cursor(),
            (2, 7),
            "first located problem, 1-based -> 0-based"
        );
        assert_eq!(e.problems().len(), 3);
        // Out-of-range positions are clamped.
        e.set_problems(vec![diag(99, 99, "far")]);
        assert_eq!(e.cursor(), (4, 0));
        e.set_problems(vec![diag(2, 0, "no column")]);
        assert_eq!(e.cursor(), (1, 0));
        e.mark_saved(None);
        assert!(e.problems().is_empty());
    }

    #[test]
    fn template_is_a_valid_workflow_named_after_the_file() {
        let e = Editor::new_from_template("workflows/My Backup.yaml".into());
        assert!(e.is_dirty(), "a new file is unsaved");
        let text = e.text();
        assert!(text.contains("name: my-backup\n"), "{text}");
        assert!(text.starts_with('#'), "has a comment");
        let problems = validate(Path::new("workflows/My Backup.yaml"), &text);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(e.cursor().0, 7, "on the first `run:`");
        assert_eq!(workflow_name("workflows/!!!.yaml"), "new-workflow");
        assert_eq!(workflow_name("etl.v2.yml"), "etl.v2");
    }

    #[test]
    fn validate_reports_problems_with_positions() {
        let text = "kind: workflow\nname: x\ntasks:\n  a:\n    run: echo\n    depnds_on: [b]\n";
        let problems = validate(Path::new("workflows/x.yaml"), text);
        assert!(!problems.is_empty());
        assert!(problems.iter().any(|p| p.line == 6), "{problems:?}");
    }

    #[test]
    fn renders_title_gutter_and_problems() {
        let text = "kind: workflow\nname: etl\ntasks:\n  a:\n    run: echo hi\n    retries: lots\n";
        let mut e = Editor::open("workflows/etl.yaml".into(), text.into());
        e.handle_key(key(KeyCode::Char('#')));
        e.set_problems(vec![
            diag(6, 14, "wrong type: expected an integer"),
            diag(0, 0, "the workflow has a cycle"),
        ]);
        let theme = Theme::default_dark();
        e.apply_theme(&theme);
        let mut terminal = Terminal::new(TestBackend::new(56, 13)).unwrap();
        terminal
            .draw(|frame| e.render(frame, frame.area(), &theme))
            .unwrap();
        let buffer = terminal.backend().buffer();
        let rows: Vec<String> = (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            })
            .collect();
        let expected = [
            "┌ workflows/etl.yaml [+] ───── Ctrl-S save · Esc close ┐",
            "│ 1 #kind: workflow                                    │",
            "│ 2 name: etl                                          │",
            "│ 3 tasks:                                             │",
            "│ 4   a:                                               │",
            "│ 5     run: echo hi                                   │",
            "│>6     retries: lots                                  │",
            "│ 7                                                    │",
            "└──────────────────────────────────────────────────────┘",
            "┌ 2 problems ──────────────────────────────────────────┐",
            "│   6:14  wrong type: expected an integer              │",
            "│   file  the workflow has a cycle                     │",
            "└──────────────────────────────────────────────────────┘",
        ];
        assert_eq!(rows, expected, "\n{}", rows.join("\n"));
        // The problem line's gutter is in the error style, others in the line-number style.
        assert_eq!(buffer[(2, 6)].fg, theme.error().fg.unwrap());
        assert_eq!(buffer[(2, 5)].fg, theme.line_number().fg.unwrap());
        // The cursor sits on the problem's column: `l` of `lots` (border + 3-cell gutter + 13).
        assert_eq!(e.cursor(), (5, 13));
        assert_eq!(buffer[(17, 6)].symbol(), "l");
        assert!(
            buffer[(17, 6)]
                .modifier
                .contains(ratatui::style::Modifier::REVERSED)
        );
    }
}
