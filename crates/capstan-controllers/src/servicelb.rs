//! k3s's ServiceLB, without its per-service DaemonSet: a `LoadBalancer` Service gets the addresses
//! of the Ready, schedulable nodes as its `status.loadBalancer.ingress` (ExternalIP when a node has
//! one, else InternalIP); every node's service proxy then forwards `<node address>:<port>` to the
//! endpoints, as the svclb pods' host ports do on k3s.
//!
//! As on k3s, a port is one Service's per address: when two LoadBalancer Services ask for the same
//! port and protocol, the older one (creation time, then name) gets the addresses and the other stays
//! `<pending>` until the port is free. Services with a `spec.loadBalancerClass` belong to another
//! implementation and are left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use crate::Context;

/// The addresses a LoadBalancer Service is reached at: those of the Ready, schedulable nodes.
fn node_addresses(nodes: &[Arc<Node>]) -> Vec<String> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    for node in nodes {
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let cordoned = node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        if !ready || cordoned {
            continue;
        }
        let addresses = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let pick = |kind: &str| {
            addresses
                .iter()
                .find(|a| a.type_ == kind)
                .map(|a| a.address.clone())
        };
        if let Some(address) = pick("ExternalIP").or_else(|| pick("InternalIP")) {
            out.insert(address);
        }
    }
    out.into_iter().collect()
}

fn is_ours(svc: &Service) -> bool {
    svc.spec.as_ref().is_some_and(|s| {
        s.type_.as_deref() == Some("LoadBalancer") && s.load_balancer_class.is_none()
    })
}

/// `(port, protocol)` pairs a service asks for.
fn ports(svc: &Service) -> BTreeSet<(i32, String)> {
    svc.spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(|p| (p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
        .collect()
}

/// The ingress addresses each of our services should have, by `(namespace, name)`: the node
/// addresses, or none for a service whose port an older one holds.
pub(crate) fn plan(
    services: &[Arc<Service>],
    nodes: &[Arc<Node>],
) -> BTreeMap<(String, String), Vec<String>> {
    let addresses = node_addresses(nodes);
    let mut ours: Vec<&Arc<Service>> = services.iter().filter(|s| is_ours(s)).collect();
    ours.sort_by(|a, b| {
        let key = |s: &Service| {
            (
                s.metadata.creation_timestamp.as_ref().map(|t| t.0),
                s.metadata.namespace.clone(),
                s.metadata.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    let mut taken: BTreeSet<(i32, String)> = BTreeSet::new();
    let mut out = BTreeMap::new();
    for svc in ours {
        let wanted = ports(svc);
        let free = wanted.iter().all(|p| !taken.contains(p));
        if free {
            taken.extend(wanted);
        }
        out.insert(
            (
                svc.metadata.namespace.clone().unwrap_or_default(),
                svc.metadata.name.clone().unwrap_or_default(),
            ),
            if free { addresses.clone() } else { Vec::new() },
        );
    }
    out
}

fn current_ingress(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|i| i.iter().filter_map(|i| i.ip.clone()).collect())
        .unwrap_or_default()
}

fn store_of<K>(api: Api<K>) -> (Store<K>, impl futures::Stream<Item = ()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let objects =
        watcher(api, watcher::Config::default()).modify(crate::util::strip_managed_fields);
    let stream = reflector::reflector(writer, objects)
        .default_backoff()
        .map(|_| ());
    (reader, stream)
}

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let (services, service_events) = store_of(Api::<Service>::all(ctx.client.clone()));
    let (nodes, node_events) = store_of(Api::<Node>::all(ctx.client.clone()));
    let mut events = std::pin::pin!(futures::stream::select(service_events, node_events));
    // The streams fill the caches: keep polling them while waiting for both to be whole.
    let synced = async {
        let _ = tokio::join!(services.wait_until_ready(), nodes.wait_until_ready());
    };
    let mut synced = std::pin::pin!(synced);
    loop {
        tokio::select! {
            () = &mut synced => break,
            item = events.next() => if item.is_none() { return },
            () = shutdown.cancelled() => return,
        }
    }
    loop {
        reconcile(&ctx, &services.state(), &nodes.state()).await;
        tokio::select! {
            item = events.next() => if item.is_none() { return },
            () = shutdown.cancelled() => return,
            // Also a periodic pass, for patches that failed.
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
    }
}

/// Patches the status of every LoadBalancer Service whose addresses differ from the plan.
async fn reconcile(ctx: &Context, services: &[Arc<Service>], nodes: &[Arc<Node>]) {
    let wanted = plan(services, nodes);
    for svc in services.iter().filter(|s| is_ours(s)) {
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let Some(want) = wanted.get(&(ns.clone(), name.clone())) else {
            continue;
        };
        if &current_ingress(svc) == want {
            continue;
        }
        let ingress: Vec<serde_json::Value> = want
            .iter()
            .map(|ip| serde_json::json!({"ip": ip, "ipMode": "VIP"}))
            .collect();
        let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": ingress}}});
        let api: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
        let service = format!("{ns}/{name}");
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::info!(%service, ingress = ?want, "load balancer addresses set"),
            Err(e) => {
                tracing::warn!(%service, error = %e, "could not set the load balancer addresses")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: bool, internal: &str, external: Option<&str>) -> Arc<Node> {
        let mut addresses = vec![serde_json::json!({"type": "InternalIP", "address": internal})];
        if let Some(e) = external {
            addresses.push(serde_json::json!({"type": "ExternalIP", "address": e}));
        }
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "status": {
                    "addresses": addresses,
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "Unknown" }}]
                }
            }))
            .expect("node"),
        )
    }

    fn lb(name: &str, created: &str, port: i32, class: Option<&str>) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
                "spec": {"type": "LoadBalancer", "loadBalancerClass": class,
                         "ports": [{"port": port, "protocol": "TCP"}]}
            }))
            .expect("service"),
        )
    }

    fn key(name: &str) -> (String, String) {
        ("default".into(), name.into())
    }

    #[test]
    fn ready_nodes_give_their_external_or_internal_address() {
        let nodes = [
            node("a", true, "10.0.0.2", None),
            node("b", true, "10.0.0.3", Some("203.0.113.3")),
            node("c", false, "10.0.0.4", None),
        ];
        let services = [lb("web", "2026-01-01T00:00:00Z", 80, None)];
        let plan = plan(&services, &nodes);
        assert_eq!(plan[&key("web")], ["10.0.0.2", "203.0.113.3"]);
    }

    #[test]
    fn the_older_service_keeps_a_contested_port_and_other_classes_are_ignored() {
        let nodes = [node("a", true, "10.0.0.2", None)];
        let services = [
            lb("newer", "2026-01-02T00:00:00Z", 80, None),
            lb("older", "2026-01-01T00:00:00Z", 80, None),
            lb("other-port", "2026-01-03T00:00:00Z", 443, None),
            lb(
                "metallb",
                "2026-01-01T00:00:00Z",
                80,
                Some("metallb.io/metallb"),
            ),
        ];
        let plan = plan(&services, &nodes);
        assert_eq!(plan[&key("older")], ["10.0.0.2"]);
        assert!(plan[&key("newer")].is_empty());
        assert_eq!(plan[&key("other-port")], ["10.0.0.2"]);
        assert!(!plan.contains_key(&key("metallb")));
    }
}
