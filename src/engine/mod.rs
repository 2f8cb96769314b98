//! Engines: hand a placed plan to the infrastructure people already run,
//! instead of growing a cluster manager of ipc-run's own.
//!
//! Each engine turns the plan's host groups (`Plan::placement`; a plan
//! without placement is one group, `local`) into that engine's units of
//! work, each of which runs one group's `ipc-run run --plan PLAN --host G`
//! (docs/distributed.md). Engines read the plan and never change it.

pub(crate) mod export;
pub(crate) mod kubernetes;
pub mod slurm;
pub(crate) mod systemd;
pub(crate) mod yaml;

/// `text` on one line of a generated file (a comment, a unit's
/// `Description=`, an `#SBATCH` option): control characters written as
/// escapes (`\n`, `\u{1b}`), so a name from the topology can neither end
/// the line nor start a line of its own (a shell command in a batch
/// script, a directive in a unit).
pub(crate) fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    crate::diagnostic::escape_controls(text, false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_escapes_control_characters_only() {
        assert_eq!(super::one_line("shop"), "shop");
        assert_eq!(super::one_line("a b\\c"), "a b\\c");
        assert_eq!(super::one_line("a\nb\r\u{1b}"), "a\\nb\\r\\u{1b}");
    }
}
