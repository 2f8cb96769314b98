//! `posix-shm`: a POSIX shared memory object (`shm_open`) sized at launch,
//! with a lock and a ready semaphore, no synchronisation, or formatted as
//! a ring of records (`docs/shm-ring.md`).

use std::io;
use std::os::fd::OwnedFd;

use super::edge::{EdgeContext, Shape};
use super::host_limits;
use super::{BASE, EdgeOption, Profile, Ring};
use crate::child::ring::{Consumer, HEADER_SIZE, Producer, Received, format as ring_format};
use crate::child::ring::{Header, RingError};
use crate::diagnostic::{Diagnostic, Label};
use crate::mechanism::bench_cleanup::{self as cleanup, Guard, Object};
use crate::mechanism::bench_link::{
    Endpoint, Link, PeerReady, PeerSetup, Pending, Place, Setup, c_name, name, no_end, ready,
};
use crate::mechanism::build::{Build, Handover, Held, Named, exists, posix_name};
use crate::mechanism::error::LaunchError;
use crate::mechanism::limits::Limits;
use crate::mechanism::model::{Mechanism, ObjectKind, PosixShmParams, RingPlan};
use crate::topology::{SyncKind, Traffic};
use ipc_run_child::description::{Params, RingLayout, ShmSemaphores};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::shm_open;
use nix::sys::stat::{Mode, fchmod};
use std::os::fd::{AsFd, BorrowedFd};

/// The mechanism's name.
pub const NAME: &str = ipc_run_child::description::Kind::PosixShm.as_str();

/// Shared data, or messages through a ring.
pub const PROFILE: Profile = Profile {
    name: NAME,
    carries: &[Traffic::Shared],
    ring: Ring::Holds,
    options: &[EdgeOption::Size, EdgeOption::Sync],
    ..BASE
};

// ---- plan ----

/// The object `/ipc-run.{run_id}.ID`, its size checked against `/dev/shm`,
/// and with `sync = "semaphores"` (the default) the semaphores `NAME.lock`
/// and `NAME.ready`.
pub(crate) fn plan(cx: &mut EdgeContext<'_>) -> Option<Shape> {
    let limits = cx.limits;
    let size = cx.shared_size("E0609", &limits.posix_shm_max, "/dev/shm")?;
    let sync = sync_of(cx);
    let ring = if sync == SyncKind::Ring {
        Some(ring_plan(cx, size)?)
    } else {
        None
    };
    let name = cx.posix_name();
    cx.object(ObjectKind::PosixShm, name.clone());
    let mut semaphores = Vec::new();
    if sync == SyncKind::Semaphores {
        semaphores = vec![format!("{name}.lock"), format!("{name}.ready")];
        for sem in &semaphores {
            cx.object(ObjectKind::PosixSem, sem.clone());
        }
    }
    Some(Shape::unbounded(Mechanism::PosixShm(Box::new(
        PosixShmParams {
            name,
            size,
            semaphores,
            ring,
        },
    ))))
}

/// The edge's `sync`, semaphores unless written.
pub(crate) fn sync_of(cx: &EdgeContext<'_>) -> SyncKind {
    cx.spec
        .and_then(|s| s.sync.as_ref())
        .map(|s| *s.get_ref())
        .unwrap_or(SyncKind::Semaphores)
}

/// The ring a segment of `size` bytes holds, checked against the largest
/// record the edge declares.
fn ring_plan(cx: &mut EdgeContext<'_>, size: u64) -> Option<RingPlan> {
    let id = cx.id;
    let blame = cx.span_of(|s| s.size.as_ref().map(|v| v.span()));
    let Some(capacity) = crate::child::ring::capacity_for(size) else {
        cx.report(
            Diagnostic::error(
                "E0612",
                format!("edge `{id}` is a ring of {size} bytes; a ring needs at least 4160 (a 4096-byte header and 64 bytes of data)"),
            )
            .with_label(Label::primary(blame, "too small for a ring"))
            .with_help("make `size` at least the header (4 KiB) plus room for a few records"),
        );
        return None;
    };
    // A record's length is a u32 in the ring, whatever the segment holds.
    let max_record = (capacity - 8).min(u64::from(u32::MAX));
    if let Some(largest) = cx.traits.message_size
        && largest > max_record
    {
        let span = cx
            .spec
            .and_then(|s| s.message_size.as_ref().map(|v| v.span()))
            .unwrap_or(blame);
        if largest > u64::from(u32::MAX) {
            cx.report(
                Diagnostic::error(
                    "E0612",
                    format!("edge `{id}` sends records of {largest} bytes; a ring's record length is 32 bits, so a record holds at most {} bytes", u32::MAX),
                )
                .with_label(Label::primary(span, "does not fit a ring record"))
                .with_help("split the data into records of at most 4 GiB - 1, or use shared memory without a ring for one large region"),
            );
            return None;
        }
        let least = (largest + 8).div_ceil(64) * 64 + crate::child::ring::HEADER_SIZE;
        cx.report(
            Diagnostic::error(
                "E0612",
                format!("edge `{id}` sends records of {largest} bytes; its ring of {size} bytes takes records of at most {} (capacity {capacity} less 8)", capacity - 8),
            )
            .with_label(Label::primary(span, "does not fit the ring"))
            .with_help(format!("make `size` at least {least}")),
        );
        return None;
    }
    Some(RingPlan {
        capacity,
        producers: u32::try_from(cx.traits.writers).unwrap_or(u32::MAX),
    })
}

