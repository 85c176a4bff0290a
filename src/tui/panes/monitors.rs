//! Monitors: every monitor in a dense list coloured by state, counts per state in the title,
//! the selected one in detail below (each condition with the value it saw, per-location
//! results, a response-time sparkline, its last results, its open incident with the
//! interventions taken); `c` checks it now, `p` pauses or resumes it, `o` opens its incident,
//! `i` shows the incidents (open first, then recent) instead.
//!
//! A million monitors are never all here: the console holds a window of the filtered list
//! around the selection (read again when the selection nears its edge) and draws only the
//! rows in view, so that nothing is recomputed per frame.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Sparkline, Table, Wrap};

use super::pane::{PaneDef, filter_suffix};
use crate::humantime::format_duration;
use crate::protocol::api::{Request, Response};
use crate::protocol::monitor::{
    Incident, MonitorAction, MonitorCounts, MonitorDetail, MonitorFilter, MonitorPage,
    MonitorState, MonitorSummary, Outcome,
};
use crate::tui::app::{App, Effect, Purpose};
use crate::tui::draw::{self, block, header, note};
use crate::tui::keymap::{Action, Arg, Binding, Context, Pane, Scope, b, k};
use crate::tui::theme::Theme;

const HERE: Scope = Scope::In(&[Context::Pane(Pane::Monitors)]);

/// Rows of the list read at once, around the selection.
pub const WINDOW: usize = 400;
/// The window is read again when the selection comes this close to its edge.
const MARGIN: usize = 100;
/// Incidents read for the Overview and the incidents view.
pub const INCIDENTS_READ: usize = 500;
/// Height of the detail below the list.
const DETAIL_H: u16 = 12;

/// Keys of the Monitors pane.
pub static BINDINGS: &[Binding] = &[
    b(
        &[k('c')],
        Action::MonitorCheck,
        HERE,
        "check the selected monitor now",
    )
    .hint("check")
    .mutating(),
    b(
        &[k('p')],
        Action::MonitorPause,
        HERE,
        "pause the selected monitor, or resume it",
    )
    .hint("pause/resume")
    .mutating(),
    b(
        &[k('o')],
        Action::OpenIncident,
        HERE,
        "open the selected monitor's incident",
    )
    .hint("incident"),
    b(
        &[k('i')],
        Action::ToggleIncidents,
        HERE,
        "incidents (open first, then recent), or the monitors again",
    )
    .hint("incidents"),
];

/// The Monitors pane.
pub static PANE: PaneDef = PaneDef {
    pane: Pane::Monitors,
    show_help: "monitors pane",
    show_arg: Arg::None,
    bindings: BINDINGS,
    act,
    fit,
    draw,
    rows,
};

fn rows(app: &App) -> usize {
    if app.view.monitors.incidents {
        return app.data.monitors.incidents.as_ref().map_or(0, Vec::len);
    }
    app.data
        .monitors
        .window
        .as_ref()
        .map_or(0, |w| w.matched as usize)
}

impl App {
    /// The monitor selected in the list, when the window read holds it.
    pub fn selected_monitor(&self) -> Option<&MonitorSummary> {
        let m = &self.data.monitors;
        let w = m.window.as_ref()?;
        if m.window_filter != self.view.filter(Pane::Monitors) {
            return None;
        }
        let sel = self.view.list(Pane::Monitors).selected;
        w.monitors.get(sel.checked_sub(w.offset as usize)?)
    }

    /// The requests the monitors need now. `refresh`: everything is read again (the
    /// counts and incidents for the Overview, the window and detail on the Monitors pane);
    /// otherwise only what the selection or the filter made stale.
    pub(crate) fn monitor_effects(&mut self, refresh: bool) -> Vec<Effect> {
        let mut out = Vec::new();
        if refresh {
            out.push(incidents_call());
        }
        if self.view.pane != Pane::Monitors {
            if refresh {
                out.push(counts_call());
            }
            return out;
        }
        if refresh || !self.window_covers() {
            let call = self.window_call();
            let key = match &call {
                Effect::Call(_, Purpose::MonitorWindow(f, o)) => Some((f.clone(), *o)),
                _ => None,
            };
            if refresh || self.view.monitors.asked != key {
                self.view.monitors.asked = key;
                out.push(call);
            }
        }
        out.extend(self.detail_call(refresh));
        out
    }

