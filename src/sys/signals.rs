//! Signal dispositions of the supervisor process itself.

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// Makes ipc-run's own dispositions what supervision needs, whatever it
/// inherited: SIGCHLD back to SIG_DFL without SA_NOCLDWAIT (an inherited
/// SIG_IGN would make the kernel reap children itself, and their exit status
/// would be lost), and SIGPIPE ignored (a closed stdout must surface as
/// EPIPE on a write, not kill the supervisor; children get SIG_DFL back at
/// exec, since an ignored SIGPIPE is reset by the launcher).
///
/// See sigaction(2), signal(7).
pub fn prepare_supervisor_dispositions() -> nix::Result<()> {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installs SIG_DFL, not a handler: no Rust code runs in signal
    // context, so nothing can violate async-signal-safety.
    unsafe { sigaction(Signal::SIGCHLD, &default) }?;
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: installs SIG_IGN, not a handler (as above).
    unsafe { sigaction(Signal::SIGPIPE, &ignore) }?;
    Ok(())
}
