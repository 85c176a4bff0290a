//! `opsconsole agent`: the executor of the local pool, run for a principal elsewhere.
//!
//! The agent finds the principal's agents socket through `status`, registers with its id,
//! slots and labels, runs what it is assigned, and streams every start, output batch and end
//! as numbered reports. Each report stays in a bounded buffer until the principal says it is
//! stored; after a reconnect the unacknowledged ones are sent again and the principal applies
//! each number once. When the buffer is full the agent stops reading its processes' output,
//! so they wait on their pipes: nothing is dropped.
//!
//! Heartbeats go both ways. Silence from the principal for two heartbeats closes the
//! connection and opens a new one with a fresh identity. Silence longer than the lease means
//! the principal has given this agent's work up and run it elsewhere, so the agent stops it.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::LocalAgent;
use crate::protocol::agent::{
    AgentEvent, AgentId, AgentInfo, AgentLink, FromAgent, Hello, StopCause, ToAgent, WorkId,
};
use crate::protocol::api::ClientExt;
use crate::protocol::zmq::agent_link::AgentConnection;
use crate::protocol::zmq::{Endpoints, ZmqClient};

/// Reports kept until acknowledged, at most; beyond, output waits in the processes' pipes.
const MAX_BUFFERED_REPORTS: usize = 64 * 1024;
/// Bytes of reports kept until acknowledged, at most.
const MAX_BUFFERED_BYTES: usize = 64 * 1024 * 1024;
/// Reports sent in one message, at most.
const REPORTS_PER_MESSAGE: usize = 256;
/// Waiting for a connection, a `status` answer or a welcome.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest pause between attempts to reach the principal.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Settings of `opsconsole agent`.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The principal's requests endpoint (what it was started with: `--listen`).
    pub principal: String,
    /// CURVE (`--server-key`, `--key`), for a CURVE endpoint.
    pub curve: Option<crate::protocol::zmq::keys::CurveSecurity>,
    /// Tasks run at once.
    pub slots: usize,
    /// Labels tasks can ask for (`agent: {gpu: "true"}`).
    pub labels: BTreeMap<String, String>,
    /// The agent's id; `None`: the one kept in `data_dir`, made on first start.
    pub id: Option<String>,
    /// Where the agent keeps its id.
    pub data_dir: PathBuf,
    /// Where tasks run (their relative `cwd` is relative to it).
    pub workdir: PathBuf,
    /// SIGTERM-to-SIGKILL grace of stopped work.
    pub kill_grace: Duration,
}

/// How an agent ended.
#[derive(Debug, thiserror::Error)]
pub enum AgentEnd {
    /// The principal refused it (another version, an id in use by the principal itself).
    #[error("the principal refused this agent: {0}")]
    Refused(String),
    /// The agent's id could not be read or kept.
    #[error("{0}")]
    Id(String),
    /// The principal's address is not usable.
    #[error("--principal {0}")]
    Endpoint(String),
}

/// Why no connection was made.
enum NotConnected {
    /// Try again shortly.
    Retry(String),
    /// The principal refused this agent: do not.
    Refused(String),
}

impl From<String> for NotConnected {
    fn from(why: String) -> Self {
        NotConnected::Retry(why)
    }
}

/// What ended a connection.
enum Ended {
    /// The principal refused this agent.
    Refused(String),
    /// Reconnect.
    Lost(String),
    /// Drained by an operator: exit 0.
    Released(String),
    /// A signal: stop.
    Signal,
}

/// The unacknowledged reports, numbered.
#[derive(Default)]
struct Buffer {
    /// Number of the next report.
    next: u64,
    reports: VecDeque<(u64, AgentEvent, usize)>,
    bytes: usize,
    /// Work the agent stopped on its own (shutting down, or the principal silent past the
    /// lease): its end is reported as [`StopCause::AgentStopped`], so that the principal
    /// retries it rather than taking it as cancelled.
    self_stopped: HashSet<WorkId>,
}