/// The description its ports get (`IPC_PORT_*`).
pub(crate) fn describe(
    name: &str,
    size: u64,
    semaphores: &[String],
    ring: Option<&RingPlan>,
) -> Params {
    Params::PosixShm {
        name: name.to_owned(),
        size,
        ring: ring.map(|ring| RingLayout {
            capacity: ring.capacity,
            producers: ring.producers,
        }),
        semaphores: match semaphores {
            [lock, ready] => Some(ShmSemaphores {
                lock: lock.clone(),
                ready: ready.clone(),
            }),
            _ => None,
        },
    }
}

/// Re-checks a plan read back against this host: the segment fits
/// `/dev/shm`, and its ring (if any) fits the segment.
pub(crate) fn recheck(
    id: &str,
    size: u64,
    ring: Option<&RingPlan>,
    limits: &Limits,
    sink: &mut Vec<Diagnostic>,
) {
    host_limits::size("E0609", id, size, &limits.posix_shm_max, "/dev/shm", sink);
    let Some(ring) = ring else {
        return;
    };
    // A data area of a multiple of 64 bytes (one cache line at least).
    const ALIGN: u64 = 64;
    const HEADER: u64 = crate::child::ring::HEADER_SIZE;
    let fits = ring.capacity >= ALIGN
        && ring.capacity % ALIGN == 0
        && ring.capacity.checked_add(HEADER).is_some_and(|n| n <= size)
        && ring.producers >= 1;
    if !fits {
        sink.push(Diagnostic::error("E0612", format!("the ring of edge `{id}` (capacity {}, {} producer(s)) does not fit its {size}-byte segment", ring.capacity, ring.producers))
            .with_note(format!("a ring is a {HEADER}-byte header and a data area of a multiple of {ALIGN} bytes, for at least one producer")));
    }
}

// ---- launch ----

/// The object, created exclusively, set to its mode and sized; a ring is
/// formatted before any process starts (nobody sees a half-made header)
/// and its header kept mapped; the semaphores follow, the first the lock
/// (1), the others signals (0).
pub(crate) fn create(
    b: &mut dyn Build,
    name: &str,
    size: u64,
    semaphores: &[String],
    ring: Option<&RingPlan>,
) -> Result<(), LaunchError> {
    let name = posix_name(&b.channel().id, &b.fill(name)?)?;
    let record = Named::PosixShm(name.clone());
    b.intend(&record)?;
    let error = b.error(NAME, &name);
    let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR;
    let fd = match shm_open(name.as_str(), flags, Mode::from_bits_truncate(0o600)) {
        Ok(fd) => {
            b.record(record);
            fd
        }
        Err(Errno::EEXIST) => return Err(exists(NAME, &name)),
        Err(errno) => return Err(error(errno)),
    };
    let mode = b.mode(ObjectKind::PosixShm);
    fchmod(&fd, Mode::from_bits_truncate(mode as libc::mode_t)).map_err(&error)?;
    nix::unistd::ftruncate(&fd, size as libc::off_t).map_err(&error)?;
    if let Some(ring) = ring {
        let header = format_ring(b, fd.as_fd(), size, ring, &error)?;
        b.keep_ring(header, ring.producers);
    }
    b.hold(Held::Shm, fd);
    for (i, sem) in semaphores.iter().enumerate() {
        super::posix_sem::create(b, sem, u32::from(i == 0))?;
    }
    Ok(())
}

