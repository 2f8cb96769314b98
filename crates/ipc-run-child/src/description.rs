//! The port description: the one definition of what an `IPC_PORT_<NAME>`
//! variable holds.
//!
//! The text is space-separated `key=value` pairs, always starting with
//! `kind=… channel=… end=…`, then the kind's own keys in a fixed order,
//! then `fd=N` when the port is handed over as an fd:
//!
//! ```text
//! kind=posix-mq channel=jobs end=read name=/ipc-run.1a2b.jobs depth=8 message_size=256
//! kind=unix-listener channel=ask end=listen socket=stream path=/run/ipc-run/1a2b/ask.sock fd=3
//! ```
//!
//! [`Description`] is written by ipc-run's planner (with [`Display`]) and
//! read by the adapters and by child programs (with [`FromStr`]); the text
//! is the wire format and stays stable.
//!
//! # Placeholders
//!
//! The planner writes descriptions before anything runs, so values only
//! known at launch are placeholders the launcher fills in: `{run_dir}` and
//! `{run_id}` inside paths and names, `{port:CHANNEL}` inside addresses,
//! `{sysv_id:CHANNEL}` and `{pid:INSTANCE}` as whole numbers. Paths, names
//! and addresses are kept as text, so they carry their placeholders as they
//! are. Numbers that may be a placeholder are a [`Slot`]: either the value
//! or the placeholder's text. A description read by a child has every slot
//! filled ([`Slot::value`]).
//!
//! # Reading
//!
//! Keys may come in any order; unknown keys are ignored, so a child built
//! against this version reads descriptions that a later ipc-run extends.
//! A key given twice, a pair without `=`, a missing key the kind needs or a
//! value of the wrong type is an error.

use std::fmt::{self, Display, Write as _};
use std::os::fd::RawFd;
use std::str::FromStr;

/// Why a description could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescriptionError {
    /// An item is not `key=value`.
    NotKeyValue(String),
    /// An item has an empty key.
    EmptyKey(String),
    /// A key appears twice.
    Repeated(String),
    /// A key the kind needs is missing.
    Missing(&'static str),
    /// A value does not parse.
    BadValue {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// What was expected, e.g. `an fd number`.
        expected: &'static str,
    },
}

impl Display for DescriptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DescriptionError::NotKeyValue(item) => write!(f, "`{item}` is not key=value"),
            DescriptionError::EmptyKey(item) => write!(f, "`{item}` has an empty key"),
            DescriptionError::Repeated(key) => write!(f, "`{key}` appears twice"),
            DescriptionError::Missing(key) => write!(f, "no `{key}=`"),
            DescriptionError::BadValue {
                key,
                value,
                expected,
            } => write!(f, "{key} `{value}` is not {expected}"),
        }
    }
}

impl std::error::Error for DescriptionError {}

/// Declares a closed set of words: the enum, `as_str`, `ALL`, `Display`
/// and `FromStr`. Each word is written once, here.
macro_rules! words {
    (
        $(#[$meta:meta])*
        $name:ident, $expected:literal {
            $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The word as written in descriptions.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }

            /// Parses the word; `key` names it in the error.
            fn parse_as(key: &str, text: &str) -> Result<Self, DescriptionError> {
                match text {
                    $($word => Ok($name::$variant),)+
                    _ => Err(DescriptionError::BadValue {
                        key: key.to_owned(),
                        value: text.to_owned(),
                        expected: $expected,
                    }),
                }
            }
        }

        impl Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = DescriptionError;

            fn from_str(text: &str) -> Result<Self, DescriptionError> {
                $name::parse_as(stringify!($name), text)
            }
        }
    };
}

