use super::*;

/// Descriptions as ipc-run's plans print them (before `fd=` is added and
/// placeholders are filled), and as a child sees them.
const WRITTEN: &[&str] = &[
    "kind=inherit channel=e0 end=read fd=0",
    "kind=pipe channel=e1 end=write fd=4",
    "kind=fifo channel=lines end=read path={run_dir}/lines.fifo",
    "kind=socketpair channel=ctl end=both socket=stream fd=3",
    "kind=unix-listener channel=ask end=listen socket=stream path={run_dir}/ask.sock fd=3",
    "kind=unix-listener channel=ask end=connect socket=dgram path={run_dir}/ask.sock",
    "kind=tcp channel=net end=listen address=127.0.0.1:{port:net} fd=4",
    "kind=udp channel=net end=connect address=[::1]:4000",
    "kind=posix-shm channel=board end=both name=/ipc-run.{run_id}.board size=4096",
    "kind=posix-shm channel=frames end=write name=/ipc-run.{run_id}.frames size=1048576 layout=ring capacity=1044480 producers=2",
    "kind=posix-shm channel=table end=both name=/ipc-run.{run_id}.table size=65536 lock=/ipc-run.{run_id}.table.lock ready=/ipc-run.{run_id}.table.ready",
    "kind=sysv-shm channel=table end=both id={sysv_id:table} size=4096 sem_id={sysv_sem_id:table}",
    "kind=sysv-shm channel=table end=both id=98310 size=4096",
    "kind=posix-mq channel=jobs end=read name=/ipc-run.{run_id}.jobs depth=8 message_size=256",
    "kind=sysv-mq channel=events end=write id={sysv_id:events} queue_bytes=1024 message_size=128",
    "kind=posix-sem channel=done end=send name=/ipc-run.{run_id}.done initial=0",
    "kind=sysv-sem channel=finished end=receive id=5 count=1 initial=0",
    "kind=signal channel=wake end=receive signal=SIGUSR1 signo=10",
    "kind=signal channel=wake end=send signal=SIGUSR1 signo=10 pid={pid:a},{pid:b}",
    "kind=signal channel=wake end=send signal=SIGUSR1 signo=10 pid=4242",
    "kind=rpc channel=calls end=listen protocol=http transport=unix address={run_dir}/calls.sock url=http+unix://{run_dir_pct}%2Fcalls.sock fd=3",
    "kind=rpc channel=calls end=connect protocol=grpc transport=tcp address=127.0.0.1:{port:calls} url=127.0.0.1:{port:calls}",
];

#[test]
fn written_text_reads_back_identically() {
    for text in WRITTEN {
        let description: Description = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(description.to_string(), *text);
    }
}

