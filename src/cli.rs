//! The command line: argument parsing, the top-level error that owns the
//! exit codes, and the glue that runs one stage after another.
//!
//! The exit codes themselves live in [`crate::exit`]; a run otherwise
//! exits with its processes' status (`docs/supervision.md`).

use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::diagnostic::Diagnostic;
use crate::exit::ExitCode;
use crate::plan::{self, Limits, PlanError, Planned};
use crate::topology::{Topology, TopologyError};

/// Declarative process-topology orchestrator for Linux.
#[derive(Debug, Parser)]
#[command(
    name = "ipc-run",
    version,
    about,
    long_about = None,
    propagate_version = true,
    override_usage = "ipc-run [OPTIONS] <FILE>\n       ipc-run [OPTIONS] <COMMAND>"
)]
pub(crate) struct Cli {
    /// When to colour diagnostics and logs.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
    /// The command to run (`ipc-run FILE` is `ipc-run run FILE`).
    #[command(subcommand)]
    pub command: Command,
}

/// Global options that take a value, so that their value is not mistaken
/// for the command.
const GLOBAL_OPTIONS_WITH_VALUE: [&str; 1] = ["--color"];

/// `ipc-run [OPTIONS] FILE [RUN OPTIONS]` becomes `ipc-run [OPTIONS] run FILE
/// [RUN OPTIONS]`: the first word that is neither a global option nor a
/// command name is a topology file.
pub(crate) fn with_default_command(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let command = Cli::command();
    let is_command = |word: &str| {
        word == "help"
            || command
                .get_subcommands()
                .any(|c| c.get_name() == word || c.get_all_aliases().any(|a| a == word))
    };
    let run = command.find_subcommand("run");
    // Whether `name` (`--tap`, `-q`) is an option of `run` taking a value.
    let run_option_takes_value = |name: &str| {
        run.and_then(|run| {
            run.get_arguments().find(|a| {
                a.get_long()
                    .is_some_and(|l| name.strip_prefix("--") == Some(l))
                    || a.get_short().is_some_and(|c| name == format!("-{c}"))
            })
        })
        .is_some_and(|a| a.get_action().takes_values())
    };
    // Where the first option of `run` stands, if one comes before any word.
    let mut first_run_option = None;
    let mut i = 1;
    while i < args.len() {
        let Some(word) = args[i].to_str() else { break };
        if word == "--" {
            break;
        }
        if GLOBAL_OPTIONS_WITH_VALUE.contains(&word) {
            i += 2;
            continue;
        }
        if word.starts_with('-') {
            // Flags (`--help`, `-V`, `--color=never`) stay as they are; an
            // option of `run` before the file also means `run`.
            let name = word.split('=').next().unwrap_or(word);
            let global = command
                .get_arguments()
                .any(|a| a.get_long().is_some_and(|l| format!("--{l}") == name))
                || matches!(name, "-h" | "--help" | "-V" | "--version");
            if !global {
                first_run_option.get_or_insert(i);
                if !word.contains('=') && run_option_takes_value(name) {
                    i += 1;
                }
            }
            i += 1;
            continue;
        }
        if word == "run" {
            // `ipc-run -q run FILE`: the options written before `run` are
            // its own; move them after it.
            let Some(k) = first_run_option else {
                return args;
            };
            let mut args = args;
            let run_word = args.remove(i);
            args.insert(k, run_word);
            return args;
        }
        if is_command(word) || (!word.contains(['/', '.']) && !std::path::Path::new(word).exists())
        {
            // A command, or a word that looks like a mistyped one rather
            // than a file: clap reports the latter as a usage error.
            return args;
        }
        let mut args = args;
        args.insert(first_run_option.unwrap_or(i), "run".into());
        return args;
    }
    let mut args = args;
    if let Some(k) = first_run_option {
        // Options of `run` and no file: let `run` say what is missing.
        args.insert(k, "run".into());
    }
    args
}

#[cfg(test)]
mod default_command_tests {
    use super::with_default_command;

    fn rewrite(line: &str) -> String {
        let args = line.split(' ').map(std::ffi::OsString::from).collect();
        let out: Vec<String> = with_default_command(args)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        out.join(" ")
    }

    #[test]
    fn a_file_means_run() {
        assert_eq!(rewrite("ipc-run t.toml"), "ipc-run run t.toml");
        assert_eq!(rewrite("ipc-run -q t.toml"), "ipc-run run -q t.toml");
        assert_eq!(
            rewrite("ipc-run --color never --tap e=f t.toml"),
            "ipc-run --color never run --tap e=f t.toml"
        );
    }

    #[test]
    fn run_options_before_run_are_moved_after_it() {
        assert_eq!(rewrite("ipc-run -q run t.toml"), "ipc-run run -q t.toml");
        assert_eq!(
            rewrite("ipc-run --tap e=f -q run t.toml"),
            "ipc-run run --tap e=f -q t.toml"
        );
    }

    #[test]
    fn commands_and_mistyped_commands_are_left_to_clap() {
        assert_eq!(rewrite("ipc-run check t.toml"), "ipc-run check t.toml");
        assert_eq!(rewrite("ipc-run run t.toml"), "ipc-run run t.toml");
        assert_eq!(rewrite("ipc-run chekc t.toml"), "ipc-run chekc t.toml");
        assert_eq!(rewrite("ipc-run --version"), "ipc-run --version");
    }
}

/// Options of `ipc-run run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Shared planning options.
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Give processes whose stdin is not wired ipc-run's own stdin instead
    /// of /dev/null.
    #[arg(long)]
    pub stdin: bool,
    /// Don't print the per-process summary at the end.
    #[arg(long, short)]
    pub quiet: bool,
    /// How the summary at the end is printed on stderr: lines, or one
    /// JSON object (docs/supervision.md, "Exit status").
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text, value_name = "FORMAT")]
    pub summary_format: SummaryFormat,
    /// Directory that holds run directories (default:
    /// $XDG_RUNTIME_DIR/ipc-run, else /tmp/ipc-run-<uid>).
    #[arg(long, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// Also append each process's output, unprefixed, to
    /// DIR/<name>.stdout.log and DIR/<name>.stderr.log (kept after the run);
    /// DIR must exist and be yours, writable by no one else.
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Rotate a log file before a line that would take it past SIZE
    /// (`10MiB`); the old file becomes NAME.log.1 (default: never).
    #[arg(long, value_name = "SIZE", requires = "log_dir", value_parser = parse_file_size)]
    pub log_max_size: Option<u64>,
    /// Rotated log files kept per stream (NAME.log.1 … NAME.log.N).
    #[arg(long, value_name = "N", default_value_t = 5, requires = "log_max_size")]
    pub log_keep: u32,
    /// Start each relayed line, and each line in the log files, with its
    /// time (RFC 3339, UTC, milliseconds).
    #[arg(long)]
    pub timestamps: bool,
    /// How relayed lines are printed: `name | line` on ipc-run's stdout and
    /// stderr, or one JSON object per line, all on stdout.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,
    /// FILE is a JSON plan (`ipc-run plan FILE --format json`), run as it
    /// is once checked against this host's limits.
    #[arg(long = "plan", conflicts_with_all = ["tap", "limits", "profiles"])]
    pub from_plan: bool,
    /// Keep the last SIZE of each process's output in memory for
    /// `ipc-run logs`; 0 keeps none, and relays at full speed. Default: 0
    /// in the foreground (the output is on ipc-run's stdout), 64KiB with
    /// --detach (where the output goes nowhere else).
    #[arg(long, value_name = "SIZE", value_parser = parse_log_memory)]
    pub log_memory: Option<usize>,
    /// Start the run in the background, return once every process is ready
    /// (or fail with the reason) and print the run id (docs/operate.md).
    /// Its processes' output goes to --log-dir when given, else nowhere.
    #[arg(long, conflicts_with = "stdin")]
    pub detach: bool,
    /// The background half of --detach: write `ready RUN_ID` (or why the
    /// run failed) to stdin, a socket to the waiting `run --detach`.
    #[arg(long, hide = true)]
    pub announce_on_stdin: bool,
    /// Run only the processes of host group GROUP of a placed plan
    /// (docs/distributed.md, "Running one group").
    #[arg(long, value_name = "GROUP")]
    pub host: Option<String>,
    /// Where group GROUP runs: its cross-edge listeners are reached at
    /// HOST (a name or an address; repeatable, one per group reached).
    #[arg(long = "peer", value_name = "GROUP=HOST", requires = "host")]
    pub peers: Vec<String>,
    /// The address this group's cross-edge listeners bind.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "0.0.0.0",
        requires = "host"
    )]
    pub bind_address: std::net::IpAddr,
    /// What runs the topology: this ipc-run (`local`), or one Slurm job
    /// (`slurm`, the same as `ipc-run slurm FILE`, taking its options).
    #[arg(long, value_enum, default_value_t = RunEngine::Local, value_name = "ENGINE")]
    pub engine: RunEngine,
    /// Options of `--engine slurm`.
    #[command(flatten, next_help_heading = "Options of --engine slurm")]
    pub slurm: SlurmJobArgs,
}