words! {
    /// The mechanism of a port: the one place its names are spelled.
    Kind, "a known kind" {
        /// ipc-run's own stdin or stdout, handed over.
        Inherit = "inherit",
        /// An anonymous pipe.
        Pipe = "pipe",
        /// A FIFO in the run directory.
        Fifo = "fifo",
        /// A Unix socketpair.
        Socketpair = "socketpair",
        /// A Unix socket bound before exec (`LISTEN_FDS`).
        UnixListener = "unix-listener",
        /// A TCP listener.
        Tcp = "tcp",
        /// A bound UDP socket.
        Udp = "udp",
        /// POSIX shared memory (`shm_open`).
        PosixShm = "posix-shm",
        /// System V shared memory (`shmget`).
        SysvShm = "sysv-shm",
        /// A POSIX message queue (`mq_open`).
        PosixMq = "posix-mq",
        /// A System V message queue (`msgget`).
        SysvMq = "sysv-mq",
        /// A POSIX named semaphore (`sem_open`).
        PosixSem = "posix-sem",
        /// A System V semaphore set (`semget`).
        SysvSem = "sysv-sem",
        /// A signal one process may send another.
        Signal = "signal",
        /// An RPC endpoint.
        Rpc = "rpc",
        /// Membership of an MPI world launched by `mpirun`.
        Mpi = "mpi",
    }
}

words! {
    /// Which end of a channel a port is.
    End, "an end" {
        /// Writes (pipe write end, sender).
        Write = "write",
        /// Reads (pipe read end, receiver).
        Read = "read",
        /// Reads and writes (socketpair end, shared memory).
        Both = "both",
        /// Accepts connections or receives datagrams on a bound socket.
        Listen = "listen",
        /// Connects to a listener or sends to a bound address.
        Connect = "connect",
        /// Sends signals or posts semaphores.
        Send = "send",
        /// Receives signals or waits on semaphores.
        Receive = "receive",
    }
}

words! {
    /// The type of a Unix socket.
    SocketType, "a socket type" {
        /// `SOCK_STREAM`.
        Stream = "stream",
        /// `SOCK_SEQPACKET`.
        Seqpacket = "seqpacket",
        /// `SOCK_DGRAM`.
        Dgram = "dgram",
    }
}

words! {
    /// How an RPC endpoint is reached.
    Transport, "a transport" {
        /// A Unix stream socket (`address` is its path).
        Unix = "unix",
        /// TCP (`address` is `host:port`).
        Tcp = "tcp",
    }
}

/// A number the launcher may fill in: the value, or the placeholder that
/// stands for it in a plan (`{sysv_id:CHANNEL}`, `{pid:INSTANCE}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Slot<T> {
    /// The value.
    Value(T),
    /// A placeholder, braces included.
    Placeholder(String),
}

impl<T: Copy> Slot<T> {
    /// The value; `None` while it is still a placeholder.
    pub fn value(&self) -> Option<T> {
        match self {
            Slot::Value(value) => Some(*value),
            Slot::Placeholder(_) => None,
        }
    }
}

impl<T: Display> Display for Slot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Slot::Value(value) => value.fmt(f),
            Slot::Placeholder(text) => f.write_str(text),
        }
    }
}

impl<T: FromStr> Slot<T> {
    fn parse_as(key: &str, text: &str, expected: &'static str) -> Result<Self, DescriptionError> {
        if let Ok(value) = text.parse() {
            return Ok(Slot::Value(value));
        }
        let inner = text.strip_prefix('{').and_then(|t| t.strip_suffix('}'));
        match inner {
            Some(inner) if !inner.is_empty() && !inner.contains(['{', '}', ',']) => {
                Ok(Slot::Placeholder(text.to_owned()))
            }
            _ => Err(DescriptionError::BadValue {
                key: key.to_owned(),
                value: text.to_owned(),
                expected,
            }),
        }
    }
}

/// The ring formatted in a POSIX shared-memory segment (`layout=ring`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RingLayout {
    /// Bytes of the data area.
    pub capacity: u64,
    /// Writer instances the ring is formatted for.
    pub producers: u32,
}

/// The two POSIX semaphores created with a shared-memory segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShmSemaphores {
    /// The lock (initially 1).
    pub lock: String,
    /// The ready signal (initially 0).
    pub ready: String,
}

