//! The shared-memory ring of a `sync = "ring"` edge, as `docs/shm-ring.md`
//! (layout version 1) defines it: producers append length-prefixed records,
//! the one consumer takes them in order, both block with a timeout when the
//! ring is empty or full, and the stream ends once every producer is done.
//!
//! ```no_run
//! use ipc_run_child::ring::{Consumer, Producer, Received};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut port = ipc_run_child::port("frames")?;
//! let mut producer = Producer::from_port(&mut port)?;
//! producer.send(b"hello", None)?;
//! producer.close()?;
//!
//! let mut port = ipc_run_child::port("frames")?;
//! let mut consumer = Consumer::from_port(&mut port)?;
//! let mut buf = Vec::new();
//! while let Received::Record(len) = consumer.recv(&mut buf, None)? {
//!     println!("{len} bytes");
//! }
//! # Ok(()) }
//! ```
//!
//! With nobody waiting, a record costs two copies and a few atomic
//! operations on each side, no system call: each side caches the other's
//! counter and reads it again only when the ring looks full (or empty).
//! With more than one declared producer, each record also takes the writer
//! lock: a POSIX record lock (kernel-released when its holder dies) plus a
//! mutex among this process's threads, because record locks belong to the
//! process.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::Port;
use crate::description::{End, Kind, Params};
use crate::sys::{Mapping, fstat, pwrite_all, record_lock, shm_open};
use spin::{Presence, State};

/// Bytes of the header page; the data area starts here.
pub const HEADER_SIZE: u64 = 4096;
/// The magic bytes at offset 0.
pub const MAGIC: &[u8; 8] = b"ipc-ring";
/// The layout version this module reads and writes.
pub const VERSION: u32 = 1;

const OFF_VERSION: usize = 8;
const OFF_DATA: usize = 12;
const OFF_CAPACITY: usize = 16;
const OFF_MAX: usize = 24;
const OFF_PRODUCERS: usize = 32;
const OFF_HEAD: usize = 64;
const OFF_READERS_WAITING: usize = 72;
/// The word a waiting reader sleeps on: bumped by whoever may have made it
/// runnable (a publish while a reader waits, a close, the end marked).
const OFF_DATA_SEQ: usize = 76;
const OFF_TAIL: usize = 128;
const OFF_WRITERS_WAITING: usize = 136;
const OFF_DONE: usize = 192;
const DATA: usize = HEADER_SIZE as usize;
/// Bytes of a record header (`u32` length, `u32` zero).
const RECORD_HEADER: u64 = 8;
/// The smallest data area.
const MIN_CAPACITY: u64 = 64;

/// Why a ring operation failed.
#[derive(Debug)]
pub enum RingError {
    /// The timeout passed with the ring still empty (recv) or full (send).
    TimedOut,
    /// A record larger than the ring's largest record (send), or than the
    /// buffer given to `recv_into` (the record stays in the ring).
    TooLarge {
        /// The record's length.
        len: usize,
        /// The most that fits.
        max: usize,
    },
    /// The segment is not a version-1 ring, or its counters are corrupt.
    BadLayout(String),
    /// The buffer for a record could not be allocated (the record stays
    /// in the ring).
    NoMemory {
        /// The record's length.
        len: usize,
    },
    /// The port does not describe a ring segment.
    Port {
        /// The port name.
        port: String,
        /// What is missing or wrong.
        why: String,
    },
    /// A system call failed.
    Sys {
        /// What was being done.
        what: &'static str,
        /// The error.
        error: io::Error,
    },
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::TimedOut => f.write_str("timed out waiting on the ring"),
            RingError::TooLarge { len, max } => {
                write!(f, "record of {len} bytes does not fit: at most {max}")
            }
            RingError::BadLayout(why) => write!(f, "not a usable ring (layout version 1): {why}"),
            RingError::NoMemory { len } => {
                write!(f, "cannot allocate {len} bytes for a record of the ring")
            }
            RingError::Port { port, why } => write!(f, "port `{port}`: {why}"),
            RingError::Sys { what, error } => write!(f, "{what}: {error}"),
        }
    }
}

