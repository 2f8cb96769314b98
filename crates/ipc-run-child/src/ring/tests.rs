//! Unit and property tests of the ring on memfd segments.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::thread;
use std::time::Duration;

use super::*;
use crate::sys::memfd;

const LONG: Option<Duration> = Some(Duration::from_secs(30));
const NOW: Option<Duration> = Some(Duration::ZERO);

/// A formatted segment with `capacity` data bytes (plus `extra` unused).
fn segment(capacity: u64, producers: u32) -> OwnedFd {
    let size = HEADER_SIZE + capacity;
    let fd = memfd(size).expect("memfd");
    assert_eq!(
        format(fd.as_fd(), size, producers).expect("format"),
        capacity
    );
    fd
}

fn dup(fd: &OwnedFd) -> OwnedFd {
    fd.try_clone().expect("dup")
}

fn pair(capacity: u64) -> (Producer, Consumer) {
    let fd = segment(capacity, 1);
    (
        Producer::from_fd(dup(&fd)).unwrap(),
        Consumer::from_fd(fd).unwrap(),
    )
}

fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seed * 31 + i * 7) as u8).collect()
}

#[test]
fn format_rounds_capacity_and_refuses_small_segments() {
    assert_eq!(capacity_for(4096 + 64), Some(64));
    assert_eq!(capacity_for(4096 + 127), Some(64));
    assert_eq!(capacity_for(4096 + 63), None);
    assert_eq!(capacity_for(100), None);
    let fd = segment(128, 2);
    let map = Mapping::new(fd.as_fd(), DATA).unwrap();
    let mut page = [0u8; 40];
    map.read(0, &mut page);
    assert_eq!(&page[..8], b"ipc-ring");
    assert_eq!(page[8..12], 1u32.to_le_bytes());
    assert_eq!(page[12..16], 4096u32.to_le_bytes());
    assert_eq!(page[16..24], 128u64.to_le_bytes());
    assert_eq!(page[24..32], 120u64.to_le_bytes());
    assert_eq!(page[32..36], 2u32.to_le_bytes());
    assert!(matches!(
        format(fd.as_fd(), 4096 + 63, 1),
        Err(RingError::BadLayout(_))
    ));
    assert!(matches!(
        format(fd.as_fd(), 8192, 0),
        Err(RingError::BadLayout(_))
    ));
}

#[test]
fn refuses_foreign_segments() {
    let fd = segment(64, 1);
    pwrite_all(fd.as_fd(), &2u32.to_le_bytes(), 8).unwrap();
    let err = Consumer::from_fd(dup(&fd)).unwrap_err();
    assert!(err.to_string().contains("version 2"), "{err}");
    pwrite_all(fd.as_fd(), b"not-ring", 0).unwrap();
    assert!(matches!(
        Producer::from_fd(dup(&fd)),
        Err(RingError::BadLayout(_))
    ));
    // A capacity beyond the segment.
    let fd = segment(64, 1);
    pwrite_all(fd.as_fd(), &128u64.to_le_bytes(), 16).unwrap();
    assert!(matches!(
        Consumer::from_fd(fd),
        Err(RingError::BadLayout(_))
    ));
}

#[test]
fn ports_that_are_not_this_side_of_a_ring_are_refused() {
    let parse = |value: &str| crate::Port::parse("r", "IPC_PORT_R", value).unwrap();
    let refused = |result: Result<(), RingError>, what: &str| {
        let err = result.unwrap_err();
        assert!(
            matches!(&err, RingError::Port { port, why } if port == "r" && why.contains(what)),
            "{err}"
        );
    };
    let reader_port = "kind=posix-shm channel=r end=read name=/nowhere size=8192 layout=ring capacity=4096 producers=1";
    refused(
        Producer::from_port(&mut parse(reader_port)).map(drop),
        "end=read",
    );
    let writer_port = "kind=posix-shm channel=r end=write name=/nowhere size=8192 layout=ring capacity=4096 producers=1";
    refused(
        Consumer::from_port(&mut parse(writer_port)).map(drop),
        "end=write",
    );
    refused(
        Consumer::from_port(&mut parse("kind=pipe channel=r end=read fd=0")).map(drop),
        "pipe",
    );
    let plain = "kind=posix-shm channel=r end=both name=/nowhere size=8192 layout=plain";
    let err = crate::Port::parse("r", "IPC_PORT_R", plain).unwrap_err();
    assert!(err.to_string().contains("layout `plain`"), "{err}");
}

