//! Mechanism selection: from an edge's traits to a mechanism and the reason
//! for it, and the same traits checked against a mechanism the user named.
//!
//! The rules are a small decision table (documented in `docs/mechanisms.md`):
//! the first rule that matches the traffic and the shape of the edge wins,
//! and its reason is recorded in the plan. An explicit mechanism goes
//! through [`check_fit`], which rejects what it cannot carry.

use super::limits::Limits;
pub use crate::mechanism::edge::Traits;
use crate::mechanism::{Kind, Peers, Profile, Ring, Sockets};
use crate::topology::{SocketType, Traffic};

/// Why a mechanism was chosen: most reasons are fixed text, kept borrowed so
/// a large plan does not hold a copy per channel.
pub type Reason = std::borrow::Cow<'static, str>;

/// Why an edge cannot use a mechanism: a stable code, a headline and a hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misfit {
    /// Diagnostic code.
    pub code: &'static str,
    /// Headline.
    pub message: String,
    /// What to do instead.
    pub help: Option<String>,
}

fn misfit(code: &'static str, message: impl Into<String>, help: Option<&str>) -> Misfit {
    Misfit {
        code,
        message: message.into(),
        help: help.map(str::to_owned),
    }
}

/// The traffic's name as written in topology files.
pub(crate) fn traffic_name(traffic: Traffic) -> &'static str {
    match traffic {
        Traffic::Stream => "stream",
        Traffic::Messages => "messages",
        Traffic::Shared => "shared",
        Traffic::Request => "request",
        Traffic::Notify => "notify",
    }
}

/// Picks the mechanism for `mechanism = "auto"` and says why.
pub fn choose(traits: &Traits, limits: &Limits) -> Result<(Kind, Reason), Misfit> {
    let chosen = match traits.traffic {
        Traffic::Stream => choose_stream(traits, limits)?,
        Traffic::Messages => choose_messages(traits, limits)?,
        Traffic::Shared if traits.ring => (
            Kind::PosixShm,
            format!(
                "shared data with sync = \"ring\": a POSIX shared memory object formatted as a ring of records for {} writer(s) and one reader",
                traits.writers
            ).into(),
        ),
        Traffic::Shared => (
            Kind::PosixShm,
            "shared data: a POSIX shared memory object sized at launch, with a lock and a ready semaphore for synchronisation".into(),
        ),
        Traffic::Request if traits.protocol => (
            Kind::Rpc,
            format!("request/response with {} client(s) and a protocol label: the server gets a bound listener, clients its address", traits.writers).into(),
        ),
        Traffic::Request if traits.address => (
            Kind::Tcp,
            "request/response at an IP address: a TCP listener bound before the server starts".into(),
        ),
        Traffic::Request => (
            Kind::UnixListener,
            format!("request/response with {} client(s): a Unix stream listener bound before the server starts", traits.writers).into(),
        ),
        Traffic::Notify => (Kind::Signal, "an event without payload: a signal, with the receiver's pid handed to the sender".into()),
    };
    check_fit(chosen.0, traits, limits)?;
    Ok(chosen)
}

fn choose_stream(traits: &Traits, limits: &Limits) -> Result<(Kind, Reason), Misfit> {
    let pipe_buf = limits.pipe_buf.value;
    let writers = traits.writers;
    Ok(match traits.message_size {
        _ if traits.own_stream => (Kind::Pipe, "ipc-run's own standard stream is handed to the process as is; nothing copies".into()),
        _ if traits.duplex => (Kind::Socketpair, "a duplex stream between two processes: a stream socketpair carries both directions".into()),
        _ if traits.external => (Kind::Fifo, "a peer ipc-run does not launch needs a name in the file system: a FIFO in the run directory".into()),
        _ if writers <= 1 => (Kind::Pipe, "a one-way stream from one writer to one reader: an anonymous pipe".into()),
        Some(size) if size <= pipe_buf => (
            Kind::Pipe,
            format!("{writers} writers share one pipe; each record of at most {size} bytes is written atomically (PIPE_BUF {pipe_buf})").into(),
        ),
        Some(size) => {
            return Err(misfit(
                "E0306",
                format!("{writers} writers of records up to {size} bytes cannot share a pipe: writes larger than PIPE_BUF ({pipe_buf}) interleave"),
                Some("use traffic = \"messages\" so each record stays whole, or keep records within PIPE_BUF"),
            ));
        }
        None => (
            Kind::Pipe,
            format!("{writers} writers share one pipe; writes of at most PIPE_BUF ({pipe_buf} bytes) stay whole, so write whole lines").into(),
        ),
    })
}

