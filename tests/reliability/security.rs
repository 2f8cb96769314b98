//! Security cases of the reliability bar: S2 (symlinks planted where
//! ipc-run creates or removes things) and S3 (a private runtime root and
//! run directory).
//!
//! Already covered elsewhere, not repeated here:
//! - `run_cli.rs` `s3_unsafe_runtime_dir_is_refused_and_left_untouched`:
//!   `run --runtime-dir` on a symlink or a world-writable directory;
//! - `run_cli.rs` `s1_every_object_is_0600_and_the_run_dir_0700_under_umask_000_and_022`:
//!   the runtime root and run directory are 0700 under umask 000 and 022;
//! - `launch_objects.rs` `the_runtime_root_must_be_private` (0777 root and a
//!   symlink root, library) and
//!   `a_pre_existing_name_fails_closed_and_everything_before_it_is_rolled_back`
//!   (a regular file squatting a POSIX name).

use crate::support::launch as launch_common;
use crate::support::{EXIT_0, IPC_RUN, Scratch, bare_run_command, clean_root, probe_pair};

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ipc_run::launch::{LaunchError, prepare};
use ipc_run::plan::{Mechanism, Plan, PosixShmParams};
use launch_common::{options, plan, root};

/// A FIFO (e0), POSIX shared memory with two semaphores (e1) and a Unix
/// listener (e2): objects in the run directory and in /dev/shm.
fn topology() -> String {
    probe_pair(EXIT_0, EXIT_0, &["fifo", "shm", "sock"])
}

/// A uid that is not ours, for foreign ownership.
const OTHER_UID: u32 = 65534;

/// A file with known content and mode 0644 in `outside`, a private
/// directory outside any runtime root.
fn precious(outside: &Scratch, name: &str) -> PathBuf {
    let path = outside.dir.join(name);
    std::fs::write(&path, b"precious").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

fn assert_untouched(path: &Path) {
    let meta = std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{} is gone: {e}", path.display()));
    assert!(meta.is_file(), "{} is no longer a file", path.display());
    assert_eq!(meta.mode() & 0o7777, 0o644, "{} mode", path.display());
    assert_eq!(
        std::fs::read(path).unwrap(),
        b"precious",
        "{}",
        path.display()
    );
}

/// A run prepared under `root` and abandoned, as a SIGKILL of ipc-run
/// leaves it: (run id, run directory).
fn dead_run(root: &Path) -> (String, PathBuf) {
    let launched = prepare(&plan(&topology()), &options(root)).unwrap();
    let found = (launched.run_id.clone(), launched.run_dir.clone());
    launched.abandon();
    found
}

/// /dev/shm entries of a run (`ipc-run.<id>.…`, `sem.ipc-run.<id>.…`).
fn shm_of(run_id: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&format!("ipc-run.{run_id}.")))
        .collect();
    names.sort();
    names
}

