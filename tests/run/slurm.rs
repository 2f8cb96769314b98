//! `ipc-run slurm` on a real single-node Slurm (`slurm-wlm`, `munge`):
//! `scripts/slurm-cluster.sh` starts a private munged, slurmctld and
//! slurmd in a scratch directory (ports of their own), the cases submit
//! through `sbatch`, and the cluster is stopped after, by the pids in its
//! pid files, even when a case fails (`Cluster`'s `Drop`). Missing Slurm
//! packages fail the test, naming them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::stacks;
use crate::support::{Finished, IPC_RUN, MANIFEST_DIR, Scratch, finish};

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

    /// `ipc-run slurm ARGS…` against this cluster, to its end.
    fn submit(&self, args: &[&str]) -> Finished {
        let child = Command::new(IPC_RUN)
            .args(["--color", "never", "slurm"])
            .args(args)
            .env("SLURM_CONF", self.conf())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Fails the case, killing ipc-run, if the job outlasts RUN_TIMEOUT.
        finish(child)
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
        let left = self.processes();
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

/// topologies/mpi.toml in the allocation: its mpirun, inside the group's
/// step, starts the four ranks on the step's node.
fn mpi_world(cluster: &Cluster, scratch: &Scratch) {
    stacks::program("mpirun", "openmpi-bin");
    stacks::program("mpicc", "libopenmpi-dev");
    let job_dir = scratch.dir.join("mpi-job");
    let finished = cluster.submit(&[
        "topologies/mpi.toml",
        "--time",
        "2",
        "--workdir",
        MANIFEST_DIR,
        "--job-dir",
        job_dir.to_str().unwrap(),
    ]);
    let lines = stdout_lines(&finished);
    assert_eq!(finished.code, 0, "{}", shown(&finished));
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
    mpi_world(&cluster, &scratch);
    drop(cluster);
    std::fs::remove_dir_all(&scratch.dir).unwrap();
}

/// `--script-only` prints the batch script and writes nothing.
#[test]
fn script_only_prints_the_batch_script() {
    let scratch = Scratch::new("slurm-script");
    let job_dir = scratch.dir.join("job");
    let out = Command::new(IPC_RUN)
        .args([
            "slurm",
            "topologies/mpi.toml",
            "--limits",
            "default",
            "--script-only",
        ])
        .args([
            "--partition",
            "main",
            "--time",
            "10",
            "--workdir",
            "/work/project",
        ])
        .arg("--job-dir")
        .arg(&job_dir)
        .current_dir(MANIFEST_DIR)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!job_dir.exists(), "--script-only wrote the job directory");
    let script = String::from_utf8(out.stdout)
        .unwrap()
        .replace(IPC_RUN, "/usr/bin/ipc-run")
        .replace(
            job_dir.to_str().unwrap(),
            "/work/project/ipc-run-slurm/mpi-ID",
        );
    insta::assert_snapshot!("slurm_script_mpi", script);
    std::fs::remove_dir_all(&scratch.dir).unwrap();
}