#[test]
fn every_size_up_to_the_largest_record() {
    let (mut producer, mut consumer) = pair(256);
    assert_eq!(producer.max_record(), 248);
    let mut buf = Vec::new();
    for len in 0..=248 {
        let record = pattern(len, len);
        producer.send(&record, NOW).unwrap();
        assert_eq!(consumer.recv(&mut buf, NOW).unwrap(), Received::Record(len));
        assert_eq!(buf, record, "length {len}");
    }
    assert!(matches!(
        producer.send(&[0; 249], NOW),
        Err(RingError::TooLarge { len: 249, max: 248 })
    ));
}

#[test]
fn wraps_around_the_end_of_the_data_area() {
    // Odd sizes against a 64-byte ring: headers land everywhere, payloads
    // straddle the end.
    let (mut producer, mut consumer) = pair(64);
    let mut buf = Vec::new();
    for i in 0..1000 {
        let len = if i % 3 == 0 {
            (i * 13) % 49
        } else {
            (i * 13) % 57
        };
        let record = pattern(i, len);
        producer.send(&record, NOW).unwrap();
        if i % 3 == 0 {
            let second = pattern(i + 1, 0);
            producer.send(&second, NOW).unwrap();
            consumer.recv(&mut buf, NOW).unwrap();
            assert_eq!(buf, record);
            consumer.recv(&mut buf, NOW).unwrap();
            assert!(buf.is_empty());
        } else {
            consumer.recv(&mut buf, NOW).unwrap();
            assert_eq!(buf, record);
        }
    }
}

#[test]
fn full_and_empty_time_out() {
    let (mut producer, mut consumer) = pair(64);
    let mut buf = Vec::new();
    assert!(matches!(
        consumer.recv(&mut buf, NOW),
        Err(RingError::TimedOut)
    ));
    assert!(matches!(
        consumer.recv(&mut buf, Some(Duration::from_millis(20))),
        Err(RingError::TimedOut)
    ));
    // 4 records of 16 bytes fill 64 bytes exactly.
    for i in 0..4 {
        producer.send(&pattern(i, 8), NOW).unwrap();
    }
    assert!(matches!(producer.send(b"", NOW), Err(RingError::TimedOut)));
    assert!(matches!(
        producer.send(b"", Some(Duration::from_millis(20))),
        Err(RingError::TimedOut)
    ));
    // A timeout beyond what an Instant holds waits; here there is data.
    assert_eq!(
        consumer.recv(&mut buf, Some(Duration::MAX)).unwrap(),
        Received::Record(8)
    );
    producer.send(&pattern(0, 8), NOW).unwrap();
    assert_eq!(consumer.recv(&mut buf, NOW).unwrap(), Received::Record(8));
    producer.send(b"", NOW).unwrap();
    // The largest record needs the whole ring.
    for _ in 0..4 {
        consumer.recv(&mut buf, NOW).unwrap();
    }
    producer.send(&[7; 56], NOW).unwrap();
    assert!(matches!(producer.send(b"", NOW), Err(RingError::TimedOut)));
    assert_eq!(consumer.recv(&mut buf, NOW).unwrap(), Received::Record(56));
    assert!(matches!(
        consumer.recv(&mut buf, NOW),
        Err(RingError::TimedOut)
    ));
}

#[test]
fn zero_length_records_are_records() {
    let (mut producer, mut consumer) = pair(64);
    for _ in 0..8 {
        producer.send(b"", NOW).unwrap();
    }
    let mut buf = vec![1, 2, 3];
    for _ in 0..8 {
        assert_eq!(consumer.recv(&mut buf, NOW).unwrap(), Received::Record(0));
        assert!(buf.is_empty());
    }
    producer.close().unwrap();
    assert_eq!(consumer.recv(&mut buf, NOW).unwrap(), Received::End);
}

#[test]
fn recv_into_a_short_buffer_keeps_the_record() {
    let (mut producer, mut consumer) = pair(128);
    producer.send(b"0123456789", NOW).unwrap();
    let mut small = [0u8; 4];
    assert!(matches!(
        consumer.recv_into(&mut small, NOW),
        Err(RingError::TooLarge { len: 10, max: 4 })
    ));
    let mut big = [0u8; 16];
    assert_eq!(
        consumer.recv_into(&mut big, NOW).unwrap(),
        Received::Record(10)
    );
    assert_eq!(&big[..10], b"0123456789");
}

#[test]
fn blocked_sides_are_woken() {
    let (mut producer, mut consumer) = pair(64);
    let reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            match consumer.recv(&mut buf, LONG).unwrap() {
                Received::Record(_) => got.push(buf.clone()),
                Received::End => return got,
            }
        }
    });
    // 200 records through a ring that holds 3: the writer waits for space
    // and the reader for data, over and over.
    for i in 0..200 {
        producer.send(&pattern(i, 20), LONG).unwrap();
    }
    producer.close().unwrap();
    let got = reader.join().unwrap();
    assert_eq!(got.len(), 200);
    for (i, record) in got.iter().enumerate() {
        assert_eq!(*record, pattern(i, 20));
    }
}

