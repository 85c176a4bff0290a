//! Overview: runs queued, running and failed in the last hour, the services up and the
//! supervisors that gave up, agent slots, next scheduled fires and recent failures.

use chrono::Duration;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::pane::PaneDef;
use crate::protocol::RunState;
use crate::protocol::monitor::{Incident, MonitorCounts, MonitorState};
use crate::protocol::service::ServiceState;
use crate::tui::app::{App, Effect};
use crate::tui::draw::{block, note};
use crate::tui::keymap::{Action, Arg, Pane};

/// The overview pane.
pub static PANE: PaneDef = PaneDef {
    pane: Pane::Overview,
    show_help: "overview pane",
    show_arg: Arg::None,
    bindings: &[],
    act,
    fit: super::pane::fit_nothing,
    draw,
    rows: super::pane::no_rows,
};

fn act(app: &mut App, action: Action, _: Option<&str>) -> Option<Vec<Effect>> {
    (action == Action::Enter).then(|| {
        app.view.show(Pane::Runs);
        Vec::new()
    })
}

/// Draws the overview.
fn draw(frame: &mut Frame, area: Rect, app: &App) {
    // The monitors' block shows only where there are monitors, so that a console without
    // them looks as before.
    let monitors = app
        .data
        .monitors
        .counts
        .filter(|c| c.total > 0 && area.height >= 20);
    let open: Vec<&Incident> = app
        .data
        .monitors
        .incidents
        .iter()
        .flatten()
        .filter(|i| i.closed.is_none())
        .take(MONITOR_INCIDENT_LINES)
        .collect();
    let monitors_h = monitors.map_or(0, |_| 3 + open.len().max(1) as u16);
    let [top, mon_area, bottom] = Layout::vertical([
        Constraint::Length(7),
        Constraint::Length(monitors_h),
        Constraint::Min(3),
    ])
    .areas(area);
    if let Some(c) = monitors {
        draw_monitors(frame, mon_area, app, &c, &open);
    }
    let [runs, slots] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(top);
    let [fires, failures] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);
    let t = &app.theme;
    let hour_ago = app.now - Duration::hours(1);
    let count = |s: RunState| app.data.runs.iter().filter(|r| r.state == s).count();
    let failed_hour = app
        .data
        .runs
        .iter()
        .filter(|r| r.state == RunState::Failed && r.ended_at.is_some_and(|e| e >= hour_ago))
        .count();
    let problems = app
        .data
        .status
        .as_ref()
        .map_or(0, |s| s.spec_problems.len());
    let mut lines = vec![
        Line::from(vec![
            Span::raw(format!("{:<25}", "queued")),
            Span::styled(
                count(RunState::Queued).to_string(),
                t.run_state(RunState::Queued),
            ),
        ]),
        Line::from(vec![
            Span::raw(format!("{:<25}", "running")),
            Span::styled(
                count(RunState::Running).to_string(),
                t.run_state(RunState::Running),
            ),
        ]),
        Line::from(vec![
            Span::raw(format!("{:<25}", "failed in the last hour")),
            Span::styled(failed_hour.to_string(), t.run_state(RunState::Failed)),
        ]),
    ];
    if problems > 0 {
        lines.push(Line::styled(
            format!("{problems} problem(s) in workflow files"),
            t.error(),
        ));
    } else {
        let wf = app.data.status.as_ref().map_or(0, |s| s.workflows.len());
        lines.push(Line::styled(format!("{wf} workflow(s) loaded"), t.muted()));
    }
    lines.push(services_line(app));
    frame.render_widget(
        Paragraph::new(lines).block(block(&app.theme, "Runs", true)),
        runs,
    );

    let slots_block = block(&app.theme, "Agent slots", false);
    match &app.data.status {
        Some(s) => {
            let inner = slots_block.inner(slots);
            frame.render_widget(slots_block, slots);
            let [gauge, text] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
            frame.render_widget(super::pane::slots_gauge(&app.theme, s, "busy"), gauge);
            frame.render_widget(
                Paragraph::new(vec![
                    Line::raw(format!("{} free", s.slots.saturating_sub(s.busy_slots))),
                    Line::raw(format!("{} task(s) waiting for a slot", s.queued_tasks)),
                ]),
                text,
            );
        }
        None => note(
            frame,
            slots,
            slots_block,
            app.data
                .errors
                .get("status")
                .cloned()
                .unwrap_or_else(|| "loading...".into()),
            t.muted(),
        ),
    }

    let mut next: Vec<(chrono::DateTime<chrono::Utc>, String, bool)> = app
        .data
        .status
        .iter()
        .flat_map(|s| &s.workflows)
        .filter_map(|w| Some((*w.next_fires.first()?, w.name.clone(), w.paused)))
        .collect();
    next.sort();
    let fire_lines: Vec<Line> = if next.is_empty() {
        vec![Line::styled("no scheduled workflows", t.muted())]
    } else {
        next.iter()
            .map(|(at, name, paused)| {
                let mut spans = vec![
                    Span::styled(app.fmt_time(*at, "%m-%d %H:%M  "), t.muted()),
                    Span::raw(name.clone()),
                ];
                if *paused {
                    spans.push(Span::styled(" (paused)", t.muted()));
                }
                Line::from(spans)
            })
            .collect()
    };
    frame.render_widget(
        Paragraph::new(fire_lines).block(block(&app.theme, "Next scheduled fires", false)),
        fires,
    );

    let fail_lines: Vec<Line> = {
        let failed: Vec<_> = app
            .data
            .runs
            .iter()
            .filter(|r| r.state == RunState::Failed)
            .take(failures.height.saturating_sub(2) as usize)
            .collect();
        if failed.is_empty() {
            vec![Line::styled("no failed runs", t.muted())]
        } else {
            failed
                .iter()
                .map(|r| {
                    // Today's failures by time only: the width goes to the task names.
                    let when = r
                        .ended_at
                        .map(|e| {
                            let fmt = if app.fmt_time(e, "%F") == app.fmt_time(app.now, "%F") {
                                "%H:%M"
                            } else {
                                "%m-%d"
                            };
                            app.fmt_time(e, fmt)
                        })
                        .unwrap_or_default();
                    Line::from(vec![
                        Span::styled(format!("#{:<4}", r.run_id), t.run_state(RunState::Failed)),
                        Span::styled(format!("{when:<6}"), t.muted()),
                        Span::raw(format!("{} ", r.workflow)),
                        Span::styled(r.failed_tasks.join(", "), t.error()),
                    ])
                })
                .collect()
        }
    };
    frame.render_widget(
        Paragraph::new(fail_lines).block(block(&app.theme, "Recent failures (Enter: runs)", false)),
        failures,
    );
}