/// What a port is, by kind, with the kind's own fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Params {
    /// ipc-run's own stdin or stdout.
    Inherit,
    /// An anonymous pipe.
    Pipe,
    /// A FIFO.
    Fifo {
        /// Its path.
        path: String,
    },
    /// A Unix socketpair.
    Socketpair {
        /// Socket type.
        socket: SocketType,
    },
    /// A Unix socket bound before exec.
    UnixListener {
        /// Socket type.
        socket: SocketType,
        /// Socket path.
        path: String,
    },
    /// A TCP listener.
    Tcp {
        /// `host:port`.
        address: String,
    },
    /// A bound UDP socket.
    Udp {
        /// `host:port`.
        address: String,
    },
    /// POSIX shared memory.
    PosixShm {
        /// `shm_open` name.
        name: String,
        /// Size in bytes.
        size: u64,
        /// The ring formatted in it, if any.
        ring: Option<RingLayout>,
        /// Its semaphores, if any.
        semaphores: Option<ShmSemaphores>,
    },
    /// System V shared memory.
    SysvShm {
        /// The segment id.
        id: Slot<i32>,
        /// Size in bytes.
        size: u64,
        /// The id of its semaphore set (lock, ready), if any.
        sem_id: Option<Slot<i32>>,
    },
    /// A POSIX message queue.
    PosixMq {
        /// `mq_open` name.
        name: String,
        /// Queue depth (`mq_maxmsg`).
        depth: u64,
        /// Largest message (`mq_msgsize`).
        message_size: u64,
    },
    /// A System V message queue.
    SysvMq {
        /// The queue id.
        id: Slot<i32>,
        /// Queue capacity in bytes (`msg_qbytes`).
        queue_bytes: u64,
        /// Largest message.
        message_size: u64,
    },
    /// A POSIX named semaphore.
    PosixSem {
        /// `sem_open` name.
        name: String,
        /// Initial value.
        initial: u32,
    },
    /// A System V semaphore set.
    SysvSem {
        /// The set id.
        id: Slot<i32>,
        /// Semaphores in the set.
        count: u32,
        /// Initial value of each.
        initial: u32,
    },
    /// A signal.
    Signal {
        /// Its name, e.g. `SIGUSR1`.
        signal: String,
        /// Its number.
        signo: i32,
        /// The processes the `send` end may signal (`None` on `receive`).
        pid: Option<Vec<Slot<i32>>>,
    },
    /// An RPC endpoint.
    Rpc {
        /// Protocol label (`grpc`, `json-rpc`, `http`, `dbus`, …).
        protocol: String,
        /// How it is reached.
        transport: Transport,
        /// Socket path or `host:port`.
        address: String,
        /// The address in the form the protocol's frameworks expect.
        url: String,
    },
    /// Membership of an MPI world (the rank comes from MPI itself).
    Mpi {
        /// Ranks in the world.
        size: u32,
    },
}

impl Params {
    /// The kind.
    pub fn kind(&self) -> Kind {
        match self {
            Params::Inherit => Kind::Inherit,
            Params::Pipe => Kind::Pipe,
            Params::Fifo { .. } => Kind::Fifo,
            Params::Socketpair { .. } => Kind::Socketpair,
            Params::UnixListener { .. } => Kind::UnixListener,
            Params::Tcp { .. } => Kind::Tcp,
            Params::Udp { .. } => Kind::Udp,
            Params::PosixShm { .. } => Kind::PosixShm,
            Params::SysvShm { .. } => Kind::SysvShm,
            Params::PosixMq { .. } => Kind::PosixMq,
            Params::SysvMq { .. } => Kind::SysvMq,
            Params::PosixSem { .. } => Kind::PosixSem,
            Params::SysvSem { .. } => Kind::SysvSem,
            Params::Signal { .. } => Kind::Signal,
            Params::Rpc { .. } => Kind::Rpc,
            Params::Mpi { .. } => Kind::Mpi,
        }
    }
}

/// One port: its channel, its end, what it is, and the fd it is handed
/// over as. The value of an `IPC_PORT_<NAME>` variable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Description {
    /// The channel's id in the plan.
    pub channel: String,
    /// Which end this port is.
    pub end: End,
    /// The kind and its fields.
    pub params: Params,
    /// The fd the port is handed over as, if any.
    pub fd: Option<RawFd>,
}

impl Description {
    /// The kind.
    pub fn kind(&self) -> Kind {
        self.params.kind()
    }
}