impl Buffer {
    fn push(&mut self, mut event: AgentEvent) -> u64 {
        if let AgentEvent::Finished(end) = &mut event
            && self.self_stopped.remove(&end.id)
            && end.stopped == Some(StopCause::Requested)
        {
            end.stopped = Some(StopCause::AgentStopped);
        }
        let seq = self.next;
        self.next += 1;
        let size = approx_size(&event);
        self.bytes += size;
        self.reports.push_back((seq, event, size));
        seq
    }

    fn ack(&mut self, upto: u64) {
        while let Some((seq, _, size)) = self.reports.front() {
            if *seq > upto {
                break;
            }
            self.bytes -= size;
            self.reports.pop_front();
        }
    }

    fn has_room(&self) -> bool {
        self.reports.len() < MAX_BUFFERED_REPORTS && self.bytes < MAX_BUFFERED_BYTES
    }

    /// Work whose end waits for an acknowledgement.
    fn ended(&self) -> impl Iterator<Item = &WorkId> {
        self.reports.iter().filter_map(|(_, e, _)| match e {
            AgentEvent::Finished(end) => Some(&end.id),
            _ => None,
        })
    }

    /// The reports from `from` on, in messages of at most [`REPORTS_PER_MESSAGE`].
    fn messages_from(&self, from: u64) -> Vec<FromAgent> {
        let pending: Vec<&(u64, AgentEvent, usize)> =
            self.reports.iter().filter(|(s, _, _)| *s >= from).collect();
        pending
            .chunks(REPORTS_PER_MESSAGE)
            .map(|chunk| FromAgent::Reports {
                first: chunk[0].0,
                events: chunk.iter().map(|(_, e, _)| e.clone()).collect(),
            })
            .collect()
    }
}

fn approx_size(event: &AgentEvent) -> usize {
    match event {
        AgentEvent::Output { lines, .. } => {
            lines.iter().map(|l| l.text.len() + 48).sum::<usize>() + 64
        }
        _ => 256,
    }
}

