//! The mechanisms the bench measures and what each can carry on this host.

use serde::{Deserialize, Serialize};

use crate::mechanism::{Kind, posix_mq, signal, socketpair, sysv_mq, udp};

/// One IPC mechanism as the bench measures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// An anonymous pipe (two for a round trip), of the host's default
    /// capacity (64 KiB).
    Pipe,
    /// The same, grown with `F_SETPIPE_SZ` to the capacity of the
    /// `shm-ring` rows (1 MiB, more for records over 256 KiB): the pipe to
    /// compare the ring with.
    PipeSized,
    /// A named FIFO in the bench's private directory (two for a round trip).
    Fifo,
    /// A `SOCK_STREAM` Unix socketpair.
    SocketpairStream,
    /// A `SOCK_SEQPACKET` Unix socketpair.
    SocketpairSeqpacket,
    /// A Unix stream socket: a listener in the private directory, and a
    /// connection to it.
    UnixStream,
    /// TCP over loopback (`TCP_NODELAY`).
    Tcp,
    /// UDP over loopback; datagrams lost are counted.
    Udp,
    /// A POSIX message queue (two for a round trip).
    PosixMq,
    /// A System V message queue (one, with a message type per direction).
    SysvMq,
    /// `SIGUSR1` sent with `kill` and taken with `sigwait`: no payload.
    Signal,
    /// Unary echo calls over an rpc edge's Unix listener, handed to the
    /// peer (the server) as a topology hands it; length-prefixed frames.
    /// Round trips only, beside `unix-stream`, the socket beneath it.
    Rpc,
    /// ipc-run's shared-memory ring (`docs/shm-ring.md`): one POSIX shared
    /// memory segment per direction, one producer.
    ShmRing,
}

impl Mechanism {
    /// Every mechanism, in the order of the output.
    pub const ALL: [Mechanism; 13] = [
        Mechanism::Pipe,
        Mechanism::PipeSized,
        Mechanism::Fifo,
        Mechanism::SocketpairStream,
        Mechanism::SocketpairSeqpacket,
        Mechanism::UnixStream,
        Mechanism::Rpc,
        Mechanism::Tcp,
        Mechanism::Udp,
        Mechanism::PosixMq,
        Mechanism::SysvMq,
        Mechanism::Signal,
        Mechanism::ShmRing,
    ];

    /// The mechanism a topology names for what this measures.
    pub fn kind(self) -> Kind {
        match self {
            Mechanism::Pipe | Mechanism::PipeSized => Kind::Pipe,
            Mechanism::Fifo => Kind::Fifo,
            Mechanism::SocketpairStream | Mechanism::SocketpairSeqpacket => Kind::Socketpair,
            Mechanism::UnixStream => Kind::UnixListener,
            Mechanism::Tcp => Kind::Tcp,
            Mechanism::Udp => Kind::Udp,
            Mechanism::PosixMq => Kind::PosixMq,
            Mechanism::SysvMq => Kind::SysvMq,
            Mechanism::Signal => Kind::Signal,
            Mechanism::ShmRing => Kind::PosixShm,
            Mechanism::Rpc => Kind::Rpc,
        }
    }

    /// The name used on the command line and in the output: the
    /// mechanism's, or the variant measured when there are several.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::SocketpairStream => "socketpair-stream",
            Mechanism::SocketpairSeqpacket => "socketpair-seqpacket",
            Mechanism::UnixStream => "unix-stream",
            Mechanism::ShmRing => "shm-ring",
            Mechanism::PipeSized => "pipe-sized",
            other => other.kind().as_str(),
        }
    }

    /// Whether it is measured by round trips only (a unary call has no
    /// one-way rate).
    pub fn round_trips_only(self) -> bool {
        self == Mechanism::Rpc
    }

    /// Whether a receive may return part of a message (a byte stream).
    pub fn is_stream(self) -> bool {
        matches!(
            self,
            Mechanism::Pipe
                | Mechanism::PipeSized
                | Mechanism::Fifo
                | Mechanism::SocketpairStream
                | Mechanism::UnixStream
                | Mechanism::Tcp
        )
    }
}

