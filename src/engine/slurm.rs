//! `ipc-run slurm`: a plan run as one Slurm job.
//!
//! The job is one allocation with a task per host group; each group's
//! `ipc-run run --plan PLAN --host G --peer …` runs as its own `srun -n1
//! --exact` step, pinned (`-w`) to the node of its task, so that its peers
//! can name that node. One allocation rather than a heterogeneous job:
//! on one node, Slurm 22.05 leaves the components of a hetjob pending
//! (Resources), while steps of one allocation share its nodes
//! (docs/distributed.md, "Slurm").
//!
//! This module writes the job (the plan JSON and the batch script, into a
//! job directory of ours, 0700), submits it with `sbatch --parsable`,
//! follows each group's log file with a `[group]` prefix while the job
//! runs, and returns the job's exit status: the batch script exits with
//! the topology's, as one `ipc-run run` would (the group holding
//! `exit_code_from`, else the first group that failed).
//!
//! [`batch_script`] is pure (snapshot-tested); [`write_job`] and
//! [`submit_and_follow`] do the I/O.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::exit::ExitCode;
use crate::plan::Plan;

/// The plan, as JSON (the files of a job directory follow).
pub const PLAN_FILE: &str = "plan.json";
/// The batch script.
pub const SCRIPT_FILE: &str = "job.sh";
/// The batch script's own output (`#SBATCH --output`).
pub const JOB_OUTPUT_FILE: &str = "job.out";
/// The batch script's exit status, written as its last act.
pub const STATUS_FILE: &str = "status";
/// The folder of the groups' logs, `GROUP.log` each.
pub const LOGS_DIR: &str = "logs";

/// Where job directories go by default, under the working directory.
pub const JOBS_DIR: &str = "ipc-run-slurm";

/// How the job is asked for and where it runs.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// `#SBATCH --partition`.
    pub partition: Option<String>,
    /// `#SBATCH --time` (Slurm's syntax: `MM`, `HH:MM:SS`, `D-HH`…).
    pub time: Option<String>,
    /// The job's working directory (`#SBATCH --chdir`): relative paths of
    /// the topology resolve there, as they would for `ipc-run run`.
    pub workdir: PathBuf,
    /// The job directory: plan, script, logs, status.
    pub job_dir: PathBuf,
    /// The `ipc-run` each step runs (this one: the same path must exist on
    /// the nodes).
    pub ipc_run: PathBuf,
}

/// One host group as a step of the job.
#[derive(Debug, Clone, PartialEq)]
pub struct StepGroup {
    /// The group's name (`ProcessPlan::host`).
    pub name: String,
    /// Whole CPUs its step asks for: the group's declared `cpus` rounded
    /// up, else 1.
    pub cpus: u32,
    /// The group's declared memory, in bytes, when any process declared it.
    pub memory: Option<u64>,
    /// The groups whose listeners it connects to: each one a `--peer`.
    pub peers: Vec<String>,
}

/// The plan's host groups as job steps, in order ([`Plan::host_groups`]:
/// a plan without placement is the one group `local`).
pub fn step_groups(plan: &Plan) -> Vec<StepGroup> {
    plan.host_groups()
        .into_iter()
        .map(|view| {
            let declared = view.group;
            let mut peers: Vec<String> = Vec::new();
            for edge in &view.connects {
                if !peers.iter().any(|p| *p == *edge.listener_group) {
                    peers.push(edge.listener_group.to_string());
                }
            }
            StepGroup {
                name: view.name.to_owned(),
                cpus: whole_cpus(declared.and_then(|g| g.cpus)),
                memory: declared.and_then(|g| g.memory),
                peers,
            }
        })
        .collect()
}

/// Whole CPUs for `cpus` declared (fractions rounded up), 1 when none.
fn whole_cpus(cpus: Option<f64>) -> u32 {
    match cpus {
        // Bounded first, so the cast is exact.
        Some(cpus) if cpus > 0.0 => cpus.ceil().min(f64::from(u32::MAX)) as u32,
        _ => 1,
    }
}

/// Whether the plan was placed: its steps then run one group each
/// (`--host G`), else the whole plan.
fn is_placed(plan: &Plan) -> bool {
    plan.placement.is_some()
}

