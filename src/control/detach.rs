//! `ipc-run run --detach`: a second ipc-run runs the topology in the
//! background (its own process group, no terminal, output to `--log-dir`
//! or nowhere) while the first waits on a socket pair, the background
//! copy's stdin, for one line: `ready RUN_ID` once every process is ready
//! (written by the supervisor), or, when the run ends first, `failed CODE`
//! and the reason. The first prints the run id and exits 0, or exits with
//! the run's status and the reason on stderr.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::sys::socket::{MsgFlags, send};

/// The hidden flag of the background copy.
pub const ANNOUNCE_FLAG: &str = "--announce-on-stdin";

/// Starts `ipc-run ARGS` in the background and waits for its first
/// announcement: the run id, or (exit status, `: reason`).
pub fn start(args: Vec<OsString>) -> std::io::Result<Result<String, (i32, String)>> {
    let (ours, theirs) = UnixStream::pair()?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    let mut lines = BufReader::new(ours).lines();
    let first = lines.next().transpose()?.unwrap_or_default();
    if let Some(run_id) = first.strip_prefix("ready ") {
        return Ok(Ok(run_id.to_owned()));
    }
    let mut reason: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait()?;
    let code = first
        .strip_prefix("failed ")
        .and_then(|c| c.parse().ok())
        .or(status.code())
        .unwrap_or(crate::exit::ExitCode::Launch.code());
    if reason.is_empty() {
        reason.push(format!("it exited with status {code}"));
    }
    Ok(Err((code, format!(": {}", reason.join("; ")))))
}

/// The background copy's run ended with `exit_code`: says why (`failed`,
/// one line each), for a `run --detach` still waiting (after `ready`
/// nobody reads, and the lines are dropped).
pub fn report_outcome(to: &OwnedFd, exit_code: i32, failed: &[String]) {
    let mut text = format!("failed {exit_code}\n");
    for line in failed {
        text.push_str(line);
        text.push('\n');
    }
    write_all(to, &text);
}

/// The background copy could not run the topology at all.
pub fn report_error(to: &OwnedFd, code: i32, error: &dyn std::fmt::Display) {
    write_all(to, &format!("failed {code}\n{error}\n"));
}

fn write_all(to: &OwnedFd, text: &str) {
    use std::os::fd::AsRawFd;
    let mut bytes = text.as_bytes();
    while !bytes.is_empty() {
        match send(to.as_fd().as_raw_fd(), bytes, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) if n > 0 => bytes = &bytes[n..],
            Err(nix::errno::Errno::EINTR) => {}
            _ => return,
        }
    }
}
