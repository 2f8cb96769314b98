//! The control commands as the CLI runs them: find the run, send one
//! request, print the answer as text for people or JSON for tools.

use std::io::Write;
use std::path::PathBuf;

use super::client::{self, ClientError};
use super::protocol::{Command, ProcessStatus, Request, Response, RunInfo};

/// How a control command prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns and sentences.
    Text,
    /// One JSON document.
    Json,
}

/// Why a control command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The run could not be found or refused.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Writing the answer failed.
    #[error("failed to write output: {0}")]
    Output(#[from] std::io::Error),
}

impl CommandError {
    /// The documented exit code.
    pub fn exit_code(&self) -> i32 {
        match self {
            CommandError::Client(error) => error.exit_code(),
            CommandError::Output(_) => crate::exit::ExitCode::Invalid.code(),
        }
    }
}

/// `ipc-run ps`: the live runs under `roots`.
pub fn ps(roots: &[PathBuf], format: Format, out: &mut dyn Write) -> Result<(), CommandError> {
    let runs: Vec<RunInfo> = client::live_runs(roots)
        .into_iter()
        .map(|r| r.info)
        .collect();
    if format == Format::Json {
        serde_json::to_writer_pretty(&mut *out, &runs).map_err(std::io::Error::other)?;
        writeln!(out)?;
        return Ok(());
    }
    if runs.is_empty() {
        writeln!(out, "no live runs")?;
        return Ok(());
    }
    let mut rows = vec![[
        "NAME".to_owned(),
        "RUN ID".to_owned(),
        "PID".to_owned(),
        "UPTIME".to_owned(),
        "STATE".to_owned(),
        "PROCESSES".to_owned(),
    ]];
    for run in &runs {
        rows.push([
            run.name.clone(),
            run.run_id.clone(),
            run.pid.to_string(),
            duration(run.uptime_ms),
            run.state.clone(),
            run.processes.to_string(),
        ]);
    }
    write_table(out, &rows)?;
    Ok(())
}

/// `ipc-run status`: the processes and channels of one run.
pub fn status(
    roots: &[PathBuf],
    run: Option<&str>,
    procs: Vec<String>,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let live = client::resolve(run, roots)?;
    let request = Request::new(Command::Status, procs);
    let response = client::request(&live.socket, &live.info.run_id, &request)?;
    if format == Format::Json {
        return print_json(&response, out);
    }
    if let Some(run) = &response.run {
        writeln!(
            out,
            "run {} ({}), pid {}, up {}, {}",
            run.name,
            run.run_id,
            run.pid,
            duration(run.uptime_ms),
            run.state
        )?;
    }
    let mut rows =
        vec![["PROCESS", "STATE", "PID", "RESTARTS", "UPTIME", "LAST EXIT"].map(str::to_owned)];
    for p in response.processes.iter().flatten() {
        rows.push([
            p.name.clone(),
            state_text(p),
            p.pid.map_or("-".to_owned(), |pid| pid.to_string()),
            p.restarts.to_string(),
            p.uptime_ms.map_or("-".to_owned(), duration),
            p.last_exit.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    write_table(out, &rows)?;
    for p in response.processes.iter().flatten() {
        if let Some(text) = &p.status_text {
            writeln!(out, "  {}: {text}", p.name)?;
        }
        if let Some(failure) = &p.health_failure {
            writeln!(out, "  {}: last health check failed: {failure}", p.name)?;
        }
    }
    let channels = response.channels.unwrap_or_default();
    if !channels.is_empty() {
        writeln!(out)?;
        let mut rows = vec![["CHANNEL", "MECHANISM", "FROM", "TO", "BUFFERED"].map(str::to_owned)];
        for c in &channels {
            rows.push([
                c.name.clone(),
                c.mechanism.clone(),
                c.from.join(","),
                c.to.join(","),
                match (c.buffered, c.capacity) {
                    (Some(bytes), Some(capacity)) => format!("{bytes}/{capacity} B"),
                    _ => "-".to_owned(),
                },
            ]);
        }
        write_table(out, &rows)?;
    }
    Ok(())
}

/// The state column: the state, with the exit code or the time left.
fn state_text(p: &ProcessStatus) -> String {
    match (p.state.as_str(), p.exit_code, p.restart_in_ms) {
        ("exited", Some(code), _) => format!("exited {code}"),
        ("backoff", _, Some(ms)) => format!("backoff until +{}", duration(ms)),
        (state, _, _) => match &p.health {
            Some(health) => format!("{state}, {health}"),
            None => state.to_owned(),
        },
    }
}

/// `start`, `stop`, `restart`, `signal` and `down`: one request, and a
/// sentence saying what was done.
pub fn act(
    roots: &[PathBuf],
    run: Option<&str>,
    request: Request,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let live = client::resolve(run, roots)?;
    let response = client::request(&live.socket, &live.info.run_id, &request)?;
    if format == Format::Json {
        return print_json(&response, out);
    }
    let done = response.done.unwrap_or_default().join(", ");
    let label = format!("{} ({})", live.info.name, live.info.run_id);
    match request.cmd {
        Command::Start => writeln!(out, "{label}: starting {done}")?,
        Command::Stop => writeln!(out, "{label}: stopping {done}")?,
        Command::Restart => writeln!(out, "{label}: restarting {done}")?,
        Command::Signal => writeln!(
            out,
            "{label}: sent {} to {done}",
            request.signal.as_deref().unwrap_or("?")
        )?,
        Command::Down => writeln!(out, "{label}: stopping the run")?,
        Command::Info | Command::Status => {}
    }
    Ok(())
}

fn print_json(response: &Response, out: &mut dyn Write) -> Result<(), CommandError> {
    serde_json::to_writer_pretty(&mut *out, response).map_err(std::io::Error::other)?;
    writeln!(out)?;
    Ok(())
}

/// `1h02m`, `3m05s`, `12.3s`.
pub fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}.{}s", secs, ms % 1000 / 100)
    }
}

/// Rows in columns two spaces apart, the last one unpadded.
fn write_table<const N: usize>(out: &mut dyn Write, rows: &[[String; N]]) -> std::io::Result<()> {
    let mut widths = [0usize; N];
    for row in rows {
        for (k, cell) in row.iter().enumerate() {
            widths[k] = widths[k].max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (k, cell) in row.iter().enumerate() {
            if k + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[k]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(12_345), "12.3s");
        assert_eq!(duration(185_000), "3m05s");
        assert_eq!(duration(3_720_000), "1h02m");
    }
}
