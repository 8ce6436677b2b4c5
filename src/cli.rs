//! The command line: one binary, one subcommand per job. Exit codes follow the contract:
//! 0 done, 1 the operation failed, 2 bad usage, bad config or bad input file. Every
//! argument carries its help text: `flowgate SUB --help`, the completions and the man
//! page are made from these definitions.

use std::path::PathBuf;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Exit code: the operation failed or was aborted.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage, bad config or bad input file.
pub const EXIT_BAD_INPUT: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "flowgate",
    version,
    about = "A Layer-7 proxy that moves a region's traffic safely",
    after_help = "Exit codes: 0 done; 1 the operation failed or was aborted (and rolled back); 2 bad usage, bad config or bad input file."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve {
        /// The static config (TOML).
        #[arg(short, long, default_value = "config/flowgate.toml")]
        config: PathBuf,
        /// Once every listener is bound, write the bound addresses here as JSON (atomically:
        /// a temporary file in the same folder, then a rename), `null` for a listener not
        /// configured; with port 0 in the config, this is how a script learns the ports.
        #[arg(long, value_name = "PATH")]
        addr_file: Option<PathBuf>,
    },
    /// GET a URL on loopback or anywhere and exit 0 on a 2xx answer: the container
    /// health check, for images without curl.
    Probe {
        /// The URL to GET (http:// only), e.g. http://127.0.0.1:9901/healthz; anything
        /// else is bad usage (exit 2).
        url: String,
        /// How long to wait for the answer before exiting 1.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Three regions on loopback, steady load, and a real evacuate / bypass / restore.
    Demo {
        /// How long the whole show takes.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Print the dashboards, a fleet file and the admin token before the show, and keep
        /// the fleet and its client load up after it until Ctrl-C or SIGTERM.
        #[arg(long)]
        keep_running: bool,
        /// The demo's folder (configs, fleet file, table, the proxies' state), created if
        /// missing and kept afterwards; default: a temporary folder removed at the end.
        #[arg(long, env = "FLOWGATE_DEMO_DIR", value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Check a config and/or a traffic table without starting anything. With both, the
    /// table is checked against the config's regions and origins.
    Validate {
        /// A static config (TOML) to check, as `serve --config` would read it.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// A traffic table (JSON) to check, as `push` would send it.
        #[arg(short, long)]
        table: Option<PathBuf>,
    },
    /// Make an Ed25519 key pair for signed tables: FILE (private, mode 0600) and FILE.pub
    /// (the public key for `[admin] table_keys`).
    Keygen {
        /// Where to write the private key; never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Push one table to every proxy of the fleet; exit 1 unless all of them applied it.
    Push {
        /// The fleet file (TOML): every region's proxies' admin addresses.
        #[arg(long)]
        fleet: PathBuf,
        /// Sign the table with this key (proxies with `[admin] table_keys` need it).
        #[arg(long, env = "FLOWGATE_SIGNING_KEY")]
        signing_key: Option<PathBuf>,
        /// The traffic table (JSON).
        table: PathBuf,
        /// Per-proxy timeout.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// JSON results instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Every proxy's table version, readiness, load, errors and view of the regions.
    Status {
        /// The fleet file (TOML): every region's proxies' admin addresses.
        #[arg(long)]
        fleet: PathBuf,
        /// The whole fleet's status as one JSON document instead of a table.
        #[arg(long)]
        json: bool,
        /// Per-proxy timeout.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Move a region's traffic to the others in gated steps.
    Evacuate {
        /// The region to empty (a `[regions.NAME]` of the fleet file).
        region: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Bring a region's traffic back to the shares before its evacuation.
    Restore {
        /// The region to bring traffic back to.
        region: String,
        #[command(flatten)]
        run: RunArgs,
        /// The table whose shares to restore (default: found in the proxies' history).
        #[arg(long)]
        to: Option<PathBuf>,
    },
    /// Watch the fleet and evacuate a failing region by itself (`pause` / `resume` flip
    /// its switch).
    Autopilot(AutopilotCmd),
    /// Evacuate, hold, restore, and write a report of what clients saw.
    Exercise {
        /// The region to evacuate, hold and restore.
        region: String,
        #[command(flatten)]
        run: RunArgs,
        /// How long to hold the region evacuated.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        hold: Duration,
        /// Write a self-contained HTML report here.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Write a shell completion script to stdout, e.g.
    /// `flowgate completions bash > /etc/bash_completion.d/flowgate`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Write the man page (roff) to stdout, e.g. `flowgate man > flowgate.1`, or a
    /// subcommand's, e.g. `flowgate man evacuate > flowgate-evacuate.1`.
    Man {
        /// The subcommand whose page to write (default: the whole command's).
        command: Option<String>,
    },
}

/// `flowgate autopilot`: run it, or flip its pause switch.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AutopilotCmd {
    /// Flip the pause switch instead of running.
    #[command(subcommand)]
    pub switch: Option<AutopilotSwitch>,
    #[command(flatten)]
    pub run: AutopilotArgs,
}

/// `pause` and `resume`.
#[derive(Debug, Clone, Subcommand)]
pub enum AutopilotSwitch {
    /// Stop acting (decisions go on being logged); survives a restart of the autopilot.
    Pause(SwitchArgs),
    /// Act again.
    Resume(SwitchArgs),
}

/// Where the pause switch is.
#[derive(Debug, Clone, Args)]
pub struct SwitchArgs {
    /// The fleet file the autopilot runs with (its state file lives beside it).
    #[arg(long)]
    pub fleet: PathBuf,
    /// The autopilot's state file, when it runs with `--state-file`.
    #[arg(long, env = "FLOWGATE_AUTOPILOT_STATE")]
    pub state_file: Option<PathBuf>,
    /// Ask a running autopilot at this address (host:port) instead of writing the state
    /// file (it needs the fleet file's admin token).
    #[arg(long)]
    pub autopilot: Option<String>,
}

/// The options of a running autopilot.
#[derive(Debug, Clone, Args)]
pub struct AutopilotArgs {
    /// The fleet file: every region's proxies and capacity.
    #[arg(long)]
    pub fleet: Option<PathBuf>,
    /// Its listener: /healthz, /metrics, /v1/decisions, the page at /.
    #[arg(long, default_value = "127.0.0.1:9911")]
    pub listen: String,
    /// How often it reads the fleet.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// How long a region must look failing before anything moves.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub confirm: Duration,
    /// Never evacuate when fewer healthy regions than this would remain.
    #[arg(long, default_value_t = 2)]
    pub min_healthy_regions: usize,
    /// Never plan a region above this share of its capacity.
    #[arg(long, default_value_t = 0.8)]
    pub max_utilization: f64,
    /// Pushes of an evacuation or restore.
    #[arg(long, default_value_t = 5)]
    pub steps: u32,
    /// Wait between steps, then gate on the receiving regions.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub step_interval: Duration,
    /// Restore an evacuated region once it has looked healthy this long (default: never,
    /// it notifies).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub auto_restore: Option<Duration>,
    /// No new action for this long after one ends.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub cooldown: Duration,
    /// Decide and log, push nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Command run before the first push (pre-scaling); gets FLOWGATE_REGION,
    /// FLOWGATE_PHASE and, when capacity is short, FLOWGATE_MISSING_CAPACITY.
    #[arg(long)]
    pub before_shift: Option<String>,
    /// Command run after an evacuation or restore completes (flip DNS).
    #[arg(long)]
    pub dns: Option<String>,
    /// Command run for every decision, the decision as JSON on stdin (paging, chat).
    #[arg(long)]
    pub notify: Option<String>,
    /// During a move: roll back when a receiving region's error ratio rises above this.
    #[arg(long, default_value_t = 0.01)]
    pub max_error_ratio: f64,
    /// A region's error ratio at or above this is a failure signal.
    #[arg(long, default_value_t = 0.05)]
    pub failing_error_ratio: f64,
    /// Where the pause switch and the autopilot's own actions are kept (default: beside
    /// the fleet file, FILE.autopilot-state.json).
    #[arg(long, env = "FLOWGATE_AUTOPILOT_STATE")]
    pub state_file: Option<PathBuf>,
    /// Per-proxy timeout.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Sign every table it pushes with this key.
    #[arg(long, env = "FLOWGATE_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
}

/// The options `evacuate`, `restore` and `exercise` share.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The fleet file (TOML): every region's proxies' admin addresses and capacity.
    #[arg(long)]
    pub fleet: PathBuf,
    /// Pushes from the current shares to the end state.
    #[arg(long, default_value_t = 10)]
    pub steps: u32,
    /// Wait between steps, then gate on every proxy's status.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Never plan a region above this share of its capacity.
    #[arg(long, default_value_t = 0.8)]
    pub max_utilization: f64,
    /// Roll back when a region's error ratio rises above this.
    #[arg(long, default_value_t = 0.01)]
    pub max_error_ratio: f64,
    /// Show the plan, push nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask before the first push.
    #[arg(long)]
    pub yes: bool,
    /// Machine-readable step records on stdout.
    #[arg(long)]
    pub json: bool,
    /// Command run before the first push (pre-scaling); failure stops the run.
    #[arg(long)]
    pub before_shift: Option<String>,
    /// Command run after the last step (flip DNS); gets FLOWGATE_REGION and FLOWGATE_PHASE.
    #[arg(long)]
    pub dns: Option<String>,
    /// Per-proxy timeout.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Sign every table it pushes with this key.
    #[arg(long, env = "FLOWGATE_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// Take over from another operation whose claim of the fleet still holds.
    #[arg(long)]
    pub force: bool,
}
