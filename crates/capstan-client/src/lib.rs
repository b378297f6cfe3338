//! Capstan's API client for its own components (scheduler, controllers, kubelet): a `kube::Client`
//! that multiplexes every request and watch over one HTTP/2 connection per API server, as client-go
//! does, instead of kube's default of one HTTP/1.1 connection per request in flight. Each open
//! connection costs TLS and HTTP buffers at both ends (and both ends live in `capstan server`), so
//! the ~40 watches of the in-process components would otherwise hold ~70 connections at idle.
//!
//! Owns: building that client from a kubeconfig, and [`Lean`] (objects decoded without
//! `metadata.managedFields`). Depends on kube, serde, hyper-util and hyper-rustls only.

mod lean;

pub use lean::Lean;

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::ConfigExt;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be read or used.
    #[error("bad kubeconfig: {0}")]
    Kubeconfig(String),
    /// The TLS configuration or authentication layer could not be built from it.
    #[error("cannot build the client: {0}")]
    Build(#[from] kube::Error),
}

/// HTTP/2 flow-control windows of Go's transport (what kubectl and client-go use): a 4 MiB window per
/// stream keeps a large LIST from stalling on window updates, and the connection window is large
/// enough that one slow watch never holds back the others.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 1 << 30;
/// A dead connection (server gone without a FIN) is noticed by pings, not by request timeouts: watches
/// are idle for minutes by design.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(15);

/// A client for `config` whose requests share one HTTP/2 connection (TLS with ALPN `h2`).
pub fn from_config(config: kube::Config) -> Result<kube::Client, Error> {
    let mut tls = config.rustls_client_config()?;
    // kube offers http/1.1; the connector below offers h2 alone.
    tls.alpn_protocols.clear();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http2()
        .wrap_connector(http);
    let client = hyper_util::client::legacy::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .http2_only(true)
        .http2_initial_stream_window_size(STREAM_WINDOW)
        .http2_initial_connection_window_size(CONNECTION_WINDOW)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .http2_keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .build(https);
    // One error type on both sides of the optional auth layer.
    let client = tower::ServiceExt::map_err(client, tower::BoxError::from);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .service(client);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// A client for the kubeconfig in `yaml` (its current context).
pub async fn from_kubeconfig_yaml(yaml: &str) -> Result<kube::Client, Error> {
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(yaml).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    from_config(config)
}