/// Host limits that decide which message sizes a mechanism can carry.
#[derive(Debug, Clone)]
pub struct HostLimits {
    /// `/proc/sys/fs/mqueue/msgsize_max`.
    pub mq_msgsize_max: Option<u64>,
    /// `/proc/sys/fs/mqueue/msg_max`.
    pub mq_msg_max: Option<u64>,
    /// `/proc/sys/kernel/msgmax`.
    pub sysv_msgmax: Option<u64>,
    /// `/proc/sys/kernel/msgmnb`.
    pub sysv_msgmnb: Option<u64>,
    /// `/proc/sys/net/core/wmem_max`.
    pub wmem_max: Option<u64>,
    /// `/proc/sys/fs/pipe-max-size`: the most `pipe-sized` can grow a pipe.
    pub pipe_max_size: Option<u64>,
}

fn proc_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl HostLimits {
    /// Reads the limits of this host; an unreadable one stays `None`.
    pub fn read() -> HostLimits {
        HostLimits {
            mq_msgsize_max: proc_u64("/proc/sys/fs/mqueue/msgsize_max"),
            mq_msg_max: proc_u64("/proc/sys/fs/mqueue/msg_max"),
            sysv_msgmax: proc_u64("/proc/sys/kernel/msgmax"),
            sysv_msgmnb: proc_u64("/proc/sys/kernel/msgmnb"),
            wmem_max: proc_u64("/proc/sys/net/core/wmem_max"),
            pipe_max_size: proc_u64("/proc/sys/fs/pipe-max-size"),
        }
    }

    /// Why `mechanism` cannot carry messages of `size` bytes on this host,
    /// or `None` when it can.
    pub fn refuses(&self, mechanism: Mechanism, size: usize) -> Option<String> {
        let size = size as u64;
        match mechanism {
            Mechanism::Signal => Some(signal::BENCH_REFUSAL.into()),
            Mechanism::Udp => udp::bench_refusal(size),
            Mechanism::PosixMq => posix_mq::bench_refusal(self, size),
            Mechanism::SysvMq => sysv_mq::bench_refusal(self, size),
            Mechanism::SocketpairSeqpacket => socketpair::bench_refusal_seqpacket(self, size),
            Mechanism::PipeSized => self.pipe_sized_refusal(size),
            _ => None,
        }
    }
}

impl HostLimits {
    /// A pipe cannot be grown past `fs.pipe-max-size` (without
    /// `CAP_SYS_RESOURCE`), so there is no pipe of the ring's capacity to
    /// compare with.
    fn pipe_sized_refusal(&self, size: u64) -> Option<String> {
        let capacity = crate::mechanism::posix_shm::bench_capacity(size as usize);
        let max = self.pipe_max_size?;
        (capacity > max).then(|| {
            format!(
                "the ring holds {capacity} bytes at this size; a pipe grows to at most fs.pipe-max-size, {max} (/proc/sys/fs/pipe-max-size)"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HostLimits {
        HostLimits {
            mq_msgsize_max: Some(8192),
            mq_msg_max: Some(10),
            sysv_msgmax: Some(8192),
            sysv_msgmnb: Some(16384),
            wmem_max: Some(212_992),
            pipe_max_size: Some(1 << 20),
        }
    }

    #[test]
    fn sizes_beyond_host_limits_are_refused_with_the_limit() {
        let l = limits();
        assert!(l.refuses(Mechanism::PosixMq, 4096).is_none());
        assert!(
            l.refuses(Mechanism::PosixMq, 65536)
                .unwrap()
                .contains("8192")
        );
        assert!(
            l.refuses(Mechanism::SysvMq, 65536)
                .unwrap()
                .contains("msgmax")
        );
        assert!(l.refuses(Mechanism::Udp, 65536).unwrap().contains("65507"));
        assert!(l.refuses(Mechanism::Udp, 4096).is_none());
        assert!(l.refuses(Mechanism::SocketpairSeqpacket, 65536).is_none());
        assert!(l.refuses(Mechanism::SocketpairSeqpacket, 1 << 20).is_some());
        assert!(l.refuses(Mechanism::Pipe, 1 << 20).is_none());
        assert!(l.refuses(Mechanism::Signal, 64).is_some());
        assert!(l.refuses(Mechanism::PipeSized, 65536).is_none());
        assert!(
            l.refuses(Mechanism::PipeSized, 1 << 20)
                .unwrap()
                .contains("pipe-max-size")
        );
    }
}
