//! Command-line flags. Definitions live here, apart from the code that runs them; flag names are the
//! interface contract in `docs/ARCHITECTURE.md` and match Kubernetes/k3s where one exists.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "capstan",
    version,
    about = "A Kubernetes-compatible container orchestrator in one binary"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the control plane (API server, scheduler, controllers, store) and, unless disabled, a local agent.
    Server(ServerArgs),
    /// Run a worker node that joins an existing server.
    Agent(AgentArgs),
    /// Print the version.
    Version,
}

#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Directory for all state: store, PKI, tokens.
    #[arg(long, default_value = "/var/lib/capstan/server")]
    pub(crate) data_dir: PathBuf,
    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub(crate) bind_address: IpAddr,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    pub(crate) https_port: u16,
    /// Cluster store: absent for embedded SQLite in the data dir, or `http(s)://h1:2379,h2:2379` for etcd.
    #[arg(long)]
    pub(crate) datastore_endpoint: Option<String>,
    /// Where to write the admin kubeconfig (default: DATA_DIR/admin.kubeconfig).
    #[arg(long)]
    pub(crate) write_kubeconfig: Option<PathBuf>,
    /// Extra subject alternative names (hostnames or IPs) for the serving certificate.
    #[arg(long = "tls-san", value_delimiter = ',')]
    pub(crate) tls_san: Vec<String>,
    /// Run the control plane only, without a local agent.
    #[arg(long)]
    pub(crate) disable_agent: bool,
    /// Do not run the scheduler in this server (as k3s: another server or an external one schedules).
    #[arg(long)]
    pub(crate) disable_scheduler: bool,
    /// Do not run the controller manager in this server.
    #[arg(long)]
    pub(crate) disable_controller_manager: bool,
    /// Name of the local node (default: the hostname).
    #[arg(long)]
    pub(crate) node_name: Option<String>,
    /// The address this node is reached at by the other nodes and the server (default: the source
    /// address of the route to the server, or the default route's).
    #[arg(long)]
    pub(crate) node_ip: Option<std::net::IpAddr>,
    /// An address this node is reached at from outside the cluster (its Node's `ExternalIP`).
    #[arg(long)]
    pub(crate) node_external_ip: Option<std::net::IpAddr>,
    /// The local agent uses this CRI socket instead of starting its own containerd.
    #[arg(long)]
    pub(crate) container_runtime_endpoint: Option<PathBuf>,
    /// Do not run the local agent's service proxy (Service traffic is then not forwarded on this node).
    #[arg(long)]
    pub(crate) disable_kube_proxy: bool,
    /// How this node's pods reach other nodes' pods: `vxlan` (default, as k3s), `host-gw` (all nodes on
    /// one L2 network) or `none` (no routes between nodes; the bridge masquerades pod traffic).
    /// Every node of a cluster must use the same backend.
    #[arg(long, value_enum, default_value_t = FlannelBackend::Vxlan)]
    pub(crate) flannel_backend: FlannelBackend,
    /// Packaged components not to run, as k3s names them (`--disable coredns,servicelb`).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub(crate) disable: Vec<Packaged>,
    /// How long a node may go without a heartbeat before it is marked NotReady.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub(crate) node_monitor_grace_period: Duration,
    /// Toleration seconds for node.kubernetes.io/not-ready:NoExecute added to pods that have none.
    #[arg(long, default_value_t = 300)]
    pub(crate) default_not_ready_toleration_seconds: i64,
    /// Toleration seconds for node.kubernetes.io/unreachable:NoExecute added to pods that have none.
    #[arg(long, default_value_t = 300)]
    pub(crate) default_unreachable_toleration_seconds: i64,
}

/// The packaged components `capstan server` runs unless `--disable`d.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Packaged {
    /// Cluster DNS (`kube-system/kube-dns`, 10.43.0.10), served by the server itself.
    Coredns,
    /// LoadBalancer Services get the nodes' addresses.
    Servicelb,
}

/// The pod network's backends (k3s's `--flannel-backend` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FlannelBackend {
    Vxlan,
    HostGw,
    None,
}

