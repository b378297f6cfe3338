//! Capstan's API server: the Kubernetes REST API over HTTPS, the only gateway to the cluster store.
//!
//! It owns HTTP and TLS serving, authentication (x509 client certificates, bearer tokens) and the
//! authorization hook, the REST verbs with Kubernetes semantics (`rest`), the watch cache that serves
//! LIST and WATCH from memory (`cache`), discovery, OpenAPI, Table output and metrics. Pod logs,
//! exec, attach and port-forward are proxied to the pod's kubelet (`proxy`, via `capstan-streams`).
//!
//! It depends on `capstan-api` (what resources are), `capstan-store` (where they live), `capstan-patch`,
//! `capstan-printers`, `capstan-openapi` and `capstan-streams`. No other component may touch the store: scheduler,
//! controllers and kubelets are clients of this server.

mod binding;
mod body;
mod bootstrap;
pub mod cache;
mod conversion;
mod crd;
mod discovery;
mod disruption;
mod encode;
mod error;
mod impersonation;
mod metrics;
mod metrics_api;
mod network;
mod objects;
mod patch;
mod proxy;
mod rbac;
mod rbac_policy;
mod render;
pub mod request;
mod rest;
mod sa_tokens;
pub mod selectors;
mod server;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use capstan_store::Store;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::{ApiError, ApiResult};
pub use network::ServiceNetwork;
pub use objects::AdmissionConfig;
pub use rbac::RbacAuthorizer;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn new(
        name: impl Into<String>,
        groups: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let mut groups: Vec<String> = groups.into_iter().map(Into::into).collect();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        Self {
            name: name.into(),
            groups,
        }
    }
}

/// Decides whether a user may do something: [`RbacAuthorizer`] in `capstan server`;
/// [`AllowAuthenticated`] lets every authenticated user do everything (in-process test servers).
pub trait Authorizer: Send + Sync + std::fmt::Debug {
    /// May `user` do `verb` on `resource` (plural, with subresource after a slash) in `namespace`?
    fn authorize(
        &self,
        user: &User,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> bool;

    /// Called once when the server starts, with the watch cache it serves from (authorizers that
    /// decide from API objects, such as RBAC, read them there).
    fn attach(&self, _cache: &Arc<cache::WatchCache>) {}

    /// May `user` write this role or binding (`plural` of rbac.authorization.k8s.io) without
    /// granting more than they hold? `Err` carries the reason for the Forbidden answer.
    fn check_grant(
        &self,
        _user: &User,
        _plural: &str,
        _namespace: Option<&str>,
        _object: &Value,
    ) -> Result<(), String> {
        Ok(())
    }

    /// A SelfSubjectRulesReview's status: what `user` may do in `namespace`.
    fn rules_review(&self, _user: &User, _namespace: &str) -> Value {
        serde_json::json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        })
    }

    /// Answers a (Self)SubjectAccessReview spec.
    fn allows_review(&self, user: &User, spec: &Value) -> bool {
        let attrs = &spec["resourceAttributes"];
        self.authorize(
            user,
            attrs["verb"].as_str().unwrap_or_default(),
            attrs["group"].as_str().unwrap_or_default(),
            attrs["resource"].as_str().unwrap_or_default(),
            attrs["namespace"].as_str(),
            attrs["name"].as_str(),
        )
    }
}

/// Allows everything to every authenticated user.
#[derive(Debug, Default)]
pub struct AllowAuthenticated;

impl Authorizer for AllowAuthenticated {
    fn authorize(
        &self,
        user: &User,
        _: &str,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: Option<&str>,
    ) -> bool {
        user.groups.iter().any(|g| g == "system:authenticated")
    }
}

/// Bearer tokens the server accepts.
#[derive(Debug, Default)]
pub struct Tokens {
    tokens: RwLock<HashMap<String, User>>,
}

impl Tokens {
    pub fn insert(&self, token: impl Into<String>, user: User) {
        self.tokens
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(token.into(), user);
    }

    pub fn authenticate(&self, token: &str) -> Option<User> {
        if token.is_empty() {
            return None;
        }
        self.tokens
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(token)
            .cloned()
    }
}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub cache: Arc<cache::WatchCache>,
    pub admission: AdmissionConfig,
    pub services: ServiceNetwork,
    pub authorizer: Arc<dyn Authorizer>,
    pub tokens: Arc<Tokens>,
    /// Built on first request (most servers never serve them, and they are megabytes), and again
    /// after the custom resources served change.
    openapi: std::sync::Mutex<Option<Arc<OpenApiBuilt>>>,
    metrics: metrics::Metrics,
    /// `host:port` clients are told to reach this server at.
    pub advertise: SocketAddr,
    ready: tokio::sync::watch::Receiver<bool>,
    /// The built-in namespaces and the `kubernetes` Service exist.
    booted: std::sync::atomic::AtomicBool,
    /// Client TLS for reaching kubelets (pod logs, exec, attach, port-forward).
    kubelet_client_tls: Option<Arc<rustls::ClientConfig>>,
    /// The cluster CA certificate served at `/cacerts` for joining agents.
    cluster_ca_pem: std::sync::OnceLock<String>,
    /// Signs and checks service account tokens; a key of the process's own unless one is given.
    sa_signer: std::sync::OnceLock<Option<Arc<capstan_pki::TokenSigner>>>,
}

/// The OpenAPI documents for one set of served custom resources.
#[derive(Debug)]
struct OpenApiBuilt {
    /// The custom resources they describe (their addresses: registered entries are never freed).
    custom: Vec<usize>,
    docs: Result<capstan_openapi::OpenApiDocs, String>,
    /// The v2 document in gnostic protobuf, as kubectl asks for it; built on first request.
    v2_protobuf: std::sync::OnceLock<Result<bytes::Bytes, String>>,
}

