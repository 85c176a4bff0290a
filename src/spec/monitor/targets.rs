//! A monitor's targets as a table: column names once, every cell in one string arena, so a
//! million targets cost their text and a few integers each, not a million `String`s. Also
//! the CSV reader for `targets: { csv: FILE }`.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// Most columns of a target table.
pub const MAX_COLUMNS: usize = 64;
/// Longest cell, in bytes.
pub const MAX_CELL_BYTES: usize = 4096;
/// Most targets of one monitor template.
pub const MAX_TARGETS: usize = 5_000_000;
/// Largest CSV file of targets, in bytes.
pub const MAX_CSV_BYTES: u64 = 1 << 30;

/// Rows of cells, and where each row is written.
#[derive(Debug, Clone, Default)]
pub struct Table {
    columns: Box<[Box<str>]>,
    arena: String,
    /// End offset in `arena` of each cell, row after row.
    ends: Vec<u32>,
    /// Line and column where each row is written.
    at: Vec<(u32, u32)>,
    /// The file the rows are written in (the CSV file, or the document).
    file: PathBuf,
}

/// One row of a [`Table`].
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    table: &'a Table,
    index: usize,
}

impl Row<'_> {
    /// The cell of column `col` (empty when out of range).
    pub fn cell(&self, col: usize) -> &str {
        let n = self.table.columns.len();
        if col >= n {
            return "";
        }
        let i = self.index * n + col;
        let start = if i == 0 {
            0
        } else {
            self.table.ends[i - 1] as usize
        };
        let end = self.table.ends[i] as usize;
        self.table.arena.get(start..end).unwrap_or_default()
    }
}

impl Table {
    /// A table of one row without columns: a monitor without `targets:`.
    pub fn single(file: &Path, line: u64, col: u64) -> Self {
        Self {
            at: vec![(clamp(line), clamp(col))],
            file: file.to_path_buf(),
            ..Self::default()
        }
    }

    /// An empty table with these columns, its rows written in `file`.
    pub fn new(columns: Vec<Box<str>>, file: PathBuf) -> Self {
        Self {
            columns: columns.into_boxed_slice(),
            file,
            ..Self::default()
        }
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.at.len()
    }

    /// Row `index`.
    pub fn row(&self, index: usize) -> Row<'_> {
        Row { table: self, index }
    }

    /// The file the rows are written in (the CSV file, or the document).
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Where row `index` is written: file, line, column.
    pub fn at(&self, index: usize) -> (&Path, usize, usize) {
        let (line, col) = self.at.get(index).copied().unwrap_or((0, 0));
        (&self.file, line as usize, col as usize)
    }

    /// Appends a row (`cells` in column order, one per column); false when the arena would
    /// pass 4 GiB.
    pub fn push(&mut self, cells: &[Cow<'_, str>], line: usize, col: usize) -> bool {
        let more: usize = cells.iter().map(|c| c.len()).sum();
        if self.arena.len() + more > u32::MAX as usize {
            return false;
        }
        for cell in cells {
            self.arena.push_str(cell);
            self.ends.push(self.arena.len() as u32);
        }
        self.at.push((clamp(line as u64), clamp(col as u64)));
        true
    }

    /// Removes the last row (it turned out bad).
    pub fn pop(&mut self) {
        if self.at.pop().is_none() {
            return;
        }
        let n = self.columns.len();
        self.ends.truncate(self.ends.len().saturating_sub(n));
        let end = self.ends.last().copied().unwrap_or(0) as usize;
        self.arena.truncate(end);
    }

    /// Frees spare capacity once every row is in.
    pub fn shrink(&mut self) {
        self.arena.shrink_to_fit();
        self.ends.shrink_to_fit();
        self.at.shrink_to_fit();
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.ends.capacity() * 4 + self.at.capacity() * 8
    }
}

