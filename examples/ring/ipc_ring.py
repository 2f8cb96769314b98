#!/usr/bin/env python3
"""The shared-memory ring of ipc-run (layout version 1), standard library only.

The contract is docs/shm-ring.md; this module follows it step by step.

    from ipc_ring import Ring
    with Ring.from_env("OUT") as ring:      # IPC_PORT_OUT, set by ipc-run
        ring.send(b"hello")
        ring.close_producer()

    with Ring.from_env("IN") as ring:
        while (record := ring.recv()) is not None:   # None: end of stream
            ...

Timeouts are in seconds (None waits for ever, 0 only tries) and raise
TimeoutError; a record larger than the ring allows raises RecordTooLarge.

Python has no atomic operations, so the counters are read and written with
aligned 8-byte ctypes accesses: single instructions, ordered by the x86-64
memory model (total store order), which is why other architectures are
refused. The two places the protocol needs more than TSO gives:

- a full fence between a store and the next load (publish, then read the
  "waiting" flag): a locked instruction does it, and libc's
  pthread_spin_lock on a private lock is one;
- atomic adds to "producers done" and to the reader's wake sequence, which
  other producers (and ipc-run) may make at the same moment:
  FUTEX_WAKE_OP makes the kernel add atomically, and bumping the sequence
  wakes the reader in the same call.

As a command (same behaviour as ring_send.c / ring_recv.c):

    python3 ipc_ring.py send [-f] [-k] [-t MS] PORT    stdin -> ring
    python3 ipc_ring.py recv [-f] [-n COUNT] [-t MS] PORT   ring -> stdout
    python3 ipc_ring.py format NAME SIZE PRODUCERS     make a ring in /dev/shm

PORT is a port name (IPC_PORT_<PORT>), a shm name (/name) or a whole
IPC_PORT_* value. Records are lines (without the newline) or, with -f,
framed as a u32 little-endian length then the payload. Exit status: 0 done,
1 error, 2 usage, 3 timed out, 4 record too large.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import platform
import struct
import sys
import threading
import time

__all__ = ["Ring", "RecordTooLarge", "RingError", "format", "parse_port"]

if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
    raise ImportError(
        "ipc_ring.py needs Linux on x86-64: it relies on x86-64 ordering of plain "
        f"8-byte loads and stores (this is {sys.platform} on {platform.machine()}); "
        "use the C header ipc_ring.h elsewhere"
    )

# ---- the layout (docs/shm-ring.md, "Segment") ----

MAGIC = b"ipc-ring"
VERSION = 1
HEADER_SIZE = 4096
OFF_CAPACITY = 16
OFF_HEAD = 64
OFF_READERS_WAITING = 72
OFF_DATA_SEQ = 76
OFF_TAIL = 128
OFF_WRITERS_WAITING = 136
OFF_PRODUCERS_DONE = 192
_FIXED = struct.Struct("<8sIIQQII")  # magic .. flags, offsets 0 to 40
_RECORD = struct.Struct("<II")  # length, zero

# ---- system calls (x86-64 numbers) ----

_SYS_FUTEX = 202
_FUTEX_WAIT = 0
_FUTEX_WAKE = 1
_FUTEX_WAKE_OP = 5
_FUTEX_OP_ADD_1 = (1 << 28) | (0 << 24) | (1 << 12) | 0  # *uaddr2 += 1; the second wake has count 0
_INT_MAX = 0x7FFFFFFF

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_spin_lock = _libc.pthread_spin_lock
_spin_unlock = _libc.pthread_spin_unlock
_fence_word = ctypes.c_int(0)  # a pthread_spinlock_t no one else takes
_libc.pthread_spin_init(ctypes.byref(_fence_word), 0)
_fence_ref = ctypes.byref(_fence_word)


def _fence() -> None:
    """A full memory barrier: pthread_spin_lock is a locked instruction."""
    _spin_lock(_fence_ref)
    _spin_unlock(_fence_ref)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _timespec(seconds: float) -> _Timespec:
    seconds = max(seconds, 0.0)
    whole = int(seconds)
    return _Timespec(whole, int((seconds - whole) * 1e9))


def _futex(addr: int, op: int, val: int, timeout=None, addr2: int = 0, val3: int = 0) -> int:
    """futex(2); returns 0 or more, or -errno."""
    rc = _syscall(
        ctypes.c_long(_SYS_FUTEX),
        ctypes.c_void_p(addr),
        ctypes.c_long(op),
        ctypes.c_long(val),
        timeout,
        ctypes.c_void_p(addr2),
        ctypes.c_long(val3),
    )
    return rc if rc >= 0 else -ctypes.get_errno()


class RingError(OSError):
    """The segment is not a ring of layout version 1, or a record is corrupt."""


class RecordTooLarge(ValueError):
    """A record longer than the ring's largest (capacity - 8 bytes)."""


