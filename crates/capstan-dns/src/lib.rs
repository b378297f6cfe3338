//! The cluster DNS server (what CoreDNS is in k3s): answers the cluster domain (`cluster.local`)
//! from Services and EndpointSlices as the Kubernetes DNS specification describes, and forwards
//! every other name to the host's resolvers (`/etc/resolv.conf`). It runs inside `capstan
//! server`, not in a pod, so it registers itself: the `kube-system/kube-dns` Service (ClusterIP
//! 10.43.0.10, which the kubelet writes into pods' resolv.conf) and an EndpointSlice with this
//! server's address and port, which the per-node proxy DNATs Service traffic to.
//!
//! Map: `wire` (the DNS message codec) -> `resolve` (records as a pure function of
//! an index built from the objects) -> `server` (UDP/TCP listeners, one query's handling,
//! truncation) and `forward` (upstream relay); `cache` keeps the index current from reflector
//! caches; `register` writes the Service, EndpointSlice and Endpoints.
//!
//! Like the scheduler and controllers, this crate is only an API client (kube-rs): it never
//! depends on the API server, store, controllers, kubelet or proxy crates, and meets them only
//! through API objects. Queries are answered from memory, never with an API call.
//!
//! The wire format is hand-written (`wire.rs`, ~650 lines) rather than `hickory-proto`: a
//! server that answers one question per message with eight record types needs little of it,
//! while hickory-proto 0.26, even without default features, always pulls in `idna` (with its
//! ICU crates), `url`, `rand`, `ipnet` and `tinyvec` and needs Rust 1.88 (the workspace says
//! 1.85). This crate adds no crate the workspace did not already build.

mod cache;
mod forward;
mod register;
mod resolve;
mod server;
mod wire;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::forward::Forwarder;
use crate::register::Registration;
use crate::resolve::Zone;
use crate::server::Handler;

/// Where the DNS server listens and what it announces.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// UDP and TCP listen address; port 0 picks a free port (the same for both).
    pub bind: SocketAddr,
    /// The address written into the `kube-dns` EndpointSlice and Endpoints.
    pub advertise: IpAddr,
    /// The `kube-system/kube-dns` Service's ClusterIP (10.43.0.10).
    pub cluster_ip: IpAddr,
    /// The cluster domain (`cluster.local`).
    pub domain: String,
    /// Names this server's EndpointSlice: `kube-dns-<identity>` (made a DNS-1123 label).
    pub identity: String,
    /// Upstream resolvers for names outside the cluster domain; `None` reads `/etc/resolv.conf`.
    pub upstreams: Option<Vec<SocketAddr>>,
}

impl DnsConfig {
    /// Defaults: listen on `advertise:0`, ClusterIP 10.43.0.10, domain `cluster.local`, the
    /// host's resolvers.
    pub fn new(advertise: IpAddr, identity: &str) -> Self {
        Self {
            bind: SocketAddr::new(advertise, 0),
            advertise,
            cluster_ip: IpAddr::V4(Ipv4Addr::new(10, 43, 0, 10)),
            domain: "cluster.local".into(),
            identity: identity.into(),
            upstreams: None,
        }
    }
}

/// Why the DNS server could not run.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("invalid cluster domain {0:?}")]
    InvalidDomain(String),
    #[error("binding dns listeners on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Serves DNS on `config.bind` (UDP and TCP) and registers this server in the cluster, until
