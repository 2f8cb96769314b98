//! The control commands as the CLI runs them: find the run, send one
//! request, print the answer as text for people or JSON for tools.

use std::io::Write;
use std::path::PathBuf;

use super::client::{self, ClientError};
use super::protocol::{
    ChannelStatus, Command, ErrorCode, LogRecord, ProcessStatus, Request, Response, RunInfo,
    RunSource,
};

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
    let mut rows = vec![
        [
            "PROCESS",
            "STATE",
            "PID",
            "RESTARTS",
            "UPTIME",
            "LAST EXIT",
            "LOGGED",
        ]
        .map(str::to_owned),
    ];
    for p in response.processes.iter().flatten() {
        rows.push([
            p.name.clone(),
            state_text(p),
            p.pid.map_or("-".to_owned(), |pid| pid.to_string()),
            p.restarts.to_string(),
            p.uptime_ms.map_or("-".to_owned(), duration),
            p.last_exit.clone().unwrap_or_else(|| "-".to_owned()),
            logged_text(p),
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
        let mut rows =
            vec![["CHANNEL", "MECHANISM", "FROM", "TO", "BUFFERED", "TRAFFIC"].map(str::to_owned)];
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
                traffic_text(c),
            ]);
        }
        write_table(out, &rows)?;
    }
    Ok(())
}

/// The `LOGGED` column: lines and bytes relayed from stdout and stderr
/// together (each apart in JSON).
fn logged_text(p: &ProcessStatus) -> String {
    let lines = p.stdout_lines.unwrap_or(0) + p.stderr_lines.unwrap_or(0);
    let bytes = p.stdout_bytes.unwrap_or(0) + p.stderr_bytes.unwrap_or(0);
    if bytes == 0 {
        return "-".to_owned();
    }
    format!("{lines} lines, {bytes} B")
}

/// The `TRAFFIC` column: what ipc-run sees of a channel's traffic.
fn traffic_text(c: &ChannelStatus) -> String {
    let mut parts = Vec::new();
    if let Some(lines) = c.lines_written {
        let bytes = c.bytes_written.unwrap_or(0);
        parts.push(format!("relayed {lines} lines, {bytes} B"));
        parts.push(format!("queued {} lines", c.lines_queued.unwrap_or(0)));
        parts.push(format!("lost {} lines", c.lines_lost.unwrap_or(0)));
    } else if let Some(bytes) = c.bytes_written {
        parts.push(format!("written {bytes} B"));
    }
    if let Some(bytes) = c.bytes_read {
        parts.push(format!("read {bytes} B"));
    }
    match (c.messages_waiting, c.bytes_waiting) {
        (Some(messages), Some(bytes)) => parts.push(format!("waiting {messages} msgs, {bytes} B")),
        (Some(messages), None) => parts.push(format!("waiting {messages} msgs")),
        (None, Some(bytes)) => parts.push(format!("waiting {bytes} B")),
        (None, None) => {}
    }
    if parts.is_empty() {
        return "-".to_owned();
    }
    parts.join(", ")
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
        Command::Info
        | Command::Status
        | Command::Logs
        | Command::Events
        | Command::Source
        | Command::Reload => {}
    }
    Ok(())
}