/// The group whose status is the topology's: the one holding the
/// `exit_code_from` process.
fn exit_group(plan: &Plan) -> Option<&str> {
    let name = plan.exit_code_from.as_deref()?;
    plan.processes
        .iter()
        .find(|p| &*p.process == name || &*p.name == name)
        .map(|p| &*p.host)
}

/// `text` as one word of a POSIX shell, single-quoted unless it is plainly
/// safe as it is.
fn quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The `#SBATCH` header: one task per group, as many CPUs per task as the
/// largest group asks for, so that every task can hold any group.
fn header(plan: &Plan, groups: &[StepGroup], options: &JobOptions) -> String {
    let cpus = groups.iter().map(|g| g.cpus).max().unwrap_or(1);
    let job_dir = options.job_dir.display().to_string();
    let mut text = String::new();
    let _ = writeln!(text, "#!/bin/bash");
    let _ = writeln!(
        text,
        "# Written by `ipc-run slurm` for the topology `{}`.",
        super::one_line(&plan.name)
    );
    let _ = writeln!(
        text,
        "# Each host group's ipc-run is one step of this allocation, on the node of\n\
         # its task (docs/distributed.md, \"Slurm\")."
    );
    // sbatch reads its options a line at a time: each stays on its own
    // (a newline in the name, `--time` or a path cannot start a line).
    let mut sbatch = |option: &str, value: &str| {
        let _ = writeln!(
            text,
            "#SBATCH --{option}={}",
            quote(&super::one_line(value))
        );
    };
    sbatch("job-name", &format!("ipc-run-{}", plan.name));
    sbatch("ntasks", &groups.len().to_string());
    sbatch("cpus-per-task", &cpus.to_string());
    if let Some(mib) = groups
        .iter()
        .filter_map(|g| {
            g.memory
                .map(|bytes| bytes.div_ceil(1 << 20).div_ceil(cpus.into()))
        })
        .max()
    {
        // Per CPU, so that each task's CPUs bring the largest group's memory.
        sbatch("mem-per-cpu", &format!("{mib}M"));
    }
    if let Some(partition) = &options.partition {
        sbatch("partition", partition);
    }
    if let Some(time) = &options.time {
        sbatch("time", time);
    }
    sbatch("chdir", &options.workdir.display().to_string());
    sbatch("output", &format!("{job_dir}/{JOB_OUTPUT_FILE}"));
    text
}

/// The script waits for whichever step ends first with `wait -n -p`,
/// which bash has since 5.1: an older bash fails the job at once, saying
/// so, rather than misreading which group ended.
const BASH_CHECK: &str = r#"if ((BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 501)); then
    echo "ipc-run slurm: this script needs bash 5.1 or later (wait -n -p), not $BASH_VERSION" >&2
    exit 3
fi
"#;

