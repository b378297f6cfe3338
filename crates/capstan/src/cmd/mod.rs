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

/// Sets up this node's pod network beside its kubelet (routes to the other nodes' pods, pod
/// masquerading) and adapts the kubelet's CNI config to it. Without it (`--flannel-backend none`)
/// pods reach only their own node's pods and the bridge masquerades the rest.
pub(crate) async fn spawn_pod_network(
    client: kube::Client,
    kubelet: &mut capstan_kubelet::KubeletConfig,
    backend: Option<capstan_flannel::Backend>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let Some(backend) = backend else {
        return;
    };
    kubelet.pod_mtu = capstan_flannel::pod_mtu(kubelet.node_ip, backend).await;
    kubelet.bridge_masquerade = false;
    let config = capstan_flannel::FlannelConfig::new(&kubelet.node_name, kubelet.node_ip, backend);
    tokio::spawn(async move {
        if let Err(e) = capstan_flannel::run(client, config, shutdown).await {
            tracing::error!(error = %e, "the pod network stopped; pods on other nodes are not reachable from this one");
        }
    });
}
