//! Agents: every agent the principal knows (the in-process pool and remote agents) with its
//! state, slots, heartbeat and running work, the selected one in full, and the slots busy
//! across them; `c` cordons or uncordons the selected agent, `d` drains it.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

use super::pane::{PaneDef, draw_list, filter_suffix, fit_list, gauge};
use crate::humantime::format_duration;
use crate::protocol::agent::{AgentState, AgentStatus};
use crate::protocol::api::Request;
use crate::tui::app::{App, Effect, Purpose};
use crate::tui::dialogs::Modal;
use crate::tui::dialogs::confirm::Confirmed;
use crate::tui::draw::{block, header, note};
use crate::tui::keymap::{Action, Arg, Binding, Context, Pane, Scope, b, k};

const LIST: Scope = Scope::In(&[Context::Pane(Pane::Agents)]);

/// Keys of the agents pane.
pub static BINDINGS: &[Binding] = &[
    b(
        &[k('c')],
        Action::ToggleCordon,
        LIST,
        "cordon the agent (no new work), or uncordon it",
    )
    .cmd("cordon", Arg::Agent)
    .hint("cordon/uncordon")
    .mutating(),
    b(
        &[k('d')],
        Action::Drain,
        LIST,
        "drain the agent: finish its work, take none, let it go (asks first)",
    )
    .cmd("drain", Arg::Agent)
    .hint("drain")
    .mutating(),
];

/// The agents pane.
pub static PANE: PaneDef = PaneDef {
    pane: Pane::Agents,
    show_help: "agents pane",
    show_arg: Arg::None,
    bindings: BINDINGS,
    act,
    fit,
    draw,
    rows: |app| app.agent_rows().len(),
};

/// Columns of the list; RUNNING is fitted to what its column gets (see [`fit_words`]).
const WIDTHS: [Constraint; 8] = [
    Constraint::Length(12),
    Constraint::Fill(3),
    Constraint::Length(8),
    Constraint::Fill(2),
    Constraint::Length(5),
    Constraint::Length(6),
    Constraint::Length(7),
    Constraint::Fill(4),
];
const HEADERS: [&str; 8] = [
    "AGENT", "ADDRESS", "STATE", "LABELS", "SLOTS", "HEARD", "VERSION", "RUNNING",
];
/// Index of RUNNING in [`WIDTHS`].
const RUNNING: usize = 7;

fn act(app: &mut App, action: Action, arg: Option<&str>) -> Option<Vec<Effect>> {
    match action {
        Action::ToggleCordon => Some(toggle_cordon(app, arg)),
        Action::Drain => Some(drain(app, arg)),
        _ => None,
    }
}

/// The agent a command names (`:drain gpu-1`), else the selected one; `None` (already
/// warned) when there is none.
fn target(app: &mut App, arg: Option<&str>) -> Option<AgentStatus> {
    let found = match arg {
        Some(id) => app
            .data
            .agents
            .iter()
            .flatten()
            .find(|a| a.info.id.0 == id)
            .cloned()
            .ok_or_else(|| format!("no agent `{id}` is listed (C-r reads the list again)")),
        None => app
            .selected_agent()
            .cloned()
            .ok_or_else(|| "select an agent first".to_string()),
    };
    found.map_err(|why| app.warn(why)).ok()
}

/// `c`: cordons a ready agent; uncordons a cordoned one, a draining one (which takes it back
/// before it is let go) or the drained in-process pool. Lost and drained remote agents are
/// refused here with the principal's reason, saving a round trip.
fn toggle_cordon(app: &mut App, arg: Option<&str>) -> Vec<Effect> {
    let Some(a) = target(app, arg) else {
        return Vec::new();
    };
    let id = a.info.id;
    let cordon = match a.state {
        AgentState::Ready => true,
        AgentState::Cordoned | AgentState::Draining => false,
        AgentState::Drained if a.heartbeat_age_ms.is_none() => false,
        AgentState::Lost => {
            app.warn(format!(
                "agent {id} is lost; it can be cordoned once it is back"
            ));
            return Vec::new();
        }
        AgentState::Drained => {
            app.warn(format!("agent {id} was drained and let go"));
            return Vec::new();
        }
    };
    let doing = if cordon { "cordoning" } else { "uncordoning" };
    app.say(format!("{doing} agent {id}..."));
    vec![Effect::Call(
        Request::Cordon {
            agent: id.clone(),
            cordon,
        },
        Purpose::Cordon(id, cordon),
    )]
}