/// `services 7/8 up · 1 supervisor gave up`, from the last read of the trees.
fn services_line(app: &App) -> Line<'static> {
    let t = &app.theme;
    let Some(nodes) = app.data.services.as_ref() else {
        let why = app.data.errors.get("services").map_or("loading...", |e| e);
        return Line::styled(format!("services: {why}"), t.muted());
    };
    if nodes.is_empty() {
        return Line::styled("no supervisors", t.muted());
    }
    let services = nodes.iter().filter(|n| !n.supervisor).count();
    let up = nodes
        .iter()
        .filter(|n| !n.supervisor && n.state == ServiceState::Running)
        .count();
    let gave_up = nodes
        .iter()
        .filter(|n| n.supervisor && n.state == ServiceState::Failed)
        .count();
    let style = if up == services { t.ok() } else { t.warning() };
    let mut spans = vec![
        Span::raw("services "),
        Span::styled(format!("{up}/{services}"), style),
        Span::raw(" up"),
    ];
    if gave_up > 0 {
        let s = if gave_up == 1 { "" } else { "s" };
        spans.push(Span::styled(
            format!(" · {gave_up} supervisor{s} gave up"),
            t.error(),
        ));
    }
    Line::from(spans)
}

/// Open incidents the Overview lists at most.
const MONITOR_INCIDENT_LINES: usize = 5;

/// Counts per state, coloured, and the open incidents.
fn draw_monitors(frame: &mut Frame, area: Rect, app: &App, c: &MonitorCounts, open: &[&Incident]) {
    let t = &app.theme;
    let mut spans = vec![Span::raw(format!("{} monitors: ", c.total))];
    for s in MonitorState::ALL.iter().filter(|s| c.get(**s) > 0) {
        spans.push(Span::styled(
            format!("{} {s}", c.get(*s)),
            t.monitor_state(*s, false, false),
        ));
        spans.push(Span::raw("  "));
    }
    if c.flapping > 0 {
        spans.push(Span::styled(
            format!("{} flapping  ", c.flapping),
            t.monitor_state(MonitorState::Healthy, true, false),
        ));
    }
    if c.intervening > 0 {
        spans.push(Span::styled(
            format!("{} intervening", c.intervening),
            t.monitor_state(MonitorState::Healthy, false, true),
        ));
    }
    let mut lines = vec![Line::from(spans)];
    if open.is_empty() {
        lines.push(Line::styled("no open incidents", t.muted()));
    }
    for i in open {
        let lasted = (app.now - i.opened).to_std().unwrap_or_default();
        lines.push(Line::from(vec![
            Span::styled(
                format!("{:<6}", i.id.to_string()),
                t.monitor_state(MonitorState::Unhealthy, false, false),
            ),
            Span::raw(format!("{} ", i.monitor)),
            Span::styled(
                format!(
                    "{} for {}",
                    i.cause,
                    crate::humantime::format_duration(lasted)
                ),
                t.muted(),
            ),
        ]));
    }
    let title = format!(
        "Monitors — {} open incident(s) (9: monitors)",
        c.open_incidents
    );
    frame.render_widget(Paragraph::new(lines).block(block(t, title, false)), area);
}
