//! Capstan's service proxy, what kube-proxy is in iptables mode: it watches Services and
//! EndpointSlices through the API server and keeps this node's iptables NAT rules so that traffic to a
//! cluster IP, a node port or an external IP reaches a ready endpoint.
//!
//! Owns: the translation of Services and EndpointSlices into rules (`model`, `rules`: pure), and
//! applying them with `iptables-restore --noflush` (only the `KUBE-*` chains it declares are touched;
//! CNI's and the host's rules are left alone).
//! Talks to the cluster only through the API server (`kube::Client`); depends on no other Capstan
//! crate.

pub mod host;
mod model;
mod rules;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

/// The proxy's settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// This node's name (the `Local` traffic policies pick its endpoints).
    pub node_name: String,
    /// The pod network; traffic to a cluster IP from elsewhere is masqueraded.
    pub cluster_cidr: String,
    /// Changes arriving within this interval are applied together.
    pub min_sync_period: Duration,
    /// Everything is re-applied at least this often (rules someone else flushed come back).
    pub sync_period: Duration,
}

impl ProxyConfig {
    pub fn new(node_name: &str) -> Self {
        Self {
            node_name: node_name.to_owned(),
            cluster_cidr: "10.42.0.0/16".into(),
            min_sync_period: Duration::from_millis(100),
            sync_period: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} failed: {stderr}")]
    Failed { command: String, stderr: String },
}

/// Watches Services and EndpointSlices and keeps the rules in step until `shutdown`. Fails only
/// when iptables is missing; a failed sync is logged and retried.
pub async fn run(
    client: kube::Client,
    config: ProxyConfig,
    shutdown: CancellationToken,
) -> Result<(), ProxyError> {
    enable_forwarding();
    let (services, services_writer) = reflector::store::<Service>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let service_events = reflector::reflector(
        services_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map(|_| ());
    let slice_events = reflector::reflector(
        slices_writer,
        watcher(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map(|_| ());
    let mut events = std::pin::pin!(futures::stream::select(service_events, slice_events));

    // No rules before both caches are whole: an empty cache would remove working rules.
    let synced = async {
        let _ = tokio::join!(services.wait_until_ready(), slices.wait_until_ready());
    };
    let mut synced = std::pin::pin!(synced);
    loop {
        tokio::select! {
            () = &mut synced => break,
            item = events.next() => if item.is_none() { return Ok(()) },
            () = shutdown.cancelled() => return Ok(()),
        }
    }
    tracing::info!(node = %config.node_name, "service proxy synced; programming iptables");

    let mut applied: Option<String> = None;
    let mut last_full = tokio::time::Instant::now();
    loop {
        let full = last_full.elapsed() >= config.sync_period;
        match sync(&config, &services, &slices, applied.as_deref(), full).await {
            Ok(Some(rules)) => {
                applied = Some(rules);
                if full {
                    last_full = tokio::time::Instant::now();
                }
            }
            Ok(None) => {}
            Err(e @ ProxyError::Spawn { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "could not apply the service rules; retrying");
                applied = None;
            }
        }
        // Wait for a change (or the periodic full sync), then gather what else arrives shortly after.
        let until_full = config.sync_period.saturating_sub(last_full.elapsed());
        if !host::next_batch(&mut events, until_full, config.min_sync_period, &shutdown).await {
            return Ok(());
        }
    }
}

/// Builds the rules from the caches and applies them when they changed (or when `full`). Returns
/// the rules applied, `None` when nothing needed doing.
async fn sync(
    config: &ProxyConfig,
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    applied: Option<&str>,
    full: bool,
) -> Result<Option<String>, ProxyError> {
    let all_slices = slices.state();
    let by_service = model::slices_by_service(all_slices.iter().map(|s| s.as_ref()));
    let mut all_services = services.state();
    all_services.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    let mut ports = Vec::new();
    for svc in &all_services {
        let key = (
            svc.metadata.namespace.clone().unwrap_or_default(),
            svc.metadata.name.clone().unwrap_or_default(),
        );
        let slices = by_service.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        ports.extend(model::service_ports(svc, slices));
    }
    let ctx = rules::RuleContext {
        node_name: &config.node_name,
        cluster_cidr: &config.cluster_cidr,
    };
    // Compare without stale-chain deletions: those depend on the host, not on the cluster.
    let (wanted, _) = rules::render(&ports, &ctx, &BTreeSet::new());
    if !full && applied == Some(wanted.as_str()) {
        return Ok(None);
    }
    let started = std::time::Instant::now();
    let save = host::command("iptables-save", &["-t", "nat"], None).await?;
    let (input, _) = rules::render(&ports, &ctx, &rules::hashed_chains(&save));
    host::command("iptables-restore", &["-w", "5", "--noflush"], Some(&input)).await?;
    host::ensure_jumps(&rules::JUMPS).await?;
    tracing::debug!(
        ports = ports.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "service rules applied"
    );
    Ok(Some(wanted))
}

/// Service traffic is routed between interfaces, node ports answer on loopback too (DNAT away from
/// 127/8), and pod-to-Service replies on the same bridge must pass through iptables (conntrack undoes
/// the DNAT): all three are kernel switches.
fn enable_forwarding() {
    for (path, why) in [
        (
            "/proc/sys/net/ipv4/ip_forward",
            "Service traffic cannot be routed to pods",
        ),
        (
            "/proc/sys/net/ipv4/conf/all/route_localnet",
            "node ports do not answer on 127.0.0.1",
        ),
        (
            "/proc/sys/net/bridge/bridge-nf-call-iptables",
            "pods reaching a Service backed by a pod on the same node will not get replies (load the br_netfilter module)",
        ),
    ] {
        match std::fs::read_to_string(path) {
            Ok(v) if v.trim() == "1" => {}
            _ => {
                if let Err(e) = std::fs::write(path, "1") {
                    tracing::warn!(path, error = %e, "cannot enable; {why}");
                }
            }
        }
    }
}