impl std::error::Error for RingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RingError::Sys { error, .. } => Some(error),
            _ => None,
        }
    }
}

fn sys(what: &'static str) -> impl FnOnce(io::Error) -> RingError {
    move |error| RingError::Sys { what, error }
}

/// What [`Consumer::recv`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A record of this many bytes.
    Record(usize),
    /// Every producer is done and the ring is empty: the end of the stream.
    End,
}

/// Writes the header of a fresh segment (`size` bytes, all zero) for
/// `producers` writers and returns the data capacity: `size - 4096`
/// rounded down to a multiple of 64.
pub fn format(fd: BorrowedFd<'_>, size: u64, producers: u32) -> Result<u64, RingError> {
    let capacity = capacity_for(size).ok_or_else(|| {
        RingError::BadLayout(format!(
            "a segment of {size} bytes is too small: a ring needs at least {}",
            HEADER_SIZE + MIN_CAPACITY
        ))
    })?;
    if producers == 0 {
        return Err(RingError::BadLayout(
            "a ring needs at least one producer".into(),
        ));
    }
    let mut page = vec![0u8; DATA];
    page[..8].copy_from_slice(MAGIC);
    page[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&VERSION.to_le_bytes());
    page[OFF_DATA..OFF_DATA + 4].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
    page[OFF_CAPACITY..OFF_CAPACITY + 8].copy_from_slice(&capacity.to_le_bytes());
    page[OFF_MAX..OFF_MAX + 8].copy_from_slice(&(capacity - RECORD_HEADER).to_le_bytes());
    page[OFF_PRODUCERS..OFF_PRODUCERS + 4].copy_from_slice(&producers.to_le_bytes());
    pwrite_all(fd, &page, 0).map_err(sys("write the ring header"))?;
    Ok(capacity)
}

/// The data capacity of a ring in a segment of `size` bytes, if it fits.
pub fn capacity_for(size: u64) -> Option<u64> {
    let capacity = size.checked_sub(HEADER_SIZE)? / 64 * 64;
    (capacity >= MIN_CAPACITY).then_some(capacity)
}

/// The header page of a ring segment, mapped: what ipc-run keeps to mark
/// the end of the stream once every writer of the edge has ended.
#[derive(Debug)]
pub struct Header {
    map: Mapping,
}

impl Header {
    /// Maps the header page of the ring segment `fd`.
    pub fn map(fd: BorrowedFd<'_>) -> Result<Header, RingError> {
        let map = Mapping::new(fd, DATA).map_err(sys("map the ring header"))?;
        Ok(Header { map })
    }
}

/// `head` and `tail` of a mapped header: bytes published and bytes
/// consumed since the start, record headers and padding included
/// (`docs/shm-ring.md`). Two loads, no lock: what `ipc-run status` shows.
pub fn positions(header: &Header) -> (u64, u64) {
    let tail = header.map.u64_at(OFF_TAIL).load(Ordering::Acquire);
    let head = header.map.u64_at(OFF_HEAD).load(Ordering::Acquire);
    (head, tail)
}

/// Marks the end of the stream on a mapped header: "producers done" :=
/// `producers`, then a wake of the reader. What ipc-run does once every
/// writer of the edge has ended for good.
pub fn mark_end(header: &Header, producers: u32) {
    header
        .map
        .u32_at(OFF_DONE)
        .store(producers, Ordering::SeqCst);
    wake_reader(&header.map);
}

/// The mapped, validated segment.
#[derive(Debug)]
struct Ring {
    map: Mapping,
    capacity: u64,
    producers: u32,
}

impl Ring {
    /// Opens the ring in `fd` and, when it declares several producers,
    /// joins this process's writer-lock entry for the segment (producers
    /// lock through it; a consumer only keeps the shared fd alive).
    fn open_shared(fd: OwnedFd) -> Result<(Ring, Option<Arc<WriterLock>>), RingError> {
        let ring = Ring::open(fd.as_fd())?;
        let lock = if ring.producers > 1 {
            Some(WriterLock::for_fd(fd)?)
        } else {
            None
        };
        Ok((ring, lock))
    }

