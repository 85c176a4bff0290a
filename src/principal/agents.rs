//! The agents the principal hands work to, each with its free capacity and state, which agent
//! runs which piece of work, and, for remote agents, their leases and which of their reports
//! are applied and stored. The principal reaches agents only through [`AgentLink`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use crate::protocol::agent::{
    AgentId, AgentInfo, AgentLink, AgentState, AgentStatus, Assignment, Hello, ToAgent, WorkId,
};

pub use crate::protocol::agent::LEASE_HEARTBEATS;

/// Lost or drained agents remembered for the Agents pane; the oldest are forgotten first.
const MAX_GONE_AGENTS: usize = 256;

/// The principal's side of a remote agent: sends go to the agents socket, which knows the
/// agent's latest connection.
struct RemoteLink {
    info: AgentInfo,
    outbox: UnboundedSender<(AgentId, ToAgent)>,
    lease: Duration,
}

impl RemoteLink {
    fn send(&self, message: ToAgent) {
        // The socket task stops only with the principal.
        let _ = self.outbox.send((self.info.id.clone(), message));
    }
}

impl AgentLink for RemoteLink {
    fn info(&self) -> &AgentInfo {
        &self.info
    }

    fn assign(&self, job: Assignment) {
        self.send(ToAgent::Assign {
            job,
            lease: self.lease,
        });
    }

    fn stop(&self, id: &WorkId) {
        self.send(ToAgent::Stop { id: id.clone() });
    }

    fn run_checks(
        &self,
        batch: crate::protocol::batch::CheckBatch,
        _results: tokio::sync::mpsc::Sender<crate::protocol::batch::CheckResults>,
    ) -> bool {
        // Its results come back over its connection, as `FromAgent::Checked`.
        self.send(ToAgent::Checks(batch));
        true
    }
}

/// What only a remote agent has: where it runs, when it was last heard, its reports.
struct Remote {
    outbox: UnboundedSender<(AgentId, ToAgent)>,
    host: String,
    address: String,
    last_heard: Instant,
    /// Reports up to this number have been applied.
    applied: u64,
    /// Applied reports waiting for the store: (report number, events emitted after it).
    unstored: VecDeque<(u64, u64)>,
    /// Which start of the agent process this is (see [`Hello::instance`]).
    instance: u64,
    /// Its process id, as it said.
    pid: u32,
    /// Messages and reports from it that were refused.
    refused: u64,
    /// Work given up on it lately (it was lost, or no longer listed): its late end and the
    /// output it printed are still its own to report.
    given_up: VecDeque<WorkId>,
    /// The report number a resend was last asked from (see [`Agents::ask_resend`]).
    resend_asked: Option<u64>,
    /// The name of the CURVE key of its latest welcomed connection.
    key: Option<String>,
    /// The version of check batches it runs (0: none), as its latest hello said.
    checks: u32,
}

/// Work given up per agent that is remembered as its own, at most.
const MAX_GIVEN_UP: usize = 1024;

impl Remote {
    fn send(&self, id: &AgentId, message: ToAgent) {
        // The socket task stops only with the principal.
        let _ = self.outbox.send((id.clone(), message));
    }
}

/// One agent and what it has free.
struct Agent {
    link: Box<dyn AgentLink>,
    /// Work that takes a slot placed on it: running, or held in its queue.
    used: usize,
    /// Assignments it holds beyond its slots until a slot frees up (a remote agent that
    /// said so in its hello): sent ahead, they start without waiting for their dispatch's
    /// commit after an end.
    ahead: usize,
    state: AgentState,
    remote: Option<Remote>,
    joined_at: DateTime<Utc>,
}

impl Agent {
    /// How much more work that takes a slot it can be given now: into a free slot, or into
    /// its queue.
    fn free(&self) -> usize {
        let capacity = self.link.info().slots.saturating_add(self.ahead);
        capacity.saturating_sub(self.used)
    }

    /// Its slots that nothing placed there uses.
    fn free_slots(&self) -> usize {
        self.link.info().slots.saturating_sub(self.used)
    }
}

/// Where a piece of work runs.
#[derive(Debug, Clone)]
struct Placement {
    agent: AgentId,
    takes_slot: bool,
    /// The principal has given it up (the agent said it still ran it after a restart or a
    /// loss): it holds its slot until it ends, and its end is late.
    stale: bool,
    since: DateTime<Utc>,
    /// Heartbeats in a row that did not list it (a remote agent's work).
    missing: u8,
    /// The agent has been sent it. A task is placed first and sent only once its dispatch
    /// is durable; until then the agent cannot list it, and it is not missing.
    told: bool,
    /// Placed by a previous principal on this instance of the agent, which has not come
    /// back yet: it is adopted if that instance lists it when it says hello.
    adopting: Option<u64>,
}

impl Placement {
    /// Work placed now on `agent`.
    fn new(agent: AgentId, takes_slot: bool, told: bool) -> Self {
        Self {
            agent,
            takes_slot,
            stale: false,
            since: Utc::now(),
            missing: 0,
            told,
            adopting: None,
        }
    }
}

/// Why a piece of work was not placed.
#[derive(Debug)]
pub(super) enum Unplaced {
    /// Agents that may take it are all busy.
    Busy,
    /// No connected agent that takes work has the labels it asks for.
    NoMatch,
}

/// How the end of a piece of work counts.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// It was placed there and is over now.
    Applied,
    /// It was not (or no longer) that agent's: the principal gave it up, or never gave it.
    Late,
}

/// Work given up because its agent went silent or no longer has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GivenUp {
    pub id: WorkId,
    pub since: DateTime<Utc>,
}

/// What a (re)registration changed.
#[derive(Debug, Default)]
pub(super) struct Joined {
    /// Work the principal still counts as the agent's.
    pub keep: Vec<WorkId>,
    /// Work placed there that the agent no longer has: lost.
    pub lost: Vec<GivenUp>,
    /// Work a previous principal placed there that this instance does not hold: it never
    /// ran there (or the agent is another process now), so it is run again, not lost.
    pub unclaimed: Vec<GivenUp>,
    /// Reports up to this number were applied already.
    pub acked: u64,
    /// It was known before (a reconnect).
    pub again: bool,
    /// It is a new start of the agent process (another instance than before).
    pub restarted: bool,
}

/// Why a batch of reports was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BadReports {
    /// Numbers start at 1 and must not overflow.
    OutOfRange,
    /// The batch starts past the next number expected: reports in between were never seen.
    Gap {
        /// The number expected next.
        expected: u64,
    },
}

impl std::fmt::Display for BadReports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OutOfRange => f.write_str("report numbers out of range"),
            Self::Gap { expected } => write!(f, "report numbers jump past {expected}"),
        }
    }
}

/// Every agent; the in-process pool is one of them.
pub(super) struct Agents {
    agents: Vec<Agent>,
    placed: HashMap<WorkId, Placement>,
    heartbeat: Duration,
    /// Messages refused from agents, all together (also those from no known agent).
    refused: u64,
}

impl Agents {
    /// No agents yet; remote ones heartbeat every `heartbeat`.
    pub fn new(heartbeat: Duration) -> Self {
        Self {
            agents: Vec::new(),
            placed: HashMap::new(),
            heartbeat,
            refused: 0,
        }
    }

