//! Placeholders in plan templates, filled at launch.
//!
//! | placeholder | value |
//! |---|---|
//! | `{run_id}` | the run id, 16 lowercase hex digits |
//! | `{run_dir}` | the run directory's absolute path |
//! | `{run_dir_pct}` | the run directory percent-encoded as one URL component (`/` as `%2F`), for `http+unix://` URLs |
//! | `{pid:INSTANCE}` | pid of the instance's current process (signal edges) |
//! | `{port:CHANNEL}` | port the kernel bound for a TCP/UDP/RPC-over-TCP channel |
//! | `{sysv_id:CHANNEL}` | id of a System V channel's object |
//! | `{sysv_sem_id:CHANNEL}` | id of the semaphore set paired with a System V segment |
//! | `{pid}` | the child's own pid; only as the whole value of `LISTEN_PID`, written by the child |
//! | `{ipc_run}` | the path of the running ipc-run binary (`/proc/self/exe`); also filled in `cmd`/`shell` |
//!
//! In a `shell` script the path is never spliced in as text, which the
//! shell would parse again (a directory named `a; rm -rf x` or `$(…)` would
//! run). The child gets the path in the environment variable
//! [`IPC_RUN_BIN`], and each `{ipc_run}` becomes an expansion of it quoted
//! for where it stands ([`Values::fill_shell`]): `"${IPC_RUN_BIN}"` outside
//! quotes, `${IPC_RUN_BIN}` inside double quotes, `'"${IPC_RUN_BIN}"'`
//! inside single quotes (close, expand, reopen). The scan knows quotes,
//! backslashes, `$( … )` and comments; it does not parse here-documents (an
//! `{ipc_run}` in the body of an unquoted one gets literal quotes).
//!
//! `{{` and `}}` are literal braces; any other `{…}` text is left as it is,
//! so JSON in an env value survives (doubled braces in it are halved).
//! A known placeholder without a value (an instance not started yet, a
//! channel with no port) is an error naming it, never an empty string.

use std::collections::HashMap;

use nix::unistd::Pid;

use super::LaunchError;

/// The variable a `shell` script's `{ipc_run}` expands (see the module docs).
pub const IPC_RUN_BIN: &str = "IPC_RUN_BIN";

const IPC_RUN: &str = "{ipc_run}";

/// Where a point of a shell script stands, for quoting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShellContext {
    /// Outside quotes (the top level).
    Plain,
    /// Inside `$( … )` (outside quotes within it).
    Command,
    /// Inside `"…"`.
    Double,
    /// Inside `'…'`.
    Single,
    /// Inside `$'…'`.
    AnsiC,
}

/// The values placeholders resolve to.
#[derive(Debug, Default, Clone)]
pub struct Values {
    /// `{run_id}`.
    pub run_id: String,
    /// `{run_dir}`.
    pub run_dir: String,
    /// `{pid:…}` by instance.
    pub pids: HashMap<String, Pid>,
    /// `{port:…}` by channel.
    pub ports: HashMap<String, u16>,
    /// `{sysv_id:…}` by channel.
    pub sysv_ids: HashMap<String, i32>,
    /// `{sysv_sem_id:…}` by channel.
    pub sysv_sem_ids: HashMap<String, i32>,
    /// `{ipc_run}`: this binary's path; empty when it could not be read.
    pub ipc_run: String,
}