    fn open(fd: BorrowedFd<'_>) -> Result<Ring, RingError> {
        if cfg!(target_endian = "big") {
            return Err(RingError::BadLayout(
                "the ring is little-endian and this machine is not".into(),
            ));
        }
        let size = fstat(fd).map_err(sys("fstat the ring segment"))?.size;
        if size < HEADER_SIZE + MIN_CAPACITY {
            return Err(RingError::BadLayout(format!(
                "the segment is {size} bytes, less than a header and 64 bytes of data"
            )));
        }
        let header = Mapping::new(fd, DATA).map_err(sys("map the ring header"))?;
        let mut page = vec![0u8; 256];
        header.read(0, &mut page);
        let u32_at =
            |o: usize| u32::from_le_bytes([page[o], page[o + 1], page[o + 2], page[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&page[o..o + 8]);
            u64::from_le_bytes(b)
        };
        if &page[..8] != MAGIC {
            return Err(RingError::BadLayout("no `ipc-ring` magic".into()));
        }
        let bad = |why: String| Err(RingError::BadLayout(why));
        if u32_at(OFF_VERSION) != VERSION {
            return bad(format!(
                "version {}, expected {VERSION}",
                u32_at(OFF_VERSION)
            ));
        }
        if u64::from(u32_at(OFF_DATA)) != HEADER_SIZE {
            return bad(format!("data offset {}", u32_at(OFF_DATA)));
        }
        let capacity = u64_at(OFF_CAPACITY);
        if capacity < MIN_CAPACITY
            || capacity % 64 != 0
            || capacity > size - HEADER_SIZE
            || usize::try_from(capacity).is_err()
        {
            return bad(format!("capacity {capacity} in a segment of {size} bytes"));
        }
        if u64_at(OFF_MAX) != capacity - RECORD_HEADER {
            return bad(format!(
                "largest record {} for capacity {capacity}",
                u64_at(OFF_MAX)
            ));
        }
        let producers = u32_at(OFF_PRODUCERS);
        if producers == 0 {
            return bad("no producers".into());
        }
        drop(header);
        let map = Mapping::new(fd, DATA + capacity as usize).map_err(sys("map the ring"))?;
        Ok(Ring {
            map,
            capacity,
            producers,
        })
    }

    fn head(&self) -> &AtomicU64 {
        self.map.u64_at(OFF_HEAD)
    }

    fn tail(&self) -> &AtomicU64 {
        self.map.u64_at(OFF_TAIL)
    }

    fn done(&self) -> &AtomicU32 {
        self.map.u32_at(OFF_DONE)
    }

    /// `capacity - 8`, and at most what the record header's `u32` length
    /// can say.
    fn max_record(&self) -> usize {
        (self.capacity - RECORD_HEADER).min(u64::from(u32::MAX)) as usize
    }

    /// Bytes in use between `tail` and `head`, refusing impossible values.
    fn used(&self, head: u64, tail: u64) -> Result<u64, RingError> {
        let used = head.wrapping_sub(tail);
        if used > self.capacity || used % 8 != 0 {
            return Err(RingError::BadLayout(format!(
                "head {head} and tail {tail} are {used} bytes apart in a ring of {}",
                self.capacity
            )));
        }
        Ok(used)
    }

    fn write(&self, pos: u64, data: &[u8]) {
        self.map
            .write_wrapped(DATA, self.capacity as usize, pos, data);
    }

    fn read(&self, pos: u64, out: &mut [u8]) {
        self.map
            .read_wrapped(DATA, self.capacity as usize, pos, out);
    }
}

/// The bytes a record of `len` payload bytes occupies.
fn footprint(len: usize) -> u64 {
    RECORD_HEADER + (len as u64).div_ceil(8) * 8
}

/// Time left before the deadline that `timeout` sets at the first wait.
fn remaining(
    deadline: &mut Option<Option<Instant>>,
    timeout: Option<Duration>,
) -> Result<Option<Duration>, RingError> {
    let Some(timeout) = timeout else {
        return Ok(None);
    };
    let now = Instant::now();
    let Some(deadline) = *deadline.get_or_insert_with(|| now.checked_add(timeout)) else {
        // Beyond what an Instant can hold: as good as for ever.
        return Ok(None);
    };
    let left = deadline.saturating_duration_since(now);
    if left.is_zero() {
        return Err(RingError::TimedOut);
    }
    Ok(Some(left))
}

/// Bumps the reader's wake sequence and wakes it: after a change of `head`
/// or "producers done" that a waiting reader must see (the change is made
/// before, with sequentially consistent ordering).
fn wake_reader(map: &Mapping) {
    map.u32_at(OFF_DATA_SEQ).fetch_add(1, Ordering::SeqCst);
    map.futex_wake(OFF_DATA_SEQ);
}

/// A futex wait whose "look again" outcomes are not errors.
fn wait(
    map: &Mapping,
    offset: usize,
    expected: u32,
    time: Option<Duration>,
) -> Result<(), RingError> {
    match map.futex_wait(offset, expected, time) {
        Ok(()) => Ok(()),
        Err(error)
            if matches!(
                error.raw_os_error(),
                Some(libc::EAGAIN | libc::EINTR | libc::ETIMEDOUT)
            ) =>
        {
            Ok(())
        }
        Err(error) => Err(sys("futex wait")(error)),
    }
}

/// The writer lock of one segment in this process: the mutex orders this
/// process's threads, the fd carries the POSIX record lock. All producers
/// (and consumers) of the same segment in a process share one entry and
/// one fd, because closing *any* fd of a file drops the process's record
/// locks on it: surplus fds are kept open with the entry and closed with it,
/// once no producer of this process can hold the lock. (Closing them under
/// the mutex instead would block opening a producer while another waits,
/// lock held, for the reader to make room.)
#[derive(Debug)]
struct WriterLock {
    mutex: Mutex<()>,
    fd: OwnedFd,
    surplus: Mutex<Vec<OwnedFd>>,
}

type LockRegistry = Mutex<BTreeMap<(u64, u64), Weak<WriterLock>>>;

impl WriterLock {
    /// The entry for the segment behind `fd`, taking over `fd` or closing it.
    fn for_fd(fd: OwnedFd) -> Result<Arc<WriterLock>, RingError> {
        static REGISTRY: LockRegistry = Mutex::new(BTreeMap::new());
        let key = fstat(fd.as_fd()).map_err(sys("fstat the ring segment"))?.id;
        let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        registry.retain(|_, entry| entry.strong_count() > 0);
        if let Some(entry) = registry.get(&key).and_then(Weak::upgrade) {
            entry
                .surplus
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(fd);
            return Ok(entry);
        }
        let entry = Arc::new(WriterLock {
            mutex: Mutex::new(()),
            fd,
            surplus: Mutex::new(Vec::new()),
        });
        registry.insert(key, Arc::downgrade(&entry));
        Ok(entry)
    }

