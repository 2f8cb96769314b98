//! A child program for ipc-run that depends on `ipc-run-child` alone: it
//! reads its port `input` (a pipe, FIFO, socketpair or inherited stream
//! handed over as an fd, or a FIFO by path), tells ipc-run it is ready, and
//! copies what comes to its stdout with a prefix per line.
//!
//! ```toml
//! [process.source]
//! cmd = ["seq", "3"]
//!
//! [process.echo]
//! cmd = ["echo_child"]
//! ready = "notify"
//!
//! [[edge]]
//! from = "source"
//! to = "echo.input"
//! ```

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;

use ipc_run_child::{Params, State};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("echo_child: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut port = ipc_run_child::port("input")?;
    let input = match (port.take_fd(), &port.description().params) {
        (Some(fd), _) => File::from(fd),
        (None, Params::Fifo { path }) => File::open(path)?,
        (None, _) => {
            return Err(format!(
                "port `input` ({}) is not a stream handed over as an fd",
                port.kind()
            )
            .into());
        }
    };
    ipc_run_child::notify(&[State::Ready, State::Status("echoing")])?;
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(input).lines() {
        writeln!(out, "echo: {}", line?)?;
    }
    ipc_run_child::notify(&[State::Stopping])?;
    Ok(())
}
