//! `ipc-run slurm` on a real single-node Slurm (`slurm-wlm`, `munge`):
//! `scripts/slurm-cluster.sh` starts a private munged, slurmctld and
//! slurmd in a scratch directory (ports of their own), the cases submit
//! through `sbatch`, and the cluster is stopped after, by the pids in its
//! pid files, even when a case fails (`Cluster`'s `Drop`). Missing Slurm
//! packages fail the test, naming them.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::Signal;

use crate::support::stacks;
use crate::support::{Finished, IPC_RUN, Live, MANIFEST_DIR, Scratch, finish, free_port};

/// A running single-node Slurm of the case's own.
struct Cluster {
    dir: PathBuf,
}

impl Cluster {
    fn start(dir: PathBuf) -> Cluster {
        for (program, package) in [
            ("munged", "munge"),
            ("slurmctld", "slurm-wlm"),
            ("slurmd", "slurm-wlm"),
            ("sbatch", "slurm-wlm"),
        ] {
            stacks::program(program, package);
        }
        let cluster = Cluster { dir };
        let out = Command::new(script())
            .arg("start")
            .arg(&cluster.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/slurm-cluster.sh start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }

    /// `ipc-run slurm ARGS…` against this cluster.
    fn slurm_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(IPC_RUN);
        command
            .args(["--color", "never", "slurm"])
            .args(args)
            .env("SLURM_CONF", self.conf())
            .stdin(std::process::Stdio::null());
        command
    }

    /// `ipc-run slurm ARGS…` against this cluster, to its end.
    fn submit(&self, args: &[&str]) -> Finished {
        let child = self
            .slurm_command(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Fails the case, killing ipc-run, if the job outlasts RUN_TIMEOUT.
        finish(child)
    }

    /// A shipped topology (`topologies/…`, from the crate root) with `more`
    /// options and its job in `job_dir`, which must end with status 0; and
    /// its stdout lines.
    fn run_shipped(
        &self,
        topology: &str,
        more: &[&str],
        job_dir: &Path,
    ) -> (Finished, Vec<String>) {
        let mut args = vec![topology];
        args.extend_from_slice(more);
        let job_dir = job_dir.to_str().unwrap();
        args.extend([
            "--time",
            "2",
            "--workdir",
            MANIFEST_DIR,
            "--job-dir",
            job_dir,
        ]);
        let finished = self.submit(&args);
        assert_eq!(finished.code, 0, "{}", shown(&finished));
        let lines = stdout_lines(&finished);
        (finished, lines)
    }

    /// The pids of processes that belong to this cluster: its daemons
    /// (their command line names the directory) and whatever they started
    /// (slurmstepd, the jobs: `SLURM_CONF` in their environment).
    fn processes(&self) -> Vec<String> {
        let dir = self.dir.to_string_lossy().into_owned();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let read = |file: &str| std::fs::read(entry.path().join(file)).unwrap_or_default();
            let mentions = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).contains(&dir);
            if mentions(read("cmdline")) || mentions(read("environ")) {
                let cmdline = String::from_utf8_lossy(&read("cmdline")).replace('\0', " ");
                found.push(format!("{name} {cmdline}"));
            }
        }
        found
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let stopped = Command::new(script())
            .arg("stop")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        // What outlived its daemons (a job's slurmstepd and processes when
        // a case failed midway) is the cluster's: killed by pid, and
        // reported unless a case already failed.
        let left = self.processes();
        for entry in &left {
            let pid = entry.split(' ').next().and_then(|p| p.parse().ok());
            if let Some(pid) = pid {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if !std::thread::panicking() {
            assert!(stopped, "scripts/slurm-cluster.sh stop failed");
            assert!(left.is_empty(), "the cluster left processes: {left:?}");
        }
    }
}

fn script() -> PathBuf {
    Path::new(MANIFEST_DIR).join("scripts/slurm-cluster.sh")
}

fn stdout_lines(finished: &Finished) -> Vec<String> {
    finished.stdout_text().lines().map(str::to_owned).collect()
}

/// What ipc-run printed, for a failed assertion.
fn shown(finished: &Finished) -> String {
    format!(
        "exit {}\n{}{}",
        finished.code,
        finished.stdout_text(),
        finished.stderr
    )
}

/// A one-group topology through sbatch: its lines come back under
/// `[local]`, and the job's status is the topology's.
fn one_group_exit_status(cluster: &Cluster, scratch: &mut Scratch) {
    let file = scratch.topology(
        r#"
exit_code_from = "last"
[process.first]
shell = "echo first says hello"
[process.last]
after = { first = "completed" }
shell = "echo last says bye; exit 7"
"#,
    );
    let workdir = scratch.dir.join("work");
    std::fs::create_dir(&workdir).unwrap();
    let file = file.to_str().unwrap();
    let workdir_arg = workdir.to_str().unwrap();
    let finished = cluster.submit(&[file, "--time", "2", "--workdir", workdir_arg]);
    let lines = stdout_lines(&finished);
    assert_eq!(
        finished.code,
        7,
        "the job's status is the topology's: {}",
        shown(&finished)
    );
    for want in ["[local] first", "[local] last"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(want) && l.contains("says")),
            "no `{want} | …` line in {lines:?}"
        );
    }
    assert!(
        lines.contains(&"[job] ipc-run slurm: group local ended with status 7".to_owned()),
        "{lines:?}"
    );
    // The default job directory, under the working directory, 0700.
    let jobs: Vec<PathBuf> = std::fs::read_dir(workdir.join("ipc-run-slurm"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&jobs[0]).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o700);
    for file in ["plan.json", "job.sh", "job.out", "status", "logs/local.log"] {
        assert!(
            jobs[0].join(file).is_file(),
            "no {file} in {}",
            jobs[0].display()
        );
    }
}

