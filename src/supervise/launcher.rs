//! The real launcher behind [`super::Runtime`]: prepare, supervise, clean up.

use super::{RunOptions, RunOutcome, SuperviseError};
use crate::plan::Plan;

/// Prepares the plan's resources, supervises the run, and always cleans up.
pub fn run(_plan: &Plan, _options: &RunOptions) -> Result<RunOutcome, SuperviseError> {
    Err(SuperviseError::Prepare(
        "no launcher in this build".to_owned(),
    ))
}