    /// How often remote agents and the principal say they are still there.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat
    }

    /// How long a silent agent keeps its work.
    pub fn lease(&self) -> Duration {
        self.heartbeat * LEASE_HEARTBEATS
    }

    /// Adds an in-process agent with all of its slots free.
    pub fn add(&mut self, link: Box<dyn AgentLink>) {
        self.agents.push(Agent {
            link,
            used: 0,
            ahead: 0,
            state: AgentState::Ready,
            remote: None,
            joined_at: Utc::now(),
        });
    }

    fn index(&self, id: &AgentId) -> Option<usize> {
        self.agents.iter().position(|a| &a.link.info().id == id)
    }

    /// Whether `id` is a remote agent (connected or not).
    pub fn is_remote(&self, id: &AgentId) -> bool {
        self.index(id)
            .is_some_and(|i| self.agents[i].remote.is_some())
    }

    /// Whether `id` is a connected remote agent (not lost, not let go).
    pub fn is_connected_remote(&self, id: &AgentId) -> bool {
        self.index(id).is_some_and(|i| {
            let a = &self.agents[i];
            a.remote.is_some() && !a.state.is_gone()
        })
    }

    /// Records the name of the CURVE key a welcomed agent connected with (the transport's, not
    /// the agent's word).
    pub fn set_key(&mut self, id: &AgentId, key: Option<String>) {
        if let Some(remote) = self.index(id).and_then(|i| self.agents[i].remote.as_mut()) {
            remote.key = key;
        }
    }

    /// Registers a remote agent, or takes it back after a reconnect: work placed there that
    /// it still has stays its own, work it no longer has is lost, and work it has that the
    /// principal gave up holds a slot until it ends. An id of an in-process agent is refused.
    ///
    /// Another start of the agent process (another instance) while the previous one is still
    /// connected (`previous_open`) and heard from is a second agent under one id: refused.
    pub fn hello(
        &mut self,
        hello: Hello,
        outbox: UnboundedSender<(AgentId, ToAgent)>,
        previous_open: bool,
    ) -> Result<Joined, String> {
        hello.check()?;
        let id = hello.info.id.clone();
        let ahead = hello.queue.min(hello.info.slots.max(1));
        let link = Box::new(RemoteLink {
            info: AgentInfo {
                slots: hello.info.slots.max(1),
                ..hello.info
            },
            outbox: outbox.clone(),
            lease: self.lease(),
        });
        let address = format!("{} (pid {})", hello.host, hello.pid);
        let mut joined = Joined::default();
        let i = match self.index(&id) {
            Some(i) if self.agents[i].remote.is_none() => {
                return Err(format!(
                    "the agent id `{id}` is the in-process pool's; give this agent another --id"
                ));
            }
            Some(i) => {
                let a = &self.agents[i];
                let alive = !a.state.is_gone();
                let remote = a.remote.as_ref().expect("checked above");
                if alive && remote.host != hello.host {
                    return Err(format!(
                        "the agent id `{id}` is in use by the agent at {}; give this one \
                         another --id",
                        remote.address
                    ));
                }
                let restarted = remote.instance != hello.instance;
                let heard_lately = remote.last_heard.elapsed() < self.heartbeat * 2;
                if alive && restarted && previous_open && heard_lately {
                    return Err(format!(
                        "the agent id `{id}` is in use by another agent process (pid {}) on {}, \
                         still connected and heard from; give this one another --id (or stop \
                         that one first)",
                        remote.pid, remote.host
                    ));
                }
                joined.again = true;
                joined.restarted = restarted;
                let a = &mut self.agents[i];
                a.link = link;
                a.ahead = ahead;
                if a.state.is_gone() {
                    a.state = AgentState::Ready;
                    a.joined_at = Utc::now();
                }
                let remote = a.remote.as_mut().expect("checked above");
                remote.outbox = outbox;
                remote.host = hello.host.clone();
                remote.address = address;
                remote.last_heard = Instant::now();
                remote.pid = hello.pid;
                remote.checks = hello.checks;
                if restarted {
                    // A new process numbers its reports afresh.
                    remote.instance = hello.instance;
                    remote.applied = hello.next_report.saturating_sub(1);
                    remote.unstored.clear();
                }
                joined.acked = remote.applied;
                i
            }
            None => {
                self.prune_gone();
                self.agents.push(Agent {
                    link,
                    used: 0,
                    ahead,
                    state: AgentState::Ready,
                    remote: Some(Remote {
                        outbox,
                        host: hello.host.clone(),
                        address,
                        last_heard: Instant::now(),
                        // Not known (a new agent, or this principal restarted): its numbering
                        // goes on from the first report it still holds.
                        applied: hello.next_report.saturating_sub(1),
                        unstored: VecDeque::new(),
                        instance: hello.instance,
                        pid: hello.pid,
                        refused: 0,
                        given_up: VecDeque::new(),
                        resend_asked: None,
                        key: None,
                        checks: hello.checks,
                    }),
                    joined_at: Utc::now(),
                });
                self.agents.len() - 1
            }
        };
        let running: std::collections::HashSet<&WorkId> = hello.running.iter().collect();
        let mut gone = Vec::new();
        for (work, p) in &self.placed {
            if p.agent != id {
                continue;
            }
            let gone_now = match p.adopting {
                // The instance it was dispatched to: what it does not list may still come in
                // its reports (an end that raced the hello); it waits out the adoption lease.
                Some(i) if i == hello.instance => false,
                // Another process now: it cannot hold what the old one was given.
                Some(_) => true,
                // Work not sent yet cannot be listed; it is sent once its dispatch is durable.
                None => p.told && !running.contains(work),
            };
            if gone_now {
                gone.push(work.clone());
            }
        }
        for work in gone {
            if let Some(p) = self.placed.remove(&work)
                && !p.stale
            {
                let given_up = GivenUp {
                    id: work.clone(),
                    since: p.since,
                };
                if p.adopting.is_some() {
                    joined.unclaimed.push(given_up);
                } else {
                    self.remember_given_up(&id, &work);
                    joined.lost.push(given_up);
                }
            }
        }
        for work in &hello.running {
            match self.placed.get_mut(work) {
                Some(p) if p.agent == id => {
                    // Adopted: the instance it went to still holds it.
                    p.adopting = None;
                    if !p.stale {
                        joined.keep.push(work.clone());
                    }
                }
                // Given up (or never given): it holds its slot until it ends.
                _ => {
                    let mut p =
                        Placement::new(id.clone(), !matches!(work, WorkId::Service(_)), true);
                    p.stale = true;
                    self.placed.insert(work.clone(), p);
                }
            }
        }
        let used = self
            .placed
            .values()
            .filter(|p| p.agent == id && p.takes_slot)
            .count();
        let a = &mut self.agents[i];
        a.used = used;
        Ok(joined)
    }

    /// Forgets the oldest lost or drained agents beyond [`MAX_GONE_AGENTS`], so that agents
    /// that come and go under new ids cannot grow the list without bound.
    fn prune_gone(&mut self) {
        let mut count = self.agents.iter().filter(|a| a.state.is_gone()).count();
        while count >= MAX_GONE_AGENTS {
            if let Some(i) = self
                .agents
                .iter()
                .enumerate()
                .filter(|(_, a)| a.state.is_gone())
                .min_by_key(|(_, a)| a.joined_at)
                .map(|(i, _)| i)
            {
                self.agents.remove(i);
            }
            count -= 1;
        }
    }

    /// The agent was heard from.
    pub fn heard(&mut self, id: &AgentId) {
        if let Some(i) = self.index(id)
            && let Some(r) = self.agents[i].remote.as_mut()
        {
            r.last_heard = Instant::now();
        }
    }

    /// Sends `message` to a remote agent.
    pub fn send(&self, id: &AgentId, message: ToAgent) {
        if let Some(i) = self.index(id)
            && let Some(r) = &self.agents[i].remote
        {
            r.send(id, message);
        }
    }

    /// Says "still here" to every connected remote agent.
    pub fn beat(&self) {
        for a in &self.agents {
            if let Some(r) = &a.remote
                && !a.state.is_gone()
            {
                r.send(&a.link.info().id, ToAgent::Heartbeat);
            }
        }
    }

    /// Whether any remote agent is connected (heartbeats and leases are needed).
    pub fn any_remote(&self) -> bool {
        self.agents
            .iter()
            .any(|a| a.remote.is_some() && !a.state.is_gone())
    }

    /// Remote agents silent past their lease at `now`.
    pub fn expired(&self, now: Instant) -> Vec<AgentId> {
        let lease = self.lease();
        self.agents
            .iter()
            .filter(|a| !a.state.is_gone())
            .filter(|a| {
                a.remote
                    .as_ref()
                    .is_some_and(|r| now.saturating_duration_since(r.last_heard) > lease)
            })
            .map(|a| a.link.info().id.clone())
            .collect()
    }

    /// Marks an agent lost and gives up the work placed there (stale work is simply forgotten).
    pub fn lose(&mut self, id: &AgentId) -> Vec<GivenUp> {
        let Some(i) = self.index(id) else {
            return Vec::new();
        };
        let a = &mut self.agents[i];
        a.state = AgentState::Lost;
        // Everything placed there is given up or forgotten below.
        a.used = 0;
        if let Some(r) = a.remote.as_mut() {
            r.unstored.clear();
        }
        let mine: Vec<WorkId> = self
            .placed
            .iter()
            .filter(|(_, p)| &p.agent == id)
            .map(|(w, _)| w.clone())
            .collect();
        let mut lost = Vec::new();
        for work in mine {
            if let Some(p) = self.placed.remove(&work)
                && !p.stale
            {
                self.remember_given_up(id, &work);
                lost.push(GivenUp {
                    id: work,
                    since: p.since,
                });
            }
        }
        lost
    }

    /// Task slots of all agents that take work.
    pub fn slots(&self) -> usize {
        self.agents
            .iter()
            .filter(|a| !a.state.is_gone())
            .map(|a| a.link.info().slots)
            .fold(0usize, usize::saturating_add)
    }

    /// Task slots in use (work held in an agent's queue waits for one of them).
    pub fn busy(&self) -> usize {
        let mut used: HashMap<&AgentId, usize> = HashMap::new();
        for p in self.placed.values().filter(|p| p.takes_slot) {
            *used.entry(&p.agent).or_default() += 1;
        }
        self.agents
            .iter()
            .map(|a| {
                let id = &a.link.info().id;
                used.get(id).map_or(0, |&n| n.min(a.link.info().slots))
            })
            .fold(0usize, usize::saturating_add)
    }

    /// Whether some agent could take a task now.
    pub fn has_free_slot(&self) -> bool {
        self.agents
            .iter()
            .any(|a| a.state.takes_work() && a.free() > 0)
    }

    /// Whether nothing runs anywhere.
    pub fn is_idle(&self) -> bool {
        self.placed.is_empty()
    }

    /// Hands `job` to the agent that takes work, has every label of `wants` and the most free
    /// slots (work that takes no slot goes to the first such agent).
    pub fn assign(
        &mut self,
        job: Assignment,
        wants: &BTreeMap<String, String>,
    ) -> Result<AgentId, Unplaced> {
        let (id, _) = self.place(&job.id, job.kind.takes_slot(), wants)?;
        self.tell(job);
        Ok(id)
    }

    /// Chooses the agent for `work` as [`Agents::assign`] does and holds its slot there, but
    /// does not send it: [`Agents::tell`] does, once the dispatch is durable. The agent and
    /// its instance (0 for the in-process pool).
    pub fn place(
        &mut self,
        work: &WorkId,
        takes_slot: bool,
        wants: &BTreeMap<String, String>,
    ) -> Result<(AgentId, u64), Unplaced> {
        let candidates = self
            .agents
            .iter()
            .enumerate()
            .filter(|(_, a)| fits(a, wants));
        let chosen = if takes_slot {
            candidates
                .filter(|(_, a)| a.free() > 0)
                .max_by_key(|(i, a)| (a.free_slots(), a.free(), std::cmp::Reverse(*i)))
                .map(|(i, _)| i)
        } else {
            candidates.map(|(i, _)| i).next()
        };
        let Some(i) = chosen else {
            return Err(self.room_for(wants).err().unwrap_or(Unplaced::Busy));
        };
        let agent = &mut self.agents[i];
        if takes_slot {
            agent.used += 1;
        }
        let id = agent.link.info().id.clone();
        let instance = agent.remote.as_ref().map_or(0, |r| r.instance);
        self.placed
            .insert(work.clone(), Placement::new(id.clone(), takes_slot, false));
        Ok((id, instance))
    }

    /// Sends `job` to the agent it was placed on, unless it was given up (or stopped) since;
    /// whether it was sent.
    pub fn tell(&mut self, job: Assignment) -> bool {
        let Some(p) = self.placed.get_mut(&job.id) else {
            return false;
        };
        if p.told || p.stale {
            return false;
        }
        let Some(i) = self.agents.iter().position(|a| a.link.info().id == p.agent) else {
            return false;
        };
        p.told = true;
        // Its lease of silence runs from now, not from when it was placed.
        p.since = Utc::now();
        self.agents[i].link.assign(job);
        true
    }

    /// Work that a previous principal sent to `instance` of `agent`: it holds a slot there
    /// and waits for that agent to come back and say whether it still has it.
    pub fn expect(&mut self, work: WorkId, agent: AgentId, instance: u64) {
        let mut p = Placement::new(agent, !matches!(work, WorkId::Service(_)), true);
        p.adopting = Some(instance);
        self.placed.insert(work, p);
    }

    /// `agent` reported about `work`: if it was waiting to be adopted from that agent, it is.
    pub fn claim(&mut self, agent: &AgentId, work: &WorkId) {
        if let Some(p) = self.placed.get_mut(work)
            && &p.agent == agent
        {
            p.adopting = None;
        }
    }

    /// Whether some work of a previous principal waits for its agent to come back.
    pub fn adopting(&self) -> bool {
        self.placed.values().any(|p| p.adopting.is_some())
    }

    /// Gives up the work of a previous principal that no agent came back for.
    pub fn unclaimed(&mut self) -> Vec<GivenUp> {
        let waiting: Vec<WorkId> = self
            .placed
            .iter()
            .filter(|(_, p)| p.adopting.is_some())
            .map(|(w, _)| w.clone())
            .collect();
        let mut out = Vec::new();
        for work in waiting {
            if let Some(p) = self.placed.remove(&work) {
                if p.takes_slot
                    && let Some(i) = self.index(&p.agent)
                {
                    let a = &mut self.agents[i];
                    a.used = a.used.saturating_sub(1);
                }
                out.push(GivenUp {
                    id: work,
                    since: p.since,
                });
            }
        }
        out
    }

    /// Whether `work` is placed and not yet sent to its agent.
    pub fn untold(&self, work: &WorkId) -> Option<&AgentId> {
        self.placed
            .get(work)
            .filter(|p| !p.told && !p.stale)
            .map(|p| &p.agent)
    }

    /// Asks `agent` to send its reports again from `from` (reports in between never came),
    /// once per gap: true when asked now.
    pub fn ask_resend(&mut self, agent: &AgentId, from: u64) -> bool {
        let Some(i) = self.index(agent) else {
            return false;
        };
        let Some(r) = self.agents[i].remote.as_mut() else {
            return false;
        };
        if r.resend_asked == Some(from) {
            return false;
        }
        r.resend_asked = Some(from);
        r.send(agent, ToAgent::Resend { from });
        true
    }

    /// Asks the agent running `id` to stop it.
    pub fn stop(&self, id: &WorkId) {
        if let Some(p) = self.placed.get(id)
            && let Some(i) = self.index(&p.agent)
        {
            self.agents[i].link.stop(id);
        }
    }

    /// `agent` reports the end of `id`: frees what it held there.
    pub fn finished(&mut self, agent: &AgentId, id: &WorkId) -> End {
        match self.placed.get(id) {
            Some(p) if &p.agent == agent => {}
            _ => return End::Late,
        }
        let p = self.placed.remove(id).expect("checked above");
        if p.takes_slot
            && let Some(i) = self.index(agent)
        {
            let a = &mut self.agents[i];
            a.used = a.used.saturating_sub(1);
        }
        if p.stale { End::Late } else { End::Applied }
    }

    /// Which reports of `first ..= first + count - 1` from `agent` are new (the rest were
    /// applied before a reconnect): the index of the first new one. Numbers that start at 0,
    /// overflow, or skip past the next one expected are refused.
    pub fn new_reports(
        &self,
        agent: &AgentId,
        first: u64,
        count: usize,
    ) -> Result<usize, BadReports> {
        let applied = self
            .index(agent)
            .and_then(|i| self.agents[i].remote.as_ref())
            .map_or(0, |r| r.applied);
        if first == 0 || first.checked_add(count as u64).is_none() {
            return Err(BadReports::OutOfRange);
        }
        let expected = applied.saturating_add(1);
        if first > expected {
            return Err(BadReports::Gap { expected });
        }
        Ok(((expected - first) as usize).min(count))
    }

    /// Counts a refused message from `agent` (or from no known agent).
    pub fn refuse(&mut self, agent: Option<&AgentId>) {
        self.refused = self.refused.saturating_add(1);
        if let Some(i) = agent.and_then(|a| self.index(a))
            && let Some(r) = self.agents[i].remote.as_mut()
        {
            r.refused = r.refused.saturating_add(1);
        }
    }

    /// Messages refused from agents since the principal started.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Whether `agent` may report about `work`: it was placed there (given up or not).
    pub fn placed_on(&self, agent: &AgentId, work: &WorkId) -> bool {
        self.placed.get(work).is_some_and(|p| &p.agent == agent)
    }

    /// Whether `work` was placed on `agent` and given up lately.
    pub fn gave_up(&self, agent: &AgentId, work: &WorkId) -> bool {
        self.index(agent)
            .and_then(|i| self.agents[i].remote.as_ref())
            .is_some_and(|r| r.given_up.contains(work))
    }

    /// Remembers that `work` placed on `agent` was given up.
    fn remember_given_up(&mut self, agent: &AgentId, work: &WorkId) {
        if let Some(i) = self.index(agent)
            && let Some(r) = self.agents[i].remote.as_mut()
        {
            if r.given_up.len() >= MAX_GIVEN_UP {
                r.given_up.pop_front();
            }
            r.given_up.push_back(work.clone());
        }
    }

    /// Whether `work` is placed on an agent other than `agent`.
    pub fn placed_elsewhere(&self, agent: &AgentId, work: &WorkId) -> bool {
        self.placed.get(work).is_some_and(|p| &p.agent != agent)
    }

    /// A heartbeat of `agent` listed what it runs: work placed there that two heartbeats in a
    /// row did not list is given up (one heartbeat of grace covers an assignment and a
    /// heartbeat that crossed, and an end reported just after the heartbeat was written).
    pub fn reconcile(&mut self, agent: &AgentId, running: &[WorkId]) -> Vec<GivenUp> {
        let listed: std::collections::HashSet<&WorkId> = running.iter().collect();
        let mut gone = Vec::new();
        for (work, p) in self.placed.iter_mut() {
            if &p.agent != agent || !p.told || p.adopting.is_some() {
                continue;
            }
            if listed.contains(work) {
                p.missing = 0;
            } else {
                p.missing = p.missing.saturating_add(1);
                if p.missing >= 2 {
                    gone.push(work.clone());
                }
            }
        }
        let mut lost = Vec::new();
        for work in gone {
            if let Some(p) = self.placed.remove(&work) {
                if p.takes_slot
                    && let Some(i) = self.index(agent)
                {
                    let a = &mut self.agents[i];
                    a.used = a.used.saturating_sub(1);
                }
                if !p.stale {
                    self.remember_given_up(agent, &work);
                    lost.push(GivenUp {
                        id: work,
                        since: p.since,
                    });
                }
            }
        }
        lost
    }

    /// After a gap of `stall` in the principal's own loop (a stall, a suspend) that ended at
    /// `now`: every connected remote agent's lease is extended by the gap, so that what it
    /// sent meanwhile is read before anything is declared lost. Extended by the gap, not
    /// renewed: on a machine so busy that every beat is late, a renewal at each beat would
    /// keep a silent agent's lease forever.
    pub fn refresh_leases(&mut self, now: Instant, stall: Duration) {
        for a in &mut self.agents {
            if let Some(r) = a.remote.as_mut()
                && !a.state.is_gone()
            {
                r.last_heard = r.last_heard.checked_add(stall).map_or(now, |t| t.min(now));
            }
        }
        for p in self.placed.values_mut() {
            p.missing = 0;
        }
    }

    /// Report `seq` of `agent` was applied; it is stored once `emitted` events are durable.
    pub fn applied(&mut self, agent: &AgentId, seq: u64, emitted: u64) {
        if let Some(i) = self.index(agent)
            && let Some(r) = self.agents[i].remote.as_mut()
        {
            r.applied = r.applied.max(seq);
            r.unstored.push_back((seq, emitted));
        }
    }

    /// Whether applied reports wait for the store.
    pub fn awaiting_store(&self) -> bool {
        self.agents
            .iter()
            .any(|a| a.remote.as_ref().is_some_and(|r| !r.unstored.is_empty()))
    }

    /// The first `durable` events are stored: acknowledges the reports they cover.
    pub fn stored(&mut self, durable: u64) {
        for a in &mut self.agents {
            let Some(r) = a.remote.as_mut() else {
                continue;
            };
            let mut upto = None;
            while let Some(&(seq, mark)) = r.unstored.front() {
                if mark > durable {
                    break;
                }
                upto = Some(seq);
                r.unstored.pop_front();
            }
            if let Some(upto) = upto {
                r.send(&a.link.info().id, ToAgent::Ack { upto });
            }
        }
    }

    /// Cordons (or uncordons) an agent; its state afterwards.
    pub fn cordon(&mut self, id: &AgentId, cordon: bool) -> Result<AgentState, String> {
        let i = self.known(id)?;
        let a = &mut self.agents[i];
        a.state = match (a.state, cordon) {
            (AgentState::Lost, _) => {
                return Err(format!(
                    "agent `{id}` is lost; it can be cordoned once it is back"
                ));
            }
            (AgentState::Drained, _) => {
                return Err(format!("agent `{id}` was drained and let go"));
            }
            (_, true) => AgentState::Cordoned,
            (_, false) => AgentState::Ready,
        };
        Ok(a.state)
    }

    /// Lets an agent finish its work and take nothing new; [`Agents::released`] lets it go.
    pub fn drain(&mut self, id: &AgentId) -> Result<AgentState, String> {
        let i = self.known(id)?;
        let a = &mut self.agents[i];
        if a.state.is_gone() {
            return Err(format!(
                "agent `{id}` is {}; there is nothing to drain",
                a.state
            ));
        }
        a.state = AgentState::Draining;
        Ok(a.state)
    }

    fn known(&self, id: &AgentId) -> Result<usize, String> {
        self.index(id).ok_or_else(|| {
            let known: Vec<String> = self
                .agents
                .iter()
                .map(|a| a.link.info().id.0.clone())
                .collect();
            format!("no agent `{id}`; known agents: {}", known.join(", "))
        })
    }

    /// Draining agents with nothing left to run: now drained, and remote ones told to exit.
    pub fn released(&mut self) -> Vec<AgentId> {
        let busy: std::collections::HashSet<&AgentId> =
            self.placed.values().map(|p| &p.agent).collect();
        let mut released = Vec::new();
        for a in &mut self.agents {
            let id = &a.link.info().id;
            if a.state == AgentState::Draining && !busy.contains(id) {
                a.state = AgentState::Drained;
                if let Some(r) = &a.remote {
                    let reason = "drained by an operator".to_string();
                    r.send(id, ToAgent::Release { reason });
                }
                released.push(id.clone());
            }
        }
        released
    }

    /// The state of an agent now.
    pub fn state_of(&self, id: &AgentId) -> Option<AgentState> {
        self.index(id).map(|i| self.agents[i].state)
    }

    /// Every agent as the console shows it.
    pub fn statuses(&self) -> Vec<AgentStatus> {
        let now = Instant::now();
        self.agents
            .iter()
            .map(|a| {
                let id = &a.link.info().id;
                let mut running: Vec<WorkId> = self
                    .placed
                    .iter()
                    .filter(|(_, p)| &p.agent == id && p.told)
                    .map(|(w, _)| w.clone())
                    .collect();
                running.sort_by_key(order_of);
                AgentStatus {
                    info: a.link.info().clone(),
                    address: a
                        .remote
                        .as_ref()
                        .map_or_else(|| "local".to_string(), |r| r.address.clone()),
                    state: a.state,
                    // What it holds in its queue waits for these.
                    busy: self
                        .placed
                        .values()
                        .filter(|p| &p.agent == id && p.takes_slot)
                        .count()
                        .min(a.link.info().slots),
                    heartbeat_age_ms: a
                        .remote
                        .as_ref()
                        .map(|r| now.saturating_duration_since(r.last_heard).as_millis() as u64),
                    joined_at: a.joined_at,
                    running,
                    refused: a.remote.as_ref().map_or(0, |r| r.refused),
                    key: match &a.remote {
                        None => Some("local".to_string()),
                        Some(r) => r.key.clone(),
                    },
                }
            })
            .collect()
    }

    /// Whether some connected agent that takes work has every label of `wants`.
    pub fn could_take(&self, wants: &BTreeMap<String, String>) -> bool {
        self.agents.iter().any(|a| fits(a, wants))
    }

    /// Whether a task asking for `wants` could be placed now: an agent with those labels has
    /// a free slot (else they are all busy, or there is none).
    pub fn room_for(&self, wants: &BTreeMap<String, String>) -> Result<(), Unplaced> {
        let mut fitting = self.agents.iter().filter(|a| fits(a, wants)).peekable();
        if fitting.peek().is_none() {
            return Err(Unplaced::NoMatch);
        }
        if fitting.any(|a| a.free() > 0) {
            Ok(())
        } else {
            Err(Unplaced::Busy)
        }
    }

    /// Why no agent can take work asking for `wants`, when none can.
    pub fn why_unplaceable(&self, wants: &BTreeMap<String, String>) -> String {
        let labels = crate::protocol::pairs_text(wants, ", ");
        format!(
            "waiting for an agent labelled {labels}: no connected agent that takes work has \
             these labels"
        )
    }
}

