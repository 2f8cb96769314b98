//! MPI worlds with the real Open MPI (`openmpi-bin`, `libopenmpi-dev`):
//! `examples/mpi/ring.c` and `examples/mpi/lines.c` compiled by `mpicc`
//! into the case's scratch directory, run as the ranks of an `mpi` edge
//! under the managed `mpirun`; a rank's stdout or stderr into a pipe to a
//! process outside the world, and a pipe into rank 0's stdin. A missing
//! Open MPI fails, naming the package.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::stacks;
use crate::support::{IPC_RUN, Live, Scratch, lines_of, numbers_after, wait_dead};

/// `examples/mpi/ring.c` built with mpicc into `scratch`.
fn ring(scratch: &Scratch) -> PathBuf {
    stacks::mpi_example(&scratch.dir, "ring")
}

/// A world of `ping` (one rank) and `pong` (`pongs` replicas).
fn world(ring: &Path, pongs: u32, extra: &str) -> String {
    let ring = ring.display();
    // One pong is instance `pong`; `replicas` makes `pong#0`, `pong#1`, ...
    let replicas = if pongs > 1 {
        format!("replicas = {pongs}")
    } else {
        String::new()
    };
    format!(
        r#"
[process.ping]
cmd = ["{ring}", "ping"]
{extra}
[process.pong]
cmd = ["{ring}", "pong"]
{replicas}
{extra}
[[edge]]
name = "world"
mechanism = "mpi"
traffic = "messages"
from = "ping"
to = "pong"
"#
    )
}

/// Every rank's two lines come out under `instance[rank]`, with the ring
/// and the allreduce right.
fn assert_ranks(stdout: &[u8], ranks: &[&str]) {
    let size = ranks.len();
    let sum = size * (size - 1) / 2;
    for (rank, instance) in ranks.iter().enumerate() {
        let prefix = format!("{instance}[{rank}]");
        let lines = lines_of(stdout, &prefix);
        let prev = (rank + size - 1) % size;
        let name = instance.split('#').next().unwrap();
        assert!(
            lines.iter().any(|l| l.contains(&format!(
                "{name}: rank {rank} of {size} received {prev} from rank {prev},"
            ))),
            "{prefix}: {lines:?}\n{}",
            String::from_utf8_lossy(stdout)
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("allreduce sum {sum} (want {sum})"))),
            "{prefix}: {lines:?}"
        );
    }
}

#[test]
fn a_world_of_two_ranks_passes_the_ring_and_the_allreduce() {
    let mut scratch = Scratch::new("mpi-two");
    let ring = ring(&scratch);
    let finished = scratch.run_to_success(&world(&ring, 1, ""));
    assert_ranks(&finished.stdout, &["ping", "pong"]);
    assert!(finished.stderr.contains("mpirun-world: exited 0"));
}

#[test]
fn a_world_of_four_ranks_oversubscribes_and_numbers_replicas_in_order() {
    let mut scratch = Scratch::new("mpi-four");
    let ring = ring(&scratch);
    let finished = scratch.run_to_success(&world(&ring, 3, ""));
    assert_ranks(&finished.stdout, &["ping", "pong#0", "pong#1", "pong#2"]);
}

#[test]
fn a_rank_writes_to_a_process_outside_the_world_through_a_fifo_by_path() {
    let mut scratch = Scratch::new("mpi-fifo");
    let ring = ring(&scratch);
    let ring = ring.display();
    let toml = format!(
        r#"
exit_code_from = "sink"
[process.ping]
shell = '''
for kv in $IPC_PORT_OUT; do case "$kv" in path=*) path="${{kv#path=}}" ;; esac; done
exec "{ring}" ping > "$path"
'''
[process.pong]
cmd = ["{ring}", "pong"]
[process.sink]
shell = '''
for kv in $IPC_PORT_IN; do case "$kv" in path=*) path="${{kv#path=}}" ;; esac; done
sed 's/^/sink got: /' < "$path"
'''
[[edge]]
name = "world"
mechanism = "mpi"
traffic = "messages"
from = "ping"
to = "pong"
[[edge]]
from = "ping.out"
to = "sink.in"
mechanism = "fifo"
deliver = "path"
"#
    );
    let finished = scratch.run_to_success(&toml);
    let got = lines_of(&finished.stdout, "sink");
    assert!(
        got.iter()
            .any(|l| l.contains("sink got: ping: rank 0 allreduce sum 1")),
        "{got:?}"
    );
    assert!(lines_of(&finished.stdout, "ping[0]").is_empty());
}

