//! Draws the whole console: tab bar, the focused pane, message line, hint bar and dialogs.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::app::{App, Modal, SpecConflict};
use super::keymap::{self, Arg, Context, Pane, Scope};
use super::panes;

/// Smallest usable terminal.
pub const MIN_WIDTH: u16 = 80;
/// Smallest usable terminal.
pub const MIN_HEIGHT: u16 = 24;

/// Draws one frame.
pub fn draw(frame: &mut Frame, app: &mut App) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "terminal too small (need {MIN_WIDTH}x{MIN_HEIGHT}, have {}x{})",
            area.width, area.height
        );
        let y = area.height / 2;
        frame.render_widget(
            Paragraph::new(text).wrap(Wrap { trim: true }),
            Rect::new(
                area.x,
                area.y + y.min(area.height.saturating_sub(1)),
                area.width,
                area.height - y,
            ),
        );
        return;
    }
    let [tabs, body, message, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    tab_bar(frame, tabs, app);
    if let Some(session) = app.editor.as_mut() {
        session.editor.render(frame, body, &app.theme);
    } else {
        panes::render(frame, body, app);
    }
    message_line(frame, message, app);
    hint_bar(frame, hints, app);
    match app.modal.clone() {
        Some(Modal::Confirm { question, .. }) => confirm(frame, body, app, &question),
        Some(Modal::SpecConflict(c)) => conflict(frame, body, app, &c),
        Some(Modal::Form(form)) => panes::form::render(frame, body, app, &form),
        Some(Modal::Help { scroll }) => help(frame, body, app, scroll),
        Some(Modal::Palette(p)) => {
            let names = app.names();
            let cands = p.candidates(&names);
            if !cands.is_empty() {
                let h = (cands.len() as u16).min(8) + 2;
                let w = 60.min(body.width);
                let popup = Rect::new(body.x, body.bottom().saturating_sub(h), w, h);
                frame.render_widget(Clear, popup);
                let lines: Vec<Line> = cands
                    .iter()
                    .take(8)
                    .map(|(c, help)| {
                        // Name the argument a command takes: `:wf NAME`.
                        let arg = match keymap::command(c).map(|b| b.arg) {
                            Some(Arg::Workflow) if !c.contains(' ') => " NAME",
                            Some(Arg::Theme) if !c.contains(' ') => " NAME",
                            Some(Arg::Run) if !c.contains(' ') => " [RUN]",
                            _ => "",
                        };
                        let c = format!("{c}{arg}");
                        Line::from(vec![
                            Span::styled(format!(":{c:<16}"), app.theme.hint_key()),
                            Span::styled(help.to_string(), app.theme.muted()),
                        ])
                    })
                    .collect();
                frame.render_widget(
                    Paragraph::new(lines).block(
                        Block::default()
                            .borders(Borders::ALL)
                            .border_style(app.theme.border(true))
                            .title(" Tab completes "),
                    ),
                    popup,
                );
            }
        }
        _ => {}
    }
}

