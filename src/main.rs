//! The `opsconsole` command line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use opsconsole::cli::{self, Dirs, EXIT_FAILED};
use opsconsole::protocol::{RunId, Stream};
use opsconsole::store::query::{LogFilter, RunFilter};

/// A terminal-first operations console: workflows as DAGs of processes, with history in DuckDB.
///
/// Every command works from the current directory: workflow specs are read from ./workflows/
/// and history is kept in ./.opsconsole/ unless --workflows / --data-dir say otherwise.
#[derive(Parser)]
#[command(name = "opsconsole", version, max_term_width = 100)]
struct Cli {
    /// Directory of workflow YAML files.
    #[arg(
        long,
        global = true,
        default_value = "workflows",
        env = "OPSCONSOLE_WORKFLOWS"
    )]
    workflows: PathBuf,
    /// Directory for the history database and runtime files.
    #[arg(
        long,
        global = true,
        default_value = ".opsconsole",
        env = "OPSCONSOLE_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// Talk to the principal at this endpoint over the network (what it was started with:
    /// `opsconsole principal --listen ENDPOINT`) instead of the data dir's: status, run,
    /// cancel, retry, svc, agents, history, logs, attach and agent all use it.
    #[arg(
        long,
        global = true,
        value_name = "ENDPOINT",
        env = "OPSCONSOLE_PRINCIPAL"
    )]
    principal: Option<String>,
    /// The principal's public key (40 Z85 characters, or its server.pub file), for a CURVE
    /// endpoint (`principal --keys`).
    #[arg(
        long,
        global = true,
        value_name = "KEY-or-FILE",
        env = "OPSCONSOLE_SERVER_KEY"
    )]
    server_key: Option<String>,
    /// This client's (or agent's) secret key: NAME.secret from `opsconsole keys new NAME`.
    #[arg(long, global = true, value_name = "FILE", env = "OPSCONSOLE_KEY")]
    key: Option<PathBuf>,
    /// Console options (when no command is given).
    #[command(flatten)]
    console: ConsoleArgs,
    #[command(subcommand)]
    command: Option<Cmd>,
}