/// Runs the agent until it is released (drained), refused, or stopped by SIGINT/SIGTERM.
pub async fn run(opts: AgentOptions) -> Result<(), AgentEnd> {
    let endpoints = Endpoints::from_listen(&opts.principal).map_err(AgentEnd::Endpoint)?;
    // Two agents on one data dir would be one id twice, each evicting the other's work.
    let _lock = lock_data_dir(&opts.data_dir)?;
    let id = agent_id(opts.id.as_deref(), &opts.data_dir)?;
    let info = AgentInfo {
        id: AgentId(id),
        slots: opts.slots.max(1),
        labels: opts.labels.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let (events_tx, mut events) = mpsc::channel(4096);
    let mut checked = Checked::new();
    let reaper = std::env::current_exe()
        .ok()
        .and_then(|exe| super::reaper::Reaper::start(&exe, opts.kill_grace));
    // It holds one assignment per slot ahead, so that the next one is here when a slot frees
    // up: the principal's commit of its dispatch overlaps running work instead of following it.
    let pool =
        LocalAgent::with_info(info.clone(), opts.workdir.clone(), events_tx, reaper).queueing();
    let mut buffer = Buffer {
        next: 1,
        ..Buffer::default()
    };
    // New on every start: the principal tells a restarted agent from a reconnect by it.
    let instance = fastrand::u64(1..);
    let mut signals = Signals::new();
    let mut last_contact: Option<Instant> = None;
    let mut lease = Duration::from_secs(6);
    let mut retry = Duration::from_millis(100);
    // The last reason for not connecting that was said.
    let mut said: Option<String> = None;
    crate::tell!(
        "agent {} ({} slots) for the principal at {}",
        info.id,
        info.slots,
        opts.principal
    );
    loop {
        // Given up by now: the principal has run this work elsewhere.
        if last_contact.is_some_and(|at| at.elapsed() > lease) {
            stop_all(
                &pool,
                &mut buffer,
                "the principal has not been heard from for longer than the lease",
            );
            last_contact = None;
        }
        // What runs is listed first, then the ends that came while disconnected are buffered:
        // work that ends meanwhile is in one or the other, so the hello lists all it holds
        // (a principal that restarted adopts exactly that).
        let running = pool.running();
        while buffer.has_room() {
            match events.try_recv() {
                Ok(event) => {
                    buffer.push(event);
                }
                Err(_) => break,
            }
        }
        let connected = tokio::select! {
            c = connect(&endpoints, &opts, (&info, pool.queue()), instance, running, &buffer) => c,
            () = signals.next() => {
                shut_down(&pool, &mut buffer).await;
                return Ok(());
            }
        };
        let (mut conn, heartbeat, keep, acked) = match connected {
            Ok(c) => c,
            Err(NotConnected::Refused(why)) => {
                shut_down(&pool, &mut buffer).await;
                return Err(AgentEnd::Refused(why));
            }
            Err(NotConnected::Retry(why)) => {
                tracing::info!("{why}; trying again in {retry:?}");
                // Said at once and then whenever the wait grows, so that an agent pointed at
                // a closed port or another server says what it tries instead of nothing.
                if said.as_deref() != Some(why.as_str()) || retry < MAX_RETRY {
                    crate::tell!(
                        "agent: {why}; trying again in {retry:?} (waits double up to \
                         {MAX_RETRY:?})"
                    );
                    said = Some(why.clone());
                }
                tokio::select! {
                    () = tokio::time::sleep(retry) => {}
                    () = signals.next() => {
                        shut_down(&pool, &mut buffer).await;
                        return Ok(());
                    }
                }
                retry = (retry * 2).min(MAX_RETRY);
                continue;
            }
        };
        retry = Duration::from_millis(100);
        lease = heartbeat * crate::protocol::agent::LEASE_HEARTBEATS;
        last_contact = Some(Instant::now());
        buffer.ack(acked);
        let keep: HashSet<WorkId> = keep.into_iter().collect();
        for work in pool.running() {
            if !keep.contains(&work) {
                tracing::info!(?work, "stopping work the principal gave up");
                pool.stop(&work);
            }
        }
        match serve(
            &mut conn,
            &pool,
            &mut buffer,
            &mut events,
            &mut checked,
            heartbeat,
            &mut last_contact,
            &mut signals,
        )
        .await
        {
            Ended::Lost(why) => {
                tracing::info!("{why}; reconnecting");
            }
            Ended::Released(why) => {
                crate::tell!("agent {}: {why}; exiting", info.id);
                return Ok(());
            }
            Ended::Refused(why) => {
                shut_down(&pool, &mut buffer).await;
                return Err(AgentEnd::Refused(why));
            }
            Ended::Signal => {
                shut_down(&pool, &mut buffer).await;
                // The ends of the stopped work, for the principal (best effort).
                flush(&mut conn, &mut buffer, &mut events).await;
                return Ok(());
            }
        }
    }
}

type Connected = (AgentConnection, Duration, Vec<WorkId>, u64);

/// Finds the agents socket, connects, says hello and waits for the welcome.
async fn connect(
    endpoints: &Endpoints,
    opts: &AgentOptions,
    (info, queue): (&AgentInfo, usize),
    instance: u64,
    running: Vec<WorkId>,
    buffer: &Buffer,
) -> Result<Connected, NotConnected> {
    let client = match &opts.curve {
        Some(curve) => ZmqClient::connect_curve(endpoints, CONNECT_TIMEOUT, curve.clone()).await,
        None => ZmqClient::connect(endpoints, CONNECT_TIMEOUT).await,
    }
    .map_err(|e| NotConnected::Retry(e.to_string()))?;
    // The client's error names what it saw: nothing listening, another protocol version (both
    // versions named), a refusal. A CURVE refusal (an unknown key, a wrong server key) does not
    // heal by retrying.
    let status = client.status().await.map_err(|e| match e {
        crate::protocol::api::ClientError::Unreachable(why)
            if why.contains("refused this client") =>
        {
            NotConnected::Refused(why)
        }
        e => NotConnected::Retry(e.to_string()),
    })?;
    drop(client);
    let Some(at) = status.agents_endpoint else {
        return Err(NotConnected::Refused(format!(
            "the principal at {} takes no agents (a console's embedded principal); run \
             `opsconsole principal --listen {}` there",
            opts.principal, opts.principal
        )));
    };
    let mut conn = AgentConnection::connect_secure(&at, opts.curve.clone(), CONNECT_TIMEOUT)
        .await
        .map_err(|e| match e {
            crate::protocol::zmq::agent_link::LinkError::Refused(why) => NotConnected::Refused(why),
            e => NotConnected::Retry(e.to_string()),
        })?;
    let hello = FromAgent::Hello(Hello {
        info: info.clone(),
        host: host_name(),
        pid: std::process::id(),
        running: holding(running, buffer),
        instance,
        next_report: buffer
            .reports
            .front()
            .map_or(buffer.next, |(seq, _, _)| *seq),
        queue,
        checks: crate::protocol::batch::CHECKS_VERSION,
    });
    conn.send(&hello)
        .await
        .map_err(|e| NotConnected::Retry(e.to_string()))?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        let message = tokio::time::timeout_at(deadline, conn.recv())
            .await
            .map_err(|_| {
                NotConnected::Retry(format!(
                    "the principal at {at} did not welcome this agent in time"
                ))
            })?
            .map_err(|e| NotConnected::Retry(e.to_string()))?;
        match message {
            ToAgent::Welcome {
                heartbeat,
                keep,
                acked,
            } => {
                let heartbeat = heartbeat.clamp(Duration::from_millis(20), Duration::from_secs(60));
                return Ok((conn, heartbeat, keep, acked));
            }
            ToAgent::Refused { reason } => return Err(NotConnected::Refused(reason)),
            _ => {}
        }
    }
}

