use std::process::ExitCode;

pub(crate) fn run() -> ExitCode {
    println!("capstan version v{}", env!("CARGO_PKG_VERSION"));
    ExitCode::SUCCESS
}
