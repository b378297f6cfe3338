//! Capstan's pod network between nodes, what flannel is to k3s: every node's pods live on its own
//! bridge in its own podCIDR (the kubelet's CNI config); this crate makes the other nodes' podCIDRs
//! reachable. With the `vxlan` backend (the default, as in k3s) a VXLAN device `flannel.1` carries
//! pod packets in UDP to the node that owns the destination subnet; with `host-gw` a plain route
//! sends them to that node's address. Each node publishes how to reach it in its Node's annotations
//! (flannel's `flannel.alpha.coreos.com/*` names), and watches all Nodes for the others'.
//! It also owns pod masquerading: pods keep their address towards other pods and are NATed only
//! when leaving the cluster network (the CNI bridge's own masquerade is turned off for this).
//!
//! Owns: the peers-to-routes translation (`model`, pure), programming it with iproute2 (`iproute`)
//! and the masquerade/forward iptables chains (`rules`, applied with `capstan_proxy::host`).
//! Talks to the cluster only through the API server (`kube::Client`).

mod iproute;
mod model;
mod rules;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

pub use model::Backend;
use model::Cidr;

/// The pod network's settings.
#[derive(Debug, Clone)]
pub struct FlannelConfig {
    pub node_name: String,
    /// This node's address as the other nodes reach it (the VXLAN tunnel's endpoint).
    pub node_ip: IpAddr,
    pub backend: Backend,
    /// The whole pod network (every node's podCIDR lies in it).
    pub cluster_cidr: String,
    /// Node changes arriving within this interval are applied together.
    pub min_sync_period: Duration,
    /// Everything is re-applied at least this often (routes someone else removed come back).
    pub sync_period: Duration,
}

