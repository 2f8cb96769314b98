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

/// Parses `SIGUSR1`, `USR1`, `sigusr1` or `10` into a signal.
pub fn parse_signal(text: &str) -> Result<SignalRef, String> {
    let upper = text.trim().to_ascii_uppercase();
    if let Ok(number) = upper.parse::<i32>() {
        return by_number(number).ok_or_else(|| format!("unknown signal number {number}"));
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
}