/// A world of two ranks that hold on after the allreduce, running in
/// `scratch`, and the pids of its ranks.
fn held_world(scratch: &mut Scratch) -> (Live, Vec<i32>) {
    let ring = ring(scratch);
    let file = scratch.topology(&world(&ring, 1, "env = { RING_HOLD = \"1\" }\n"));
    let mut live = scratch.live(&file);
    live.wait_for_count("allreduce sum 1", 2);
    let ranks = numbers_after(&live.stdout.join("\n"), "pid ");
    (live, ranks)
}

#[test]
fn sigkill_of_ipc_run_then_clean_leaves_no_rank_session_or_shm_file() {
    let mut scratch = Scratch::new("mpi-sigkill");
    let shm_before = vader_files("/dev/shm");
    let tmp_before = vader_files("/tmp");
    let (mut live, pids) = held_world(&mut scratch);
    assert_eq!(pids.len(), 2, "{:?}", live.stdout);
    let run_dir = scratch.first_run_dir();
    assert!(
        run_dir.join("mpi.session").is_dir(),
        "Open MPI's session is not in the run directory"
    );

    live.signal(Signal::SIGKILL);
    let _ = live.child.wait();
    let running = wait_dead(&pids, Duration::from_secs(20));
    assert!(running.is_empty(), "ranks {running:?} survive ipc-run");

    let output = Command::new(IPC_RUN)
        .arg("clean")
        .arg("--runtime-dir")
        .arg(scratch.runtime())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    scratch.assert_left_nothing();
    assert_eq!(vader_files("/dev/shm"), shm_before);
    assert_eq!(vader_files("/tmp"), tmp_before);
}

#[test]
fn sigkill_of_mpirun_ends_the_world_and_the_run_leaves_nothing() {
    let mut scratch = Scratch::new("mpi-kill-launcher");
    let shm_before = vader_files("/dev/shm");
    let (live, ranks) = held_world(&mut scratch);
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", live.child.id())).unwrap();
    let mpirun: Vec<i32> = children
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "mpirun")
        })
        .collect();
    assert_eq!(mpirun.len(), 1, "children of ipc-run: {children}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(mpirun[0]), Signal::SIGKILL).unwrap();
    let finished = live.finish();
    assert_eq!(finished.code, 137, "{}", finished.stderr);
    assert!(
        finished.stderr.contains("mpirun-world: killed by SIGKILL"),
        "{}",
        finished.stderr
    );
    let running = wait_dead(&ranks, Duration::from_secs(20));
    assert!(running.is_empty(), "ranks {running:?} survive mpirun");
    scratch.assert_left_nothing();
    assert_eq!(vader_files("/dev/shm"), shm_before);
}

/// `examples/mpi/lines.c` built with mpicc into `scratch`.
fn lines_program(scratch: &Scratch) -> PathBuf {
    stacks::mpi_example(&scratch.dir, "lines")
}

/// A world of `solver` (rank 0, writing `lines` numbered lines) and three
/// `worker`s, solver's stdout into `count`, which runs `gate` first and
/// then checks every line in order.
fn pipe_world(program: &Path, lines: u32, gate: &str) -> String {
    let world = stacks::mpi_lines_world(program, lines, 3, false);
    format!(
        r#"
exit_code_from = "count"
{world}[process.count]
shell = '''
{gate}
awk -v want={lines} '
  /^line / {{ n++; if ($0 != "line " n " of " want) bad++ }}
  /^sum / {{ sum = $2 }}
  !/^line / && !/^sum / {{ other++ }}
  END {{ printf "%d lines in order, sum %s, %d bad, %d other\n", n - bad, sum, bad, other; exit !(n == want && !bad && !other && sum == 6) }}'
'''
[[edge]]
from = "solver"
to = "count"
"#
    )
}

