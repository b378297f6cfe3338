//! Node IPAM (Kubernetes' `node-ipam-controller`, range allocator): every node gets a `/24` pod CIDR
//! from the cluster CIDR (k3s default `10.42.0.0/16`), written to `spec.podCIDR` and `spec.podCIDRs`.
//! The kubelet gives its pods addresses from it.
//!
//! Level-triggered: each pass reads all nodes, keeps the CIDRs they hold, and allocates the lowest free
//! block to the nodes that have none. Only the leader runs it, so two allocations never race.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use crate::Context;

/// The cluster CIDR and the size of each node's block.
#[derive(Debug, Clone, Copy)]
pub struct ClusterCidr {
    base: u32,
    prefix: u32,
    node_prefix: u32,
}

impl ClusterCidr {
    /// Parses `a.b.c.d/len` with per-node blocks of `/node_prefix`.
    pub fn parse(cidr: &str, node_prefix: u32) -> Option<Self> {
        let (ip, len) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let prefix: u32 = len.parse().ok()?;
        if prefix > node_prefix || node_prefix > 30 || prefix == 0 {
            return None;
        }
        let mask = u32::MAX << (32 - prefix);
        Some(Self {
            base: u32::from(ip) & mask,
            prefix,
            node_prefix,
        })
    }

    fn blocks(&self) -> u32 {
        1 << (self.node_prefix - self.prefix)
    }

    /// The `index`th node block, as `a.b.c.d/len`.
    fn block(&self, index: u32) -> String {
        let ip = Ipv4Addr::from(self.base + (index << (32 - self.node_prefix)));
        format!("{ip}/{}", self.node_prefix)
    }

    /// The index of a block given as text, if it is one of ours.
    fn index_of(&self, cidr: &str) -> Option<u32> {
        let (ip, len) = cidr.split_once('/')?;
        if len.parse::<u32>().ok()? != self.node_prefix {
            return None;
        }
        let ip = u32::from(ip.parse::<Ipv4Addr>().ok()?);
        let offset = ip.checked_sub(self.base)?;
        let index = offset >> (32 - self.node_prefix);
        (index < self.blocks()).then_some(index)
    }
}

impl Default for ClusterCidr {
    fn default() -> Self {
        Self {
            base: u32::from(Ipv4Addr::new(10, 42, 0, 0)),
            prefix: 16,
            node_prefix: 24,
        }
    }
}

/// The lowest free block index, given the ones in use.
fn first_free(used: &BTreeSet<u32>, total: u32) -> Option<u32> {
    (0..total).find(|i| !used.contains(i))
}

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let cidr = ctx.config.cluster_cidr;
    let api: Api<Node> = Api::all(ctx.client.clone());
    let (nodes, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api.clone(), watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    let mut stream = std::pin::pin!(stream);
    loop {
        tokio::select! {
            item = stream.next() => if item.is_none() { return },
            () = shutdown.cancelled() => return,
            // Also a periodic pass, for nodes whose patch failed.
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        let all = nodes.state();
        let mut used: BTreeSet<u32> = all
            .iter()
            .filter_map(|n| n.spec.as_ref()?.pod_cidr.as_deref())
            .filter_map(|c| cidr.index_of(c))
            .collect();
        for node in all
            .iter()
            .filter(|n| n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_none())
        {
            let Some(name) = node.metadata.name.as_deref() else {
                continue;
            };
            let Some(index) = first_free(&used, cidr.blocks()) else {
                tracing::warn!(node = name, "no pod CIDR left in the cluster CIDR");
                break;
            };
            let block = cidr.block(index);
            let patch = serde_json::json!({"spec": {"podCIDR": block, "podCIDRs": [block]}});
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(node = name, cidr = block, "allocated the node's pod CIDR");
                    used.insert(index);
                }
                Err(e) => {
                    tracing::warn!(node = name, error = %e, "could not set the node's pod CIDR")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_of_the_default_cluster_cidr() {
        let c = ClusterCidr::default();
        assert_eq!(c.blocks(), 256);
        assert_eq!(c.block(0), "10.42.0.0/24");
        assert_eq!(c.block(5), "10.42.5.0/24");
        assert_eq!(c.index_of("10.42.5.0/24"), Some(5));
        assert_eq!(c.index_of("10.43.0.0/24"), None);
        assert_eq!(c.index_of("10.42.5.0/25"), None);
        let used = BTreeSet::from([0, 1, 3]);
        assert_eq!(first_free(&used, 256), Some(2));
        assert!(ClusterCidr::parse("10.42.0.0/16", 24).is_some());
        assert!(ClusterCidr::parse("10.42.0.0/25", 24).is_none());
    }
}