/// Bash that sets `nodes[i]` to the node of task `i` of the allocation:
/// `SLURM_TASKS_PER_NODE` (`2(x3),1`) over the expanded
/// `SLURM_JOB_NODELIST`, in Slurm's block order.
const NODES_OF_TASKS: &str = r#"mapfile -t hosts < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
nodes=()
host=0
for spec in ${SLURM_TASKS_PER_NODE//,/ }; do
    count=${spec%%(*}
    repeat=1
    if [[ $spec == *'(x'* ]]; then
        repeat=${spec#*(x}
        repeat=${repeat%)}
    fi
    for ((r = 0; r < repeat; r++)); do
        for ((t = 0; t < count; t++)); do
            nodes+=("${hosts[host]}")
        done
        host=$((host + 1))
    done
done
"#;

/// Bash that waits for the steps in `group_of` (pid -> group) and exits
/// with the topology's status, as `ipc-run run` decides it for processes:
/// when the `exit_group` ends, the other steps are stopped (SIGTERM to
/// their srun, which forwards it) and its status is the job's; otherwise
/// the first group to fail decides, else 0. A failed group does not stop
/// the others.
const WAIT_FOR_STEPS: &str = r#"first_failure=0
while ((${#group_of[@]} > 0)); do
    ended=''
    wait -n -p ended "${!group_of[@]}"
    code=$?
    [[ -n ${ended:-} ]] || break
    group=${group_of[$ended]}
    unset "group_of[$ended]"
    echo "ipc-run slurm: group $group ended with status $code"
    if [[ $group == "$exit_group" ]]; then
        ((${#group_of[@]} > 0)) && kill -TERM "${!group_of[@]}" 2>/dev/null
        wait
        first_failure=$code
        break
    fi
    if ((code != 0 && first_failure == 0)); then
        first_failure=$code
    fi
done
echo "$first_failure" >"$job_dir/status.tmp" && mv "$job_dir/status.tmp" "$job_dir/status"
exit "$first_failure"
"#;

/// The batch script of `plan` as `options` ask (pure: the same plan and
/// options give the same text).
pub fn batch_script(plan: &Plan, options: &JobOptions) -> String {
    let groups = step_groups(plan);
    let placed = is_placed(plan);
    let mut text = header(plan, &groups, options);
    let _ = writeln!(text, "set -u");
    text.push_str(BASH_CHECK);
    let _ = writeln!(
        text,
        "ipc_run={}",
        quote(&options.ipc_run.display().to_string())
    );
    let _ = writeln!(
        text,
        "job_dir={}",
        quote(&options.job_dir.display().to_string())
    );
    let _ = writeln!(
        text,
        "exit_group={}",
        quote(if placed {
            exit_group(plan).unwrap_or("")
        } else {
            ""
        })
    );
    text.push_str("# The node of each task: group i runs on nodes[i].\n");
    text.push_str(NODES_OF_TASKS);
    text.push_str("declare -A group_of\n");
    for (i, group) in groups.iter().enumerate() {
        let _ = writeln!(text, "# group {}", super::one_line(&group.name));
        let _ = write!(
            text,
            "srun --job-name={name} --ntasks=1 --nodes=1 --cpus-per-task={cpus} --exact \
             -w \"${{nodes[{i}]}}\" \\\n    \"$ipc_run\" run --plan \"$job_dir/{PLAN_FILE}\"",
            name = quote(&group.name),
            cpus = group.cpus,
        );
        if placed {
            let _ = write!(text, " --host {}", quote(&group.name));
            for peer in &group.peers {
                let k = groups.iter().position(|g| g.name == *peer).unwrap_or(0);
                let _ = write!(text, " \\\n    --peer {}=\"${{nodes[{k}]}}\"", quote(peer));
            }
        }
        // The name quoted as a word of its own: a group's name is the
        // file's, whatever characters it has.
        let log = format!("{LOGS_DIR}/{}.log", log_name(&group.name));
        let _ = writeln!(text, " \\\n    >\"$job_dir\"/{} 2>&1 &", quote(&log));
        let _ = writeln!(text, "group_of[$!]={}", quote(&group.name));
    }
    text.push_str(WAIT_FOR_STEPS);
    text
}

/// A group's log file name: its name, any `/` made `_`.
fn log_name(group: &str) -> String {
    group.replace('/', "_")
}

/// What `ipc-run slurm` could not do; each is exit status 3, a job that
/// could not be written or submitted (docs/distributed.md, "Slurm").
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// `sbatch`, `scontrol` or `scancel` is not installed here.
    #[error(
        "`{program}` is not on PATH: Slurm's client commands are needed to submit \
         (Debian: apt install slurm-wlm)"
    )]
    Missing {
        /// `sbatch`, `scontrol` or `scancel`.
        program: &'static str,
    },
    /// `sbatch` refused the job (the job directory is removed).
    #[error("sbatch refused the job of {job_dir}: {reason}")]
    Refused {
        /// The job directory.
        job_dir: PathBuf,
        /// What sbatch said.
        reason: String,
    },
    /// The job directory could not be made ours.
    #[error("failed to create the job directory {path}: {reason}")]
    JobDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The job ended without an exit status of its script (cancelled,
    /// out of time, its node failed).
    #[error("job {job_id} ended {state} (exit code {exit_code}); its files are in {job_dir}")]
    Ended {
        /// The job id.
        job_id: String,
        /// Slurm's job state.
        state: String,
        /// Slurm's `ExitCode`, `CODE:SIGNAL`.
        exit_code: String,
        /// The job directory.
        job_dir: PathBuf,
    },
    /// Reading or writing a file, or running a Slurm command, failed.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl SlurmError {
    /// Its code (docs/distributed.md, "Slurm"), when it has one.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            SlurmError::Missing { .. } => Some("E0515"),
            SlurmError::Refused { .. } => Some("E0516"),
            SlurmError::JobDir { .. } => Some("E0517"),
            SlurmError::Ended { .. } => Some("E0518"),
            SlurmError::Io { .. } => None,
        }
    }

    /// The exit status of `ipc-run slurm` for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            // A job that ended by a signal (scancel, the time limit) exits
            // as a shell reports a killed command.
            SlurmError::Ended { exit_code, .. } => exit_code
                .split_once(':')
                .and_then(|(_, signal)| signal.parse::<i32>().ok())
                .filter(|signal| *signal > 0)
                .map_or(ExitCode::Launch.code(), crate::exit::signaled),
            _ => ExitCode::Launch.code(),
        }
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SlurmError {
    let path = path.to_path_buf();
    move |source| SlurmError::Io {
        action,
        path,
        source,
    }
}

/// A new job directory's default path: `WORKDIR/ipc-run-slurm/NAME-ID`, on
/// the file system the job's nodes share with this one when the working
/// directory is (a cluster's home or project directory).
pub fn default_job_dir(workdir: &Path, name: &str) -> Result<PathBuf, SlurmError> {
    let mut bytes = [0u8; 8];
    crate::sys::fd::fill_random(&mut bytes).map_err(|errno| SlurmError::JobDir {
        path: workdir.join(JOBS_DIR),
        reason: format!("no random bytes for its name: {errno}"),
    })?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(workdir.join(JOBS_DIR).join(format!("{name}-{id}")))
}

/// Creates `path` (mode 0700, it must not exist) and checks that it is a
/// directory of ours that no one else can write to, nor its parent.
fn make_private_dir(path: &Path) -> Result<(), SlurmError> {
    let refuse = |reason: String| SlurmError::JobDir {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| refuse(format!("creating its parent: {e}")))?;
        }
        let meta = std::fs::metadata(parent).map_err(|e| refuse(e.to_string()))?;
        let me = nix::unistd::geteuid().as_raw();
        let sticky = meta.mode() & 0o1000 != 0;
        if (meta.uid() != me && meta.uid() != 0) || (meta.mode() & 0o022 != 0 && !sticky) {
            return Err(refuse(format!(
                "its parent {} is not ours, or others may write to it",
                parent.display()
            )));
        }
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| refuse(e.to_string()))?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| refuse(e.to_string()))?;
    if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(refuse("it is not a directory of ours".to_owned()));
    }
    Ok(())
}

