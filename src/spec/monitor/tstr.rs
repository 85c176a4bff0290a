//! `{{ target.COLUMN }}` templates: the strings of a monitor that differ per target, kept as
//! parts once per template and rendered from a target's row when asked for.

use super::targets::Row;

/// A string that may read columns of a target row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TStr {
    parts: Box<[Part]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(Box<str>),
    Col(u16),
}

/// Why a template is refused, and where in it (byte offset of its `{{`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TStrError {
    /// Byte offset of the offending `{{`.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl TStr {
    /// A string without placeholders.
    pub fn literal(s: &str) -> Self {
        Self {
            parts: Box::new([Part::Text(s.into())]),
        }
    }

    /// Parses `src`: `{{ target.NAME }}` must name one of `columns`; `{{ X }}` for an `X` in
    /// `keep` stays as written (rendered later by someone else); anything else is refused.
    pub fn parse(src: &str, columns: &[Box<str>], keep: &[&str]) -> Result<Self, TStrError> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = src;
        let mut base = 0usize;
        while let Some(open) = rest.find("{{") {
            text.push_str(&rest[..open]);
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(TStrError {
                    offset: base + open,
                    message: "unclosed `{{`: add the matching `}}`".into(),
                });
            };
            let reference = after[..close].trim();
            let consumed = open + 2 + close + 2;
            if keep.contains(&reference) {
                text.push_str(&rest[open..consumed]);
            } else if let Some(column) = reference.strip_prefix("target.") {
                let Some(i) = columns.iter().position(|c| &**c == column) else {
                    let message = if columns.is_empty() {
                        format!(
                            "`{{{{ {reference} }}}}` needs `targets:`: this monitor has no \
                             targets to read `{column}` from"
                        )
                    } else {
                        let names: Vec<&str> = columns.iter().map(|c| &**c).collect();
                        format!(
                            "unknown target column `{column}`{} (the targets have {})",
                            crate::spec::suggest::did_you_mean(column, names.iter().copied()),
                            crate::spec::suggest::one_of(&names)
                        )
                    };
                    return Err(TStrError {
                        offset: base + open,
                        message,
                    });
                };
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text).into()));
                }
                // At most MAX_COLUMNS columns, far below u16::MAX.
                parts.push(Part::Col(u16::try_from(i).unwrap_or(u16::MAX)));
            } else {
                let also = keep
                    .iter()
                    .map(|k| format!(", `{{{{ {k} }}}}`"))
                    .collect::<String>();
                return Err(TStrError {
                    offset: base + open,
                    message: format!(
                        "unknown reference `{{{{ {reference} }}}}`: use `{{{{ target.COLUMN }}}}`{also}"
                    ),
                });
            }
            base += consumed;
            rest = &rest[consumed..];
        }
        text.push_str(rest);
        if !text.is_empty() || parts.is_empty() {
            parts.push(Part::Text(text.into()));
        }
        Ok(Self {
            parts: parts.into_boxed_slice(),
        })
    }

    /// The text when it reads no column.
    pub fn as_literal(&self) -> Option<&str> {
        match &*self.parts {
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// The first column read, if any (where a bad rendering is reported in a CSV row).
    pub fn first_column(&self) -> Option<usize> {
        self.parts.iter().find_map(|p| match p {
            Part::Col(c) => Some(usize::from(*c)),
            Part::Text(_) => None,
        })
    }

    /// Appends the rendering for `row` to `out`.
    pub fn render_into(&self, row: Row<'_>, out: &mut String) {
        for part in &*self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Col(c) => out.push_str(row.cell(usize::from(*c))),
            }
        }
    }

    /// The rendering for `row`.
    pub fn render(&self, row: Row<'_>) -> String {
        if let Some(t) = self.as_literal() {
            return t.to_string();
        }
        let mut out = String::new();
        self.render_into(row, &mut out);
        out
    }
}
