//! The one `select!` loop: terminal input, engine events, answers to requests and a single
//! deadline timer. It redraws only when the state is dirty, at most 60 frames a second, and
//! when nothing changes it arms no timer at all (no CPU while idle).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use ratatui::Terminal;
use ratatui::backend::Backend;
use ratatui::crossterm::event::{Event as TermEvent, KeyEventKind};
use ratatui::layout::{Position, Rect};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::{broadcast::error::RecvError, mpsc};

use super::app::{App, Effect, Purpose};
use super::render;
use crate::protocol::api::{Client, ClientError, Request, Response};

/// Shortest time between two frames (60 frames a second).
pub const FRAME: Duration = Duration::from_micros(16_667);
/// Events are coalesced this long before status, queue and history are fetched again.
const REFRESH_DELAY: Duration = Duration::from_millis(250);
/// How often the state is read again while runs are active, in case events were missed.
const ACTIVE_REFRESH: Duration = Duration::from_secs(2);
/// How often a console attached to a principal it does not own asks whether it still answers.
const PROBE_EVERY: Duration = Duration::from_secs(3);
/// How long such a probe waits for its answer.
const PROBE_PATIENCE: Duration = Duration::from_secs(3);
/// While a pane shows what goes stale with time alone (heartbeat ages, uptimes), it is read
/// this often.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// While runs are active, durations on screen advance this often.
const TICK: Duration = Duration::from_secs(1);
/// Most engine events applied between two looks at the keyboard.
const EVENT_BATCH: usize = 4096;

/// Frame times, for `bench console`.
#[derive(Debug, Default)]
pub struct FrameStats {
    /// Time spent in each draw.
    pub frames: Vec<Duration>,
}

/// Options of [`run`].
#[derive(Default)]
pub struct LoopOptions<'a> {
    /// Record frame times here.
    pub stats: Option<&'a mut FrameStats>,
    /// Keep `app.now` as it is (tests and benchmarks); otherwise it is the wall clock.
    pub fixed_now: bool,
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The user quit.
    Quit,
    /// `stop` fired (SIGTERM, SIGHUP).
    Stopped,
    /// The terminal input ended.
    InputClosed,
}

type Answer = (Purpose, Result<Response, ClientError>);

fn execute(
    effects: Vec<Effect>,
    client: &Arc<dyn Client>,
    tx: &mpsc::UnboundedSender<Answer>,
) -> bool {
    let mut quit = false;
    for e in effects {
        match e {
            Effect::Quit => quit = true,
            Effect::Call(request, purpose) => {
                let client = client.clone();
                let tx = tx.clone();
                // Requests run beside the loop so that a slow answer never freezes the screen.
                tokio::spawn(async move {
                    let r = client.call(request).await;
                    let _ = tx.send((purpose, r));
                });
            }
        }
    }
    quit
}

/// Asks for status with a short deadline of its own: a principal that went away is noticed
/// within seconds, not after the client's long request timeout.
fn probe(client: &Arc<dyn Client>, tx: &mpsc::UnboundedSender<Answer>) {
    let (client, tx) = (client.clone(), tx.clone());
    tokio::spawn(async move {
        let r = tokio::time::timeout(PROBE_PATIENCE, client.call(Request::Status))
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::Unreachable(format!(
                    "the principal did not answer within {}s",
                    PROBE_PATIENCE.as_secs()
                )))
            });
        let _ = tx.send((Purpose::Status, r));
    });
}