impl Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kind={} channel={} end={}",
            self.kind(),
            self.channel,
            self.end
        )?;
        match &self.params {
            Params::Inherit | Params::Pipe => {}
            Params::Fifo { path } => write!(f, " path={path}")?,
            Params::Socketpair { socket } => write!(f, " socket={socket}")?,
            Params::UnixListener { socket, path } => write!(f, " socket={socket} path={path}")?,
            Params::Tcp { address } | Params::Udp { address } => write!(f, " address={address}")?,
            Params::PosixShm {
                name,
                size,
                ring,
                semaphores,
            } => {
                write!(f, " name={name} size={size}")?;
                if let Some(ring) = ring {
                    write!(
                        f,
                        " layout=ring capacity={} producers={}",
                        ring.capacity, ring.producers
                    )?;
                }
                if let Some(sems) = semaphores {
                    write!(f, " lock={} ready={}", sems.lock, sems.ready)?;
                }
            }
            Params::SysvShm { id, size, sem_id } => {
                write!(f, " id={id} size={size}")?;
                if let Some(sem_id) = sem_id {
                    write!(f, " sem_id={sem_id}")?;
                }
            }
            Params::PosixMq {
                name,
                depth,
                message_size,
            } => write!(f, " name={name} depth={depth} message_size={message_size}")?,
            Params::SysvMq {
                id,
                queue_bytes,
                message_size,
            } => write!(
                f,
                " id={id} queue_bytes={queue_bytes} message_size={message_size}"
            )?,
            Params::PosixSem { name, initial } => write!(f, " name={name} initial={initial}")?,
            Params::SysvSem { id, count, initial } => {
                write!(f, " id={id} count={count} initial={initial}")?
            }
            Params::Signal { signal, signo, pid } => {
                write!(f, " signal={signal} signo={signo}")?;
                if let Some(pids) = pid {
                    f.write_str(" pid=")?;
                    for (i, pid) in pids.iter().enumerate() {
                        if i > 0 {
                            f.write_char(',')?;
                        }
                        write!(f, "{pid}")?;
                    }
                }
            }
            Params::Rpc {
                protocol,
                transport,
                address,
                url,
            } => write!(
                f,
                " protocol={protocol} transport={transport} address={address} url={url}"
            )?,
            Params::Mpi { size } => write!(f, " size={size}")?,
        }
        if let Some(fd) = self.fd {
            write!(f, " fd={fd}")?;
        }
        Ok(())
    }
}

/// The pairs of a description, looked up by key.
struct Pairs<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Pairs<'a> {
    fn split(text: &'a str) -> Result<Self, DescriptionError> {
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(8);
        for item in text.split_ascii_whitespace() {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| DescriptionError::NotKeyValue(item.to_owned()))?;
            if key.is_empty() {
                return Err(DescriptionError::EmptyKey(item.to_owned()));
            }
            if pairs.iter().any(|&(k, _)| k == key) {
                return Err(DescriptionError::Repeated(key.to_owned()));
            }
            pairs.push((key, value));
        }
        Ok(Pairs(pairs))
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.0.iter().find(|&&(k, _)| k == key).map(|&(_, v)| v)
    }

    fn text(&self, key: &'static str) -> Result<String, DescriptionError> {
        self.get(key)
            .map(str::to_owned)
            .ok_or(DescriptionError::Missing(key))
    }

    fn number<T: FromStr>(&self, key: &'static str) -> Result<T, DescriptionError> {
        let text = self.get(key).ok_or(DescriptionError::Missing(key))?;
        text.parse().map_err(|_| DescriptionError::BadValue {
            key: key.to_owned(),
            value: text.to_owned(),
            expected: "a number",
        })
    }

    fn id(&self, key: &'static str) -> Result<Slot<i32>, DescriptionError> {
        let text = self.get(key).ok_or(DescriptionError::Missing(key))?;
        Slot::parse_as(key, text, "an id")
    }

    fn word<T>(
        &self,
        key: &'static str,
        parse: fn(&str, &str) -> Result<T, DescriptionError>,
    ) -> Result<T, DescriptionError> {
        parse(key, self.get(key).ok_or(DescriptionError::Missing(key))?)
    }
}

