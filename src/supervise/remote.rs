//! Waiting for listeners on other hosts (`run --host`,
//! `launch::group`): an instance of this group that is a client of a
//! cross edge, or has `after` on a process of another group, starts once
//! that listener accepts a TCP connection.
//!
//! That is the most one host can see of another: the remote ipc-run binds
//! its cross-edge listeners before it starts anything, so "accepts" means
//! "that group is up"; a server-bound rpc server's port accepts once the
//! server itself listens. Each listener is probed by at most one
//! non-blocking connect at a time, in the supervisor's epoll set
//! ([`super::probe::Attempt`] with [`Ask::Connect`]), retried every
//! [`RETRY_INTERVAL`] until it accepts or the server's `ready_timeout` is
//! over; then the instances waiting for it fail to start, as they would
//! for a local dependency that never got ready, and the run stops. Every
//! start of such an instance waits again, a restart as its first start:
//! the remote group may be down or restarting meanwhile, and a client
//! started then would only see its connection refused. A listener that
//! accepted for an earlier start is probed once more (its `epoch` counts
//! the times it accepted, so an answer from before the start does not
//! count).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::socket::sockopt;

use super::events::Token;
use super::health::Met;
use super::probe::{ATTEMPT_TIMEOUT, Ask, Attempt, Step, Target};
use super::timers::Deadline;
use super::{Runtime, Supervisor};
use crate::launch::group::{RemoteListener, RemoteWait};

/// The pause between a failed connect and the next.
pub(crate) const RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// Where one remote listener is.
#[derive(Debug)]
enum Probe {
    /// No one asked yet.
    Idle,
    /// Being tried: attempt number, the attempt in flight if any.
    Trying { attempt: u32, conn: Option<Attempt> },
    /// It accepted a connection.
    Accepting,
    /// It did not accept in time: why.
    GaveUp(String),
}

/// One remote listener and who waits for it.
#[derive(Debug)]
struct Listener {
    spec: RemoteListener,
    address: SocketAddr,
    probe: Probe,
    last_failure: Option<String>,
    /// How often it accepted in this run: a start waits for a higher one.
    epoch: u64,
    /// Attempts made in this run: numbers stay unique across waits, so a
    /// stale attempt deadline never matches a later attempt.
    attempts: u32,
    /// When the current wait gives up: a give-up deadline of an earlier
    /// wait that fires before it is stale.
    give_up_at: Option<Instant>,
    /// Instance indices that wait for it.
    waiting: Vec<usize>,
}

/// Every remote listener of the run, and what each instance waits for.
#[derive(Debug, Default)]
pub(crate) struct Remote {
    listeners: Vec<Listener>,
    /// Per instance, the listeners it waits for (empty for most).
    waits: Vec<Vec<usize>>,
    /// Per instance, the start its current wait is for (its restart
    /// count) and each listener's `epoch` when that wait began.
    asked: Vec<Option<(u32, Vec<u64>)>>,
}

impl Remote {
    /// From the group's listeners (with their resolved addresses) and
    /// waits, instance names resolved with `index`.
    pub(crate) fn new(
        count: usize,
        listeners: &[(RemoteListener, SocketAddr)],
        waits: &[RemoteWait],
        index: impl Fn(&str) -> Option<usize>,
    ) -> Remote {
        let mut remote = Remote {
            listeners: listeners
                .iter()
                .map(|(spec, address)| Listener {
                    spec: spec.clone(),
                    address: *address,
                    probe: Probe::Idle,
                    last_failure: None,
                    epoch: 0,
                    attempts: 0,
                    give_up_at: None,
                    waiting: Vec::new(),
                })
                .collect(),
            waits: vec![Vec::new(); count],
            asked: vec![None; count],
        };
        for wait in waits {
            if let Some(i) = index(&wait.instance)
                && wait.listener < remote.listeners.len()
            {
                remote.waits[i].push(wait.listener);
                remote.listeners[wait.listener].waiting.push(i);
            }
        }
        remote
    }
}