    fn acquire(&self) -> Result<LockGuard<'_>, RingError> {
        let guard = self.mutex.lock().unwrap_or_else(|p| p.into_inner());
        record_lock(self.fd.as_fd(), true).map_err(sys("take the ring's writer lock"))?;
        Ok(LockGuard {
            fd: self.fd.as_fd(),
            _guard: guard,
        })
    }
}

/// Holds the writer lock; releases the record lock, then the mutex.
struct LockGuard<'a> {
    fd: BorrowedFd<'a>,
    _guard: MutexGuard<'a, ()>,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // An unlock of a lock we hold cannot fail in a way we could act on;
        // the kernel drops it with the process anyway.
        let _ = record_lock(self.fd, false);
    }
}

/// The writing side of a ring. Several may exist (one per producer process
/// or thread) when the topology declares several producers.
#[derive(Debug)]
pub struct Producer {
    ring: Ring,
    /// The writer lock, when the ring declares more than one producer.
    lock: Option<Arc<WriterLock>>,
    /// A tail seen earlier: tail only grows, so space computed from it is
    /// never more than the real space.
    cached_tail: u64,
    /// Where this writer runs, and whether waiting for the reader may spin.
    presence: Presence,
}

impl Producer {
    /// Opens the ring of a port: its `fd=` if it has one, else `name=`
    /// through `shm_open`.
    pub fn from_port(port: &mut Port) -> Result<Producer, RingError> {
        Producer::from_fd(open_port(port, End::Write)?)
    }

