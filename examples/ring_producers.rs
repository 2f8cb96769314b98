//! Several writer processes into one reader: the shared-memory ring against
//! an anonymous pipe, the same structure on both sides.
//!
//! `ring_producers ring WRITERS SIZE TOTAL` makes a POSIX shm ring formatted
//! for WRITERS producers, starts WRITERS copies of itself that each send
//! TOTAL / WRITERS bytes as SIZE-byte records (`ipc_run_child::ring`,
//! taking the writer lock per record as the layout requires), reads every
//! record in this process until the end of the stream, and checks the byte
//! count. `ring_producers pipe WRITERS SIZE TOTAL` does the same over one
//! pipe the writers share, with SIZE-byte `write`s. Timing is left to the
//! caller (`bench/ring/producers.sh` runs both side by side).

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};

use ipc_run_child::ring::{self, Consumer, Producer, Received};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

fn die(message: &str) -> ! {
    eprintln!("ring_producers: {message}");
    std::process::exit(1)
}

fn number(text: Option<&String>) -> usize {
    text.and_then(|t| t.parse().ok())
        .unwrap_or_else(|| die("usage: ring_producers ring|pipe WRITERS SIZE TOTAL"))
}

fn open_shm(name: &str, create: bool) -> OwnedFd {
    let flags = if create {
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL
    } else {
        OFlag::O_RDWR
    };
    nix::sys::mman::shm_open(name, flags, Mode::S_IRUSR | Mode::S_IWUSR)
        .unwrap_or_else(|e| die(&format!("shm_open {name}: {e}")))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("");
    match mode {
        // Children: one writer each.
        "ring-writer" => {
            let (count, size) = (number(args.get(2)), number(args.get(3)));
            let mut producer = Producer::from_fd(open_shm(&args[1], false))
                .unwrap_or_else(|e| die(&e.to_string()));
            let record = vec![7u8; size];
            for _ in 0..count {
                producer
                    .send(&record, None)
                    .unwrap_or_else(|e| die(&e.to_string()));
            }
            producer.close().unwrap_or_else(|e| die(&e.to_string()));
        }
        "pipe-writer" => {
            let (count, size) = (number(args.get(1)), number(args.get(2)));
            let record = vec![7u8; size];
            let mut out = std::io::stdout().lock();
            for _ in 0..count {
                out.write_all(&record)
                    .unwrap_or_else(|e| die(&e.to_string()));
            }
        }
        "ring" | "pipe" => {
            let writers = number(args.get(1));
            let size = number(args.get(2));
            let total = number(args.get(3));
            let count = total / writers / size;
            let expected = (count * size * writers) as u64;
            let me = std::env::current_exe().unwrap_or_else(|e| die(&e.to_string()));
            let got = if mode == "ring" {
                let name = format!("/ring-producers.{}", std::process::id());
                let fd = open_shm(&name, true);
                let segment = ring::HEADER_SIZE + (4 << 20);
                nix::unistd::ftruncate(&fd, segment as i64).unwrap_or_else(|e| die(&e.to_string()));
                ring::format(fd.as_fd(), segment, writers as u32)
                    .unwrap_or_else(|e| die(&e.to_string()));
                let mut consumer = Consumer::from_fd(fd).unwrap_or_else(|e| die(&e.to_string()));
                let children: Vec<_> = (0..writers)
                    .map(|_| {
                        Command::new(&me)
                            .args(["ring-writer", &name, &count.to_string(), &size.to_string()])
                            .spawn()
                            .unwrap_or_else(|e| die(&e.to_string()))
                    })
                    .collect();
                let mut buf = vec![0u8; size];
                let mut got = 0u64;
                loop {
                    match consumer.recv_into(&mut buf, None) {
                        Ok(Received::Record(n)) => got += n as u64,
                        Ok(Received::End) => break,
                        Err(e) => die(&e.to_string()),
                    }
                }
                let _ = nix::sys::mman::shm_unlink(name.as_str());
                for mut child in children {
                    let _ = child.wait();
                }
                got
            } else {
                let (read, write) =
                    nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap_or_else(|e| die(&e.to_string()));
                let children: Vec<_> = (0..writers)
                    .map(|_| {
                        let out = write.try_clone().unwrap_or_else(|e| die(&e.to_string()));
                        Command::new(&me)
                            .args(["pipe-writer", &count.to_string(), &size.to_string()])
                            .stdout(Stdio::from(out))
                            .spawn()
                            .unwrap_or_else(|e| die(&e.to_string()))
                    })
                    .collect();
                drop(write);
                let mut input = std::fs::File::from(read);
                let mut buf = vec![0u8; size.max(65536)];
                let mut got = 0u64;
                loop {
                    match input.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => got += n as u64,
                        Err(e) => die(&e.to_string()),
                    }
                }
                for mut child in children {
                    let _ = child.wait();
                }
                got
            };
            if got != expected {
                die(&format!("{mode}: read {got} bytes, expected {expected}"));
            }
        }
        _ => die("usage: ring_producers ring|pipe WRITERS SIZE TOTAL"),
    }
}