/// Checks placed on agents by labels (a monitor's `from:`).
impl Agents {
    /// Which start of `id` this is: its hello's instance, 0 for the in-process pool; `None` for
    /// an agent not known or gone.
    pub fn instance_of(&self, id: &AgentId) -> Option<u64> {
        let a = &self.agents[self.index(id)?];
        if a.state.is_gone() {
            return None;
        }
        Some(a.remote.as_ref().map_or(0, |r| r.instance))
    }

    /// Agents that take work, have every label of `wants` and run batches of checks of this
    /// version (the in-process pool always does), in the order they joined.
    pub fn check_agents(&self, wants: &BTreeMap<String, String>) -> Vec<AgentId> {
        self.agents
            .iter()
            .filter(|a| fits(a, wants))
            .filter(|a| {
                a.remote
                    .as_ref()
                    .is_none_or(|r| r.checks == crate::protocol::batch::CHECKS_VERSION)
            })
            .map(|a| a.link.info().id.clone())
            .collect()
    }

    /// Why no agent can run checks for `wants`, when [`Agents::check_agents`] found none.
    pub fn why_no_location(&self, wants: &BTreeMap<String, String>) -> String {
        let labels = crate::protocol::pairs_text(wants, ", ");
        let labelled: Vec<&Agent> = self
            .agents
            .iter()
            .filter(|a| {
                wants
                    .iter()
                    .all(|(k, v)| a.link.info().labels.get(k) == Some(v))
            })
            .collect();
        if labelled.is_empty() {
            return format!("no agent labelled {labels} is known to the principal");
        }
        if labelled.iter().all(|a| !a.state.takes_work()) {
            let states: Vec<String> = labelled
                .iter()
                .map(|a| format!("{} is {}", a.link.info().id, a.state))
                .collect();
            return format!(
                "no agent labelled {labels} takes work now ({})",
                states.join(", ")
            );
        }
        format!(
            "the agents labelled {labels} do not run batches of checks of version {} (another \
             opsconsole release)",
            crate::protocol::batch::CHECKS_VERSION
        )
    }