/// `ipc-run run TOPOLOGY --runtime-dir ROOT`: its exit code and stderr.
fn run_cli(topology: &Path, root: &Path) -> (Option<i32>, String) {
    let output = bare_run_command(IPC_RUN, topology, root).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `ipc-run clean --runtime-dir ROOT`: (exit code, stdout and stderr).
fn clean_cli(root: &Path) -> (i32, String) {
    let (code, stdout, stderr) = clean_root(root);
    (code, stdout + &stderr)
}

/// Asserts that `clean` left the dead run `run_id` alone: its journal and
/// its three objects are still there.
fn assert_left_alone(run_dir: &Path, run_id: &str) {
    assert!(run_dir.join("journal").exists());
    assert_eq!(shm_of(run_id).len(), 3);
}

/// Cleans `root`, asserts that the dead run `run_id` went with its
/// objects, then removes the emptied root.
fn assert_cleaned(root: &Path, run_dir: &Path, run_id: &str) {
    let (code, out) = clean_cli(root);
    assert_eq!(code, 0, "{out}");
    assert!(!run_dir.exists(), "{out}");
    assert_eq!(shm_of(run_id), Vec::<String>::new());
    std::fs::remove_dir(root).unwrap();
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn skip(case: &str, reason: &str) {
    eprintln!("SKIP {case}: {reason} !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
}

// ----- S2: clean never follows links, removes only what the run made ------

#[test]
fn s2_clean_never_follows_links_and_removes_only_what_the_run_created() {
    let outside = Scratch::new("sec-clean");
    let root = root();
    let (run_id, run_dir) = dead_run(&root);
    assert_eq!(shm_of(&run_id).len(), 3, "{:?}", shm_of(&run_id));

    // The FIFO replaced by a symlink to a file outside; the socket replaced
    // by a planted regular file.
    let target = precious(&outside, "target");
    std::fs::remove_file(run_dir.join("e0.fifo")).unwrap();
    std::os::unix::fs::symlink(&target, run_dir.join("e0.fifo")).unwrap();
    std::fs::remove_file(run_dir.join("e2.sock")).unwrap();
    std::fs::write(run_dir.join("e2.sock"), b"planted").unwrap();
    // Journal lines naming objects the run did not create: POSIX names of
    // someone else and of another run, files outside the run directory.
    let pid = std::process::id();
    let other_run = "00000000deadbeef";
    let victims = [
        format!("/dev/shm/ipc-run-sec-victim-{pid}"),
        format!("/dev/shm/ipc-run.{other_run}.e{pid}"),
        format!("/dev/shm/sem.ipc-run.{other_run}.s{pid}"),
    ];
    for victim in &victims {
        std::fs::write(victim, b"precious").unwrap();
        std::fs::set_permissions(victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let forged = format!(
        "posix-shm /ipc-run-sec-victim-{pid}\n\
         posix-shm /ipc-run.{other_run}.e{pid}\n\
         posix-sem /ipc-run.{other_run}.s{pid}\n\
         posix-mq /ipc-run.{other_run}.q{pid}\n\
         posix-shm /ipc-run.{run_id}\n\
         fifo ../{}\n\
         fifo {}\n\
         unix-socket ..\n",
        outside.dir.file_name().unwrap().to_string_lossy(),
        target.display(),
    );
    let journal = run_dir.join("journal");
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.push_str(&forged);
    std::fs::write(&journal, text).unwrap();

    let (code, out) = clean_cli(&root);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("cleaned {}", run_dir.display())),
        "{out}"
    );
    // Its own objects are gone.
    assert_eq!(shm_of(&run_id), Vec::<String>::new(), "{out}");
    assert!(out.contains("removed posix-shm"), "{out}");
    // Nothing else was removed or followed.
    assert_untouched(&target);
    for victim in &victims {
        assert_untouched(Path::new(victim));
    }
    for left in [
        "left alone fifo e0.fifo",
        "left alone unix-socket e2.sock",
        &format!("left alone posix-shm /ipc-run-sec-victim-{pid}"),
        &format!("left alone posix-shm /ipc-run.{other_run}.e{pid}"),
        &format!("left alone posix-sem /ipc-run.{other_run}.s{pid}"),
        "kept the directory",
    ] {
        assert!(out.contains(left), "`{left}` not reported:\n{out}");
    }
    assert!(
        std::fs::symlink_metadata(run_dir.join("e0.fifo"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "the planted link is not the run's to remove"
    );
    assert_eq!(std::fs::read(run_dir.join("e2.sock")).unwrap(), b"planted");
    assert!(!run_dir.join("journal").exists() && !run_dir.join("lock").exists());

    for victim in &victims {
        std::fs::remove_file(victim).unwrap();
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn s2_clean_refuses_a_symlinked_journal_lock_run_dir_or_root() {
    let outside = Scratch::new("sec-links");
    let root = root();
    let pid = std::process::id();
    let victim = format!("/dev/shm/ipc-run-sec-victim2-{pid}");
    std::fs::write(&victim, b"precious").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();

    // The journal is a symlink to a forged journal outside.
    let (run_id, run_dir) = dead_run(&root);
    let forged = outside.dir.join("forged-journal");
    std::fs::write(&forged, format!("posix-shm /ipc-run-sec-victim2-{pid}\n")).unwrap();
    std::fs::set_permissions(&forged, std::fs::Permissions::from_mode(0o644)).unwrap();
    let real_journal = std::fs::read(run_dir.join("journal")).unwrap();
    std::fs::remove_file(run_dir.join("journal")).unwrap();
    std::os::unix::fs::symlink(&forged, run_dir.join("journal")).unwrap();
    let (code, out) = clean_cli(&root);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "skipped {}: cannot read its journal",
            run_dir.display()
        )),
        "{out}"
    );
    assert_untouched(Path::new(&victim));
    assert_eq!(
        shm_of(&run_id).len(),
        3,
        "nothing of the run removed either"
    );
    assert!(
        std::fs::symlink_metadata(run_dir.join("journal"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // The lock is a symlink: not a run ipc-run can judge.
    std::fs::remove_file(run_dir.join("journal")).unwrap();
    std::fs::write(run_dir.join("journal"), &real_journal).unwrap();
    let lock_target = precious(&outside, "lock-target");
    std::fs::remove_file(run_dir.join("lock")).unwrap();
    std::os::unix::fs::symlink(&lock_target, run_dir.join("lock")).unwrap();
    let (code, out) = clean_cli(&root);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no usable lock file"), "{out}");
    assert_untouched(&lock_target);
    assert_eq!(shm_of(&run_id).len(), 3);

    // A run directory that is a symlink to a dead-looking run outside.
    std::fs::remove_file(run_dir.join("lock")).unwrap();
    std::fs::write(run_dir.join("lock"), b"").unwrap();
    let fake = outside.dir.join("fake-run");
    std::fs::create_dir(&fake).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(fake.join("lock"), b"").unwrap();
    let fake_target = precious(&outside, "fake-target");
    std::fs::write(fake.join("journal"), "fifo fifo-in-fake\n").unwrap();
    nix::unistd::mkfifo(
        &fake.join("fifo-in-fake"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let linked = root.join("0123456789abcdef");
    std::os::unix::fs::symlink(&fake, &linked).unwrap();

    // The root itself as a symlink: nothing under it is touched.
    let root_link = outside.dir.join("root-link");
    std::os::unix::fs::symlink(&root, &root_link).unwrap();
    let (code, out) = clean_cli(&root_link);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("skipped {}", root_link.display())),
        "{out}"
    );
    assert!(run_dir.exists());
    assert_eq!(shm_of(&run_id).len(), 3);

    // Through the real root: the real dead run is cleaned, the linked one
    // skipped and left as it was.
    let (code, out) = clean_cli(&root);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "skipped {}: cannot open it without following links",
            linked.display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("cleaned {}", run_dir.display())),
        "{out}"
    );
    assert!(!run_dir.exists());
    assert_eq!(shm_of(&run_id), Vec::<String>::new());
    assert!(fake.join("fifo-in-fake").exists());
    assert!(fake.join("journal").exists() && fake.join("lock").exists());
    assert_untouched(&fake_target);
    assert_untouched(Path::new(&victim));

    std::fs::remove_file(&victim).unwrap();
    std::fs::remove_file(&linked).unwrap();
    std::fs::remove_dir(&root).unwrap();
}

// ----- S2: creation never goes through a planted link -----------------------

#[test]
fn s2_a_symlink_planted_at_a_posix_name_is_refused_and_its_target_untouched() {
    let outside = Scratch::new("sec-squat");
    let base = plan(&topology());
    let pid = std::process::id();
    for victim in ["shm", "sem-lock"] {
        let squatted = format!("/ipc-run-sec-squat-{pid}-{victim}");
        let mut plan: Plan = base.clone();
        let Mechanism::PosixShm(shm) = &mut plan.channels[1].mechanism else {
            panic!("e1 is posix shm: {:?}", plan.channels[1].mechanism)
        };
        let PosixShmParams {
            name, semaphores, ..
        } = &mut **shm;
        let planted = match victim {
            "shm" => {
                *name = squatted.clone();
                format!("/dev/shm{squatted}")
            }
            _ => {
                semaphores[0] = squatted.clone();
                format!("/dev/shm/sem.{}", &squatted[1..])
            }
        };
        let target = precious(&outside, victim);
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        let root = root();
        let err = prepare(&plan, &options(&root)).unwrap_err();
        assert!(
            matches!(&err, LaunchError::Exists { name, .. } if *name == squatted),
            "{victim}: {err}"
        );
        assert_untouched(&target);
        assert!(
            std::fs::symlink_metadata(&planted)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{victim}: the planted link was removed"
        );
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "rolled back");
        std::fs::remove_file(&planted).unwrap();
        std::fs::remove_dir(&root).unwrap();
    }
}

#[test]
fn s2_a_file_path_escaping_the_run_dir_is_refused_by_the_launcher() {
    // The planner never makes such a path (B4); the launcher refuses one
    // anyway, before creating anything.
    let outside = Scratch::new("sec-escape");
    let mut plan: Plan = plan(&topology());
    let escaped = outside.dir.join("escaped.fifo");
    for path in [
        "{run_dir}/../escaped.fifo".to_owned(),
        escaped.display().to_string(),
        "{run_dir}/sub/e0.fifo".to_owned(),
    ] {
        let Mechanism::Fifo(fifo) = &mut plan.channels[0].mechanism else {
            panic!("e0 is a FIFO")
        };
        fifo.path = path.clone();
        let root = root();
        let err = prepare(&plan, &options(&root)).unwrap_err();
        assert!(matches!(err, LaunchError::BadValue { .. }), "{path}: {err}");
        assert!(!escaped.exists(), "{path}");
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "{path}");
        std::fs::remove_dir(&root).unwrap();
    }
}

#[test]
fn s2_the_runs_own_cleanup_never_follows_a_link_planted_in_its_directory() {
    let outside = Scratch::new("sec-own");
    let root = root();
    let launched = prepare(&plan(&topology()), &options(&root)).unwrap();
    let run_dir = launched.run_dir.clone();
    let run_id = launched.run_id.clone();
    let fifo_target = precious(&outside, "fifo-target");
    let sock_target = precious(&outside, "sock-target");
    for (name, target) in [("e0.fifo", &fifo_target), ("e2.sock", &sock_target)] {
        std::fs::remove_file(run_dir.join(name)).unwrap();
        std::os::unix::fs::symlink(target, run_dir.join(name)).unwrap();
    }
    let _report = launched.cleanup();
    assert_untouched(&fifo_target);
    assert_untouched(&sock_target);
    assert_eq!(shm_of(&run_id), Vec::<String>::new());
}

#[test]
fn s2_a_symlink_planted_at_a_log_file_is_refused_and_its_target_untouched() {
    let outside = Scratch::new("sec-logs");
    let topology = outside.dir.join("t.toml");
    std::fs::write(
        &topology,
        "[process.a]\ncmd = [\"sh\", \"-c\", \"echo leaked\"]\n",
    )
    .unwrap();
    let logs = outside.dir.join("logs");
    std::fs::create_dir(&logs).unwrap();
    let target = precious(&outside, "log-target");
    std::os::unix::fs::symlink(&target, logs.join("a.stderr.log")).unwrap();
    let runtime = outside.dir.join("rt");
    let output = bare_run_command(IPC_RUN, &topology, &runtime)
        .arg("--log-dir")
        .arg(&logs)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("a.stderr.log"), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("leaked"));
    assert_untouched(&target);
    assert!(
        std::fs::symlink_metadata(logs.join("a.stderr.log"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let left: Vec<_> = std::fs::read_dir(&runtime)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

// ----- S3: a private root and run directory ---------------------------------

#[test]
fn s3_the_root_and_run_dir_are_created_0700_and_owned_by_us() {
    let root = root();
    assert!(!root.exists());
    let launched = prepare(&plan(&topology()), &options(&root)).unwrap();
    let me = nix::unistd::geteuid().as_raw();
    for dir in [&*root, launched.run_dir.as_path()] {
        let meta = std::fs::symlink_metadata(dir).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.mode() & 0o7777, 0o700, "{}", dir.display());
        assert_eq!(meta.uid(), me, "{}", dir.display());
    }
    assert!(launched.cleanup().is_clean());
    std::fs::remove_dir(&root).unwrap();
}

#[test]
fn s3_a_group_or_world_writable_root_is_refused_by_run_and_clean() {
    let outside = Scratch::new("sec-writable");
    let topology = outside.dir.join("t.toml");
    std::fs::write(&topology, "[process.a]\ncmd = [\"true\"]\n").unwrap();
    for mode in [0o770, 0o720, 0o702, 0o1777] {
        let root = root();
        let (run_id, run_dir) = dead_run(&root);
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(mode)).unwrap();
        // run: refused, nothing made, the mode left as it is.
        let (code, stderr) = run_cli(&topology, &root);
        assert_eq!(code, Some(3), "{mode:o}: {stderr}");
        assert!(stderr.contains("writable"), "{mode:o}: {stderr}");
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1, "{mode:o}");
        let now = std::fs::metadata(&root).unwrap().mode() & 0o7777;
        assert_eq!(now, mode, "the mode is not changed");
        // clean: the root is skipped, the dead run in it left alone.
        let (code, out) = clean_cli(&root);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains(&format!("skipped {}", root.display())),
            "{out}"
        );
        assert!(out.contains("writable"), "{out}");
        assert_left_alone(&run_dir, &run_id);
        // Made private again, it is cleaned.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_cleaned(&root, &run_dir, &run_id);
    }
}

#[test]
fn s3_a_root_or_run_dir_owned_by_another_uid_is_refused() {
    if !is_root() {
        skip(
            "s3_a_root_or_run_dir_owned_by_another_uid_is_refused",
            "not root: cannot chown a directory to another uid",
        );
        return;
    }
    let outside = Scratch::new("sec-foreign");
    let topology = outside.dir.join("t.toml");
    std::fs::write(&topology, "[process.a]\ncmd = [\"true\"]\n").unwrap();
    let chown = |path: &Path, uid: u32| {
        nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(uid)), None).unwrap();
    };
    let me = nix::unistd::geteuid().as_raw();

    // A foreign root: `run` refuses it, `clean` skips it.
    let root = root();
    let (run_id, run_dir) = dead_run(&root);
    chown(&root, OTHER_UID);
    let (code, stderr) = run_cli(&topology, &root);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains(&format!("owned by uid {OTHER_UID}")),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);
    assert_eq!(std::fs::metadata(&root).unwrap().uid(), OTHER_UID);
    let (code, out) = clean_cli(&root);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("owned by uid {OTHER_UID}")), "{out}");
    assert_left_alone(&run_dir, &run_id);

    // Our root, but a run directory in it owned by someone else: skipped.
    chown(&root, me);
    chown(&run_dir, OTHER_UID);
    let (code, out) = clean_cli(&root);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("skipped {}", run_dir.display())) && out.contains("owned by uid"),
        "{out}"
    );
    assert_left_alone(&run_dir, &run_id);

    chown(&run_dir, me);
    assert_cleaned(&root, &run_dir, &run_id);
}