impl<R: Runtime> Supervisor<'_, R> {
    /// Whether `i` waits for listeners on other hosts: its every start,
    /// a restart too, goes through [`Self::remote_met`].
    pub(super) fn waits_for_remote(&self, i: usize) -> bool {
        self.remote.waits.get(i).is_some_and(|w| !w.is_empty())
    }

    /// Whether the remote listeners `i` waits for accepted since this
    /// start of `i` began to wait; starts probing those not asked yet.
    pub(super) fn remote_met(&mut self, i: usize) -> Met {
        if !self.waits_for_remote(i) {
            return Met::Yes;
        }
        let start = self.instances[i].restarts;
        if self.remote.asked[i].as_ref().map(|a| a.0) != Some(start) {
            self.begin_remote_wait(i, start);
        }
        let mut met = Met::Yes;
        for k in 0..self.remote.waits[i].len() {
            let l = self.remote.waits[i][k];
            let since = self.remote.asked[i].as_ref().map_or(0, |a| a.1[k]);
            let listener = &self.remote.listeners[l];
            match &listener.probe {
                Probe::Accepting if listener.epoch > since => {}
                Probe::GaveUp(why) => return Met::Never(why.clone()),
                Probe::Trying { .. } => met = Met::Waiting,
                Probe::Accepting | Probe::Idle => {
                    met = Met::Waiting;
                    self.start_remote_probe(l);
                }
            }
        }
        met
    }

    /// A new start of `i` (the first, or restart number `start`): what it
    /// waits for must accept again from now on.
    fn begin_remote_wait(&mut self, i: usize, start: u32) {
        let epochs = self.remote.waits[i]
            .iter()
            .map(|&l| self.remote.listeners[l].epoch)
            .collect();
        self.remote.asked[i] = Some((start, epochs));
        for k in 0..self.remote.waits[i].len() {
            let listener = &mut self.remote.listeners[self.remote.waits[i][k]];
            // A listener still being tried answers for this start too; one
            // that gave up for an earlier start (the run then stopped) or
            // accepted before is asked again.
            if !matches!(listener.probe, Probe::Trying { .. }) {
                listener.probe = Probe::Idle;
            }
        }
    }

    /// The first attempt on listener `l`, and the deadline of the whole
    /// wait.
    fn start_remote_probe(&mut self, l: usize) {
        let listener = &mut self.remote.listeners[l];
        listener.probe = Probe::Trying {
            attempt: listener.attempts,
            conn: None,
        };
        listener.last_failure = None;
        let at = Instant::now() + Duration::from_millis(listener.spec.timeout_ms);
        listener.give_up_at = Some(at);
        self.timers.add(at, Deadline::RemoteGiveUp { listener: l });
        self.remote_attempt(l);
    }

    /// Starts the next connect to listener `l`.
    fn remote_attempt(&mut self, l: usize) {
        let target = Target::Tcp(self.remote.listeners[l].address);
        let (conn, step) = match Attempt::start(&target, Ask::Connect) {
            Ok(started) => started,
            Err(why) => {
                self.remote_failed(l, why);
                return;
            }
        };
        let Probe::Trying {
            attempt,
            conn: slot,
        } = &mut self.remote.listeners[l].probe
        else {
            return;
        };
        *attempt += 1;
        let attempt = *attempt;
        *slot = Some(conn);
        self.remote.listeners[l].attempts = attempt;
        self.timers.add(
            Instant::now() + ATTEMPT_TIMEOUT,
            Deadline::RemoteProbe {
                listener: l,
                attempt,
            },
        );
        self.remote_step(l, step, None);
    }

    /// Acts on what the attempt on `l` said; `watched` is the interest
    /// its socket is registered with, if any.
    fn remote_step(&mut self, l: usize, step: Step, watched: Option<bool>) {
        match step {
            Step::Wait { write } => {
                if watched == Some(write) {
                    return;
                }
                if let Probe::Trying { conn: Some(c), .. } = &self.remote.listeners[l].probe {
                    let token = Token::Remote(l, write);
                    if self.events.rewatch(c.fd(), token, write, watched).is_err() {
                        self.remote_failed(l, "the probe socket could not be watched".into());
                    }
                }
            }
            Step::Served => {
                // Closed with a reset, not a FIN: the listener defers
                // accepting until data comes (`TCP_DEFER_ACCEPT`), and a
                // reset drops the half-made connection there, so the
                // server never sees this probe.
                if let Probe::Trying { conn: Some(c), .. } = &self.remote.listeners[l].probe {
                    let reset = libc::linger {
                        l_onoff: 1,
                        l_linger: 0,
                    };
                    let _ = nix::sys::socket::setsockopt(&c.fd(), sockopt::Linger, &reset);
                }
                self.drop_remote_conn(l, watched.is_some());
                self.remote.listeners[l].probe = Probe::Accepting;
                self.remote.listeners[l].epoch += 1;
                self.remote.listeners[l].give_up_at = None;
                let listener = &self.remote.listeners[l];
                let text = format!(
                    "listener `{}` of group `{}` accepts at {}",
                    listener.spec.channel, listener.spec.group, listener.address
                );
                tracing::debug!("{text}");
                for k in 0..self.remote.listeners[l].waiting.len() {
                    let i = self.remote.listeners[l].waiting[k];
                    self.start_queue.push(i);
                }
            }
            Step::Failed(why) => {
                self.drop_remote_conn(l, watched.is_some());
                self.remote_failed(l, why);
            }
        }
    }

    fn drop_remote_conn(&mut self, l: usize, watched: bool) {
        if let Probe::Trying { conn, .. } = &mut self.remote.listeners[l].probe
            && let Some(c) = conn.take()
            && watched
        {
            self.events.remove(c.fd());
        }
    }

    /// An attempt on `l` failed: remember why, try again shortly.
    fn remote_failed(&mut self, l: usize, why: String) {
        let listener = &mut self.remote.listeners[l];
        listener.last_failure = Some(why);
        if let Probe::Trying { attempt, .. } = &listener.probe {
            self.timers.add(
                Instant::now() + RETRY_INTERVAL,
                Deadline::RemoteProbe {
                    listener: l,
                    attempt: *attempt,
                },
            );
        }
    }

    /// The probe socket of `l` is ready (`write`: for writing).
    pub(super) fn remote_event(&mut self, l: usize, write: bool) {
        let step = match &mut self.remote.listeners[l].probe {
            Probe::Trying { conn: Some(c), .. } => c.advance(),
            _ => return,
        };
        self.remote_step(l, step, Some(write));
    }

    /// A probe deadline of `l`: the attempt armed for took too long, or
    /// the pause after a failure is over; the next attempt starts.
    pub(super) fn remote_probe_due(&mut self, l: usize, armed_for: u32) {
        let (current, in_flight) = match &self.remote.listeners[l].probe {
            Probe::Trying { attempt, conn } => (*attempt, conn.is_some()),
            _ => return,
        };
        if current != armed_for || self.shutdown.is_some() {
            return;
        }
        if in_flight {
            self.drop_remote_conn(l, true);
            self.remote.listeners[l].last_failure = Some(format!(
                "no answer within {}ms",
                ATTEMPT_TIMEOUT.as_millis()
            ));
        }
        self.remote_attempt(l);
    }

    /// The wait for `l` is over without an answer: whoever waits for it
    /// fails to start.
    pub(super) fn remote_gave_up(&mut self, l: usize) {
        let listener = &self.remote.listeners[l];
        let current = listener.give_up_at.is_some_and(|at| Instant::now() >= at);
        if !matches!(listener.probe, Probe::Trying { .. }) || !current {
            return;
        }
        self.drop_remote_conn(l, true);
        let listener = &self.remote.listeners[l];
        let why = format!(
            "listener `{}` of group `{}` (`{}`) at {} did not accept a connection within {}ms; last attempt: {}",
            listener.spec.channel,
            listener.spec.group,
            listener.spec.server,
            listener.address,
            listener.spec.timeout_ms,
            listener.last_failure.as_deref().unwrap_or("none finished")
        );
        self.remote.listeners[l].probe = Probe::GaveUp(why);
        for k in 0..self.remote.listeners[l].waiting.len() {
            let i = self.remote.listeners[l].waiting[k];
            self.start_queue.push(i);
        }
    }
}
