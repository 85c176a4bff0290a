//! Logs: the live output of a run or a task, with follow, wrap, timestamps, stderr marked and
//! search matches highlighted.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::pane::PaneDef;
use crate::protocol::{RunId, Stream};
use crate::tui::ansi;
use crate::tui::app::{App, Effect};
use crate::tui::dialogs::Modal;
use crate::tui::draw::{block, inner, note};
use crate::tui::keymap::{Action, Arg, Binding, Context, Pane, Scope, b, code, k};
use crate::tui::line_input::LineInput;
use crate::tui::logs::Entry;
use crate::tui::theme::Theme;
use ratatui::crossterm::event::KeyCode;

const HERE: Scope = Scope::In(&[Context::Pane(Pane::Logs)]);

/// Keys of the logs pane.
pub static BINDINGS: &[Binding] = &[
    b(&[k('f')], Action::Follow, HERE, "follow new lines on/off")
        .cmd("follow", Arg::None)
        .hint("follow"),
    b(&[k('w')], Action::Wrap, HERE, "wrap long lines on/off")
        .cmd("wrap", Arg::None)
        .hint("wrap"),
    b(&[k('T')], Action::Timestamps, HERE, "timestamps on/off")
        .cmd("timestamps", Arg::None)
        .hint("time"),
    b(
        &[k('/')],
        Action::Filter,
        HERE,
        "search (matches highlighted)",
    )
    .hint("search"),
    b(&[k('n')], Action::NextMatch, HERE, "next match").hint("next match"),
    b(&[k('N')], Action::PrevMatch, HERE, "previous match"),
    b(
        &[code(KeyCode::Left), k('h')],
        Action::Left,
        HERE,
        "scroll left",
    ),
    b(
        &[code(KeyCode::Right), k('l')],
        Action::Right,
        HERE,
        "scroll right",
    ),
];

/// The logs pane.
pub static PANE: PaneDef = PaneDef {
    pane: Pane::Logs,
    show_help: "logs pane (of a run: :logs 12)",
    show_arg: Arg::Run,
    bindings: BINDINGS,
    act,
    fit,
    draw,
    rows: super::pane::no_rows,
};

fn act(app: &mut App, action: Action, arg: Option<&str>) -> Option<Vec<Effect>> {
    let v = &mut app.view.log_view;
    Some(match action {
        Action::Show(Pane::Logs) => show(app, arg),
        Action::Follow => {
            let on = !v.follow;
            app.set_follow(on)
        }
        Action::Wrap => {
            v.wrap = !v.wrap;
            Vec::new()
        }
        Action::Timestamps => {
            v.timestamps = !v.timestamps;
            Vec::new()
        }
        Action::Filter => {
            app.view.modal = Some(Modal::Search(LineInput::new(v.search.clone())));
            Vec::new()
        }
        Action::NextMatch | Action::PrevMatch => {
            app.jump_match(action == Action::NextMatch);
            Vec::new()
        }
        Action::Left | Action::Right => {
            let d = if action == Action::Left { -1 } else { 1 };
            if !v.wrap {
                v.hscroll = (v.hscroll as isize + d * 8).max(0) as usize;
            }
            Vec::new()
        }
        Action::Bottom => app.set_follow(true),
        Action::Back => {
            if !v.search.is_empty() {
                v.search.clear();
                v.current_match = None;
            } else {
                app.view.pane = app.view.before_logs;
            }
            Vec::new()
        }
        _ => {
            let delta = action.step(app.view.log_height)?;
            app.scroll_logs(delta)
        }
    })
}

/// `5` or `:logs [RUN]`: the logs of the run named, else the logs open, else those of the
/// selected run.
fn show(app: &mut App, arg: Option<&str>) -> Vec<Effect> {
    if let Some(a) = arg {
        return match a.parse::<RunId>() {
            Ok(id) => app.open_logs(id, None),
            Err(e) => {
                app.warn(e);
                Vec::new()
            }
        };
    }
    match app.view.selected_run {
        Some(id) if !app.data.logs.is_open() => app.open_logs(id, None),
        _ => {
            app.view.show(Pane::Logs);
            Vec::new()
        }
    }
}

fn fit(app: &mut App, area: Rect) {
    if app.data.logs.is_open() {
        app.view.log_height = (inner(area).height as usize).max(1);
    }
}

/// Draws the logs pane.
fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let service = app.data.logs.service().cloned();
    let target = app.data.logs.target().cloned();
    if target.is_none() && service.is_none() {
        let b = block(&app.theme, "Logs", true);
        return note(
            frame,
            area,
            b,
            "no logs open: select a run (3) or a service (8) and press l, or :logs RUN".into(),
            app.theme.muted(),
        );
    }
    let v = &app.view.log_view;
    let logs = &app.data.logs;
    let mut flags = vec![
        format!("follow {}", on_off(v.follow)),
        format!("wrap {}", on_off(v.wrap)),
    ];
    if logs.is_loading() {
        flags.push("loading…".into());
    }
    if logs.has_older() {
        flags.push("↑ older".into());
    }
    let what = match (&target, &service) {
        (Some(t), _) => match &t.task {
            Some(task) => format!("run #{} task {task}", t.run_id),
            None => format!("run #{}", t.run_id),
        },
        (None, Some(path)) => format!("service {path} (live)"),
        (None, None) => String::new(),
    };
    let title = format!(
        "Logs {what} — {} — {} lines",
        flags.join(" · "),
        logs.lines().len()
    );
    let b = block(&app.theme, title, true);
    let inner = b.inner(area);
    frame.render_widget(b, area);
    let h = inner.height as usize;
    let w = inner.width as usize;
    let lines = logs.lines();
    if lines.is_empty() {
        let text = if logs.is_loading() {
            "loading…"
        } else if service.is_some() {
            "no output yet: lines show as the service writes them"
        } else {
            "no output yet"
        };
        frame.render_widget(Paragraph::new(Line::styled(text, app.theme.muted())), inner);
        return;
    }
    // One task or one service: only stderr is marked.
    let show_task = target.as_ref().is_some_and(|t| t.task.is_none());
    let needle = v.search.to_lowercase();
    let current = v.current_match;
    let render_one =
        |i: usize, e: &Entry| line_for(app, e, show_task, &needle, current == Some(i), &app.theme);
    let mut out: Vec<Line> = Vec::with_capacity(h);
    if v.follow {
        // Newest at the bottom: walk back until the view is full.
        let mut rows = 0;
        let mut picked = Vec::new();
        for (i, e) in lines.iter().enumerate().rev() {
            let line = render_one(i, e);
            let chunks = if v.wrap {
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
        let start = v.top.saturating_sub(logs.first_offset());
        for (i, e) in lines.iter().enumerate().skip(start) {
            let line = render_one(i, e);
            if v.wrap {
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
    let scroll_x = if v.wrap {
        0
    } else {
        v.hscroll.min(u16::MAX as usize) as u16
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
    if app.view.log_view.timestamps {
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