impl Values {
    /// Substitutes every known placeholder in `template`.
    /// The grammar (`{{`/`}}` for literal braces) is the planner's,
    /// [`crate::plan::placeholders::pieces`], so both agree on what is one.
    pub fn fill(&self, template: &str) -> Result<String, LaunchError> {
        use crate::plan::placeholders::{Piece, pieces};
        let mut out = String::with_capacity(template.len());
        for piece in pieces(template) {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Placeholder(inner) => match self.lookup(inner, template)? {
                    Some(value) => out.push_str(&value),
                    None => {
                        out.push('{');
                        out.push_str(inner);
                        out.push('}');
                    }
                },
            }
        }
        Ok(out)
    }

    /// Fills `{ipc_run}` in a `shell` script with a quoted expansion of
    /// [`IPC_RUN_BIN`] (module docs); `None` when the script has none (the
    /// variable is then not needed).
    pub fn fill_shell(&self, script: &str) -> Result<Option<String>, LaunchError> {
        if !script.contains(IPC_RUN) {
            return Ok(None);
        }
        self.fill_argv(IPC_RUN)?;
        Ok(Some(quote_ipc_run(script)))
    }

    /// Fills `{ipc_run}` only: the one placeholder an argv may hold (other
    /// braces in a command, such as `${x}` in a shell script, are left
    /// alone).
    pub fn fill_argv(&self, arg: &str) -> Result<String, LaunchError> {
        if !arg.contains(IPC_RUN) {
            return Ok(arg.to_owned());
        }
        if self.ipc_run.is_empty() {
            return Err(LaunchError::Placeholder {
                placeholder: IPC_RUN.into(),
                template: arg.to_owned(),
                reason: "the path of the running ipc-run binary could not be read".into(),
            });
        }
        Ok(arg.replace(IPC_RUN, &self.ipc_run))
    }

    fn lookup(&self, inner: &str, template: &str) -> Result<Option<String>, LaunchError> {
        let missing = |reason: &str| LaunchError::Placeholder {
            placeholder: format!("{{{inner}}}"),
            template: template.to_owned(),
            reason: reason.to_owned(),
        };
        let value = match inner.split_once(':') {
            None if inner == "run_id" => self.run_id.clone(),
            None if inner == "run_dir" => self.run_dir.clone(),
            None if inner == "ipc_run" => self.fill_argv("{ipc_run}")?,
            None if inner == "run_dir_pct" => {
                let mut encoded = String::with_capacity(self.run_dir.len() * 3);
                crate::plan::percent_encode_into(&mut encoded, &self.run_dir);
                encoded
            }
            Some(("pid", instance)) => self
                .pids
                .get(instance)
                .ok_or_else(|| missing("that instance has no running process yet"))?
                .to_string(),
            Some(("port", channel)) => self
                .ports
                .get(channel)
                .ok_or_else(|| missing("that channel has no bound TCP or UDP port"))?
                .to_string(),
            Some(("sysv_id", channel)) => self
                .sysv_ids
                .get(channel)
                .ok_or_else(|| missing("that channel has no System V object"))?
                .to_string(),
            Some(("sysv_sem_id", channel)) => self
                .sysv_sem_ids
                .get(channel)
                .ok_or_else(|| missing("that channel has no System V semaphore set"))?
                .to_string(),
            None if inner == "pid" => {
                return Err(missing(
                    "the child's own pid is only known in the child (LISTEN_PID)",
                ));
            }
            _ => return Ok(None),
        };
        Ok(Some(value))
    }
}