/// Options of the full-screen console (`opsconsole` or `opsconsole console`).
#[derive(clap::Args, Clone)]
struct ConsoleArgs {
    /// Colour theme: a name from themes/ (dark, light, high-contrast, ...) or a .yaml path.
    #[arg(long, default_value = "dark", env = "OPSCONSOLE_THEME")]
    theme: String,
    /// Show everything but allow no changes (trigger, cancel, retry, pause, edit are disabled).
    #[arg(long)]
    read_only: bool,
    #[command(flatten)]
    pool: PoolArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// The full-screen console (also what `opsconsole` with no command starts).
    ///
    /// Attaches to the principal running for the data dir, or runs an embedded one (stopped
    /// gracefully on quit). Needs a terminal; press ? inside for the keys.
    Console(ConsoleArgs),
    /// The console, attached to a principal over the network.
    ///
    /// ENDPOINT is what that principal was started with (`opsconsole principal --listen
    /// ENDPOINT`); events are on the next port. On a CURVE endpoint give --server-key and
    /// --key; with a viewer's key the console only looks.
    Attach {
        /// The principal's requests endpoint, e.g. tcp://127.0.0.1:7400.
        endpoint: String,
        /// Retired (HMAC tokens): refused with what to use instead (--server-key, --key).
        #[arg(long, value_name = "FILE", hide = true)]
        token_file: Option<PathBuf>,
        /// Colour theme: a name from themes/ or a .yaml path.
        #[arg(long, default_value = "dark", env = "OPSCONSOLE_THEME")]
        theme: String,
        /// Show everything but allow no changes.
        #[arg(long)]
        read_only: bool,
    },
    /// Check workflow files and print every problem as file:line:col.
    ///
    /// With no PATH, checks every *.yaml in the workflows directory. Exits 1 if any problem.
    Validate {
        /// Files or directories to check.
        paths: Vec<PathBuf>,
    },
    /// Run one monitor's check now, without a principal, and print what it saw and each
    /// condition with the value it read.
    ///
    /// NAME is a monitor in the workflows directory; FILE a file with one monitor. Exits 0
    /// when every condition holds, 1 when one does not, 2 on a spec error.
    Check {
        /// A monitor's name, or a file with one monitor.
        #[arg(value_name = "NAME|FILE")]
        target: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a workflow now.
    ///
    /// Exits 0 when the run succeeded, 1 when it failed, 2 for invalid input (unknown workflow,
    /// bad --param), 130 after Ctrl-C (which cancels the run and records it as cancelled).
    Run {
        /// Name of the workflow.
        name: String,
        /// Override a parameter: --param region=us (repeatable).
        #[arg(short, long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Stream task states and output (stderr lines marked) until the run ends.
        #[arg(short, long)]
        wait: bool,
        #[command(flatten)]
        pool: PoolArgs,
    },
    /// CURVE keys for clients, agents and principals.
    Keys {
        #[command(subcommand)]
        action: KeysCmd,
    },
    /// Run the principal service for this directory until Ctrl-C or SIGTERM.
    ///
    /// It owns the data dir: runs schedules, executes triggered runs on the local agent pool,
    /// and serves every other command through a local socket in the data dir (and
    /// `--listen`). Other commands find it automatically.
    Principal {
        /// Also listen here, e.g. tcp://127.0.0.1:7400 (events on the next port). Any address
        /// other than loopback needs --keys.
        #[arg(long, value_name = "ENDPOINT")]
        listen: Option<String>,
        /// Retired (HMAC tokens): refused with what to use instead (--keys).
        #[arg(long, value_name = "FILE", hide = true)]
        token_file: Option<std::path::PathBuf>,
        /// Retired (HMAC tokens): refused with what to use instead (--keys).
        #[arg(long, value_name = "FILE", hide = true)]
        viewer_token_file: Option<std::path::PathBuf>,
        /// Encrypt and authenticate --listen with CURVE (RFC 25/26, as libzmq): only the keys
        /// in this file connect, one line each `ROLE NAME PUBKEY` (roles operator, viewer,
        /// agent). Read again when it changes, so a removed line revokes a key at once. The
        /// principal's own pair is kept in the data dir (server.pub, server.secret).
        #[arg(long, value_name = "FILE", requires = "listen")]
        keys: Option<std::path::PathBuf>,
        /// How often remote agents and the principal heartbeat; an agent silent for three
        /// heartbeats loses its lease, and its tasks are retried elsewhere.
        #[arg(long, default_value = "2s", value_parser = parse_heartbeat)]
        agent_heartbeat: Duration,
        /// Run no tasks in this process: only remote agents (`opsconsole agent`) take them.
        #[arg(long)]
        remote_only: bool,
        /// Listen for push monitors' ping URLs here (`IP:PORT`, or `PORT` on loopback):
        /// `POST http://ADDR/ping/NAME/SECRET[/fail]` reports in for jobs that cannot run
        /// `opsconsole ping`; `opsconsole monitor show NAME` prints the URL.
        #[arg(long, value_name = "ADDR")]
        ping_listen: Option<String>,
        #[command(flatten)]
        pool: PoolArgs,
    },
    /// Run tasks for a principal on another machine (or in another directory).
    ///
    /// Registers with the principal at --principal (what it was started with: `opsconsole
    /// principal --listen ENDPOINT`), takes up to --slots tasks at once, streams their output
    /// and results, and keeps every result until the principal has stored it. Tasks that ask
    /// for labels (`agent: { gpu: "true" }`) run only on agents that have them. Reconnects by
    /// itself; exits 0 when drained (`opsconsole agents drain ID`) or on Ctrl-C / SIGTERM.
    Agent {
        /// Retired (HMAC tokens): refused with what to use instead (--server-key, --key).
        #[arg(long, value_name = "FILE", hide = true)]
        token_file: Option<PathBuf>,
        /// Tasks run at once (default: number of CPUs).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        slots: Option<u32>,
        /// A label tasks can ask for: --label gpu=true (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_param)]
        labels: Vec<(String, String)>,
        /// This agent's id (default: made on first start and kept in the data dir).
        #[arg(long)]
        id: Option<String>,
        /// Time between SIGTERM and SIGKILL when a task is stopped.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        kill_grace: Duration,
    },
    /// Supervised services: the trees with state, pid, uptime and restarts, or start, stop
    /// or restart a service or a whole subtree (PATH like `web/api`, or `web`).
    ///
    /// A stopped service stays stopped (also across principal restarts) until started.
    Svc {
        #[command(subcommand)]
        action: Option<SvcCmd>,
        /// Print JSON.
        #[arg(long, global = true)]
        json: bool,
    },
    /// The running principal's agents: list them, or cordon, uncordon or drain one.
    Agents {
        #[command(subcommand)]
        action: Option<AgentsCmd>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the running principal: slots, queue, schedules with next fire times, active runs.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the failed, timed-out, cancelled and skipped tasks of an ended run again.
    ///
    /// The run keeps its id and parameters; tasks that succeeded keep their result, the others
    /// run under their next attempt numbers with a fresh retry budget. Exits like `run`.
    Retry {
        /// The run (as shown by `history`).
        run_id: RunId,
        /// Stream task states and output until the run ends.
        #[arg(short, long)]
        wait: bool,
        #[command(flatten)]
        pool: PoolArgs,
    },
    /// Cancel an active run (through the running principal).
    Cancel {
        /// The run.
        run_id: RunId,
    },
    /// Pause a workflow's schedule; it stays paused across restarts.
    Pause {
        /// The workflow.
        workflow: String,
    },
    /// Resume a paused workflow's schedule.
    Resume {
        /// The workflow.
        workflow: String,
    },
    /// List past runs, newest first: state, start, duration and failed tasks.
    History {
        /// Only runs of this workflow.
        #[arg(long, conflicts_with = "service")]
        workflow: Option<String>,
        /// A supervised service's starts, exits and restarts instead (`web/api`, or `web`).
        #[arg(long, value_name = "PATH")]
        service: Option<String>,
        /// At most this many runs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Who did what instead: every trigger, cancel, retry, edit, pause, resume, cordon,
        /// drain and service control, with the caller's key name (`local` on this machine).
        #[arg(long, conflicts_with_all = ["workflow", "service"])]
        actions: bool,
    },
    /// Print the stored output of a run, in order.
    Logs {
        /// The run (as shown by `history`).
        #[arg(required_unless_present = "service", conflicts_with = "service")]
        run_id: Option<RunId>,
        /// A supervised service's output instead (`web/api`, or `web` for a subtree).
        #[arg(long, value_name = "PATH", conflicts_with_all = ["task", "stream"])]
        service: Option<String>,
        /// Only this task.
        #[arg(long)]
        task: Option<String>,
        /// Only this stream.
        #[arg(long, value_enum)]
        stream: Option<StreamArg>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Keep printing new lines until the run ends (needs a running principal).
        #[arg(short, long)]
        follow: bool,
    },
    /// Measure performance; prints JSON with a reference measured in the same run.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// The running principal's monitors with their states, counts per state at the end.
    ///
    /// Exits 0 (also when none match), 1 when no principal answers, 2 for a bad --state.
    Monitors {
        /// Only in this state: unknown, healthy, degraded, unhealthy, blocked, maintenance,
        /// paused.
        #[arg(long, value_parser = parse_monitor_state)]
        state: Option<opsconsole::protocol::monitor::MonitorState>,
        /// Only with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only whose name contains this.
        #[arg(long)]
        name: Option<String>,
        /// Print JSON: {counts, running, monitors}.
        #[arg(long)]
        json: bool,
    },
    /// Incidents: the open ones first, then the recently closed ones, with their causes and
    /// interventions.
    Incidents {
        /// Only the open ones.
        #[arg(long)]
        open: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A push monitor's job reports in (a dead man's switch): recorded as a result now.
    ///
    /// Exits 0 when recorded; 1 when no principal answers; 2 for an unknown monitor or one
    /// that is not a push monitor. Works locally and with --principal.
    Ping {
        /// The push monitor.
        name: String,
        /// Report a failure: the monitor's result fails at once.
        #[arg(long)]
        fail: bool,
        /// What the job says (at most 1024 bytes), kept as the result's [BODY].
        #[arg(long, value_name = "TEXT")]
        message: Option<String>,
    },
    /// One monitor: show it in full, pause or resume it, or check it now.
    ///
    /// A viewer may show but not pause, resume or check. Exits 2 for an unknown monitor.
    Monitor {
        #[command(subcommand)]
        action: MonitorSub,
    },
}

#[derive(Subcommand, Debug)]
enum MonitorSub {
    /// Its last results, each condition with the value it saw, per-location results and its
    /// open incident.
    Show {
        /// The monitor.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop checking it; it stays paused (also across restarts) until resumed.
    Pause {
        /// The monitor.
        name: String,
    },
    /// Check it on its interval again.
    Resume {
        /// The monitor.
        name: String,
    },
    /// Check it now, out of turn.
    Check {
        /// The monitor.
        name: String,
    },
}

fn parse_monitor_state(s: &str) -> Result<opsconsole::protocol::monitor::MonitorState, String> {
    s.parse()
}

/// The local agent pool's settings, shared by every command that runs tasks.
#[derive(clap::Args, Clone)]
struct PoolArgs {
    /// Task processes allowed at once (default: number of CPUs).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    slots: Option<u32>,
    /// Time between SIGTERM and SIGKILL when a task is cancelled or times out.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    kill_grace: Duration,
}

impl PoolArgs {
    fn slots(&self) -> usize {
        self.slots
            .map(|s| s as usize)
            .unwrap_or_else(opsconsole::agent::default_slots)
    }
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Write NAME.pub and NAME.secret (Z85, 40 characters each; the secret mode 0600).
    New {
        /// The key's name (also its name in the principal's authorized keys).
        name: String,
    },
}

#[derive(Subcommand, Debug)]
enum SvcCmd {
    /// The trees, or the subtree at PATH.
    Status {
        /// `web` or `web/api`.
        path: Option<String>,
    },
    /// Start (and release an operator's hold on) a service or subtree.
    Start {
        /// `web/api`, or `web` for the subtree.
        path: String,
    },
    /// Stop a service or subtree, in reverse start order, and hold it stopped.
    Stop {
        /// `web/api`, or `web` for the subtree.
        path: String,
    },
    /// Stop and start a service or subtree again.
    Restart {
        /// `web/api`, or `web` for the subtree.
        path: String,
    },
}

#[derive(Subcommand)]
enum AgentsCmd {
    /// Give the agent no new work (what it runs finishes).
    Cordon {
        /// The agent's id (see `opsconsole agents`).
        id: String,
    },
    /// Let a cordoned agent take work again.
    Uncordon {
        /// The agent's id.
        id: String,
    },
    /// Let the agent finish what it runs, give it nothing new, then let it go (it exits).
    Drain {
        /// The agent's id.
        id: String,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// The console's loop on an in-memory terminal fed with log lines, then idle: frame times
    /// (beside a plain-paragraph reference), CPU under load and CPU while idle.
    Console {
        /// Log lines per second.
        #[arg(long, default_value_t = 10_000)]
        rate: usize,
        /// Seconds of load.
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        /// Seconds of idle measured afterwards.
        #[arg(long, default_value_t = 10.0)]
        idle: f64,
        /// Terminal width.
        #[arg(long, default_value_t = 120)]
        width: u16,
        /// Terminal height.
        #[arg(long, default_value_t = 40)]
        height: u16,
    },
    /// N trivial tasks through the whole engine beside N bare spawns of `true`.
    Throughput {
        /// Number of tasks [default: 1000; 4000 with --monitors, where the share of the
        /// monitors' checks that falls in a run of under a second swings the figure].
        #[arg(long)]
        tasks: Option<usize>,
        /// Parallelism of both sides.
        #[arg(long, default_value_t = 8)]
        slots: usize,
        /// Passes per side; the best of each is reported.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Drive the runs through a principal process (`opsconsole principal`) over its local
        /// socket, beside an embedded principal, instead of beside bare spawns.
        #[arg(long, conflicts_with = "agents")]
        via_principal: bool,
        /// Run the tasks on K agent processes (`opsconsole agent`) on loopback, the slots
        /// split among them, beside the in-process pool with the same slots.
        #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=64))]
        agents: Option<u32>,
        /// Run N tcp monitors (every 60s, against local targets the bench starts) on the
        /// principal, beside the same run on one without monitors: both rates, their ratio,
        /// and `status` request latency (idle and while a run goes) on each.
        #[arg(long, value_name = "N", conflicts_with_all = ["via_principal", "agents"])]
        monitors: Option<usize>,
    },
    /// Status requests per second and p99 from N concurrent clients over ZeroMQ (TCP loopback),
    /// beside the in-process client under the same load.
    Api {
        /// Concurrent clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Requests per client.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
    },
    /// Trigger-to-completed latency of a one-task run beside a bare spawn-and-wait.
    Latency {
        /// Number of runs.
        #[arg(long, default_value_t = 200)]
        runs: usize,
    },
    /// N services (`sleep 3600`) under one one_for_one supervisor: time until all run,
    /// crash-to-restarted latency under random SIGKILLs beside a bare spawn-and-wait, and the
    /// principal's idle CPU and memory with all of them up.
    Supervise {
        /// Number of services.
        #[arg(long, default_value_t = 1000)]
        services: usize,
        /// Random kills to time.
        #[arg(long, default_value_t = 200)]
        kills: usize,
    },
    /// N monitors against local targets started by the bench, loaded from one file with
    /// `targets:` (CSV) and run by the monitor actor for a measured window, beside a raw async
    /// loop of the same probes with the same concurrency (asked the same rate, then flat
    /// out). Prints JSON: count, load_s, asked_per_s, checks_per_s, lag_ms {p50, p99},
    /// anon_bytes_per_monitor, cpu_s_per_1000_checks, disk_bytes_per_result, ratio_to_raw
    /// (the actor's rate over the raw loop's at the same asked rate), cpu_ratio_to_raw (the
    /// raw loop's CPU per check over the actor's) and more. Progress goes to stderr.
    Monitors(BenchMonitorsArgs),
    /// Peak memory with many tasks running at once.
    Rss {
        /// Number of tasks.
        #[arg(long, default_value_t = 500)]
        tasks: usize,
        /// Slots (all tasks at once by default).
        #[arg(long, default_value_t = 500)]
        slots: usize,
        /// Seconds each task sleeps.
        #[arg(long, default_value_t = 1.0)]
        sleep: f64,
    },
}

/// Options of `bench monitors`.
#[derive(clap::Args)]
struct BenchMonitorsArgs {
    /// Number of monitors.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Interval of every monitor; the rate asked of the actor is count / every.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    every: Duration,
    /// What the monitors check: tcp (the target accepts and closes), http (a minimal
    /// HTTP/1.1 200 with keep-alive) or https (the same over TLS, self-signed).
    #[arg(long, value_enum, default_value_t = BenchKindArg::Tcp)]
    kind: BenchKindArg,
    /// The measured window of the actor (after --warmup).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// How long the actor runs before the window opens (connections made, first checks).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    warmup: Duration,
    /// The measured window of each run of the raw loop (the reference, run before the
    /// monitors load: once at the asked rate, once flat out).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    raw_duration: Duration,
    /// Listeners the monitors are spread over, each on its own address 127.0.x.y.
    #[arg(long, default_value_t = 256)]
    listeners: usize,
    /// Timeout of each check (raw loop included).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
}

/// `bench monitors --kind`.
#[derive(Clone, Copy, ValueEnum)]
enum BenchKindArg {
    /// Connect; the target accepts and closes.
    Tcp,
    /// GET over HTTP/1.1 with keep-alive.
    Http,
    /// GET over TLS (self-signed; the monitors skip verification).
    Https,
}

#[derive(Clone, Copy, ValueEnum)]
enum StreamArg {
    Stdout,
    Stderr,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!(
            "`{s}` is not KEY=VALUE (example: --param region=eu)"
        )),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    opsconsole::spec::parse_duration(s)
}

fn parse_heartbeat(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(50) || d > Duration::from_secs(60) {
        return Err(format!("`{s}`: a heartbeat is between 50ms and 60s"));
    }
    Ok(d)
}

/// Tasks of `bench throughput` unless `--tasks` says otherwise.
const THROUGHPUT_TASKS: usize = 1000;
/// Tasks of `bench throughput --monitors`: a run of 1,000 lasts under a second here, too short
/// for the monitors' share of the CPU in it to be measured rather than sampled.
const THROUGHPUT_TASKS_WITH_MONITORS: usize = 4000;

fn main() -> ExitCode {
    // The task watchdog is this binary too; it must not parse the user-facing CLI.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == opsconsole::agent::reaper::REAP_COMMAND)
    {
        let grace = args.get(2).and_then(|g| g.to_str()).unwrap_or("");
        let instance = args.get(3).and_then(|i| i.to_str()).unwrap_or("");
        return ExitCode::from(opsconsole::agent::reaper::watchdog(grace, instance));
    }
    let cli = Cli::parse();
    let dirs = Dirs {
        workflows: cli.workflows,
        data: cli.data_dir,
    };
    let curve_files = match (cli.server_key, cli.key) {
        (Some(server_key), Some(key)) => Some((server_key, key)),
        (None, None) => None,
        (Some(_), None) => {
            return cli::fail(
                cli::EXIT_INVALID,
                "--server-key needs --key too: this client's NAME.secret (`opsconsole keys new NAME`)",
            );
        }
        (None, Some(_)) => {
            return cli::fail(
                cli::EXIT_INVALID,
                "--key needs --server-key too: the principal's public key (its data dir's server.pub, \
                 also printed when it starts)",
            );
        }
    };
    let remote_principal = cli.principal.clone();
    if let Some(endpoint) = &cli.principal {
        let curve = match &curve_files {
            None => None,
            Some((server_key, key)) => {
                match opsconsole::protocol::zmq::keys::client_security(key, server_key) {
                    Ok(security) => Some(security),
                    Err(e) => {
                        return cli::fail(cli::EXIT_INVALID, format!("--server-key/--key: {e}"));
                    }
                }
            }
        };
        let serving = matches!(
            cli.command,
            Some(Cmd::Principal { .. }) | Some(Cmd::Agent { .. })
        );
        if !serving {
            opsconsole::principal::bootstrap::set_remote(
                opsconsole::principal::bootstrap::Remote {
                    endpoint: endpoint.clone(),
                    curve,
                },
            );
        }
    }
    let command = cli.command.unwrap_or(Cmd::Console(cli.console));
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPSCONSOLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let full_screen = matches!(command, Cmd::Console(_) | Cmd::Attach { .. });
    if full_screen && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        // The console owns the screen: diagnostics go to a file in the data dir instead.
        let file = std::fs::create_dir_all(&dirs.data).and_then(|_| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dirs.data.join("console.log"))
        });
        match file {
            Ok(f) => tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .init(),
            Err(_) => tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("off"))
                .init(),
        }
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return cli::fail(EXIT_FAILED, format!("cannot start the async runtime: {e}")),
    };
    let network = Network {
        principal: remote_principal,
        curve_files,
    };
    runtime.block_on(dispatch(dirs, command, network))
}

