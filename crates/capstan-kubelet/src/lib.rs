//! Capstan's kubelet: registers this machine as a Node, heartbeats (Lease + NodeStatus), and runs the
//! pods bound to it as real containers through containerd over CRI (runc underneath, the CNI bridge for
//! pod networking). It also serves the kubelet HTTPS API the API server proxies `kubectl logs/exec/
//! attach/port-forward` to.
//!
//! Owns: containerd supervision, the CRI client, pod workers (sandbox, init containers, containers,
//! restarts with back-off, probes, volumes, status), orphan clean-up, the kubelet server, resource
//! usage (the Summary API `metrics.k8s.io` is built from).
//! Talks to the cluster only through the API server (`kube::Client`); never touches the store and never
//! depends on the API server, scheduler or controllers crates.

pub mod cni;
pub mod containerd;
pub mod cri;
mod env;
mod logs;
mod node;
mod pods;
mod probes;
mod server;
mod stats;
mod status;
mod volumes;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use containerd::ContainerdPaths;
pub use cri::Cri;

/// Labels Capstan puts on sandboxes and containers (the kubelet's own names, so `crictl` users recognise them).
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// The Node annotation naming the directory under which the `local-path` provisioner puts this
/// node's volumes (k3s's provisioner has one fixed path; here each agent's data dir has its own).
pub const LOCAL_STORAGE_ANNOTATION: &str = "capstan.io/local-storage-dir";
/// Annotation on containers: how many times this container was restarted before.
pub const ANNOTATION_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";

/// The kubelet's settings.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub node_name: String,
    /// The agent's own directory: containerd state, CNI config, pod volumes, logs.
    pub data_dir: PathBuf,
    /// An existing CRI socket to use instead of starting containerd.
    pub container_runtime_endpoint: Option<PathBuf>,
    pub sandbox_image: String,
    /// The node's address as other machines (and the API server) reach it.
    pub node_ip: IpAddr,
    /// An address the node is reached at from outside the cluster (`ExternalIP`), if any.
    pub node_external_ip: Option<IpAddr>,
    /// The kubelet HTTPS API port (10250 as in Kubernetes; 0 = any free port).
    pub port: u16,
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
    /// Maximum pods on this node (110, as the kubelet defaults).
    pub max_pods: u32,
    /// The pods' interface MTU (the node's pod network may need room for its headers).
    pub pod_mtu: Option<u32>,
    /// The CNI bridge masquerades pod traffic leaving the node's subnet; off when the pod network
    /// between nodes does it (pods then keep their address towards other nodes' pods).
    pub bridge_masquerade: bool,
}

impl KubeletConfig {
    pub fn new(
        node_name: impl Into<String>,
        data_dir: impl Into<PathBuf>,
        node_ip: IpAddr,
    ) -> Self {
        Self {
            node_name: node_name.into(),
            data_dir: data_dir.into(),
            container_runtime_endpoint: None,
            sandbox_image: "127.0.0.1:5000/pause:3.10".into(),
            node_ip,
            node_external_ip: None,
            port: 10250,
            cluster_dns: IpAddr::from([10, 43, 0, 10]),
            cluster_domain: "cluster.local".into(),
            max_pods: 110,
            pod_mtu: None,
            bridge_masquerade: true,
        }
    }

    fn pods_dir(&self) -> PathBuf {
        self.data_dir.join("pods")
    }

    fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    /// Where `local-path` volumes of this node live (announced on the Node, see
    /// [`LOCAL_STORAGE_ANNOTATION`]).
    pub fn storage_dir(&self) -> PathBuf {
        self.data_dir.join("storage")
    }
}

/// Everything that can go wrong in the kubelet.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container runtime: {0}")]
    Runtime(String),
    #[error("cri: {0}")]
    Cri(String),
    #[error("api: {0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

impl KubeletError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        KubeletError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<tonic::Status> for KubeletError {
    fn from(status: tonic::Status) -> Self {
        KubeletError::Cri(status.message().to_string())
    }
}

/// A running kubelet's shared parts.
pub(crate) struct Kubelet {
    pub config: KubeletConfig,
    pub client: kube::Client,
    pub cri: Cri,
    pub services: env::ServiceCache,
    pub stats: stats::Stats,
}

impl std::fmt::Debug for Kubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubelet")
            .field("config", &self.config)
            .finish()
    }
}

/// Runs the kubelet until `shutdown`: containerd, node registration and heartbeats, pod workers and the
/// kubelet HTTPS server (`tls` must ask for client certificates signed by the cluster CA).
pub async fn run(
    config: KubeletConfig,
    client: kube::Client,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> Result<(), KubeletError> {
    for dir in [
        config.data_dir.clone(),
        config.pods_dir(),
        config.logs_dir(),
        config.storage_dir(),
    ] {
        std::fs::create_dir_all(&dir).map_err(|e| KubeletError::io(&dir, e))?;
    }
    let paths = ContainerdPaths::new(&config.data_dir);
    let cri = match &config.container_runtime_endpoint {
        Some(socket) => {
            let cri = Cri::connect(socket)?;
            cri::wait_ready(&cri, std::time::Duration::from_secs(10)).await?;
            cri
        }
        None => {
            containerd::start(
                paths.clone(),
                config.sandbox_image.clone(),
                shutdown.clone(),
            )
            .await?
        }
    };
    // The kubelet port; when it is taken (another agent on this machine), any free port: the Node's
    // daemonEndpoints tell the API server where to find us.
    let listener = match tokio::net::TcpListener::bind(("0.0.0.0", config.port)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(port = config.port, error = %e, "kubelet port taken; using a free port");
            tokio::net::TcpListener::bind(("0.0.0.0", 0))
                .await
                .map_err(|e| KubeletError::io(Path::new("kubelet port"), e))?
        }
    };
    let port = listener
        .local_addr()
        .map_err(|e| KubeletError::io(Path::new("kubelet port"), e))?
        .port();
    let kubelet = Arc::new(Kubelet {
        config,
        client,
        cri,
        services: env::ServiceCache::default(),
        stats: stats::Stats::default(),
    });
    tokio::spawn(stats::Stats::run(kubelet.clone(), shutdown.clone()));
    {
        let kubelet = kubelet.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                volumes::reclaim_local_volumes(&kubelet).await;
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        });
    }
    tokio::spawn(server::serve(
        kubelet.clone(),
        listener,
        tls,
        shutdown.clone(),
    ));
    let (version_name, version) = kubelet.cri.version().await?;
    let runtime_version = format!("{version_name}://{version}");
    node::register(&kubelet, port, &runtime_version).await?;
    let pod_cidr = node::wait_pod_cidr(&kubelet, &shutdown).await?;
    let cni_dir = match &kubelet.config.container_runtime_endpoint {
        Some(_) => None,
        None => Some(paths.cni_conf_dir.clone()),
    };
    if let Some(dir) = cni_dir {
        cni::write_conflist(&dir, &kubelet.config, &pod_cidr)?;
    }
    tokio::spawn(node::heartbeat(
        kubelet.clone(),
        port,
        runtime_version,
        shutdown.clone(),
    ));
    pods::run(kubelet, shutdown).await;
    Ok(())
}