/// The other ranks' lines, in the log under `worker#i[rank]`, on the
/// stream they wrote.
fn assert_workers_in_log(finished: &crate::support::Finished) {
    for (i, rank) in [(0, 1), (1, 2), (2, 3)] {
        let prefix = format!("worker#{i}[{rank}]");
        let said = lines_of(&finished.stdout, &prefix);
        assert_eq!(
            said,
            [format!("rank {rank} of 4 says hello")],
            "{}",
            finished.stdout_text()
        );
        let said = lines_of(finished.stderr.as_bytes(), &prefix);
        assert_eq!(
            said,
            [format!("rank {rank} of 4 is on stderr")],
            "{}",
            finished.stderr
        );
    }
}

#[test]
fn rank_zero_stdout_goes_into_a_pipe_whole_and_the_other_ranks_stay_in_the_log() {
    let mut scratch = Scratch::new("mpi-pipe");
    let program = lines_program(&scratch);
    let finished = scratch.run_to_success(&pipe_world(&program, 5000, ""));
    assert_eq!(
        lines_of(&finished.stdout, "count"),
        ["5000 lines in order, sum 6, 0 bad, 0 other"],
        "{}",
        finished.stderr
    );
    // Rank 0's lines went into the pipe and nowhere else.
    assert!(
        !finished.stdout_text().contains("line 1 of"),
        "{}",
        finished.stdout_text()
    );
    assert!(lines_of(&finished.stdout, "solver[0]").is_empty());
    assert_workers_in_log(&finished);
    assert!(finished.stderr.contains("mpirun-world: exited 0"));
}

#[test]
fn a_reader_that_starts_reading_late_loses_no_line_of_the_rank() {
    let mut scratch = Scratch::new("mpi-pipe-slow");
    let program = lines_program(&scratch);
    let gate = scratch.dir.join("gate");
    nix::unistd::mkfifo(&gate, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // The reader reads nothing until the test opens the gate: rank 0's
    // 200000 lines (5 MB) fill the pipe and ipc-run's queue, and mpirun
    // then waits on its stdout.
    let wait = format!("read go < '{}'", gate.display());
    let file = scratch.topology(&pipe_world(&program, 200_000, &wait));
    let mut live = scratch.live(&file);
    wait_until_mpirun_blocks(&mut live);
    std::fs::write(&gate, "go\n").unwrap();
    let finished = live.finish();
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(
        lines_of(&finished.stdout, "count"),
        ["200000 lines in order, sum 6, 0 bad, 0 other"],
        "{}",
        finished.stderr
    );
    assert_workers_in_log(&finished);
    assert!(!finished.stderr.contains("could not be written"));
    scratch.assert_left_nothing();
}

/// Waits until mpirun, child of ipc-run, blocks writing its stdout
/// (`/proc/PID/wchan`): the reader of the rank's pipe reads nothing, the
/// pipe and the relay's queue are full, and ipc-run no longer reads
/// mpirun. Bounded by a number of looks, not by time.
fn wait_until_mpirun_blocks(live: &mut Live) {
    let children = format!("/proc/{0}/task/{0}/children", live.child.id());
    let mut seen = String::new();
    for _ in 0..200_000 {
        let pids = std::fs::read_to_string(&children).unwrap_or_default();
        for pid in pids.split_whitespace() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() != "mpirun" {
                continue;
            }
            seen = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
            if seen.contains("pipe_write") {
                return;
            }
        }
        std::thread::yield_now();
    }
    live.kill();
    panic!("mpirun never blocked on its stdout (its wchan: {seen:?})");
}

#[test]
fn a_pipe_into_rank_zero_is_mpiruns_stdin() {
    let mut scratch = Scratch::new("mpi-stdin");
    let world = stacks::mpi_lines_world(&lines_program(&scratch), 1, 1, true);
    let toml = format!(
        r#"
[process.feed]
shell = 'printf "first\nsecond\n"'
{world}[[edge]]
from = "feed"
to = "solver"
"#
    );
    let finished = scratch.run_to_success(&toml);
    assert_eq!(
        lines_of(&finished.stdout, "solver[0]"),
        [
            "echo: first",
            "echo: second",
            "line 1 of 1",
            "sum 1 of 2 ranks"
        ],
        "{}",
        finished.stdout_text()
    );
}