    /// Sends `batch` to agent `id`; an in-process agent sends its results to `results`.
    /// Whether the agent took it.
    pub fn run_checks(
        &self,
        id: &AgentId,
        batch: crate::protocol::batch::CheckBatch,
        results: tokio::sync::mpsc::Sender<crate::protocol::batch::CheckResults>,
    ) -> bool {
        self.index(id)
            .is_some_and(|i| self.agents[i].link.run_checks(batch, results))
    }

    /// Counts `n` refused parts of a message from `agent`.
    pub fn refuse_many(&mut self, agent: &AgentId, n: u64) {
        self.refused = self.refused.saturating_add(n);
        if let Some(i) = self.index(agent)
            && let Some(r) = self.agents[i].remote.as_mut()
        {
            r.refused = r.refused.saturating_add(n);
        }
    }
}

/// Whether `a` takes work and has every label of `wants`.
fn fits(a: &Agent, wants: &BTreeMap<String, String>) -> bool {
    a.state.takes_work()
        && wants
            .iter()
            .all(|(k, v)| a.link.info().labels.get(k) == Some(v))
}

/// The order work is listed in: tasks by run, task and attempt, then services, then checks.
fn order_of(work: &WorkId) -> (u8, u64, usize, u64, String) {
    match work {
        WorkId::Task(k) => (
            0,
            k.run_id.0,
            k.task_idx,
            u64::from(k.attempt),
            String::new(),
        ),
        WorkId::Service(s) => (1, 0, 0, s.start, s.path.to_string()),
        WorkId::Check(c) => (2, 0, 0, c.probe, c.monitor.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::protocol::agent::{ServiceStart, StopPolicy, WorkKind};
    use crate::protocol::{AttemptKey, RunId};

    /// Records what it was given.
    struct Fake {
        info: AgentInfo,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl AgentLink for Fake {
        fn info(&self) -> &AgentInfo {
            &self.info
        }
        fn assign(&self, job: Assignment) {
            let line = format!("{} runs {:?}", self.info.id, job.id);
            self.log.lock().unwrap().push(line);
        }
        fn stop(&self, id: &WorkId) {
            let line = format!("{} stops {id:?}", self.info.id);
            self.log.lock().unwrap().push(line);
        }
    }

    fn info(name: &str, slots: usize, labels: &[(&str, &str)]) -> AgentInfo {
        AgentInfo {
            id: AgentId(name.into()),
            slots,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            version: "test".into(),
        }
    }

    fn fake(name: &str, slots: usize, log: &Arc<Mutex<Vec<String>>>) -> Box<dyn AgentLink> {
        Box::new(Fake {
            info: info(name, slots, &[]),
            log: log.clone(),
        })
    }

    fn job(id: WorkId, kind: WorkKind) -> Assignment {
        Assignment {
            id,
            kind,
            argv: vec!["true".into()],
            env: Vec::new(),
            cwd: None,
            stop: StopPolicy::term(Duration::from_secs(1)),
            max_output: crate::protocol::agent::DEFAULT_MAX_OUTPUT,
        }
    }

    fn task(n: u32) -> WorkId {
        WorkId::Task(AttemptKey {
            run_id: RunId(1),
            task_idx: 0,
            task: "t".into(),
            attempt: n,
        })
    }

    fn hello(name: &str, slots: usize, labels: &[(&str, &str)], running: Vec<WorkId>) -> Hello {
        Hello {
            info: info(name, slots, labels),
            host: "h".into(),
            pid: 1,
            running,
            instance: 1,
            next_report: 1,
            queue: 0,
            checks: 0,
        }
    }

    fn none() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn capacity_is_kept_per_agent_and_tasks_go_where_most_is_free() {
        let log = Arc::default();
        let mut agents = Agents::new(Duration::from_secs(1));
        agents.add(fake("a", 1, &log));
        agents.add(fake("b", 2, &log));
        let to = |agents: &mut Agents, n| {
            agents
                .assign(job(task(n), WorkKind::Task { timeout: None }), &none())
                .map(|id| id.0)
                .map_err(|_| ())
        };
        assert_eq!(to(&mut agents, 1), Ok("b".into()));
        assert_eq!(
            to(&mut agents, 2),
            Ok("a".into()),
            "a and b tie; the first wins"
        );
        assert_eq!(to(&mut agents, 3), Ok("b".into()));
        assert!(!agents.has_free_slot());
        assert_eq!(to(&mut agents, 4), Err(()), "no agent has a free slot");
        assert_eq!((agents.slots(), agents.busy()), (3, 3));
        let a = AgentId("a".into());
        assert_eq!(
            agents.finished(&AgentId("b".into()), &task(2)),
            End::Late,
            "not b's"
        );
        assert_eq!(agents.finished(&a, &task(2)), End::Applied);
        assert_eq!(
            agents.finished(&a, &task(2)),
            End::Late,
            "a second end frees nothing"
        );
        assert_eq!(to(&mut agents, 5), Ok("a".into()));
    }

    #[test]
    fn services_take_no_slot_and_cordoned_agents_take_nothing() {
        let log = Arc::default();
        let mut agents = Agents::new(Duration::from_secs(1));
        agents.add(fake("local", 1, &log));
        let service = WorkId::Service(ServiceStart {
            path: "web/api".into(),
            start: 1,
        });
        assert!(
            agents
                .assign(job(service.clone(), WorkKind::Service), &none())
                .is_ok()
        );
        assert!(
            agents.has_free_slot(),
            "a service runs beside the task slots"
        );
        let local = AgentId("local".into());
        assert_eq!(agents.cordon(&local, true), Ok(AgentState::Cordoned));
        assert!(matches!(
            agents.assign(job(task(1), WorkKind::Task { timeout: None }), &none()),
            Err(Unplaced::NoMatch)
        ));
        assert_eq!(agents.drain(&local), Ok(AgentState::Draining));
        assert!(agents.released().is_empty(), "the service still runs there");
        agents.stop(&service);
        assert_eq!(agents.finished(&local, &service), End::Applied);
        assert_eq!(agents.released(), std::slice::from_ref(&local));
        assert_eq!(agents.state_of(&local), Some(AgentState::Drained));
        assert!(
            agents.cordon(&local, false).is_err(),
            "a drained agent stays let go"
        );
        assert!(
            agents
                .cordon(&AgentId("nope".into()), true)
                .unwrap_err()
                .contains("local")
        );
        assert_eq!(
            log.lock().unwrap().last().map(String::as_str),
            Some(format!("local stops {service:?}").as_str())
        );
    }

    #[test]
    fn labels_place_work_and_say_when_no_agent_has_them() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut agents = Agents::new(Duration::from_secs(1));
        agents.add(fake("local", 4, &Arc::default()));
        let gpu: BTreeMap<String, String> = [("gpu".to_string(), "true".to_string())].into();
        let kind = WorkKind::Task { timeout: None };
        assert!(matches!(
            agents.assign(job(task(1), kind.clone()), &gpu),
            Err(Unplaced::NoMatch)
        ));
        assert!(!agents.could_take(&gpu));
        agents
            .hello(
                hello("g", 1, &[("gpu", "true")], Vec::new()),
                tx.clone(),
                false,
            )
            .expect("joins");
        assert_eq!(
            agents
                .assign(job(task(1), kind.clone()), &gpu)
                .map(|a| a.0)
                .ok(),
            Some("g".into())
        );
        assert!(matches!(
            agents.assign(job(task(2), kind.clone()), &gpu),
            Err(Unplaced::Busy)
        ));
        assert_eq!(
            agents.assign(job(task(3), kind), &none()).map(|a| a.0).ok(),
            Some("local".into())
        );
        assert!(
            agents
                .hello(hello("local", 1, &[], Vec::new()), tx, false)
                .is_err(),
            "the pool's id"
        );
    }

    #[test]
    fn a_reconnect_keeps_what_the_agent_still_runs_and_loses_the_rest() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut agents = Agents::new(Duration::from_secs(1));
        agents
            .hello(hello("r", 3, &[], Vec::new()), tx.clone(), false)
            .expect("joins");
        let kind = WorkKind::Task { timeout: None };
        for n in 1..=3 {
            agents
                .assign(job(task(n), kind.clone()), &none())
                .expect("placed");
        }
        // Back, still running 1 and a stranger (9); 2 and 3 are gone from it.
        let joined = agents
            .hello(
                hello("r", 3, &[], vec![task(1), task(9)]),
                tx.clone(),
                false,
            )
            .expect("again");
        assert!(joined.again);
        assert_eq!(joined.keep, [task(1)]);
        let mut lost: Vec<WorkId> = joined.lost.into_iter().map(|g| g.id).collect();
        lost.sort_by_key(|w| format!("{w:?}"));
        assert_eq!(lost, [task(2), task(3)]);
        assert_eq!(agents.busy(), 2, "1, and the stranger until it ends");
        let r = AgentId("r".into());
        assert_eq!(agents.finished(&r, &task(9)), End::Late);
        assert_eq!(agents.finished(&r, &task(1)), End::Applied);
        // Another host under the same id while this one lives is refused.
        let mut other = hello("r", 1, &[], Vec::new());
        other.host = "elsewhere".into();
        assert!(
            agents
                .hello(other, tx, false)
                .unwrap_err()
                .contains("in use")
        );
        let sent: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|(_, m)| format!("{m:?}"))
            .collect();
        assert_eq!(sent.iter().filter(|m| m.starts_with("Assign")).count(), 3);
    }

    #[test]
    fn a_silent_agent_loses_its_lease_and_its_work() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut agents = Agents::new(Duration::from_millis(100));
        agents
            .hello(hello("r", 2, &[], Vec::new()), tx, false)
            .expect("joins");
        let kind = WorkKind::Task { timeout: None };
        agents.assign(job(task(1), kind), &none()).expect("placed");
        let now = Instant::now();
        assert!(agents.expired(now).is_empty());
        let r = AgentId("r".into());
        assert_eq!(
            agents.expired(now + Duration::from_millis(301)),
            std::slice::from_ref(&r)
        );
        let lost = agents.lose(&r);
        assert_eq!(lost.iter().map(|g| &g.id).collect::<Vec<_>>(), [&task(1)]);
        assert_eq!(agents.state_of(&r), Some(AgentState::Lost));
        assert!(!agents.has_free_slot() && agents.is_idle());
        assert_eq!(
            agents.finished(&r, &task(1)),
            End::Late,
            "its result comes too late"
        );
    }

    #[test]
    fn reports_are_applied_once_and_acknowledged_once_stored() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut agents = Agents::new(Duration::from_secs(1));
        agents
            .hello(hello("r", 1, &[], Vec::new()), tx, false)
            .expect("joins");
        let r = AgentId("r".into());
        assert_eq!(agents.new_reports(&r, 1, 3), Ok(0));
        for (seq, emitted) in [(1, 10), (2, 11), (3, 12)] {
            agents.applied(&r, seq, emitted);
        }
        assert_eq!(
            agents.new_reports(&r, 1, 5),
            Ok(3),
            "1-3 again after a reconnect: skipped"
        );
        assert_eq!(agents.new_reports(&r, 3, 2), Ok(1));
        assert_eq!(
            agents.new_reports(&r, 6, 1),
            Err(BadReports::Gap { expected: 4 }),
            "4 and 5 were never seen"
        );
        assert_eq!(
            agents.new_reports(&r, u64::MAX, 2),
            Err(BadReports::OutOfRange)
        );
        assert_eq!(agents.new_reports(&r, 0, 1), Err(BadReports::OutOfRange));
        assert!(agents.awaiting_store());
        agents.stored(11);
        let acks: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|(_, m)| format!("{m:?}"))
            .collect();
        assert_eq!(acks, ["Ack { upto: 2 }"]);
        agents.stored(12);
        assert!(!agents.awaiting_store());
    }

    #[test]
    fn a_new_instance_starts_its_numbering_again_and_a_second_live_one_is_refused() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut agents = Agents::new(Duration::from_secs(1));
        let r = AgentId("r".into());
        agents
            .hello(hello("r", 1, &[], Vec::new()), tx.clone(), false)
            .expect("joins");
        let kind = WorkKind::Task { timeout: None };
        agents.assign(job(task(1), kind), &none()).expect("placed");
        agents.applied(&r, 1, 1);
        agents.applied(&r, 2, 2);
        // Another process under the id while the first is connected and heard from: refused,
        // and nothing changes.
        let mut second = hello("r", 1, &[], Vec::new());
        second.instance = 2;
        let refused = agents.hello(second.clone(), tx.clone(), true).unwrap_err();
        assert!(
            refused.contains("in use by another agent process"),
            "{refused}"
        );
        assert!(agents.placed_on(&r, &task(1)));
        // The first one's connection closed (it was killed): the new one takes over, its
        // reports count from 1, and the old one's work is lost.
        let joined = agents.hello(second, tx, false).expect("restarted");
        assert!(joined.again && joined.restarted);
        assert_eq!(joined.acked, 0);
        assert_eq!(
            joined.lost.iter().map(|g| &g.id).collect::<Vec<_>>(),
            [&task(1)]
        );
        assert_eq!(agents.new_reports(&r, 1, 1), Ok(0));
        assert!(
            agents.gave_up(&r, &task(1)),
            "its late end is still its own"
        );
    }

    #[test]
    fn work_missing_from_two_heartbeats_in_a_row_is_given_up() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut agents = Agents::new(Duration::from_secs(1));
        let r = AgentId("r".into());
        agents
            .hello(hello("r", 2, &[], Vec::new()), tx, false)
            .expect("joins");
        let kind = WorkKind::Task { timeout: None };
        agents
            .assign(job(task(1), kind.clone()), &none())
            .expect("placed");
        agents.assign(job(task(2), kind), &none()).expect("placed");
        assert!(agents.reconcile(&r, &[task(1)]).is_empty(), "one of grace");
        assert!(
            agents.reconcile(&r, &[task(1), task(2)]).is_empty(),
            "listed again"
        );
        assert!(agents.reconcile(&r, &[task(1)]).is_empty());
        let lost = agents.reconcile(&r, &[task(1)]);
        assert_eq!(lost.iter().map(|g| &g.id).collect::<Vec<_>>(), [&task(2)]);
        assert!(agents.has_free_slot(), "its slot is free again");
        agents.refresh_leases(Instant::now(), Duration::from_secs(1));
        assert!(
            agents.reconcile(&r, &[]).is_empty(),
            "a fresh lease starts the grace again"
        );
    }

    #[test]
    fn an_agent_with_a_queue_takes_one_more_per_slot_and_says_only_its_slots_are_busy() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut agents = Agents::new(Duration::from_secs(1));
        let (q, r) = (AgentId("q".into()), AgentId("r".into()));
        let mut h = hello("q", 2, &[], Vec::new());
        h.queue = 100; // no more than one per slot is taken
        agents.hello(h, tx.clone(), false).expect("joins");
        agents
            .hello(hello("r", 2, &[], Vec::new()), tx.clone(), false)
            .expect("joins");
        let kind = WorkKind::Task { timeout: None };
        let mut on = Vec::new();
        for n in 1..=6 {
            on.push(agents.assign(job(task(n), kind.clone()), &none()));
        }
        let on: Vec<String> = on
            .into_iter()
            .map(|a| a.map_or("none".into(), |a| a.0))
            .collect();
        // Free slots first: a queue is filled only once every slot is in use.
        assert_eq!(on, ["q", "r", "q", "r", "q", "q"]);
        assert!(!agents.has_free_slot(), "q holds 2 ahead, r has no queue");
        assert!(matches!(
            agents.assign(job(task(7), kind.clone()), &none()),
            Err(Unplaced::Busy)
        ));
        assert_eq!(
            (agents.slots(), agents.busy()),
            (4, 4),
            "what waits is not busy"
        );
        let busy: Vec<usize> = agents.statuses().iter().map(|s| s.busy).collect();
        assert_eq!(busy, [2, 2]);
        // An end frees room for one more, never beyond slots and queue.
        assert_eq!(agents.finished(&q, &task(1)), End::Applied);
        assert_eq!(agents.finished(&r, &task(2)), End::Applied);
        let on = |a: Result<AgentId, Unplaced>| a.map_or("none".to_string(), |a| a.0);
        // r has a free slot again, q only room in its queue.
        assert_eq!(on(agents.assign(job(task(8), kind.clone()), &none())), "r");
        assert_eq!(on(agents.assign(job(task(9), kind.clone()), &none())), "q");
        assert_eq!(on(agents.assign(job(task(10), kind), &none())), "none");
        // Back without its queue (another build): its room is its slots again.
        agents
            .hello(
                hello("q", 2, &[], vec![task(3), task(5), task(6), task(9)]),
                tx,
                false,
            )
            .expect("again");
        assert!(!agents.has_free_slot());
        assert_eq!(agents.finished(&q, &task(3)), End::Applied);
        assert_eq!(agents.finished(&q, &task(5)), End::Applied);
        assert!(
            !agents.has_free_slot(),
            "4 held on 2 slots: none free until 2 end"
        );
        assert_eq!(agents.finished(&q, &task(6)), End::Applied);
        assert!(agents.has_free_slot());
    }

    #[test]
    fn a_silent_agent_is_lost_even_when_every_beat_of_the_principal_is_late() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut agents = Agents::new(Duration::from_secs(1)); // a lease of 3 s
        agents
            .hello(hello("r", 1, &[], Vec::new()), tx, false)
            .expect("joins");
        let t0 = Instant::now();
        // Each beat 1.5 s late (a starved principal): the gap is forgiven, the beats are not.
        let mut lost_at = None;
        for beat in 1..=10u32 {
            let now = t0 + Duration::from_millis(2500) * beat;
            agents.refresh_leases(now, Duration::from_millis(1500));
            if !agents.expired(now).is_empty() {
                lost_at = Some(beat);
                break;
            }
        }
        // It joined just before t0, so after 3 late beats it has been silent a little more
        // than its lease of 3 s besides the gaps (before the fix: never lost).
        assert_eq!(
            lost_at,
            Some(3),
            "lost once silent for its lease (3 beats of 1 s) besides the gaps"
        );
        // One long stall is forgiven whole.
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut agents = Agents::new(Duration::from_secs(1));
        agents
            .hello(hello("r", 1, &[], Vec::new()), tx, false)
            .expect("joins");
        let now = Instant::now() + Duration::from_secs(11);
        agents.refresh_leases(now, Duration::from_secs(10));
        assert!(agents.expired(now).is_empty());
    }

    #[test]
    fn placed_work_is_sent_only_when_told_and_is_not_missing_before() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut agents = Agents::new(Duration::from_secs(1));
        let r = AgentId("r".into());
        let mut h = hello("r", 1, &[], Vec::new());
        h.instance = 7;
        agents.hello(h, tx, false).expect("joins");
        let placed = agents.place(&task(1), true, &none()).expect("placed");
        assert_eq!(placed, (r.clone(), 7), "the agent and its instance");
        assert!(!agents.has_free_slot(), "its slot is held");
        assert!(
            rx.try_recv().is_err(),
            "nothing sent before the dispatch is durable"
        );
        for _ in 0..3 {
            assert!(
                agents.reconcile(&r, &[]).is_empty(),
                "an agent cannot list what it was not sent"
            );
        }
        assert_eq!(agents.untold(&task(1)), Some(&r));
        assert!(agents.tell(job(task(1), WorkKind::Task { timeout: None })));
        assert!(matches!(rx.try_recv(), Ok((_, ToAgent::Assign { .. }))));
        assert!(
            !agents.tell(job(task(1), WorkKind::Task { timeout: None })),
            "sent once"
        );
        assert_eq!(agents.untold(&task(1)), None);
        // A gap in its reports: asked for again, once.
        assert!(agents.ask_resend(&r, 5));
        assert!(!agents.ask_resend(&r, 5), "once per gap");
        assert!(matches!(
            rx.try_recv(),
            Ok((_, ToAgent::Resend { from: 5 }))
        ));
        // Lost before it was told: nothing is sent.
        agents.finished(&r, &task(1));
        agents.place(&task(2), true, &none()).expect("placed");
        assert_eq!(agents.lose(&r).len(), 1);
        assert!(!agents.tell(job(task(2), WorkKind::Task { timeout: None })));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_restarted_principal_adopts_what_the_same_instance_still_holds() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut agents = Agents::new(Duration::from_secs(1));
        let (r, s) = (AgentId("r".into()), AgentId("s".into()));
        // What the previous principal dispatched: 1 and 2 to r's instance 7, 3 to s's 8, 4
        // to an agent that never comes back.
        agents.expect(task(1), r.clone(), 7);
        agents.expect(task(2), r.clone(), 7);
        agents.expect(task(3), s.clone(), 8);
        agents.expect(task(4), AgentId("gone".into()), 9);
        assert!(agents.adopting());
        // r comes back, same process, holding 1 (running or its end buffered) but not 2.
        let mut h = hello("r", 2, &[], vec![task(1)]);
        h.instance = 7;
        let joined = agents.hello(h, tx.clone(), false).expect("joins");
        assert_eq!(joined.keep, [task(1)], "adopted");
        assert!(joined.unclaimed.is_empty() && joined.lost.is_empty());
        assert!(
            !agents.has_free_slot(),
            "2 may still come in its reports: it holds a slot until the lease ends"
        );
        assert!(agents.placed_on(&r, &task(1)));
        assert!(
            agents.reconcile(&r, &[task(1)]).is_empty()
                && agents.reconcile(&r, &[task(1)]).is_empty(),
            "work to adopt (2) is not reconciled"
        );
        // s comes back as another process: what the old one held is not its own.
        let mut h = hello("s", 1, &[], vec![task(3)]);
        h.instance = 99;
        let joined = agents.hello(h, tx, false).expect("joins");
        assert!(joined.keep.is_empty());
        assert_eq!(
            joined.unclaimed.iter().map(|g| &g.id).collect::<Vec<_>>(),
            [&task(3)]
        );
        // A lease later, what no agent claimed is given up; a report claims it before.
        agents.expect(task(5), r.clone(), 7);
        agents.claim(&r, &task(5));
        let mut unclaimed: Vec<WorkId> = agents.unclaimed().into_iter().map(|g| g.id).collect();
        unclaimed.sort_by_key(|w| format!("{w:?}"));
        assert_eq!(unclaimed, [task(2), task(4)]);
        assert!(agents.placed_on(&r, &task(5)));
        assert!(!agents.adopting());
        assert_eq!(
            agents.finished(&r, &task(1)),
            End::Applied,
            "its end applies once"
        );
        assert_eq!(agents.finished(&r, &task(1)), End::Late);
        let sent: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|(_, m)| format!("{m:?}"))
            .collect();
        assert!(sent.is_empty(), "{sent:?}");
    }

    #[test]
    fn a_hello_out_of_bounds_is_refused() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut agents = Agents::new(Duration::from_secs(1));
        let mut big = hello("r", 1, &[], Vec::new());
        big.info.labels.insert("l".into(), "x".repeat(1 << 20));
        assert!(
            agents
                .hello(big, tx.clone(), false)
                .unwrap_err()
                .contains("label")
        );
        let mut many = hello("r", usize::MAX, &[], Vec::new());
        assert!(
            agents
                .hello(many.clone(), tx.clone(), false)
                .unwrap_err()
                .contains("slots")
        );
        many.info.slots = 4;
        many.host = "h".repeat(4096);
        assert!(agents.hello(many, tx, false).is_err());
        assert_eq!(agents.slots(), 0, "nothing joined");
    }
}