/// Writes `text` to a new file `path`, mode `mode`.
fn write_new(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), SlurmError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_error("create", path))?;
    write(&mut file)
        .and_then(|()| file.flush())
        .map_err(io_error("write", path))
}

/// A job written to its directory, ready to submit.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job directory.
    pub dir: PathBuf,
    /// The groups, each with its log file.
    pub groups: Vec<String>,
}

impl Job {
    /// A group's log file.
    pub fn log_file(&self, group: &str) -> PathBuf {
        self.dir
            .join(LOGS_DIR)
            .join(format!("{}.log", log_name(group)))
    }
}

/// Creates the job directory and writes the plan JSON, the batch script
/// and the logs folder into it.
pub fn write_job(plan: &Plan, options: &JobOptions) -> Result<Job, SlurmError> {
    let dir = &options.job_dir;
    make_private_dir(dir)?;
    write_new(&dir.join(PLAN_FILE), 0o600, |file| {
        let mut out = std::io::BufWriter::new(file);
        serde_json::to_writer(&mut out, plan).map_err(std::io::Error::other)?;
        out.flush()
    })?;
    let script = batch_script(plan, options);
    write_new(&dir.join(SCRIPT_FILE), 0o700, |file| {
        file.write_all(script.as_bytes())
    })?;
    let logs = dir.join(LOGS_DIR);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&logs)
        .map_err(io_error("create", &logs))?;
    Ok(Job {
        dir: dir.clone(),
        groups: step_groups(plan).into_iter().map(|g| g.name).collect(),
    })
}

