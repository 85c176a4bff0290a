//! ANSI escape sequences in task output -> styled spans, safely.
//!
//! SGR (`ESC [ … m`) sets styles: reset, bold, dim, italic, underline, reverse, crossed out,
//! 8/16 colours, 256 colours (`38;5;n`), truecolor (`38;2;r;g;b`, also the `:` forms) and
//! the same for backgrounds. Every other escape sequence (other CSI, OSC, DCS, SOS/PM/APC,
//! two-character escapes, C1 controls) and every control character is removed, so task output
//! can never move the cursor or change the terminal. A tab becomes spaces up to the next
//! multiple of 8 columns; a carriage return followed by more text starts the line over (as a
//! progress bar would look in a terminal); a line feed becomes a space. Truncated or garbage
//! sequences are dropped, never a panic.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

/// Width of a tab stop.
const TAB_WIDTH: usize = 8;
/// Most SGR parameters read from one sequence; the rest are ignored.
const MAX_PARAMS: usize = 32;

const ESC: char = '\x1b';
const BEL: char = '\x07';
/// 8-bit control introducers (as Unicode scalars U+0080-U+009F).
const C1_DCS: char = '\u{90}';
const C1_SOS: char = '\u{98}';
const C1_CSI: char = '\u{9b}';
const C1_ST: char = '\u{9c}';
const C1_OSC: char = '\u{9d}';
const C1_PM: char = '\u{9e}';
const C1_APC: char = '\u{9f}';

/// `text` as one line of spans: styles from SGR sequences applied on top of `base` (a reset
/// goes back to `base`), everything else that could affect the terminal removed.
pub fn to_line(text: &str, base: Style) -> Line<'static> {
    let mut out = Builder::new(base);
    parse(text, &mut out);
    Line::from(out.finish())
}

/// `text` without any escape sequence or control character (the text [`to_line`] shows).
pub fn strip(text: &str) -> String {
    let mut out = Builder::new(Style::new());
    out.plain = true;
    parse(text, &mut out);
    out.finish()
        .into_iter()
        .map(|span| span.content.into_owned())
        .collect()
}

/// Collects text into spans, tracking the current style and display column.
struct Builder {
    base: Style,
    style: Style,
    /// Ignore styles (for [`strip`]): everything goes into one span.
    plain: bool,
    spans: Vec<Span<'static>>,
    current: String,
    /// A carriage return was seen: the next printed text starts the line over.
    pending_cr: bool,
}

impl Builder {
    fn new(base: Style) -> Self {
        Self {
            base,
            style: base,
            plain: false,
            spans: Vec::new(),
            current: String::new(),
            pending_cr: false,
        }
    }

    fn push(&mut self, c: char) {
        if self.pending_cr {
            self.pending_cr = false;
            self.spans.clear();
            self.current.clear();
        }
        self.current.push(c);
    }

    fn tab(&mut self) {
        if self.pending_cr {
            self.pending_cr = false;
            self.spans.clear();
            self.current.clear();
        }
        let col: usize = self.spans.iter().map(Span::width).sum::<usize>()
            + Span::raw(self.current.as_str()).width();
        let n = TAB_WIDTH - col % TAB_WIDTH;
        self.current.extend(std::iter::repeat_n(' ', n));
    }

    fn set_style(&mut self, style: Style) {
        if self.plain || style == self.style {
            return;
        }
        self.flush();
        self.style = style;
    }

    fn flush(&mut self) {
        if !self.current.is_empty() {
            let text = std::mem::take(&mut self.current);
            self.spans.push(Span::styled(text, self.style));
        }
    }

