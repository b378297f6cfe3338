use std::process::ExitCode;

use crate::cli::ServerArgs;

pub(crate) fn run(args: ServerArgs) -> ExitCode {
    tracing::debug!(?args, "server flags");
    super::not_implemented("capstan server")
}