/// Work this agent runs (`running`), or whose end waits for an acknowledgement: what it still
/// holds.
fn holding(mut running: Vec<WorkId>, buffer: &Buffer) -> Vec<WorkId> {
    for id in buffer.ended() {
        if !running.contains(id) {
            running.push(id.clone());
        }
    }
    running
}

/// Results of batches of checks on their way to the principal. They are not numbered reports
/// (see [`crate::protocol::batch`]): while disconnected they wait in this bounded channel (the
/// batches' tasks wait on it in turn), and a message whose send failed goes first on the next
/// connection; the principal drops what comes after it gave the batch up.
struct Checked {
    tx: mpsc::Sender<crate::protocol::batch::CheckResults>,
    rx: mpsc::Receiver<crate::protocol::batch::CheckResults>,
    held: Option<FromAgent>,
}

/// Messages of check results waiting to be sent, at most (each at most about
/// [`crate::protocol::batch::MAX_CHUNK_BYTES`]).
const CHECKED_QUEUE: usize = 16;

impl Checked {
    fn new() -> Self {
        let (tx, rx) = mpsc::channel(CHECKED_QUEUE);
        Self { tx, rx, held: None }
    }
}

/// Serves one connection until it goes quiet, the agent is released, or a signal comes.
#[allow(clippy::too_many_arguments)]
async fn serve(
    conn: &mut AgentConnection,
    pool: &LocalAgent,
    buffer: &mut Buffer,
    events: &mut mpsc::Receiver<AgentEvent>,
    checked: &mut Checked,
    heartbeat: Duration,
    last_contact: &mut Option<Instant>,
    signals: &mut Signals,
) -> Ended {
    // Everything not yet acknowledged goes (again) first.
    for message in buffer.messages_from(0) {
        if let Err(e) = conn.send(&message).await {
            return Ended::Lost(e.to_string());
        }
    }
    if let Some(message) = checked.held.take()
        && let Err(e) = conn.send(&message).await
    {
        checked.held = Some(message);
        return Ended::Lost(e.to_string());
    }
    let mut beat = tokio::time::interval(heartbeat);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = conn.recv() => {
                let message = match message {
                    Ok(m) => m,
                    Err(e) => return Ended::Lost(e.to_string()),
                };
                *last_contact = Some(Instant::now());
                match message {
                    ToAgent::Assign { job, .. } => pool.assign(job),
                    ToAgent::Stop { id } => pool.stop(&id),
                    ToAgent::Ack { upto } => buffer.ack(upto),
                    ToAgent::Resend { from } => {
                        // Reports from `from` on never reached the principal: again, in order.
                        for message in buffer.messages_from(from) {
                            if let Err(e) = conn.send(&message).await {
                                return Ended::Lost(e.to_string());
                            }
                        }
                    }
                    ToAgent::Checks(batch) => {
                        let id = batch.id;
                        if !pool.run_checks(batch, checked.tx.clone()) {
                            tracing::warn!("{id} not run: too many batches run here already");
                        }
                    }
                    ToAgent::Heartbeat | ToAgent::Welcome { .. } => {}
                    ToAgent::Refused { reason } => return Ended::Refused(reason),
                    ToAgent::Release { reason } => return Ended::Released(reason),
                }
            }
            Some(event) = events.recv(), if buffer.has_room() => {
                let first = buffer.push(event);
                while buffer.has_room() && buffer.next - first < REPORTS_PER_MESSAGE as u64 {
                    match events.try_recv() {
                        Ok(event) => { buffer.push(event); }
                        Err(_) => break,
                    }
                }
                for message in buffer.messages_from(first) {
                    if let Err(e) = conn.send(&message).await {
                        return Ended::Lost(e.to_string());
                    }
                }
            }
            Some(results) = checked.rx.recv() => {
                let message = FromAgent::Checked(results);
                if let Err(e) = conn.send(&message).await {
                    checked.held = Some(message);
                    return Ended::Lost(e.to_string());
                }
            }
            _ = beat.tick() => {
                if last_contact.is_some_and(|at| at.elapsed() > heartbeat * 2) {
                    return Ended::Lost("the principal missed two heartbeats".into());
                }
                // Reports not yet read from the pool's channel are covered by the principal's
                // grace of one heartbeat.
                let running = Some(holding(pool.running(), buffer));
                if let Err(e) = conn.send(&FromAgent::Heartbeat { running }).await {
                    return Ended::Lost(e.to_string());
                }
            }
            () = signals.next() => return Ended::Signal,
        }
    }
}