impl ApiState {
    /// The OpenAPI documents of the resources served now, built on first use.
    fn openapi_built(&self) -> Arc<OpenApiBuilt> {
        let custom = capstan_api::custom::registered();
        let key: Vec<usize> = custom
            .iter()
            .map(|r| std::ptr::from_ref::<capstan_api::ResourceInfo>(r) as usize)
            .collect();
        let mut slot = self.openapi.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(built) = slot.as_ref()
            && built.custom == key
        {
            return built.clone();
        }
        let resources: Vec<capstan_api::ResourceInfo> = capstan_api::resources()
            .iter()
            .copied()
            .chain(custom.into_iter().copied())
            .collect();
        let built = Arc::new(OpenApiBuilt {
            custom: key,
            docs: capstan_openapi::OpenApiDocs::build_with(
                &resources,
                &capstan_patch::openapi_field_extensions,
            )
            .map_err(|e| e.to_string()),
            v2_protobuf: std::sync::OnceLock::new(),
        });
        *slot = Some(built.clone());
        built
    }

    /// Runs `f` on the OpenAPI documents served now.
    fn with_openapi<T>(
        &self,
        f: impl FnOnce(&capstan_openapi::OpenApiDocs) -> T,
    ) -> Result<T, ApiError> {
        let built = self.openapi_built();
        match &built.docs {
            Ok(docs) => Ok(f(docs)),
            Err(e) => Err(ApiError::internal(format!("openapi: {e}"))),
        }
    }

    fn openapi_v2_protobuf(&self) -> Result<bytes::Bytes, ApiError> {
        let built = self.openapi_built();
        let docs = built
            .docs
            .as_ref()
            .map_err(|e| ApiError::internal(format!("openapi: {e}")))?;
        built
            .v2_protobuf
            .get_or_init(|| {
                let json: Value = serde_json::from_slice(docs.v2()).map_err(|e| e.to_string())?;
                capstan_protobuf::encode_openapi_v2(&json)
                    .map(bytes::Bytes::from)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| ApiError::internal(format!("openapi v2: {e}")))
    }
}

impl ApiState {
    /// The service account token key; without a configured one, a key that lives as long as the
    /// process (tests).
    pub(crate) fn sa_signer(&self) -> Option<&capstan_pki::TokenSigner> {
        self.sa_signer
            .get_or_init(|| match capstan_pki::TokenSigner::ephemeral() {
                Ok(signer) => Some(Arc::new(signer)),
                Err(e) => {
                    tracing::error!(error = %e, "no service account token key");
                    None
                }
            })
            .as_deref()
    }
}

/// How to run the API server.
#[derive(Debug)]
pub struct ApiServerConfig {
    pub listener: TcpListener,
    pub tls: Arc<rustls::ServerConfig>,
    pub store: Arc<dyn Store>,
    pub admission: AdmissionConfig,
    pub services: ServiceNetwork,
    pub authorizer: Arc<dyn Authorizer>,
    pub tokens: Arc<Tokens>,
    /// The address other components and the `kubernetes` Service use to reach this server.
    pub advertise_address: IpAddr,
    /// How this server reaches kubelets for pod logs, exec, attach and port-forward: trusts the
    /// cluster CA (kubelet serving certificates) and presents this server's kubelet client
    /// certificate. Without it those requests fail with a dial error.
    pub kubelet_client_tls: Option<Arc<rustls::ClientConfig>>,
}

/// A running API server.
#[derive(Debug)]
pub struct ApiServer {
    state: Arc<ApiState>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    cache_ready: tokio::sync::watch::Sender<bool>,
}

impl ApiServer {
    /// Prepares the server; `run` starts serving.
    pub fn new(config: ApiServerConfig) -> Result<Self, ApiError> {
        let port = config
            .listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(6443);
        let (cache_ready, ready) = tokio::sync::watch::channel(false);
        let cache = cache::WatchCache::new(capstan_api::resources());
        config.authorizer.attach(&cache);
        let state = Arc::new(ApiState {
            store: config.store,
            cache,
            admission: config.admission,
            services: config.services,
            authorizer: config.authorizer,
            tokens: config.tokens,
            openapi: std::sync::Mutex::new(None),
            metrics: metrics::Metrics::default(),
            advertise: SocketAddr::new(config.advertise_address, port),
            ready,
            booted: std::sync::atomic::AtomicBool::new(false),
            kubelet_client_tls: config.kubelet_client_tls,
            cluster_ca_pem: std::sync::OnceLock::new(),
            sa_signer: std::sync::OnceLock::new(),
        });
        Ok(Self {
            state,
            listener: config.listener,
            tls: config.tls,
            cache_ready,
        })
    }

    /// Serves the cluster CA at `/cacerts` (unauthenticated, like k3s) so agents can join.
    pub fn with_cluster_ca(self, ca_pem: &str) -> Self {
        let _ = self.state.cluster_ca_pem.set(ca_pem.to_owned());
        self
    }

    /// Signs service account tokens with this key (kept in the data dir, so tokens outlive restarts).
    pub fn with_service_account_signer(self, signer: Arc<capstan_pki::TokenSigner>) -> Self {
        let _ = self.state.sa_signer.set(Some(signer));
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let cache = self.state.cache.clone();
        tokio::spawn(cache.run(self.state.store.clone(), self.cache_ready, shutdown.clone()));
        let state = self.state.clone();
        let boot_shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = bootstrap::run(state) => {}
                () = boot_shutdown.cancelled() => {}
            }
        });
        let state = self.state.clone();
        let crd_shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = crd::run(state) => {}
                () = crd_shutdown.cancelled() => {}
            }
        });
        server::serve(self.listener, self.tls, self.state, shutdown).await;
    }
}