#[test]
fn end_marked_by_ipc_run_wakes_a_waiting_reader() {
    let fd = segment(64, 2);
    let mut consumer = Consumer::from_fd(dup(&fd)).unwrap();
    let mut producer = Producer::from_fd(dup(&fd)).unwrap();
    producer.send(b"last", NOW).unwrap();
    let reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let first = consumer.recv(&mut buf, LONG).unwrap();
        (first, consumer.recv(&mut buf, LONG).unwrap())
    });
    // Wait until the reader sleeps on the empty ring (its flag is up).
    let header = Header::map(fd.as_fd()).unwrap();
    while header
        .map
        .u32_at(OFF_READERS_WAITING)
        .load(Ordering::SeqCst)
        == 0
    {
        thread::yield_now();
    }
    // One producer closed, the other exits without closing: ipc-run marks.
    producer.close().unwrap();
    mark_end(&header, 2);
    let (first, second) = reader.join().unwrap();
    assert_eq!(first, Received::Record(4));
    assert_eq!(second, Received::End);
}

/// The end of the stream races the reader going to sleep: closes land
/// before, during and after its look at "producers done". A lost wake-up
/// would leave the reader asleep until its timeout; the wake sequence
/// makes every one of these rounds end at once.
#[test]
fn an_end_racing_the_reader_to_sleep_is_never_lost() {
    for round in 0..300u64 {
        let (producer, mut consumer) = pair(64);
        // A lost wake-up would end in a timeout, not the end.
        let reader = thread::spawn(move || {
            consumer
                .recv(&mut Vec::new(), LONG)
                .map_err(|e| e.to_string())
        });
        // Vary the moment of the close over the reader's spin and sleep.
        for _ in 0..(round % 16) * 64 {
            std::hint::spin_loop();
        }
        producer.close().unwrap();
        let got = reader.join().unwrap();
        assert_eq!(got, Ok(Received::End), "round {round}");
    }
}

#[test]
fn producers_keep_their_own_order() {
    const PER: usize = 3000;
    let fd = segment(1024, 3);
    let mut consumer = Consumer::from_fd(dup(&fd)).unwrap();
    let writers: Vec<_> = (0..3u8)
        .map(|id| {
            let mut producer = Producer::from_fd(dup(&fd)).unwrap();
            thread::spawn(move || {
                for i in 0..PER {
                    let len = 8 + (i * 7 + usize::from(id)) % 100;
                    let mut record = pattern(i, len);
                    record[0] = id;
                    record[4..8].copy_from_slice(&(i as u32).to_le_bytes());
                    producer.send(&record, LONG).unwrap();
                }
                producer.close().unwrap();
            })
        })
        .collect();
    let mut next = [0usize; 3];
    let mut buf = Vec::new();
    while let Received::Record(len) = consumer.recv(&mut buf, LONG).unwrap() {
        let id = usize::from(buf[0]);
        let i = u32::from_le_bytes(buf[4..8].try_into().unwrap()) as usize;
        assert_eq!(i, next[id], "producer {id} out of order");
        let mut expect = pattern(i, len);
        expect[0] = buf[0];
        expect[4..8].copy_from_slice(&buf[4..8]);
        assert_eq!(buf, expect, "torn record from producer {id}");
        next[id] += 1;
    }
    assert_eq!(next, [PER; 3]);
    for writer in writers {
        writer.join().unwrap();
    }
}

#[test]
fn an_unpublished_record_is_never_seen() {
    let fd = segment(256, 2);
    let mut consumer = Consumer::from_fd(dup(&fd)).unwrap();
    let mut dying = Producer::from_fd(dup(&fd)).unwrap();
    dying.write_unpublished(&pattern(1, 100), 37).unwrap();
    let mut buf = Vec::new();
    assert!(matches!(
        consumer.recv(&mut buf, NOW),
        Err(RingError::TimedOut)
    ));
    // The "dead" writer's lock goes with its fd (here: its last producer).
    drop(dying);
    let mut other = Producer::from_fd(dup(&fd)).unwrap();
    other.send(&pattern(2, 50), LONG).unwrap();
    assert_eq!(consumer.recv(&mut buf, NOW).unwrap(), Received::Record(50));
    assert_eq!(buf, pattern(2, 50));
}