/// What `live` was planned from, when it says (a run of an older ipc-run
/// does not know the request: then `None`).
pub fn source_of(live: &client::LiveRun) -> Result<Option<RunSource>, CommandError> {
    let request = Request::new(Command::Source, Vec::new());
    match client::request(&live.socket, &live.info.run_id, &request) {
        Ok(response) => Ok(response.source),
        Err(ClientError::Refused { error, .. }) if error.code == ErrorCode::BadRequest => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// `ipc-run reload`: hands `plan` to the run `live` (through a file in its
/// private directory: a plan may be larger than a request line) and prints
/// the diff it answers with and what it did. Returns the exit code: 0
/// applied (or nothing to apply), [`super::EXIT_REFUSED`] when the run
/// refused it (nothing changed), [`EXIT_APPLY_FAILED`] when a step failed
/// after others were applied.
pub fn reload(
    live: &client::LiveRun,
    plan: &crate::plan::Plan,
    source: RunSource,
    dry_run: bool,
    format: Format,
    out: &mut dyn Write,
) -> Result<i32, CommandError> {
    let run_id = &live.info.run_id;
    let dir = live.socket.parent().unwrap_or(std::path::Path::new("."));
    let path = dir.join(format!("reload-{}.json", std::process::id()));
    let io = |source: std::io::Error| ClientError::Io {
        run_id: run_id.clone(),
        socket: live.socket.clone(),
        source,
    };
    if let Err(error) = write_private(&path, dir, plan) {
        let _ = std::fs::remove_file(&path);
        return Err(io(error).into());
    }
    let mut request = Request::new(Command::Reload, Vec::new());
    request.plan_file = Some(path.display().to_string());
    request.source = Some(source);
    request.dry_run = dry_run;
    let answer = client::exchange(&live.socket, run_id, &request);
    let _ = std::fs::remove_file(&path);
    let response = answer?;
    let code = match &response.error {
        None => 0,
        Some(error) if error.code == ErrorCode::ApplyFailed => EXIT_APPLY_FAILED,
        Some(error) if response.diff.is_none() => {
            return Err(ClientError::Refused {
                run_id: run_id.clone(),
                error: error.clone(),
            }
            .into());
        }
        Some(_) => super::EXIT_REFUSED,
    };
    if format == Format::Json {
        print_json(&response, out)?;
        return Ok(code);
    }
    let label = format!("{} ({})", live.info.name, live.info.run_id);
    if let Some(diff) = &response.diff {
        write!(out, "{}", diff.render())?;
    }
    for step in response.done.iter().flatten() {
        writeln!(out, "{label}: {step}")?;
    }
    match &response.error {
        Some(error) => eprintln!("error: run {run_id}: {}", error.message),
        None if dry_run => writeln!(out, "{label}: dry run, nothing changed")?,
        None => {}
    }
    Ok(code)
}

/// Exit code of a `reload` that failed part way (`apply-failed`), as a
/// launch failure.
pub const EXIT_APPLY_FAILED: i32 = 3;

/// Writes `plan` as JSON to a new file at `path`, readable by the owner
/// of the run directory `dir` alone: root reloading another user's run
/// hands the file to that user, so the run can read it.
fn write_private(
    path: &std::path::Path,
    dir: &std::path::Path,
    plan: &crate::plan::Plan,
) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let owner = std::fs::metadata(dir)?;
    if owner.uid() != nix::unistd::geteuid().as_raw() {
        std::os::unix::fs::fchown(&file, Some(owner.uid()), Some(owner.gid()))?;
    }
    let mut writer = std::io::BufWriter::new(file);
    serde_json::to_writer(&mut writer, plan).map_err(std::io::Error::other)?;
    writer.flush()
}

/// `ipc-run logs`: the records `request` (a `logs` request) asks for,
/// as the relay prints them (`name | line`, with the time when
/// `timestamps`) or one JSON record per line; with `follow`, new ones as
/// they come, until the run ends.
pub fn logs(
    roots: &[PathBuf],
    run: Option<&str>,
    request: Request,
    timestamps: bool,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let live = client::resolve(run, roots)?;
    let (response, mut stream) = client::subscribe(&live.socket, &live.info.run_id, &request)?;
    let names = response.instances.clone().unwrap_or_default();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let print = |records: &[LogRecord], out: &mut dyn Write| -> std::io::Result<()> {
        for record in records {
            if format == Format::Json {
                serde_json::to_writer(&mut *out, record).map_err(std::io::Error::other)?;
                writeln!(out)?;
                continue;
            }
            let sep = if record.continued { '+' } else { '|' };
            let stamp = if timestamps && !record.continued {
                format!("{} ", record.time)
            } else {
                String::new()
            };
            let line = match &record.line {
                serde_json::Value::String(text) => text.clone(),
                bytes => {
                    let bytes: Vec<u8> = bytes
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                        .collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                }
            };
            writeln!(out, "{:<width$} {sep} {stamp}{line}", record.instance)?;
        }
        out.flush()
    };
    print(response.records.as_deref().unwrap_or_default(), out)?;
    if !request.follow {
        return Ok(());
    }
    while let Some(response) = client::next_line(&mut stream, &live)? {
        if let Some(dropped) = &response.dropped {
            // Said where it happened, between the records around the gap.
            out.flush()?;
            eprintln!(
                "ipc-run: records of {} were dropped before they could be sent: more output \
                 arrived at once than the run keeps per process (`run --log-memory`)",
                dropped.join(", ")
            );
        }
        print(response.records.as_deref().unwrap_or_default(), out)?;
    }
    Ok(())
}

/// `ipc-run events`: the run's lifecycle events as they happen, one JSON
/// object per line (`--format json`) or one sentence per line, until the
/// run ends.
pub fn events(
    roots: &[PathBuf],
    run: Option<&str>,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let live = client::resolve(run, roots)?;
    let request = Request::new(Command::Events, Vec::new());
    let (_, mut stream) = client::subscribe(&live.socket, &live.info.run_id, &request)?;
    while let Some(response) = client::next_line(&mut stream, &live)? {
        let Some(event) = response.event else {
            continue;
        };
        if format == Format::Json {
            serde_json::to_writer(&mut *out, &event).map_err(std::io::Error::other)?;
            writeln!(out)?;
        } else {
            let mut detail = String::new();
            if let Some(pid) = event.pid {
                detail.push_str(&format!(" pid {pid}"));
            }
            if let Some(status) = &event.status {
                detail.push_str(&format!(" ({status})"));
            }
            if let Some(ms) = event.delay_ms {
                detail.push_str(&format!(" in {}", duration(ms)));
            }
            writeln!(
                out,
                "{} {} {}{detail}",
                event.time, event.process, event.event
            )?;
        }
        out.flush()?;
    }
    Ok(())
}

/// `--since`: a duration back from now (`10s`, `5m`, `1h`) or an RFC 3339
/// time (`2026-01-31T23:59:59Z`, `2026-01-31T23:59:59.5+01:00`), as
/// milliseconds since the Unix epoch.
pub fn parse_since(text: &str) -> Result<u64, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    if let Ok(back) = crate::topology::Millis::parse(text) {
        let back = back.duration();
        return Ok(u64::try_from(now.saturating_sub(back).as_millis()).unwrap_or(u64::MAX));
    }
    parse_rfc3339(text).ok_or_else(|| {
        format!("`{text}` is neither a duration (10s, 5m, 1h) nor an RFC 3339 time (2026-01-31T23:59:59Z)")
    })
}

