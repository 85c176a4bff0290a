//! `opsconsole bench console`: the console's real loop on a `TestBackend`, fed with log lines
//! at a fixed rate, then left idle; frame times, CPU under load and CPU while idle.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::app::{App, AppConfig, Purpose};
use super::event_loop::{self, FrameStats, LoopOptions};
use super::logs::PageKind;
use super::theme::Theme;
use crate::protocol::api::{
    BoxFuture, Client, ClientError, QueueReport, Request, Response, RunDetail, StatusReport,
    TaskDetail, WorkflowInfo, WorkflowStatus,
};
use crate::protocol::history::RunSummary;
use crate::protocol::{AttemptKey, Event, LogBatch, LogLine, RunId, RunState, Stream, TaskState};

/// A principal stand-in with fixed answers and an event stream the bench feeds.
pub struct FixedClient {
    events: broadcast::Sender<Event>,
    now: DateTime<Utc>,
}

impl FixedClient {
    /// A client whose answers describe one ended run of `etl` with five tasks.
    pub fn new(now: DateTime<Utc>) -> Self {
        let (events, _) = broadcast::channel(64 * 1024);
        Self { events, now }
    }

    /// Publishes an event to subscribers.
    pub fn publish(&self, ev: Event) {
        let _ = self.events.send(ev);
    }
}

impl Client for FixedClient {
    fn call(&self, request: Request) -> BoxFuture<'_, Result<Response, ClientError>> {
        let now = self.now;
        Box::pin(async move { Ok(fixed_answer(request, now)) })
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

fn summary(now: DateTime<Utc>) -> RunSummary {
    RunSummary {
        run_id: RunId(1),
        workflow: "etl".into(),
        state: RunState::Succeeded,
        created_at: now - chrono::Duration::seconds(30),
        started_at: Some(now - chrono::Duration::seconds(30)),
        ended_at: Some(now - chrono::Duration::seconds(20)),
        duration_secs: Some(10.0),
        failed_tasks: Vec::new(),
        message: None,
        triggered_by: None,
    }
}

fn fixed_answer(request: Request, now: DateTime<Utc>) -> Response {
    match request {
        Request::Status => Response::Status(StatusReport {
            pid: 1,
            started_at: now,
            agent_messages_refused: 0,
            peers_closed: None,
            requests: None,
            slots: 8,
            busy_slots: 0,
            queued_tasks: 0,
            workflows: vec![WorkflowStatus {
                name: "etl".into(),
                schedule: None,
                paused: false,
                next_fires: Vec::new(),
                active_runs: Vec::new(),
            }],
            spec_problems: Vec::new(),
            store_problem: None,
            role: None,
            agents_endpoint: None,
            curve: None,
        }),
        Request::Workflows => Response::Workflows {
            workflows: vec![WorkflowInfo {
                name: "etl".into(),
                description: None,
                file: "etl.yaml".into(),
                params: BTreeMap::new(),
                tasks: Vec::new(),
                schedule: None,
                paused: false,
                next_fires: Vec::new(),
            }],
        },
        Request::History { .. } => Response::Runs {
            runs: vec![summary(now)],
        },
        Request::Queue => Response::Queue(QueueReport {
            held_runs: Vec::new(),
            ready_tasks: Vec::new(),
        }),
        Request::RunDetail { .. } => Response::Run(Box::new(RunDetail {
            summary: summary(now),
            params: Vec::new(),
            tasks: ["extract", "transform", "load", "report", "notify"]
                .iter()
                .enumerate()
                .map(|(i, n)| TaskDetail {
                    name: n.to_string(),
                    depends_on: if i == 0 {
                        Vec::new()
                    } else {
                        vec!["extract".into()]
                    },
                    state: TaskState::Succeeded,
                    attempt: 1,
                    max_attempts: 1,
                    started_at: Some(now),
                    ended_at: Some(now),
                })
                .collect(),
            attempts: Vec::new(),
        })),
        Request::Logs { .. } => Response::Lines {
            lines: Vec::new(),
            more: false,
            first: 0,
        },
        Request::Agents => Response::Agents {
            agents: vec![crate::protocol::agent::AgentStatus {
                info: crate::protocol::agent::AgentInfo {
                    id: crate::protocol::agent::AgentId("local".into()),
                    slots: 8,
                    labels: BTreeMap::from([("local".to_string(), "true".to_string())]),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                },
                address: "local".into(),
                state: crate::protocol::agent::AgentState::Ready,
                busy: 0,
                heartbeat_age_ms: None,
                joined_at: now,
                running: Vec::new(),
                refused: 0,
                key: None,
            }],
        },
        _ => Response::Error(crate::protocol::api::ApiError::new(
            crate::protocol::api::ApiErrorKind::InvalidInput,
            "the bench client only answers reads",
        )),
    }
}

fn cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0.0)
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// A realistic log line: a timestamp-ish prefix, a level, some coloured words.
fn line_text(i: u64) -> String {
    match i % 10 {
        0 => format!(
            "\x1b[33mWARN\x1b[0m request {i} slow: 812ms path=/api/v1/orders?page={}",
            i % 97
        ),
        5 => format!("\x1b[31mERROR\x1b[0m upstream {i} refused connection (retrying in 2s)"),
        _ => format!(
            "INFO handled request {i} in {}ms path=/api/v1/items/{} status=200",
            i % 13,
            i % 1000
        ),
    }
}