fn choose_messages(traits: &Traits, limits: &Limits) -> Result<(Kind, Reason), Misfit> {
    let two_processes = traits.writers <= 1 && traits.readers <= 1 && !traits.external;
    Ok(match () {
        () if traits.ring => (
            Kind::PosixShm,
            format!(
                "messages with sync = \"ring\": a ring of records in a POSIX shared memory object, {} writer(s) and one reader, no system call per record",
                traits.writers
            ).into(),
        ),
        () if traits.duplex && two_processes => (
            Kind::Socketpair,
            "duplex messages between two processes: a seqpacket socketpair keeps boundaries in both directions".into(),
        ),
        () if traits.duplex => (
            Kind::UnixListener,
            "duplex messages with several peers: each client connects to a seqpacket listener of its own".into(),
        ),
        () if two_processes => (
            Kind::Socketpair,
            "messages from one writer to one reader: a seqpacket socketpair keeps boundaries and signals EOF".into(),
        ),
        () => choose_queue(traits, limits)?,
    })
}

/// Several writers or readers of messages, or an outside peer: a POSIX
/// queue when the host's limits allow, else a datagram listener.
fn choose_queue(traits: &Traits, limits: &Limits) -> Result<(Kind, Reason), Misfit> {
    let fan_out = traits.readers > 1;
    let size = traits
        .message_size
        .unwrap_or(limits.mq_msgsize_default.value);
    let depth = traits.depth.unwrap_or(limits.mq_msg_default.value);
    let (msgsize_max, msg_max) = (limits.mq_msgsize_max.value, limits.mq_msg_max.value);
    if size <= msgsize_max && depth <= msg_max {
        return Ok((
            Kind::PosixMq,
            format!(
                "{} writers and {} readers of messages up to {size} bytes: a POSIX queue fits the host's msgsize_max ({msgsize_max}) and keeps each message whole",
                traits.writers, traits.readers
            ).into(),
        ));
    }
    if !fan_out && !traits.external {
        return Ok((
            Kind::UnixListener,
            format!(
                "messages of {size} bytes x {depth} exceed the host's POSIX queue limits (msgsize_max {msgsize_max}, msg_max {msg_max}): a Unix datagram socket bound by the reader"
            ).into(),
        ));
    }
    // Only a queue serves several readers, or a peer outside the topology
    // that opens it by name.
    let why = if fan_out {
        "several readers need a queue"
    } else {
        "an @external peer needs a named queue"
    };
    Err(misfit(
        "E0601",
        format!(
            "messages of {size} bytes x {depth} exceed the host's POSIX queue limits (msgsize_max {msgsize_max}, msg_max {msg_max}) and {why}"
        ),
        Some("lower message_size/depth, or raise /proc/sys/fs/mqueue/msgsize_max and msg_max"),
    ))
}

/// Checks that `kind` can carry an edge with these traits.
///
/// The checks read the mechanism's [`Profile`] in a fixed order; the first
/// that fails is the one reported.
pub fn check_fit(kind: Kind, traits: &Traits, limits: &Limits) -> Result<(), Misfit> {
    let profile = kind.profile();
    traffic_fit(kind, profile, traits)?;
    if traits.ring {
        ring_fit(profile, traits)?;
    }
    direction_fit(kind, profile, traits, limits)?;
    peers_fit(kind, profile, traits)?;
    options_fit(kind, profile, traits)
}

fn traffic_fit(kind: Kind, profile: &Profile, traits: &Traits) -> Result<(), Misfit> {
    let traffic = traits.traffic;
    let ring_messages = traits.ring && profile.ring == Ring::Holds && traffic == Traffic::Messages;
    if profile.carries.contains(&traffic) || ring_messages {
        return Ok(());
    }
    let (code, help) = match (profile.wrong_traffic, traffic) {
        (Some((code, help)), _) => (code, Some(help)),
        (None, Traffic::Shared) => ("E0301", Some("shared data needs posix-shm or sysv-shm")),
        (None, Traffic::Notify) => (
            "E0301",
            Some("notifications use signal, posix-sem or sysv-sem"),
        ),
        (None, _) => ("E0301", None),
    };
    Err(misfit(
        code,
        format!(
            "mechanism `{kind}` cannot carry {} traffic",
            traffic_name(traffic)
        ),
        help,
    ))
}