/// `d`: asks, then drains. A drained remote agent exits; the in-process pool stays idle
/// until uncordoned, and the question says which.
fn drain(app: &mut App, arg: Option<&str>) -> Vec<Effect> {
    let Some(a) = target(app, arg) else {
        return Vec::new();
    };
    let id = a.info.id.clone();
    match a.state {
        AgentState::Lost | AgentState::Drained => {
            app.warn(format!(
                "agent {id} is {}; there is nothing to drain",
                a.state
            ));
        }
        AgentState::Draining => app.say(format!("agent {id} is draining already")),
        AgentState::Ready | AgentState::Cordoned => {
            let after = if a.heartbeat_age_ms.is_none() {
                "then takes no work until uncordoned (c)"
            } else {
                "then is let go (the agent exits)"
            };
            app.view.modal = Some(Modal::Confirm {
                question: format!(
                    "Drain agent {id}? It takes no new work, finishes the {} it runs, {after}.",
                    a.running.len()
                ),
                then: Confirmed::DrainAgent(id),
            });
        }
    }
    Vec::new()
}

/// The list on top, the selected agent in full below it, the slots gauge last.
fn areas(area: Rect) -> [Rect; 3] {
    Layout::vertical([
        Constraint::Min(5),
        Constraint::Length(5),
        Constraint::Length(1),
    ])
    .areas(area)
}

fn fit(app: &mut App, area: Rect) {
    let len = app.agent_rows().len();
    if len > 0 {
        fit_list(app, Pane::Agents, areas(area)[0], len);
    }
}

/// Draws the agents pane.
fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let rows = app.agent_rows();
    let error = app.data.errors.get("agents");
    let mut title = format!(
        "Agents ({}){}",
        rows.len(),
        filter_suffix(app, Pane::Agents)
    );
    let b = block(&app.theme, title.clone(), true);
    let Some(all) = app.data.agents.as_ref() else {
        let text = error.cloned().unwrap_or_else(|| "loading...".into());
        return note(frame, area, b, text, app.theme.muted());
    };
    if let Some(e) = error {
        // What is shown is the last list read; say it may be old, and why.
        title.push_str(&format!(" — not refreshed: {e}"));
    }
    let [list, detail, slots] = areas(area);
    if rows.is_empty() {
        let b = block(&app.theme, title, true);
        note(frame, list, b, "no agent matches".into(), app.theme.muted());
    } else {
        render_list(frame, list, app, &rows, title);
        let selected = app.view.list(Pane::Agents).selected.min(rows.len() - 1);
        render_detail(frame, detail, app, rows[selected]);
    }
    render_gauge(frame, slots, app, all);
}

fn render_list(frame: &mut Frame, area: Rect, app: &App, rows: &[&AgentStatus], title: String) {
    let t = &app.theme;
    // The width RUNNING gets, worked out as the table will (column spacing 1).
    let inner = Rect::new(0, 0, area.width.saturating_sub(2), 1);
    let running_w = Layout::horizontal(WIDTHS).spacing(1).split(inner)[RUNNING].width;
    let table_rows: Vec<Row> = rows
        .iter()
        .map(|a| {
            let running: Vec<String> = a.running.iter().map(|w| w.to_string()).collect();
            Row::new(vec![
                Cell::from(a.info.id.0.clone()),
                Cell::from(a.address.clone()),
                Cell::from(Line::from(Span::styled(
                    a.state.as_str(),
                    t.agent_state(a.state),
                ))),
                Cell::from(a.info.labels_text()),
                Cell::from(format!("{}/{}", a.busy, a.info.slots)),
                Cell::from(heard(a)),
                Cell::from(a.info.version.clone()),
                Cell::from(fit_words(&running, running_w as usize)),
            ])
        })
        .collect();
    let len = table_rows.len();
    let table = Table::new(table_rows, WIDTHS)
        .header(header(t, &HEADERS))
        .block(block(t, title, true));
    draw_list(frame, area, app, Pane::Agents, table, len);
}

