//! An in-process API server for the integration tests of other crates (scheduler, controllers,
//! kubelet): SQLite in a temporary directory, HTTPS on 127.0.0.1 with a fresh CA, and an admin
//! client certificate. Enabled by the `testing` feature; never part of the binary.
//!
//! The server reaches kubelets with a real kubelet client certificate (CN
//! `kube-apiserver-kubelet-client`, O `system:masters`) trusting the cluster CA, so a test can stand
//! up a kubelet (real or fake) with [`TestCluster::kubelet_server_tls`].

use std::sync::Arc;
use std::time::Duration;

use capstan_pki::{CertKeyPair, Pki};
use capstan_store::{SqliteStore, Store};
use rustls::pki_types::pem::PemObject;
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
    /// The certificate the API server presents to kubelets: CN=kube-apiserver-kubelet-client,
    /// O=system:masters.
    pub kubelet_client: CertKeyPair,
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
        let kubelet_client = pki
            .issue_client_cert(
                "kube-apiserver-kubelet-client",
                &["system:masters"],
                Duration::from_secs(24 * 3600),
            )
            .expect("kubelet client cert");
        let kubelet_client_tls =
            capstan_pki::client_tls_config(pki.ca_pem(), Some(&kubelet_client))
                .expect("kubelet client tls config");
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
            kubelet_client_tls: Some(kubelet_client_tls),
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
            kubelet_client,
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

    /// A serving TLS config for a kubelet on 127.0.0.1/localhost: a certificate from the cluster CA,
    /// and a client certificate from the same CA required (as the API server presents), HTTP/1.1.
    pub fn kubelet_server_tls(&self) -> Arc<rustls::ServerConfig> {
        let serving = self.pki.serving_cert(&[]).expect("serving cert");
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(serving.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("serving cert pem");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes())
            .expect("serving key pem");
        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls::pki_types::CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(ca.expect("ca pem")).expect("ca root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("client verifier");
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .expect("kubelet server config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
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