impl RunArgs {
    /// Refuses options that the chosen engine does not take: the Slurm
    /// job's without `--engine slurm`, and with it those of a local run
    /// (`ipc-run slurm` has none of them; silently dropping one would run
    /// something else than asked).
    fn check_engine(&self) -> Result<(), clap::Error> {
        let local_only = [
            ("--stdin", self.stdin),
            ("--quiet", self.quiet),
            (
                "--summary-format",
                self.summary_format != SummaryFormat::Text,
            ),
            ("--runtime-dir", self.runtime_dir.is_some()),
            ("--log-dir", self.log_dir.is_some()),
            ("--timestamps", self.timestamps),
            ("--log-format", self.log_format != LogFormat::Text),
            ("--plan", self.from_plan),
            ("--log-memory", self.log_memory.is_some()),
            ("--detach", self.detach),
            ("--announce-on-stdin", self.announce_on_stdin),
            ("--host", self.host.is_some()),
        ];
        let message = match self.engine {
            RunEngine::Local if self.slurm.any() => {
                "the Slurm job's options (--script-only, --partition, --time, --workdir, --job-dir) need `--engine slurm`".to_owned()
            }
            RunEngine::Slurm => match local_only.iter().find(|(_, given)| *given) {
                Some((option, _)) => format!(
                    "`{option}` is an option of a local run; `--engine slurm` takes the options of `ipc-run slurm`"
                ),
                None => return Ok(()),
            },
            RunEngine::Local => return Ok(()),
        };
        Err(Cli::command().error(clap::error::ErrorKind::ArgumentConflict, message))
    }
}

/// Options shared by the commands that talk to live runs.
#[derive(Debug, Args)]
pub(crate) struct ControlArgs {
    /// Directory that holds run directories (default: both
    /// $XDG_RUNTIME_DIR/ipc-run and /tmp/ipc-run-<uid>).
    #[arg(long, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ControlFormat::Text)]
    pub format: ControlFormat,
}

/// `--format` of the control commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ControlFormat {
    /// For people.
    Text,
    /// For tools (docs/operate.md).
    Json,
}

/// `run --log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// `name | line`.
    Text,
    /// `{"time", "process", "instance", "stream", "line"}` per line.
    Json,
}

/// `run --summary-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SummaryFormat {
    /// One line per process, then the cause of the exit status.
    Text,
    /// One JSON object.
    Json,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    /// Colour when the output is a terminal and NO_COLOR is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// The caps on the work one topology may cause, for every command that
/// plans one (`reload` too).
#[derive(Debug, Clone, Args)]
pub(crate) struct Caps {
    /// Refuse a topology file larger than SIZE (bytes, or with a unit:
    /// `64MiB`, `1GiB`); a cap on the work an unexpected file causes.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_file_size)]
    pub max_file_size: u64,
    /// Refuse a topology (or JSON plan) of more than N process instances,
    /// replicas counted.
    #[arg(
        long,
        value_name = "N",
        default_value_t = plan::MAX_INSTANCES as u64,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_processes: u64,
}

/// Options shared by the commands that plan a topology.
#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    /// The topology file.
    pub file: PathBuf,
    /// Host limits to validate against: read from this host, or the fixed,
    /// documented defaults (reproducible plans).
    #[arg(long, value_enum, default_value_t = LimitsChoice::Host)]
    pub limits: LimitsChoice,
    /// Treat warnings as errors (`--deny warnings`).
    #[arg(long, value_name = "LINT", value_parser = ["warnings"])]
    pub deny: Option<String>,
    /// Copy edge EDGE's traffic to FILE through an inserted process
    /// `tap-EDGE` (repeatable; see docs/ports.md).
    #[arg(long, value_name = "EDGE=FILE", value_parser = crate::port::tap::TapSpec::parse)]
    pub tap: Vec<crate::port::tap::TapSpec>,
    /// `--max-file-size` and `--max-processes`.
    #[command(flatten)]
    pub caps: Caps,
    /// Activate profile NAME: processes with `profiles` run only when one
    /// of theirs is active (repeatable; default: the comma-separated
    /// `IPC_RUN_PROFILES`).
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    /// Split the processes into at most N host groups, keeping those joined
    /// by host-local edges together (docs/distributed.md, "Placement");
    /// without it, `host` keys on processes name the groups.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub hosts: Option<u32>,
    /// The first TCP port given to an edge between host groups that
    /// declares none; the next ones follow in edge order.
    #[arg(
        long,
        value_name = "PORT",
        default_value_t = plan::DEFAULT_BASE_PORT,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub base_port: u16,
}

impl PlanArgs {
    /// How the topology is composed: `--profile`, else `IPC_RUN_PROFILES`;
    /// `${VAR}` from ipc-run's environment.
    fn compose_options(&self) -> crate::topology::ComposeOptions {
        let profiles = if self.profiles.is_empty() {
            std::env::var("IPC_RUN_PROFILES")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        } else {
            self.profiles.clone()
        };
        crate::topology::ComposeOptions {
            profiles,
            vars: None,
        }
    }

    /// `--hosts` and `--base-port`.
    fn placement(&self) -> plan::PlacementOptions {
        plan::PlacementOptions {
            hosts: self.hosts,
            base_port: self.base_port,
        }
    }

    /// `--max-processes` as a count.
    fn max_instances(&self) -> usize {
        usize::try_from(self.caps.max_processes).unwrap_or(usize::MAX)
    }
}

/// `--max-file-size`: a size as in topology files, at least one byte.
fn parse_file_size(text: &str) -> Result<u64, String> {
    match crate::topology::ByteSize::parse(text)?.bytes() {
        0 => Err("the cap must be at least 1 byte".to_owned()),
        bytes => Ok(bytes),
    }
}

/// What a detached run keeps of each process's output for `ipc-run logs`
/// unless `--log-memory` says: its output goes nowhere else. A foreground
/// run keeps none by default: keeping costs the relay about 1.7x its time
/// on a fast writer (docs/operate.md), and its output is on the terminal.
const DETACHED_LOG_MEMORY: usize = 64 * 1024;

/// `--log-memory`: a size as in topology files; 0 keeps none.
fn parse_log_memory(text: &str) -> Result<usize, String> {
    let bytes = crate::topology::ByteSize::parse(text)?.bytes();
    usize::try_from(bytes).map_err(|_| format!("`{text}` is too large"))
}