/// A ring (`sync = "ring"`) lives in POSIX shared memory, carries data one
/// way, and has exactly one reader: records are taken, not broadcast.
fn ring_fit(profile: &Profile, traits: &Traits) -> Result<(), Misfit> {
    match profile.ring {
        Ring::Refused(why) => Err(misfit(
            "E0315",
            why,
            Some("use mechanism = \"posix-shm\" (or \"auto\")"),
        )),
        // Rejected as an option that does not apply (E0313).
        Ring::NotApplicable => Ok(()),
        Ring::Holds if traits.duplex => Err(misfit(
            "E0315",
            "a ring carries records one way and cannot be duplex",
            Some("use two ring edges, one per direction"),
        )),
        Ring::Holds if traits.readers != 1 => Err(misfit(
            "E0315",
            format!(
                "a ring has exactly one reading process, this edge has {}",
                traits.readers
            ),
            Some(
                "use traffic = \"messages\" without a ring (a queue) for a work queue, or one ring per reader",
            ),
        )),
        Ring::Holds => Ok(()),
    }
}

/// One-way mechanisms, data-less ones and byte pipes.
fn direction_fit(
    kind: Kind,
    profile: &Profile,
    traits: &Traits,
    limits: &Limits,
) -> Result<(), Misfit> {
    if traits.duplex && profile.one_way {
        return Err(misfit(
            "E0302",
            format!("mechanism `{kind}` is one-way and cannot be duplex"),
            Some("use a socketpair (two processes) or a unix-listener (several)"),
        ));
    }
    if traits.payload && profile.no_payload {
        return Err(misfit(
            "E0303",
            format!("mechanism `{kind}` carries no data, but the edge declares a payload size"),
            Some("remove message_size/size, or use a queue or socket for the data"),
        ));
    }
    if profile.byte_pipe && traits.readers > 1 {
        return Err(misfit(
            "E0305",
            format!(
                "a {kind} cannot broadcast: its bytes go to one of {} readers, unpredictably split",
                traits.readers
            ),
            Some("use traffic = \"messages\" (a queue) for a work queue, or one edge per reader"),
        ));
    }
    let pipe_buf = limits.pipe_buf.value;
    if let Some(size) = traits.message_size
        && profile.byte_pipe
        && traits.writers > 1
        && size > pipe_buf
    {
        return Err(misfit(
            "E0306",
            format!(
                "{} writers of records up to {size} bytes share a {kind}: writes larger than PIPE_BUF ({pipe_buf}) interleave",
                traits.writers
            ),
            Some("keep records within PIPE_BUF or use traffic = \"messages\""),
        ));
    }
    Ok(())
}

/// ipc-run's own streams, outside peers and the number of processes.
fn peers_fit(kind: Kind, profile: &Profile, traits: &Traits) -> Result<(), Misfit> {
    if traits.own_stream && !profile.own_stream {
        return Err(misfit(
            "E0308",
            format!("ipc-run's own stdin/stdout is handed over as it is and cannot be a `{kind}`"),
            Some("leave mechanism as \"auto\" or \"pipe\" for @stdin/@stdout edges"),
        ));
    }
    if traits.own_stream && (traits.writers != 1 || traits.readers != 1) {
        return Err(misfit(
            "E0308",
            "an @stdin or @stdout edge connects exactly one process to ipc-run's stream",
            Some("use one edge per process"),
        ));
    }
    if traits.external && !profile.named {
        return Err(misfit(
            "E0309",
            format!("a peer outside the topology cannot reach a `{kind}`: it has no name to open"),
            Some(
                "use a fifo, unix-listener, tcp, udp, posix-mq, posix-shm, posix-sem or rpc for @external peers",
            ),
        ));
    }
    match profile.peers {
        Peers::Pair if traits.writers != 1 || traits.readers != 1 || traits.external => {
            Err(misfit(
                "E0307",
                format!(
                    "a {kind} joins exactly two processes, this edge has {} writer(s) and {} reader(s)",
                    traits.writers, traits.readers
                ),
                Some("use a unix-listener for several clients"),
            ))
        }
        Peers::OneServer if traits.readers != 1 => Err(misfit(
            "E0307",
            format!(
                "a `{kind}` has exactly one server or receiver on its `to` side, this edge has {}",
                traits.readers
            ),
            Some("put the server alone in `to` and the clients in `from`"),
        )),
        _ => Ok(()),
    }
}