/// Time since the principal last heard from the agent; `-` for the in-process pool, which
/// is never silent.
fn heard(a: &AgentStatus) -> String {
    a.heartbeat_age_ms.map_or_else(
        || "-".to_string(),
        |ms| format_duration(std::time::Duration::from_millis(ms)),
    )
}

/// The selected agent with what the list cuts short: labels and running work in full.
fn render_detail(frame: &mut Frame, area: Rect, app: &App, a: &AgentStatus) {
    let t = &app.theme;
    let field = |name: &'static str| Span::styled(format!("{name:<9}"), t.muted());
    let labels = crate::protocol::pairs_text(&a.info.labels, ", ");
    let running = a
        .running
        .iter()
        .map(|w| w.to_string())
        .collect::<Vec<_>>()
        .join("  ");
    let lines = vec![
        Line::from(vec![
            field("joined"),
            Span::raw(format!(
                "{} · {} · version {}",
                app.fmt_time(a.joined_at, "%m-%d %H:%M:%S"),
                a.address,
                a.info.version
            )),
        ]),
        Line::from(vec![
            field("labels"),
            Span::raw(if labels.is_empty() {
                "none".into()
            } else {
                labels
            }),
        ]),
        Line::from(vec![
            field("running"),
            Span::raw(if running.is_empty() {
                "nothing".into()
            } else {
                running
            }),
        ]),
    ];
    let title = format!("{} — {}", a.info.id, a.state);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(block(t, title, false)),
        area,
    );
}

/// Slots busy across the agents that count (lost and drained ones offer none), as the
/// principal counts them.
fn render_gauge(frame: &mut Frame, area: Rect, app: &App, all: &[AgentStatus]) {
    let live: Vec<&AgentStatus> = all
        .iter()
        .filter(|a| !matches!(a.state, AgentState::Lost | AgentState::Drained))
        .collect();
    let busy: usize = live.iter().map(|a| a.busy).sum();
    let slots: usize = live.iter().map(|a| a.info.slots).sum();
    let label = format!(
        "{busy}/{slots} slots busy across {} agent{}",
        live.len(),
        if live.len() == 1 { "" } else { "s" }
    );
    frame.render_widget(gauge(&app.theme, busy, slots, label), area);
}

/// As many of `items` as fit in `width` columns, space-separated, then `+N` for the rest;
/// a first item too wide for the column is cut with `…` rather than shown as a bare count.
fn fit_words(items: &[String], width: usize) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        let rest = items.len() - i - 1;
        // Room is kept for the `+N` that would follow this item.
        let more = if rest > 0 {
            rest.to_string().len() + 2
        } else {
            0
        };
        let sep = usize::from(i > 0);
        if out.chars().count() + sep + item.chars().count() + more <= width {
            if sep == 1 {
                out.push(' ');
            }
            out.push_str(item);
            continue;
        }
        if i == 0 {
            let keep = width.saturating_sub(more + 1);
            if keep > 0 {
                out.extend(item.chars().take(keep));
                out.push('…');
                if rest > 0 {
                    out.push_str(&format!(" +{rest}"));
                }
                return out;
            }
        }
        if sep == 1 {
            out.push(' ');
        }
        out.push_str(&format!("+{}", items.len() - i));
        return out;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fit_words;

    #[test]
    fn running_work_is_cut_at_a_whole_item_with_a_count_of_the_rest() {
        let items: Vec<String> = ["7/load#2", "8/extract#1", "9/report#1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(fit_words(&items, 40), "7/load#2 8/extract#1 9/report#1");
        assert_eq!(fit_words(&items, 31), "7/load#2 8/extract#1 9/report#1");
        assert_eq!(fit_words(&items, 30), "7/load#2 8/extract#1 +1");
        assert_eq!(fit_words(&items, 20), "7/load#2 +2");
        assert_eq!(fit_words(&items, 8), "7/lo… +2");
        assert_eq!(fit_words(&items, 4), "+3");
        assert_eq!(fit_words(&items[..1], 6), "7/loa…");
        assert_eq!(fit_words(&[], 5), "");
    }
}
