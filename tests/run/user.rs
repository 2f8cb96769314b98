//! `user` and `group` through the real binary (S6): the child's uid, gid and
//! supplementary groups all change; unknown names fail the launch cleanly.

use crate::support::run_topology;

/// The `Uid:`/`Gid:`/`Groups:` fields of a relayed `/proc/self/status`.
fn field(stdout: &str, key: &str) -> Vec<u32> {
    let line = stdout
        .lines()
        .filter_map(|l| l.split_once(" | ").map(|(_, rest)| rest))
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in:\n{stdout}"));
    line[key.len()..]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn s6_user_changes_groups_gid_and_uid() {
    if !is_root() {
        println!("SKIP s6_user_changes_groups_gid_and_uid: switching users needs root");
        return;
    }
    let (code, stdout, stderr) = run_topology(
        "switch",
        r#"
[process.who]
cmd = ["cat", "/proc/self/status"]
user = "4000000001"
group = "4000000002"
cwd = "/"

[process.named]
cmd = ["sh", "-c", "echo \"user=$USER home=$HOME\"; id -u; id -G"]
user = "nobody"
"#,
    );
    assert_eq!(code, 0, "{stderr}");
    let who: String = stdout
        .lines()
        .filter(|l| l.starts_with("who "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(field(&who, "Uid:"), vec![4_000_000_001; 4], "{who}");
    assert_eq!(field(&who, "Gid:"), vec![4_000_000_002; 4], "{who}");
    assert_eq!(field(&who, "Groups:"), vec![4_000_000_002], "{who}");
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let named: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("named | "))
        .collect();
    assert_eq!(
        named[0],
        format!("user=nobody home={}", nobody.dir.display()),
        "{stdout}"
    );
    assert_eq!(named[1], nobody.uid.to_string());
    let groups: Vec<u32> = named[2]
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    assert!(
        !groups.contains(&0),
        "root's group 0 was dropped: {groups:?}"
    );
    assert!(groups.contains(&nobody.gid.as_raw()));
}

#[test]
fn an_unknown_user_fails_the_launch_before_anything_is_created() {
    let (code, _, stderr) = run_topology(
        "unknown",
        r#"
[process.a]
cmd = ["true"]
user = "no-such-user-for-ipc-run"

[process.b]
cmd = ["cat"]

[[edge]]
from = "a.out"
to = "b.in"
mechanism = "fifo"
"#,
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("no user `no-such-user-for-ipc-run`"),
        "{stderr}"
    );
}
