//! The full-screen console: panes over the engine's state, driven by one key table, talking to
//! the principal only through [`Client`] (embedded or attached makes no difference here).

pub mod ansi;
mod answers;
pub mod app;
pub mod bench;
pub mod dag_view;
pub mod data;
pub mod dialogs;
pub mod draw;
pub mod editor;
pub mod event_loop;
mod fit;
pub mod keymap;
mod keys;
pub mod line_input;
mod log_nav;
pub mod logs;
mod modals;
pub mod panes;
pub mod render;
mod rows;
pub mod service_logs;
mod sync;
pub mod terminal;
pub mod theme;
pub mod view;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::exit::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_TERMINATED, fail};
use crate::principal::bootstrap::{self, Dirs, Found};
use crate::protocol::api::Client;
use crate::protocol::zmq::{self, Endpoints};
use app::{App, AppConfig};
use event_loop::{Ended, LoopOptions};
use theme::Theme;

/// Options of `opsconsole [console]`.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// Theme name (a file in `themes/`).
    pub theme: String,
    /// Directory of theme files.
    pub themes_dir: PathBuf,
    /// Show actions disabled.
    pub read_only: bool,
    /// Agent slots of an embedded principal.
    pub slots: usize,
    /// SIGTERM-to-SIGKILL grace of an embedded principal.
    pub kill_grace: Duration,
    /// Attach to the principal at this endpoint instead of the data dir's.
    pub attach: Option<Attach>,
}

/// A principal on another machine (or another data dir), reached over the network.
#[derive(Debug, Clone)]
pub struct Attach {
    /// Its requests endpoint, e.g. `tcp://127.0.0.1:7400` (events on the next port).
    pub endpoint: String,
    /// `--server-key` and `--key`, for a CURVE endpoint.
    pub curve: Option<(String, PathBuf)>,
}

/// A client of the principal at `attach`, with the read-only reason its role calls for and
/// the header's origin; checked with a status request so that a wrong address or key fails
/// here, with the reason, rather than as an empty console.
async fn attach_client(
    attach: &Attach,
) -> Result<(Arc<dyn Client>, Option<String>, String), String> {
    use crate::protocol::api::{ClientExt, Role};
    let endpoint = &attach.endpoint;
    let endpoints = Endpoints::from_listen(endpoint).map_err(|e| format!("{endpoint}: {e}"))?;
    let client = match &attach.curve {
        Some((server_key, key)) => {
            let security = zmq::keys::client_security(key, server_key)
                .map_err(|e| format!("--server-key/--key: {e}"))?;
            zmq::ZmqClient::connect_curve(&endpoints, bootstrap::REQUEST_TIMEOUT, security).await
        }
        None => zmq::ZmqClient::connect(&endpoints, bootstrap::REQUEST_TIMEOUT).await,
    }
    .map_err(|e| format!("{endpoint}: {e}"))?;
    let status = tokio::time::timeout(bootstrap::PROBE_TIMEOUT, client.status())
        .await
        .map_err(|_| ())
        .and_then(|r| r.map_err(|_| ()))
        .map_err(|()| {
            format!(
                "no principal answers at {endpoint}: check the address, that `opsconsole \
                 principal --listen {endpoint}` runs there, and the keys{}",
                if attach.curve.is_none() {
                    " (a CURVE endpoint answers only --server-key/--key clients)"
                } else {
                    ""
                }
            )
        })?;
    let role = status.role;
    let read_only = (role == Some(Role::Viewer)).then(|| {
        "attached with a viewer's key: it may look but not change anything (an operator's \
         key can)"
            .to_string()
    });
    let origin = match role {
        Some(role) => format!("attached to {endpoint} as {}", role.as_str()),
        None => format!("attached to {endpoint}"),
    };
    Ok((Arc::new(client), read_only, origin))
}

/// Why the console refuses to start without a terminal.
pub const NOT_A_TERMINAL: &str = "the console needs a terminal on stdin and stdout; in scripts use \
     `opsconsole run`, `status`, `history` or `logs` (see `opsconsole --help`)";