/// `--limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LimitsChoice {
    /// Read /proc and rlimits of this host.
    Host,
    /// The documented defaults of a stock Linux host.
    Default,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a topology: create its channels, start its processes, supervise
    /// them, clean up (the default command).
    Run(RunArgs),
    /// Remove what runs killed without cleaning up left behind; live runs
    /// are never touched.
    Clean {
        /// Directory that holds run directories (default as for `run`).
        #[arg(long, value_name = "DIR")]
        runtime_dir: Option<PathBuf>,
    },
    /// Validate a topology and print its diagnostics.
    Check(PlanArgs),
    /// Run a topology as one Slurm job: each host group's ipc-run a step
    /// of one allocation (docs/distributed.md, "Slurm").
    Slurm(SlurmArgs),
    /// Print the plan: every process's fds and env, every channel's mechanism and why.
    Plan {
        /// Shared planning options.
        #[command(flatten)]
        args: PlanArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
    },
    /// Print the topology as a graph of processes and channels.
    Graph {
        /// Shared planning options.
        #[command(flatten)]
        args: PlanArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Print a JSON Schema.
    Schema {
        /// Which document.
        #[arg(value_enum, default_value_t = SchemaKind::Topology)]
        kind: SchemaKind,
    },
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
    /// Measure throughput and round-trip latency of every IPC mechanism
    /// on this host, between two processes.
    Bench(crate::bench::BenchArgs),
    /// The other process of one `bench` measurement (internal).
    #[command(hide = true)]
    BenchPeer {
        /// The measurement, as JSON.
        spec: String,
    },
    /// Port adapters for a process's `cmd`: bridge a port to stdin/stdout.
    Port(crate::port::PortArgs),
    /// List the live runs of this user.
    Ps {
        /// Where to look, and the output format.
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Show a live run's processes and channels.
    Status {
        /// Run id or topology name (default: the only live run).
        run: Option<String>,
        /// Only these processes (instance or process names).
        procs: Vec<String>,
        /// Where to look, and the output format.
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Start processes of a live run that `stop` stopped.
    Start(ActArgs),
    /// Stop processes of a live run and keep them stopped (channels kept).
    Stop(ActArgs),
    /// Restart processes of a live run, their channels kept.
    Restart {
        /// The run and the processes.
        #[command(flatten)]
        act: ActArgs,
        /// Also restart the processes that wait for them (`after`),
        /// in dependency order.
        #[arg(long)]
        with_dependents: bool,
    },
    /// Send a signal to a process of a live run (its process group).
    Signal {
        /// Run id or topology name.
        run: String,
        /// The process (instance or process name).
        process: String,
        /// The signal: SIGHUP, HUP or 1.
        signal: String,
        /// Where to look, and the output format.
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Stop a live run gracefully, as SIGTERM does.
    Down {
        /// Run id or topology name (default: the only live run).
        run: Option<String>,
        /// Where to look, and the output format.
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Show the recent output of a live run's processes (kept in memory,
    /// `run --log-memory`); `-f` follows it.
    Logs(LogsArgs),
    /// Stream a live run's lifecycle events (started, ready, exited,
    /// restarting, stopped) as they happen.
    Events {
        /// Run id or topology name (default: the only live run).
        run: Option<String>,
        /// Where to look, and the output format.
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Plan a live run's topology again and apply the difference without
    /// stopping the run: start the added processes, stop the removed,
    /// restart the changed on their kept channels (docs/operate.md).
    Reload(ReloadArgs),
    /// Write what runs the topology's host groups under another engine:
    /// Kubernetes manifests or systemd units (docs/distributed.md).
    Export {
        /// The engine.
        #[command(subcommand)]
        engine: ExportEngine,
    },
}

/// The arguments of `reload`.
#[derive(Debug, Args)]
pub(crate) struct ReloadArgs {
    /// Run id or topology name.
    pub run: String,
    /// The topology (default: the file the run was started from, with the
    /// planning options it was started with).
    pub file: Option<PathBuf>,
    /// Only print what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// FILE is a JSON plan (`ipc-run plan FILE --format json`).
    #[arg(long = "plan", requires = "file", conflicts_with_all = ["limits", "profiles"])]
    pub from_plan: bool,
    /// Host limits to validate against (default: as the run was planned).
    #[arg(long, value_enum)]
    pub limits: Option<LimitsChoice>,
    /// Activate profile NAME (repeatable; default: the run's profiles).
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    /// Treat warnings as errors (`--deny warnings`).
    #[arg(long, value_name = "LINT", value_parser = ["warnings"])]
    pub deny: Option<String>,
    /// `--max-file-size` and `--max-processes`.
    #[command(flatten)]
    pub caps: Caps,
    /// Where to look, and the output format.
    #[command(flatten)]
    pub control: ControlArgs,
}

/// The arguments of `slurm`.
#[derive(Debug, Args)]
pub(crate) struct SlurmArgs {
    /// Shared planning options.
    #[command(flatten)]
    pub plan: PlanArgs,
    /// The job's options.
    #[command(flatten)]
    pub job: SlurmJobArgs,
}

/// The job options of `slurm`, also taken by `run --engine slurm`.
#[derive(Debug, Args)]
pub(crate) struct SlurmJobArgs {
    /// Print the batch script and stop: nothing is written or submitted.
    #[arg(long)]
    pub script_only: bool,
    /// The partition to submit to (`sbatch --partition`).
    #[arg(long, value_name = "P")]
    pub partition: Option<String>,
    /// The job's time limit, in Slurm's syntax (`sbatch --time`: `30`,
    /// `1:00:00`, `2-0`).
    #[arg(long, value_name = "T")]
    pub time: Option<String>,
    /// The job's working directory, where the topology's relative paths
    /// resolve (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// The job directory to create for the plan, the batch script and the
    /// logs (default: WORKDIR/ipc-run-slurm/NAME-ID); it must not exist,
    /// and must be on a file system the job's nodes share with this one.
    #[arg(long, value_name = "DIR")]
    pub job_dir: Option<PathBuf>,
}

impl SlurmJobArgs {
    /// Whether any of them was given.
    fn any(&self) -> bool {
        self.script_only
            || self.partition.is_some()
            || self.time.is_some()
            || self.workdir.is_some()
            || self.job_dir.is_some()
    }
}

/// `run --engine`: what runs the topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RunEngine {
    /// This ipc-run, on this host.
    Local,
    /// One Slurm job, as `ipc-run slurm FILE` (docs/distributed.md, "Slurm").
    Slurm,
}

/// The engines of `ipc-run export`.
#[derive(Debug, Subcommand)]
pub(crate) enum ExportEngine {
    /// A ConfigMap with the plan, a Deployment or Job per host group, a
    /// Service per group with cross-group listeners.
    Kubernetes(KubernetesArgs),
    /// A `Type=notify` service unit per host group, a `.socket` unit per
    /// group with cross-group listeners, and the plan beside them.
    Systemd(SystemdArgs),
}

/// The arguments of `export kubernetes`.
#[derive(Debug, Args)]
pub(crate) struct KubernetesArgs {
    /// Shared planning options.
    #[command(flatten)]
    pub plan: PlanArgs,
    /// FILE is a JSON plan (`ipc-run plan FILE --format json`), exported
    /// as it is once checked against this host's limits.
    #[arg(long = "plan", conflicts_with_all = ["tap", "limits", "profiles"])]
    pub from_plan: bool,
    /// The container image: ipc-run, /bin/sh, grep and the topology's
    /// programs.
    #[arg(long, value_name = "IMG", value_parser = crate::engine::kubernetes::parse_image)]
    pub image: String,
    /// The namespace of every object (default: the one kubectl applies to).
    #[arg(long, value_name = "NS", value_parser = crate::engine::kubernetes::parse_namespace)]
    pub namespace: Option<String>,
    /// The absolute path of ipc-run in the image, run as the container's
    /// command and by its probes (default: `ipc-run`, found on the
    /// image's PATH).
    #[arg(long = "ipc-run", value_name = "PATH", value_parser = crate::engine::kubernetes::parse_ipc_run)]
    pub ipc_run: Option<String>,
    /// Write one file per object into DIR (created if missing) instead of
    /// one YAML stream on stdout.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// The arguments of `export systemd`.
#[derive(Debug, Args)]
pub(crate) struct SystemdArgs {
    /// Shared planning options.
    #[command(flatten)]
    pub plan: PlanArgs,
    /// FILE is a JSON plan (`ipc-run plan FILE --format json`), exported
    /// as it is once checked against this host's limits.
    #[arg(long = "plan", conflicts_with_all = ["tap", "limits", "profiles"])]
    pub from_plan: bool,
    /// Write the units and the plan (PREFIX.plan.json) into DIR (created if
    /// missing) instead of printing the units; the units name the plan
    /// there (default: /etc/systemd/system).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Units are PREFIX-GROUP.service (default: ipc-run-NAME, NAME the
    /// topology's).
    #[arg(long, value_name = "NAME", value_parser = crate::engine::systemd::parse_prefix)]
    pub prefix: Option<String>,
    /// The ipc-run the units start, an absolute path (default: this one).
    #[arg(long = "ipc-run", value_name = "PATH", value_parser = crate::engine::systemd::parse_ipc_run)]
    pub ipc_run: Option<String>,
}

/// The arguments of `logs`.
#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// Run id or topology name (default: the only live run).
    pub run: Option<String>,
    /// Only these processes (instance or process names; needs RUN).
    pub procs: Vec<String>,
    /// Go on printing new output as it comes, until the run ends.
    #[arg(long, short)]
    pub follow: bool,
    /// Only the last N lines of each process (default: all kept).
    #[arg(long = "lines", short = 'n', value_name = "N")]
    pub lines: Option<usize>,
    /// Only output read since T: a duration back from now (`10s`, `5m`)
    /// or an RFC 3339 time (`2026-01-31T23:59:59Z`).
    #[arg(long, value_name = "T", value_parser = crate::control::commands::parse_since)]
    pub since: Option<u64>,
    /// Start each line with the time ipc-run read it (RFC 3339, UTC).
    #[arg(long)]
    pub timestamps: bool,
    /// Where to look, and the output format (json: one record per line).
    #[command(flatten)]
    pub control: ControlArgs,
}

/// The arguments of `start`, `stop` and `restart`.
#[derive(Debug, Args)]
pub(crate) struct ActArgs {
    /// Run id or topology name.
    pub run: String,
    /// The processes (instance or process names).
    #[arg(required = true)]
    pub procs: Vec<String>,
    /// Where to look, and the output format.
    #[command(flatten)]
    pub control: ControlArgs,
}

/// `plan --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PlanFormat {
    /// For people.
    Text,
    /// For tools; see schemas/plan.schema.json.
    Json,
}

/// `graph --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum GraphFormat {
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// `schema` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// The topology file format.
    Topology,
    /// The JSON plan.
    Plan,
}

/// Everything that makes ipc-run exit non-zero, and the code for each.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The file could not be read or parsed.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The topology is invalid.
    #[error("failed to plan {path}: {error}")]
    Plan {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: PlanError,
    },
    /// Warnings were found under `--deny warnings`.
    #[error("{count} warning(s) denied by --deny warnings")]
    DeniedWarnings {
        /// Number of warnings.
        count: usize,
    },
    /// Writing the output failed.
    #[error("failed to write output: {0}")]
    Output(#[from] std::io::Error),
    /// The run could not be prepared or supervised.
    #[error(transparent)]
    Launch(#[from] crate::supervise::SuperviseError),
    /// `clean` could not remove everything.
    #[error("could not remove {} object(s): {}", .failed.len(), .failed.join("; "))]
    Clean {
        /// Each object left behind, with its run directory.
        failed: Vec<String>,
    },
    /// `bench` could not run.
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),
    /// A `--tap` that cannot be done.
    #[error(transparent)]
    Tap(#[from] crate::port::tap::TapError),
    /// A control command failed.
    #[error(transparent)]
    Control(#[from] crate::control::commands::CommandError),
    /// `slurm`: the job could not be written, submitted or followed.
    #[error(transparent)]
    Slurm(#[from] crate::engine::slurm::SlurmError),
    /// `export` could not make or write what it exports.
    #[error(transparent)]
    Export(#[from] crate::engine::export::ExportError),
    /// `run --host`: the group cannot be run as asked.
    #[error(transparent)]
    Group(#[from] crate::launch::group::GroupError),
    /// `run --detach`: the run failed before every process was ready.
    #[error("the run failed before every process was ready{reason}")]
    Detached {
        /// Its exit status.
        code: i32,
        /// What it said, from `: ` on.
        reason: String,
    },
}

impl CliError {
    /// The documented exit code.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            CliError::Topology(_) | CliError::Plan { .. } | CliError::DeniedWarnings { .. } => {
                ExitCode::Invalid.code()
            }
            CliError::Output(_) => ExitCode::Invalid.code(),
            CliError::Launch(error) => error.exit_code(),
            CliError::Clean { .. } => ExitCode::Launch.code(),
            CliError::Bench(error) => error.exit_code(),
            // A file refused or not creatable is a launch failure.
            CliError::Tap(crate::port::tap::TapError::CreateFile { .. }) => ExitCode::Launch.code(),
            CliError::Tap(_) => ExitCode::Usage.code(),
            CliError::Control(error) => error.exit_code(),
            CliError::Detached { code, .. } => *code,
            CliError::Slurm(error) => error.exit_code(),
            CliError::Export(_) => ExitCode::Invalid.code(),
            CliError::Group(error) => error.exit_code(),
        }
    }
}

/// Whether to colour output written to stderr.
pub(crate) fn stderr_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stderr().is_terminal()
        }
    }
}

/// Parses arguments, runs the command, returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse_from(with_default_command(std::env::args_os().collect()));
    if let Command::Run(args) = &cli.command
        && let Err(error) = args.check_engine()
    {
        error.exit();
    }
    let color = stderr_color(cli.color);
    init_tracing(color);
    match run(cli, color) {
        Ok(code) => code,
        Err(error) => {
            report(&error, color);
            error.exit_code()
        }
    }
}

