//! A composed topology run for real: `env_file` read at each start (after
//! ipc-run's pass-through, before `env`), `${VAR}` from ipc-run's
//! environment, `--profile` and `IPC_RUN_PROFILES` choosing processes.

use crate::support::{Scratch, lines_of, run_captured};

#[test]
fn env_file_is_read_at_start_and_env_wins() {
    let mut scratch = Scratch::new("env-file");
    std::fs::write(
        scratch.dir.join("app.env"),
        "# read at each start\nGREETING='from the file'\nOVERRIDDEN=file\n",
    )
    .unwrap();
    let file = scratch.topology(
        r#"
[process.show]
shell = 'echo "$GREETING|$OVERRIDDEN|$FROM_VAR"'
env_file = "app.env"
env = { OVERRIDDEN = "env", FROM_VAR = "${IPC_RUN_TEST_COMPOSE_VAR}" }
"#,
    );
    let mut command = scratch.run_command(&file);
    command.env("IPC_RUN_TEST_COMPOSE_VAR", "interpolated");
    let finished = run_captured(&mut command);
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(
        lines_of(&finished.stdout, "show"),
        ["from the file|env|interpolated"]
    );
    scratch.assert_left_nothing();
}

/// A restart reads the file again, as systemd's `EnvironmentFile=` is read
/// at each start: the first run rewrites it and fails, the second sees it.
#[test]
fn env_file_is_read_again_on_restart() {
    let mut scratch = Scratch::new("env-file-restart");
    let env = scratch.dir.join("round.env");
    std::fs::write(&env, "ROUND=1\n").unwrap();
    let file = scratch.topology(&format!(
        r#"
[process.round]
shell = '''
echo "round $ROUND"
if [ "$ROUND" = 1 ]; then echo ROUND=2 > {env}; exit 1; fi
'''
env_file = "round.env"
restart = "on-failure"
restart_backoff = "10ms"
"#,
        env = env.display()
    ));
    let finished = scratch.run(&file);
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(lines_of(&finished.stdout, "round"), ["round 1", "round 2"]);
    scratch.assert_left_nothing();
}

/// `--profile` adds the processes of a profile and the edges that touch
/// them; `IPC_RUN_PROFILES` does the same when no `--profile` is given.
#[test]
fn profiles_choose_processes() {
    let mut scratch = Scratch::new("profiles");
    let file = scratch.topology(
        r#"
[process.app]
cmd = ["echo", "app"]

[process.extra]
cmd = ["echo", "extra"]
profiles = ["debug"]
"#,
    );
    let plain = scratch.run(&file);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert!(lines_of(&plain.stdout, "extra").is_empty());
    let mut flagged = scratch.run_command(&file);
    flagged.args(["--profile", "debug"]);
    let mut from_env = scratch.run_command(&file);
    from_env.env("IPC_RUN_PROFILES", "debug");
    for mut command in [flagged, from_env] {
        let finished = run_captured(&mut command);
        assert_eq!(finished.code, 0, "{}", finished.stderr);
        assert_eq!(lines_of(&finished.stdout, "extra"), ["extra"]);
        assert_eq!(lines_of(&finished.stdout, "app"), ["app"]);
    }
    scratch.assert_left_nothing();
}

/// A plan keeps the env file's path, not its values; the file is read when
/// the process starts, so one gone by then fails the launch (exit 3) and
/// leaves nothing.
#[test]
fn env_file_missing_at_launch_fails_the_start() {
    let mut scratch = Scratch::new("env-file-gone");
    let env = scratch.dir.join("secret.env");
    std::fs::write(&env, "TOKEN=s3cret\n").unwrap();
    let file = scratch.topology(
        r#"
[process.show]
shell = 'echo "token $TOKEN"'
env_file = "secret.env"
"#,
    );
    let plan = std::process::Command::new(crate::support::IPC_RUN)
        .args(["--color", "never", "plan", "--format", "json"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let json = String::from_utf8(plan.stdout).unwrap();
    assert!(!json.contains("s3cret"), "the value is not in the plan");
    assert!(
        json.contains(&env.display().to_string()),
        "the path is: {json}"
    );
    let plan_file = scratch.dir.join("plan.json");
    std::fs::write(&plan_file, &json).unwrap();
    // It is read at start: with the file there, the child gets the value.
    let mut command = std::process::Command::new(crate::support::IPC_RUN);
    command
        .args(["--color", "never", "run", "--plan"])
        .arg(&plan_file)
        .arg("--runtime-dir")
        .arg(scratch.runtime());
    let finished = run_captured(&mut command);
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(lines_of(&finished.stdout, "show"), ["token s3cret"]);
    std::fs::remove_file(&env).unwrap();
    let finished = run_captured(&mut command);
    assert_eq!(finished.code, 3, "{}", finished.stderr);
    assert!(
        finished.stderr.contains("env file of show"),
        "{}",
        finished.stderr
    );
    scratch.assert_left_nothing();
}