    /// What a poll of the Monitors pane reads: the window, the selected detail, incidents.
    pub(crate) fn monitor_poll(&self) -> Vec<Effect> {
        let mut out = vec![self.window_call(), incidents_call()];
        if let Some(name) = self.selected_monitor().map(|m| m.name.clone())
            && self.data.monitors.running
        {
            out.push(Effect::Call(
                Request::Monitor { name: name.clone() },
                Purpose::MonitorDetail(name),
            ));
        }
        out
    }

    /// The read of the window around the selection.
    fn window_call(&self) -> Effect {
        let text = self.view.filter(Pane::Monitors).to_string();
        let filter = MonitorFilter::parse(&text).unwrap_or_default();
        let sel = self.view.list(Pane::Monitors).selected;
        let offset = sel.saturating_sub(WINDOW / 2);
        Effect::Call(
            Request::Monitors {
                filter,
                offset,
                limit: WINDOW,
            },
            Purpose::MonitorWindow(text, offset),
        )
    }

    /// True when the window read holds the rows around the selection.
    fn window_covers(&self) -> bool {
        let m = &self.data.monitors;
        let Some(w) = m.window.as_ref() else {
            return false;
        };
        if m.window_filter != self.view.filter(Pane::Monitors) {
            return false;
        }
        let sel = self.view.list(Pane::Monitors).selected;
        let start = w.offset as usize;
        let end = start + w.monitors.len();
        let lo = sel.saturating_sub(MARGIN);
        let hi = (sel + MARGIN).min(w.matched as usize);
        lo >= start && hi <= end
    }

    /// The detail of the selected monitor, when it is not the one shown (or on refresh).
    fn detail_call(&mut self, refresh: bool) -> Option<Effect> {
        if !self.data.monitors.running {
            return None;
        }
        let name = self.selected_monitor()?.name.clone();
        let shown = self.data.monitors.detail.as_ref().map(|d| &d.summary.name);
        if !refresh && shown == Some(&name) {
            return None;
        }
        Some(Effect::Call(
            Request::Monitor { name: name.clone() },
            Purpose::MonitorDetail(name),
        ))
    }

    /// A window of the list arrived (read with filter text `filter`).
    pub(crate) fn monitor_window(&mut self, filter: String, page: MonitorPage) -> Vec<Effect> {
        let m = &mut self.data.monitors;
        m.counts = Some(page.counts);
        m.running = page.running;
        m.window = Some(page);
        m.window_filter = filter;
        self.view.monitors.asked = None;
        let len = rows(self);
        let l = self.view.list_mut(Pane::Monitors);
        l.selected = l.selected.min(len.saturating_sub(1));
        if self.view.pane == Pane::Monitors {
            self.detail_call(false).into_iter().collect()
        } else {
            Vec::new()
        }
    }

    /// Counts arrived (for the Overview).
    pub(crate) fn monitor_counts(&mut self, page: MonitorPage) {
        self.data.monitors.counts = Some(page.counts);
        self.data.monitors.running = page.running;
    }

    /// A monitor's detail arrived; kept if it is still the one selected.
    pub(crate) fn monitor_detail(&mut self, d: MonitorDetail) {
        if self
            .selected_monitor()
            .is_some_and(|m| m.name == d.summary.name)
        {
            self.data.monitors.detail = Some(d);
        }
    }

    /// A pause, resume or check was answered with the monitor as it is now.
    pub(crate) fn monitor_controlled(
        &mut self,
        action: MonitorAction,
        monitor: MonitorSummary,
    ) -> Vec<Effect> {
        let done = match action {
            MonitorAction::Pause => "paused",
            MonitorAction::Resume => "resumed",
            MonitorAction::Check => "checked",
        };
        self.say(format!("{}: {done}, now {}", monitor.name, monitor.state));
        if let Some(w) = self.data.monitors.window.as_mut()
            && let Some(m) = w.monitors.iter_mut().find(|m| m.name == monitor.name)
        {
            *m = monitor;
        }
        // The counts and the detail changed with it.
        self.monitor_poll()
    }

    /// The `/` filter changed: the window is read again from the top.
    pub(crate) fn monitors_filtered(&mut self) -> Vec<Effect> {
        let text = self.view.filter(Pane::Monitors).to_string();
        if let Err(e) = MonitorFilter::parse(&text) {
            self.warn(e);
            return Vec::new();
        }
        let l = self.view.list_mut(Pane::Monitors);
        l.selected = 0;
        l.offset = 0;
        self.monitor_effects(false)
    }
}

fn incidents_call() -> Effect {
    Effect::Call(
        Request::Incidents {
            open_only: false,
            limit: INCIDENTS_READ,
        },
        Purpose::Incidents,
    )
}

