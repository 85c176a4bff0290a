//! Splits a byte stream into bounded, valid UTF-8 lines.

/// Longest line kept as one; longer ones are split into pieces of at most this many bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// Accumulates bytes and yields complete lines.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Adds `bytes` and emits every complete line (and any over-long prefix). Only a partial
    /// line is kept, and an empty buffer holds no memory, so a quiet stream costs nothing.
    pub fn feed(&mut self, bytes: &[u8], mut emit: impl FnMut(String)) {
        if self.pending.is_empty() {
            let used = split(bytes, &mut emit);
            self.pending.extend_from_slice(&bytes[used..]);
            return;
        }
        self.pending.extend_from_slice(bytes);
        let used = split(&self.pending, &mut emit);
        self.pending.drain(..used);
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
    }

    /// Emits whatever is left when the stream ends.
    pub fn finish(&mut self, mut emit: impl FnMut(String)) {
        let used = split(&self.pending, &mut emit);
        self.pending.drain(..used);
        if !self.pending.is_empty() {
            emit(to_text(&self.pending));
            self.pending.clear();
        }
    }
}

/// Emits the complete lines of `buf`, and over-long prefixes cut at a character boundary;
/// returns how many bytes they used.
fn split(buf: &[u8], emit: &mut impl FnMut(String)) -> usize {
    let mut start = 0;
    loop {
        let rest = &buf[start..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(nl) if nl <= MAX_LINE => {
                emit(to_text(&rest[..nl]));
                start += nl + 1;
            }
            _ if rest.len() > MAX_LINE => {
                let cut = char_boundary(rest, MAX_LINE);
                emit(to_text(&rest[..cut]));
                start += cut;
            }
            _ => return start,
        }
    }
}

/// Largest cut `<= max` that does not split a UTF-8 sequence (falls back to `max`).
fn char_boundary(bytes: &[u8], max: usize) -> usize {
    (max.saturating_sub(3)..=max)
        .rev()
        .find(|&i| i < bytes.len() && (bytes[i] & 0b1100_0000) != 0b1000_0000)
        .unwrap_or(max)
}

fn to_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let text = String::from_utf8_lossy(bytes);
    if text.contains('\0') {
        // NUL has no place in a text column or a terminal; show it instead of storing it.
        text.replace('\0', "\u{2400}")
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |l| out.push(l));
        }
        s.finish(|l| out.push(l));
        out
    }

    #[test]
    fn joins_lines_across_reads_and_keeps_the_tail() {
        assert_eq!(split(&[b"a\nb", b"c\r\nd"]), vec!["a", "bc", "d"]);
        assert_eq!(split(&[b"\n\n"]), vec!["", ""]);
    }

    #[test]
    fn a_stream_between_lines_holds_no_buffer() {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        s.feed(b"one\ntw", |l| out.push(l));
        assert_eq!(s.pending, b"tw");
        s.feed(b"o\n", |l| out.push(l));
        assert_eq!(out, vec!["one", "two"]);
        assert_eq!(s.pending.capacity(), 0, "nothing kept between lines");
    }

    #[test]
    fn replaces_invalid_utf8_and_nul() {
        assert_eq!(split(&[b"x\xffy\0z\n"]), vec!["x\u{fffd}y\u{2400}z"]);
    }

    #[test]
    fn splits_long_lines_on_char_boundaries() {
        let long = "é".repeat(MAX_LINE); // 2 bytes each
        let lines = split(&[long.as_bytes(), b"\n"]);
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE));
        assert_eq!(lines.concat(), long);
        assert!(lines.iter().all(|l| !l.contains('\u{fffd}')));
    }
}
