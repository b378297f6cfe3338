//! The controller manager: one module per controller, each level-triggered on kube-runtime (watch,
//! reflector cache, work queue, `reconcile(object) -> Action`), talking to the API server only.
//!
//! Controllers never depend on the scheduler, kubelet or proxy: they meet only through API objects.
//! The binary runs [`run_all`] while it holds the controller-manager lease.

mod certificates;
mod cronjob;
mod daemonset;
mod deployment;
mod endpoints;
mod garbage_collector;
mod hpa;
mod job;
mod namespace;
mod node_ipam;
mod node_lifecycle;
mod persistentvolume;
mod replicaset;
mod serviceaccount;
mod servicelb;
mod statefulset;
mod util;
mod volume_binding;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use node_ipam::ClusterCidr;

/// Settings shared by the controllers.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// How long a node may go without a heartbeat before it is NotReady (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
    /// Pod addresses: each node gets a block of it (`10.42.0.0/16` in /24s by default, as k3s).
    pub cluster_cidr: ClusterCidr,
    /// Signs approved kubelet and API client CertificateSigningRequests; `None` leaves them
    /// unsigned (approval still runs).
    pub csr_signer: Option<Arc<capstan_pki::Pki>>,
    /// Give LoadBalancer Services the nodes' addresses (k3s's ServiceLB).
    pub service_lb: bool,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            node_monitor_grace_period: Duration::from_secs(40),
            cluster_cidr: ClusterCidr::default(),
            csr_signer: None,
            service_lb: true,
        }
    }
}

/// What every controller gets.
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    pub config: ControllerConfig,
    /// The one pod watch and cache the controllers share.
    pods: util::shared::SharedPods,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .finish()
    }
}

/// Runs every controller until `shutdown` is cancelled.
pub async fn run_all(client: kube::Client, config: ControllerConfig, shutdown: CancellationToken) {
    let pods = util::shared::SharedPods::new();
    let ctx = Arc::new(Context {
        client: client.clone(),
        config,
        pods: pods.clone(),
    });
    tokio::join!(
        pods.run(client, shutdown.clone()),
        replicaset::run(ctx.clone(), shutdown.clone()),
        deployment::run(ctx.clone(), shutdown.clone()),
        namespace::run(ctx.clone(), shutdown.clone()),
        garbage_collector::run(ctx.clone(), shutdown.clone()),
        serviceaccount::run(ctx.clone(), shutdown.clone()),
        endpoints::run(ctx.clone(), shutdown.clone()),
        node_lifecycle::run(ctx.clone(), shutdown.clone()),
        node_ipam::run(ctx.clone(), shutdown.clone()),
        statefulset::run(ctx.clone(), shutdown.clone()),
        daemonset::run(ctx.clone(), shutdown.clone()),
        job::run(ctx.clone(), shutdown.clone()),
        certificates::run(ctx.clone(), shutdown.clone()),
        cronjob::run(ctx.clone(), shutdown.clone()),
        hpa::run(ctx.clone(), shutdown.clone()),
        persistentvolume::run(ctx.clone(), shutdown.clone()),
        async {
            if ctx.config.service_lb {
                servicelb::run(ctx.clone(), shutdown.clone()).await;
            }
        },
    );
}