/// Options the mechanism needs, and the socket type.
fn options_fit(kind: Kind, profile: &Profile, traits: &Traits) -> Result<(), Misfit> {
    let ring = traits.ring && profile.ring == Ring::Holds;
    if (traits.traffic == Traffic::Shared || ring) && traits.size.is_none() {
        return Err(misfit(
            "E0310",
            if traits.traffic == Traffic::Shared {
                "a shared edge needs `size`, the size of the region"
            } else {
                "a ring edge needs `size`, the size of the shared region that holds it"
            },
            Some("add e.g. size = \"64MiB\""),
        ));
    }
    if profile.needs_protocol && !traits.protocol {
        return Err(misfit(
            "E0311",
            "an rpc edge needs `protocol`, the label both ends agree on (grpc, json-rpc, http, dbus, …)",
            None,
        ));
    }
    let Some(socket) = traits.socket else {
        return Ok(());
    };
    let fits = match profile.sockets {
        Sockets::No => false,
        Sockets::Any => true,
        Sockets::Connected => !(traits.traffic == Traffic::Stream && socket == SocketType::Dgram),
    };
    if !fits {
        return Err(misfit(
            "E0313",
            format!(
                "`socket = \"{}\"` does not apply to a `{kind}`",
                socket.as_str()
            ),
            Some("`socket` selects the type of a socketpair or unix-listener"),
        ));
    }
    if traits.duplex && socket == SocketType::Dgram && profile.sockets == Sockets::Connected {
        return Err(misfit(
            "E0302",
            "a datagram listener cannot be duplex: clients are not connected",
            None,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traits(traffic: Traffic, writers: usize, readers: usize) -> Traits {
        Traits {
            traffic,
            writers,
            readers,
            ..Traits::default()
        }
    }

    fn chosen(t: &Traits) -> Kind {
        choose(t, &Limits::default()).expect("a mechanism").0
    }

    #[test]
    fn a_ring_is_posix_shm_with_one_reader() {
        let ring = |traffic, writers, readers| Traits {
            ring: true,
            size: Some(1 << 20),
            ..traits(traffic, writers, readers)
        };
        let limits = Limits::default();
        assert_eq!(chosen(&ring(Traffic::Messages, 3, 1)), Kind::PosixShm);
        assert_eq!(chosen(&ring(Traffic::Shared, 1, 1)), Kind::PosixShm);
        assert!(check_fit(Kind::PosixShm, &ring(Traffic::Messages, 2, 1), &limits).is_ok());
        let code = |r: Result<(), Misfit>| r.unwrap_err().code;
        assert_eq!(
            code(check_fit(
                Kind::SysvShm,
                &ring(Traffic::Shared, 1, 1),
                &limits
            )),
            "E0315"
        );
        assert_eq!(
            code(check_fit(
                Kind::PosixShm,
                &ring(Traffic::Messages, 1, 2),
                &limits
            )),
            "E0315"
        );
        let duplex = Traits {
            duplex: true,
            ..ring(Traffic::Shared, 1, 1)
        };
        assert_eq!(code(check_fit(Kind::PosixShm, &duplex, &limits)), "E0315");
        let no_size = Traits {
            size: None,
            ..ring(Traffic::Messages, 1, 1)
        };
        assert_eq!(code(check_fit(Kind::PosixShm, &no_size, &limits)), "E0310");
        // Without a ring, messages never go to shared memory.
        let plain = traits(Traffic::Messages, 1, 1);
        assert_eq!(code(check_fit(Kind::PosixShm, &plain, &limits)), "E0301");
    }

    #[test]
    fn one_to_one_stream_is_a_pipe() {
        assert_eq!(chosen(&traits(Traffic::Stream, 1, 1)), Kind::Pipe);
    }

    #[test]
    fn stream_to_an_outside_peer_is_a_fifo() {
        let t = Traits {
            external: true,
            ..traits(Traffic::Stream, 1, 1)
        };
        assert_eq!(chosen(&t), Kind::Fifo);
    }

    #[test]
    fn duplex_stream_is_a_socketpair() {
        let t = Traits {
            duplex: true,
            ..traits(Traffic::Stream, 1, 1)
        };
        assert_eq!(chosen(&t), Kind::Socketpair);
    }

    #[test]
    fn many_writers_of_small_messages_use_a_posix_queue() {
        let t = Traits {
            message_size: Some(512),
            ..traits(Traffic::Messages, 3, 1)
        };
        assert_eq!(chosen(&t), Kind::PosixMq);
    }

    #[test]
    fn many_writers_of_large_messages_use_a_datagram_socket() {
        let t = Traits {
            message_size: Some(65536),
            ..traits(Traffic::Messages, 3, 1)
        };
        assert_eq!(chosen(&t), Kind::UnixListener);
    }

    #[test]
    fn one_to_one_messages_use_a_seqpacket_socketpair() {
        assert_eq!(chosen(&traits(Traffic::Messages, 1, 1)), Kind::Socketpair);
    }

    #[test]
    fn shared_data_is_posix_shm_and_needs_a_size() {
        let t = Traits {
            size: Some(1 << 20),
            ..traits(Traffic::Shared, 1, 1)
        };
        assert_eq!(chosen(&t), Kind::PosixShm);
        let err =
            choose(&traits(Traffic::Shared, 1, 1), &Limits::default()).expect_err("size missing");
        assert_eq!(err.code, "E0310");
    }

    #[test]
    fn requests_use_a_listener_or_rpc_or_tcp() {
        assert_eq!(chosen(&traits(Traffic::Request, 3, 1)), Kind::UnixListener);
        assert_eq!(
            chosen(&Traits {
                protocol: true,
                ..traits(Traffic::Request, 3, 1)
            }),
            Kind::Rpc
        );
        assert_eq!(
            chosen(&Traits {
                address: true,
                ..traits(Traffic::Request, 1, 1)
            }),
            Kind::Tcp
        );
    }

    #[test]
    fn notify_without_payload_is_a_signal() {
        assert_eq!(chosen(&traits(Traffic::Notify, 1, 1)), Kind::Signal);
    }

    #[test]
    fn a_pipe_cannot_be_duplex_or_broadcast() {
        let limits = Limits::default();
        let duplex = Traits {
            duplex: true,
            ..traits(Traffic::Stream, 1, 1)
        };
        assert_eq!(
            check_fit(Kind::Pipe, &duplex, &limits).map_err(|m| m.code),
            Err("E0302")
        );
        let fan_out = traits(Traffic::Stream, 1, 2);
        assert_eq!(
            check_fit(Kind::Pipe, &fan_out, &limits).map_err(|m| m.code),
            Err("E0305")
        );
        assert_eq!(choose(&fan_out, &limits).map_err(|m| m.code), Err("E0305"));
    }

    #[test]
    fn fan_in_pipe_with_records_over_pipe_buf_is_rejected() {
        let t = Traits {
            message_size: Some(8192),
            ..traits(Traffic::Stream, 2, 1)
        };
        assert_eq!(
            choose(&t, &Limits::default()).map_err(|m| m.code),
            Err("E0306")
        );
        let small = Traits {
            message_size: Some(4096),
            ..traits(Traffic::Stream, 2, 1)
        };
        assert_eq!(chosen(&small), Kind::Pipe);
    }

    #[test]
    fn a_signal_carries_no_data() {
        let limits = Limits::default();
        let t = traits(Traffic::Stream, 1, 1);
        assert_eq!(
            check_fit(Kind::Signal, &t, &limits).map_err(|m| m.code),
            Err("E0303")
        );
        let payload = Traits {
            payload: true,
            ..traits(Traffic::Notify, 1, 1)
        };
        assert_eq!(
            check_fit(Kind::Signal, &payload, &limits).map_err(|m| m.code),
            Err("E0303")
        );
    }

    #[test]
    fn outside_peers_cannot_reach_nameless_mechanisms() {
        let t = Traits {
            external: true,
            ..traits(Traffic::Stream, 1, 1)
        };
        assert_eq!(
            check_fit(Kind::Pipe, &t, &Limits::default()).map_err(|m| m.code),
            Err("E0309")
        );
    }
}
