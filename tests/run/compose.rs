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