/// An RFC 3339 time as milliseconds since the Unix epoch.
fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut millis = 0;
    if b[at] == b'.' {
        let start = at + 1;
        at = start;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        let fraction = std::str::from_utf8(&b[start..at]).ok()?;
        if fraction.is_empty() {
            return None;
        }
        let padded = format!("{fraction:0<3}");
        millis = padded[..3].parse::<i64>().ok()?;
    }
    let offset = match b.get(at..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), ..] if b.len() == at + 6 && b[at + 3] == b':' => {
            let minutes = num(at + 1..at + 3)? * 60 + num(at + 4..at + 6)?;
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset * 60;
    u64::try_from(secs * 1000 + millis).ok()
}

/// Days since 1970-01-01 of a Gregorian date (eras of 400 years from
/// 0000-03-01, so the leap day ends a year).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
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
    use super::{duration, parse_rfc3339, parse_since};

    #[test]
    fn since_takes_rfc3339_times_and_durations() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-01-31T23:59:59.123Z"),
            Some(1_769_903_999_123)
        );
        assert_eq!(
            parse_rfc3339("2026-02-01T00:59:59.123+01:00"),
            Some(1_769_903_999_123)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00.5Z"),
            Some(1_709_208_000_500)
        );
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        let ten_back = parse_since("10s").unwrap();
        let now = parse_since("0s").unwrap();
        assert!(now >= ten_back + 10_000);
        assert!(parse_since("soon").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(12_345), "12.3s");
        assert_eq!(duration(185_000), "3m05s");
        assert_eq!(duration(3_720_000), "1h02m");
    }
}
