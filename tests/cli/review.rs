//! Hostile input to the newest commands, each case a finding of a review
//! (`docs/distributed.md`, `docs/operate.md`): a topology name that tries
//! to add a line to what the engines generate (a shell command to a
//! Slurm batch script, a directive to a systemd unit).

use std::path::Path;

use super::ipc_run;
use crate::support::Scratch;

/// A topology whose `name` holds newlines: each line after the first
/// would be a command of the batch script, or a directive of a unit, were
/// the name written as it is. `%n` is a systemd specifier.
const INJECTING: &str = r#"
name = "x\n[Service]\nExecStartPre=/bin/touch PWNED %n\ntouch PWNED\n"

[process.a]
host = "one"
cmd = ["true"]
"#;

fn output_of(args: &[&str], file: &Path) -> String {
    let out = ipc_run()
        .args(["--color", "never"])
        .args(args)
        .args(["--limits", "default"])
        .arg(file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_topology_name_adds_no_command_to_the_slurm_script() {
    let mut scratch = Scratch::new("review-slurm-name");
    let file = scratch.topology(INJECTING);
    let script = output_of(&["slurm", "--script-only"], &file);
    for line in script.lines() {
        assert!(
            !line.starts_with("touch") && !line.starts_with("ExecStartPre"),
            "a line of the name became a line of the script: {line:?}\n{script}"
        );
    }
    assert!(script.contains("topology `x\\n[Service]"), "{script}");
    let path = scratch.dir.join("job.sh");
    std::fs::write(&path, &script).unwrap();
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "bash -n: {}\n{script}",
        String::from_utf8_lossy(&syntax.stderr)
    );
}

#[test]
fn a_topology_name_adds_no_directive_to_the_systemd_units() {
    let mut scratch = Scratch::new("review-systemd-name");
    let file = scratch.topology(INJECTING);
    let units = output_of(&["export", "systemd"], &file);
    assert_eq!(
        units.matches("[Service]\n").count(),
        1,
        "one [Service] section in the one unit:\n{units}"
    );
    for line in units.lines() {
        assert!(
            !line.starts_with("ExecStartPre") && !line.starts_with("touch"),
            "a line of the name became a line of the unit: {line:?}\n{units}"
        );
        if let Some(description) = line.strip_prefix("Description=") {
            // Specifiers are expanded there: `%n` stays text.
            assert!(description.contains("%%n"), "{line}");
        }
    }
}