/// Random sequences of sends and receives (a deterministic xorshift, the
/// same cases every run) against a model queue with the ring's footprint.
#[test]
fn behaves_like_a_bounded_queue() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for case in 0..256 {
        let capacity = [64u64, 128, 192, 512][case % 4];
        let (mut producer, mut consumer) = pair(capacity);
        let mut model: VecDeque<Vec<u8>> = VecDeque::new();
        let mut used = 0u64;
        let mut buf = Vec::new();
        let ops = 1 + next() % 200;
        for n in 0..ops as usize {
            if next() % 2 == 0 {
                let len = (next() % 300) as usize;
                let record = pattern(n, len);
                let result = producer.send(&record, NOW);
                if len > producer.max_record() {
                    assert!(
                        matches!(result, Err(RingError::TooLarge { .. })),
                        "case {case}"
                    );
                } else if used + footprint(len) > capacity {
                    assert!(matches!(result, Err(RingError::TimedOut)), "case {case}");
                } else {
                    assert!(result.is_ok(), "case {case}");
                    used += footprint(len);
                    model.push_back(record);
                }
            } else {
                match model.pop_front() {
                    None => assert!(
                        matches!(consumer.recv(&mut buf, NOW), Err(RingError::TimedOut)),
                        "case {case}"
                    ),
                    Some(record) => {
                        assert_eq!(
                            consumer.recv(&mut buf, NOW).unwrap(),
                            Received::Record(record.len())
                        );
                        assert_eq!(buf, record, "case {case}");
                        used -= footprint(record.len());
                    }
                }
            }
        }
    }
}

#[test]
fn the_largest_record_fits_the_u32_length_of_its_header() {
    // Fails before: a ring of more than 4 GiB offered records of up to
    // `capacity - 8` bytes, whose length the u32 header truncated.
    let capacity = 5u64 << 30;
    let (producer, consumer) = pair(capacity);
    assert_eq!(producer.capacity(), capacity);
    assert_eq!(producer.max_record(), u32::MAX as usize);
    assert_eq!(consumer.max_record(), u32::MAX as usize);
}

/// Both ends of a ping-pong on one CPU: every wait sleeps on the futex at
/// once (the peer cannot run while we spin), and the run completes. Each
/// end opens its rings after pinning, so every presence word names that CPU.
#[test]
fn a_round_trip_on_one_cpu_never_spins() {
    const TRIPS: usize = 2000;
    let cpu = crate::sys::current_cpu().unwrap_or(0);
    let (to, back) = (segment(4096, 1), segment(4096, 1));
    let (to_peer, back_peer) = (dup(&to), dup(&back));
    let echo = thread::spawn(move || {
        crate::sys::pin_thread(cpu).expect("pin the echo thread");
        let mut rx = Consumer::from_fd(to_peer).unwrap();
        let mut tx = Producer::from_fd(back_peer).unwrap();
        let mut buf = [0u8; 64];
        while let Received::Record(n) = rx.recv_into(&mut buf, LONG).unwrap() {
            tx.send(&buf[..n], LONG).unwrap();
        }
        (rx.presence.spun, tx.presence.spun)
    });
    crate::sys::pin_thread(cpu).expect("pin the test thread");
    let mut tx = Producer::from_fd(to).unwrap();
    let mut rx = Consumer::from_fd(back).unwrap();
    let mut buf = Vec::new();
    for trip in 0..TRIPS {
        let sent = pattern(trip, 64);
        tx.send(&sent, LONG).unwrap();
        assert_eq!(rx.recv(&mut buf, LONG).unwrap(), Received::Record(64));
        assert_eq!(buf, sent, "trip {trip}");
    }
    let spun_here = (rx.presence.spun, tx.presence.spun);
    tx.close().unwrap();
    let spun_there = echo.join().expect("echo thread");
    assert_eq!((spun_here, spun_there), ((0, 0), (0, 0)));
}

/// A side waiting in the futex says so in its presence word, with its CPU,
/// and says it runs again once woken.
#[test]
fn a_waiting_reader_is_marked_asleep_then_running() {
    let fd = segment(4096, 1);
    let fd_map = Mapping::new(fd.as_fd(), DATA).unwrap();
    let mut producer = Producer::from_fd(dup(&fd)).unwrap();
    let mut consumer = Consumer::from_fd(fd).unwrap();
    let reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let got = consumer.recv(&mut buf, LONG).unwrap();
        (
            got,
            spin::decode(consumer.presence.own_word(&consumer.ring.map)).0,
        )
    });
    let word = || fd_map.u32_at(spin::OFF_READER_STATE).load(Ordering::SeqCst);
    while spin::decode(word()).0 != spin::State::Sleeping {
        thread::yield_now();
    }
    assert!(
        spin::decode(word()).1.is_some(),
        "the sleeping reader names its CPU"
    );
    producer.send(b"wake", LONG).unwrap();
    let (got, state) = reader.join().unwrap();
    assert_eq!(got, Received::Record(4));
    assert_eq!(state, spin::State::Running);
}
