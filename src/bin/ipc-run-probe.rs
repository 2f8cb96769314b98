//! A small program for launcher and supervisor tests: it reports what a
//! child of ipc-run sees and moves data over every kind of channel.
//!
//! Usage: `ipc-run-probe CMD ARGS... [-- CMD ARGS...]...`, commands run in
//! order. An argument `@PORT.KEY` is replaced by KEY of the port's variable
//! (`IPC_PORT_PORT="kind=… fd=3 …"`), e.g. `@out.fd`, `@q.name`; `$NAME`
//! by the value of an environment variable.
//!
//! | command | effect |
//! |---|---|
//! | `report` | one JSON line: fds, SigBlk, SigIgn, pid, pgid, ppid, env |
//! | `write FD TEXT` / `read FD` | write TEXT / read to EOF and print `read: TEXT` |
//! | `readline FD` | read one line, print `line: TEXT` |
//! | `echo FD` | copy FD to stdout until EOF |
//! | `accept FD` | accept one connection on a listener, print what it sends |
//! | `recv FD` | receive one datagram or message, print `recv: TEXT` |
//! | `send FD TEXT` | send TEXT on a connected socket |
//! | `connect PATH TEXT` | connect to a Unix stream socket, send TEXT |
//! | `dgram PATH TEXT` | send one datagram to a Unix dgram socket |
//! | `tcp HOST:PORT TEXT` | connect over TCP, send TEXT |
//! | `udp HOST:PORT TEXT` | send one UDP datagram |
//! | `shm-write NAME TEXT` / `shm-read NAME` | POSIX shared memory |
//! | `sysv-shm-write ID TEXT` / `sysv-shm-read ID` | System V shared memory |
//! | `ring-send PORT TAG COUNT SIZE close\|exit` | COUNT records of SIZE bytes (`TAG:i:` then filler) into a ring port, then close the producer or just exit |
//! | `ring-recv PORT` | read a ring port to its end, check every record, print `ring: TAG=N ...` |
//! | `ring-torn PORT SIZE BYTES` | write BYTES of a SIZE-byte record without publishing it, print `torn`, sleep (to be killed) |
//! | `mq-send NAME TEXT` / `mq-recv NAME` | POSIX message queue by name |
//! | `mq-send-fd FD TEXT` / `mq-recv-fd FD` | POSIX message queue by fd |
//! | `msg-send ID TEXT` / `msg-recv ID` | System V message queue |
//! | `sem-post NAME` / `sem-wait NAME` | POSIX named semaphore |
//! | `semop ID NUM DELTA` | System V semaphore operation |
//! | `block SIGNO` / `wait-signal SIGNO` | block a signal / wait for it, print `signal: N` |
//! | `kill PIDS SIGNO` | send a signal to each comma-separated pid |
//! | `write-path PATH TEXT` / `read-path PATH` | open a FIFO or file by path |
//! | `println TEXT` | print TEXT |
//! | `sleep MS` / `exit CODE` | |
//!
//! It is a test helper, not installed (`required-features = ["test-probe"]`).
//! It works on the raw fd numbers, ids and names its test passes it, as a
//! C child would: the unsafe blocks below are thin libc calls, each with
//! what makes it sound.
#![expect(unsafe_code, reason = "test helper calling libc directly")]

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;

/// A ring record: `TAG:i:` then a filler that depends on `i`, `size` bytes
/// in all (or just the prefix when that is longer).
fn ring_record(tag: &str, i: u64, size: usize) -> Vec<u8> {
    let mut record = format!("{tag}:{i}:").into_bytes();
    let fill = b'a' + (i % 26) as u8;
    while record.len() < size {
        record.push(fill);
    }
    record
}

fn die(msg: &str) -> ! {
    eprintln!("ipc-run-probe: {msg}");
    std::process::exit(2)
}

fn port_value(spec: &str) -> String {
    let (port, key) = spec.split_once('.').unwrap_or_else(|| die("bad @PORT.KEY"));
    let var = format!("IPC_PORT_{}", port.to_ascii_uppercase().replace('-', "_"));
    let value = std::env::var(&var).unwrap_or_else(|_| die(&format!("{var} not set")));
    value
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_owned())
        .unwrap_or_else(|| die(&format!("{var} has no {key}")))
}