#[test]
fn reads_typed_fields() {
    let d: Description = "kind=posix-shm end=both channel=e0 fd=5 size=1048576 name=/x"
        .parse()
        .unwrap();
    assert_eq!(d.kind(), Kind::PosixShm);
    assert_eq!(d.end, End::Both);
    assert_eq!(d.fd, Some(5));
    assert_eq!(
        d.params,
        Params::PosixShm {
            name: "/x".into(),
            size: 1 << 20,
            ring: None,
            semaphores: None
        }
    );
    let d: Description = "kind=sysv-mq channel=q end=read id=7 queue_bytes=1 message_size=2 new=1"
        .parse()
        .unwrap();
    match d.params {
        Params::SysvMq { id, .. } => assert_eq!(id.value(), Some(7)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rejects_malformed() {
    for (bad, why) in [
        ("end=write channel=c", "no `kind=`"),
        (
            "kind=pipe channel=c end=write fd=x",
            "fd `x` is not an fd number",
        ),
        (
            "kind=pipe channel=c end=write fd=-1",
            "fd `-1` is not an fd number",
        ),
        (
            "kind=pipe channel=c end=write junk",
            "`junk` is not key=value",
        ),
        ("kind=pipe channel=c end=write =x", "`=x` has an empty key"),
        ("kind=pipe kind=fifo", "`kind` appears twice"),
        (
            "kind=pipes channel=c end=write",
            "kind `pipes` is not a known kind",
        ),
        (
            "kind=pipe channel=c end=sideways",
            "end `sideways` is not an end",
        ),
        ("kind=pipe end=read", "no `channel=`"),
        ("kind=fifo channel=c end=read", "no `path=`"),
        (
            "kind=posix-mq channel=c end=read name=/q depth=x message_size=1",
            "depth `x` is not a number",
        ),
        (
            "kind=sysv-mq channel=c end=read id={} queue_bytes=1 message_size=1",
            "id `{}` is not an id",
        ),
        (
            "kind=sysv-mq channel=c end=read id=abc queue_bytes=1 message_size=1",
            "id `abc` is not an id",
        ),
        (
            "kind=posix-shm channel=c end=both name=/s size=1 layout=tree",
            "layout `tree` is not a known layout",
        ),
        (
            "kind=posix-shm channel=c end=both name=/s size=1 lock=/l",
            "no `ready=`",
        ),
        (
            "kind=rpc channel=c end=listen protocol=http transport=udp address=a url=b",
            "transport `udp` is not a transport",
        ),
    ] {
        let err = bad.parse::<Description>().expect_err(bad);
        assert_eq!(err.to_string(), why, "{bad}");
    }
}

#[test]
fn kind_names_round_trip() {
    assert_eq!(Kind::ALL.len(), 16);
    for &kind in Kind::ALL {
        assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
    }
    for &end in End::ALL {
        assert_eq!(end.as_str().parse::<End>(), Ok(end));
    }
}

/// A small deterministic generator (xorshift): the same cases every run.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<T: Clone>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize].clone()
    }

    fn flip(&mut self) -> bool {
        self.next() & 1 == 1
    }

    fn text(&mut self) -> String {
        let text = self.pick(&[
            "",
            "e0",
            "{run_dir}/a.sock",
            "/ipc-run.{run_id}.q",
            "127.0.0.1:{port:e1}",
            "[::1]:0",
            "x=y",
            "http+unix://%2Frun%2Fx",
            "é",
        ]);
        format!("{text}{}", self.next() % 3)
    }

    fn number(&mut self) -> u64 {
        match self.next() % 4 {
            0 => 0,
            1 => u64::MAX,
            _ => self.next() >> (self.next() % 64),
        }
    }

    fn small(&mut self) -> u32 {
        self.number() as u32
    }

    fn id(&mut self) -> Slot<i32> {
        if self.flip() {
            Slot::Value(self.next() as i32)
        } else {
            Slot::Placeholder(self.pick(&["{sysv_id:e1}", "{pid:a.0}", "{x}"]).into())
        }
    }

    fn description(&mut self, kind: Kind) -> Description {
        let params = match kind {
            Kind::Inherit => Params::Inherit,
            Kind::Pipe => Params::Pipe,
            Kind::Fifo => Params::Fifo { path: self.text() },
            Kind::Socketpair => Params::Socketpair {
                socket: self.pick(SocketType::ALL),
            },
            Kind::UnixListener => Params::UnixListener {
                socket: self.pick(SocketType::ALL),
                path: self.text(),
            },
            Kind::Tcp => Params::Tcp {
                address: self.text(),
            },
            Kind::Udp => Params::Udp {
                address: self.text(),
            },
            Kind::PosixShm => Params::PosixShm {
                name: self.text(),
                size: self.number(),
                ring: self.flip().then(|| RingLayout {
                    capacity: self.number(),
                    producers: self.small(),
                }),
                semaphores: self.flip().then(|| ShmSemaphores {
                    lock: self.text(),
                    ready: self.text(),
                }),
            },
            Kind::SysvShm => Params::SysvShm {
                id: self.id(),
                size: self.number(),
                sem_id: self.flip().then(|| self.id()),
            },
            Kind::PosixMq => Params::PosixMq {
                name: self.text(),
                depth: self.number(),
                message_size: self.number(),
            },
            Kind::SysvMq => Params::SysvMq {
                id: self.id(),
                queue_bytes: self.number(),
                message_size: self.number(),
            },
            Kind::PosixSem => Params::PosixSem {
                name: self.text(),
                initial: self.small(),
            },
            Kind::SysvSem => Params::SysvSem {
                id: self.id(),
                count: self.small(),
                initial: self.small(),
            },
            Kind::Signal => Params::Signal {
                signal: self.text(),
                signo: self.next() as i32,
                pid: self
                    .flip()
                    .then(|| (0..=self.next() % 3).map(|_| self.id()).collect()),
            },
            Kind::Rpc => Params::Rpc {
                protocol: self.text(),
                transport: self.pick(Transport::ALL),
                address: self.text(),
                url: self.text(),
            },
            Kind::Mpi => Params::Mpi {
                size: self.next() as u32,
            },
        };
        Description {
            channel: self.text(),
            end: self.pick(End::ALL),
            params,
            fd: self
                .flip()
                .then(|| (self.next() % (i32::MAX as u64)) as i32),
        }
    }
}

#[test]
fn every_kind_round_trips() {
    let mut generator = Gen(0x9e37_79b9_7f4a_7c15);
    for _ in 0..200 {
        for &kind in Kind::ALL {
            let description = generator.description(kind);
            let text = description.to_string();
            let read: Description = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(read, description, "{text}");
            assert_eq!(read.to_string(), text);
        }
    }
}
