//! Draws the whole console from `&App`: tab bar, the focused pane (or the editor), message
//! line, hint bar and the open dialog. It changes nothing; `App::fit` sized the view first.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::app::App;
use super::dialogs::{Modal, confirm, conflict, file_name, filter, help, search};
use super::draw::{self, title_case};
use super::keymap::{self, Context, Pane, Scope};
use super::panes;

pub use super::draw::{MIN_HEIGHT, MIN_WIDTH};

/// Draws one frame.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let Some(screen) = draw::screen(area) else {
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
    };
    let body = screen.body;
    tab_bar(frame, screen.tabs, app);
    match &app.view.editor {
        Some(session) => session.editor.render(frame, body, &app.theme),
        None => (panes::def(app.view.pane).draw)(frame, body, app),
    }
    message_line(frame, screen.message, app);
    hint_bar(frame, screen.hints, app);
    let theme = &app.theme;
    match &app.view.modal {
        Some(Modal::Confirm { question, .. }) => confirm::draw(frame, body, theme, question),
        Some(Modal::SpecConflict(c)) => conflict::draw(frame, body, theme, c),
        Some(Modal::Form(form)) => form.draw(frame, body, theme),
        Some(Modal::Help { scroll }) => help::draw(frame, body, theme, help_lines(app), *scroll),
        Some(Modal::Palette(p)) => p.draw(frame, body, theme, &app.names(), panes::table()),
        _ => {}
    }
}

fn tab_bar(frame: &mut Frame, area: Rect, app: &App) {
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
    if app.data.unreachable {
        right.insert_str(0, "RECONNECTING…  ");
    }
    // Eight panes do not fit 80 columns with room around each name and what the right side
    // says (read-only, reconnecting): the names go closer, then shorter, the focused one
    // always in full.
    let want = right.chars().count() + 1;
    let labels = [
        TabLabels::Loose,
        TabLabels::Tight,
        TabLabels::Short(4),
        TabLabels::Short(3),
    ]
    .into_iter()
    .map(|style| tab_labels(style, app.view.pane))
    .find(|l| l.iter().map(|s| s.chars().count()).sum::<usize>() + want <= area.width as usize)
    .unwrap_or_else(|| tab_labels(TabLabels::Short(3), app.view.pane));
    let mut spans = Vec::new();
    for (label, p) in labels.into_iter().zip(Pane::ALL) {
        let style = if p == app.view.pane {
            app.theme.selected().add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        };
        spans.push(Span::styled(label, style));
    }
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    let room = (area.width as usize).saturating_sub(used + 1);
    if room > 3 {
        let right: String = right.chars().take(room).collect();
        spans.push(Span::raw(" ".repeat(room - right.chars().count())));
        spans.push(Span::styled(right, app.theme.muted()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// How much room each pane's name gets in the tab bar.
#[derive(Clone, Copy)]
enum TabLabels {
    /// ` 3 Runs `.
    Loose,
    /// ` 3 Runs`.
    Tight,
    /// ` 3 Ru`: the first few letters, except for the focused pane.
    Short(usize),
}

fn tab_labels(style: TabLabels, focused: Pane) -> Vec<String> {
    Pane::ALL
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let name = title_case(p.name());
            match style {
                TabLabels::Loose => format!(" {} {name} ", i + 1),
                TabLabels::Short(n) if *p != focused => {
                    format!(" {} {}", i + 1, name.chars().take(n).collect::<String>())
                }
                TabLabels::Tight | TabLabels::Short(_) => format!(" {} {name}", i + 1),
            }
        })
        .collect()
}

fn message_line(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let line = match &app.view.modal {
        Some(Modal::Palette(p)) => p.line(theme),
        Some(Modal::Filter) => filter::line(&app.view.list(app.view.pane).filter, theme),
        Some(Modal::Search(s)) => search::line(s, theme),
        Some(Modal::FileName(name)) => file_name::line(name, theme),
        _ => match &app.view.message {
            Some(m) if m.error => Line::styled(m.text.clone(), app.theme.error()),
            Some(m) => Line::raw(m.text.clone()),
            None => {
                let filter = app.view.filter(app.view.pane);
                if filter.is_empty() || app.view.pane == Pane::Logs {
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
    let hints: Vec<(String, String, bool)> = if app.view.editor.is_some() {
        vec![
            ("C-s".into(), "save".into(), false),
            ("Esc".into(), "close".into(), false),
        ]
    } else {
        panes::table()
            .hints(app.context())
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
        for b in panes::table()
            .bindings()
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