fn arg(args: &[String], i: usize) -> String {
    let a = args.get(i).unwrap_or_else(|| die("missing argument"));
    if let Some(spec) = a.strip_prefix('@') {
        return port_value(spec);
    }
    match a.strip_prefix('$') {
        Some(var) => std::env::var(var).unwrap_or_else(|_| die(&format!("{var} not set"))),
        None => a.clone(),
    }
}

fn num(s: &str) -> i32 {
    s.parse()
        .unwrap_or_else(|_| die(&format!("not a number: {s}")))
}

fn check(rc: isize, what: &str) -> isize {
    if rc < 0 {
        die(&format!("{what}: {}", std::io::Error::last_os_error()));
    }
    rc
}

fn json(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn report() {
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    fds.sort_unstable();
    // read_dir's own fd shows up while listing: drop fds that are now closed.
    // SAFETY: F_GETFD only reads a descriptor's flags; EBADF if closed.
    fds.retain(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } >= 0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let cloexec: Vec<i32> = fds
        .iter()
        .copied()
        // SAFETY: as above, F_GETFD only reads flags.
        .filter(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } & libc::FD_CLOEXEC != 0)
        .collect();
    let env: Vec<String> = std::env::vars_os()
        .map(|(k, v)| {
            format!(
                "{}:{}",
                json(&k.to_string_lossy()),
                json(&v.to_string_lossy())
            )
        })
        .collect();
    // SAFETY: these calls take no pointers and only read process ids.
    let (pid, pgid, ppid) = unsafe { (libc::getpid(), libc::getpgid(0), libc::getppid()) };
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    println!(
        "{{\"fds\":{fds:?},\"cloexec\":{cloexec:?},\"sigblk\":{},\"sigign\":{},\"pid\":{pid},\"pgid\":{pgid},\"ppid\":{ppid},\"cwd\":{},\"env\":{{{}}}}}",
        json(&field("SigBlk:")),
        json(&field("SigIgn:")),
        json(&cwd),
        env.join(",")
    );
}

/// The fd number a test names, as a File that never closes it.
fn file(fd: i32) -> std::mem::ManuallyDrop<std::fs::File> {
    // SAFETY: the File is never dropped (ManuallyDrop), so it never closes
    // the fd and takes no ownership from whoever holds it; read and write
    // on a number that is not open fail with EBADF, touching no memory.
    std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) })
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| die("NUL in argument"))
}

fn shm_map(fd: i32, len: usize) -> *mut u8 {
    // SAFETY: a fresh shared mapping at a kernel-chosen address overlaps no
    // Rust object; a bad fd makes mmap fail, which is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        die("mmap failed");
    }
    p.cast()
}

/// Writes `text` and a NUL at `p`: the start of a mapping of at least 4096
/// bytes (the segments the tests make), longer than any test text.
fn write_cstr(p: *mut u8, text: &str) {
    if text.len() >= 4096 {
        die("text longer than the segment");
    }
    // SAFETY: `p` is the start of a live mapping of at least 4096 bytes and
    // text.len() + 1 <= 4096 (checked); the mapping is not a Rust object,
    // so the copy overlaps none.
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), p, text.len());
        *p.add(text.len()) = 0;
    }
}

/// Reads a NUL-terminated string at `p`, the start of a live mapping
/// written by `write_cstr` (or zero-filled).
fn read_cstr(p: *const u8) -> String {
    // SAFETY: the mapping holds a NUL within its 4096 bytes: written by
    // `write_cstr`, or the zero fill of a fresh segment.
    unsafe { std::ffi::CStr::from_ptr(p.cast()) }
        .to_string_lossy()
        .into_owned()
}

/// Runs one command; commands are grouped by what they exercise.
fn run(cmd: &str, args: &[String]) {
    let known = run_fd_command(cmd, args)
        || run_socket_command(cmd, args)
        || run_memory_command(cmd, args)
        || run_queue_command(cmd, args)
        || run_process_command(cmd, args);
    if !known {
        die(&format!("unknown command {cmd}"));
    }
    let _ = std::io::stdout().flush();
}