/// Stops every piece of work on the agent's own account, saying why in the log.
fn stop_all(pool: &LocalAgent, buffer: &mut Buffer, why: &str) {
    let running = pool.running();
    if !running.is_empty() {
        crate::tell!("agent: stopping {} piece(s) of work: {why}", running.len());
    }
    for work in running {
        buffer.self_stopped.insert(work.clone());
        pool.stop(&work);
    }
}

/// Stops the work and waits (within its grace) for it to end.
async fn shut_down(pool: &LocalAgent, buffer: &mut Buffer) {
    stop_all(pool, buffer, "the agent is stopping");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pool.running().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends what is buffered and waits a moment for the acknowledgements.
async fn flush(
    conn: &mut AgentConnection,
    buffer: &mut Buffer,
    events: &mut mpsc::Receiver<AgentEvent>,
) {
    while let Ok(event) = events.try_recv() {
        buffer.push(event);
    }
    for message in buffer.messages_from(0) {
        if conn.send(&message).await.is_err() {
            return;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while !buffer.reports.is_empty() {
        match tokio::time::timeout_at(deadline, conn.recv()).await {
            Ok(Ok(ToAgent::Ack { upto })) => buffer.ack(upto),
            Ok(Ok(_)) => {}
            _ => break,
        }
    }
    if !buffer.reports.is_empty() {
        crate::tell!(
            "agent: {} report(s) were not acknowledged before exit; the principal re-runs \
             that work",
            buffer.reports.len()
        );
    }
}

/// SIGINT and SIGTERM, as one stream.
struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    async fn next(&mut self) {
        let int = async {
            match &mut self.int {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        let term = async {
            match &mut self.term {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = int => {}
            () = term => {}
        }
    }
}

/// Holds `data_dir/agent.lock` for as long as the agent runs; fails, naming the holder, when
/// another agent already does.
fn lock_data_dir(data_dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, AgentEnd> {
    use std::io::{Read, Seek, Write};
    let path = data_dir.join("agent.lock");
    let file = std::fs::create_dir_all(data_dir)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
        })
        .map_err(|e| AgentEnd::Id(format!("cannot open {}: {e}", path.display())))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            let _ = lock.set_len(0);
            let _ = lock.seek(std::io::SeekFrom::Start(0));
            let _ = write!(lock, "{}", std::process::id());
            Ok(lock)
        }
        Err((mut file, _)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            Err(AgentEnd::Id(format!(
                "another agent (pid {}) runs with the data dir {}; give this one its own \
                 --data-dir",
                pid.trim(),
                data_dir.display()
            )))
        }
    }
}

/// This machine's name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// The agent's id: `given`, or the one kept in `data_dir/agent-id`, made (host name and a
/// random suffix) and kept on first start, so that the agent is the same one after a restart.
fn agent_id(given: Option<&str>, data_dir: &Path) -> Result<String, AgentEnd> {
    let valid = |id: &str| {
        !id.is_empty()
            && id.len() <= 128
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    if let Some(id) = given {
        return if valid(id) && id != "local" {
            Ok(id.to_string())
        } else {
            Err(AgentEnd::Id(format!(
                "--id `{id}`: an agent id is 1 to 128 letters, digits, `-`, `_` or `.`, and not \
                 `local` (the principal's own pool)"
            )))
        };
    }
    let file = data_dir.join("agent-id");
    match std::fs::read_to_string(&file) {
        Ok(text) if valid(text.trim()) => return Ok(text.trim().to_string()),
        Ok(_) => {
            return Err(AgentEnd::Id(format!(
                "{} does not hold a valid agent id; remove it (a new id is made) or pass --id",
                file.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(AgentEnd::Id(format!("cannot read {}: {e}", file.display()))),
    }
    let host: String = host_name()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    let id = format!("{host}-{:08x}", fastrand::u32(..));
    let tmp = data_dir.join(".agent-id.tmp");
    std::fs::create_dir_all(data_dir)
        .and_then(|()| std::fs::write(&tmp, &id))
        .and_then(|()| std::fs::rename(&tmp, &file))
        .map_err(|e| {
            AgentEnd::Id(format!(
                "cannot keep the agent id in {}: {e}",
                file.display()
            ))
        })?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::agent::{Exit, WorkEnd};
    use crate::protocol::{AttemptKey, RunId};

    fn end(n: u32) -> AgentEvent {
        AgentEvent::Finished(WorkEnd {
            id: WorkId::Task(AttemptKey {
                run_id: RunId(1),
                task_idx: 0,
                task: "t".into(),
                attempt: n,
            }),
            started_at: chrono::Utc::now(),
            ended_at: chrono::Utc::now(),
            exit: Exit::Code(0),
            stopped: None,
            output: None,
        })
    }

    #[test]
    fn reports_stay_until_acknowledged_and_go_again_in_order() {
        let mut b = Buffer {
            next: 1,
            ..Buffer::default()
        };
        for n in 1..=600 {
            b.push(end(n));
        }
        let messages = b.messages_from(0);
        assert_eq!(messages.len(), 3, "256 + 256 + 88");
        assert!(
            matches!(&messages[1], FromAgent::Reports { first: 257, events } if events.len() == 256)
        );
        b.ack(500);
        assert_eq!(b.reports.len(), 100);
        assert!(matches!(
            &b.messages_from(0)[0],
            FromAgent::Reports { first: 501, .. }
        ));
        assert_eq!(
            b.ended().count(),
            100,
            "their ends are still the agent's to report"
        );
        b.ack(600);
        assert!(b.reports.is_empty() && b.bytes == 0);
    }

    #[test]
    fn an_agent_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = agent_id(None, dir.path()).expect("made");
        assert_eq!(agent_id(None, dir.path()).expect("read"), first);
        assert!(agent_id(Some("local"), dir.path()).is_err());
        assert!(agent_id(Some("a b"), dir.path()).is_err());
        assert_eq!(agent_id(Some("gpu-1"), dir.path()).expect("given"), "gpu-1");
    }
}
