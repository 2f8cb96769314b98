//! Signal names and numbers (Linux, x86_64 and aarch64 numbering).

use super::model::SignalRef;

const SIGNALS: &[(&str, i32)] = &[
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGILL", 4),
    ("SIGTRAP", 5),
    ("SIGABRT", 6),
    ("SIGBUS", 7),
    ("SIGFPE", 8),
    ("SIGKILL", 9),
    ("SIGUSR1", 10),
    ("SIGSEGV", 11),
    ("SIGUSR2", 12),
    ("SIGPIPE", 13),
    ("SIGALRM", 14),
    ("SIGTERM", 15),
    ("SIGCHLD", 17),
    ("SIGCONT", 18),
    ("SIGSTOP", 19),
    ("SIGTSTP", 20),
    ("SIGTTIN", 21),
    ("SIGTTOU", 22),
    ("SIGURG", 23),
    ("SIGXCPU", 24),
    ("SIGXFSZ", 25),
    ("SIGVTALRM", 26),
    ("SIGPROF", 27),
    ("SIGWINCH", 28),
    ("SIGIO", 29),
    ("SIGPWR", 30),
    ("SIGSYS", 31),
];

/// Signals the supervisor forwards to processes that ask for them
/// (`forward_signals`); SIGINT and SIGTERM stop the whole topology instead.
pub const FORWARDABLE: [&str; 4] = ["SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH"];

/// Real-time signals on Linux: the kernel's SIGRTMIN (32) to SIGRTMAX (64).
const REAL_TIME: std::ops::RangeInclusive<i32> = 32..=64;

/// Parses `SIGUSR1`, `USR1`, `sigusr1` or `10` into a signal. Only the
/// standard signals 1–31 are accepted: real-time signals (`SIGRTMIN+n`,
/// 32–64) are refused with an error that says so.
pub fn parse_signal(text: &str) -> Result<SignalRef, String> {
    let upper = text.trim().to_ascii_uppercase();
    let real_time = || {
        format!(
            "`{text}` is a real-time signal; ipc-run accepts only the standard signals 1-31 (SIGRTMIN+n is not supported)"
        )
    };
    if let Ok(number) = upper.parse::<i32>() {
        if REAL_TIME.contains(&number) {
            return Err(real_time());
        }
        return by_number(number).ok_or_else(|| format!("unknown signal number {number}"));
    }
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    if bare.starts_with("RTMIN") || bare.starts_with("RTMAX") {
        return Err(real_time());
    }
    let full = if upper.starts_with("SIG") {
        upper.clone()
    } else {
        format!("SIG{upper}")
    };
    SIGNALS
        .iter()
        .find(|(name, _)| *name == full)
        .map(|&(name, number)| SignalRef { name, number })
        .ok_or_else(|| format!("unknown signal `{text}` (expected a name such as SIGUSR1)"))
}

/// The signal with this number, if it is a standard one.
pub fn by_number(number: i32) -> Option<SignalRef> {
    SIGNALS
        .iter()
        .find(|(_, n)| *n == number)
        .map(|&(name, number)| SignalRef { name, number })
}

/// A signal known to exist.
pub(crate) fn known(name: &str) -> SignalRef {
    SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(name, number)| SignalRef { name, number })
        .unwrap_or(SignalRef {
            name: "SIGTERM",
            number: 15,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_short_names_and_numbers() {
        assert_eq!(parse_signal("SIGUSR1").map(|s| s.number), Ok(10));
        assert_eq!(parse_signal("usr2").map(|s| s.number), Ok(12));
        assert_eq!(parse_signal("15").map(|s| s.name), Ok("SIGTERM"));
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn real_time_signals_are_refused_by_name_and_number() {
        for text in ["SIGRTMIN", "SIGRTMIN+3", "rtmax-1", "34", "64"] {
            let why = parse_signal(text).expect_err(text);
            assert!(why.contains("real-time"), "{text}: {why}");
        }
    }

    #[test]
    fn forwardable_signals_are_known() {
        for name in FORWARDABLE {
            assert_eq!(parse_signal(name).map(|s| s.name), Ok(name));
        }
    }
}
