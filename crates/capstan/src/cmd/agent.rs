use std::process::ExitCode;

use crate::cli::AgentArgs;

pub(crate) fn run(args: AgentArgs) -> ExitCode {
    tracing::debug!(?args, "agent flags");
    super::not_implemented("capstan agent")
}