    /// Opens the ring in the segment `fd` (read-write).
    pub fn from_fd(fd: OwnedFd) -> Result<Producer, RingError> {
        let (ring, lock) = Ring::open_shared(fd)?;
        let cached_tail = ring.tail().load(Ordering::Acquire);
        let presence = Presence::writer(&ring.map);
        Ok(Producer {
            ring,
            lock,
            cached_tail,
            presence,
        })
    }

    /// The largest record payload: capacity - 8, at most `u32::MAX` (a
    /// record header holds its length in a `u32`).
    pub fn max_record(&self) -> usize {
        self.ring.max_record()
    }

    /// The data capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.ring.capacity
    }

    /// Appends one record, waiting up to `timeout` (`None`: for ever) for
    /// room. A record is published whole or not at all.
    pub fn send(&mut self, record: &[u8], timeout: Option<Duration>) -> Result<(), RingError> {
        if record.len() > self.max_record() {
            return Err(RingError::TooLarge {
                len: record.len(),
                max: self.max_record(),
            });
        }
        let lock = self.lock.clone();
        let _guard = lock.as_deref().map(WriterLock::acquire).transpose()?;
        let head = self.reserve(footprint(record.len()), timeout)?;
        self.write_record(head, record, record.len());
        self.publish(head + footprint(record.len()));
        self.presence.tick(&self.ring.map);
        Ok(())
    }

    /// Waits until `size` bytes are free and returns the current head.
    fn reserve(&mut self, size: u64, timeout: Option<Duration>) -> Result<u64, RingError> {
        let ring = &self.ring;
        let head = ring.head().load(Ordering::Acquire);
        let capacity = ring.capacity;
        let fits = |tail: u64| -> Result<bool, RingError> {
            Ok(capacity - ring.used(head, tail)? >= size)
        };
        // A stale tail may even look "ahead" of head to `used` when other
        // producers moved head far; reload before judging.
        if head.wrapping_sub(self.cached_tail) <= capacity && fits(self.cached_tail)? {
            return Ok(head);
        }
        let mut deadline = None;
        loop {
            self.cached_tail = ring.tail().load(Ordering::Acquire);
            if fits(self.cached_tail)? {
                return Ok(head);
            }
            let cached = self.cached_tail;
            if deadline.is_none()
                && timeout != Some(Duration::ZERO)
                && self
                    .presence
                    .spin_until(&ring.map, || ring.tail().load(Ordering::Acquire) != cached)
            {
                continue;
            }
            let time = remaining(&mut deadline, timeout)?;
            let waiting = ring.map.u32_at(OFF_WRITERS_WAITING);
            self.presence.mark(&ring.map, State::Sleeping);
            waiting.fetch_add(1, Ordering::SeqCst);
            let tail = ring.tail().load(Ordering::SeqCst);
            let result = if fits(tail).unwrap_or(true) {
                Ok(())
            } else {
                wait(&ring.map, OFF_TAIL, tail as u32, time)
            };
            waiting.fetch_sub(1, Ordering::SeqCst);
            self.presence.mark(&ring.map, State::Running);
            result?;
        }
    }

    /// Writes the header (claiming `len` bytes) and the payload at `pos`.
    fn write_record(&self, pos: u64, payload: &[u8], len: usize) {
        let mut header = [0u8; RECORD_HEADER as usize];
        header[..4].copy_from_slice(&(len as u32).to_le_bytes());
        self.ring.write(pos, &header);
        self.ring.write(pos + RECORD_HEADER, payload);
    }

    fn publish(&self, head: u64) {
        let ring = &self.ring;
        ring.head().store(head, Ordering::Release);
        fence(Ordering::SeqCst);
        if ring.map.u32_at(OFF_READERS_WAITING).load(Ordering::Relaxed) != 0 {
            wake_reader(&ring.map);
        }
    }

    /// Declares this producer done for good: "producers done" += 1 and a
    /// wake of the reader. A producer that only exits to be restarted
    /// should just be dropped.
    pub fn close(self) -> Result<(), RingError> {
        self.ring.done().fetch_add(1, Ordering::SeqCst);
        wake_reader(&self.ring.map);
        Ok(())
    }

    /// Test hook: takes the record lock (not the thread mutex), writes the
    /// record header and the first `bytes` bytes of `record` past head
    /// without publishing them, and returns holding the lock. A process
    /// killed after this is the "writer died mid-record" case.
    #[doc(hidden)]
    pub fn write_unpublished(&mut self, record: &[u8], bytes: usize) -> Result<(), RingError> {
        if let Some(lock) = &self.lock {
            record_lock(lock.fd.as_fd(), true).map_err(sys("take the ring's writer lock"))?;
        }
        let head = self.reserve(footprint(record.len()), None)?;
        let part = &record[..bytes.min(record.len())];
        self.write_record(head, part, record.len());
        Ok(())
    }
}

