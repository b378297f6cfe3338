//! One module per subcommand.

pub(crate) mod agent;
pub(crate) mod server;
pub(crate) mod version;

use std::process::ExitCode;

/// Exit code for a subcommand whose component is not built yet.
pub(crate) fn not_implemented(what: &str) -> ExitCode {
    eprintln!("capstan: {what} is not implemented yet");
    ExitCode::from(2)
}