impl FromStr for Description {
    type Err = DescriptionError;

    fn from_str(text: &str) -> Result<Description, DescriptionError> {
        let pairs = Pairs::split(text)?;
        let kind = pairs.word("kind", Kind::parse_as)?;
        let channel = pairs.text("channel")?;
        let end = pairs.word("end", End::parse_as)?;
        let fd = match pairs.get("fd") {
            None => None,
            Some(text) => Some(
                text.parse::<RawFd>()
                    .ok()
                    .filter(|&fd| fd >= 0)
                    .ok_or_else(|| DescriptionError::BadValue {
                        key: "fd".into(),
                        value: text.to_owned(),
                        expected: "an fd number",
                    })?,
            ),
        };
        let params = parse_params(kind, &pairs)?;
        Ok(Description {
            channel,
            end,
            params,
            fd,
        })
    }
}

fn parse_params(kind: Kind, pairs: &Pairs<'_>) -> Result<Params, DescriptionError> {
    Ok(match kind {
        Kind::Inherit => Params::Inherit,
        Kind::Pipe => Params::Pipe,
        Kind::Fifo => Params::Fifo {
            path: pairs.text("path")?,
        },
        Kind::Socketpair => Params::Socketpair {
            socket: pairs.word("socket", SocketType::parse_as)?,
        },
        Kind::UnixListener => Params::UnixListener {
            socket: pairs.word("socket", SocketType::parse_as)?,
            path: pairs.text("path")?,
        },
        Kind::Tcp => Params::Tcp {
            address: pairs.text("address")?,
        },
        Kind::Udp => Params::Udp {
            address: pairs.text("address")?,
        },
        Kind::PosixShm => Params::PosixShm {
            name: pairs.text("name")?,
            size: pairs.number("size")?,
            ring: match pairs.get("layout") {
                None => None,
                Some("ring") => Some(RingLayout {
                    capacity: pairs.number("capacity")?,
                    producers: pairs.number("producers")?,
                }),
                Some(other) => {
                    return Err(DescriptionError::BadValue {
                        key: "layout".into(),
                        value: other.to_owned(),
                        expected: "a known layout",
                    });
                }
            },
            semaphores: match (pairs.get("lock"), pairs.get("ready")) {
                (None, None) => None,
                _ => Some(ShmSemaphores {
                    lock: pairs.text("lock")?,
                    ready: pairs.text("ready")?,
                }),
            },
        },
        Kind::SysvShm => Params::SysvShm {
            id: pairs.id("id")?,
            size: pairs.number("size")?,
            sem_id: match pairs.get("sem_id") {
                None => None,
                Some(_) => Some(pairs.id("sem_id")?),
            },
        },
        Kind::PosixMq => Params::PosixMq {
            name: pairs.text("name")?,
            depth: pairs.number("depth")?,
            message_size: pairs.number("message_size")?,
        },
        Kind::SysvMq => Params::SysvMq {
            id: pairs.id("id")?,
            queue_bytes: pairs.number("queue_bytes")?,
            message_size: pairs.number("message_size")?,
        },
        Kind::PosixSem => Params::PosixSem {
            name: pairs.text("name")?,
            initial: pairs.number("initial")?,
        },
        Kind::SysvSem => Params::SysvSem {
            id: pairs.id("id")?,
            count: pairs.number("count")?,
            initial: pairs.number("initial")?,
        },
        Kind::Signal => Params::Signal {
            signal: pairs.text("signal")?,
            signo: pairs.number("signo")?,
            pid: match pairs.get("pid") {
                None => None,
                Some(list) => Some(
                    list.split(',')
                        .map(|pid| Slot::parse_as("pid", pid, "a pid"))
                        .collect::<Result<_, _>>()?,
                ),
            },
        },
        Kind::Rpc => Params::Rpc {
            protocol: pairs.text("protocol")?,
            transport: pairs.word("transport", Transport::parse_as)?,
            address: pairs.text("address")?,
            url: pairs.text("url")?,
        },
        Kind::Mpi => Params::Mpi {
            size: pairs.number("size")?,
        },
    })
}

#[cfg(test)]
mod tests;
