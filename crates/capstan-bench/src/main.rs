//! `capstan-bench`: benchmarks that drive the real `capstan` binary from outside, as a client would.
//!
//! `capstan-bench api` starts `capstan server` on a free loopback port and measures start-up time,
//! memory, create throughput and latency, list time and watch delivery over HTTPS with the admin
//! client certificate; it prints one table with the targets (figures go to
//! `docs/benchmarks.md`). `capstan-bench pods` starts `capstan server` with its agent and measures node
//! start-up, pod start-up latency (one after the other and all at once) against the CRI floor of the
//! same containerd, and the node's memory.
//!
//! The API is measured as a client only: TLS configuration from `capstan-pki`, HTTP/2 by hand, no
//! server-side crate. The one exception is the CRI floor of `pods`, which uses the kubelet's CRI client
//! (`capstan-kubelet`) to talk to containerd directly, never the kubelet itself.

mod api;
mod client;
mod floor;
mod kubeconfig;
mod pods;
mod procfs;
mod stats;
mod tempdir;

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
    /// Node and pods: start to node Ready, pod start-up latency vs the CRI floor, node memory.
    Pods(PodsArgs),
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
    /// Extra flags for `capstan server`, e.g. `--server-arg=--disable-scheduler` to measure the API
    /// server without the in-process scheduler's writes.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub(crate) server_args: Vec<String>,
}

/// Flags of `capstan-bench pods`.
#[derive(Debug, Args)]
pub(crate) struct PodsArgs {
    /// The `capstan` binary to start (an optimized build).
    #[arg(long, default_value = "target/release/capstan")]
    pub(crate) server_bin: PathBuf,
    /// Pods per round (sequential, burst, CRI floor); at most the node's 110 pods.
    #[arg(long, default_value_t = 50)]
    pub(crate) pods: usize,
    /// The pods' image; the local registry of `scripts/images.sh` serves the default.
    #[arg(long, default_value = "127.0.0.1:5000/busybox:latest")]
    pub(crate) image: String,
    /// Seconds to wait for other agent-enabled `capstan server`s on this machine to end.
    #[arg(long, default_value_t = 900)]
    pub(crate) wait_for_agents: u64,
    /// Copy the server's log here after the run (the temp dir is removed).
    #[arg(long)]
    pub(crate) server_log: Option<PathBuf>,
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
        Command::Pods(args) => runtime.block_on(pods::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("capstan-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