/// Formats the ring and maps its header page.
fn format_ring(
    b: &dyn Build,
    fd: BorrowedFd<'_>,
    size: u64,
    ring: &RingPlan,
    error: &impl Fn(Errno) -> LaunchError,
) -> Result<Header, LaunchError> {
    let ring_error = |e: RingError| match e {
        RingError::Sys { error: e, .. } => {
            error(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
        }
        other => LaunchError::BadValue {
            what: format!("ring of channel {}", b.channel().id),
            value: format!("{size} bytes"),
            reason: other.to_string(),
        },
    };
    crate::child::ring::format(fd, size, ring.producers).map_err(ring_error)?;
    Header::map(fd).map_err(ring_error)
}

/// The segment's fd to every process that maps it.
pub(crate) fn handover() -> Handover {
    Handover::Held(Held::Shm)
}

// ---- bench ----

/// ipc-run's shared-memory ring, one per direction, one producer; an
/// empty record ends.
struct RingLink {
    tx: Option<Producer>,
    rx: Option<Consumer>,
}

impl Link for RingLink {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let tx = self.tx.as_mut().ok_or_else(|| no_end("send"))?;
        tx.send(msg, None).map_err(io::Error::other)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rx = self.rx.as_mut().ok_or_else(|| no_end("receive"))?;
        match rx.recv_into(buf, None).map_err(io::Error::other)? {
            Received::Record(n) => Ok(n),
            Received::End => Ok(0),
        }
    }

    fn end(&mut self) -> io::Result<()> {
        // An empty record, like the queues' end mark.
        self.send(&[])
    }
}

/// The segment size of a ring for messages of `size` bytes: the header
/// page and [`bench_capacity`] bytes of data.
pub(crate) fn ring_bytes(size: usize) -> u64 {
    HEADER_SIZE + bench_capacity(size)
}

/// The bench ring's data capacity for messages of `size` bytes: a power of
/// two of at least 1 MiB that holds 4 such records. A power of two because
/// the kernel rounds a pipe's capacity up to one (in pages), so the
/// `pipe-sized` rows get exactly the ring's capacity.
pub(crate) fn bench_capacity(size: usize) -> u64 {
    let record = 8 + size.div_ceil(8) as u64 * 8;
    (4 * record).max(1 << 20).next_power_of_two()
}

/// A bench segment holding a formatted ring for messages of `size` bytes.
fn shm_ring(place: &Place, tag: &str, size: usize) -> io::Result<(OwnedFd, String, Guard)> {
    let name = format!("/ipc-run-bench.{}.{tag}", place.id);
    let cname = c_name(&name)?;
    let (fd, guard) = cleanup::create(|| {
        nix::sys::mman::shm_open(
            cname.as_c_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map(|fd| (fd, Object::PosixShm(cname.clone())))
    })?;
    crate::sys::ipc::fchmod_exact(&fd, 0o600)?;
    let bytes = ring_bytes(size);
    nix::unistd::ftruncate(&fd, bytes as i64)?;
    ring_format(fd.as_fd(), bytes, 1).map_err(io::Error::other)?;
    Ok((fd, name, guard))
}

/// The parent's segment number `at`, opened.
fn open_shm(endpoint: &Endpoint, at: usize) -> io::Result<OwnedFd> {
    Ok(nix::sys::mman::shm_open(
        name(endpoint, at)?.as_c_str(),
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// One shared-memory ring from the peer, and one to it for round trips.
pub(crate) fn bench_parent(b: &mut Setup<'_>) -> io::Result<Pending> {
    let (place, round_trip, size) = (b.place, b.round_trip, b.size);
    let (from_peer, name, guard) = shm_ring(place, "from-peer", size)?;
    b.side.guards.push(guard);
    let rx = Some(Consumer::from_fd(from_peer).map_err(io::Error::other)?);
    let tx = if round_trip {
        let (to_peer, to_name, guard) = shm_ring(place, "to-peer", size)?;
        b.side.guards.push(guard);
        b.side.endpoint.names = vec![to_name, name];
        Some(Producer::from_fd(to_peer).map_err(io::Error::other)?)
    } else {
        b.side.endpoint.names = vec![name];
        None
    };
    Ok(Pending::Ready(Box::new(RingLink { tx, rx })))
}

/// The parent's rings, opened: producing into the parent's, and consuming
/// the other for round trips.
pub(crate) fn bench_peer(p: &PeerSetup<'_>) -> io::Result<PeerReady> {
    let (endpoint, round_trip) = (p.endpoint, p.round_trip);
    let producer = |at| Producer::from_fd(open_shm(endpoint, at)?).map_err(io::Error::other);
    ready(Box::new(if round_trip {
        RingLink {
            rx: Some(Consumer::from_fd(open_shm(endpoint, 0)?).map_err(io::Error::other)?),
            tx: Some(producer(1)?),
        }
    } else {
        RingLink {
            rx: None,
            tx: Some(producer(0)?),
        }
    }))
}