/// Group `edge` (`numbers | squares`) and group `core` (`total`), joined by
/// the TCP edge `partial` that placement made of the cross-group edge;
/// `squares` reaches `total` at the node Slurm gave group `core`. With
/// `fail`, `numbers` exits 4 after its lines and `exit_code_from` is left
/// out: the first group to fail decides the job's status.
fn two_groups(fail: bool) -> String {
    let (numbers, exit_code_from) = if fail {
        (r#"shell = "seq 1 100; exit 4""#, "")
    } else {
        (
            r#"cmd = ["seq", "1", "100"]"#,
            r#"exit_code_from = "total""#,
        )
    };
    format!(
        r#"
name = "two-groups"
{exit_code_from}
pipeline = ["numbers", "squares"]

[process.numbers]
{numbers}
host = "edge"

[process.squares]
cmd = ["python3", "-c", '''
import os, socket, sys
port = dict(kv.split("=", 1) for kv in os.environ["IPC_PORT_PARTIAL"].split())
host, _, number = port["address"].rpartition(":")
print("squares connects to", port["address"], flush=True)
with socket.create_connection((host, int(number))) as sock:
    for line in sys.stdin:
        sock.sendall(b"%d\n" % int(line) ** 2)
''']
host = "edge"

[process.total]
cmd = ["python3", "-c", '''
import os, socket
port = dict(kv.split("=", 1) for kv in os.environ["IPC_PORT_PARTIAL"].split())
listener = socket.socket(fileno=int(port["fd"]))
conn, _ = listener.accept()
with conn:
    total = sum(int(line) for line in conn.makefile("rb"))
print("sum of 100 squares:", total, flush=True)
''']
host = "core"

[[edge]]
name = "partial"
from = "squares.partial"
to = "total.partial"
"#
    )
}

/// The two groups through sbatch: the lines crossed the TCP edge between
/// the groups' steps, each group's lines came back under its prefix, and
/// the job's status is the topology's (`total`'s; else the first failure).
fn two_groups_over_tcp(cluster: &Cluster, scratch: &mut Scratch) {
    stacks::program("python3", "python3");
    let host = Command::new("hostname").arg("-s").output().unwrap().stdout;
    let host = String::from_utf8(host).unwrap();
    for fail in [false, true] {
        let file = scratch.topology(&two_groups(fail));
        let job_dir = scratch.dir.join(format!("two-groups-{fail}"));
        let port = free_port().to_string();
        let finished = cluster.submit(&[
            file.to_str().unwrap(),
            "--base-port",
            &port,
            "--time",
            "2",
            "--job-dir",
            job_dir.to_str().unwrap(),
        ]);
        let lines = stdout_lines(&finished);
        let want = format!(
            "[edge] squares | squares connects to {}:{port}",
            host.trim()
        );
        assert!(lines.contains(&want), "no `{want}`: {}", shown(&finished));
        let sum = "[core] total | sum of 100 squares: 338350";
        assert!(
            lines.iter().any(|l| l == sum),
            "no `{sum}`: {}",
            shown(&finished)
        );
        assert_eq!(
            finished.code,
            if fail { 4 } else { 0 },
            "{}",
            shown(&finished)
        );
        if fail {
            let ended = "[job] ipc-run slurm: group edge ended with status 4";
            assert!(lines.iter().any(|l| l == ended), "{}", shown(&finished));
        }
    }
}

/// The documented example: topologies/distributed-pipeline.toml, whose
/// groups declare CPUs and memory, from the repository root.
fn shipped_pipeline(cluster: &Cluster, scratch: &Scratch) {
    let port = free_port().to_string();
    let (finished, lines) = cluster.run_shipped(
        "topologies/distributed-pipeline.toml",
        &["--base-port", &port],
        &scratch.dir.join("pipeline-job"),
    );
    let sum = "[core] total | sum of 100 squares: 338350";
    assert!(
        lines.iter().any(|l| l == sum),
        "no `{sum}`: {}",
        shown(&finished)
    );
}

/// A job sbatch refuses (an unknown partition): status 3, the reason,
/// and no job directory left.
fn refused_submission(cluster: &Cluster, scratch: &Scratch) {
    let job_dir = scratch.dir.join("refused-job");
    let finished = cluster.submit(&[
        "topologies/mpi.toml",
        "--partition",
        "nosuch",
        "--job-dir",
        job_dir.to_str().unwrap(),
    ]);
    assert_eq!(finished.code, 3, "{}", shown(&finished));
    assert!(
        finished
            .stderr
            .contains("error[E0516]: sbatch refused the job")
            && finished.stderr.contains("invalid partition"),
        "{}",
        shown(&finished)
    );
    assert!(!job_dir.exists(), "the refused job's directory was left");
}

/// `ipc-run slurm` of a job whose one process runs until stopped, followed
/// until that process has started on the cluster.
fn slow_job_running(cluster: &Cluster, scratch: &mut Scratch, job: &str) -> Live {
    let file = scratch.topology(
        r#"
[process.slow]
shell = "echo started; exec sleep 300"
"#,
    );
    let job_dir = scratch.dir.join(job);
    let command = cluster.slurm_command(&[
        file.to_str().unwrap(),
        "--time",
        "2",
        "--job-dir",
        job_dir.to_str().unwrap(),
    ]);
    let mut live = Live::start(command);
    live.wait_for_count("[local] slow | started", 1);
    live
}

/// SIGINT to `ipc-run slurm` cancels the job (`scancel`) and follows it
/// to its end: the job's group is stopped, nothing of it stays queued, and
/// the status is 143 (SIGTERM, what Slurm stopped the job with).
fn interrupted_job_is_cancelled(cluster: &Cluster, scratch: &mut Scratch) {
    let live = slow_job_running(cluster, scratch, "cancelled-job");
    live.signal(Signal::SIGINT);
    let finished = live.finish();
    assert_eq!(finished.code, 143, "{}", shown(&finished));
    assert!(
        finished.stderr.contains("cancelling job"),
        "{}",
        shown(&finished)
    );
    let queue = Command::new("squeue")
        .args(["--noheader", "--format=%i %T"])
        .env("SLURM_CONF", cluster.conf())
        .output()
        .unwrap();
    let queue = String::from_utf8_lossy(&queue.stdout);
    assert!(queue.trim().is_empty(), "still queued: {queue}");
}

/// A job directory that exists already is refused before anything is
/// written or submitted (E0517): status 3, the directory untouched.
fn existing_job_dir_is_refused(cluster: &Cluster, scratch: &Scratch) {
    let job_dir = scratch.dir.join("taken-job");
    std::fs::create_dir(&job_dir).unwrap();
    std::fs::write(job_dir.join("mine"), "kept").unwrap();
    let finished = cluster.submit(&[
        "topologies/mpi.toml",
        "--job-dir",
        job_dir.to_str().unwrap(),
    ]);
    assert_eq!(finished.code, 3, "{}", shown(&finished));
    assert!(
        finished.stderr.contains("error[E0517]"),
        "{}",
        shown(&finished)
    );
    let names: Vec<_> = std::fs::read_dir(&job_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["mine"], "the existing directory was written to");
}

/// A job cancelled by someone else (`scancel` of its id) ends without its
/// script's status: E0518 with Slurm's state, status 128 + the signal.
fn job_cancelled_elsewhere(cluster: &Cluster, scratch: &mut Scratch) {
    let live = slow_job_running(cluster, scratch, "cancelled-elsewhere-job");
    let queue = Command::new("squeue")
        .args(["--noheader", "--format=%i"])
        .env("SLURM_CONF", cluster.conf())
        .output()
        .unwrap();
    let ids = String::from_utf8_lossy(&queue.stdout).into_owned();
    let ids: Vec<&str> = ids.split_whitespace().collect();
    assert_eq!(ids.len(), 1, "one job expected in the queue: {ids:?}");
    let cancelled = Command::new("scancel")
        .arg(ids[0])
        .env("SLURM_CONF", cluster.conf())
        .status()
        .unwrap();
    assert!(cancelled.success());
    let finished = live.finish();
    // Slurm ended it with SIGTERM: 128 + 15, as a shell reports it.
    assert_eq!(finished.code, 143, "{}", shown(&finished));
    assert!(
        finished.stderr.contains("error[E0518]"),
        "{}",
        shown(&finished)
    );
}

/// topologies/mpi.toml in the allocation: its mpirun, inside the group's
/// step, starts the four ranks on the step's node.
fn mpi_world(cluster: &Cluster, scratch: &Scratch) {
    stacks::program("mpirun", "openmpi-bin");
    stacks::program("mpicc", "libopenmpi-dev");
    let (_, lines) = cluster.run_shipped("topologies/mpi.toml", &[], &scratch.dir.join("mpi-job"));
    for rank in ["ping[0]", "pong#0[1]", "pong#1[2]", "pong#2[3]"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("[local] {rank}"))
                    && l.contains("allreduce sum 6 (want 6)")),
            "rank {rank} did not report the allreduce: {lines:?}"
        );
    }
}