/// The counts alone (an empty page): what the Overview needs.
fn counts_call() -> Effect {
    Effect::Call(
        Request::Monitors {
            filter: MonitorFilter::default(),
            offset: 0,
            limit: 0,
        },
        Purpose::MonitorCounts,
    )
}

/// The answer to a monitors request, applied.
pub(crate) fn on_answer(app: &mut App, purpose: Purpose, response: Response) -> Vec<Effect> {
    match (purpose, response) {
        (Purpose::MonitorWindow(filter, _), Response::Monitors(page)) => {
            app.monitor_window(filter, page)
        }
        (Purpose::MonitorCounts, Response::Monitors(page)) => {
            app.monitor_counts(page);
            Vec::new()
        }
        (Purpose::MonitorDetail(_), Response::Monitor(d)) => {
            app.monitor_detail(*d);
            Vec::new()
        }
        (Purpose::Incidents, Response::Incidents { incidents }) => {
            app.data.monitors.incidents = Some(incidents);
            Vec::new()
        }
        (Purpose::MonitorControl(..), Response::MonitorControlled { action, monitor }) => {
            app.monitor_controlled(action, monitor)
        }
        (purpose, other) => {
            app.warn(format!(
                "{}: unexpected answer {}",
                crate::tui::app::source_name(&purpose),
                crate::tui::app::short(&format!("{other:?}"))
            ));
            Vec::new()
        }
    }
}

fn act(app: &mut App, action: Action, _: Option<&str>) -> Option<Vec<Effect>> {
    let incidents = app.view.monitors.incidents;
    Some(match action {
        Action::Show(Pane::Monitors) => {
            app.view.show(Pane::Monitors);
            app.monitor_effects(true)
        }
        Action::MonitorCheck => control(app, |_| MonitorAction::Check),
        Action::MonitorPause => control(app, |m| {
            if m.state == MonitorState::Paused {
                MonitorAction::Resume
            } else {
                MonitorAction::Pause
            }
        }),
        Action::OpenIncident => open_incident(app),
        Action::ToggleIncidents => {
            app.view.monitors.incidents = !incidents;
            if incidents {
                app.monitor_effects(false)
            } else {
                vec![incidents_call()]
            }
        }
        Action::Enter if incidents => show_incident_monitor(app),
        Action::Back if incidents => {
            app.view.monitors.incidents = false;
            app.monitor_effects(false)
        }
        Action::Back if !app.view.filter(Pane::Monitors).is_empty() => {
            app.view.list_mut(Pane::Monitors).filter.clear();
            app.monitors_filtered()
        }
        _ => {
            let delta = action.step(app.view.page)?;
            let len = rows(app);
            let pos = if incidents {
                &mut app.view.monitors.incident_selected
            } else {
                &mut app.view.list_mut(Pane::Monitors).selected
            };
            *pos = (*pos as isize)
                .saturating_add(delta)
                .clamp(0, len.saturating_sub(1) as isize) as usize;
            if incidents {
                Vec::new()
            } else {
                app.monitor_effects(false)
            }
        }
    })
}

/// `c`, `p`: the selected monitor, asked of the principal.
fn control(app: &mut App, action: impl Fn(&MonitorSummary) -> MonitorAction) -> Vec<Effect> {
    if app.view.monitors.incidents {
        app.warn("select a monitor first (i shows the monitors)");
        return Vec::new();
    }
    let Some(m) = app.selected_monitor() else {
        app.warn("no monitor is selected");
        return Vec::new();
    };
    let (name, action) = (m.name.clone(), action(m));
    app.say(format!("{name}: {}...", action.as_str()));
    vec![Effect::Call(
        Request::MonitorControl {
            name: name.clone(),
            action,
        },
        Purpose::MonitorControl(name, action),
    )]
}

/// `o`: the incidents view, on the selected monitor's incident.
fn open_incident(app: &mut App) -> Vec<Effect> {
    let Some(m) = app.selected_monitor() else {
        app.warn("no monitor is selected");
        return Vec::new();
    };
    let Some(id) = m.incident else {
        let text = format!("{} has no open incident", m.name);
        app.say(text);
        return Vec::new();
    };
    let at = app
        .data
        .monitors
        .incidents
        .iter()
        .flatten()
        .position(|i| i.id == id);
    app.view.monitors.incidents = true;
    app.view.monitors.incident_selected = at.unwrap_or(0);
    vec![incidents_call()]
}