/// Commands reading and writing fds: whether `cmd` is one of them.
fn run_fd_command(cmd: &str, args: &[String]) -> bool {
    let out = &mut std::io::stdout();
    match cmd {
        "report" => report(),
        "println" => println!("{}", arg(args, 0)),
        "write" => file(num(&arg(args, 0)))
            .write_all(arg(args, 1).as_bytes())
            .unwrap_or_else(|e| die(&e.to_string())),
        "read" => {
            let mut s = String::new();
            file(num(&arg(args, 0)))
                .read_to_string(&mut s)
                .unwrap_or_else(|e| die(&e.to_string()));
            println!("read: {s}");
        }
        "readline" => {
            let fd = num(&arg(args, 0));
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while check(
                // SAFETY: reads one byte into a live one-byte buffer.
                unsafe { libc::read(fd, byte.as_mut_ptr().cast(), 1) },
                "read",
            ) == 1
                && byte[0] != b'\n'
            {
                line.push(byte[0]);
            }
            println!("line: {}", String::from_utf8_lossy(&line));
        }
        "echo" => {
            std::io::copy(&mut *file(num(&arg(args, 0))), out)
                .unwrap_or_else(|e| die(&e.to_string()));
        }
        "accept" => {
            let fd = check(
                // SAFETY: null address pointers ask for no peer address.
                unsafe {
                    libc::accept4(
                        num(&arg(args, 0)),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_CLOEXEC,
                    )
                } as isize,
                "accept",
            ) as i32;
            let mut s = String::new();
            // SAFETY: accept4 just returned this new fd (checked), owned by
            // nothing else.
            let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
            f.read_to_string(&mut s)
                .unwrap_or_else(|e| die(&e.to_string()));
            println!("accept: {s}");
        }
        _ => return false,
    }
    true
}

/// Commands on sockets: whether `cmd` is one of them.
fn run_socket_command(cmd: &str, args: &[String]) -> bool {
    match cmd {
        "recv" | "mq-recv-fd" => {
            let fd = num(&arg(args, 0));
            let mut buf = vec![0u8; 65536];
            let n = if cmd == "recv" {
                check(
                    // SAFETY: receives into a live buffer of buf.len() bytes.
                    unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) },
                    "recv",
                )
            } else {
                check(
                    // SAFETY: receives into a live buffer of buf.len() bytes;
                    // a null priority pointer asks for no priority.
                    unsafe {
                        libc::mq_receive(
                            fd,
                            buf.as_mut_ptr().cast(),
                            buf.len(),
                            std::ptr::null_mut(),
                        )
                    },
                    "mq_receive",
                )
            };
            println!("recv: {}", String::from_utf8_lossy(&buf[..n as usize]));
        }
        "send" => {
            let text = arg(args, 1);
            check(
                // SAFETY: sends text.len() bytes from a live string.
                unsafe { libc::send(num(&arg(args, 0)), text.as_ptr().cast(), text.len(), 0) },
                "send",
            );
        }
        "mq-send-fd" => {
            let text = arg(args, 1);
            check(
                // SAFETY: sends text.len() bytes from a live string.
                unsafe { libc::mq_send(num(&arg(args, 0)), text.as_ptr().cast(), text.len(), 0) }
                    as isize,
                "mq_send",
            );
        }
        "connect" => {
            let mut s = std::os::unix::net::UnixStream::connect(arg(args, 0))
                .unwrap_or_else(|e| die(&e.to_string()));
            s.write_all(arg(args, 1).as_bytes())
                .unwrap_or_else(|e| die(&e.to_string()));
        }
        "dgram" => {
            let s =
                std::os::unix::net::UnixDatagram::unbound().unwrap_or_else(|e| die(&e.to_string()));
            s.send_to(arg(args, 1).as_bytes(), arg(args, 0))
                .unwrap_or_else(|e| die(&e.to_string()));
        }
        "tcp" => {
            let mut s =
                std::net::TcpStream::connect(arg(args, 0)).unwrap_or_else(|e| die(&e.to_string()));
            s.write_all(arg(args, 1).as_bytes())
                .unwrap_or_else(|e| die(&e.to_string()));
        }
        "udp" => {
            let s =
                std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| die(&e.to_string()));
            s.send_to(arg(args, 1).as_bytes(), arg(args, 0))
                .unwrap_or_else(|e| die(&e.to_string()));
        }
        _ => return false,
    }
    true
}

