//! The monitor requests: lists and incidents read from the board at once (a large filtered
//! list off the actor), detail and control asked of the monitor actor without waiting on it.

use tokio::sync::oneshot;

use super::Engine;
use crate::principal::monitoring::ping_url::SharedPingUrls;
use crate::protocol::api::{ApiError, ApiErrorKind, MAX_MONITOR_PAGE, MAX_PING_MESSAGE, Response};
use crate::protocol::board::MonitorLink;
use crate::protocol::monitor::{MonitorAction, MonitorFilter};

/// Boards smaller than this are read on the actor; larger filtered reads go to a blocking
/// thread, so that a million-row scan never holds the engine up.
const SCAN_ON_ACTOR: usize = 20_000;

impl Engine {
    /// Lets the engine answer monitor requests from `link` (idle until a monitor actor runs).
    pub(crate) fn set_monitors(&mut self, link: MonitorLink) {
        self.monitors = link;
    }

    /// `monitors`: a page of those `filter` keeps, with the counts.
    pub(super) fn on_monitors(
        &self,
        filter: MonitorFilter,
        offset: usize,
        limit: usize,
        reply: oneshot::Sender<Response>,
    ) {
        let link = self.monitors.clone();
        let limit = limit.min(MAX_MONITOR_PAGE);
        let cheap = filter.is_empty() || self.monitors.read().len() < SCAN_ON_ACTOR;
        let read = move || {
            let running = link.running();
            let mut page = link.read().page(&filter, offset, limit);
            page.running = running;
            Response::Monitors(page)
        };
        if cheap {
            let _ = reply.send(read());
        } else {
            tokio::task::spawn_blocking(move || {
                let _ = reply.send(read());
            });
        }
    }

    /// `incidents`: open first, then recent.
    pub(super) fn on_incidents(
        &self,
        open_only: bool,
        limit: usize,
        reply: oneshot::Sender<Response>,
    ) {
        let incidents = self
            .monitors
            .read()
            .incidents(open_only, limit.min(MAX_MONITOR_PAGE));
        let _ = reply.send(Response::Incidents { incidents });
    }

    /// `monitor NAME`: asked of the monitor actor; answered when it answers.
    pub(super) fn on_monitor_detail(&self, name: String, reply: oneshot::Sender<Response>) {
        let link = self.monitors.clone();
        if let Some(refusal) = refuse(&link, &name) {
            let _ = reply.send(refusal);
            return;
        }
        tokio::spawn(async move {
            let _ = reply.send(match link.detail(name).await {
                Ok(d) => Response::Monitor(Box::new(d)),
                Err(e) => Response::Error(e),
            });
        });
    }

    /// `monitor pause|resume|check NAME`: asked of the monitor actor.
    pub(super) fn on_monitor_control(
        &self,
        name: String,
        action: MonitorAction,
        reply: oneshot::Sender<Response>,
    ) {
        let link = self.monitors.clone();
        if let Some(refusal) = refuse(&link, &name) {
            let _ = reply.send(refusal);
            return;
        }
        tokio::spawn(async move {
            let _ = reply.send(match link.control(name, action).await {
                Ok(monitor) => Response::MonitorControlled { action, monitor },
                Err(e) => Response::Error(e),
            });
        });
    }
}

impl Engine {
    /// Lets `ping_url` requests answer from `urls` (set once the ping listener is up).
    pub(crate) fn set_ping_urls(&mut self, urls: SharedPingUrls) {
        self.ping_urls = urls;
    }

    /// `ping NAME [--fail]`: a push monitor's job reports in; refused at once for an unknown
    /// monitor or one of another kind, else asked of the monitor actor.
    pub(super) fn on_ping(
        &self,
        name: String,
        ok: bool,
        message: Option<String>,
        reply: oneshot::Sender<Response>,
    ) {
        let link = self.monitors.clone();
        if let Some(refusal) = refuse(&link, &name).or_else(|| not_push(&link, &name)) {
            let _ = reply.send(refusal);
            return;
        }
        let message =
            message.map(|m| crate::protocol::prefix_within(&m, MAX_PING_MESSAGE).to_string());
        tokio::spawn(async move {
            let _ = reply.send(match link.ping(name, ok, message).await {
                Ok(monitor) => Response::Pinged { monitor },
                Err(e) => Response::Error(e),
            });
        });
    }

    /// `ping_url NAME`: the push monitor's ping URL, when the principal listens for pings.
    pub(super) fn on_ping_url(&self, name: String, reply: oneshot::Sender<Response>) {
        let link = &self.monitors;
        if let Some(refusal) = refuse(link, &name).or_else(|| not_push(link, &name)) {
            let _ = reply.send(refusal);
            return;
        }
        let _ = reply.send(match self.ping_urls.get() {
            Some(urls) => Response::PingUrl {
                url: urls.url(&name),
                name,
                refused: urls
                    .counts
                    .refused
                    .load(std::sync::atomic::Ordering::Relaxed),
            },
            None => Response::Error(ApiError::new(
                ApiErrorKind::Unavailable,
                "this principal has no ping URLs: start it with `opsconsole principal \
                 --ping-listen 127.0.0.1:PORT`; `opsconsole ping NAME` works without",
            )),
        });
    }
}

/// The refusal of a ping for `name` when it is not a push monitor.
fn not_push(link: &MonitorLink, name: &str) -> Option<Response> {
    let kind = link.read().get(name)?.kind;
    (kind != "push").then(|| {
        Response::Error(ApiError::new(
            ApiErrorKind::InvalidInput,
            format!(
                "monitor `{name}` is a {kind} monitor, not a push monitor: only `check: {{ push: \
                 ... }}` monitors take pings"
            ),
        ))
    })
}

/// Why a request about `name` cannot be served, when it cannot: no actor, or no such monitor.
fn refuse(link: &MonitorLink, name: &str) -> Option<Response> {
    if !link.running() {
        return Some(Response::Error(ApiError::new(
            ApiErrorKind::Unavailable,
            "monitors are not running",
        )));
    }
    if link.read().id(name).is_some() {
        return None;
    }
    Some(Response::Error(ApiError::new(
        ApiErrorKind::NotFound,
        format!("no monitor named `{name}`: `opsconsole monitors` lists them"),
    )))
}