fn tab_bar(frame: &mut Frame, area: Rect, app: &App) {
    let mut spans = Vec::new();
    for (i, p) in Pane::ALL.iter().enumerate() {
        let label = format!(" {} {} ", i + 1, title_case(p.name()));
        let style = if *p == app.pane {
            app.theme.selected().add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        spans.push(Span::styled(label, style));
    }
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    let mut right = app.config.origin.clone();
    if app.config.read_only.is_some() {
        right.push_str(" [read-only]");
    }
    let store_problem = app
        .data
        .status
        .as_ref()
        .is_some_and(|s| s.store_problem.is_some());
    if store_problem {
        right.insert_str(0, "HISTORY NOT WRITABLE  ");
    }
    let room = (area.width as usize).saturating_sub(used + 1);
    if room > 3 {
        let right: String = right.chars().take(room).collect();
        spans.push(Span::raw(" ".repeat(room - right.chars().count())));
        spans.push(Span::styled(right, app.theme.muted()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// `runs` -> `Runs`.
pub fn title_case(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn message_line(frame: &mut Frame, area: Rect, app: &App) {
    let line = match &app.modal {
        Some(Modal::Palette(p)) => Line::from(vec![
            Span::styled(":", app.theme.hint_key()),
            Span::raw(p.input.clone()),
            Span::styled("█", app.theme.muted()),
        ]),
        Some(Modal::Filter) => Line::from(vec![
            Span::styled("/", app.theme.hint_key()),
            Span::raw(app.lists[app.pane.index()].filter.clone()),
            Span::styled("█  Enter keeps, Esc clears", app.theme.muted()),
        ]),
        Some(Modal::Search(s)) => Line::from(vec![
            Span::styled("search /", app.theme.hint_key()),
            Span::raw(s.clone()),
            Span::styled("█  Enter searches, Esc cancels", app.theme.muted()),
        ]),
        Some(Modal::FileName(name)) => Line::from(vec![
            Span::styled("new workflow file: ", app.theme.hint_key()),
            Span::raw(name.clone()),
            Span::styled(
                "█  (e.g. backup.yaml) Enter opens, Esc cancels",
                app.theme.muted(),
            ),
        ]),
        _ => match &app.message {
            Some(m) if m.error => Line::styled(m.text.clone(), app.theme.error()),
            Some(m) => Line::raw(m.text.clone()),
            None => {
                let filter = &app.lists[app.pane.index()].filter;
                if filter.is_empty() || app.pane == Pane::Logs {
                    Line::raw("")
                } else {
                    Line::styled(format!("filter: {filter}  (Esc clears)"), app.theme.muted())
                }
            }
        },
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn hint_bar(frame: &mut Frame, area: Rect, app: &App) {
    let mut spans = Vec::new();
    let mut width = 0usize;
    let max = area.width as usize;
    let hints: Vec<(String, String, bool)> = if app.editor.is_some() {
        vec![
            ("C-s".into(), "save".into(), false),
            ("Esc".into(), "close".into(), false),
        ]
    } else {
        keymap::hints(app.context())
            .into_iter()
            .map(|b| {
                let key = b.keys.first().map(|k| k.label()).unwrap_or_default();
                let disabled = b.mutates && app.config.read_only.is_some();
                (key, b.hint.unwrap_or(b.help).to_string(), disabled)
            })
            .collect()
    };
    for (key, help, disabled) in hints {
        let item = key.chars().count() + 1 + help.chars().count() + 2;
        if width + item > max {
            break;
        }
        width += item;
        let (ks, hs) = if disabled {
            (
                app.theme.muted().add_modifier(Modifier::CROSSED_OUT),
                app.theme.muted().add_modifier(Modifier::CROSSED_OUT),
            )
        } else {
            (app.theme.hint_key(), Style::default())
        };
        spans.push(Span::styled(key, ks));
        spans.push(Span::raw(" "));
        spans.push(Span::styled(help, hs));
        spans.push(Span::raw("  "));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A rectangle of `w`x`h` centred in `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn confirm(frame: &mut Frame, body: Rect, app: &App, question: &str) {
    let w = (question.chars().count() as u16 + 4).clamp(30, body.width.saturating_sub(4));
    let popup = centered(body, w, 5);
    frame.render_widget(Clear, popup);
    let lines = vec![
        Line::raw(question.to_string()),
        Line::raw(""),
        Line::from(vec![
            Span::styled("y", app.theme.hint_key()),
            Span::raw(" yes   "),
            Span::styled("n", app.theme.hint_key()),
            Span::raw(" no"),
        ]),
    ];
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(app.theme.border(true))
                .title(" Confirm "),
        ),
        popup,
    );
}

/// The choice after a save found its file changed on disk.
fn conflict(frame: &mut Frame, body: Rect, app: &App, c: &SpecConflict) {
    let question = format!("Not saved: {}.", c.message);
    let w = (question.chars().count() as u16 + 4).clamp(50, body.width.saturating_sub(4));
    let popup = centered(body, w, 6);
    frame.render_widget(Clear, popup);
    let mut keys = Vec::new();
    if c.text.is_some() {
        keys.push(Span::styled("r", app.theme.hint_key()));
        keys.push(Span::raw(" reload from disk   "));
    }
    keys.extend([
        Span::styled("o", app.theme.hint_key()),
        Span::raw(" overwrite with your text   "),
        Span::styled("Esc", app.theme.hint_key()),
        Span::raw(" keep editing"),
    ]);
    let lines = vec![Line::raw(question), Line::raw(""), Line::from(keys)];
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(app.theme.error())
                .title(" Changed on disk "),
        ),
        popup,
    );
}

/// The help text: every binding grouped by where it applies; generated from the key table.
pub fn help_lines(app: &App) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let here = match app.context() {
        Context::Dag => "The run's DAG".to_string(),
        Context::Pane(p) => format!("{} pane", title_case(p.name())),
    };
    let groups = [(here.as_str(), false), ("Everywhere", true)];
    let ctx = app.context();
    if let Some(reason) = &app.config.read_only {
        lines.push(Line::styled(
            format!("Actions marked [disabled] are off: {reason}."),
            app.theme.error(),
        ));
        lines.push(Line::raw(""));
    }
    for (title, global) in groups {
        lines.push(Line::styled(
            title.to_string(),
            Style::default().add_modifier(Modifier::BOLD),
        ));
        for b in keymap::BINDINGS
            .iter()
            .filter(|b| (b.scope == Scope::Global) == global && b.scope.applies(ctx))
        {
            let keys = keymap::keys_label(b);
            let cmd = b.command.map(|c| format!(":{c}")).unwrap_or_default();
            let mut help = b.help.to_string();
            if b.mutates && app.config.read_only.is_some() {
                help.push_str("  [disabled]");
            }
            lines.push(Line::from(vec![
                Span::styled(format!("  {keys:<12}"), app.theme.hint_key()),
                Span::styled(format!("{cmd:<12}"), app.theme.muted()),
                Span::raw(help),
            ]));
        }
        lines.push(Line::raw(""));
    }
    lines
}

fn help(frame: &mut Frame, body: Rect, app: &App, scroll: usize) {
    let popup = centered(body, 76, body.height.saturating_sub(2));
    frame.render_widget(Clear, popup);
    let lines = help_lines(app);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((scroll.min(u16::MAX as usize) as u16, 0))
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(app.theme.border(true))
                    .title(" Help — Esc closes, ↑/↓ scroll "),
            ),
        popup,
    );
}
