//! Findings of a review, each a case: text from the topology in ipc-run's
//! own `sd_notify` `STATUS=` line must not become an assignment of its own
//! (`docs/supervision.md`, "ipc-run under a service manager"; a socket the
//! test binds stands for systemd); `ipc-run slurm` goes on following a job
//! while the controller cannot be asked (`docs/distributed.md`, "Slurm";
//! `sbatch` and `scontrol` stood in for by scripts).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::process::Command;

use crate::support::{IPC_RUN, RUN_TIMEOUT, Scratch, run_captured};

/// A program whose path holds newlines: its spawn error, which names it,
/// is the `STATUS=` of the failure. Were it sent as it is, the manager
/// would read `MAINPID=1` and `READY=1` from it.
#[test]
fn a_status_line_carries_no_assignment_of_its_own() {
    let mut scratch = Scratch::new("review-sd-notify-status");
    let path = scratch.dir.join("manager.sock");
    let manager = UnixDatagram::bind(&path).unwrap();
    manager.set_read_timeout(Some(RUN_TIMEOUT)).unwrap();
    let file = scratch.topology(
        r#"
[process.broken]
cmd = ["/nonexistent\nMAINPID=1\nREADY=1"]
"#,
    );
    let mut command = scratch.run_command(&file);
    command.env("NOTIFY_SOCKET", &path);
    let finished = run_captured(&mut command);
    assert_eq!(finished.code, 3, "{}", finished.stderr);
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    // The last message of a run is its STOPPING=1.
    while !messages
        .iter()
        .any(|m: &String| m.starts_with("STOPPING=1"))
    {
        let n = manager.recv(&mut buf).expect("a datagram from ipc-run");
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let failure = messages
        .iter()
        .find(|m| m.contains("broken: failed to start"))
        .unwrap_or_else(|| panic!("no status of the failure in {messages:?}"));
    assert!(
        failure.starts_with("STATUS=") && !failure.contains('\n'),
        "one STATUS= line: {failure:?}"
    );
    assert!(failure.contains("/nonexistent\\nMAINPID=1"), "{failure:?}");
    for message in &messages {
        for line in message.lines() {
            assert!(
                !line.starts_with("MAINPID=") && line != "READY=1",
                "an assignment from the topology reached the manager: {message:?}"
            );
        }
    }
    scratch.assert_left_nothing();
}

/// `scontrol show job` fails twice as it does while the controller is
/// unreachable (restarting, failing over), then the job has ended with
/// its status written: `ipc-run slurm` says it cannot ask, asks again, and
/// exits with the job's status, instead of taking the failure for a job
/// purged long ago (exit 3, with the job still running).
#[test]
fn slurm_follows_a_job_through_an_unreachable_controller() {
    let mut scratch = Scratch::new("review-slurm-controller");
    let file = scratch.topology("[process.a]\ncmd = [\"true\"]\n");
    let bin = scratch.dir.join("bin");
    let job_dir = scratch.dir.join("job");
    let count = scratch.dir.join("queries");
    std::fs::create_dir(&bin).unwrap();
    let script = |name: &str, text: &str| {
        let path = bin.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    script("sbatch", "#!/bin/sh\necho 4242\n");
    script(
        "scontrol",
        &format!(
            r#"#!/bin/sh
n=$(cat '{count}' 2>/dev/null || echo 0); n=$((n + 1)); echo $n > '{count}'
if [ $n -le 2 ]; then
    echo "slurm_load_jobs error: Unable to contact slurm controller (connect failure)" >&2
    exit 1
fi
echo 0 > '{job}/status'
echo "JobId=4242 JobState=COMPLETED Reason=None ExitCode=0:0"
"#,
            count = count.display(),
            job = job_dir.display()
        ),
    );
    let finished = run_captured(
        Command::new(IPC_RUN)
            .args(["--color", "never", "slurm", "--limits", "default"])
            .arg("--job-dir")
            .arg(&job_dir)
            .arg(&file)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display())),
    );
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert!(
        finished
            .stderr
            .contains("cannot ask about job 4242 now: slurm_load_jobs error: Unable to contact"),
        "{}",
        finished.stderr
    );
    assert_eq!(std::fs::read_to_string(&count).unwrap().trim(), "3");
}