impl FlannelBackend {
    /// The backend to run, `None` for `none`.
    pub(crate) fn backend(self) -> Option<capstan_flannel::Backend> {
        match self {
            FlannelBackend::Vxlan => Some(capstan_flannel::Backend::Vxlan),
            FlannelBackend::HostGw => Some(capstan_flannel::Backend::HostGw),
            FlannelBackend::None => None,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// URL of a server, `https://HOST:PORT`.
    #[arg(long)]
    pub(crate) server: String,
    /// Join token (the server writes it to DATA_DIR/token).
    #[arg(long)]
    pub(crate) token: String,
    /// Directory for the agent's state.
    #[arg(long, default_value = "/var/lib/capstan/agent")]
    pub(crate) data_dir: PathBuf,
    /// Name of this node (default: the hostname).
    #[arg(long)]
    pub(crate) node_name: Option<String>,
    /// The address this node is reached at by the other nodes and the server (default: the source
    /// address of the route to the server, or the default route's).
    #[arg(long)]
    pub(crate) node_ip: Option<std::net::IpAddr>,
    /// An address this node is reached at from outside the cluster (its Node's `ExternalIP`).
    #[arg(long)]
    pub(crate) node_external_ip: Option<std::net::IpAddr>,
    /// Use this CRI socket instead of starting containerd.
    #[arg(long)]
    pub(crate) container_runtime_endpoint: Option<PathBuf>,
    /// Do not run the service proxy (Service traffic is then not forwarded on this node).
    #[arg(long)]
    pub(crate) disable_kube_proxy: bool,
    /// How this node's pods reach other nodes' pods: `vxlan` (default, as k3s), `host-gw` (all nodes on
    /// one L2 network) or `none` (no routes between nodes; the bridge masquerades pod traffic).
    /// Every node of a cluster must use the same backend.
    #[arg(long, value_enum, default_value_t = FlannelBackend::Vxlan)]
    pub(crate) flannel_backend: FlannelBackend,
}

/// Parses Go-style durations as Kubernetes flags take them: `40s`, `5m`, `1h30m`, `500ms`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration {text:?}: expected a number"));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "invalid duration {text:?}: missing unit (e.g. 40s)"
                ));
            }
            unit => return Err(format!("invalid duration {text:?}: unknown unit {unit:?}")),
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(number * seconds);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_are_rejected() {
        assert!(parse_duration("40").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("4x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn server_flags_have_kubernetes_defaults() {
        let cli = Cli::try_parse_from(["capstan", "server"]).expect("parses");
        let Command::Server(args) = cli.command else {
            panic!("server")
        };
        assert_eq!(args.https_port, 6443);
        assert_eq!(args.node_monitor_grace_period, Duration::from_secs(40));
        assert_eq!(args.default_not_ready_toleration_seconds, 300);
        assert!(!args.disable_agent);
        assert!(args.disable.is_empty());
        assert_eq!(args.flannel_backend, FlannelBackend::Vxlan);
        assert_eq!(args.node_ip, None);
    }

    #[test]
    fn agent_network_flags_take_k3s_names_and_values() {
        let cli = Cli::try_parse_from([
            "capstan",
            "agent",
            "--server",
            "https://10.0.0.1:6443",
            "--token",
            "t",
            "--node-ip",
            "10.0.0.7",
            "--node-external-ip",
            "203.0.113.7",
            "--flannel-backend",
            "host-gw",
        ])
        .expect("parses");
        let Command::Agent(args) = cli.command else {
            panic!("agent")
        };
        assert_eq!(args.node_ip, Some("10.0.0.7".parse().expect("ip")));
        assert_eq!(
            args.node_external_ip,
            Some("203.0.113.7".parse().expect("ip"))
        );
        assert_eq!(args.flannel_backend, FlannelBackend::HostGw);
        assert_eq!(
            args.flannel_backend.backend(),
            Some(capstan_flannel::Backend::HostGw)
        );
        let err =
            Cli::try_parse_from(["capstan", "server", "--flannel-backend", "wireguard-native"])
                .expect_err("not built");
        assert!(
            err.to_string()
                .contains("possible values: vxlan, host-gw, none"),
            "{err}"
        );
        let err = Cli::try_parse_from(["capstan", "server", "--node-ip", "not-an-ip"])
            .expect_err("bad address");
        assert!(
            err.to_string().contains("invalid value 'not-an-ip'"),
            "{err}"
        );
    }

    #[test]
    fn disable_takes_k3s_component_names() {
        let cli = Cli::try_parse_from(["capstan", "server", "--disable", "coredns,servicelb"])
            .expect("parses");
        let Command::Server(args) = cli.command else {
            panic!("server")
        };
        assert_eq!(args.disable, [Packaged::Coredns, Packaged::Servicelb]);
        let err = Cli::try_parse_from(["capstan", "server", "--disable", "traefik"])
            .expect_err("traefik is not packaged");
        assert!(
            err.to_string()
                .contains("possible values: coredns, servicelb"),
            "{err}"
        );
    }
}
