//! One line of editable text with a cursor: the text field of every dialog (palette, filter,
//! search, trigger form, new file name).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::{Modifier, Style};
use ratatui::text::Span;

/// What a key did to a [`LineInput`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    /// The text changed.
    Changed,
    /// Only the cursor moved (or the key was a line key with nothing to do).
    Moved,
    /// Backspace with the text empty (the palette closes on it).
    BackspaceEmpty,
    /// Not a key of the line; the dialog decides.
    Ignored,
}

/// Text and a cursor (a character index, `0..=len`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineInput {
    text: String,
    cursor: usize,
}

impl LineInput {
    /// A line holding `text`, the cursor at its end.
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let cursor = text.chars().count();
        Self { text, cursor }
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor, in characters from the start.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// True when there is no text.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Replaces the text; the cursor goes to its end.
    pub fn set(&mut self, text: impl Into<String>) {
        *self = Self::new(text);
    }

    /// Empties the line.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    fn byte_at(&self, chars: usize) -> usize {
        self.text
            .char_indices()
            .nth(chars)
            .map_or(self.text.len(), |(i, _)| i)
    }

    /// Inserts `c` at the cursor.
    pub fn insert(&mut self, c: char) {
        let at = self.byte_at(self.cursor);
        self.text.insert(at, c);
        self.cursor += 1;
    }

    /// Deletes the character before the cursor; false when there is none.
    pub fn backspace(&mut self) -> bool {
        if self.cursor == 0 {
            return false;
        }
        self.cursor -= 1;
        let at = self.byte_at(self.cursor);
        self.text.remove(at);
        true
    }

    /// Deletes the character under the cursor; false when there is none.
    pub fn delete(&mut self) -> bool {
        let at = self.byte_at(self.cursor);
        if at >= self.text.len() {
            return false;
        }
        self.text.remove(at);
        true
    }

    /// Moves the cursor one character left.
    pub fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    /// Moves the cursor one character right.
    pub fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.text.chars().count());
    }

    /// Moves the cursor to the start.
    pub fn home(&mut self) {
        self.cursor = 0;
    }

    /// Moves the cursor to the end.
    pub fn end(&mut self) {
        self.cursor = self.text.chars().count();
    }

    /// Applies a key: characters (without Ctrl) are typed, Backspace, Delete, ←, →, Home and
    /// End edit and move; every other key is [`Edit::Ignored`].
    pub fn handle(&mut self, key: &KeyEvent) -> Edit {
        match key.code {
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.insert(c);
                Edit::Changed
            }
            KeyCode::Backspace if self.text.is_empty() => Edit::BackspaceEmpty,
            KeyCode::Backspace => {
                if self.backspace() {
                    Edit::Changed
                } else {
                    Edit::Moved
                }
            }
            KeyCode::Delete => {
                if self.delete() {
                    Edit::Changed
                } else {
                    Edit::Moved
                }
            }
            KeyCode::Left => {
                self.left();
                Edit::Moved
            }
            KeyCode::Right => {
                self.right();
                Edit::Moved
            }
            KeyCode::Home => {
                self.home();
                Edit::Moved
            }
            KeyCode::End => {
                self.end();
                Edit::Moved
            }
            _ => Edit::Ignored,
        }
    }

    /// The line as spans: the text in `text`, the cursor as a block after the end in `cursor`,
    /// or, inside the text, the character under it reversed.
    pub fn spans(&self, text: Style, cursor: Style) -> Vec<Span<'static>> {
        let at = self.byte_at(self.cursor);
        if at >= self.text.len() {
            return vec![
                Span::styled(self.text.clone(), text),
                Span::styled("█", cursor),
            ];
        }
        let (head, rest) = self.text.split_at(at);
        let under = rest.chars().next().map_or(0, char::len_utf8);
        let (under, tail) = rest.split_at(under);
        vec![
            Span::styled(head.to_string(), text),
            Span::styled(under.to_string(), text.add_modifier(Modifier::REVERSED)),
            Span::styled(tail.to_string(), text),
        ]
    }
}

impl From<&str> for LineInput {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for LineInput {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

impl PartialEq<&str> for LineInput {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl std::fmt::Display for LineInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn typed(s: &str) -> LineInput {
        let mut l = LineInput::default();
        for c in s.chars() {
            assert_eq!(l.handle(&key(KeyCode::Char(c))), Edit::Changed);
        }
        l
    }

    #[test]
    fn typing_appends_and_backspace_removes_the_last_character() {
        let mut l = typed("héllo");
        assert_eq!((l.text(), l.cursor()), ("héllo", 5));
        assert_eq!(l.handle(&key(KeyCode::Backspace)), Edit::Changed);
        assert_eq!(l, "héll");
    }

    #[test]
    fn the_cursor_moves_and_edits_happen_where_it_is() {
        let mut l = typed("acd");
        l.handle(&key(KeyCode::Left));
        l.handle(&key(KeyCode::Left));
        l.handle(&key(KeyCode::Char('b')));
        assert_eq!((l.text(), l.cursor()), ("abcd", 2));
        l.handle(&key(KeyCode::Delete));
        assert_eq!(l, "abd");
        l.handle(&key(KeyCode::Home));
        assert_eq!(
            l.handle(&key(KeyCode::Backspace)),
            Edit::Moved,
            "nothing before"
        );
        l.handle(&key(KeyCode::Char('>')));
        assert_eq!(l, ">abd");
        l.handle(&key(KeyCode::End));
        assert_eq!(
            l.handle(&key(KeyCode::Delete)),
            Edit::Moved,
            "nothing under"
        );
        l.handle(&key(KeyCode::Right));
        assert_eq!(l.cursor(), 4, "the cursor stops at the end");
    }

    #[test]
    fn backspace_on_an_empty_line_and_other_keys_are_left_to_the_dialog() {
        let mut l = LineInput::default();
        assert_eq!(l.handle(&key(KeyCode::Backspace)), Edit::BackspaceEmpty);
        assert_eq!(l.handle(&key(KeyCode::Enter)), Edit::Ignored);
        assert_eq!(l.handle(&key(KeyCode::Tab)), Edit::Ignored);
        let ctrl_x = KeyEvent::new(KeyCode::Char('x'), KeyModifiers::CONTROL);
        assert_eq!(l.handle(&ctrl_x), Edit::Ignored);
        let shift_t = KeyEvent::new(KeyCode::Char('T'), KeyModifiers::SHIFT);
        assert_eq!(l.handle(&shift_t), Edit::Changed);
        assert_eq!(l, "T");
    }

    #[test]
    fn set_puts_the_cursor_at_the_end_and_spans_show_it() {
        let mut l = LineInput::new("ab");
        let text: Vec<String> = l
            .spans(Style::new(), Style::new())
            .iter()
            .map(|s| s.content.to_string())
            .collect();
        assert_eq!(text, ["ab", "█"]);
        l.home();
        let text: Vec<String> = l
            .spans(Style::new(), Style::new())
            .iter()
            .map(|s| s.content.to_string())
            .collect();
        assert_eq!(text, ["", "a", "b"]);
        l.set("xyz");
        assert_eq!(l.cursor(), 3);
        l.clear();
        assert!(l.is_empty() && l.cursor() == 0);
    }
}
