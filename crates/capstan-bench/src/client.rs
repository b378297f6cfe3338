//! A minimal HTTPS client: one HTTP/2 connection per [`Conn`], TLS with the cluster CA and the admin
//! client certificate. No pool, no retries: a benchmark wants to know exactly which connection a
//! request used.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::kubeconfig::Credentials;

/// Where and how to connect: the server address and the TLS client configuration.
#[derive(Clone)]
pub(crate) struct Endpoint {
    addr: SocketAddr,
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Endpoint {
    /// An endpoint for `addr` trusting the CA of `creds` and presenting its client certificate,
    /// offering only HTTP/2.
    pub(crate) fn new(addr: SocketAddr, creds: &Credentials) -> Result<Endpoint> {
        let mut config = capstan_pki::client_config(&creds.ca_pem, Some(&creds.client))
            .context("cannot build the TLS client configuration")?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Endpoint {
            addr,
            connector: TlsConnector::from(Arc::new(config)),
            name: ServerName::IpAddress(addr.ip().into()),
        })
    }

    /// Opens one TLS connection and performs the HTTP/2 handshake.
    pub(crate) async fn connect(&self) -> Result<Conn> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("cannot connect to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let tls = self
            .connector
            .connect(self.name.clone(), tcp)
            .await
            .context("TLS handshake failed")?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            bail!("the server did not agree to HTTP/2");
        }
        // The HTTP/2 settings of Go's client (kubectl, client-go): 1 MiB frames, a 4 MiB stream
        // window and a 1 GiB connection window (hyper's defaults are 16 KiB / 2 MiB / 5 MiB).
        let (send, connection) = http2::Builder::new(TokioExecutor::new())
            .max_frame_size(1 << 20)
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(1 << 30)
            .handshake(TokioIo::new(tls))
            .await
            .context("HTTP/2 handshake failed")?;
        tokio::spawn(connection);
        Ok(Conn {
            send,
            base: format!("https://{}", self.addr),
        })
    }
}

/// One HTTP/2 connection; clones share it (their requests are multiplexed streams).
#[derive(Clone)]
pub(crate) struct Conn {
    send: http2::SendRequest<Full<Bytes>>,
    base: String,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("base", &self.base).finish()
    }
}

impl Conn {
    /// Sends a request and returns the status and the response head's body, not yet read.
    pub(crate) async fn start(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Incoming)> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(http::header::ACCEPT, "application/json");
        if body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = builder.body(Full::new(body.unwrap_or_default()))?;
        self.send.ready().await.context("connection closed")?;
        let response = self
            .send
            .send_request(request)
            .await
            .with_context(|| format!("request to {path} failed"))?;
        Ok((response.status(), response.into_body()))
    }

    /// Sends a request and reads the whole response.
    pub(crate) async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes)> {
        let (status, body) = self.start(method, path, body).await?;
        let body = body
            .collect()
            .await
            .with_context(|| format!("reading the response of {path} failed"))?
            .to_bytes();
        Ok((status, body))
    }

    /// Creates namespace `name` and returns the resourceVersion of its (empty) pod list, from which
    /// a watch sees every pod created afterwards.
    pub(crate) async fn create_namespace_for_pods(&mut self, name: &str) -> Result<String> {
        let namespace = serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
        });
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/namespaces",
                Some(Bytes::from(namespace.to_string())),
            )
            .await?;
        if status != StatusCode::CREATED {
            bail!(
                "creating namespace {name} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        let path = format!("/api/v1/namespaces/{name}/pods");
        let (status, body) = self.call(Method::GET, &path, None).await?;
        if status != StatusCode::OK {
            bail!("listing pods in {name} answered {status}");
        }
        let list: serde_json::Value = serde_json::from_slice(&body).context("pod list")?;
        Ok(list
            .pointer("/metadata/resourceVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned())
    }
}