/// Submits the job: `sbatch --parsable SCRIPT`, returning the job id.
fn submit(job: &Job) -> Result<String, SlurmError> {
    let script = job.dir.join(SCRIPT_FILE);
    let output = Command::new("sbatch")
        .arg("--parsable")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => SlurmError::Missing { program: "sbatch" },
            _ => SlurmError::Io {
                action: "run sbatch on",
                path: script.clone(),
                source,
            },
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // `--parsable` prints `ID` or, on a federation, `ID;CLUSTER`.
    let id = stdout.trim().split(';').next().unwrap_or("").to_owned();
    if !output.status.success() || id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(SlurmError::Refused {
            job_dir: job.dir.clone(),
            reason: format!("{} {}", stderr.trim(), stdout.trim())
                .trim()
                .to_owned(),
        });
    }
    Ok(id)
}

/// What `scontrol show job` says of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
enum JobState {
    /// Pending, running, completing: not over yet.
    Live,
    /// Over, with Slurm's state and `ExitCode` (`CODE:SIGNAL`).
    Ended { state: String, exit_code: String },
    /// `scontrol` could not say (the controller unreachable, restarting
    /// or failing over): asked again at the next query, as the job may
    /// well run on. The text is scontrol's.
    Unknown(String),
}

/// The job states after which nothing more runs.
const FINAL_STATES: [&str; 9] = [
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "OUT_OF_MEMORY",
];

/// Reads a job's state from `scontrol show job -o ID` (one line of
/// `Key=Value` words). A job the controller no longer knows has ended.
fn query(job_id: &str) -> Result<JobState, SlurmError> {
    let output = Command::new("scontrol")
        .args(["show", "job", "-o", job_id])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => SlurmError::Missing {
                program: "scontrol",
            },
            _ => SlurmError::Io {
                action: "run scontrol show job",
                path: PathBuf::from(job_id),
                source,
            },
        })?;
    if !output.status.success() && !purged(&String::from_utf8_lossy(&output.stderr)) {
        let said = String::from_utf8_lossy(&output.stderr);
        return Ok(JobState::Unknown(format!(
            "{} ({})",
            said.trim(),
            output.status
        )));
    }
    Ok(parse_job_state(
        &String::from_utf8_lossy(&output.stdout),
        output.status.success(),
    ))
}

/// Whether `scontrol`'s complaint says the controller does not know the
/// job (it ended and was purged), rather than that it could not be asked.
fn purged(stderr: &str) -> bool {
    stderr.contains("Invalid job id")
}

/// [`query`]'s parsing, apart for the tests.
fn parse_job_state(line: &str, known: bool) -> JobState {
    let value = |key: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
            .to_owned()
    };
    let state = value("JobState");
    if !known || FINAL_STATES.contains(&state.as_str()) {
        JobState::Ended {
            state: if known { state } else { "(purged)".to_owned() },
            exit_code: value("ExitCode"),
        }
    } else {
        JobState::Live
    }
}

/// One file followed as it grows, its complete lines printed with a
/// prefix (`tail -f`, by polling: the file is written on another node
/// of a shared file system, where inotify sees nothing).
struct Follower {
    prefix: String,
    path: PathBuf,
    file: Option<std::fs::File>,
    partial: Vec<u8>,
}

impl Follower {
    fn new(prefix: String, path: PathBuf) -> Self {
        Follower {
            prefix,
            path,
            file: None,
            partial: Vec::new(),
        }
    }

    /// Prints the complete lines written since the last call; with
    /// `last`, also an unfinished last line.
    fn pump(&mut self, out: &mut dyn Write, last: bool) -> std::io::Result<()> {
        if self.file.is_none() {
            self.file = std::fs::File::open(&self.path).ok();
        }
        if let Some(file) = &mut self.file {
            file.read_to_end(&mut self.partial)?;
        }
        let mut start = 0;
        while let Some(end) = memchr::memchr(b'\n', &self.partial[start..]) {
            out.write_all(self.prefix.as_bytes())?;
            out.write_all(&self.partial[start..=start + end])?;
            start += end + 1;
        }
        self.partial.drain(..start);
        if last && !self.partial.is_empty() {
            out.write_all(self.prefix.as_bytes())?;
            out.write_all(&self.partial)?;
            out.write_all(b"\n")?;
            self.partial.clear();
        }
        out.flush()
    }
}