/// The reading side of a ring; one per ring.
#[derive(Debug)]
pub struct Consumer {
    ring: Ring,
    /// Keeps this process's fd of a multi-producer segment in the shared
    /// entry, so dropping the consumer never drops a producer thread's lock.
    _lock: Option<Arc<WriterLock>>,
    /// A head seen earlier: head only grows, so data up to it is published.
    cached_head: u64,
    /// Where the reader runs, and whether waiting for data may spin.
    presence: Presence,
}

impl Consumer {
    /// Opens the ring of a port: its `fd=` if it has one, else `name=`
    /// through `shm_open`.
    pub fn from_port(port: &mut Port) -> Result<Consumer, RingError> {
        Consumer::from_fd(open_port(port, End::Read)?)
    }

    /// Opens the ring in the segment `fd` (read-write: the reader moves tail).
    pub fn from_fd(fd: OwnedFd) -> Result<Consumer, RingError> {
        let (ring, lock) = Ring::open_shared(fd)?;
        let cached_head = ring.tail().load(Ordering::Acquire);
        let presence = Presence::reader(&ring.map);
        Ok(Consumer {
            ring,
            _lock: lock,
            cached_head,
            presence,
        })
    }

    /// The largest record payload: capacity - 8, at most `u32::MAX` (a
    /// record header holds its length in a `u32`).
    pub fn max_record(&self) -> usize {
        self.ring.max_record()
    }