/// Exit 2 for a retired token option, saying what replaces it.
fn retired_tokens(option: &str) -> ExitCode {
    cli::fail(
        cli::EXIT_INVALID,
        format!(
            "{option}: {}",
            opsconsole::protocol::zmq::auth::TOKENS_RETIRED
        ),
    )
}

/// The global network flags: `--principal`, and `--server-key` with `--key`.
struct Network {
    principal: Option<String>,
    curve_files: Option<(String, PathBuf)>,
}

async fn dispatch(dirs: Dirs, command: Cmd, network: Network) -> ExitCode {
    let Network {
        principal: remote_principal,
        curve_files,
    } = network;
    match command {
        Cmd::Console(args) => {
            let opts = opsconsole::tui::ConsoleOptions {
                theme: args.theme,
                themes_dir: PathBuf::from("themes"),
                read_only: args.read_only,
                slots: args.pool.slots(),
                kill_grace: args.pool.kill_grace,
                attach: None,
            };
            opsconsole::tui::console(&dirs, opts).await
        }
        Cmd::Keys {
            action: KeysCmd::New { name },
        } => cli::keys::new(&name),
        Cmd::Attach {
            token_file: Some(_),
            ..
        }
        | Cmd::Agent {
            token_file: Some(_),
            ..
        } => retired_tokens("--token-file"),
        Cmd::Principal {
            token_file,
            viewer_token_file,
            ..
        } if token_file.is_some() || viewer_token_file.is_some() => {
            retired_tokens(if token_file.is_some() {
                "--token-file"
            } else {
                "--viewer-token-file"
            })
        }
        Cmd::Attach {
            endpoint,
            token_file: None,
            theme,
            read_only,
        } => {
            let opts = opsconsole::tui::ConsoleOptions {
                theme,
                themes_dir: PathBuf::from("themes"),
                read_only,
                slots: 1,
                kill_grace: Duration::from_secs(5),
                attach: Some(opsconsole::tui::Attach {
                    endpoint,
                    curve: curve_files.clone(),
                }),
            };
            opsconsole::tui::console(&dirs, opts).await
        }
        // With --principal, the files that principal has loaded, checked there.
        Cmd::Validate { paths } if paths.is_empty() && remote_principal.is_some() => {
            cli::validate::validate_loaded(&dirs).await
        }
        Cmd::Validate { paths } => cli::validate::validate(&paths, &dirs.workflows),
        Cmd::Check { target, json } => cli::check::check(&target, &dirs.workflows, json).await,
        Cmd::Run {
            name,
            params,
            wait,
            pool,
        } => {
            let opts = cli::run::RunOptions {
                workflow: name,
                params: params.into_iter().collect::<BTreeMap<_, _>>(),
                wait,
                slots: pool.slots(),
                kill_grace: pool.kill_grace,
                retry_of: None,
            };
            cli::run::run(&dirs, opts).await
        }
        Cmd::Retry { run_id, wait, pool } => {
            let opts = cli::run::RunOptions {
                workflow: String::new(),
                params: BTreeMap::new(),
                wait,
                slots: pool.slots(),
                kill_grace: pool.kill_grace,
                retry_of: Some(run_id),
            };
            cli::run::run(&dirs, opts).await
        }
        Cmd::Principal {
            listen,
            keys,
            agent_heartbeat,
            remote_only,
            pool,
            ping_listen,
            ..
        } => {
            let opts = cli::principal::PrincipalOptions {
                listen,
                keys,
                slots: if remote_only { 0 } else { pool.slots() },
                kill_grace: pool.kill_grace,
                agent_heartbeat,
                ping_listen,
            };
            cli::principal::principal(&dirs, opts).await
        }
        Cmd::Agent {
            token_file: None,
            slots,
            labels,
            id,
            kill_grace,
        } => {
            let labels = match cli::agent::labels(&labels) {
                Ok(l) => l,
                Err(e) => return cli::fail(cli::EXIT_INVALID, e),
            };
            let Some(principal) = remote_principal else {
                return cli::fail(
                    cli::EXIT_INVALID,
                    "agent needs --principal ENDPOINT (or OPSCONSOLE_PRINCIPAL): where the \
                     principal listens (`opsconsole principal --listen ENDPOINT`)",
                );
            };
            let curve = match &curve_files {
                None => None,
                Some((server_key, key)) => {
                    match opsconsole::protocol::zmq::keys::client_security(key, server_key) {
                        Ok(security) => Some(security),
                        Err(e) => {
                            return cli::fail(
                                cli::EXIT_INVALID,
                                format!("--server-key/--key: {e}"),
                            );
                        }
                    }
                }
            };
            let opts = opsconsole::agent::remote::AgentOptions {
                principal,
                curve,
                slots: slots
                    .map(|s| s as usize)
                    .unwrap_or_else(opsconsole::agent::default_slots),
                labels,
                id,
                data_dir: dirs.data.clone(),
                workdir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
                kill_grace,
            };
            cli::agent::agent(opts).await
        }
        Cmd::Svc { action, json } => {
            use opsconsole::protocol::service::ServiceAction;
            let (path, action) = match action {
                None => (None, None),
                Some(SvcCmd::Status { path }) => (path, None),
                Some(SvcCmd::Start { path }) => (Some(path), Some(ServiceAction::Start)),
                Some(SvcCmd::Stop { path }) => (Some(path), Some(ServiceAction::Stop)),
                Some(SvcCmd::Restart { path }) => (Some(path), Some(ServiceAction::Restart)),
            };
            cli::svc::svc(&dirs, path, action, json).await
        }
        Cmd::Agents { action, json } => {
            let action = match action {
                None => cli::agent::AgentsAction::List { json },
                Some(AgentsCmd::Cordon { id }) => cli::agent::AgentsAction::Cordon(id, true),
                Some(AgentsCmd::Uncordon { id }) => cli::agent::AgentsAction::Cordon(id, false),
                Some(AgentsCmd::Drain { id }) => cli::agent::AgentsAction::Drain(id),
            };
            cli::agent::agents(&dirs, action).await
        }
        Cmd::Status { json } => cli::control::status(&dirs, json).await,
        Cmd::Monitors {
            state,
            tag,
            name,
            json,
        } => {
            let filter = opsconsole::protocol::monitor::MonitorFilter { state, tag, name };
            cli::monitors::monitors(&dirs, filter, json).await
        }
        Cmd::Incidents { open, json } => cli::monitors::incidents(&dirs, open, json).await,
        Cmd::Monitor { action } => {
            use cli::monitors::MonitorCmd;
            use opsconsole::protocol::monitor::MonitorAction;
            let control = |name, action| MonitorCmd::Control { name, action };
            let cmd = match action {
                MonitorSub::Show { name, json } => MonitorCmd::Show { name, json },
                MonitorSub::Pause { name } => control(name, MonitorAction::Pause),
                MonitorSub::Resume { name } => control(name, MonitorAction::Resume),
                MonitorSub::Check { name } => control(name, MonitorAction::Check),
            };
            cli::monitors::monitor(&dirs, cmd).await
        }
        Cmd::Ping {
            name,
            fail,
            message,
        } => cli::monitors::ping(&dirs, name, !fail, message).await,
        Cmd::Cancel { run_id } => cli::control::cancel(&dirs, run_id).await,
        Cmd::Pause { workflow } => cli::control::set_paused(&dirs, workflow, true).await,
        Cmd::Resume { workflow } => cli::control::set_paused(&dirs, workflow, false).await,
        Cmd::History {
            actions: true,
            limit,
            json,
            ..
        } => cli::history::actions(&dirs, limit, json).await,
        Cmd::History {
            service: Some(path),
            limit,
            json,
            ..
        } => cli::history::service_history(&dirs, &path, limit, json).await,
        Cmd::History {
            workflow,
            limit,
            json,
            service: None,
            ..
        } => cli::history::history(&dirs, RunFilter { workflow, limit }, json).await,
        Cmd::Logs {
            run_id,
            service,
            task,
            stream,
            json,
            follow,
        } => {
            let stream = stream.map(|s| match s {
                StreamArg::Stdout => Stream::Stdout,
                StreamArg::Stderr => Stream::Stderr,
            });
            match (run_id, service) {
                (_, Some(path)) => cli::history::service_logs(&dirs, &path, json, follow).await,
                (Some(run_id), None) => {
                    cli::history::logs(&dirs, run_id, LogFilter { task, stream }, json, follow)
                        .await
                }
                (None, None) => cli::fail(cli::EXIT_INVALID, "give a RUN_ID or --service PATH"),
            }
        }
        Cmd::Bench(b) => {
            // `bench console` prints one line, as its callers expect.
            let one_line = matches!(b, BenchCmd::Console { .. });
            let result = match b {
                BenchCmd::Throughput {
                    tasks,
                    slots,
                    repeat,
                    monitors: Some(n),
                    ..
                } => {
                    let tasks = tasks.unwrap_or(THROUGHPUT_TASKS_WITH_MONITORS);
                    opsconsole::bench::throughput_with_monitors(tasks, slots, repeat, n).await
                }
                BenchCmd::Throughput {
                    tasks,
                    slots,
                    repeat,
                    agents: Some(k),
                    ..
                } => {
                    let tasks = tasks.unwrap_or(THROUGHPUT_TASKS);
                    opsconsole::bench::throughput_agents(tasks, slots, repeat, k as usize).await
                }
                BenchCmd::Throughput {
                    tasks,
                    slots,
                    repeat,
                    via_principal: true,
                    ..
                } => {
                    let tasks = tasks.unwrap_or(THROUGHPUT_TASKS);
                    opsconsole::bench::throughput_via_principal(tasks, slots, repeat).await
                }
                BenchCmd::Throughput {
                    tasks,
                    slots,
                    repeat,
                    via_principal: false,
                    ..
                } => {
                    opsconsole::bench::throughput(tasks.unwrap_or(THROUGHPUT_TASKS), slots, repeat)
                        .await
                }
                BenchCmd::Api { clients, requests } => {
                    opsconsole::bench::api(clients, requests).await
                }
                BenchCmd::Latency { runs } => opsconsole::bench::latency(runs).await,
                BenchCmd::Supervise { services, kills } => {
                    opsconsole::bench::supervise(services, kills).await
                }
                BenchCmd::Rss {
                    tasks,
                    slots,
                    sleep,
                } => opsconsole::bench::rss(tasks, slots, sleep).await,
                BenchCmd::Monitors(a) => {
                    use opsconsole::bench::targets::TargetKind;
                    opsconsole::bench::monitors(opsconsole::bench::MonitorBench {
                        count: a.count,
                        every: a.every,
                        kind: match a.kind {
                            BenchKindArg::Tcp => TargetKind::Tcp,
                            BenchKindArg::Http => TargetKind::Http,
                            BenchKindArg::Https => TargetKind::Https,
                        },
                        duration: a.duration,
                        warmup: a.warmup,
                        raw_duration: a.raw_duration,
                        listeners: a.listeners,
                        timeout: a.timeout,
                    })
                    .await
                }
                BenchCmd::Console {
                    rate,
                    secs,
                    idle,
                    width,
                    height,
                } => opsconsole::tui::bench::console(rate, secs, idle, width, height).await,
            };
            match result {
                Ok(v) if one_line => {
                    opsconsole::say!("{v}");
                    ExitCode::SUCCESS
                }
                Ok(v) => {
                    opsconsole::say!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => cli::fail(EXIT_FAILED, format!("benchmark failed: {e:#}")),
            }
        }
    }
}