impl FlannelConfig {
    pub fn new(node_name: &str, node_ip: IpAddr, backend: Backend) -> Self {
        Self {
            node_name: node_name.to_owned(),
            node_ip,
            backend,
            cluster_cidr: "10.42.0.0/16".into(),
            min_sync_period: Duration::from_millis(100),
            sync_period: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FlannelError {
    #[error(transparent)]
    Host(#[from] capstan_proxy::ProxyError),
    #[error("the pod network needs an IPv4 node address, not {0}")]
    NotIpv4(IpAddr),
    #[error("bad cluster CIDR {0:?}")]
    ClusterCidr(String),
    #[error("VXLAN device: {0}")]
    Device(String),
    #[error("cannot publish this node's network annotations: {0}")]
    Annotate(#[from] kube::Error),
}

/// The MTU pods on this node should use: the underlay's, less the VXLAN headers for `vxlan`.
/// `None` when the node address is on loopback or not found (the CNI default then applies).
pub async fn pod_mtu(node_ip: IpAddr, backend: Backend) -> Option<u32> {
    let IpAddr::V4(ip) = node_ip else {
        return None;
    };
    let (dev, mtu) = iproute::interface_of(ip).await?;
    if dev == "lo" {
        return None;
    }
    Some(match backend {
        Backend::Vxlan => mtu.saturating_sub(model::VXLAN_OVERHEAD),
        Backend::HostGw => mtu,
    })
}

/// Sets this node up and keeps its routes to the other nodes' pods in step with the Node objects
/// until `shutdown`. A failed sync is logged and retried; setup errors (no VXLAN support, no
/// iptables) end it.
pub async fn run(
    client: kube::Client,
    config: FlannelConfig,
    shutdown: CancellationToken,
) -> Result<(), FlannelError> {
    let IpAddr::V4(node_ip) = config.node_ip else {
        return Err(FlannelError::NotIpv4(config.node_ip));
    };
    let cluster = Cidr::parse(&config.cluster_cidr)
        .ok_or_else(|| FlannelError::ClusterCidr(config.cluster_cidr.clone()))?;
    let api: Api<Node> = Api::all(client);
    let (nodes, writer) = reflector::store::<Node>();
    let events = reflector::reflector(writer, watcher(api.clone(), watcher::Config::default()))
        .default_backoff()
        .map(|_| ());
    let mut events = std::pin::pin!(events);

    // This node's subnet comes from node IPAM once the kubelet has registered the Node.
    let own_subnet = loop {
        if let Some(subnet) = nodes
            .get(&reflector::ObjectRef::new(&config.node_name))
            .and_then(|n| model::pod_subnet(&n))
        {
            break subnet;
        }
        tokio::select! {
            item = events.next() => if item.is_none() { return Ok(()) },
            () = shutdown.cancelled() => return Ok(()),
        }
    };
    tracing::info!(
        node = %config.node_name,
        backend = config.backend.name(),
        subnet = %own_subnet,
        "pod network: routing to the other nodes' pods"
    );

    let mut annotations = None;
    let mut applied: Option<model::Plan> = None;
    let mut last_full = tokio::time::Instant::now();
    loop {
        let full = last_full.elapsed() >= config.sync_period;
        if full {
            last_full = tokio::time::Instant::now();
        }
        // The device and the chains are re-checked on every full sync: someone may remove them.
        if full || applied.is_none() || annotations.is_none() {
            match set_up(&config, node_ip, own_subnet, cluster).await {
                Ok(a) => annotations = Some(a),
                Err(e @ FlannelError::Host(capstan_proxy::ProxyError::Spawn { .. })) => {
                    return Err(e);
                }
                Err(e) => tracing::warn!(error = %e, "could not set the pod network up; retrying"),
            }
        }
        if let Some(annotations) = &annotations
            && let Err(e) = publish(&api, &nodes, &config.node_name, annotations).await
        {
            tracing::warn!(error = %e, "retrying");
        }
        match sync(&config, &nodes, own_subnet, cluster, applied.as_ref(), full).await {
            Ok(Some(plan)) => applied = Some(plan),
            Ok(None) => {}
            Err(e @ FlannelError::Host(capstan_proxy::ProxyError::Spawn { .. })) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "could not apply the pod network's routes; retrying");
                applied = None;
            }
        }
        let until_full = config.sync_period.saturating_sub(last_full.elapsed());
        if !capstan_proxy::host::next_batch(
            &mut events,
            until_full,
            config.min_sync_period,
            &shutdown,
        )
        .await
        {
            return Ok(());
        }
    }
}

/// Writes this node's annotations when its Node lacks them (first start, or a re-registered Node).
async fn publish(
    api: &Api<Node>,
    nodes: &Store<Node>,
    name: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<(), FlannelError> {
    let Some(node) = nodes.get(&reflector::ObjectRef::new(name)) else {
        return Ok(());
    };
    let current = node.metadata.annotations.as_ref();
    if annotations
        .iter()
        .all(|(k, v)| current.and_then(|c| c.get(k)) == Some(v))
    {
        return Ok(());
    }
    let patch = serde_json::json!({ "metadata": { "annotations": annotations } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Builds the plan from the Node cache and applies it when it changed (or when `full`, together
/// with the iptables rules). Returns the plan applied, `None` when nothing needed doing.
async fn sync(
    config: &FlannelConfig,
    nodes: &Store<Node>,
    own: Cidr,
    cluster: Cidr,
    applied: Option<&model::Plan>,
    full: bool,
) -> Result<Option<model::Plan>, FlannelError> {
    let all = nodes.state();
    let peers = model::peers(
        all.iter().map(|n| n.as_ref()),
        &config.node_name,
        config.node_ip,
        config.backend,
    );
    let plan = model::plan(&peers, config.backend, own, cluster);
    if !full && applied == Some(&plan) {
        return Ok(None);
    }
    iproute::apply(&plan, config.backend == Backend::Vxlan).await?;
    tracing::debug!(
        peers = peers.len(),
        routes = plan.routes.len(),
        "pod network routes applied"
    );
    Ok(Some(plan))
}

/// Creates (or checks) the VXLAN device and the masquerade/forward chains; returns the annotations
/// that tell the other nodes how to reach this one.
async fn set_up(
    config: &FlannelConfig,
    node_ip: Ipv4Addr,
    own: Cidr,
    cluster: Cidr,
) -> Result<BTreeMap<String, String>, FlannelError> {
    // The masquerade first: the bridge no longer masquerades, so without these rules this node's
    // pods could not leave the cluster network even if the VXLAN device cannot be made.
    capstan_proxy::host::command(
        "iptables-restore",
        &["-w", "5", "--noflush"],
        Some(&rules::render(cluster, own)),
    )
    .await?;
    capstan_proxy::host::ensure_jumps(&rules::JUMPS).await?;
    let vtep_mac = match config.backend {
        Backend::Vxlan => {
            let underlay = iproute::interface_of(node_ip).await;
            Some(iproute::ensure_vxlan(node_ip, own.network, underlay.as_ref()).await?)
        }
        Backend::HostGw => None,
    };
    Ok(model::own_annotations(
        config.backend,
        node_ip,
        vtep_mac.as_deref(),
    ))
}