    /// The data capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.ring.capacity
    }

    /// Takes the next record into `buf` (cleared, then filled), waiting up
    /// to `timeout` (`None`: for ever); [`Received::End`] once every
    /// producer is done and the ring is empty.
    pub fn recv(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<Received, RingError> {
        let Some((tail, len)) = self.next(timeout)? else {
            return Ok(Received::End);
        };
        // Only growth is zero-filled: a reused buffer costs one copy. The
        // length comes from the segment, so the memory may not be there.
        if buf.len() > len {
            buf.truncate(len);
        } else {
            buf.try_reserve_exact(len - buf.len())
                .map_err(|_| RingError::NoMemory { len })?;
            buf.resize(len, 0);
        }
        self.ring.read(tail + RECORD_HEADER, buf);
        self.consume(tail + footprint(len));
        Ok(Received::Record(len))
    }

    /// Takes the next record into `buf[..len]`; [`RingError::TooLarge`]
    /// when `buf` is shorter than the record, which then stays in the ring.
    pub fn recv_into(
        &mut self,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<Received, RingError> {
        let Some((tail, len)) = self.next(timeout)? else {
            return Ok(Received::End);
        };
        if len > buf.len() {
            return Err(RingError::TooLarge {
                len,
                max: buf.len(),
            });
        }
        self.ring.read(tail + RECORD_HEADER, &mut buf[..len]);
        self.consume(tail + footprint(len));
        Ok(Received::Record(len))
    }

    /// Waits for a record: its position and length, or `None` at the end.
    fn next(&mut self, timeout: Option<Duration>) -> Result<Option<(u64, usize)>, RingError> {
        let ring = &self.ring;
        let tail = ring.tail().load(Ordering::Relaxed);
        let mut deadline = None;
        if self.cached_head == tail {
            loop {
                self.cached_head = ring.head().load(Ordering::Acquire);
                if self.cached_head != tail {
                    break;
                }
                if ring.done().load(Ordering::Acquire) >= ring.producers {
                    // A producer may have published just before closing.
                    self.cached_head = ring.head().load(Ordering::Acquire);
                    if self.cached_head == tail {
                        return Ok(None);
                    }
                    break;
                }
                if deadline.is_none()
                    && timeout != Some(Duration::ZERO)
                    && self
                        .presence
                        .spin_until(&ring.map, || ring.head().load(Ordering::Acquire) != tail)
                {
                    continue;
                }
                let time = remaining(&mut deadline, timeout)?;
                // Flag, then the sequence, then the state: a publish or an
                // end after the sequence was read bumps it, so the futex
                // wait returns at once; one before is seen in the state.
                let waiting = ring.map.u32_at(OFF_READERS_WAITING);
                self.presence.mark(&ring.map, State::Sleeping);
                waiting.fetch_add(1, Ordering::SeqCst);
                let seq = ring.map.u32_at(OFF_DATA_SEQ).load(Ordering::SeqCst);
                let head = ring.head().load(Ordering::SeqCst);
                let result = if head != tail || ring.done().load(Ordering::SeqCst) >= ring.producers
                {
                    Ok(())
                } else {
                    wait(&ring.map, OFF_DATA_SEQ, seq, time)
                };
                waiting.fetch_sub(1, Ordering::SeqCst);
                self.presence.mark(&ring.map, State::Running);
                result?;
            }
        }
        let used = ring.used(self.cached_head, tail)?;
        let mut header = [0u8; RECORD_HEADER as usize];
        ring.read(tail, &mut header);
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if len > ring.max_record() || footprint(len) > used {
            return Err(RingError::BadLayout(format!(
                "the record at position {tail} claims {len} bytes, {used} are published"
            )));
        }
        Ok(Some((tail, len)))
    }

    fn consume(&mut self, tail: u64) {
        self.presence.tick(&self.ring.map);
        let ring = &self.ring;
        ring.tail().store(tail, Ordering::Release);
        fence(Ordering::SeqCst);
        if ring.map.u32_at(OFF_WRITERS_WAITING).load(Ordering::Relaxed) != 0 {
            ring.map.futex_wake(OFF_TAIL);
        }
    }
}

impl Drop for Producer {
    /// A writer that is gone is not worth spinning for.
    fn drop(&mut self) {
        self.presence.mark(&self.ring.map, State::Unknown);
    }
}

impl Drop for Consumer {
    /// A reader that is gone is not worth spinning for.
    fn drop(&mut self) {
        self.presence.mark(&self.ring.map, State::Unknown);
    }
}

/// The segment fd of a ring port: `fd=` when handed over, else `name=`.
/// `end` is the end the caller means to use: a port planned for the other
/// one is refused, so a program started in the wrong role fails at once.
fn open_port(port: &mut Port, end: End) -> Result<OwnedFd, RingError> {
    let port_name = port.name().to_owned();
    let bad = |why: String| RingError::Port {
        port: port_name.clone(),
        why,
    };
    let description = port.description();
    let Params::PosixShm { name, .. } = &description.params else {
        return Err(bad(format!(
            "kind `{}` is not {}",
            description.kind(),
            Kind::PosixShm
        )));
    };
    if description.end != end {
        return Err(bad(format!(
            "the port is planned as end={}, this side needs end={end}",
            description.end
        )));
    }
    if description.fd.is_some() {
        return port
            .take_fd()
            .ok_or_else(|| bad("its fd is not open (or was taken already)".into()));
    }
    let c_name = CString::new(name.as_str()).map_err(|_| bad("its name holds NUL".into()))?;
    shm_open(&c_name).map_err(sys("shm_open the ring"))
}

mod spin;
#[cfg(test)]
mod tests;