/// Runs the console until `q`, SIGTERM or SIGHUP.
///
/// With a principal already running for the data dir the console attaches to it and leaves it
/// running on quit; otherwise it runs an embedded principal (serving other commands on the
/// data dir's socket) and stops it gracefully on quit.
pub async fn console(dirs: &Dirs, opts: ConsoleOptions) -> ExitCode {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return fail(EXIT_INVALID, NOT_A_TERMINAL);
    }
    let no_color = std::env::var_os("NO_COLOR").is_some();
    let (theme, theme_warning) = Theme::resolve(&opts.themes_dir, &opts.theme, no_color);

    let mut role_read_only = None;
    let found = match &opts.attach {
        Some(attach) => match attach_client(attach).await {
            Ok((client, read_only, origin)) => {
                role_read_only = read_only;
                Some((client, origin))
            }
            Err(e) => return fail(EXIT_FAILED, e),
        },
        None => None,
    };
    let (client, embedded, stop_serving, origin): (Arc<dyn Client>, _, _, String) = match found {
        Some((client, origin)) => (client, None, None, origin),
        None => match bootstrap::find_principal(&dirs.data, bootstrap::REQUEST_TIMEOUT).await {
            // Starting an embedded one would fail on the file's lock with a worse message.
            Found::NotAnswering(n) => return fail(EXIT_FAILED, n),
            Found::Running { client: remote, .. } => (
                Arc::new(remote),
                None,
                None,
                format!("attached to {}", dirs.data.display()),
            ),
            Found::Absent => {
                let principal = match bootstrap::start_embedded(
                    dirs,
                    opts.slots,
                    opts.kill_grace,
                    None,
                    false,
                    crate::principal::DEFAULT_AGENT_HEARTBEAT,
                ) {
                    Ok(p) => Arc::new(p),
                    Err(e) => return fail(EXIT_FAILED, e),
                };
                let stop = CancellationToken::new();
                serve_local(dirs, principal.clone(), stop.clone()).await;
                (
                    principal.clone() as Arc<dyn Client>,
                    Some(principal),
                    Some(stop),
                    "embedded".to_string(),
                )
            }
        },
    };

    let config = AppConfig {
        read_only: opts
            .read_only
            .then(|| "the console was started with --read-only".to_string())
            .or(role_read_only),
        owns_principal: embedded.is_some(),
        themes_dir: opts.themes_dir.clone(),
        no_color,
        origin,
        local_time: true,
    };
    let mut app = App::new(config, theme, chrono::Utc::now());
    if let Some(w) = theme_warning {
        app.warn(w);
    }

    let signal_code = Arc::new(AtomicU8::new(EXIT_TERMINATED));
    // Installed before the first frame: a signal that arrives once the screen shows must find
    // the handler (which restores the terminal), not the default action.
    let died = Arc::new(std::sync::Mutex::new(None::<String>));
    let signals = {
        let (embedded, died, code) = (embedded.clone(), died.clone(), signal_code.clone());
        let signals = terminated(signal_code.clone());
        async move {
            let Some(p) = embedded else {
                return signals.await;
            };
            tokio::select! {
                () = signals => {}
                why = p.died() => {
                    code.store(EXIT_FAILED, Ordering::Relaxed);
                    *died.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                }
            }
        }
    };
    let ended = match terminal::Guard::enter() {
        Ok(mut guard) => {
            let input = ratatui::crossterm::event::EventStream::new();
            let r = event_loop::run(
                &mut guard.terminal,
                input,
                client.clone(),
                &mut app,
                signals,
                LoopOptions::default(),
            )
            .await;
            drop(guard);
            r
        }
        Err(e) => Err(e),
    };

    if let Some(p) = &embedded {
        let active = app.active_runs();
        if ended.as_ref().is_ok_and(|e| *e == Ended::Stopped) {
            // Like `opsconsole principal`: a signal leaves runs for the next principal.
            crate::tell!("stopping: active runs resume when opsconsole next starts here...");
            p.shutdown_for_restart().await;
        } else {
            if active > 0 {
                crate::tell!("stopping: cancelling {active} active run(s)...");
            }
            p.shutdown().await;
        }
    }
    if let Some(stop) = stop_serving {
        stop.cancel();
        bootstrap::remove_socket_files(&Endpoints::for_data_dir(&dirs.data));
    }
    if let Some(why) = died.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return fail(
            EXIT_FAILED,
            format!("the principal's engine stopped: {why}"),
        );
    }
    match ended {
        Ok(Ended::Stopped) => ExitCode::from(signal_code.load(Ordering::Relaxed)),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(EXIT_FAILED, format!("console: {e}")),
    }
}

/// Serves other `opsconsole` commands on the data dir's socket while the console runs.
async fn serve_local(dirs: &Dirs, client: Arc<dyn Client>, stop: CancellationToken) {
    let endpoints = Endpoints::for_data_dir(&dirs.data);
    // The store's lock is held, so a socket file left here belongs to a dead process.
    bootstrap::remove_socket_files(&endpoints);
    if let Err(e) = zmq::serve(&endpoints, client, stop).await {
        tracing::warn!("other commands cannot reach this console's principal: {e}");
    }
}

/// Installs handlers for SIGTERM, SIGHUP (the terminal went away) and a SIGINT sent from
/// outside (in raw mode Ctrl-C is a key, not a signal) at once, and returns a future that
/// completes on the first of them, recording the exit code the signal calls for.
fn terminated(code: Arc<AtomicU8>) -> impl Future<Output = ()> {
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match handlers {
            (Ok(mut term), Ok(mut hup), Ok(mut int)) => {
                let c = tokio::select! {
                    _ = term.recv() => EXIT_TERMINATED,
                    _ = hup.recv() => 128 + libc::SIGHUP as u8,
                    _ = int.recv() => EXIT_INTERRUPTED,
                };
                code.store(c, Ordering::Relaxed);
            }
            _ => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod monitor_tests;
#[cfg(test)]
mod tests;
