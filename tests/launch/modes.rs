//! Under umask 000 every object is created 0600 and its run directory 0700
//! (S1), and after cleanup nothing is left (K2). The only test in its
//! binary, because the umask is process-wide.

use crate::support::launch as launch_common;
use crate::support::{EXIT_0, probe_pair, sysv_perms};

use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use ipc_run::launch::prepare;
use ipc_run::plan::Mechanism;
use launch_common::{options, plan, root};
use nix::sys::stat::Mode;

fn topology() -> String {
    probe_pair(
        EXIT_0,
        EXIT_0,
        &["fifo", "sock", "shm", "mq", "sem", "vshm", "vmq", "vsem"],
    )
}

fn mode_of(path: &str) -> Option<u32> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

#[test]
fn objects_are_0600_under_umask_000_and_all_gone_after_cleanup() {
    nix::sys::stat::umask(Mode::empty());
    let plan = plan(&topology());
    let root = root();
    let launched = prepare(&plan, &options(&root)).unwrap();
    let values = launched.values().clone();
    let run_dir = launched.run_dir.clone();
    assert_eq!(mode_of(run_dir.to_str().unwrap()), Some(0o700));
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&run_dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600, "{:?}", entry.path());
        assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
        files.push(entry.file_name().to_string_lossy().into_owned());
    }
    files.sort();
    assert_eq!(files, ["e0.fifo", "e1.sock", "journal", "lock"]);

    let mut posix_files = Vec::new();
    let mut mq_names = Vec::new();
    for channel in &plan.channels {
        match &channel.mechanism {
            Mechanism::PosixShm(shm) => {
                posix_files.push(format!("/dev/shm{}", values.fill(&shm.name).unwrap()));
                for sem in &shm.semaphores {
                    posix_files.push(format!("/dev/shm/sem.{}", &values.fill(sem).unwrap()[1..]));
                }
            }
            Mechanism::PosixSem(sem) => {
                let name = values.fill(&sem.name).unwrap();
                posix_files.push(format!("/dev/shm/sem.{}", &name[1..]));
            }
            Mechanism::PosixMq(mq) => mq_names.push(values.fill(&mq.name).unwrap()),
            _ => {}
        }
    }
    assert_eq!(posix_files.len(), 4, "{posix_files:?}");
    for file in &posix_files {
        assert_eq!(mode_of(file), Some(0o600), "{file}");
    }
    for name in &mq_names {
        let fd = ipc_run::sys::ipc::mq_open_existing(&CString::new(name.as_str()).unwrap(), false)
            .unwrap();
        assert_eq!(
            nix::sys::stat::fstat(&fd).unwrap().st_mode & 0o777,
            0o600,
            "{name}"
        );
    }
    let sysv = [
        ("shm", values.sysv_ids["e5"]),
        ("sem", values.sysv_sem_ids["e5"]),
        ("msg", values.sysv_ids["e6"]),
        ("sem", values.sysv_ids["e7"]),
    ];
    for (file, id) in sysv {
        assert_eq!(sysv_perms(file, id).as_deref(), Some("600"), "{file} {id}");
    }
    let journal = std::fs::read_to_string(run_dir.join("journal")).unwrap();
    // One line per object; System V keys (journaled before their objects)
    // and the run's cgroup (where one can be made) come on top.
    let objects = journal
        .lines()
        .filter(|l| !l.starts_with("cgroup ") && !l.split(' ').next().unwrap().ends_with("-key"))
        .count();
    assert_eq!(objects, 11, "{journal}");

    let report = launched.cleanup();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.removed.len(), 11, "{report:?}");
    assert!(!run_dir.exists());
    for file in &posix_files {
        assert_eq!(mode_of(file), None, "{file} left");
    }
    for name in &mq_names {
        let gone =
            ipc_run::sys::ipc::mq_open_existing(&CString::new(name.as_str()).unwrap(), false);
        assert_eq!(gone.err(), Some(nix::errno::Errno::ENOENT), "{name} left");
    }
    for (file, id) in sysv {
        assert_eq!(sysv_perms(file, id), None, "{file} {id} left");
    }
}
