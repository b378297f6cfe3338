//! Shared by the integration tests: an HTTPS client of the in-process test API server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use capstan_apiserver::testing::TestCluster;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// An HTTPS client of the test API server (admin certificate, HTTP/1.1).
pub(crate) struct Client {
    addr: SocketAddr,
    connector: tokio_rustls::TlsConnector,
}

impl Client {
    pub(crate) fn new(cluster: &TestCluster) -> Self {
        let mut config = capstan_pki::client_config(&cluster.ca_pem, Some(&cluster.admin))
            .expect("client config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let addr = cluster
            .url
            .trim_start_matches("https://")
            .parse()
            .expect("server address");
        Self {
            addr,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    pub(crate) async fn send(&self, req: Request<Full<Bytes>>) -> Response<Incoming> {
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let tls = self.connector.connect(name, tcp).await.expect("tls");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("handshake");
        tokio::spawn(connection.with_upgrades());
        tokio::time::timeout(WAIT, sender.send_request(req))
            .await
            .expect("response in time")
            .expect("response")
    }

    pub(crate) async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Bytes) {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Full::new(body))
            .expect("request");
        let response = self.send(req).await;
        let status = response.status();
        let body = tokio::time::timeout(WAIT, response.into_body().collect())
            .await
            .expect("body in time")
            .expect("body")
            .to_bytes();
        (status, body)
    }

    pub(crate) async fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, body) = self.request(method, path, body).await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}