fn clamp(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// True for a column name: letters, digits, `_` and `-`, starting with a letter or `_`.
pub fn valid_column(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A problem in a CSV line: the byte offset in the line, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvProblem {
    /// Byte offset in the line.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// Splits one CSV line (RFC 4180 quoting, without line breaks inside quotes) into cells and
/// the byte offset where each starts; unquoted cells are trimmed of spaces.
pub fn split_line(line: &str) -> Result<Vec<(Cow<'_, str>, usize)>, CsvProblem> {
    let mut cells = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    loop {
        // Leading spaces of a cell.
        while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
            i += 1;
        }
        let start = i;
        if i < bytes.len() && bytes[i] == b'"' {
            let mut text = String::new();
            let mut j = i + 1;
            let mut piece = j;
            loop {
                match bytes[j..].iter().position(|&b| b == b'"') {
                    None => {
                        return Err(CsvProblem {
                            offset: start,
                            message: "unclosed quote: a quoted cell ends with `\"` on the same \
                                      line (write `\"\"` for a quote inside it)"
                                .into(),
                        });
                    }
                    Some(k) => {
                        let q = j + k;
                        if bytes.get(q + 1) == Some(&b'"') {
                            text.push_str(&line[piece..=q]);
                            j = q + 2;
                            piece = j;
                        } else {
                            text.push_str(&line[piece..q]);
                            j = q + 1;
                            break;
                        }
                    }
                }
            }
            while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t') {
                j += 1;
            }
            cells.push((Cow::Owned(text), start));
            match bytes.get(j) {
                None => return Ok(cells),
                Some(b',') => i = j + 1,
                Some(_) => {
                    return Err(CsvProblem {
                        offset: j,
                        message: "text after a quoted cell: a quoted cell is followed by `,` \
                                  or the end of the line"
                            .into(),
                    });
                }
            }
        } else {
            let end = bytes[i..]
                .iter()
                .position(|&b| b == b',')
                .map_or(bytes.len(), |k| i + k);
            let cell = line[start..end].trim_end_matches([' ', '\t']);
            if cell.contains('"') {
                return Err(CsvProblem {
                    offset: start + cell.find('"').unwrap_or(0),
                    message: "a `\"` inside an unquoted cell: quote the whole cell and double \
                              the quote (`\"say \"\"hi\"\"\"`)"
                        .into(),
                });
            }
            cells.push((Cow::Borrowed(cell), start));
            if end == bytes.len() {
                return Ok(cells);
            }
            i = end + 1;
        }
    }
}

/// Lines of `text` with their 1-based numbers, without line breaks; blank lines and lines
/// starting with `#` are left out.
pub fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
}

/// 1-based character column of byte `offset` in `line`.
pub fn char_col(line: &str, offset: usize) -> usize {
    line.get(..offset.min(line.len()))
        .map_or(offset, |p| p.chars().count())
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_split_with_quotes_and_offsets() {
        let cells = split_line(r#"a, "b,c" ,"say ""hi""",,d "#).unwrap();
        let texts: Vec<&str> = cells.iter().map(|(c, _)| c.as_ref()).collect();
        assert_eq!(texts, ["a", "b,c", "say \"hi\"", "", "d"]);
        assert_eq!(cells[1].1, 3);
        assert!(split_line(r#"a,"b"#).is_err());
        assert!(split_line(r#"a,"b"x"#).is_err());
        assert_eq!(split_line(r#"a,b"c"#).unwrap_err().offset, 3);
    }

    #[test]
    fn a_table_keeps_cells_in_one_arena() {
        let mut t = Table::new(vec!["host".into(), "port".into()], PathBuf::from("t.csv"));
        assert!(t.push(&[Cow::Borrowed("a"), Cow::Borrowed("1")], 2, 1));
        assert!(t.push(&[Cow::Borrowed("bb"), Cow::Borrowed("22")], 3, 1));
        assert!(t.push(&[Cow::Borrowed("ccc"), Cow::Borrowed("333")], 4, 1));
        t.pop();
        assert_eq!(t.len(), 2);
        assert_eq!(t.row(1).cell(0), "bb");
        assert_eq!(t.row(1).cell(1), "22");
        assert_eq!(t.row(0).cell(1), "1");
        assert_eq!(t.row(0).cell(9), "");
        assert_eq!(t.at(1).1, 3);
    }
}