fn init_tracing(color: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("IPC_RUN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(color)
        .try_init();
}

fn report(error: &CliError, color: bool) {
    let mut stderr = std::io::stderr().lock();
    match error {
        CliError::Topology(TopologyError::Parse {
            path,
            source_text,
            files,
            diagnostic,
        }) => {
            let single = [crate::diagnostic::SourceFile {
                path: path.display().to_string(),
                start: 0,
            }];
            let sources = crate::diagnostic::Sources {
                text: source_text,
                files: if files.is_empty() { &single } else { files },
            };
            let _ = write!(stderr, "{}", diagnostic.render_in(sources, color));
            let _ = writeln!(stderr, "{}", summary_line(path, 1, 0, color));
        }
        CliError::Plan { .. } | CliError::DeniedWarnings { .. } => {}
        CliError::Export(error) => {
            let _ = writeln!(
                stderr,
                "{}: {error}",
                paint_error(&format!("error[{}]", error.code()), color)
            );
        }
        CliError::Bench(stopped) if stopped.is_interruption() => {
            let _ = writeln!(stderr, "{stopped}");
        }
        CliError::Group(error) => {
            let head = format!("error[{}]", error.code());
            let _ = writeln!(stderr, "{}: {error}", paint_error(&head, color));
        }
        CliError::Slurm(error) => {
            let head = error
                .code()
                .map_or("error".to_owned(), |c| format!("error[{c}]"));
            let _ = writeln!(stderr, "{}: {error}", paint_error(&head, color));
        }
        other => {
            let _ = writeln!(stderr, "{}: {other}", paint_error("error", color));
        }
    }
}

fn paint_error(text: &str, color: bool) -> String {
    if color {
        let style = anstyle::AnsiColor::Red.on_default().bold();
        format!("{}{text}{}", style.render(), style.render_reset())
    } else {
        text.to_owned()
    }
}

fn summary_line(path: &Path, errors: usize, warnings: usize, color: bool) -> String {
    format!(
        "{}: could not use `{}`: {errors} error(s), {warnings} warning(s)",
        paint_error("error", color),
        path.display()
    )
}

/// Loads and plans a file, printing every diagnostic to stderr.
pub(crate) fn load_and_plan(args: &PlanArgs, color: bool) -> Result<(Topology, Planned), CliError> {
    load_and_plan_in(args, None, color)
}

/// [`load_and_plan`] for a run whose run directories go under
/// `runtime_root`: socket paths are checked against that directory's
/// length, whatever `--limits` says, since the run will use it.
fn load_and_plan_in(
    args: &PlanArgs,
    runtime_root: Option<&Path>,
    color: bool,
) -> Result<(Topology, Planned), CliError> {
    let started = std::time::Instant::now();
    let mut topology =
        Topology::load_with(&args.file, args.caps.max_file_size, &args.compose_options())?;
    tracing::debug!(elapsed = ?started.elapsed(), "loaded {}", args.file.display());
    let limits = limits_for(args, runtime_root);
    let started = std::time::Instant::now();
    // Taps edit the typed file after planning; otherwise only its source
    // is needed afterwards (for diagnostics), and the planner drops the rest.
    let outcome = if args.tap.is_empty() {
        plan::plan_releasing_placed(
            &mut topology,
            &limits,
            args.max_instances(),
            &args.placement(),
        )
    } else {
        plan::plan_placed(&topology, &limits, args.max_instances(), &args.placement())
    };
    tracing::debug!(elapsed = ?started.elapsed(), "planned {}", args.file.display());
    let outcome = match outcome {
        Ok(planned) if !args.tap.is_empty() => {
            // Taps rewrite the topology as planned, then plan it again.
            let mut tapped = topology.clone();
            crate::port::tap::apply(&mut tapped, &planned.plan, &args.tap)?;
            let outcome =
                plan::plan_placed(&tapped, &limits, args.max_instances(), &args.placement());
            return finish_plan(args, tapped, outcome, color);
        }
        other => other,
    };
    finish_plan(args, topology, outcome, color)
}

/// The limits to plan against; under `runtime_root` socket paths are
/// checked against that directory's length, whatever `--limits` says.
fn limits_for(args: &PlanArgs, runtime_root: Option<&Path>) -> Limits {
    let mut limits = match args.limits {
        LimitsChoice::Host => crate::host::read_limits(),
        LimitsChoice::Default => Limits::default(),
    };
    if let Some(root) = runtime_root {
        limits.run_dir_len = crate::plan::Limit {
            value: (root.as_os_str().len() + 1 + crate::host::RUN_ID_LEN) as u64,
            source: format!("--runtime-dir {}/<run id>", root.display()),
        };
    }
    limits
}

/// `run --plan`: reads the JSON plan in `args.file` and checks it against
/// this host (`--limits` is refused with `--plan`), printing diagnostics as
/// for a topology.
fn load_plan_file(
    args: &PlanArgs,
    runtime_root: Option<&Path>,
    color: bool,
) -> Result<Planned, CliError> {
    let text = std::fs::read_to_string(&args.file).map_err(|source| TopologyError::Read {
        path: args.file.clone(),
        source,
    })?;
    let limits = limits_for(args, runtime_root);
    let outcome = plan::import::from_json_capped(&text, &limits, args.max_instances());
    let file = [crate::diagnostic::SourceFile {
        path: args.file.display().to_string(),
        start: 0,
    }];
    let sources = crate::diagnostic::Sources {
        text: &text,
        files: &file,
    };
    report_plan(args, sources, outcome, color)
}

/// Most diagnostics of one file printed; a line gives the number of the rest.
const MAX_PRINTED_DIAGNOSTICS: usize = 100;

/// Prints a plan's diagnostics; the error when it failed or warnings are
/// denied.
fn finish_plan(
    args: &PlanArgs,
    topology: Topology,
    outcome: Result<Planned, PlanError>,
    color: bool,
) -> Result<(Topology, Planned), CliError> {
    let planned = report_plan(args, topology.sources(), outcome, color)?;
    Ok((topology, planned))
}

/// [`finish_plan`] for a plan read from `source`, a topology or a JSON plan.
fn report_plan(
    args: &PlanArgs,
    sources: crate::diagnostic::Sources<'_>,
    outcome: Result<Planned, PlanError>,
    color: bool,
) -> Result<Planned, CliError> {
    let path = args.file.display().to_string();
    // Rendering locates each label in the file, so printing every one of
    // tens of thousands of diagnostics costs their number times the file's
    // size; the first ones are what a reader acts on, the rest are counted.
    let print = |diagnostics: &[Diagnostic]| {
        let mut stderr = std::io::stderr().lock();
        for diagnostic in diagnostics.iter().take(MAX_PRINTED_DIAGNOSTICS) {
            let _ = write!(stderr, "{}", diagnostic.render_in(sources, color));
        }
        let rest = diagnostics.len().saturating_sub(MAX_PRINTED_DIAGNOSTICS);
        if rest > 0 {
            let _ = writeln!(
                stderr,
                "note: {rest} more diagnostic(s) not shown; the first {MAX_PRINTED_DIAGNOSTICS} are above\n"
            );
        }
    };
    match outcome {
        Ok(planned) => {
            print(&planned.warnings);
            if args.deny.is_some() && !planned.warnings.is_empty() {
                let count = planned.warnings.len();
                eprintln!(
                    "{}: `{path}`: {count} warning(s) denied by --deny warnings",
                    paint_error("error", color)
                );
                return Err(CliError::DeniedWarnings { count });
            }
            Ok(planned)
        }
        Err(error) => {
            print(&error.diagnostics);
            let warnings = error.diagnostics.len() - error.error_count();
            eprintln!(
                "{}",
                summary_line(&args.file, error.error_count(), warnings, color)
            );
            Err(CliError::Plan {
                path: args.file.clone(),
                error,
            })
        }
    }
}

fn run(cli: Cli, color: bool) -> Result<i32, CliError> {
    let command = cli.command;
    match command {
        Command::Run(args) if args.engine == RunEngine::Slurm => {
            slurm(&args.plan, &args.slurm, color)
        }
        Command::Run(args) => run_topology(&args, cli.color, color),
        Command::Slurm(args) => slurm(&args.plan, &args.job, color),
        Command::Bench(args) => {
            crate::bench::run(&args)?;
            Ok(ExitCode::Success.code())
        }
        Command::BenchPeer { spec } => Ok(crate::bench::peer_main(&spec)),
        Command::Port(args) => Ok(crate::port::main(args)),
        Command::Ps { .. }
        | Command::Status { .. }
        | Command::Start(_)
        | Command::Stop(_)
        | Command::Restart { .. }
        | Command::Signal { .. }
        | Command::Down { .. }
        | Command::Logs(_)
        | Command::Events { .. } => control_command(command),
        Command::Reload(args) => reload(&args, color),
        Command::Export { engine } => export(engine, color),
        Command::Clean { runtime_dir } => clean(runtime_dir),
        Command::Check(args) => printing(|out| check(&args, color, out)),
        Command::Plan { args, format } => printing(|out| print_plan(&args, format, color, out)),
        Command::Graph { args, format } => printing(|out| {
            let (_, planned) = load_and_plan(&args, color)?;
            match format {
                GraphFormat::Dot => write!(out, "{}", plan::graph::dot(&planned.plan))?,
                GraphFormat::Mermaid => write!(out, "{}", plan::graph::mermaid(&planned.plan))?,
            }
            Ok(())
        }),
        Command::Schema { kind } => printing(|out| Ok(write!(out, "{}", schema(kind))?)),
        Command::Completions { shell } => printing(|out| {
            clap_complete::generate(shell, &mut Cli::command(), "ipc-run", out);
            Ok(())
        }),
        Command::Man => printing(|out| Ok(clap_mangen::Man::new(Cli::command()).render(out)?)),
    }
}

/// Runs a command that prints what it made on stdout, through one lock of
/// stdout, flushed at the end.
fn printing(
    print: impl FnOnce(&mut std::io::StdoutLock<'static>) -> Result<(), CliError>,
) -> Result<i32, CliError> {
    let mut stdout = std::io::stdout().lock();
    print(&mut stdout)?;
    stdout.flush()?;
    Ok(ExitCode::Success.code())
}

/// `check`: plans the topology, checks its launchers, and prints a line.
fn check(args: &PlanArgs, color: bool, stdout: &mut impl Write) -> Result<(), CliError> {
    let (topology, planned) = load_and_plan(args, color)?;
    let plan = &planned.plan;
    check_launchers(args, &topology.source, plan, color)?;
    writeln!(
        stdout,
        "{}: ok: {} process(es), {} channel(s), {} warning(s)",
        args.file.display(),
        plan.processes.len(),
        plan.channels.len(),
        planned.warnings.len()
    )?;
    // The process exits next: freeing a large plan piece by piece costs
    // more than the kernel reclaiming it at once.
    std::mem::forget((topology, planned));
    Ok(())
}

/// `plan`: the plan as text or JSON.
fn print_plan(
    args: &PlanArgs,
    format: PlanFormat,
    color: bool,
    stdout: &mut impl Write,
) -> Result<(), CliError> {
    let (topology, planned) = load_and_plan(args, color)?;
    // The file is no longer needed: free it before the output is made, so
    // the two never add up.
    drop(topology);
    // Written as made, in large blocks: the output of a big plan is never
    // held whole, and stdout's line buffering does not turn it into a write
    // per line.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout);
    match format {
        PlanFormat::Text => plan::render::write_text(&planned.plan, &mut out)?,
        PlanFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &planned.plan).map_err(std::io::Error::other)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    drop(out);
    // As for `check`: the process exits next, and the kernel frees a large
    // plan at once, faster than piece by piece.
    std::mem::forget(planned);
    Ok(())
}

fn export(engine: ExportEngine, color: bool) -> Result<i32, CliError> {
    let planned = |args: &PlanArgs, from_plan: bool| {
        if from_plan {
            load_plan_file(args, None, color)
        } else {
            load_and_plan(args, color).map(|(_, planned)| planned)
        }
    };
    use crate::engine::{export, kubernetes, systemd};
    let mut stdout = std::io::stdout().lock();
    match engine {
        ExportEngine::Kubernetes(args) => {
            let planned = planned(&args.plan, args.from_plan)?;
            let options = kubernetes::Options {
                image: args.image,
                namespace: args.namespace,
                ipc_run: args.ipc_run.unwrap_or_else(|| "ipc-run".to_owned()),
            };
            let files = kubernetes::manifests(&planned.plan, &options)?;
            match &args.out {
                Some(dir) => export::write_files(dir, &files)?,
                None => stdout.write_all(kubernetes::stream(&files).as_bytes())?,
            }
        }
        ExportEngine::Systemd(args) => {
            let planned = planned(&args.plan, args.from_plan)?;
            let plan = &planned.plan;
            let ipc_run = match args.ipc_run {
                Some(path) => path,
                None => std::env::current_exe()?.display().to_string(),
            };
            // The units name the plan by an absolute path.
            let unit_dir = match &args.out {
                Some(dir) => Some(std::path::absolute(dir)?.display().to_string()),
                None => None,
            };
            let options = systemd::Options {
                prefix: args.prefix.unwrap_or_else(|| systemd::default_prefix(plan)),
                ipc_run,
                unit_dir,
            };
            let mut files = systemd::units(plan, &options)?;
            match &args.out {
                Some(dir) => {
                    files.push((systemd::plan_file(&options), export::plan_json(plan)?));
                    export::write_files(dir, &files)?;
                }
                None => {
                    eprintln!(
                        "note: the units read the plan from {}: write it there with `ipc-run plan \
                         --format json` and the same options, or use --out",
                        systemd::plan_path(&options)
                    );
                    for (i, (name, text)) in files.iter().enumerate() {
                        let gap = if i == 0 { "" } else { "\n" };
                        write!(stdout, "{gap}# {name}\n{text}")?;
                    }
                }
            }
        }
    }
    stdout.flush()?;
    Ok(ExitCode::Success.code())
}

/// The commands that talk to a live run (`docs/operate.md`).
fn control_command(command: Command) -> Result<i32, CliError> {
    use crate::control::commands::{self, Format};
    use crate::control::protocol::{Command as Cmd, Request};
    let format = |control: &ControlArgs| match control.format {
        ControlFormat::Text => Format::Text,
        ControlFormat::Json => Format::Json,
    };
    let roots =
        |control: &ControlArgs| crate::control::client::roots(control.runtime_dir.as_deref());
    let mut out = std::io::stdout().lock();
    let (request, control, run) = match &command {
        Command::Ps { control } => {
            commands::ps(&roots(control), format(control), &mut out).map_err(CliError::from)?;
            return Ok(ExitCode::Success.code());
        }
        Command::Status {
            run,
            procs,
            control,
        } => {
            let (roots, format) = (roots(control), format(control));
            commands::status(&roots, run.as_deref(), procs.clone(), format, &mut out)
                .map_err(CliError::from)?;
            return Ok(ExitCode::Success.code());
        }
        Command::Logs(args) => {
            let mut request = Request::new(Cmd::Logs, args.procs.clone());
            request.follow = args.follow;
            request.lines = args.lines;
            request.since_ms = args.since;
            let (roots, format) = (roots(&args.control), format(&args.control));
            commands::logs(
                &roots,
                args.run.as_deref(),
                request,
                args.timestamps,
                format,
                &mut out,
            )
            .map_err(CliError::from)?;
            return Ok(ExitCode::Success.code());
        }
        Command::Events { run, control } => {
            let (roots, format) = (roots(control), format(control));
            commands::events(&roots, run.as_deref(), format, &mut out).map_err(CliError::from)?;
            return Ok(ExitCode::Success.code());
        }
        Command::Start(args) => act_request(Cmd::Start, args),
        Command::Stop(args) => act_request(Cmd::Stop, args),
        Command::Restart {
            act: args,
            with_dependents,
        } => {
            let (mut request, control, run) = act_request(Cmd::Restart, args);
            request.with_dependents = *with_dependents;
            (request, control, run)
        }
        Command::Signal {
            run,
            process,
            signal,
            control,
        } => {
            let mut request = Request::new(Cmd::Signal, vec![process.clone()]);
            request.signal = Some(signal.clone());
            (request, control, Some(run.clone()))
        }
        Command::Down { run, control } => {
            (Request::new(Cmd::Down, Vec::new()), control, run.clone())
        }
        _ => unreachable!("only control commands come here"),
    };
    commands::act(
        &roots(control),
        run.as_deref(),
        request,
        format(control),
        &mut out,
    )
    .map_err(CliError::from)?;
    Ok(ExitCode::Success.code())
}

/// The request of `start`, `stop` or `restart`, with where to send it.
fn act_request(
    cmd: crate::control::protocol::Command,
    args: &ActArgs,
) -> (
    crate::control::protocol::Request,
    &ControlArgs,
    Option<String>,
) {
    let request = crate::control::protocol::Request::new(cmd, args.procs.clone());
    (request, &args.control, Some(args.run.clone()))
}

/// The programs of managed launchers (`mpirun`) are installed: E0345,
/// naming the package, before anything is created.
fn check_launchers(
    args: &PlanArgs,
    source: &str,
    plan: &plan::Plan,
    color: bool,
) -> Result<(), CliError> {
    let path = std::env::var_os("PATH");
    let missing = crate::mechanism::mpi::missing_launchers(plan, path.as_deref());
    if missing.is_empty() {
        return Ok(());
    }
    let file = args.file.display().to_string();
    for diagnostic in &missing {
        eprint!("{}", diagnostic.render(&file, source, color));
    }
    Err(CliError::Plan {
        path: args.file.clone(),
        error: PlanError {
            diagnostics: missing,
        },
    })
}

/// `ipc-run run`: plan, launch, supervise, clean up; the exit code follows
/// the processes. With `--detach`, a copy of ipc-run does that in the
/// background and this one waits until every process is ready.
fn run_topology(args: &RunArgs, choice: ColorChoice, color: bool) -> Result<i32, CliError> {
    if args.announce_on_stdin {
        let announce = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map(std::sync::Arc::new)
            .ok();
        let result = run_in_foreground(args, choice, color, announce.clone());
        if let (Some(fd), Err(error)) = (&announce, &result) {
            crate::control::detach::report_error(fd, error.exit_code(), error);
        }
        return result;
    }
    if args.detach {
        // Diagnostics are shown here; the background copy plans again.
        let runtime_root = args.runtime_dir.as_deref();
        let planned = if args.from_plan {
            load_plan_file(&args.plan, runtime_root, color)?
        } else {
            load_and_plan_in(&args.plan, runtime_root, color)?.1
        };
        if let Some(name) = &args.host {
            GroupRemote::of(&one_group(&planned.plan, name, args)?)?;
        }
        let mut child_args: Vec<std::ffi::OsString> =
            with_default_command(std::env::args_os().collect())
                .into_iter()
                .skip(1)
                .filter(|arg| arg != "--detach")
                .collect();
        child_args.push(crate::control::detach::ANNOUNCE_FLAG.into());
        return match crate::control::detach::start(child_args)? {
            Ok(run_id) => {
                println!("{run_id}");
                Ok(ExitCode::Success.code())
            }
            Err((code, reason)) => Err(CliError::Detached { code, reason }),
        };
    }
    run_in_foreground(args, choice, color, None)
}

/// `ipc-run run` in this process; `announce` is where `run --detach` waits.
fn run_in_foreground(
    args: &RunArgs,
    choice: ColorChoice,
    color: bool,
    announce: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
) -> Result<i32, CliError> {
    // Absolute, so `{run_dir}` is too and socket paths are checked at
    // their real length.
    let runtime_root = args
        .runtime_dir
        .as_ref()
        .map(|dir| std::path::absolute(dir).unwrap_or_else(|_| dir.clone()));
    let planned = if args.from_plan {
        load_plan_file(&args.plan, runtime_root.as_deref(), color)?
    } else {
        load_and_plan_in(&args.plan, runtime_root.as_deref(), color)?.1
    };
    // With --host, only the group's plan is kept: a large plan is not
    // held twice for the whole run.
    let (plan, remote) = match &args.host {
        Some(name) => {
            let group = one_group(&planned.plan, name, args)?;
            drop(planned);
            let remote = GroupRemote::of(&group)?;
            (group.plan, remote)
        }
        None => (planned.plan, GroupRemote::default()),
    };
    let plan = &plan;
    check_launchers(&args.plan, "", plan, color)?;
    // Each tap's copy starts empty; the tap process appends.
    for tap in &args.plan.tap {
        crate::port::tap::truncate(&tap.file).map_err(|source| {
            crate::port::tap::TapError::CreateFile {
                edge: tap.edge.clone(),
                file: tap.file.clone(),
                source,
            }
        })?;
    }
    let nofile = raise_nofile();
    let options = crate::supervise::RunOptions {
        color: match choice {
            ColorChoice::Auto => crate::supervise::ColorChoice::Auto,
            ColorChoice::Always => crate::supervise::ColorChoice::Always,
            ColorChoice::Never => crate::supervise::ColorChoice::Never,
        },
        runtime_root,
        quiet_summary: args.quiet,
        stdin_is_own: args.stdin,
        nofile,
        log_dir: args.log_dir.clone(),
        log_rotation: crate::supervise::logfile::Rotation {
            max_size: args.log_max_size.unwrap_or(0),
            keep: args.log_keep,
        },
        log_format: match args.log_format {
            LogFormat::Text => crate::supervise::logs::LogFormat::Text,
            LogFormat::Json => crate::supervise::logs::LogFormat::Json,
        },
        timestamps: args.timestamps,
        recent_log_bytes: args.log_memory.unwrap_or(if args.announce_on_stdin {
            DETACHED_LOG_MEMORY
        } else {
            0
        }),
        summary_json: args.summary_format == SummaryFormat::Json,
        announce_ready: announce,
        notify_manager: true,
        group: args.host.clone(),
        remote_listeners: remote.listeners,
        remote_waits: remote.waits,
        cross_listeners: remote.cross_listeners,
        source: Some(run_source(args)),
    };
    let outcome = crate::supervise::run(plan, &options)?;
    if let Some(fd) = &options.announce_ready {
        let failed: Vec<String> = outcome
            .summary
            .iter()
            .filter(|s| s.failed)
            .map(ToString::to_string)
            .collect();
        crate::control::detach::report_outcome(fd, outcome.exit_code, &failed);
    }
    if outcome.log_write_errors > 0 {
        tracing::warn!(
            "{} relayed log record(s) could not be written",
            outcome.log_write_errors
        );
    }
    Ok(outcome.exit_code)
}

/// `ipc-run slurm`: plans, writes the job directory, submits the batch
/// script and follows the job; the exit code is the job's
/// (docs/distributed.md, "Slurm"); also `run --engine slurm`.
fn slurm(plan: &PlanArgs, args: &SlurmJobArgs, color: bool) -> Result<i32, CliError> {
    use crate::engine::slurm;
    let (topology, planned) = load_and_plan(plan, color)?;
    drop(topology);
    let workdir = match &args.workdir {
        Some(dir) => std::path::absolute(dir)?,
        None => std::env::current_dir()?,
    };
    let job_dir = match &args.job_dir {
        Some(dir) => std::path::absolute(dir)?,
        None => slurm::default_job_dir(&workdir, &planned.plan.name)?,
    };
    let options = slurm::JobOptions {
        partition: args.partition.clone(),
        time: args.time.clone(),
        workdir,
        job_dir,
        ipc_run: std::env::current_exe()?,
    };
    if args.script_only {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(slurm::batch_script(&planned.plan, &options).as_bytes())?;
        stdout.flush()?;
        return Ok(ExitCode::Success.code());
    }
    let job = slurm::write_job(&planned.plan, &options)?;
    let mut stdout = std::io::stdout().lock();
    Ok(slurm::submit_and_follow(&job, &mut stdout)?)
}

/// What a group's run needs to know of the other hosts, besides its plan.
#[derive(Default)]
struct GroupRemote {
    listeners: Vec<(crate::launch::group::RemoteListener, std::net::SocketAddr)>,
    waits: Vec<crate::launch::group::RemoteWait>,
    cross_listeners: std::collections::HashSet<String>,
}

impl GroupRemote {
    /// The group's remote listeners, resolved now (before anything is
    /// created), its waits and its cross-edge listeners.
    fn of(group: &crate::launch::group::GroupRun) -> Result<GroupRemote, CliError> {
        let resolved = group.resolve()?;
        Ok(GroupRemote {
            listeners: group
                .remote
                .iter()
                .map(|r| (r.clone(), resolved[&*r.channel]))
                .collect(),
            waits: group.waits.clone(),
            cross_listeners: group.cross_listeners(),
        })
    }
}

/// `run --host NAME`: the plan of that group alone, with its peers;
/// every error comes before anything is created.
fn one_group(
    plan: &plan::Plan,
    name: &str,
    args: &RunArgs,
) -> Result<crate::launch::group::GroupRun, CliError> {
    use crate::launch::group::{GroupError, GroupSpec, parse_peer, restrict};
    let peers = args
        .peers
        .iter()
        .map(|p| parse_peer(p))
        .collect::<Result<Vec<_>, _>>()?;
    let groups = plan.host_groups();
    if let Some((unknown, host)) = peers
        .iter()
        .find(|(g, _)| !groups.iter().any(|view| view.name == g))
    {
        return Err(GroupError::BadPeer {
            given: format!("{unknown}={host}"),
            why: format!("the plan has no group `{unknown}`"),
        }
        .into());
    }
    let spec = GroupSpec {
        name: name.to_owned(),
        peers,
        bind_address: args.bind_address,
    };
    Ok(restrict(plan, &spec)?)
}

/// What `run` plans, as the run remembers it for `reload` without a file.
fn run_source(args: &RunArgs) -> crate::control::protocol::RunSource {
    let absolute = |path: &Path| {
        std::path::absolute(path)
            .unwrap_or_else(|_| path.to_owned())
            .display()
            .to_string()
    };
    crate::control::protocol::RunSource {
        file: absolute(&args.plan.file),
        from_plan: args.from_plan,
        limits: match args.plan.limits {
            LimitsChoice::Host => "host",
            LimitsChoice::Default => "default",
        }
        .to_owned(),
        profiles: args.plan.compose_options().profiles,
        taps: args
            .plan
            .tap
            .iter()
            .map(|tap| format!("{}={}", tap.edge, tap.file.display()))
            .collect(),
        runtime_dir: args.runtime_dir.as_deref().map(absolute),
    }
}

/// `ipc-run reload`: plans the file (the run's own when none is named)
/// with the run's planning options unless others are given, and hands the
/// plan to the run, which diffs, validates and applies it.
fn reload(args: &ReloadArgs, color: bool) -> Result<i32, CliError> {
    use crate::control::commands::{self, Format};
    let roots = crate::control::client::roots(args.control.runtime_dir.as_deref());
    let live = crate::control::client::resolve(Some(&args.run), &roots)
        .map_err(|e| CliError::Control(e.into()))?;
    let source = commands::source_of(&live).map_err(CliError::from)?;
    let Some((file, from_plan)) = args
        .file
        .clone()
        .map(|file| (file, args.from_plan))
        .or_else(|| {
            source
                .as_ref()
                .map(|s| (PathBuf::from(&s.file), s.from_plan))
        })
    else {
        eprintln!(
            "{}: run {} does not say what it was planned from; name the topology FILE",
            paint_error("error", color),
            live.info.run_id
        );
        return Ok(ExitCode::Usage.code());
    };
    let recorded = source.unwrap_or_default();
    let plan_args = PlanArgs {
        file,
        limits: args.limits.unwrap_or(match recorded.limits.as_str() {
            "default" => LimitsChoice::Default,
            _ => LimitsChoice::Host,
        }),
        deny: args.deny.clone(),
        tap: recorded
            .taps
            .iter()
            .filter_map(|t| crate::port::tap::TapSpec::parse(t).ok())
            .collect(),
        caps: args.caps.clone(),
        profiles: if args.profiles.is_empty() {
            recorded.profiles.clone()
        } else {
            args.profiles.clone()
        },
        // The run's source does not record placement options; a run of
        // one host group refuses reloads (`supervise::reload`).
        hosts: None,
        base_port: plan::DEFAULT_BASE_PORT,
    };
    let runtime_root = recorded.runtime_dir.as_deref().map(Path::new);
    let planned = if from_plan {
        load_plan_file(&plan_args, runtime_root, color)?
    } else {
        load_and_plan_in(&plan_args, runtime_root, color)?.1
    };
    let new_source = crate::control::protocol::RunSource {
        file: std::path::absolute(&plan_args.file)
            .unwrap_or_else(|_| plan_args.file.clone())
            .display()
            .to_string(),
        from_plan,
        limits: match plan_args.limits {
            LimitsChoice::Host => "host",
            LimitsChoice::Default => "default",
        }
        .to_owned(),
        profiles: plan_args.profiles.clone(),
        ..recorded
    };
    let format = match args.control.format {
        ControlFormat::Text => Format::Text,
        ControlFormat::Json => Format::Json,
    };
    let mut out = std::io::stdout().lock();
    let code = commands::reload(
        &live,
        &planned.plan,
        new_source,
        args.dry_run,
        format,
        &mut out,
    )
    .map_err(CliError::from)?;
    Ok(code)
}

/// Raises ipc-run's own `RLIMIT_NOFILE` soft limit to the hard limit (a
/// large topology holds many channel ends) and returns the limits as found,
/// which every child gets back.
fn raise_nofile() -> Option<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
        tracing::debug!("could not raise RLIMIT_NOFILE to {hard}");
    }
    Some((soft, hard))
}

