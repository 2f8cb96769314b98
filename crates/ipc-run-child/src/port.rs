//! Reading a port's description from the environment.

use std::os::fd::{OwnedFd, RawFd};

use crate::description::{Description, End, Kind};
use crate::{ChildError, sys};

/// One port, as described by its environment variable.
#[derive(Debug)]
pub struct Port {
    name: String,
    description: Description,
    /// Read from this process's environment: its `fd=` names an fd the
    /// process inherited for the port, which [`Port::take_fd`] may adopt.
    inherited: bool,
}

/// The environment variable naming port `name`: `IPC_PORT_` and the name
/// upper-cased, `-` as `_`.
pub fn port_variable(name: &str) -> String {
    let mut var = String::with_capacity("IPC_PORT_".len() + name.len());
    var.push_str("IPC_PORT_");
    var.extend(name.chars().map(|c| match c {
        '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    var
}

/// Reads port `name` from the environment.
pub fn port(name: &str) -> Result<Port, ChildError> {
    let var = port_variable(name);
    let value = std::env::var(&var).map_err(|_| ChildError::Missing(var.clone()))?;
    let mut port = Port::parse(name, &var, &value)?;
    port.inherited = true;
    Ok(port)
}

impl Port {
    /// Parses the value of a port variable (`var` is used in messages).
    pub fn parse(name: &str, var: &str, value: &str) -> Result<Port, ChildError> {
        let description =
            value
                .parse()
                .map_err(|e: crate::DescriptionError| ChildError::Malformed {
                    var: var.to_owned(),
                    why: e.to_string(),
                })?;
        Ok(Port {
            name: name.to_owned(),
            description,
            inherited: false,
        })
    }

    /// The port's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole description.
    pub fn description(&self) -> &Description {
        &self.description
    }

    /// The mechanism.
    pub fn kind(&self) -> Kind {
        self.description.kind()
    }

    /// Which end this process holds.
    pub fn end(&self) -> End {
        self.description.end
    }

    /// The fd number, if the port is handed over as an fd.
    pub fn fd_number(&self) -> Option<RawFd> {
        self.description.fd
    }

    /// Takes ownership of the port's fd, made close-on-exec. `None` if the
    /// port has none, or it is not open in this process, or it was taken
    /// already (through this `Port` or any other: each inherited fd is
    /// adopted once per process), or the port was not read from the
    /// environment by [`port`]: only the environment the process was
    /// started with says which fds it inherited, so a description parsed
    /// from other text hands over no fd.
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        if !self.inherited {
            return None;
        }
        sys::take_inherited(self.description.fd?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names() {
        assert_eq!(port_variable("frames"), "IPC_PORT_FRAMES");
        assert_eq!(port_variable("raw-in"), "IPC_PORT_RAW_IN");
    }

    #[test]
    fn parse_reports_the_variable() {
        let err = Port::parse("p", "IPC_PORT_P", "kind=pipe channel=c end=read fd=x")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "IPC_PORT_P is malformed: fd `x` is not an fd number");
    }

    #[test]
    fn an_fd_is_taken_once() {
        let file = std::fs::File::open("/dev/null").unwrap();
        // Opened here, close-on-exec: not an inherited fd, refused.
        let opened_here = std::os::fd::AsRawFd::as_raw_fd(&file);
        let text = format!("kind=pipe channel=c end=read fd={opened_here}");
        let mut own = Port::parse("p", "IPC_PORT_P", &text).unwrap();
        own.inherited = true;
        assert!(own.take_fd().is_none(), "an fd opened after exec");
        // Hand the number over as ipc-run would: close-on-exec cleared (it
        // crossed exec), the File gives up its fd.
        crate::sys::clear_cloexec(std::os::fd::AsFd::as_fd(&file));
        let fd = std::os::fd::IntoRawFd::into_raw_fd(file);
        let text = format!("kind=pipe channel=c end=read fd={fd}");
        let mut parsed = Port::parse("p", "IPC_PORT_P", &text).unwrap();
        assert!(parsed.take_fd().is_none(), "not from the environment");
        let mut first = Port::parse("p", "IPC_PORT_P", &text).unwrap();
        let mut second = Port::parse("p", "IPC_PORT_P", &text).unwrap();
        first.inherited = true;
        second.inherited = true;
        assert!(first.take_fd().is_some());
        assert!(first.take_fd().is_none());
        assert!(second.take_fd().is_none());
    }
}
