//! The real launcher behind [`super::Runtime`]: prepare, supervise, clean up.
//!
//! Until `launch` exists in this tree, [`run`] reports that no launcher is
//! built; it will call `launch::prepare`, adapt `Launched` to `Runtime`
//! (`spawn` errors rendered with program and errno), run
//! [`super::supervise`], and call `cleanup` on every path.

use super::{RunOptions, RunOutcome, SuperviseError};
use crate::plan::Plan;

/// Prepares the plan's resources, supervises the run, and always cleans up.
pub fn run(_plan: &Plan, _options: &RunOptions) -> Result<RunOutcome, SuperviseError> {
    Err(SuperviseError::Prepare("no launcher in this build".to_owned()))
}