/// Commands on shared memory and the ring: whether `cmd` is one of them.
fn run_memory_command(cmd: &str, args: &[String]) -> bool {
    match cmd {
        "shm-write" | "shm-read" => {
            let name = cstr(&arg(args, 0));
            let fd = check(
                // SAFETY: `name` is a NUL-terminated string alive for the call.
                unsafe { libc::shm_open(name.as_ptr(), libc::O_RDWR, 0) } as isize,
                "shm_open",
            ) as i32;
            let p = shm_map(fd, 4096);
            if cmd == "shm-write" {
                write_cstr(p, &arg(args, 1))
            } else {
                println!("shm: {}", read_cstr(p))
            }
        }
        "ring-send" => {
            use ipc_run_child::ring::Producer;
            let mut port =
                ipc_run_child::port(&arg(args, 0)).unwrap_or_else(|e| die(&e.to_string()));
            let mut producer =
                Producer::from_port(&mut port).unwrap_or_else(|e| die(&e.to_string()));
            let tag = arg(args, 1);
            let count = num(&arg(args, 2));
            let size = num(&arg(args, 3)) as usize;
            for i in 0..count {
                let record = ring_record(&tag, i as u64, size);
                producer
                    .send(&record, Some(std::time::Duration::from_secs(60)))
                    .unwrap_or_else(|e| die(&format!("ring send: {e}")));
            }
            match arg(args, 4).as_str() {
                "close" => producer.close().unwrap_or_else(|e| die(&e.to_string())),
                "exit" => drop(producer),
                other => die(&format!("ring-send ends with close or exit, not {other}")),
            }
        }
        "ring-recv" => {
            use ipc_run_child::ring::{Consumer, Received};
            let mut port =
                ipc_run_child::port(&arg(args, 0)).unwrap_or_else(|e| die(&e.to_string()));
            let mut consumer =
                Consumer::from_port(&mut port).unwrap_or_else(|e| die(&e.to_string()));
            let mut counts = std::collections::BTreeMap::<String, u64>::new();
            let mut buf = Vec::new();
            loop {
                match consumer.recv(&mut buf, Some(std::time::Duration::from_secs(60))) {
                    Ok(Received::End) => break,
                    Ok(Received::Record(_)) => {
                        let text = String::from_utf8_lossy(&buf);
                        let mut parts = text.splitn(3, ':');
                        let (Some(tag), Some(i)) = (parts.next(), parts.next()) else {
                            die(&format!("malformed record {text:?}"))
                        };
                        let next = counts.entry(tag.to_owned()).or_default();
                        let i: u64 = i.parse().unwrap_or_else(|_| die("bad index"));
                        if i != *next || buf != ring_record(tag, i, buf.len()) {
                            die(&format!(
                                "record {tag}:{i} out of order or torn (expected {next})"
                            ));
                        }
                        *next += 1;
                    }
                    Err(e) => die(&format!("ring recv: {e}")),
                }
            }
            let summary: Vec<String> = counts.iter().map(|(t, n)| format!("{t}={n}")).collect();
            println!("ring: {}", summary.join(" "));
        }
        "ring-torn" => {
            use ipc_run_child::ring::Producer;
            let mut port =
                ipc_run_child::port(&arg(args, 0)).unwrap_or_else(|e| die(&e.to_string()));
            let mut producer =
                Producer::from_port(&mut port).unwrap_or_else(|e| die(&e.to_string()));
            let record = ring_record("torn", 0, num(&arg(args, 1)) as usize);
            producer
                .write_unpublished(&record, num(&arg(args, 2)) as usize)
                .unwrap_or_else(|e| die(&e.to_string()));
            println!("torn");
            let _ = std::io::stdout().flush();
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        "sysv-shm-write" | "sysv-shm-read" => {
            // SAFETY: attaches at a kernel-chosen address (null), which
            // overlaps no Rust object; failure is checked below.
            let p = unsafe { libc::shmat(num(&arg(args, 0)), std::ptr::null(), 0) };
            if p as isize == -1 {
                die("shmat failed");
            }
            if cmd == "sysv-shm-write" {
                write_cstr(p.cast(), &arg(args, 1))
            } else {
                println!("shm: {}", read_cstr(p.cast()))
            }
        }
        _ => return false,
    }
    true
}

/// Commands on message queues and semaphores: whether `cmd` is one of them.
fn run_queue_command(cmd: &str, args: &[String]) -> bool {
    match cmd {
        "mq-send" | "mq-recv" => {
            let name = cstr(&arg(args, 0));
            let flags = if cmd == "mq-send" {
                libc::O_WRONLY
            } else {
                libc::O_RDONLY
            };
            let fd = check(
                // SAFETY: `name` is a NUL-terminated string alive for the call;
                // without O_CREAT no further arguments are read.
                unsafe { libc::mq_open(name.as_ptr(), flags) } as isize,
                "mq_open",
            ) as i32;
            let mut a = args.to_vec();
            a[0] = fd.to_string();
            run(
                if cmd == "mq-send" {
                    "mq-send-fd"
                } else {
                    "mq-recv-fd"
                },
                &a,
            );
        }
        "msg-send" | "msg-recv" => {
            #[repr(C)]
            struct Msg {
                mtype: libc::c_long,
                text: [u8; 1024],
            }
            let id = num(&arg(args, 0));
            let mut msg = Msg {
                mtype: 1,
                text: [0; 1024],
            };
            if cmd == "msg-send" {
                let text = arg(args, 1);
                if text.len() > msg.text.len() {
                    die("text longer than a message");
                }
                msg.text[..text.len()].copy_from_slice(text.as_bytes());
                check(
                    // SAFETY: `msg` is a live msgbuf (type, then text) whose
                    // text holds text.len() bytes (checked above).
                    unsafe { libc::msgsnd(id, (&msg as *const Msg).cast(), text.len(), 0) }
                        as isize,
                    "msgsnd",
                );
            } else {
                let n = check(
                    // SAFETY: `msg` is a live, writable msgbuf with 1024 text bytes.
                    unsafe { libc::msgrcv(id, (&mut msg as *mut Msg).cast(), 1024, 0, 0) },
                    "msgrcv",
                );
                println!("msg: {}", String::from_utf8_lossy(&msg.text[..n as usize]));
            }
        }
        "sem-post" | "sem-wait" => {
            let name = cstr(&arg(args, 0));
            // SAFETY: `name` is a NUL-terminated string alive for the call;
            // without O_CREAT no further arguments are read.
            let sem = unsafe { libc::sem_open(name.as_ptr(), 0) };
            if sem == libc::SEM_FAILED {
                die("sem_open failed");
            }
            if cmd == "sem-post" {
                // SAFETY: `sem` is the semaphore sem_open returned (checked).
                check(unsafe { libc::sem_post(sem) } as isize, "sem_post");
            } else {
                // SAFETY: as for sem_post.
                check(unsafe { libc::sem_wait(sem) } as isize, "sem_wait");
                println!("sem: acquired");
            }
        }
        "semop" => {
            let mut op = libc::sembuf {
                sem_num: num(&arg(args, 1)) as u16,
                sem_op: num(&arg(args, 2)) as i16,
                sem_flg: 0,
            };
            check(
                // SAFETY: one live sembuf, and a count of 1.
                unsafe { libc::semop(num(&arg(args, 0)), &mut op, 1) } as isize,
                "semop",
            );
            println!("semop: done");
        }
        _ => return false,
    }
    true
}

/// Commands on signals, paths and the process itself: whether `cmd` is
/// one of them.
fn run_process_command(cmd: &str, args: &[String]) -> bool {
    match cmd {
        "block" | "wait-signal" => {
            // SAFETY: sigset_t is plain data; sigemptyset initialises it next.
            let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
            // SAFETY: the calls take a live sigset_t; a null old-mask pointer
            // asks for none. Blocking a signal in this single-threaded
            // process is what the test asks for.
            unsafe {
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, num(&arg(args, 0)));
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
            if cmd == "wait-signal" {
                let mut sig = 0;
                // SAFETY: a live, initialised set and a live int for the result.
                unsafe { libc::sigwait(&set, &mut sig) };
                println!("signal: {sig}");
            }
        }
        "kill" => {
            for pid in arg(args, 0).split(',') {
                check(
                    // SAFETY: kill takes no pointers.
                    unsafe { libc::kill(num(pid), num(&arg(args, 1))) } as isize,
                    "kill",
                );
            }
        }
        "write-path" => {
            std::fs::OpenOptions::new()
                .write(true)
                .open(arg(args, 0))
                .and_then(|mut f| f.write_all(arg(args, 1).as_bytes()))
                .unwrap_or_else(|e| die(&e.to_string()));
        }
        "read-path" => {
            let s = std::fs::read_to_string(arg(args, 0)).unwrap_or_else(|e| die(&e.to_string()));
            println!("read: {s}");
        }
        "sleep" => std::thread::sleep(std::time::Duration::from_millis(num(&arg(args, 0)) as u64)),
        "exit" => std::process::exit(num(&arg(args, 0))),
        _ => return false,
    }
    true
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    for group in args.split(|a| a == "--") {
        if let Some((cmd, rest)) = group.split_first() {
            run(cmd, rest);
        }
    }
}