/// The script's exit status, once it wrote it.
fn read_status(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join(STATUS_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// How often the logs and the status file are read.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);
/// How often the controller is asked about the job while it runs: the
/// status file says when the script ended; this catches a job that ended
/// without writing it (cancelled, out of time), without loading the
/// controller with a query per log poll.
const QUERY_INTERVAL: Duration = Duration::from_secs(2);
/// How long to wait, after the script wrote its status, for Slurm to
/// record the job as over (its steps' processes gone).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the controller is asked while the job is ending (its status
/// written, or cancelled): the end is near, and worth seeing soon.
const ENDING_QUERY_INTERVAL: Duration = Duration::from_millis(250);

/// The signals that stop `ipc-run slurm`, read from a signalfd instead of
/// killing it, so that the job is cancelled rather than left running.
fn stop_signals() -> Option<SignalFd> {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    // Commands started after this (sbatch, scontrol, scancel) get an
    // empty mask back from std's spawn.
    set.thread_block().ok()?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok()
}

/// Waits up to `timeout` for a stop signal; its number when one came.
fn wait_for_signal(signals: Option<&SignalFd>, timeout: Duration) -> Option<i32> {
    let Some(signals) = signals else {
        std::thread::sleep(timeout);
        return None;
    };
    let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
    // EINTR or an error: the caller polls again after its next round.
    let _ = nix::poll::poll(&mut fds, PollTimeout::from(millis));
    match signals.read_signal() {
        Ok(Some(info)) => i32::try_from(info.ssi_signo).ok(),
        _ => None,
    }
}

/// `scancel JOB`: Slurm signals the steps and the script (SIGTERM, then
/// SIGKILL after its KillWait), and the job ends as cancelled.
fn cancel(job_id: &str) -> Result<(), SlurmError> {
    let status = Command::new("scancel")
        .arg(job_id)
        .stdin(Stdio::null())
        .status()
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => SlurmError::Missing { program: "scancel" },
            _ => SlurmError::Io {
                action: "run scancel on job",
                path: PathBuf::from(job_id),
                source,
            },
        })?;
    if !status.success() {
        tracing::warn!("scancel {job_id} failed: {status}");
    }
    Ok(())
}

