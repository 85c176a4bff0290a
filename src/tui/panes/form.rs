//! The trigger form: one line per parameter, prefilled with the workflow's defaults.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::block;
use crate::tui::app::{App, TriggerForm};
use crate::tui::render::centered;

/// Draws the form over `body`.
pub fn render(frame: &mut Frame, body: Rect, app: &App, form: &TriggerForm) {
    let h = (form.fields.len() as u16 + 5).min(body.height);
    let popup = centered(body, 60, h);
    frame.render_widget(Clear, popup);
    let t = &app.theme;
    let mut lines: Vec<Line> = if form.fields.is_empty() {
        vec![Line::styled("no parameters", t.muted())]
    } else {
        form.fields
            .iter()
            .enumerate()
            .map(|(i, (k, v))| {
                let focused = i == form.focus;
                let value = if focused {
                    Span::styled(format!("{v}█"), t.selected())
                } else {
                    Span::raw(v.clone())
                };
                Line::from(vec![Span::styled(format!("{k:>16} = "), t.muted()), value])
            })
            .collect()
    };
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::styled("Enter", t.hint_key()),
        Span::raw(" start run  "),
        Span::styled("↑/↓", t.hint_key()),
        Span::raw(" field  "),
        Span::styled("Esc", t.hint_key()),
        Span::raw(" cancel"),
    ]));
    frame.render_widget(
        Paragraph::new(lines).block(block(app, format!("Trigger {}", form.workflow), true)),
        popup,
    );
}
