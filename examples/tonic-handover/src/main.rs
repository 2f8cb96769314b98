//! A tonic gRPC server started by ipc-run with `endpoint = "handover"`:
//! it binds nothing, it adopts the Unix listener ipc-run bound (fd 3,
//! `LISTEN_FDS=1`, as under systemd socket activation) and serves the
//! standard health service on it until SIGTERM.
//!
//! Built and run by `tests/run/grpc.rs` (a grpcio client calls its health
//! check through the URL in its port); by hand:
//! `cargo build --manifest-path examples/tonic-handover/Cargo.toml`.

use std::os::fd::{FromRawFd, OwnedFd};

use tokio_stream::wrappers::UnixListenerStream;

/// The first fd of socket activation (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The systemd protocol: the fds are ours only if LISTEN_PID is our pid.
    let pid: u32 = std::env::var("LISTEN_PID")?.parse()?;
    let count: i32 = std::env::var("LISTEN_FDS")?.parse()?;
    if pid != std::process::id() || count != 1 {
        return Err("expected one listener from ipc-run (LISTEN_PID, LISTEN_FDS=1)".into());
    }
    // SAFETY: fd 3 is the listener handed over by socket activation, open
    // and owned by nothing else in this process.
    let fd = unsafe { OwnedFd::from_raw_fd(LISTEN_FDS_START) };
    let listener = std::os::unix::net::UnixListener::from(fd);
    listener.set_nonblocking(true)?;
    let incoming = UnixListenerStream::new(tokio::net::UnixListener::from_std(listener)?);
    let (_reporter, health) = tonic_health::server::health_reporter();
    println!("tonic serving on the inherited listener");
    tonic::transport::Server::builder()
        .add_service(health)
        .serve_with_incoming_shutdown(incoming, async {
            // ipc-run stops it with SIGTERM: end cleanly, exit 0.
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        })
        .await?;
    Ok(())
}
