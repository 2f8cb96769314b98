//! The mechanisms the bench measures and what each can carry on this host.

use serde::{Deserialize, Serialize};

/// One IPC mechanism as the bench measures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// An anonymous pipe (two for a round trip).
    Pipe,
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
    /// ipc-run's shared-memory ring (`docs/shm-ring.md`): one POSIX shared
    /// memory segment per direction, one producer.
    ShmRing,
}

impl Mechanism {
    /// Every mechanism, in the order of the output.
    pub const ALL: [Mechanism; 11] = [
        Mechanism::Pipe,
        Mechanism::Fifo,
        Mechanism::SocketpairStream,
        Mechanism::SocketpairSeqpacket,
        Mechanism::UnixStream,
        Mechanism::Tcp,
        Mechanism::Udp,
        Mechanism::PosixMq,
        Mechanism::SysvMq,
        Mechanism::Signal,
        Mechanism::ShmRing,
    ];

    /// The name used on the command line and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Pipe => "pipe",
            Mechanism::Fifo => "fifo",
            Mechanism::SocketpairStream => "socketpair-stream",
            Mechanism::SocketpairSeqpacket => "socketpair-seqpacket",
            Mechanism::UnixStream => "unix-stream",
            Mechanism::Tcp => "tcp",
            Mechanism::Udp => "udp",
            Mechanism::PosixMq => "posix-mq",
            Mechanism::SysvMq => "sysv-mq",
            Mechanism::Signal => "signal",
            Mechanism::ShmRing => "shm-ring",
        }
    }

    /// Whether a receive may return part of a message (a byte stream).
    pub fn is_stream(self) -> bool {
        matches!(
            self,
            Mechanism::Pipe
                | Mechanism::Fifo
                | Mechanism::SocketpairStream
                | Mechanism::UnixStream
                | Mechanism::Tcp
        )
    }
}

/// The largest UDP payload over IPv4: 65535 - 20 (IP) - 8 (UDP).
pub const UDP_MAX_PAYLOAD: usize = 65_507;

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
        }
    }

    /// Why `mechanism` cannot carry messages of `size` bytes on this host,
    /// or `None` when it can.
    pub fn refuses(&self, mechanism: Mechanism, size: usize) -> Option<String> {
        let size64 = size as u64;
        match mechanism {
            Mechanism::Signal => Some("a signal carries no payload".into()),
            Mechanism::Udp if size > UDP_MAX_PAYLOAD => Some(format!(
                "a UDP/IPv4 datagram carries at most {UDP_MAX_PAYLOAD} bytes"
            )),
            Mechanism::PosixMq => match self.mq_msgsize_max {
                Some(max) if size64 > max => Some(format!(
                    "exceeds the POSIX queue message size limit {max} B (/proc/sys/fs/mqueue/msgsize_max)"
                )),
                None => Some("/proc/sys/fs/mqueue/msgsize_max is unreadable".into()),
                _ => None,
            },
            Mechanism::SysvMq => match self.sysv_msgmax {
                Some(max) if size64 > max => Some(format!(
                    "exceeds the System V message size limit {max} B (/proc/sys/kernel/msgmax)"
                )),
                None => Some("/proc/sys/kernel/msgmax is unreadable".into()),
                _ => None,
            },
            Mechanism::SocketpairSeqpacket => {
                // A seqpacket message must fit the sender's socket buffer,
                // which an unprivileged process can raise to wmem_max (the
                // kernel doubles the value; 32 bytes go to overhead).
                let max = self
                    .wmem_max
                    .unwrap_or(212_992)
                    .saturating_mul(2)
                    .saturating_sub(32);
                (size64 > max).then(|| {
                    format!(
                        "a seqpacket message must fit the socket send buffer: at most {max} B \
                         (2 x /proc/sys/net/core/wmem_max - 32)"
                    )
                })
            }
            _ => None,
        }
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
    }
}
