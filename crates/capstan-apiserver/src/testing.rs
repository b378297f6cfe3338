//! An in-process API server for the integration tests of other crates (scheduler, controllers,
//! kubelet): SQLite in a temporary directory, HTTPS on 127.0.0.1 with a fresh CA, and an admin
//! client certificate. Enabled by the `testing` feature; never part of the binary.

use std::sync::Arc;
use std::time::Duration;

use capstan_pki::{CertKeyPair, Pki};
use capstan_store::{SqliteStore, Store};
use tokio_util::sync::CancellationToken;

use crate::{
    AdmissionConfig, AllowAuthenticated, ApiServer, ApiServerConfig, ServiceNetwork, Tokens,
};

/// A running test API server; stopped when dropped.
#[derive(Debug)]
pub struct TestCluster {
    /// `https://127.0.0.1:PORT`
    pub url: String,
    pub ca_pem: String,
    /// CN=admin, O=system:masters.
    pub admin: CertKeyPair,
    pub store: Arc<dyn Store>,
    pki: Pki,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts a server and waits until it is ready (built-in namespaces exist).
    pub async fn start() -> Self {
        Self::start_with(AdmissionConfig::default()).await
    }

    pub async fn start_with(admission: AdmissionConfig) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("capstan-test-cluster-")
            .tempdir()
            .expect("temp dir");
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path().join("state.db")).expect("open store"));
        let pki = Pki::load_or_create(&dir.path().join("tls")).expect("pki");
        let serving = pki.serving_cert(&[]).expect("serving cert");
        let tls = pki.server_tls_config(&serving).expect("tls config");
        let admin = pki
            .issue_client_cert("admin", &["system:masters"], Duration::from_secs(24 * 3600))
            .expect("admin cert");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = ApiServer::new(ApiServerConfig {
            listener,
            tls,
            store: store.clone(),
            admission,
            services: ServiceNetwork::parse("10.43.0.0/16").expect("cidr"),
            authorizer: Arc::new(AllowAuthenticated),
            tokens: Arc::new(Tokens::default()),
            advertise_address: std::net::IpAddr::from([127, 0, 0, 1]),
        })
        .expect("api server");
        let state = server.state.clone();
        let shutdown = CancellationToken::new();
        tokio::spawn(server.run(shutdown.clone()));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !(*state.ready.borrow() && state.booted.load(std::sync::atomic::Ordering::SeqCst)) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "test API server did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Self {
            url: format!("https://127.0.0.1:{port}"),
            ca_pem: pki.ca_pem().to_owned(),
            admin,
            store,
            pki,
            shutdown,
            _dir: dir,
        }
    }

    /// A kubeconfig (YAML) for the admin user.
    pub fn admin_kubeconfig(&self) -> String {
        capstan_pki::kubeconfig_yaml(&self.url, &self.ca_pem, &self.admin)
    }

    /// A kubeconfig for a user with this name and groups (e.g. a node: `system:node:n1`, `system:nodes`).
    pub fn kubeconfig_for(&self, user: &str, groups: &[&str]) -> String {
        let cert = self
            .pki
            .issue_client_cert(user, groups, Duration::from_secs(24 * 3600))
            .expect("client cert");
        capstan_pki::kubeconfig_yaml(&self.url, &self.ca_pem, &cert)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