/// Enter on an incident: its monitor in the list (filtered by its name).
fn show_incident_monitor(app: &mut App) -> Vec<Effect> {
    let Some(i) = app
        .data
        .monitors
        .incidents
        .as_ref()
        .and_then(|all| all.get(app.view.monitors.incident_selected))
    else {
        return Vec::new();
    };
    let name = i.monitor.clone();
    app.view.monitors.incidents = false;
    app.view.list_mut(Pane::Monitors).filter.set(&name);
    app.monitors_filtered()
}

/// The list on top, the detail below.
fn areas(area: Rect) -> [Rect; 2] {
    if area.height < DETAIL_H + 8 {
        return [area, Rect { height: 0, ..area }];
    }
    Layout::vertical([Constraint::Min(5), Constraint::Length(DETAIL_H)]).areas(area)
}

fn fit(app: &mut App, area: Rect) {
    if app.view.monitors.incidents {
        let rows = draw::table_rows(area).max(1);
        app.view.page = rows;
        let len = rows_len_incidents(app);
        let v = &mut app.view.monitors;
        v.incident_selected = v.incident_selected.min(len.saturating_sub(1));
        v.incident_offset = draw::table_offset(v.incident_offset, v.incident_selected, len, rows);
        return;
    }
    let len = rows(app);
    super::pane::fit_list(app, Pane::Monitors, areas(area)[0], len);
}

fn rows_len_incidents(app: &App) -> usize {
    app.data.monitors.incidents.as_ref().map_or(0, Vec::len)
}

/// `Monitors 200 — 176 healthy · 4 unhealthy · ...`.
pub fn counts_title(c: &MonitorCounts) -> String {
    let parts = c.parts(false);
    format!("{} — {}", c.total, parts.join(" · "))
}

fn draw(frame: &mut Frame, area: Rect, app: &App) {
    if app.view.monitors.incidents {
        return draw_incidents(frame, area, app);
    }
    let t = &app.theme;
    let m = &app.data.monitors;
    let error = app.data.errors.get("monitors");
    let Some(w) = m.window.as_ref() else {
        let text = error.cloned().unwrap_or_else(|| "loading...".into());
        return note(frame, area, block(t, "Monitors", true), text, t.muted());
    };
    let mut title = format!(
        "Monitors {}{}",
        counts_title(&w.counts),
        filter_suffix(app, Pane::Monitors)
    );
    if let Some(e) = error {
        title.push_str(&format!(" — not refreshed: {e}"));
    }
    if w.counts.total == 0 {
        let text = if m.running {
            "no monitors: add a `kind: monitor` file to the workflows directory"
        } else {
            "monitors are not running"
        };
        return note(frame, area, block(t, title, true), text.into(), t.muted());
    }
    if w.matched == 0 {
        return note(
            frame,
            area,
            block(t, title, true),
            "nothing matches".into(),
            t.muted(),
        );
    }
    let [list, detail] = areas(area);
    draw_list(frame, list, app, w, title);
    if detail.height > 0 {
        draw_detail(frame, detail, app);
    }
}

/// The rows in view only, from the window; a row not read yet shows as `…`.
fn draw_list(frame: &mut Frame, area: Rect, app: &App, w: &MonitorPage, title: String) {
    let t = &app.theme;
    let l = app.view.list(Pane::Monitors);
    let rows = draw::table_rows(area);
    let end = (l.offset + rows).min(w.matched as usize);
    let name_w = w
        .monitors
        .iter()
        .map(|m| m.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 32) as u16;
    let body: Vec<Row> = (l.offset..end)
        .map(|i| {
            match i
                .checked_sub(w.offset as usize)
                .and_then(|k| w.monitors.get(k))
                .filter(|_| app.data.monitors.window_filter == app.view.filter(Pane::Monitors))
            {
                Some(m) => monitor_row(app, m),
                None => Row::new(vec![Cell::from("…")]).style(t.muted()),
            }
        })
        .collect();
    let widths = [
        Constraint::Length(name_w + 2),
        // The longest kind, `workflow`.
        Constraint::Length(8),
        Constraint::Length(15),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Min(10),
    ];
    let table = Table::new(body, widths)
        .header(header(
            t,
            &[
                "NAME",
                "KIND",
                "STATE",
                "CHECKED",
                "RESP",
                "INCID",
                "TAGS / CAUSE",
            ],
        ))
        .block(block(t, title, true));
    let selected = l.selected.checked_sub(l.offset);
    draw::list_table(frame, area, t, table, 0, selected);
}