    fn finish(mut self) -> Vec<Span<'static>> {
        self.flush();
        self.spans
    }

    /// Applies one SGR sequence's parameters (each a list of `:`-separated sub-parameters).
    fn sgr(&mut self, params: &[Vec<u32>]) {
        let mut style = self.style;
        if params.is_empty() {
            style = self.base;
        }
        let mut i = 0;
        while i < params.len() {
            let p = &params[i];
            let code = p.first().copied().unwrap_or(0);
            i += 1;
            match code {
                0 => style = self.base,
                1 => style = style.add_modifier(Modifier::BOLD),
                2 => style = style.add_modifier(Modifier::DIM),
                3 => style = style.add_modifier(Modifier::ITALIC),
                4 | 21 => style = style.add_modifier(Modifier::UNDERLINED),
                7 => style = style.add_modifier(Modifier::REVERSED),
                9 => style = style.add_modifier(Modifier::CROSSED_OUT),
                22 => style = self.restore(style, Modifier::BOLD | Modifier::DIM),
                23 => style = self.restore(style, Modifier::ITALIC),
                24 => style = self.restore(style, Modifier::UNDERLINED),
                27 => style = self.restore(style, Modifier::REVERSED),
                29 => style = self.restore(style, Modifier::CROSSED_OUT),
                30..=37 => style = style.fg(basic((code - 30) as u8)),
                40..=47 => style = style.bg(basic((code - 40) as u8)),
                90..=97 => style = style.fg(bright((code - 90) as u8)),
                100..=107 => style = style.bg(bright((code - 100) as u8)),
                39 => style = default_fg(style, self.base),
                49 => style = default_bg(style, self.base),
                38 | 48 => {
                    let color = if p.len() > 1 {
                        // `38:5:n` / `38:2:[cs:]r:g:b`: everything in this parameter.
                        extended_colon(&p[1..])
                    } else {
                        let (color, used) = extended_semicolon(&params[i..]);
                        i += used;
                        color
                    };
                    if let Some(color) = color {
                        style = if code == 38 {
                            style.fg(color)
                        } else {
                            style.bg(color)
                        };
                    }
                }
                // Blink, conceal, fonts, frames and the rest: ignored.
                _ => {}
            }
        }
        self.set_style(style);
    }

    /// `style` without `modifier`, except where the base style has it.
    fn restore(&self, style: Style, modifier: Modifier) -> Style {
        let keep = self.base.add_modifier & modifier;
        style.remove_modifier(modifier).add_modifier(keep)
    }
}

fn default_fg(mut style: Style, base: Style) -> Style {
    style.fg = base.fg;
    style
}

fn default_bg(mut style: Style, base: Style) -> Style {
    style.bg = base.bg;
    style
}

fn basic(n: u8) -> Color {
    match n {
        0 => Color::Black,
        1 => Color::Red,
        2 => Color::Green,
        3 => Color::Yellow,
        4 => Color::Blue,
        5 => Color::Magenta,
        6 => Color::Cyan,
        _ => Color::Gray,
    }
}

fn bright(n: u8) -> Color {
    match n {
        0 => Color::DarkGray,
        1 => Color::LightRed,
        2 => Color::LightGreen,
        3 => Color::LightYellow,
        4 => Color::LightBlue,
        5 => Color::LightMagenta,
        6 => Color::LightCyan,
        _ => Color::White,
    }
}

fn byte(v: u32) -> Option<u8> {
    u8::try_from(v).ok()
}

/// `5;n` or `2;r;g;b` following a `38`/`48` parameter; returns the colour and how many
/// parameters it used.
fn extended_semicolon(rest: &[Vec<u32>]) -> (Option<Color>, usize) {
    let at = |i: usize| rest.get(i).and_then(|p| p.first().copied());
    match at(0) {
        Some(5) => match at(1) {
            Some(n) => (byte(n).map(Color::Indexed), 2),
            None => (None, rest.len()),
        },
        Some(2) => match (at(1), at(2), at(3)) {
            (Some(r), Some(g), Some(b)) => {
                let color = match (byte(r), byte(g), byte(b)) {
                    (Some(r), Some(g), Some(b)) => Some(Color::Rgb(r, g, b)),
                    _ => None,
                };
                (color, 4)
            }
            _ => (None, rest.len()),
        },
        Some(_) => (None, 1),
        None => (None, 0),
    }
}