/// `shutdown`. Fails only when the listeners cannot be bound; API errors are retried.
pub async fn run(
    client: kube::Client,
    config: DnsConfig,
    shutdown: CancellationToken,
) -> Result<(), DnsError> {
    let domain = wire::Name::parse(&config.domain)
        .filter(|n| !n.labels().is_empty())
        .ok_or_else(|| DnsError::InvalidDomain(config.domain.clone()))?;
    let (udp, tcp) = bind(config.bind).await?;
    let local = udp.local_addr().map_err(|source| DnsError::Bind {
        addr: config.bind,
        source,
    })?;
    tracing::info!(udp = %local, tcp = %local, domain = %config.domain, "cluster dns listening");

    let upstreams = match config.upstreams.clone() {
        Some(list) => list,
        None => host_upstreams().await,
    };
    // Never forward to ourselves (a host whose resolv.conf points at the cluster DNS).
    let upstreams: Vec<SocketAddr> = upstreams
        .into_iter()
        .filter(|u| *u != local && *u != SocketAddr::new(config.cluster_ip, 53))
        .collect();
    if upstreams.is_empty() {
        tracing::warn!("no upstream nameservers: names outside the cluster domain get SERVFAIL");
    } else {
        tracing::info!(?upstreams, "forwarding other names");
    }

    let (index_tx, index_rx) = watch::channel(None);
    let handler = Arc::new(Handler {
        zone: Zone {
            domain,
            dns_ip: config.cluster_ip,
        },
        index: index_rx.clone(),
        forwarder: Forwarder::new(upstreams),
    });
    let registration = Registration {
        cluster_ip: config.cluster_ip,
        address: config.advertise,
        port: local.port(),
        slice_name: register::slice_name(&config.identity),
    };
    tokio::join!(
        cache::run(client.clone(), index_tx, shutdown.clone()),
        register_loop(&client, &registration, index_rx, shutdown.clone()),
        server::serve_udp(Arc::new(udp), handler.clone(), shutdown.clone()),
        server::serve_tcp(tcp, handler, shutdown.clone()),
    );
    Ok(())
}

/// UDP and TCP on one port: with port 0, a free UDP port whose TCP twin is free too.
async fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let err = |source| DnsError::Bind { addr, source };
    let mut attempts = 0;
    loop {
        let udp = UdpSocket::bind(addr).await.map_err(err)?;
        let port = udp.local_addr().map_err(err)?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e)
                if addr.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && attempts < 20 =>
            {
                attempts += 1;
            }
            Err(e) => return Err(err(e)),
        }
    }
}

/// The nameservers of `/etc/resolv.conf` (none when it cannot be read).
async fn host_upstreams() -> Vec<SocketAddr> {
    let read = tokio::task::spawn_blocking(|| std::fs::read_to_string("/etc/resolv.conf")).await;
    match read {
        Ok(Ok(text)) => forward::parse_resolv_conf(&text),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "reading /etc/resolv.conf");
            Vec::new()
        }
        Err(_) => Vec::new(),
    }
}

/// Registers once the caches have synced (so the Service never points at a server that cannot
/// answer yet), retries failures with backoff, re-checks every minute, and withdraws the
/// EndpointSlice on shutdown.
async fn register_loop(
    client: &kube::Client,
    registration: &Registration,
    mut index: watch::Receiver<Option<Arc<resolve::Index>>>,
    shutdown: CancellationToken,
) {
    tokio::select! {
        _ = shutdown.cancelled() => return,
        r = index.wait_for(Option::is_some) => if r.is_err() { return },
    }
    let mut backoff = Duration::from_secs(1);
    let mut registered = false;
    loop {
        let wait = match registration.apply(client).await {
            Ok(()) => {
                if !registered {
                    tracing::info!(
                        slice = %registration.slice_name,
                        address = %registration.address,
                        port = registration.port,
                        "registered as kube-system/kube-dns"
                    );
                    registered = true;
                }
                backoff = Duration::from_secs(1);
                Duration::from_secs(60)
            }
            Err(e) => {
                tracing::warn!(error = %e, "registering kube-dns failed; retrying");
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                wait
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    if registered {
        let withdraw = registration.withdraw(client);
        match tokio::time::timeout(Duration::from_secs(1), withdraw).await {
            Ok(Ok(())) => {
                tracing::info!(slice = %registration.slice_name, "withdrew endpointslice")
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "withdrawing endpointslice failed"),
            Err(_) => tracing::debug!("withdrawing endpointslice timed out"),
        }
    }
}