#[test]
fn replicated_ranks_stderr_fans_into_one_pipe_line_by_line() {
    let mut scratch = Scratch::new("mpi-stderr-pipe");
    let world = stacks::mpi_lines_world(&lines_program(&scratch), 3, 3, false);
    let toml = format!(
        r#"
exit_code_from = "count"
{world}[process.count]
shell = 'sort | sed "s/^/got: /"'
[[edge]]
from = "worker.stderr"
to = "count"
"#
    );
    let finished = scratch.run_to_success(&toml);
    assert_eq!(
        lines_of(&finished.stdout, "count"),
        (1..4)
            .map(|rank| format!("got: rank {rank} of 4 is on stderr"))
            .collect::<Vec<_>>(),
        "{}",
        finished.stderr
    );
    assert!(
        !finished.stderr.contains("is on stderr"),
        "{}",
        finished.stderr
    );
    // Their stdout, and rank 0's, stay in the log.
    assert_eq!(lines_of(&finished.stdout, "solver[0]").len(), 4);
    assert_eq!(
        lines_of(&finished.stdout, "worker#1[2]"),
        ["rank 2 of 4 says hello"]
    );
}

#[test]
fn a_rank_and_a_process_outside_the_world_share_one_pipe_line_by_line() {
    let mut scratch = Scratch::new("mpi-pipe-shared");
    let world = stacks::mpi_lines_world(&lines_program(&scratch), 2000, 1, false);
    let toml = format!(
        r#"
exit_code_from = "count"
{world}[process.other]
shell = 'for i in 1 2 3; do echo "other line $i"; done'
[process.count]
shell = '''awk '/^line /{{n++}} /^other line /{{o++}} END {{print n, o, NR}}' '''
[[edge]]
from = ["solver", "other"]
to = "count"
"#
    );
    let finished = scratch.run_to_success(&toml);
    // 2000 numbered lines and the sum from rank 0, 3 from `other`, each
    // whole: nothing else.
    assert_eq!(lines_of(&finished.stdout, "count"), ["2000 3 2004"]);
}

#[test]
fn log_files_keep_each_ranks_whole_lines_with_their_tags_and_not_the_piped_ones() {
    let mut scratch = Scratch::new("mpi-pipe-logdir");
    let program = lines_program(&scratch);
    let file = scratch.topology(&pipe_world(&program, 5000, ""));
    let logs = scratch.dir.join("logs");
    std::fs::create_dir(&logs).unwrap();
    let finished =
        crate::support::run_captured(scratch.run_command(&file).arg("--log-dir").arg(&logs));
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    let stdout = std::fs::read_to_string(logs.join("mpirun-world.stdout.log")).unwrap();
    let stderr = std::fs::read_to_string(logs.join("mpirun-world.stderr.log")).unwrap();
    for rank in 1..4 {
        // The tag is `[JOB,RANK]<stdout>:`, whatever the job id.
        let hello = format!(",{rank}]<stdout>:rank {rank} of 4 says hello");
        assert!(stdout.lines().any(|l| l.ends_with(&hello)), "{stdout}");
        let on_stderr = format!(",{rank}]<stderr>:rank {rank} of 4 is on stderr");
        assert!(stderr.lines().any(|l| l.ends_with(&on_stderr)), "{stderr}");
    }
    assert_eq!(
        stdout.lines().count(),
        3,
        "only the workers' lines: {stdout}"
    );
    scratch.assert_left_nothing();
}

#[test]
fn check_names_the_package_of_a_missing_mpirun() {
    let mut scratch = Scratch::new("mpi-check");
    let file = scratch.topology(&world(Path::new("/bin/true"), 1, ""));
    let output = Command::new(IPC_RUN)
        .arg("check")
        .arg(&file)
        .env("PATH", scratch.dir.join("empty"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error[E0345]"), "{stderr}");
    assert!(stderr.contains("apt install openmpi-bin"), "{stderr}");
}

/// Open MPI's shared-memory backing files and session directories in `dir`.
fn vader_files(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("vader_segment") || n.starts_with("ompi."))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