/// The sub-parameters after `38:` / `48:`.
fn extended_colon(sub: &[u32]) -> Option<Color> {
    match sub {
        [5, n, ..] => byte(*n).map(Color::Indexed),
        // With a colour-space id: `2:cs:r:g:b`; without: `2:r:g:b`.
        [2, _, r, g, b, ..] | [2, r, g, b] => Some(Color::Rgb(byte(*r)?, byte(*g)?, byte(*b)?)),
        _ => None,
    }
}

/// Skips the body of a string control (OSC, DCS, SOS, PM, APC) up to its terminator.
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, bel_ends: bool) {
    while let Some(c) = chars.next() {
        match c {
            C1_ST => return,
            BEL if bel_ends => return,
            ESC => {
                // `ESC \` is the string terminator; any other ESC also ends the string
                // (and is consumed with it, like a terminal would cancel it).
                if chars.peek() == Some(&'\\') {
                    chars.next();
                }
                return;
            }
            _ => {}
        }
    }
}

/// Reads a CSI sequence after its introducer. Returns the SGR parameters when it is a
/// well-formed SGR sequence, `None` for anything else (which is dropped).
fn read_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<Vec<Vec<u32>>> {
    let mut params: Vec<Vec<u32>> = Vec::new();
    let mut sub: Vec<u32> = Vec::new();
    let mut number: Option<u32> = None;
    let mut private = false;
    let mut intermediate = false;
    loop {
        // A sequence cut short, or interrupted by a control or non-ASCII character, ends
        // here; the interrupting character is handled by the caller.
        let c = *chars.peek()?;
        if !(' '..='~').contains(&c) {
            return None;
        }
        chars.next();
        match c {
            '0'..='9' if !intermediate => {
                let digit = c as u32 - '0' as u32;
                number = Some(number.unwrap_or(0).saturating_mul(10).saturating_add(digit));
            }
            ':' if !intermediate => {
                sub.push(number.take().unwrap_or(0));
            }
            ';' if !intermediate => {
                sub.push(number.take().unwrap_or(0));
                if params.len() < MAX_PARAMS {
                    params.push(std::mem::take(&mut sub));
                } else {
                    sub.clear();
                }
            }
            '<' | '=' | '>' | '?' => private = true,
            ' '..='/' => intermediate = true,
            '@'..='~' => {
                if c != 'm' || private || intermediate {
                    return None;
                }
                if number.is_some() || !sub.is_empty() || !params.is_empty() {
                    sub.push(number.take().unwrap_or(0));
                    if params.len() < MAX_PARAMS {
                        params.push(sub);
                    }
                }
                return Some(params);
            }
            // Parameter bytes after an intermediate: malformed, keep reading to the end.
            _ => {}
        }
    }
}