/// `script` with each `{ipc_run}` replaced by an expansion of
/// [`IPC_RUN_BIN`] quoted for its context.
fn quote_ipc_run(script: &str) -> String {
    use ShellContext::*;
    let bytes = script.as_bytes();
    let mut out = String::with_capacity(script.len() + 32);
    let mut stack = vec![Plain];
    // `i` scans bytes; text is copied from `copied` up to each
    // placeholder, both of which start at an ASCII byte.
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        let top = *stack.last().unwrap_or(&Plain);
        if bytes[i..].starts_with(IPC_RUN.as_bytes()) {
            out.push_str(&script[copied..i]);
            out.push_str(match top {
                Plain | Command => "\"${IPC_RUN_BIN}\"",
                Double => "${IPC_RUN_BIN}",
                Single => "'\"${IPC_RUN_BIN}\"'",
                AnsiC => "'\"${IPC_RUN_BIN}\"$'",
            });
            i += IPC_RUN.len();
            copied = i;
            continue;
        }
        let word_start = i == 0 || b" \t\n;&|()".contains(&bytes[i - 1]);
        match (top, bytes[i]) {
            (Single, b'\'') | (AnsiC, b'\'') | (Double, b'"') => {
                stack.pop();
            }
            (Single, _) => {}
            (AnsiC | Double | Plain | Command, b'\\') => i += 1,
            (AnsiC, _) => {}
            (Double | Plain | Command, b'$') if bytes.get(i + 1) == Some(&b'(') => {
                stack.push(Command);
                i += 1;
            }
            (Plain | Command, b'$') if bytes.get(i + 1) == Some(&b'\'') => {
                stack.push(AnsiC);
                i += 1;
            }
            (Plain | Command, b'\'') => stack.push(Single),
            (Plain | Command, b'"') => stack.push(Double),
            (Command, b'(') => stack.push(Command),
            (Command, b')') => {
                stack.pop();
            }
            (Plain | Command, b'#') if word_start => {
                // A comment runs to the end of the line.
                while i + 1 < bytes.len() && bytes[i + 1] != b'\n' {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&script[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        let mut v = Values {
            run_id: "0123456789abcdef".into(),
            run_dir: "/run/x".into(),
            ..Values::default()
        };
        v.pids.insert("b".into(), Pid::from_raw(42));
        v.ports.insert("web".into(), 8080);
        v.sysv_ids.insert("q".into(), 7);
        v
    }

    #[test]
    fn fills_known_placeholders_and_keeps_other_braces() {
        let v = values();
        assert_eq!(
            v.fill("{run_dir}/a-{run_id} pid={pid:b} port={port:web} id={sysv_id:q}")
                .unwrap(),
            "/run/x/a-0123456789abcdef pid=42 port=8080 id=7"
        );
        assert_eq!(v.fill(r#"{"a":1} {x} {"#).unwrap(), r#"{"a":1} {x} {"#);
        assert_eq!(
            v.fill("{{run_id}}={run_id} {{pid}}").unwrap(),
            "{run_id}=0123456789abcdef {pid}"
        );
    }

    #[test]
    fn run_dir_pct_makes_an_http_unix_url_whole() {
        let v = Values {
            run_dir: "/run/user/1000/ipc-run/0123456789abcdef".into(),
            ..Values::default()
        };
        // As the planner writes the url of an http rpc edge `api`.
        assert_eq!(
            v.fill("http+unix://{run_dir_pct}%2Fapi.sock").unwrap(),
            "http+unix://%2Frun%2Fuser%2F1000%2Fipc-run%2F0123456789abcdef%2Fapi.sock"
        );
        let odd = Values {
            run_dir: "/tmp/a b%c/x".into(),
            ..Values::default()
        };
        assert_eq!(odd.fill("{run_dir_pct}").unwrap(), "%2Ftmp%2Fa%20b%25c%2Fx");
    }

    #[test]
    fn http_unix_url_of_a_plan_encodes_the_filled_socket_path() {
        let text = "[process.api]\ncmd = [\"a\"]\n[process.client]\ncmd = [\"c\"]\n\
                    [[edge]]\nname = \"api\"\nfrom = \"client.api\"\nto = \"api.api\"\n\
                    traffic = \"request\"\nprotocol = \"http\"\n";
        let topology =
            crate::topology::Topology::parse(std::path::Path::new("t.toml"), text.into())
                .expect("valid");
        let planned = crate::plan::plan(&topology, &crate::plan::Limits::default()).expect("valid");
        let client = &planned.plan.processes[1];
        let var = client
            .env
            .vars(&planned.plan.channels)
            .map(Result::unwrap)
            .find(|v| &**v.name == "IPC_PORT_API")
            .expect("the client's port variable");
        let v = Values {
            run_dir: "/run/user/1000/ipc-run/0123456789abcdef".into(),
            ..Values::default()
        };
        let filled = v.fill(&var.value).unwrap();
        let field = |key: &str| {
            filled
                .split(' ')
                .find_map(|kv| kv.strip_prefix(key))
                .expect(key)
                .to_owned()
        };
        let mut expected = String::from("http+unix://");
        crate::plan::percent_encode_into(&mut expected, &field("address="));
        assert_eq!(field("url="), expected);
        assert_eq!(
            expected,
            "http+unix://%2Frun%2Fuser%2F1000%2Fipc-run%2F0123456789abcdef%2Fapi.sock"
        );
    }

    #[test]
    fn unknown_values_are_errors() {
        let err = values().fill("{pid:nobody}").unwrap_err().to_string();
        assert!(err.contains("{pid:nobody}"), "{err}");
    }

    #[test]
    fn ipc_run_fills_argv_and_env() {
        let mut v = values();
        assert!(v.fill_argv("{ipc_run}").is_err(), "no path: an error");
        v.ipc_run = "/usr/bin/ipc-run".into();
        assert_eq!(v.fill_argv("{ipc_run}").unwrap(), "/usr/bin/ipc-run");
        assert_eq!(
            v.fill_argv("{ipc_run} port read x | grep ${y}").unwrap(),
            "/usr/bin/ipc-run port read x | grep ${y}"
        );
        // Only `{ipc_run}` in argv: other placeholders stay as written.
        assert_eq!(v.fill_argv("{run_id} {pid}").unwrap(), "{run_id} {pid}");
        assert_eq!(v.fill("bin={ipc_run}").unwrap(), "bin=/usr/bin/ipc-run");
    }

    #[test]
    fn ipc_run_in_a_shell_script_expands_a_variable_quoted_for_its_place() {
        let mut v = values();
        v.ipc_run = "/opt/a b;$(x)'\"/ipc-run".into();
        let fill = |s: &str| v.fill_shell(s).unwrap().unwrap();
        assert_eq!(fill("{ipc_run} port"), "\"${IPC_RUN_BIN}\" port");
        assert_eq!(fill("'{ipc_run}' port"), "''\"${IPC_RUN_BIN}\"'' port");
        assert_eq!(fill("\"{ipc_run}\" port"), "\"${IPC_RUN_BIN}\" port");
        assert_eq!(
            fill("echo \"$(cat '{ipc_run}')\" {ipc_run}x"),
            "echo \"$(cat ''\"${IPC_RUN_BIN}\"'')\" \"${IPC_RUN_BIN}\"x"
        );
        assert_eq!(
            fill("# it's\n\\'{ipc_run} é{ipc_run}"),
            "# it's\n\\'\"${IPC_RUN_BIN}\" é\"${IPC_RUN_BIN}\""
        );
        assert_eq!(v.fill_shell("echo ${x}").unwrap(), None);
        v.ipc_run.clear();
        assert!(v.fill_shell("{ipc_run}").is_err(), "no path: an error");
    }
}