/// Submits `job`, prints each group's log lines as `[group] line` (and the
/// script's own as `[job] line`) on `out` while it runs, and returns the
/// job's exit status: the topology's. A first SIGINT, SIGTERM or SIGHUP
/// cancels the job and goes on following it to its end; a second stops
/// following at once (128+signal).
pub fn submit_and_follow(job: &Job, out: &mut dyn Write) -> Result<i32, SlurmError> {
    let signals = stop_signals();
    let job_id = match submit(job) {
        Ok(id) => id,
        Err(error) => {
            // Nothing ran: the directory just made holds nothing to keep
            // (`--script-only` shows the script).
            let _ = std::fs::remove_dir_all(&job.dir);
            return Err(error);
        }
    };
    eprintln!(
        "ipc-run slurm: submitted batch job {job_id}; its files are in {}",
        job.dir.display()
    );
    let mut followers: Vec<Follower> = job
        .groups
        .iter()
        .map(|g| Follower::new(format!("[{g}] "), job.log_file(g)))
        .collect();
    followers.push(Follower::new(
        "[job] ".to_owned(),
        job.dir.join(JOB_OUTPUT_FILE),
    ));
    let mut pump_all = |out: &mut dyn Write, last: bool| {
        followers
            .iter_mut()
            .try_for_each(|f| f.pump(out, last))
            .map_err(io_error("write the logs of", &job.dir))
    };
    let mut next_query = Instant::now() + QUERY_INTERVAL / 2;
    let mut settle_until = None;
    let mut cancelled = false;
    loop {
        pump_all(out, false)?;
        let now = Instant::now();
        if settle_until.is_none() && read_status(&job.dir).is_some() {
            settle_until = Some(now + SETTLE_TIMEOUT);
            next_query = now;
        }
        if now >= next_query {
            let ended = match query(&job_id)? {
                JobState::Ended { state, exit_code } => Some((state, exit_code)),
                JobState::Live => None,
                JobState::Unknown(why) => {
                    eprintln!(
                        "ipc-run slurm: cannot ask about job {job_id} now: {why}; asking again"
                    );
                    None
                }
            };
            let settled = settle_until.is_some_and(|until| now >= until);
            if ended.is_some() || settled {
                pump_all(out, true)?;
                // Read again: the script may have written it since.
                if let Some(code) = read_status(&job.dir) {
                    return Ok(code);
                }
                let (state, exit_code) = ended.unwrap_or_default();
                return Err(SlurmError::Ended {
                    job_id,
                    state,
                    exit_code,
                    job_dir: job.dir.clone(),
                });
            }
            next_query = now
                + if settle_until.is_some() || cancelled {
                    ENDING_QUERY_INTERVAL
                } else {
                    QUERY_INTERVAL
                };
        }
        if let Some(signal) = wait_for_signal(signals.as_ref(), FOLLOW_INTERVAL) {
            if cancelled {
                pump_all(out, true)?;
                eprintln!("ipc-run slurm: stopped following job {job_id}, cancelled");
                return Ok(crate::exit::signaled(signal));
            }
            eprintln!("ipc-run slurm: cancelling job {job_id} (scancel); again to stop following");
            cancel(&job_id)?;
            cancelled = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_needed() {
        assert_eq!(quote("/opt/ipc-run"), "/opt/ipc-run");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn cpus_are_whole_and_at_least_one() {
        assert_eq!(whole_cpus(None), 1);
        assert_eq!(whole_cpus(Some(0.5)), 1);
        assert_eq!(whole_cpus(Some(2.0)), 2);
        assert_eq!(whole_cpus(Some(2.25)), 3);
        assert_eq!(whole_cpus(Some(-1.0)), 1);
    }

    #[test]
    fn only_an_unknown_job_is_taken_as_purged() {
        assert!(purged("slurm_load_jobs error: Invalid job id specified\n"));
        assert!(!purged(
            "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n"
        ));
    }

    #[test]
    fn job_states_are_read_from_scontrol() {
        let running = "JobId=3 JobName=x UserId=root(0) JobState=RUNNING Reason=None ExitCode=0:0";
        assert_eq!(parse_job_state(running, true), JobState::Live);
        let completing = "JobId=3 JobState=COMPLETING ExitCode=0:0";
        assert_eq!(parse_job_state(completing, true), JobState::Live);
        let cancelled = "JobId=3 JobState=CANCELLED Reason=None ExitCode=0:15";
        assert_eq!(
            parse_job_state(cancelled, true),
            JobState::Ended {
                state: "CANCELLED".to_owned(),
                exit_code: "0:15".to_owned()
            }
        );
        // `slurm_load_jobs error: Invalid job id specified`: purged.
        assert!(matches!(parse_job_state("", false), JobState::Ended { .. }));
    }

    #[test]
    fn a_job_ended_by_a_signal_exits_as_a_killed_command() {
        let ended = |exit_code: &str| SlurmError::Ended {
            job_id: "3".to_owned(),
            state: "CANCELLED".to_owned(),
            exit_code: exit_code.to_owned(),
            job_dir: PathBuf::from("/j"),
        };
        assert_eq!(ended("0:15").exit_code(), 143);
        assert_eq!(ended("0:0").exit_code(), 3);
        assert_eq!(ended("").exit_code(), 3);
    }

    #[test]
    fn a_follower_prints_whole_lines_with_its_prefix() {
        let dir = std::env::temp_dir().join(format!("ipc-run-follow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.log");
        let mut follower = Follower::new("[a] ".to_owned(), path.clone());
        let mut out = Vec::new();
        follower.pump(&mut out, false).unwrap();
        assert!(out.is_empty(), "no file yet, nothing printed");
        std::fs::write(&path, "one\ntw").unwrap();
        follower.pump(&mut out, false).unwrap();
        assert_eq!(String::from_utf8_lossy(&out), "[a] one\n");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"o\nthree").unwrap();
        follower.pump(&mut out, true).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out),
            "[a] one\n[a] two\n[a] three\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