def parse_port(value: str) -> dict[str, str]:
    """The key=value pairs of an IPC_PORT_* value."""
    return dict(kv.split("=", 1) for kv in value.split() if "=" in kv)


def format(fd: int, size: int, producers: int) -> None:  # noqa: A001 - the spec's name
    """Make fd a fresh ring of `size` bytes for `producers` writers.

    Sizes the file, zeroes the header page and writes the fixed fields; for
    tests and programs that make their own segment (ipc-run formats its own).
    Nobody may use the segment while this runs.
    """
    if size < HEADER_SIZE + 64:
        raise ValueError(f"a ring needs at least {HEADER_SIZE + 64} bytes, not {size}")
    if not 1 <= producers <= 0xFFFFFFFF:
        raise ValueError(f"producers must be 1 or more, not {producers}")
    os.ftruncate(fd, size)
    capacity = (size - HEADER_SIZE) // 64 * 64
    page = bytearray(HEADER_SIZE)
    _FIXED.pack_into(page, 0, MAGIC, VERSION, HEADER_SIZE, capacity, capacity - 8, producers, 0)
    view = memoryview(page)
    while view:
        view = view[os.pwrite(fd, view, HEADER_SIZE - len(view)) :]


class Ring:
    """An open ring: a mapping of the whole segment and the fd behind it.

    send() may be called from several threads (a lock among them backs the
    record lock among producers, which belongs to the whole process);
    recv() from one thread at a time.
    """

    def __init__(self, fd: int, *, owns_fd: bool = False):
        size = os.fstat(fd).st_size
        if size < HEADER_SIZE + 64:
            raise RingError(errno.EINVAL, f"segment of {size} bytes is too small for a ring")
        self._mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        magic, version, data_off, capacity, max_record, producers, _flags = _FIXED.unpack_from(
            self._mm, 0
        )
        if magic != MAGIC or version != VERSION:
            self._mm.close()
            raise RingError(
                errno.EPROTO, f"not an ipc-run ring of layout version {VERSION} (magic {magic!r}, version {version})"
            )
        if (
            data_off != HEADER_SIZE
            or capacity < 64
            or capacity % 64
            or capacity > size - HEADER_SIZE
            or max_record != capacity - 8
        ):
            self._mm.close()
            raise RingError(errno.EPROTO, "inconsistent ring header")
        self.fd = fd
        self._owns_fd = owns_fd
        self.capacity = capacity
        self.max_record = max_record
        self.producers = producers
        self._closed_producer = False
        self._send_lock = threading.Lock()
        # ctypes views of the counters; kept alive as long as the mapping.
        self._head = ctypes.c_uint64.from_buffer(self._mm, OFF_HEAD)
        self._tail = ctypes.c_uint64.from_buffer(self._mm, OFF_TAIL)
        self._readers_waiting = ctypes.c_uint32.from_buffer(self._mm, OFF_READERS_WAITING)
        self._writers_waiting = ctypes.c_uint32.from_buffer(self._mm, OFF_WRITERS_WAITING)
        self._done = ctypes.c_uint32.from_buffer(self._mm, OFF_PRODUCERS_DONE)
        self._seq = ctypes.c_uint32.from_buffer(self._mm, OFF_DATA_SEQ)
        self._tail_addr = ctypes.addressof(self._tail)
        self._done_addr = ctypes.addressof(self._done)
        self._seq_addr = ctypes.addressof(self._seq)
        self._data = memoryview(self._mm)[HEADER_SIZE : HEADER_SIZE + capacity]

    # ---- opening ----

    @classmethod
    def from_fd(cls, fd: int) -> Ring:
        """Map the segment behind fd (which stays the caller's)."""
        return cls(fd)

    @classmethod
    def open(cls, shm_name: str) -> Ring:
        """Open a segment by its shm name, /ipc-run.<id>.<edge>."""
        if not shm_name.startswith("/") or "/" in shm_name[1:]:
            raise ValueError(f"a shm name is /name, not {shm_name!r}")
        fd = os.open("/dev/shm" + shm_name, os.O_RDWR | os.O_CLOEXEC)
        try:
            return cls(fd, owns_fd=True)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def from_port(cls, value: str) -> Ring:
        """Open the ring an IPC_PORT_* value describes: its fd=, else its name=."""
        port = parse_port(value)
        if port.get("layout", "ring") != "ring":
            raise RingError(errno.EPROTO, f"port has layout={port['layout']}, not ring")
        if "fd" in port:
            return cls.from_fd(int(port["fd"]))
        if "name" in port:
            return cls.open(port["name"])
        raise ValueError(f"port {value!r} has neither fd= nor name=")

    @classmethod
    def from_env(cls, port: str) -> Ring:
        """Open the port `port` from IPC_PORT_<PORT> (upper case, '-' as '_')."""
        var = "IPC_PORT_" + port.upper().replace("-", "_")
        try:
            value = os.environ[var]
        except KeyError:
            raise LookupError(f"{var} is not set: is {port!r} a port of this process?") from None
        return cls.from_port(value)

    def close(self) -> None:
        """Unmap; close the fd if open() opened it. Does not close the producer."""
        if self._mm is None:
            return
        self._data.release()
        del self._head, self._tail, self._readers_waiting, self._writers_waiting, self._done, self._seq
        self._mm.close()
        self._mm = None
        if self._owns_fd:
            os.close(self.fd)

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- waiting ----

    @staticmethod
    def _deadline(timeout):
        return None if timeout is None else time.monotonic() + timeout

    @staticmethod
    def _left(deadline):
        """Seconds to the deadline (None: no deadline); <= 0 when passed."""
        return None if deadline is None else deadline - time.monotonic()

    def _futex_wait(self, addr: int, expected: int, deadline) -> bool:
        """Sleep while the word holds `expected`; False when the deadline passed."""
        left = self._left(deadline)
        if left is not None and left <= 0:
            return False
        ts = None if left is None else ctypes.byref(_timespec(left))
        return _futex(addr, _FUTEX_WAIT, expected, ts) != -errno.ETIMEDOUT

    def _add(self, addr: int, wake: int = 0) -> None:
        """Add 1 to the u32 at addr atomically (FUTEX_WAKE_OP does it in the
        kernel), then wake up to `wake` waiters on that word."""
        rc = _futex(addr, _FUTEX_WAKE_OP, wake, ctypes.c_void_p(0), addr, _FUTEX_OP_ADD_1)
        if rc < 0:
            raise OSError(-rc, "futex(FUTEX_WAKE_OP): " + os.strerror(-rc))

    def _wake_reader(self) -> None:
        """Bump the reader's wake sequence and wake it, after a change it must see."""
        self._add(self._seq_addr, _INT_MAX)

    # ---- the writer lock ----

    def _lock(self, deadline) -> bool:
        """The record lock on byte 0; F_SETLKW cannot time out, so a bounded
        wait polls F_SETLK with a growing pause (20 us to 2 ms)."""
        if deadline is None:
            fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, 0, os.SEEK_SET)
            return True
        pause = 20e-6
        while True:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0, os.SEEK_SET)
                return True
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            left = self._left(deadline)
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, 2e-3)

    def _unlock(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, 0, os.SEEK_SET)

    # ---- writing ----

    def send(self, data, timeout: float | None = None) -> None:
        """Append one record (bytes-like). Raises RecordTooLarge, TimeoutError."""
        payload = memoryview(data).cast("B")
        length = len(payload)
        if length > self.max_record:
            raise RecordTooLarge(
                f"{length}-byte record: this ring takes at most {self.max_record} bytes"
            )
        size = 8 + ((length + 7) & ~7)
        deadline = self._deadline(timeout)
        left = self._left(deadline)
        if not self._send_lock.acquire(timeout=-1 if left is None else max(left, 0)):
            raise TimeoutError(f"no turn to write within {timeout} s")
        locked = False
        try:
            locked = self.producers > 1
            if locked and not self._lock(deadline):
                locked = False
                raise TimeoutError(f"no turn to write within {timeout} s")
            self._send_locked(payload, length, size, deadline, timeout)
        finally:
            if locked:
                self._unlock()
            self._send_lock.release()

    def _send_locked(self, payload, length, size, deadline, timeout) -> None:
        """Steps 2 to 4 of writing, with the locks held."""
        head = self._head.value
        while True:
            if self.capacity - (head - self._tail.value) >= size:
                break
            # Wait for space: raise the flag, fence, look again, sleep on tail.
            # Only a producer that holds the writer lock waits, so the
            # read-modify-write of the flag has no competitor.
            self._writers_waiting.value += 1
            try:
                _fence()
                tail = self._tail.value
                awake = True
                if self.capacity - (head - tail) < size:
                    awake = self._futex_wait(self._tail_addr, tail & 0xFFFFFFFF, deadline)
            finally:  # a signal's exception must not leave the flag raised
                self._writers_waiting.value -= 1
            if not awake and self.capacity - (head - self._tail.value) < size:
                raise TimeoutError(f"no space for a {length}-byte record within {timeout} s")
        data_area = self._data
        capacity = self.capacity
        at = head % capacity
        _RECORD.pack_into(data_area, at, length, 0)
        at = (at + 8) % capacity
        first = min(capacity - at, length)
        data_area[at : at + first] = payload[:first]
        data_area[: length - first] = payload[first:]
        # Publish, fence, and wake the reader if it sleeps.
        self._head.value = head + size
        _fence()
        if self._readers_waiting.value:
            self._wake_reader()

    def close_producer(self) -> None:
        """This producer writes nothing more: count it in "producers done" and
        wake the reader (once per Ring). Not for a producer exiting only to be
        restarted."""
        if self._closed_producer:
            return
        self._closed_producer = True
        self._add(self._done_addr)
        self._wake_reader()  # always: the reader may be asleep

    # ---- reading ----

    def recv(self, timeout: float | None = None) -> bytes | None:
        """The next record, or None at the end of the stream (every producer
        closed and the ring is empty). Raises TimeoutError."""
        deadline = self._deadline(timeout)
        tail = self._tail.value
        while True:
            head = self._head.value
            if head != tail:
                break
            done = self._done.value
            if done >= self.producers:
                head = self._head.value
                if head != tail:
                    break
                return None
            # Wait for data: raise the flag, fence, read the wake sequence,
            # look again, sleep on the sequence. A publish or a close after
            # the sequence was read bumps it, so FUTEX_WAIT returns at once;
            # one before shows in head or "producers done". One reader, so
            # the read-modify-write of the flag has no competitor.
            self._readers_waiting.value += 1
            try:
                _fence()
                seq = self._seq.value
                head = self._head.value
                done = self._done.value
                awake = True
                if head == tail and done < self.producers:
                    awake = self._futex_wait(self._seq_addr, seq, deadline)
            finally:  # a signal's exception must not leave the flag raised
                self._readers_waiting.value -= 1
            if not awake:
                head = self._head.value
                if head != tail:
                    break
                if self._done.value >= self.producers:
                    return None
                raise TimeoutError(f"no record within {timeout} s")
        capacity = self.capacity
        data_area = self._data
        at = tail % capacity
        length, zero = _RECORD.unpack_from(data_area, at)
        size = 8 + ((length + 7) & ~7)
        if length > self.max_record or zero != 0 or size > head - tail:
            raise RingError(errno.EBADMSG, f"corrupt record at position {tail}")
        at = (at + 8) % capacity
        first = min(capacity - at, length)
        record = bytes(data_area[at : at + first])
        if first < length:
            record += bytes(data_area[: length - first])
        # Release the space, fence, and wake a writer if one sleeps.
        self._tail.value = tail + size
        _fence()
        if self._writers_waiting.value:
            _futex(self._tail_addr, _FUTEX_WAKE, _INT_MAX)
        return record


