//! `signal`: a signal from the `from` processes to the `to` processes; the
//! sender gets the receivers' pids.

use std::io;

use super::PortSide;
use super::edge::placeholder;
use super::edge::{EdgeContext, Shape};
use super::{BASE, EdgeOption, Profile};
use crate::diagnostic::{Diagnostic, Label};
use crate::mechanism::bench_link::{PeerPending, PeerReady, PeerSetup, Pending, Setup};
use crate::mechanism::model::{End, SignalRef};
use crate::mechanism::model::{EndpointPlan, Mechanism, SignalParams};
use crate::mechanism::signals::{known, parse_signal};
use crate::topology::Traffic;
use ipc_run_child::description::Params;

/// The mechanism's name.
pub const NAME: &str = ipc_run_child::description::Kind::Signal.as_str();

/// An event without data between launched processes.
pub const PROFILE: Profile = Profile {
    name: NAME,
    carries: &[Traffic::Notify],
    wrong_traffic: Some((
        "E0303",
        "a signal carries no data; use a pipe, a queue or a socket for the payload and a signal only to wake",
    )),
    one_way: true,
    no_payload: true,
    named: false,
    options: &[EdgeOption::Signal],
    ..BASE
};

// ---- plan ----

/// The edge's `signal` (SIGUSR1 unless written); one that cannot be
/// caught is refused.
pub(crate) fn plan(cx: &mut EdgeContext<'_>) -> Option<Shape> {
    let Some(text) = cx.spec.and_then(|s| s.signal.as_ref()) else {
        return Some(Shape::unbounded(Mechanism::Signal(Box::new(
            SignalParams {
                signal: known("SIGUSR1"),
            },
        ))));
    };
    let signal = match parse_signal(text.get_ref()) {
        Ok(signal) if matches!(signal.name, "SIGKILL" | "SIGSTOP") => {
            cx.report(
                Diagnostic::error(
                    "E0304",
                    format!(
                        "{} cannot be a notification: it cannot be caught",
                        signal.name
                    ),
                )
                .with_label(Label::primary(
                    text.span(),
                    "the receiver would be killed or stopped",
                ))
                .with_help(
                    "use SIGUSR1 or SIGUSR2 (real-time signals, SIGRTMIN+n, are not accepted)",
                ),
            );
            return None;
        }
        Ok(signal) => signal,
        Err(why) => {
            cx.report(
                Diagnostic::error("E0304", "invalid `signal`")
                    .with_label(Label::primary(text.span(), why)),
            );
            return None;
        }
    };
    Some(Shape::unbounded(Mechanism::Signal(Box::new(
        SignalParams { signal },
    ))))
}

// ---- bench ----

/// Why the bench measures no payload size over a signal.
pub(crate) const BENCH_REFUSAL: &str = "a signal carries no payload";

/// The description its ports get (`IPC_PORT_*`); the sender's lists the
/// receivers' pids.
pub(crate) fn describe(signal: &SignalRef, port: &PortSide<'_>) -> Params {
    Params::Signal {
        signal: signal.name.to_owned(),
        signo: signal.number,
        pid: (port.end == End::Send).then(|| {
            port.receivers
                .iter()
                .filter_map(|e| match e {
                    EndpointPlan::Port { process, .. } => Some(placeholder("pid", process)),
                    _ => None,
                })
                .collect()
        }),
    }
}

// ---- bench ----

/// Nothing to make: the parent signals the peer's pid.
pub(crate) fn bench_parent(_: &mut Setup<'_>) -> io::Result<Pending> {
    Ok(Pending::Signal)
}

/// Nothing to open: the peer signals the parent's pid.
pub(crate) fn bench_peer(_: &PeerSetup<'_>) -> io::Result<PeerReady> {
    Ok((PeerPending::Signal, None))
}
