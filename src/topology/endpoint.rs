//! Endpoint syntax: `process`, `process.port`, `@stdin`, `@stdout`, `@external`.

use std::fmt;

/// Longest process or port name accepted. Names end up in object names whose
/// own limits (NAME_MAX 255, `sun_path` 108) must leave room for the run id.
pub const MAX_NAME_LEN: usize = 48;

/// One side of an edge, as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// A port of a process in the topology. `port` is `None` for a bare
    /// process name, which means `stdout` as a source and `stdin` as a sink.
    Process {
        /// The process name.
        process: String,
        /// The port name, if written.
        port: Option<String>,
    },
    /// A standard stream of ipc-run itself.
    Own(EndpointTarget),
    /// A peer that ipc-run does not launch (reached through a named object).
    External,
}

/// ipc-run's own standard streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointTarget {
    /// ipc-run's stdin, usable as a source.
    Stdin,
    /// ipc-run's stdout, usable as a sink.
    Stdout,
}

impl Endpoint {
    /// Parses an endpoint; the error explains the accepted forms.
    pub fn parse(text: &str) -> Result<Self, String> {
        EndpointRef::parse(text).map(EndpointRef::to_endpoint)
    }

    /// The endpoint borrowed, as [`EndpointRef::parse`] gives it.
    pub fn as_ref(&self) -> EndpointRef<'_> {
        match self {
            Endpoint::Process { process, port } => EndpointRef::Process {
                process,
                port: port.as_deref(),
            },
            Endpoint::Own(target) => EndpointRef::Own(*target),
            Endpoint::External => EndpointRef::External,
        }
    }
}

/// An endpoint whose names borrow the text it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointRef<'a> {
    /// A port of a process in the topology; see [`Endpoint::Process`].
    Process {
        /// The process name.
        process: &'a str,
        /// The port name, if written.
        port: Option<&'a str>,
    },
    /// A standard stream of ipc-run itself.
    Own(EndpointTarget),
    /// A peer that ipc-run does not launch.
    External,
}

impl<'a> EndpointRef<'a> {
    /// Parses an endpoint without copying its names; the error explains the
    /// accepted forms.
    pub fn parse(text: &'a str) -> Result<Self, String> {
        match text {
            "@stdin" => return Ok(EndpointRef::Own(EndpointTarget::Stdin)),
            "@stdout" => return Ok(EndpointRef::Own(EndpointTarget::Stdout)),
            "@external" => return Ok(EndpointRef::External),
            _ => {}
        }
        if let Some(rest) = text.strip_prefix('@') {
            return Err(format!(
                "unknown special endpoint `@{rest}` (expected @stdin, @stdout or @external)"
            ));
        }
        let (process, port) = match text.split_once('.') {
            Some((process, port)) => (process, Some(port)),
            None => (text, None),
        };
        let shown = text.escape_debug();
        check_name(process).map_err(|why| format!("invalid process name in `{shown}`: {why}"))?;
        if let Some(port) = port {
            check_name(port).map_err(|why| format!("invalid port name in `{shown}`: {why}"))?;
        }
        Ok(EndpointRef::Process { process, port })
    }

    /// The owned endpoint.
    pub fn to_endpoint(self) -> Endpoint {
        match self {
            EndpointRef::Process { process, port } => Endpoint::Process {
                process: process.to_owned(),
                port: port.map(str::to_owned),
            },
            EndpointRef::Own(target) => Endpoint::Own(target),
            EndpointRef::External => Endpoint::External,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_ref().fmt(f)
    }
}

impl fmt::Display for EndpointRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointRef::Process {
                process,
                port: Some(port),
            } => write!(f, "{process}.{port}"),
            EndpointRef::Process {
                process,
                port: None,
            } => f.write_str(process),
            EndpointRef::Own(EndpointTarget::Stdin) => f.write_str("@stdin"),
            EndpointRef::Own(EndpointTarget::Stdout) => f.write_str("@stdout"),
            EndpointRef::External => f.write_str("@external"),
        }
    }
}

/// Checks a process, port or edge name: 1 to 48 characters of lowercase
/// ASCII letters, digits, `-` and `_`, starting with a letter. Such names are
/// safe inside file names, object names and environment variable names.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "a name has at most {MAX_NAME_LEN} characters, this one has {}",
            name.len()
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("a name starts with a lowercase letter".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'))
    {
        return Err(format!(
            "{bad:?} is not allowed (use a-z, 0-9, `-` and `_`)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            Endpoint::parse("cam.frames"),
            Ok(Endpoint::Process {
                process: "cam".into(),
                port: Some("frames".into())
            })
        );
        assert_eq!(
            Endpoint::parse("cam"),
            Ok(Endpoint::Process {
                process: "cam".into(),
                port: None
            })
        );
        assert_eq!(
            Endpoint::parse("@stdin"),
            Ok(Endpoint::Own(EndpointTarget::Stdin))
        );
        assert_eq!(Endpoint::parse("@external"), Ok(Endpoint::External));
    }

    #[test]
    fn rejects_bad_names() {
        for bad in [
            "",
            "a.b.c",
            "A",
            "../x",
            "a/b",
            "@nope",
            "a.",
            ".a",
            "x\0y",
            &"a".repeat(49),
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
