//! One module per subcommand.

pub(crate) mod agent;
pub(crate) mod server;
pub(crate) mod version;

/// Starts this node's service proxy beside its kubelet (both `server` and `agent` run one, as k3s
/// runs kube-proxy). Without iptables the node still runs pods; Services are just not forwarded.
pub(crate) fn spawn_proxy(
    client: kube::Client,
    node_name: &str,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let config = capstan_proxy::ProxyConfig::new(node_name);
    tokio::spawn(async move {
        if let Err(e) = capstan_proxy::run(client, config, shutdown).await {
            tracing::error!(error = %e, "the service proxy stopped; Services are not forwarded on this node");
        }
    });
}
