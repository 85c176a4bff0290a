//! Logs: the live output of a run or a task, with follow, wrap, timestamps, stderr marked and
//! search matches highlighted.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{block, note};
use crate::protocol::Stream;
use crate::tui::ansi;
use crate::tui::app::App;
use crate::tui::logs::Entry;
use crate::tui::theme::Theme;

/// Draws the logs pane.
pub fn render(frame: &mut Frame, area: Rect, app: &mut App) {
    let Some(target) = app.logs.target().cloned() else {
        let b = block(app, "Logs", true);
        return note(
            frame,
            area,
            b,
            "no logs open: select a run (3) and press l, or :logs RUN".into(),
            app.theme.muted(),
        );
    };
    let v = &app.log_view;
    let mut flags = vec![
        format!("follow {}", on_off(v.follow)),
        format!("wrap {}", on_off(v.wrap)),
    ];
    if app.logs.is_loading() {
        flags.push("loading…".into());
    }
    if app.logs.has_older() {
        flags.push("↑ older".into());
    }
    let what = match &target.task {
        Some(t) => format!("run #{} task {t}", target.run_id),
        None => format!("run #{}", target.run_id),
    };
    let title = format!(
        "Logs {what} — {} — {} lines",
        flags.join(" · "),
        app.logs.lines().len()
    );
    let b = block(app, title, true);
    let inner = b.inner(area);
    frame.render_widget(b, area);
    let h = inner.height as usize;
    let w = inner.width as usize;
    app.log_height = h.max(1);
    let lines = app.logs.lines();
    if lines.is_empty() {
        let text = if app.logs.is_loading() {
            "loading…"
        } else {
            "no output yet"
        };
        frame.render_widget(Paragraph::new(Line::styled(text, app.theme.muted())), inner);
        return;
    }
    let show_task = target.task.is_none();
    let needle = app.log_view.search.to_lowercase();
    let current = app.log_view.current_match;
    let render_one =
        |i: usize, e: &Entry| line_for(app, e, show_task, &needle, current == Some(i), &app.theme);
    let mut out: Vec<Line> = Vec::with_capacity(h);
    if app.log_view.follow {
        // Newest at the bottom: walk back until the view is full.
        let mut rows = 0;
        let mut picked = Vec::new();
        for (i, e) in lines.iter().enumerate().rev() {
            let line = render_one(i, e);
            let chunks = if app.log_view.wrap {
                wrap_line(line, w)
            } else {
                vec![line]
            };
            rows += chunks.len();
            picked.push(chunks);
            if rows >= h {
                break;
            }
        }
        for chunks in picked.into_iter().rev() {
            out.extend(chunks);
        }
        let skip = out.len().saturating_sub(h);
        out.drain(..skip);
    } else {
        let start = app.log_view.top.saturating_sub(app.logs.first_offset());
        for (i, e) in lines.iter().enumerate().skip(start) {
            let line = render_one(i, e);
            if app.log_view.wrap {
                out.extend(wrap_line(line, w));
            } else {
                out.push(line);
            }
            if out.len() >= h {
                break;
            }
        }
        out.truncate(h);
    }
    let scroll_x = if app.log_view.wrap {
        0
    } else {
        app.log_view.hscroll.min(u16::MAX as usize) as u16
    };
    frame.render_widget(Paragraph::new(out).scroll((0, scroll_x)), inner);
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// One buffer line: timestamp, task tag (stderr marked), text with colours or search matches.
fn line_for(
    app: &App,
    e: &Entry,
    show_task: bool,
    needle: &str,
    current: bool,
    theme: &Theme,
) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    if app.log_view.timestamps {
        spans.push(Span::styled(
            app.fmt_time(e.at, "%H:%M:%S%.3f "),
            theme.muted(),
        ));
    }
    let err = e.stream == Stream::Stderr;
    match (show_task, err) {
        (true, false) => spans.push(Span::styled(format!("[{}] ", e.task), theme.muted())),
        (true, true) => spans.push(Span::styled(format!("[{}:err] ", e.task), theme.stderr())),
        (false, true) => spans.push(Span::styled("err ", theme.stderr())),
        (false, false) => {}
    }
    let base = if err {
        theme.stderr()
    } else {
        Style::default()
    };
    let text = ansi::to_line(&e.text, base);
    if !needle.is_empty() {
        let plain: String = text.spans.iter().map(|s| s.content.as_ref()).collect();
        if plain.to_lowercase().contains(needle) {
            let mut hl = theme.search_match();
            if current {
                hl = hl.add_modifier(ratatui::style::Modifier::BOLD);
            }
            spans.extend(highlight(&plain, needle, base, hl));
            return Line::from(spans);
        }
    }
    spans.extend(text.spans);
    Line::from(spans)
}

/// `plain` split into spans with every case-insensitive match of `needle` in `hl`.
fn highlight(plain: &str, needle: &str, base: Style, hl: Style) -> Vec<Span<'static>> {
    let lower = plain.to_lowercase();
    // Lowercasing can change byte lengths; fall back to one span when it does.
    if lower.len() != plain.len() {
        return vec![Span::styled(plain.to_string(), hl)];
    }
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = lower[at..].find(needle) {
        let s = at + i;
        let e = s + needle.len();
        if !plain.is_char_boundary(s) || !plain.is_char_boundary(e) {
            break;
        }
        if s > at {
            out.push(Span::styled(plain[at..s].to_string(), base));
        }
        out.push(Span::styled(plain[s..e].to_string(), hl));
        at = e;
    }
    if at < plain.len() {
        out.push(Span::styled(plain[at..].to_string(), base));
    }
    out
}

/// Hard-wraps a line at `width` characters, keeping styles.
fn wrap_line(line: Line<'static>, width: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let mut out = Vec::new();
    let mut cur: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    for span in line.spans {
        let mut rest: &str = span.content.as_ref();
        while !rest.is_empty() {
            let room = width - used;
            let cut = rest.char_indices().nth(room).map_or(rest.len(), |(i, _)| i);
            let (head, tail) = rest.split_at(cut);
            cur.push(Span::styled(head.to_string(), span.style));
            used += head.chars().count();
            rest = tail;
            if used >= width {
                out.push(Line::from(std::mem::take(&mut cur)));
                used = 0;
            }
        }
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(Line::from(cur));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_splits_at_the_width_and_keeps_every_character() {
        let line = Line::from(vec![Span::raw("abcdef"), Span::raw("ghij")]);
        let out = wrap_line(line, 4);
        let texts: Vec<String> = out.iter().map(|l| l.to_string()).collect();
        assert_eq!(texts, ["abcd", "efgh", "ij"]);
    }

    #[test]
    fn matches_are_highlighted_case_insensitively() {
        let spans = highlight(
            "Error: an error",
            "error",
            Style::new(),
            Style::new().bold(),
        );
        let parts: Vec<&str> = spans.iter().map(|s| s.content.as_ref()).collect();
        assert_eq!(parts, ["Error", ": an ", "error"]);
    }
}
