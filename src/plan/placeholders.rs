//! Placeholders in the templates a topology writes (`env` values, `cwd`):
//! the one grammar the planner checks and the launcher fills.
//!
//! - `{{` is a literal `{` and `}}` a literal `}`;
//! - `{NAME}` or `{NAME:ARG}` with a known name is a placeholder
//!   ([`is_placeholder`]);
//! - any other brace is literal, so a JSON value without doubled braces
//!   survives as written.
//!
//! The last pass of the planner ([`check`]) refuses every placeholder the
//! launcher could not fill: the child's own `{pid}`, `{pid:X}` of an instance
//! that does not exist or may not have started yet, `{port:X}`,
//! `{sysv_id:X}` and `{sysv_sem_id:X}` of a channel without that value.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::edges::ChannelDecl;
use super::model::Mechanism;
use super::processes::ProcessDecl;
use super::{Sink, Span};
use crate::diagnostic::{Diagnostic, Label};

/// Placeholders without an argument.
const PLAIN: &[&str] = &["run_id", "run_dir", "run_dir_pct", "ipc_run", "pid"];
/// Placeholders with an argument, `{NAME:ARG}`.
const WITH_ARGUMENT: &[&str] = &["pid", "port", "sysv_id", "sysv_sem_id"];

/// A piece of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text copied as it is (an escaped brace is one such piece).
    Text(&'a str),
    /// A placeholder, the text between its braces (`run_id`, `pid:b`).
    Placeholder(&'a str),
}

/// Whether `inner`, the text between braces, names a placeholder.
pub fn is_placeholder(inner: &str) -> bool {
    match inner.split_once(':') {
        None => PLAIN.contains(&inner),
        Some((name, argument)) => WITH_ARGUMENT.contains(&name) && !argument.is_empty(),
    }
}

/// Splits a template into text and placeholders, in order.
pub fn pieces(template: &str) -> Vec<Piece<'_>> {
    let bytes = template.as_bytes();
    let mut out = Vec::new();
    let mut text_from = 0;
    let mut i = 0;
    // Braces are ASCII, so every index sliced at is a char boundary.
    while i < bytes.len() {
        let doubled = bytes.get(i + 1) == Some(&bytes[i]);
        match bytes[i] {
            b'{' | b'}' if doubled => {
                push_text(&mut out, &template[text_from..i]);
                out.push(Piece::Text(&template[i..=i]));
                i += 2;
                text_from = i;
            }
            b'{' => {
                let rest = &template[i + 1..];
                let inner = rest
                    .find(['{', '}'])
                    .filter(|&end| rest.as_bytes()[end] == b'}')
                    .map(|end| &rest[..end])
                    .filter(|inner| is_placeholder(inner));
                if let Some(inner) = inner {
                    push_text(&mut out, &template[text_from..i]);
                    out.push(Piece::Placeholder(inner));
                    i += inner.len() + 2;
                    text_from = i;
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    push_text(&mut out, &template[text_from..]);
    out
}

fn push_text<'a>(out: &mut Vec<Piece<'a>>, text: &'a str) {
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
}

/// E0709 for every placeholder in a process's `env` values and `cwd` that
/// the launcher could not fill. Runs on a plan without errors, with its
/// start order.
pub fn check(
    processes: &[ProcessDecl],
    channels: &[ChannelDecl],
    start_order: &[Arc<str>],
    sink: &mut Sink,
) {
    // The context's maps cover every instance and channel: made only when
    // there is a placeholder to check, which most large plans do not have.
    let written = |process: &ProcessDecl| {
        process
            .spec
            .env()
            .iter()
            .map(|(_, value)| value)
            .chain(process.spec.cwd.iter())
            .any(|value| value.get_ref().contains('{'))
    };
    if !processes.iter().any(written) {
        return;
    }
    let context = Context::new(processes, channels, start_order);
    for (p, process) in processes.iter().enumerate() {
        let templates = process
            .spec
            .env()
            .iter()
            .map(|(key, value)| (format!("`env.{}`", key.get_ref()), value))
            .chain(process.spec.cwd.iter().map(|cwd| ("`cwd`".to_owned(), cwd)));
        for (what, value) in templates {
            for piece in pieces(value.get_ref()) {
                let Piece::Placeholder(inner) = piece else {
                    continue;
                };
                if let Err(problem) = context.fillable(p, inner) {
                    sink.push(problem.diagnostic(inner, &what, process, value.span()));
                }
            }
        }
    }
}

/// What the check needs to know about the plan.
struct Context<'p> {
    processes: &'p [ProcessDecl],
    channels: HashMap<&'p str, &'p Mechanism>,
    /// Instance name -> (process index, position in the start order).
    instances: HashMap<&'p str, (usize, usize)>,
}

/// Why a placeholder cannot be filled.
enum Problem {
    OwnPid,
    /// With the number of replicas when the name is a replicated process.
    NoInstance(Option<usize>),
    SameProcess,
    MayStartLater,
    NoChannel,
    NoValue(&'static str),
}

impl<'p> Context<'p> {
    fn new(
        processes: &'p [ProcessDecl],
        channels: &'p [ChannelDecl],
        start_order: &'p [Arc<str>],
    ) -> Self {
        let process_of: HashMap<&str, usize> = processes
            .iter()
            .enumerate()
            .flat_map(|(p, process)| process.instances.iter().map(move |i| (i.as_ref(), p)))
            .collect();
        let instances = start_order
            .iter()
            .enumerate()
            .filter_map(|(position, name)| {
                let p = *process_of.get(&**name)?;
                Some((&**name, (p, position)))
            })
            .collect();
        Context {
            processes,
            channels: channels
                .iter()
                .map(|c| (c.plan.id.as_ref(), &c.plan.mechanism))
                .collect(),
            instances,
        }
    }

    /// Whether the placeholder `{inner}` in process `p`'s templates has a
    /// value when each of its instances is spawned.
    fn fillable(&self, p: usize, inner: &str) -> Result<(), Problem> {
        let Some((name, argument)) = inner.split_once(':') else {
            return if inner == "pid" {
                Err(Problem::OwnPid)
            } else {
                Ok(())
            };
        };
        if name == "pid" {
            return self.started_before(p, argument);
        }
        let mechanism = self.channels.get(argument).ok_or(Problem::NoChannel)?;
        let has_value = match (name, mechanism) {
            ("port", Mechanism::Tcp { .. } | Mechanism::Udp { .. }) => true,
            ("port", Mechanism::Rpc(rpc)) => rpc.transport == crate::plan::Transport::Tcp,
            (
                "sysv_id",
                Mechanism::SysvShm { .. } | Mechanism::SysvMq { .. } | Mechanism::SysvSem { .. },
            ) => true,
            ("sysv_sem_id", Mechanism::SysvShm(shm)) => shm.semaphore_set,
            _ => false,
        };
        if has_value {
            Ok(())
        } else {
            Err(Problem::NoValue(mechanism.name()))
        }
    }

    /// `{pid:instance}` has a value when `p` is spawned: the instance belongs
    /// to another process that `p` waits for (`after`), or that comes
    /// earlier in the start order and waits for nothing `p` does not wait
    /// for (so it is spawned in the same sweep or an earlier one).
    fn started_before(&self, p: usize, instance: &str) -> Result<(), Problem> {
        let Some(&(q, position)) = self.instances.get(instance) else {
            let replicas = self
                .processes
                .iter()
                .find(|d| *d.name == *instance)
                .map(|d| d.instances.len());
            return Err(Problem::NoInstance(replicas));
        };
        if q == p {
            return Err(Problem::SameProcess);
        }
        let waits_for_p = self.waits_for(p);
        if waits_for_p.contains(&q) {
            return Ok(());
        }
        let first_of_p = self.processes[p]
            .instances
            .iter()
            .filter_map(|i| self.instances.get(i.as_ref()).map(|&(_, at)| at))
            .min()
            .unwrap_or(usize::MAX);
        if position < first_of_p && self.waits_for(q).is_subset(&waits_for_p) {
            Ok(())
        } else {
            Err(Problem::MayStartLater)
        }
    }

    /// The processes `p` waits for through `after`, transitively.
    fn waits_for(&self, p: usize) -> BTreeSet<usize> {
        let mut found = BTreeSet::new();
        let mut stack = self.processes[p].after().to_vec();
        while let Some(next) = stack.pop() {
            if found.insert(next) {
                stack.extend(self.processes[next].after());
            }
        }
        found
    }
}

impl Problem {
    fn diagnostic(&self, inner: &str, what: &str, process: &ProcessDecl, span: Span) -> Diagnostic {
        let shown = format!("{{{inner}}}");
        let headline = format!(
            "`{shown}` in {what} of `{}` cannot be filled at launch",
            process.name
        );
        let argument = inner.split_once(':').map_or("", |(_, a)| a);
        let (label, help) = match self {
            Problem::OwnPid => (
                "the child's own pid is only known in the child".to_owned(),
                "read the pid in the program itself (`$$` in a shell, getpid())".to_owned(),
            ),
            Problem::NoInstance(Some(replicas)) => (
                format!("`{argument}` has replicas, so no instance has that name"),
                format!(
                    "name one instance, `{argument}#0` to `{argument}#{}`",
                    replicas.saturating_sub(1)
                ),
            ),
            Problem::NoInstance(None) => (
                format!("no instance `{argument}` in this topology"),
                "name a process of this topology (an instance `name#i` for replicas)".to_owned(),
            ),
            Problem::SameProcess => (
                format!("`{argument}` is an instance of `{}` itself", process.name),
                "an instance's pid is only known once it is spawned; read it in the program".to_owned(),
            ),
            Problem::MayStartLater => (
                format!("`{argument}` may not have started when `{}` starts", process.name),
                format!(
                    "add `after = [\"{}\"]` to `{}` so it starts (and is ready) first",
                    argument.split('#').next().unwrap_or(argument),
                    process.name
                ),
            ),
            Problem::NoChannel => (
                format!("no edge named `{argument}` in this topology"),
                "name an edge (its `name`, or the generated name shown by `ipc-run plan`)"
                    .to_owned(),
            ),
            Problem::NoValue(kind) => (
                format!("`{argument}` is a {kind} channel, which has no such value"),
                "`{port:X}` needs a tcp, udp or rpc-over-tcp edge; `{sysv_id:X}` a System V one; `{sysv_sem_id:X}` a sysv-shm edge with its semaphores".to_owned(),
            ),
        };
        Diagnostic::error("E0709", headline)
            .with_label(Label::primary(span, label))
            .with_note("write `{{` and `}}` for literal braces")
            .with_help(help)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubled_braces_are_literal_and_known_names_are_placeholders() {
        use Piece::{Placeholder as P, Text as T};
        assert_eq!(
            pieces("a{run_id}b{{run_id}}{pid:x}"),
            [
                T("a"),
                P("run_id"),
                T("b"),
                T("{"),
                T("run_id"),
                T("}"),
                P("pid:x")
            ]
        );
        assert_eq!(pieces(r#"{"a":1} {x} {"#), [T(r#"{"a":1} {x} {"#)]);
        assert_eq!(pieces("{pid:}{nope:x}}"), [T("{pid:}{nope:x"), T("}")]);
        assert_eq!(pieces("{{{run_dir}}}"), [T("{"), P("run_dir"), T("}")]);
        assert_eq!(pieces("é{a{run_id}"), [T("é{a"), P("run_id")]);
    }
}