# ---- the command ----


def _open_any(what: str) -> Ring:
    if "=" in what:
        return Ring.from_port(what)
    if what.startswith("/"):
        return Ring.open(what)
    return Ring.from_env(what)


def _cmd_send(args) -> int:
    ring = _open_any(args.port)
    stdin = sys.stdin.buffer
    status = 0
    try:
        while True:
            if args.framed:
                prefix = stdin.read(4)
                if not prefix:
                    break
                if len(prefix) < 4:
                    print("ipc_ring send: truncated length prefix on stdin", file=sys.stderr)
                    status = 1
                    break
                (length,) = struct.unpack("<I", prefix)
                record = stdin.read(length)
                if len(record) < length:
                    print("ipc_ring send: truncated record on stdin", file=sys.stderr)
                    status = 1
                    break
            else:
                record = stdin.readline()
                if not record:
                    break
                if record.endswith(b"\n"):
                    record = record[:-1]
            try:
                ring.send(record, timeout=args.timeout)
            except TimeoutError as e:
                print(f"ipc_ring send: {len(record)}-byte record: {e}", file=sys.stderr)
                status = 3
                break
            except RecordTooLarge as e:
                print(f"ipc_ring send: {e}", file=sys.stderr)
                status = 4
                break
    finally:
        if not args.keep_open:
            ring.close_producer()
        ring.close()
    return status


