//! A `shell` process whose script calls a program that is not installed:
//! the shell prints `NAME: not found` (dash, busybox) or `NAME: command
//! not found` (bash) on its stderr and exits 127. The supervisor recognises
//! that line among the ones it relays, and the exit status, and reports a
//! missing program by name with the Debian package that usually provides
//! it, for a short list of helpers topologies commonly call
//! (`docs/supervision.md`, "A missing program").

/// The status a POSIX shell exits with when a command is not found.
pub const NOT_FOUND: i32 = 127;

/// Well-known helpers and the Debian package that usually provides them.
const PACKAGES: [(&str, &str); 22] = [
    ("socat", "socat"),
    ("python3", "python3"),
    ("python", "python-is-python3"),
    ("strace", "strace"),
    ("ltrace", "ltrace"),
    ("gdb", "gdb"),
    ("nc", "netcat-openbsd"),
    ("netcat", "netcat-openbsd"),
    ("ncat", "ncat"),
    ("curl", "curl"),
    ("wget", "wget"),
    ("jq", "jq"),
    ("xxd", "xxd"),
    ("pv", "pv"),
    ("bc", "bc"),
    ("tcpdump", "tcpdump"),
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("ps", "procps"),
    ("perl", "perl"),
    ("ruby", "ruby"),
    ("node", "nodejs"),
];

/// The program a shell's stderr line says it could not find:
/// `sh: 1: socat: not found`, `bash: line 1: socat: command not found`,
/// `sh: socat: not found`.
pub fn not_found_in(line: &[u8]) -> Option<String> {
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let before = line
        .strip_suffix(": command not found")
        .or_else(|| line.strip_suffix(": not found"))?;
    let name = before.rsplit_once(": ").map_or(before, |(_, name)| name);
    let name = name.trim();
    (!name.is_empty() && !name.contains(char::is_whitespace)).then(|| name.to_owned())
}

/// The Debian package that usually provides `program`, when it is one of
/// the well-known helpers.
pub fn package_of(program: &str) -> Option<&'static str> {
    let base = program.rsplit('/').next().unwrap_or(program);
    PACKAGES
        .iter()
        .find(|(name, _)| *name == base)
        .map(|&(_, package)| package)
}

/// Why a `shell` process that exited 127 failed: the program by name when
/// its shell said which, and the package that provides it when known.
pub fn why(program: Option<&str>) -> String {
    match program {
        None => format!("exit status {NOT_FOUND}: command not found"),
        Some(program) => match package_of(program) {
            Some(package) => format!(
                "command not found: {program} (exit status {NOT_FOUND}; usually in the Debian package `{package}`)"
            ),
            None => format!("command not found: {program} (exit status {NOT_FOUND})"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_name_from_each_shell_s_wording() {
        assert_eq!(
            not_found_in(b"sh: 1: socat: not found").as_deref(),
            Some("socat")
        );
        assert_eq!(
            not_found_in(b"bash: line 1: socat: command not found").as_deref(),
            Some("socat")
        );
        assert_eq!(
            not_found_in(b"bash: socat: command not found").as_deref(),
            Some("socat")
        );
        assert_eq!(
            not_found_in(b"sh: 1: exec: nosuch-tool: not found").as_deref(),
            Some("nosuch-tool")
        );
        assert_eq!(not_found_in(b"page not found"), None);
        assert_eq!(not_found_in(b"everything is fine"), None);
    }

    #[test]
    fn names_the_package_of_well_known_helpers() {
        assert_eq!(package_of("socat"), Some("socat"));
        assert_eq!(package_of("/usr/bin/nc"), Some("netcat-openbsd"));
        assert_eq!(package_of("my-tool"), None);
        assert_eq!(
            why(Some("socat")),
            "command not found: socat (exit status 127; usually in the Debian package `socat`)"
        );
        assert_eq!(why(None), "exit status 127: command not found");
    }
}