fn parse(text: &str, out: &mut Builder) {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ESC => match chars.peek().copied() {
                Some('[') => {
                    chars.next();
                    if let Some(params) = read_csi(&mut chars) {
                        out.sgr(&params);
                    }
                }
                Some(']') => {
                    chars.next();
                    skip_string(&mut chars, true);
                }
                Some('P' | 'X' | '^' | '_') => {
                    chars.next();
                    skip_string(&mut chars, false);
                }
                Some(' '..='/') => {
                    // `ESC intermediates… final` (charset selection and the like).
                    while let Some(&n) = chars.peek() {
                        if (' '..='/').contains(&n) {
                            chars.next();
                        } else {
                            if ('0'..='~').contains(&n) {
                                chars.next();
                            }
                            break;
                        }
                    }
                }
                Some('0'..='~') => {
                    // Two-character escapes: `ESC 7`, `ESC M`, `ESC c`, …
                    chars.next();
                }
                // A lone ESC (end of text, or before a control / non-ASCII char): dropped.
                _ => {}
            },
            C1_CSI => {
                if let Some(params) = read_csi(&mut chars) {
                    out.sgr(&params);
                }
            }
            C1_OSC => skip_string(&mut chars, true),
            C1_DCS | C1_SOS | C1_PM | C1_APC => skip_string(&mut chars, false),
            '\t' => out.tab(),
            '\r' => out.pending_cr = true,
            '\n' => {
                // A line end inside the text is a space; at the very end it is dropped.
                out.pending_cr = false;
                if chars.peek().is_some() {
                    out.push(' ');
                }
            }
            c if c.is_control() => {}
            // Bidi overrides and isolates could reorder the rest of the screen line.
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(line: &Line<'_>) -> Vec<(String, Style)> {
        line.spans
            .iter()
            .map(|s| (s.content.to_string(), s.style))
            .collect()
    }

    #[test]
    fn plain_text_is_one_span_in_base_style() {
        let base = Style::new().fg(Color::Gray);
        let line = to_line("hello world", base);
        assert_eq!(spans(&line), vec![("hello world".to_string(), base)]);
        assert_eq!(to_line("", base).spans.len(), 0);
    }

    #[test]
    fn basic_colours_modifiers_and_reset() {
        let base = Style::new().fg(Color::Gray);
        let line = to_line("a\x1b[31mred\x1b[1;42mbold\x1b[0mplain\x1b[mx", base);
        let red = base.fg(Color::Red);
        let bold = red.bg(Color::Green).add_modifier(Modifier::BOLD);
        assert_eq!(
            spans(&line),
            vec![
                ("a".to_string(), base),
                ("red".to_string(), red),
                ("bold".to_string(), bold),
                ("plainx".to_string(), base),
            ]
        );
    }

    #[test]
    fn bright_256_and_truecolor() {
        let base = Style::new();
        let line = to_line(
            "\x1b[91ma\x1b[38;5;208mb\x1b[38;2;1;2;3mc\x1b[48;5;17md\x1b[48:2::9:8:7me\x1b[38:5:42mf\x1b[104mg",
            base,
        );
        let got = spans(&line);
        assert_eq!(got[0].1.fg, Some(Color::LightRed));
        assert_eq!(got[1].1.fg, Some(Color::Indexed(208)));
        assert_eq!(got[2].1.fg, Some(Color::Rgb(1, 2, 3)));
        assert_eq!(got[3].1.bg, Some(Color::Indexed(17)));
        assert_eq!(got[4].1.bg, Some(Color::Rgb(9, 8, 7)));
        assert_eq!(got[5].1.fg, Some(Color::Indexed(42)));
        assert_eq!(got[6].1.bg, Some(Color::LightBlue));
        assert_eq!(strip(&line_text(&line)), "abcdefg");
    }

    fn line_text(line: &Line<'_>) -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    #[test]
    fn modifiers_on_and_off_keep_the_base() {
        let base = Style::new().add_modifier(Modifier::BOLD);
        let line = to_line("\x1b[2;3;4;7;9ma\x1b[22;23;24;27;29mb\x1b[39;49mc", base);
        let got = spans(&line);
        let on = Modifier::DIM
            | Modifier::ITALIC
            | Modifier::UNDERLINED
            | Modifier::REVERSED
            | Modifier::CROSSED_OUT;
        assert!(got[0].1.add_modifier.contains(on | Modifier::BOLD));
        // 22 turns bold off except that the base is bold.
        assert!(got[1].1.add_modifier.contains(Modifier::BOLD));
        assert!(!got[1].1.add_modifier.intersects(on));
        assert_eq!(
            got.len(),
            2,
            "39/49 without colours change nothing: {got:?}"
        );
    }

    #[test]
    fn default_colours_go_back_to_the_base() {
        let base = Style::new().fg(Color::Gray).bg(Color::Black);
        let line = to_line("\x1b[31;44ma\x1b[39mb\x1b[49mc", base);
        let got = spans(&line);
        assert_eq!(got[1].1.fg, Some(Color::Gray));
        assert_eq!(got[1].1.bg, Some(Color::Blue));
        assert_eq!(got[2].1, base);
    }

    #[test]
    fn cursor_moves_and_other_sequences_are_stripped() {
        let cases = [
            ("\x1b[2J\x1b[Hclear", "clear"),
            ("up\x1b[1Adown\x1b[10;20H!", "updown!"),
            ("\x1b[?25lhidden cursor\x1b[?1049h", "hidden cursor"),
            ("\x1b]0;window title\x07text", "text"),
            ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),
            ("\x1bPq#0;2;0;0;0\x1b\\after", "after"),
            ("\x1b(Bcharset\x1b7\x1b8\x1bM", "charset"),
            ("bell\x07 bs\x08 del\x7f nul\0", "bell bs del nul"),
            ("\u{9b}31mc1\u{9d}title\u{9c}", "c1"),
            ("\x1b[>4;1m\x1b[4 qshape", "shape"),
            ("rtl\u{202e}override", "rtloverride"),
        ];
        for (input, expected) in cases {
            assert_eq!(strip(input), expected, "{input:?}");
            let line = to_line(input, Style::new());
            assert_eq!(line_text(&line), expected, "{input:?}");
        }
    }

    #[test]
    fn tabs_carriage_returns_and_newlines() {
        assert_eq!(strip("a\tb"), "a       b");
        assert_eq!(strip("\x1b[31mabcdefgh\tx"), "abcdefgh        x");
        assert_eq!(strip("12345678\t|"), "12345678        |");
        assert_eq!(strip("10%\r50%\r100%"), "100%");
        assert_eq!(strip("done\r\n"), "done");
        assert_eq!(strip("done\r"), "done");
        assert_eq!(strip("a\nb"), "a b");
    }

    #[test]
    fn truncated_and_garbage_sequences() {
        let cases = [
            ("abc\x1b", "abc"),
            ("abc\x1b[", "abc"),
            ("abc\x1b[31", "abc"),
            ("abc\x1b[38;5", "abc"),
            ("abc\x1b]0;title", "abc"),
            ("\x1b[38;5mx", "x"),
            ("\x1b[38;2;1;2mx", "x"),
            ("\x1b[38;2;999;0;0mx", "x"),
            ("\x1b[38;5;300mx", "x"),
            ("\x1b[99999999999999999999mx", "x"),
            ("\x1b[3\x1b[31mx", "x"),
            ("\x1b[3é", "é"),
            ("\x1b\x1b[1mx", "x"),
            ("\x1bé", "é"),
            (
                "\x1b[;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;;1mx",
                "x",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(strip(input), expected, "{input:?}");
        }
        // An interrupted sequence does not style the text that follows.
        let line = to_line("\x1b[31\x07x", Style::new());
        assert_eq!(spans(&line), vec![("x".to_string(), Style::new())]);
    }

    #[test]
    fn random_bytes_never_panic_and_never_leak_controls() {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let alphabet = [
            '\x1b', '[', ']', ';', ':', 'm', 'H', '?', '\x07', '\\', '0', '1', '2', '3', '5', '8',
            '9', 'a', ' ', '\t', '\r', '\n', '\u{9b}', '\u{9c}', '\u{9d}', 'P', 'é', '漢', '\0',
        ];
        for _ in 0..20_000 {
            let len = rng.usize(0..40);
            let text: String = (0..len)
                .map(|_| {
                    if rng.u8(0..8) == 0 {
                        char::from_u32(rng.u32(0..0x3000)).unwrap_or('?')
                    } else {
                        alphabet[rng.usize(0..alphabet.len())]
                    }
                })
                .collect();
            let line = to_line(&text, Style::new().fg(Color::Gray));
            let shown = line_text(&line);
            assert!(
                !shown.chars().any(char::is_control),
                "{text:?} -> {shown:?}"
            );
            assert_eq!(strip(&text), shown, "{text:?}");
        }
        // Arbitrary bytes through lossy UTF-8, as task output arrives.
        for _ in 0..5_000 {
            let bytes: Vec<u8> = (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect();
            let text = String::from_utf8_lossy(&bytes);
            let shown = strip(&text);
            assert!(!shown.chars().any(char::is_control), "{text:?}");
        }
    }
}