def _cmd_recv(args) -> int:
    ring = _open_any(args.port)
    out = sys.stdout.buffer
    status = 0
    got = 0
    try:
        while args.count is None or got < args.count:
            # Output is buffered; flush it before sleeping on an empty ring.
            try:
                record = ring.recv(timeout=0)
            except TimeoutError:
                out.flush()
                try:
                    record = ring.recv(timeout=args.timeout)
                except TimeoutError as e:
                    print(f"ipc_ring recv: {e}", file=sys.stderr)
                    status = 3
                    break
            if record is None:
                break
            if args.framed:
                out.write(struct.pack("<I", len(record)))
                out.write(record)
            else:
                out.write(record)
                out.write(b"\n")
            got += 1
        out.flush()
    finally:
        ring.close()
    return status


def _cmd_format(args) -> int:
    if not args.name.startswith("/") or "/" in args.name[1:]:
        print(f"ipc_ring format: a shm name is /name, not {args.name!r}", file=sys.stderr)
        return 2
    path = "/dev/shm" + args.name
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        format(fd, args.size, args.producers)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)
    return 0


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="ipc_ring.py", description="ipc-run ring: stdin -> ring, ring -> stdout")
    sub = parser.add_subparsers(dest="command", required=True)
    ms = lambda text: int(text) / 1000  # noqa: E731 - milliseconds on the command line

    p = sub.add_parser("send", help="stdin -> ring, then close this producer")
    p.add_argument("-f", dest="framed", action="store_true", help="framed input: u32 LE length, payload")
    p.add_argument("-k", dest="keep_open", action="store_true", help="do not close the producer at the end")
    p.add_argument("-t", dest="timeout", type=ms, default=None, metavar="MS", help="give up after MS ms without space")
    p.add_argument("port")
    p.set_defaults(run=_cmd_send)

    p = sub.add_parser("recv", help="ring -> stdout until the end of the stream")
    p.add_argument("-f", dest="framed", action="store_true", help="framed output: u32 LE length, payload")
    p.add_argument("-n", dest="count", type=int, default=None, metavar="COUNT", help="stop after COUNT records")
    p.add_argument("-t", dest="timeout", type=ms, default=None, metavar="MS", help="give up after MS ms without a record")
    p.add_argument("port")
    p.set_defaults(run=_cmd_recv)

    p = sub.add_parser("format", help="make a ring in /dev/shm")
    p.add_argument("name", help="shm name, /name")
    p.add_argument("size", type=int, help="segment size in bytes (4096 header + data)")
    p.add_argument("producers", type=int, help="writer processes")
    p.set_defaults(run=_cmd_format)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (OSError, ValueError, LookupError) as e:
        print(f"ipc_ring {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
