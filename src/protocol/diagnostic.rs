//! A problem found in a file a user wrote, located by line and column.

use std::fmt;
use std::path::PathBuf;

/// One problem in a spec file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Diagnostic {
    /// The file, as given by the caller (e.g. `workflows/x.yaml`).
    pub file: PathBuf,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: usize,
    /// 1-based column in characters; 0 when unknown.
    pub col: usize,
    /// One-line description of the problem, for a user.
    pub message: String,
    /// The text of line `line`, when there is one.
    pub source_line: Option<String>,
}

/// Longest part of a source line shown under a diagnostic, in characters.
const SNIPPET_WIDTH: usize = 120;

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        if self.line == 0 {
            return write!(f, "{file}: {}", self.message);
        }
        write!(f, "{file}:{}:{}: {}", self.line, self.col, self.message)?;
        if let Some(line) = &self.source_line {
            let (shown, caret) = snippet(line, self.col);
            write!(f, "\n  |  {shown}\n  |  {caret}^")?;
        }
        Ok(())
    }
}

/// The part of `line` to show around column `col` and the whitespace that puts a caret under
/// that column (tabs are kept so the caret lines up in a terminal).
fn snippet(line: &str, col: usize) -> (String, String) {
    let chars: Vec<char> = line.chars().collect();
    let at = col.saturating_sub(1).min(chars.len());
    let start = if chars.len() > SNIPPET_WIDTH {
        at.saturating_sub(SNIPPET_WIDTH / 2)
    } else {
        0
    };
    let end = (start + SNIPPET_WIDTH).min(chars.len());
    let mut shown: String = chars[start..end].iter().collect();
    let mut caret: String = chars[start..at]
        .iter()
        .map(|&c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    if start > 0 {
        shown.insert(0, '…');
        caret.insert(0, ' ');
    }
    if end < chars.len() {
        shown.push('…');
    }
    (shown, caret)
}