/// Runs the bench: `rate` lines/s for `secs`, then `idle_secs` of nothing.
pub async fn console(
    rate: usize,
    secs: f64,
    idle_secs: f64,
    width: u16,
    height: u16,
) -> anyhow::Result<Value> {
    let now = Utc
        .with_ymd_and_hms(2026, 1, 1, 12, 0, 0)
        .single()
        .ok_or_else(|| anyhow::anyhow!("fixed time"))?;
    let client = Arc::new(FixedClient::new(now));
    let dyn_client: Arc<dyn Client> = client.clone();
    let themes_dir = std::path::PathBuf::from("themes");
    let (theme, _) = Theme::resolve(&themes_dir, "dark", false);
    let mut app = App::new(
        AppConfig {
            read_only: None,
            owns_principal: false,
            themes_dir,
            no_color: false,
            origin: "bench".into(),
            local_time: false,
        },
        theme,
        now,
    );
    // Show the logs of run 1 with an empty stored history, so every line comes live.
    for e in app.open_logs(RunId(1), None) {
        if let super::app::Effect::Call(_, Purpose::Logs { generation, .. }) = e {
            app.on_response(
                Purpose::Logs {
                    generation,
                    kind: PageKind::Forward,
                    offset: 0,
                },
                Ok(Response::Lines {
                    lines: Vec::new(),
                    more: false,
                    first: 0,
                }),
            );
        }
    }
    let mut terminal = Terminal::new(TestBackend::new(width, height))?;

    // Load: a feeder publishes a batch every 10 ms.
    let batches_per_s = 100usize;
    let per_batch = (rate / batches_per_s).max(1);
    let total_batches = (secs * batches_per_s as f64).round() as u64;
    let feeder = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(10));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut seq = 0u64;
            for b in 0..total_batches {
                interval.tick().await;
                let lines = (0..per_batch)
                    .map(|_| {
                        seq += 1;
                        LogLine {
                            seq,
                            at: now,
                            text: line_text(seq),
                        }
                    })
                    .collect();
                client.publish(Event::Logs(Arc::new(LogBatch {
                    key: AttemptKey {
                        run_id: RunId(1),
                        task_idx: (b % 3) as usize,
                        task: Arc::from(["extract", "transform", "load"][(b % 3) as usize]),
                        attempt: 1,
                    },
                    stream: if b % 7 == 0 {
                        Stream::Stderr
                    } else {
                        Stream::Stdout
                    },
                    charge: Default::default(),
                    lines,
                })));
            }
            seq
        })
    };
    let mut stats = FrameStats::default();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let stop = async {
        // Stop just after the last batch has been applied and drawn.
        while !feeder.is_finished() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    event_loop::run(
        &mut terminal,
        futures::stream::pending(),
        dyn_client.clone(),
        &mut app,
        stop,
        LoopOptions {
            stats: Some(&mut stats),
            fixed_now: true,
        },
    )
    .await?;
    let load_secs = t0.elapsed().as_secs_f64();
    let load_cpu = cpu_seconds() - cpu0;
    let fed = feeder.await.unwrap_or(0);
    let received = app.data.logs.received;

    // Idle: the same loop with nothing happening; it must arm no timer.
    let cpu1 = cpu_seconds();
    let idle = Duration::from_secs_f64(idle_secs);
    event_loop::run(
        &mut terminal,
        futures::stream::pending(),
        dyn_client,
        &mut app,
        tokio::time::sleep(idle),
        LoopOptions {
            stats: None,
            fixed_now: true,
        },
    )
    .await?;
    let idle_cpu = cpu_seconds() - cpu1;

    // Reference: the visible lines as one plain paragraph, the least a frame can cost.
    let plain: Vec<Line> = app
        .data
        .logs
        .lines()
        .iter()
        .rev()
        .take(height as usize)
        .map(|e| Line::raw(e.text.clone()))
        .collect();
    let mut reference = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        terminal.draw(|f| f.render_widget(Paragraph::new(plain.clone()), f.area()))?;
        reference.push(t.elapsed());
    }
    reference.sort();

    let mut frames = stats.frames;
    frames.sort();
    let mean = |v: &[Duration]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len() as f64 * 1000.0
        }
    };
    let frame_mean = mean(&frames);
    let ref_mean = mean(&reference);
    let p99 = percentile_ms(&frames, 0.99);
    let idle_pct = idle_cpu / idle_secs.max(0.001) * 100.0;
    Ok(json!({
        "bench": "console",
        "terminal": format!("{width}x{height}"),
        "lines_per_s": rate,
        "load_s": round(load_secs, 2),
        "lines_fed": fed,
        "lines_applied": received,
        "frames": frames.len(),
        "fps": round(frames.len() as f64 / load_secs.max(0.001), 1),
        "frame_ms": {
            "mean": round(frame_mean, 3),
            "p99": round(p99, 3),
            "max": round(frames.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0), 3),
        },
        "reference_plain_frame_ms": round(ref_mean, 3),
        "ratio_to_reference": round(if ref_mean > 0.0 { frame_mean / ref_mean } else { 0.0 }, 2),
        "load_cpu_s": round(load_cpu, 3),
        "load_cpu_pct": round(load_cpu / load_secs.max(0.001) * 100.0, 1),
        "idle_s": idle_secs,
        "idle_cpu_s": round(idle_cpu, 4),
        "idle_cpu_pct": round(idle_pct, 3),
        "target_p99_frame_ms": 4.0,
        "target_idle_cpu_pct": 0.5,
        "ok": p99 < 4.0 && idle_pct < 0.5,
    }))
}