/// The state's glyph: filled when fine, hollow when nothing acts on it.
fn glyph(m: &MonitorSummary) -> char {
    if m.intervening {
        return '↻';
    }
    if m.flapping {
        return '≈';
    }
    match m.state {
        MonitorState::Healthy => '●',
        MonitorState::Degraded => '◐',
        MonitorState::Unhealthy => '✗',
        MonitorState::Unknown => '?',
        MonitorState::Blocked => '⊘',
        MonitorState::Maintenance => '◌',
        MonitorState::Paused => '‖',
    }
}

fn state_text(m: &MonitorSummary) -> String {
    let mut s = m.state.to_string();
    if m.intervening {
        s.push_str(" +act");
    } else if m.flapping {
        s.push_str(" ~");
    }
    s
}

fn monitor_row(app: &App, m: &MonitorSummary) -> Row<'static> {
    let t = &app.theme;
    let style = t.monitor_state(m.state, m.flapping, m.intervening);
    let checked = m.last_check.map_or("-".into(), |c| {
        format_duration((app.now - c).to_std().unwrap_or_default())
    });
    let note = match &m.cause {
        Some(c) if m.state != MonitorState::Healthy => c.to_string(),
        _ => m.tags.join(","),
    };
    Row::new(vec![
        Cell::from(Line::from(vec![
            Span::styled(format!("{} ", glyph(m)), style),
            Span::raw(m.name.clone()),
        ])),
        Cell::from(m.kind.clone()),
        Cell::from(Span::styled(state_text(m), style)),
        Cell::from(checked),
        Cell::from(m.last_response.map_or("-".into(), format_duration)),
        Cell::from(m.incident.map_or(String::new(), |i| i.to_string())),
        Cell::from(Span::styled(note, t.muted())),
    ])
}

/// The selected monitor in full: conditions, locations and incident on the left; the
/// response-time sparkline and the last results on the right.
fn draw_detail(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let Some(m) = app.selected_monitor() else {
        return note(
            frame,
            area,
            block(t, "detail", false),
            "loading...".into(),
            t.muted(),
        );
    };
    let title = format!("{} — {}", m.name, state_text(m));
    let d = app
        .data
        .monitors
        .detail
        .as_ref()
        .filter(|d| d.summary.name == m.name);
    let Some(d) = d else {
        let text = if app.data.monitors.running {
            "loading..."
        } else {
            "monitors are not running"
        };
        return note(frame, area, block(t, title, false), text.into(), t.muted());
    };
    let b = block(t, title, false);
    let inner = b.inner(area);
    frame.render_widget(b, area);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(inner);
    frame.render_widget(
        Paragraph::new(left_lines(app, d, t)).wrap(Wrap { trim: true }),
        left,
    );
    let [spark_label, spark, results] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Min(1),
    ])
    .areas(right);
    let known: Vec<u32> = d.series_ms.iter().flatten().copied().collect();
    let label = match (known.iter().min(), known.iter().max()) {
        (Some(lo), Some(hi)) => format!("response, last hour: {lo}–{hi} ms"),
        _ => "response, last hour: none".into(),
    };
    frame.render_widget(Paragraph::new(Line::styled(label, t.muted())), spark_label);
    let data: Vec<Option<u64>> = d.series_ms.iter().map(|v| v.map(u64::from)).collect();
    frame.render_widget(
        Sparkline::default()
            .data(&data)
            .style(t.monitor_state(MonitorState::Healthy, false, false))
            .absent_value_style(t.monitor_state(MonitorState::Unhealthy, false, false))
            .absent_value_symbol("▁"),
        spark,
    );
    let result_lines: Vec<Line> = d
        .results
        .iter()
        .take(results.height as usize)
        .map(|r| {
            let ok = if r.ok {
                Span::styled(
                    "ok   ",
                    t.monitor_state(MonitorState::Healthy, false, false),
                )
            } else {
                Span::styled(
                    "fail ",
                    t.monitor_state(MonitorState::Unhealthy, false, false),
                )
            };
            Line::from(vec![
                Span::styled(app.fmt_time(r.at, "%H:%M:%S "), t.muted()),
                ok,
                Span::raw(format!(
                    "{:>7} ",
                    r.response.map_or("-".into(), format_duration)
                )),
                Span::styled(r.location.clone().unwrap_or_default(), t.muted()),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(result_lines), results);
}

fn left_lines(app: &App, d: &MonitorDetail, t: &Theme) -> Vec<Line<'static>> {
    let good = t.monitor_state(MonitorState::Healthy, false, false);
    let bad = t.monitor_state(MonitorState::Unhealthy, false, false);
    let mut lines: Vec<Line> = d
        .conditions
        .iter()
        .map(|c| {
            let (mark, style) = if c.ok { ("✓ ", good) } else { ("✗ ", bad) };
            Line::from(vec![
                Span::styled(mark, style),
                Span::raw(format!("{}  ", c.condition)),
                Span::styled(format!("saw {}", c.seen), t.muted()),
            ])
        })
        .collect();
    if !d.locations.is_empty() {
        let mut spans = vec![Span::styled("where  ", t.muted())];
        for l in &d.locations {
            let (mark, style) = match l.ok {
                Some(true) => ("✓", good),
                Some(false) => ("✗", bad),
                None => ("?", t.muted()),
            };
            spans.push(Span::styled(format!("{mark} {} ", l.location), style));
        }
        lines.push(Line::from(spans));
    }
    match &d.incident {
        Some(i) => lines.extend(incident_lines(app, i, t)),
        None => lines.push(Line::styled("no open incident", t.muted())),
    }
    lines
}

fn incident_lines(app: &App, i: &Incident, t: &Theme) -> Vec<Line<'static>> {
    let lasted = (i.closed.unwrap_or(app.now) - i.opened)
        .to_std()
        .unwrap_or_default();
    let mut out = vec![Line::from(vec![
        Span::styled(
            format!("incident {} ", i.id),
            t.monitor_state(MonitorState::Unhealthy, false, false),
        ),
        Span::raw(format!("{} for {} ", i.cause, format_duration(lasted))),
        Span::styled("(o opens)", t.muted()),
    ])];
    for a in &i.attempts {
        let style = match a.outcome {
            Outcome::Started => t.monitor_state(MonitorState::Healthy, false, true),
            Outcome::Succeeded => t.ok(),
            Outcome::Failed(_) => t.error(),
            Outcome::Skipped(_) => t.muted(),
        };
        out.push(Line::from(vec![
            Span::styled(app.fmt_time(a.at, "  %H:%M:%S "), t.muted()),
            Span::raw(format!("{}: ", a.action)),
            Span::styled(a.outcome.to_string(), style),
        ]));
    }
    out
}

