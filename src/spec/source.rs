//! The text of one file, for turning positions into diagnostics.

use std::path::Path;

use serde_saphyr::Location;

use super::Diagnostic;
use super::template::TemplateError;

/// One file's text with a line index.
pub struct Source<'a> {
    file: &'a Path,
    text: &'a str,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    /// Indexes `text`, read from `file`.
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            file,
            text,
            line_starts,
        }
    }

    /// The file name used in diagnostics.
    pub fn file(&self) -> &'a Path {
        self.file
    }

    /// Text of 1-based line `line`, without its line break.
    pub fn line_text(&self, line: usize) -> Option<&'a str> {
        let start = *self.line_starts.get(line.checked_sub(1)?)?;
        let end = self
            .line_starts
            .get(line)
            .map_or(self.text.len(), |next| next - 1);
        let text = self.text.get(start..end)?;
        Some(text.strip_suffix('\r').unwrap_or(text))
    }

    /// A diagnostic at `line`:`col` (1-based; line 0 for the whole file).
    pub fn diag(&self, line: usize, col: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.to_path_buf(),
            line,
            col,
            message: message.into(),
            source_line: self.line_text(line).map(str::to_string),
        }
    }

    /// A diagnostic at a location reported by the YAML parser.
    pub fn at(&self, loc: &Location, message: impl Into<String>) -> Diagnostic {
        self.diag(to_usize(loc.line()), to_usize(loc.column()), message)
    }

    /// 1-based line and character column of byte offset `byte`.
    pub fn position(&self, byte: usize) -> (usize, usize) {
        let byte = byte.min(self.text.len());
        let idx = self.line_starts.partition_point(|&s| s <= byte) - 1;
        let start = self.line_starts[idx];
        let col = self
            .text
            .get(start..byte)
            .map_or(byte - start, |prefix| prefix.chars().count());
        (idx + 1, col + 1)
    }

    /// A diagnostic for a template error inside the string `value` read at `loc`: points at
    /// the offending `{{` in the source.
    pub fn template_diag(&self, value: &str, loc: &Location, err: &TemplateError) -> Diagnostic {
        let (line, col) = self.template_position(value, loc, err.offset);
        self.diag(line, col, err.message.clone())
    }

    /// A diagnostic about the part of the string `value` (read at `loc`) that starts at byte
    /// `offset`; points at the value itself when its source text differs (escapes, folding).
    pub fn value_diag(
        &self,
        value: &str,
        loc: &Location,
        offset: usize,
        message: impl Into<String>,
    ) -> Diagnostic {
        let span = loc.span();
        let start = span.byte_offset().map(to_usize);
        let raw = start.and_then(|s| {
            self.text
                .get(s..s.saturating_add(to_usize(span.byte_len()?)))
        });
        let shift = match raw {
            Some(raw) if raw.starts_with(value) => Some(0),
            Some(raw) if raw.starts_with(['"', '\'']) && raw[1..].starts_with(value) => Some(1),
            _ => None,
        };
        match (start, shift) {
            (Some(start), Some(shift)) if offset <= value.len() => {
                let (line, col) = self.position(start + shift + offset);
                self.diag(line, col, message)
            }
            _ => self.at(loc, message),
        }
    }

    fn template_position(&self, value: &str, loc: &Location, offset: usize) -> (usize, usize) {
        let nth = value
            .get(..offset)
            .map_or(0, |before| before.matches("{{").count());
        let span = loc.span();
        if let (Some(start), Some(len)) = (span.byte_offset(), span.byte_len()) {
            let start = to_usize(start);
            let raw = self.text.get(start..start.saturating_add(to_usize(len)));
            if let Some((i, _)) = raw.and_then(|raw| raw.match_indices("{{").nth(nth)) {
                return self.position(start + i);
            }
        }
        // Fallback for text that differs from its source (escapes): count characters.
        let quoted = span
            .byte_offset()
            .and_then(|b| self.text.get(to_usize(b)..))
            .is_some_and(|rest| rest.starts_with(['"', '\'']));
        let shift = value.get(..offset).map_or(0, |p| p.chars().count()) + usize::from(quoted);
        (to_usize(loc.line()), to_usize(loc.column()) + shift)
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