#[test]
fn topologies_run_through_sbatch_on_a_real_slurm() {
    let mut scratch = Scratch::new("slurm");
    let cluster = Cluster::start(scratch.dir.join("cluster"));
    one_group_exit_status(&cluster, &mut scratch);
    two_groups_over_tcp(&cluster, &mut scratch);
    shipped_pipeline(&cluster, &scratch);
    refused_submission(&cluster, &scratch);
    interrupted_job_is_cancelled(&cluster, &mut scratch);
    existing_job_dir_is_refused(&cluster, &scratch);
    job_cancelled_elsewhere(&cluster, &mut scratch);
    mpi_world(&cluster, &scratch);
}

/// `ipc-run ARGS…` in the crate root, where the shipped topologies are.
fn in_crate_root(args: &[&str]) -> Command {
    let mut command = Command::new(IPC_RUN);
    command.args(args).current_dir(MANIFEST_DIR);
    command
}

/// `ipc-run COMMAND… TOPOLOGY --limits default --script-only ARGS…` in the
/// crate root, which must succeed: the batch script it printed.
fn batch_script(command: &[&str], topology: &str, args: &[&str]) -> String {
    let out = in_crate_root(command)
        .args([topology, "--limits", "default", "--script-only"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// `--script-only` prints the batch script and writes nothing.
#[test]
fn script_only_prints_the_batch_script() {
    let scratch = Scratch::new("slurm-script");
    let job_dir = scratch.dir.join("job");
    let script = batch_script(
        &["slurm"],
        "topologies/mpi.toml",
        &[
            "--partition",
            "main",
            "--time",
            "10",
            "--workdir",
            "/work/project",
            "--job-dir",
            job_dir.to_str().unwrap(),
        ],
    );
    assert!(!job_dir.exists(), "--script-only wrote the job directory");
    let script = script.replace(IPC_RUN, "/usr/bin/ipc-run").replace(
        job_dir.to_str().unwrap(),
        "/work/project/ipc-run-slurm/mpi-ID",
    );
    insta::assert_snapshot!("slurm_script_mpi", script);
}

/// The batch script of a placed topology: a step per group, with its CPUs
/// and its peers' nodes, the allocation sized for the largest group.
#[test]
fn script_only_of_a_placed_topology() {
    let script = batch_script(
        &["slurm"],
        "topologies/distributed-pipeline.toml",
        &[
            "--workdir",
            "/work/project",
            "--job-dir",
            "/work/project/ipc-run-slurm/distributed-pipeline-ID",
        ],
    )
    .replace(IPC_RUN, "/usr/bin/ipc-run");
    insta::assert_snapshot!("slurm_script_distributed_pipeline", script);
}

/// `run --engine slurm FILE` is `slurm FILE`: the same batch script from
/// the same options; the options of one engine are
/// refused with the other, as a usage error.
#[test]
fn run_engine_slurm_is_the_slurm_command() {
    let script = |command: &[&str]| {
        batch_script(
            command,
            "topologies/distributed-pipeline.toml",
            &[
                "--workdir",
                "/work/project",
                "--time",
                "5",
                "--job-dir",
                "/work/project/ipc-run-slurm/pipeline-ID",
            ],
        )
    };
    let slurm = script(&["slurm"]);
    assert!(slurm.contains("#SBATCH --time=5"), "{slurm}");
    assert_eq!(script(&["run", "--engine", "slurm"]), slurm);
    assert_eq!(script(&["run", "--engine=slurm"]), slurm);
    for (args, says) in [
        (
            &[
                "run",
                "topologies/distributed-pipeline.toml",
                "--script-only",
            ][..],
            "need `--engine slurm`",
        ),
        (
            &[
                "run",
                "--engine",
                "slurm",
                "topologies/distributed-pipeline.toml",
                "--detach",
            ][..],
            "`--detach` is an option of a local run",
        ),
    ] {
        let out = in_crate_root(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

/// Without Slurm's commands, nothing is written and the status is 3.
#[test]
fn without_sbatch_the_job_is_not_written() {
    let scratch = Scratch::new("slurm-no-sbatch");
    let job_dir = scratch.dir.join("job");
    let out = in_crate_root(&["--color", "never", "slurm", "topologies/mpi.toml"])
        .arg("--job-dir")
        .arg(&job_dir)
        .env("PATH", scratch.dir.join("empty"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("error[E0515]: `sbatch` is not on PATH") && stderr.contains("slurm-wlm"),
        "{stderr}"
    );
    assert!(!job_dir.exists(), "the job directory was left");
}

/// The script's mapping of tasks to nodes on a cluster of many nodes
/// (the test cluster has one): `SLURM_TASKS_PER_NODE` over the expanded
/// `SLURM_JOB_NODELIST`, run by bash with `scontrol` stood in for.
#[test]
fn tasks_map_to_nodes_in_block_order() {
    let script = batch_script(&["slurm"], "topologies/mpi.toml", &[]);
    let start = script
        .find("# The node of each task")
        .expect("the mapping's start");
    let end = script
        .find("declare -A group_of")
        .expect("the mapping's end");
    let mapping = &script[start..end];
    for (per_node, nodelist, want) in [
        ("1", "n1", "n1"),
        ("2(x2),1", "n[1-3]", "n1 n1 n2 n2 n3"),
        ("1,3", "a,b", "a b b b"),
    ] {
        let program = format!(
            "scontrol() {{ [ \"$3\" = {nodelist:?} ] && printf '%s\\n' {hosts}; }}\n\
             SLURM_TASKS_PER_NODE={per_node:?} SLURM_JOB_NODELIST={nodelist:?}\n\
             {mapping}echo \"${{nodes[*]}}\"\n",
            hosts = match nodelist {
                "n[1-3]" => "n1 n2 n3",
                "a,b" => "a b",
                other => other,
            },
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(&program)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            want,
            "SLURM_TASKS_PER_NODE={per_node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