/// The incidents view: open first, then recent, the selected one's interventions below.
fn draw_incidents(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let Some(all) = app.data.monitors.incidents.as_ref() else {
        let text = app
            .data
            .errors
            .get("incidents")
            .cloned()
            .unwrap_or_else(|| "loading...".into());
        return note(frame, area, block(t, "Incidents", true), text, t.muted());
    };
    let open = all.iter().filter(|i| i.closed.is_none()).count();
    let title = format!(
        "Incidents — {open} open, {} recent (Enter: its monitor · i: monitors)",
        all.len() - open
    );
    if all.is_empty() {
        return note(
            frame,
            area,
            block(t, title, true),
            "no incidents".into(),
            t.muted(),
        );
    }
    let v = &app.view.monitors;
    let rows = draw::table_rows(area);
    let body: Vec<Row> = all
        .iter()
        .skip(v.incident_offset)
        .take(rows)
        .map(|i| {
            let (state, style) = match i.closed {
                None => (
                    "open",
                    t.monitor_state(MonitorState::Unhealthy, false, false),
                ),
                Some(_) => ("closed", t.muted()),
            };
            let lasted = (i.closed.unwrap_or(app.now) - i.opened)
                .to_std()
                .unwrap_or_default();
            let last = i
                .attempts
                .last()
                .map(|a| format!(" · {}: {}", a.action, a.outcome))
                .unwrap_or_default();
            Row::new(vec![
                Cell::from(i.id.to_string()),
                Cell::from(Span::styled(state, style)),
                Cell::from(i.monitor.clone()),
                Cell::from(app.fmt_time(i.opened, "%m-%d %H:%M")),
                Cell::from(format_duration(lasted)),
                Cell::from(format!("{}{last}", i.cause)),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(16),
        Constraint::Length(12),
        Constraint::Length(8),
        Constraint::Min(10),
    ];
    let table = Table::new(body, widths)
        .header(header(
            t,
            &[
                "ID",
                "STATE",
                "MONITOR",
                "OPENED",
                "LASTED",
                "CAUSE · LAST INTERVENTION",
            ],
        ))
        .block(block(t, title, true));
    let selected = v.incident_selected.checked_sub(v.incident_offset);
    draw::list_table(frame, area, t, table, 0, selected);
}
