#!/usr/bin/env python3
"""Unit tests of ipc_ring.py, in one process (tests/ring_languages.rs runs
them, and drives the C and Python programs against each other).

    python3 examples/ring/test_ipc_ring.py
"""

import os
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ipc_ring  # noqa: E402
from ipc_ring import RecordTooLarge, Ring, RingError  # noqa: E402


class Segment:
    """A file in /dev/shm with a unique name, formatted as a ring."""

    count = 0

    def __init__(self, size, producers=1):
        Segment.count += 1
        self.name = f"/ipc-ring-pytest.{os.getpid()}.{Segment.count}"
        self.path = "/dev/shm" + self.name
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            ipc_ring.format(fd, size, producers)
        finally:
            os.close(fd)

    def remove(self):
        os.unlink(self.path)


def payload(n, seed):
    """n bytes that differ from record to record."""
    return bytes((seed * 31 + i * 7) & 0xFF for i in range(n))


class RingTest(unittest.TestCase):
    def segment(self, size, producers=1):
        seg = Segment(size, producers)
        self.addCleanup(seg.remove)
        return seg

    def ring(self, size, producers=1):
        ring = Ring.open(self.segment(size, producers).name)
        self.addCleanup(ring.close)
        return ring

    def test_format_writes_the_header_of_layout_version_1(self):
        seg = self.segment(4096 + 1000, producers=3)
        with open(seg.path, "rb") as f:
            header = f.read(4096)
        self.assertEqual(os.path.getsize(seg.path), 4096 + 1000)
        magic, version, data, capacity, largest, producers, flags = struct.unpack_from("<8sIIQQII", header)
        self.assertEqual(
            (magic, version, data, capacity, largest, producers, flags),
            (b"ipc-ring", 1, 4096, 960, 952, 3, 0),
        )
        self.assertEqual(header[40:], bytes(4096 - 40))

    def test_format_refuses_a_segment_without_room(self):
        fd = os.open("/dev/null", os.O_RDONLY)
        self.addCleanup(os.close, fd)
        with self.assertRaises(ValueError):
            ipc_ring.format(fd, 4096 + 63, 1)

    def test_open_refuses_another_magic_or_version(self):
        for offset, value in ((0, b"ipc-rinG"), (8, struct.pack("<I", 2))):
            seg = self.segment(8192)
            with open(seg.path, "r+b") as f:
                f.seek(offset)
                f.write(value)
            with self.assertRaises(RingError):
                Ring.open(seg.name)

    def test_records_of_every_edge_size_come_back_byte_exact(self):
        ring = self.ring(4096 + 8192)
        sizes = [0, 1, 7, 8, 9, 63, 64, 65, 4095, ring.capacity - 8]
        for i, n in enumerate(sizes):
            ring.send(payload(n, i))
            self.assertEqual(ring.recv(timeout=0), payload(n, i))

    def test_wrap_around_many_times(self):
        ring = self.ring(4096 + 256)
        sent = received = 0
        queue = []
        for i in range(3000):
            n = (i * 37) % 120
            while True:
                try:
                    ring.send(payload(n, i), timeout=0)
                    break
                except TimeoutError:
                    self.assertEqual(ring.recv(timeout=0), queue.pop(0))
                    received += 1
            queue.append(payload(n, i))
            sent += n
        while queue:
            self.assertEqual(ring.recv(timeout=0), queue.pop(0))
        self.assertGreater(sent, 100 * ring.capacity)

    def test_too_large_record_is_refused_and_changes_nothing(self):
        ring = self.ring(4096 + 128)
        with self.assertRaises(RecordTooLarge):
            ring.send(bytes(ring.capacity - 7))
        ring.send(bytes(ring.capacity - 8))
        self.assertEqual(len(ring.recv(timeout=0)), ring.capacity - 8)

    def test_recv_on_an_empty_ring_times_out(self):
        ring = self.ring(8192)
        start = time.monotonic()
        with self.assertRaises(TimeoutError):
            ring.recv(timeout=0.15)
        self.assertGreaterEqual(time.monotonic() - start, 0.15)
        self.assertLess(time.monotonic() - start, 2)

    def test_send_on_a_full_ring_times_out(self):
        ring = self.ring(4096 + 64)
        ring.send(bytes(56))
        start = time.monotonic()
        with self.assertRaises(TimeoutError):
            ring.send(b"", timeout=0.1)
        self.assertGreaterEqual(time.monotonic() - start, 0.1)

    def test_end_of_stream_once_every_producer_closed(self):
        seg = self.segment(8192, producers=2)
        reader, one, two = (Ring.open(seg.name) for _ in range(3))
        for r in (reader, one, two):
            self.addCleanup(r.close)
        one.send(b"a")
        one.close_producer()
        one.close_producer()  # counts once
        self.assertEqual(reader.recv(timeout=0), b"a")
        with self.assertRaises(TimeoutError):
            reader.recv(timeout=0)  # one producer is still open
        two.send(b"b")
        two.close_producer()
        self.assertEqual(reader.recv(timeout=0), b"b")
        self.assertIsNone(reader.recv(timeout=0))
        self.assertIsNone(reader.recv())

    def test_a_sleeping_reader_wakes_for_data_and_for_the_end(self):
        seg = self.segment(8192)
        reader, writer = Ring.open(seg.name), Ring.open(seg.name)
        self.addCleanup(reader.close)
        self.addCleanup(writer.close)
        got = []
        thread = threading.Thread(target=lambda: got.extend([reader.recv(timeout=5), reader.recv(timeout=5)]))
        thread.start()
        time.sleep(0.1)
        writer.send(b"wake")
        time.sleep(0.1)
        start = time.monotonic()
        writer.close_producer()
        thread.join()
        self.assertEqual(got, [b"wake", None])
        self.assertLess(time.monotonic() - start, 1)

    def test_a_sleeping_writer_wakes_when_the_reader_takes(self):
        seg = self.segment(4096 + 64)
        reader, writer = Ring.open(seg.name), Ring.open(seg.name)
        self.addCleanup(reader.close)
        self.addCleanup(writer.close)
        writer.send(bytes(56))
        thread = threading.Thread(target=lambda: writer.send(b"next", timeout=5))
        thread.start()
        time.sleep(0.1)
        self.assertEqual(reader.recv(timeout=0), bytes(56))
        thread.join()
        self.assertEqual(reader.recv(timeout=1), b"next")

    def test_ports_open_through_fd_or_name(self):
        seg = self.segment(8192)
        fd = os.open(seg.path, os.O_RDWR)
        self.addCleanup(os.close, fd)
        value = f"kind=posix-shm channel=c end=read name={seg.name} size=8192 layout=ring capacity=4096 producers=1"
        os.environ["IPC_PORT_MY_IN"] = value + f" fd={fd}"
        with Ring.from_env("my-in") as by_fd, Ring.from_port(value) as by_name:
            self.assertEqual(by_fd.fd, fd)
            by_name.send(b"x")
            self.assertEqual(by_fd.recv(timeout=0), b"x")
        with self.assertRaises(RingError):
            Ring.from_port(value.replace("layout=ring", "layout=bare"))
        with self.assertRaises(LookupError):
            Ring.from_env("no-such-port")


if __name__ == "__main__":
    unittest.main()
