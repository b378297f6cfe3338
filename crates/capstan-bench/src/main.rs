//! `capstan-bench`: benchmarks that drive the real `capstan` binary from outside, as a client would.
//!
//! `capstan-bench api` starts `capstan server` on a free loopback port and measures start-up time,
//! memory, create throughput and latency, list time and watch delivery over HTTPS with the admin
//! client certificate; it prints one table with the targets (figures go to
//! `docs/benchmarks.md`). This crate is a client only: it depends on `capstan-pki` for the TLS
//! configuration and on no server-side crate, so it measures what a real client sees.

mod api;
mod client;
mod kubeconfig;
mod procfs;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "capstan-bench",
    about = "Benchmarks of the real capstan binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// API server: start to /readyz, idle RSS, create throughput, list, watch delivery.
    Api(ApiArgs),
}

/// Flags of `capstan-bench api`.
#[derive(Debug, Args)]
pub(crate) struct ApiArgs {
    /// The `capstan` binary to start (an optimized build).
    #[arg(long, default_value = "target/release/capstan")]
    pub(crate) server_bin: PathBuf,
    /// Pods to create.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) pods: usize,
    /// Concurrent creating clients, each on its own HTTP/2 connection.
    #[arg(long, default_value_t = 16)]
    pub(crate) clients: usize,
    /// Watches open during the creates, each on its own HTTP/2 connection.
    #[arg(long, default_value_t = 100)]
    pub(crate) watchers: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("capstan-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Api(args) => runtime.block_on(api::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capstan-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