/// `ipc-run clean`: prints what was removed, what is live, what was skipped.
fn clean(runtime_dir: Option<PathBuf>) -> Result<i32, CliError> {
    let roots = runtime_dir.map(|dir| vec![dir]);
    let report = crate::launch::clean(roots.as_deref());
    let mut out = std::io::stdout().lock();
    let mut problems = Vec::new();
    for run in &report.cleaned {
        writeln!(out, "cleaned {}", run.path.display())?;
        for object in &run.removed {
            writeln!(out, "  removed {object}")?;
        }
        for object in &run.skipped {
            writeln!(
                out,
                "  left alone {object} (gone or not created by that run)"
            )?;
        }
        for object in &run.failed {
            writeln!(out, "  FAILED {object}")?;
            problems.push(format!("{}: {object}", run.path.display()));
        }
        if !run.dir_removed {
            writeln!(
                out,
                "  kept the directory (it holds files the run did not create)"
            )?;
        }
    }
    for live in &report.live {
        writeln!(out, "live {} (left alone)", live.display())?;
    }
    for (path, why) in &report.skipped {
        writeln!(out, "skipped {}: {why}", path.display())?;
    }
    if report.cleaned.is_empty() && report.live.is_empty() && report.skipped.is_empty() {
        writeln!(out, "nothing to clean")?;
    }
    out.flush()?;
    if problems.is_empty() {
        Ok(ExitCode::Success.code())
    } else {
        Err(CliError::Clean { failed: problems })
    }
}

/// The JSON Schema of a document, as committed under `schemas/`.
pub fn schema(kind: SchemaKind) -> String {
    let schema = match kind {
        SchemaKind::Topology => schemars::schema_for!(crate::topology::TopologyFile),
        SchemaKind::Plan => schemars::schema_for!(crate::plan::Plan),
    };
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serialises");
    text.push('\n');
    text
}