/// Runs the console until the user quits, `stop` completes or input ends.
pub async fn run<B, S, F>(
    terminal: &mut Terminal<B>,
    mut input: S,
    client: Arc<dyn Client>,
    app: &mut App,
    stop: F,
    mut opts: LoopOptions<'_>,
) -> io::Result<Ended>
where
    B: Backend,
    S: Stream<Item = io::Result<TermEvent>> + Unpin,
    F: Future<Output = ()>,
{
    tokio::pin!(stop);
    let mut events = client.subscribe();
    let mut events_open = true;
    let (tx, mut rx) = mpsc::unbounded_channel::<Answer>();
    execute(app.refresh_effects(), &client, &tx);
    let mut last_draw: Option<Instant> = None;
    let mut refresh_at: Option<Instant> = None;
    let mut tick_at: Option<Instant> = None;
    let mut probe_at: Option<Instant> = None;
    let mut poll_at: Option<Instant> = None;
    let mut services_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if !app.config.owns_principal && probe_at.is_none() {
            probe_at = Some(now + PROBE_EVERY);
        }
        if app.refresh_wanted && refresh_at.is_none() {
            refresh_at = Some(now + REFRESH_DELAY);
        } else if refresh_at.is_none() && app.active_runs() > 0 {
            // Events can be missed (a subscription takes a moment to reach a remote principal,
            // a slow console lags): while work is active, the state is read again now and then
            // so that nothing stays stale. Idle, nothing is asked.
            refresh_at = Some(now + ACTIVE_REFRESH);
        }
        if !app.services_wanted {
            services_at = None;
        } else if services_at.is_none() {
            // Service events come in bursts (a restart is several): one read after them.
            services_at = Some(now + REFRESH_DELAY);
        }
        if !app.wants_poll() {
            poll_at = None;
        } else if poll_at.is_none() {
            // Just shown: read at once, then every POLL_EVERY.
            poll_at = Some(now);
        }
        if !app.wants_tick() {
            tick_at = None;
        } else if tick_at.is_none() {
            tick_at = Some(now + TICK);
        }
        let mut draw_at = app.dirty.then(|| last_draw.map_or(now, |t| t + FRAME));
        if draw_at.is_some_and(|d| d <= now) {
            if !opts.fixed_now {
                app.now = chrono::Utc::now();
            }
            let t0 = Instant::now();
            let size = terminal
                .size()
                .map_err(|e| io::Error::other(e.to_string()))?;
            app.fit(Rect::from((Position::ORIGIN, size)));
            terminal
                .draw(|f| render::draw(f, app))
                .map_err(|e| io::Error::other(e.to_string()))?;
            if let Some(s) = opts.stats.as_deref_mut() {
                s.frames.push(t0.elapsed());
            }
            app.dirty = false;
            last_draw = Some(t0);
            draw_at = None;
        }
        let wake = [draw_at, refresh_at, tick_at, probe_at, poll_at, services_at]
            .into_iter()
            .flatten()
            .min();
        let sleep = async move {
            match wake {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        let quit = tokio::select! {
            ev = input.next() => match ev {
                Some(Ok(ev)) => on_terminal(app, ev, &client, &tx),
                Some(Err(e)) => return Err(e),
                None => return Ok(Ended::InputClosed),
            },
            ev = events.recv(), if events_open => {
                match ev {
                    Ok(ev) => {
                        app.on_event(ev);
                        for _ in 0..EVENT_BATCH {
                            match events.try_recv() {
                                Ok(ev) => app.on_event(ev),
                                Err(TryRecvError::Lagged(n)) => app.on_lagged(n),
                                Err(_) => break,
                            }
                        }
                    }
                    Err(RecvError::Lagged(n)) => app.on_lagged(n),
                    Err(RecvError::Closed) => events_open = false,
                }
                execute(app.take_outbox(), &client, &tx)
            }
            Some((purpose, result)) = rx.recv() => {
                let effects = app.on_response(purpose, result);
                execute(effects, &client, &tx)
            }
            _ = sleep => {
                let now = Instant::now();
                let mut quit = false;
                if refresh_at.is_some_and(|t| t <= now) {
                    refresh_at = None;
                    quit = execute(app.refresh_effects(), &client, &tx);
                }
                if tick_at.is_some_and(|t| t <= now) {
                    tick_at = None;
                    app.dirty = true;
                }
                if probe_at.is_some_and(|t| t <= now) {
                    probe_at = None;
                    probe(&client, &tx);
                }
                if services_at.is_some_and(|t| t <= now) {
                    services_at = None;
                    quit |= execute(app.services_effects(), &client, &tx);
                }
                if poll_at.is_some_and(|t| t <= now) {
                    poll_at = Some(now + POLL_EVERY);
                    quit |= execute(app.poll_effects(), &client, &tx);
                }
                quit
            }
            _ = &mut stop => return Ok(Ended::Stopped),
        };
        if quit {
            return Ok(Ended::Quit);
        }
    }
}

fn on_terminal(
    app: &mut App,
    ev: TermEvent,
    client: &Arc<dyn Client>,
    tx: &mpsc::UnboundedSender<Answer>,
) -> bool {
    let effects = match ev {
        TermEvent::Key(k) if k.kind != KeyEventKind::Release => app.on_key(k),
        TermEvent::Mouse(m) => app.on_mouse(m),
        TermEvent::Resize(..) => {
            app.dirty = true;
            Vec::new()
        }
        _ => Vec::new(),
    };
    execute(effects, client, tx)
}
