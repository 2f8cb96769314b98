//! `ipc-run run --log-dir` files (rotation, restarts), `--timestamps` and
//! `--log-format json`, with real processes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::{Finished, Scratch, run_captured};

/// A private log directory in the case's scratch directory.
fn log_dir(scratch: &Scratch) -> PathBuf {
    let logs = scratch.dir.join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o700)).unwrap();
    logs
}

fn run_with(scratch: &mut Scratch, toml: &str, args: &[&str]) -> Finished {
    let file = scratch.topology(toml);
    let mut command = scratch.run_command(&file);
    command.args(args);
    run_captured(&mut command)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An RFC 3339 UTC time with milliseconds, `2026-01-31T23:59:59.123Z`.
fn is_stamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn log_dir_lines_land_in_a_file_per_stream() {
    let mut scratch = Scratch::new("logfiles-lines");
    let logs = log_dir(&scratch);
    let toml = "[process.a]\nshell = 'echo one; echo two >&2; printf three'\n";
    let run = run_with(&mut scratch, toml, &["--log-dir", logs.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(read(&logs.join("a.stdout.log")), "one\nthree\n");
    assert_eq!(read(&logs.join("a.stderr.log")), "two\n");
    assert!(run.stdout_text().contains("a | one\n"));
}

#[test]
fn log_dir_rotates_at_the_size_and_keeps_keep_files() {
    let mut scratch = Scratch::new("logfiles-rotate");
    let logs = log_dir(&scratch);
    // 100 lines of 10 bytes; files of at most 100 bytes hold 10 lines.
    let toml = "[process.a]\nshell = 'for i in $(seq 1000 1099); do echo line-$i; done'\n";
    let args = [
        "--log-dir",
        logs.to_str().unwrap(),
        "--log-max-size",
        "100",
        "--log-keep",
        "3",
    ];
    let run = run_with(&mut scratch, toml, &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines =
        |range: std::ops::Range<u32>| -> String { range.map(|i| format!("line-{i}\n")).collect() };
    assert_eq!(read(&logs.join("a.stdout.log")), lines(1090..1100));
    assert_eq!(read(&logs.join("a.stdout.log.1")), lines(1080..1090));
    assert_eq!(read(&logs.join("a.stdout.log.2")), lines(1070..1080));
    assert_eq!(read(&logs.join("a.stdout.log.3")), lines(1060..1070));
    assert!(!logs.join("a.stdout.log.4").exists());
    for k in 1..=3 {
        let mode = std::fs::metadata(logs.join(format!("a.stdout.log.{k}")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o600);
    }
    // Every line was relayed too, whatever the files did.
    assert_eq!(run.stdout_text().lines().count(), 100);
}

#[test]
fn log_dir_a_restarted_process_appends_to_the_same_file() {
    let mut scratch = Scratch::new("logfiles-restart");
    let logs = log_dir(&scratch);
    let toml = "[process.a]\nshell = 'echo run-$$; exit 1'\nrestart = \"on-failure\"\n\
                restart_limit = 2\nrestart_backoff = \"1ms\"\n";
    let run = run_with(&mut scratch, toml, &["--log-dir", logs.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let text = read(&logs.join("a.stdout.log"));
    let runs: Vec<&str> = text.lines().collect();
    assert_eq!(runs.len(), 3, "{text}");
    assert!(runs.iter().all(|l| l.starts_with("run-")), "{text}");
}

#[test]
fn log_dir_that_is_missing_or_not_a_directory_is_a_launch_failure() {
    let mut scratch = Scratch::new("logfiles-bad-dir");
    let missing = scratch.dir.join("missing");
    let toml = "[process.a]\nshell = 'echo leaked'\n";
    let run = run_with(
        &mut scratch,
        toml,
        &["--log-dir", missing.to_str().unwrap()],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("missing"), "{}", run.stderr);
    assert!(run.stderr.contains("No such file"), "{}", run.stderr);
    assert!(!run.stdout_text().contains("leaked"));
    assert!(!missing.exists());
    let file = scratch.dir.join("plain");
    std::fs::write(&file, "").unwrap();
    let run = run_with(&mut scratch, toml, &["--log-dir", file.to_str().unwrap()]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("Not a directory"), "{}", run.stderr);
}

#[test]
fn timestamps_start_relayed_lines_and_file_lines() {
    let mut scratch = Scratch::new("logfiles-stamps");
    let logs = log_dir(&scratch);
    let toml = "[process.a]\nshell = 'echo hello; echo oops >&2'\n";
    let args = ["--timestamps", "--log-dir", logs.to_str().unwrap()];
    let run = run_with(&mut scratch, toml, &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let stdout = run.stdout_text();
    let relayed = stdout.strip_prefix("a | ").expect(&stdout);
    let (stamp, rest) = relayed.split_at(24);
    assert!(is_stamp(stamp), "{stdout}");
    assert_eq!(rest, " hello\n");
    let relayed_err = run.stderr.lines().find(|l| l.ends_with(" oops")).unwrap();
    assert!(
        is_stamp(&relayed_err["a | ".len()..][..24]),
        "{}",
        run.stderr
    );
    for (file, line) in [("a.stdout.log", "hello"), ("a.stderr.log", "oops")] {
        let text = read(&logs.join(file));
        assert!(is_stamp(&text[..24]), "{text}");
        assert_eq!(&text[24..], format!(" {line}\n"));
    }
}

#[test]
fn json_format_parses_and_round_trips_every_byte() {
    let mut scratch = Scratch::new("logfiles-json");
    // A UTF-8 line with quotes, a backslash and a tab; a line that is not
    // UTF-8; an empty line; a line on stderr; replicas.
    let toml = r#"
[process.w]
replicas = 2
shell = '''printf 'say "hi"\\\t\303\251\n'; printf '\377\000x\n\n'; echo err >&2'''
"#;
    let run = run_with(&mut scratch, toml, &["--log-format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.stderr.contains("err\n"),
        "stderr lines go to stdout as JSON"
    );
    let mut per_instance: std::collections::BTreeMap<(String, String), Vec<Vec<u8>>> =
        Default::default();
    for line in run.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let value: serde_json::Value = serde_json::from_slice(line)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line)));
        assert_eq!(value["process"], "w");
        assert!(is_stamp(value["time"].as_str().unwrap()), "{value}");
        let bytes = match &value["line"] {
            serde_json::Value::String(text) => text.as_bytes().to_vec(),
            serde_json::Value::Array(values) => values
                .iter()
                .map(|v| u8::try_from(v.as_u64().unwrap()).unwrap())
                .collect(),
            other => panic!("line is {other}"),
        };
        let key = (
            value["instance"].as_str().unwrap().to_owned(),
            value["stream"].as_str().unwrap().to_owned(),
        );
        per_instance.entry(key).or_default().push(bytes);
    }
    let want_out: Vec<Vec<u8>> = vec![
        "say \"hi\"\\\té".as_bytes().to_vec(),
        b"\xff\x00x".to_vec(),
        Vec::new(),
    ];
    for instance in ["w#0", "w#1"] {
        let out = &per_instance[&(instance.to_owned(), "stdout".to_owned())];
        assert_eq!(out, &want_out, "{instance}");
        let err = &per_instance[&(instance.to_owned(), "stderr".to_owned())];
        assert_eq!(err, &vec![b"err".to_vec()], "{instance}");
    }
}
