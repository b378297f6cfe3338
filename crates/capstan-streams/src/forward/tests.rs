use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::Frame;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

/// A response body fed from a channel: each message is one chunk; the body ends when the sender
/// is dropped, and the sender sees the body dropped (`closed()`).
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

fn full(text: &'static str) -> ChannelBody {
    let (tx, rx) = mpsc::channel(1);
    tx.try_send(Bytes::from_static(text.as_bytes()))
        .expect("room for one chunk");
    ChannelBody(rx)
}

type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<ChannelBody>> + Send>>
        + Send
        + Sync,
>;

fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<ChannelBody>> + Send + 'static,
{
    Arc::new(move |req| Box::pin(f(req)))
}

/// An upstream HTTP/1.1 server (TLS when `tls` is given) on a free loopback port.
async fn upstream(
    handler: Handler,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let handler = handler.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let http = hyper::server::conn::http1::Builder::new();
                let _ = match tls {
                    Some(tls) => {
                        let Ok(stream) = tokio_rustls::TlsAcceptor::from(tls).accept(tcp).await
                        else {
                            return;
                        };
                        http.serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await
                    }
                    None => {
                        http.serve_connection(TokioIo::new(tcp), service)
                            .with_upgrades()
                            .await
                    }
                };
            });
        }
    });
    addr
}

/// A proxy that forwards every request to `base` + the request's path and query.
async fn proxy(base: String, tls: Option<Arc<rustls::ClientConfig>>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let base = base.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let target: Uri = format!(
                        "{base}{}",
                        req.uri().path_and_query().map_or("/", |p| p.as_str())
                    )
                    .parse()
                    .expect("target");
                    let tls = tls.clone();
                    async move {
                        let response = match forward(req, &target, tls, None).await {
                            Ok(response) => response.map(BodyExt::boxed),
                            Err(error) => {
                                let mut response = Response::new(
                                    http_body_util::Full::new(Bytes::from(error.to_string()))
                                        .map_err(|never| match never {})
                                        .boxed(),
                                );
                                *response.status_mut() = StatusCode::BAD_GATEWAY;
                                response
                            }
                        };
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// Sends one request to `addr` over a fresh HTTP/1.1 connection.
async fn send(addr: std::net::SocketAddr, req: Request<Empty<Bytes>>) -> Response<Incoming> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(connection.with_upgrades());
    sender.send_request(req).await.expect("response")
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .uri(path)
        .header("host", "proxy")
        .body(Empty::new())
        .expect("request")
}

async fn next_chunk(body: &mut Incoming) -> Option<Bytes> {
    loop {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .expect("chunk in time")?
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            return Some(data);
        }
    }
}

#[tokio::test]
async fn streams_the_upstream_body_chunk_by_chunk() {
    let (seen_tx, seen_rx) = mpsc::channel(4);
    let (chunks_tx, chunks_rx) = mpsc::channel(4);
    let chunks_rx = Arc::new(std::sync::Mutex::new(Some(chunks_rx)));
    let up = upstream(
        handler(move |req| {
            let seen = seen_tx.clone();
            let chunks = chunks_rx.lock().expect("lock").take();
            async move {
                let host = req.headers().get("host").cloned();
                let _ = seen
                    .send((req.method().clone(), req.uri().to_string(), host))
                    .await;
                let mut response = Response::new(ChannelBody(chunks.expect("one request")));
                response
                    .headers_mut()
                    .insert("x-upstream", HeaderValue::from_static("yes"));
                response
            }
        }),
        None,
    )
    .await;
    let proxy = proxy(format!("http://{up}"), None).await;
    let response = send(
        proxy,
        get("/containerLogs/ns/pod/c1?follow=true&tailLines=5"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-upstream"], "yes");
    let mut seen_rx = seen_rx;
    let (method, uri, host) = seen_rx.recv().await.expect("upstream saw the request");
    assert_eq!(method, http::Method::GET);
    assert_eq!(uri, "/containerLogs/ns/pod/c1?follow=true&tailLines=5");
    assert_eq!(host.expect("host"), up.to_string().as_str());

    let mut body = response.into_body();
    chunks_tx
        .send(Bytes::from_static(b"one\n"))
        .await
        .expect("send");
    // The second chunk is only written once the first has come through: nothing is buffered.
    assert_eq!(next_chunk(&mut body).await.as_deref(), Some(&b"one\n"[..]));
    chunks_tx
        .send(Bytes::from_static(b"two\n"))
        .await
        .expect("send");
    assert_eq!(next_chunk(&mut body).await.as_deref(), Some(&b"two\n"[..]));
    drop(chunks_tx);
    assert_eq!(next_chunk(&mut body).await, None);
}

#[tokio::test]
async fn dropping_the_body_closes_the_upstream_connection() {
    let (chunks_tx, chunks_rx) = mpsc::channel(4);
    let chunks_rx = Arc::new(std::sync::Mutex::new(Some(chunks_rx)));
    let up = upstream(
        handler(move |_| {
            let chunks = chunks_rx.lock().expect("lock").take();
            async move { Response::new(ChannelBody(chunks.expect("one request"))) }
        }),
        None,
    )
    .await;
    let proxy = proxy(format!("http://{up}"), None).await;
    let response = send(proxy, get("/containerLogs/ns/pod/c1?follow=true")).await;
    let mut body = response.into_body();
    chunks_tx
        .send(Bytes::from_static(b"line\n"))
        .await
        .expect("send");
    assert!(next_chunk(&mut body).await.is_some());
    drop(body);
    // The follower stops: the upstream's response body is dropped once the client has gone.
    tokio::time::timeout(WAIT, chunks_tx.closed())
        .await
        .expect("upstream body dropped after the client went away");
}

#[tokio::test]
async fn upgrades_are_spliced_both_ways() {
    let up = upstream(
        handler(|mut req| async move {
            if !is_upgrade(req.headers()) || req.headers()["upgrade"] != "SPDY/3.1" {
                let mut response = Response::new(full("not an upgrade"));
                *response.status_mut() = StatusCode::BAD_REQUEST;
                return response;
            }
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let mut io = TokioIo::new(on_upgrade.await.expect("upgraded"));
                let mut buf = [0u8; 64];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
            let mut response = Response::new(full(""));
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let headers = response.headers_mut();
            headers.insert("connection", HeaderValue::from_static("Upgrade"));
            headers.insert("upgrade", HeaderValue::from_static("SPDY/3.1"));
            headers.insert(
                "x-stream-protocol-version",
                HeaderValue::from_static("v4.channel.k8s.io"),
            );
            response
        }),
        None,
    )
    .await;
    let proxy = proxy(format!("http://{up}"), None).await;
    let request = Request::builder()
        .method("POST")
        .uri("/exec/ns/pod/c1?command=sh&input=1&output=1")
        .header("host", "proxy")
        .header("connection", "Upgrade")
        .header("upgrade", "SPDY/3.1")
        .header("x-stream-protocol-version", "v4.channel.k8s.io")
        .body(Empty::new())
        .expect("request");
    let response = send(proxy, request).await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        response.headers()["x-stream-protocol-version"],
        "v4.channel.k8s.io"
    );
    let mut io = TokioIo::new(
        tokio::time::timeout(WAIT, hyper::upgrade::on(response))
            .await
            .expect("in time")
            .expect("client upgraded"),
    );
    for message in [&b"ping"[..], b"second message"] {
        io.write_all(message).await.expect("write");
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(WAIT, io.read_exact(&mut echoed))
            .await
            .expect("echo in time")
            .expect("read");
        assert_eq!(echoed, message);
    }
    // Closing our side ends the upstream's echo loop, which closes its side in turn.
    io.shutdown().await.expect("shutdown");
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, io.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("read to end");
    assert!(rest.is_empty());
}

#[tokio::test]
async fn a_declined_upgrade_returns_the_upstream_answer() {
    let up = upstream(
        handler(|_| async {
            let mut response = Response::new(full("websocket not supported"));
            *response.status_mut() = StatusCode::FORBIDDEN;
            response
        }),
        None,
    )
    .await;
    let proxy = proxy(format!("http://{up}"), None).await;
    let request = Request::builder()
        .uri("/portForward/ns/pod")
        .header("host", "proxy")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Empty::new())
        .expect("request");
    let response = send(proxy, request).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body, "websocket not supported");
}

#[tokio::test]
async fn dial_errors_name_the_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let target: Uri = format!("http://{addr}/containerLogs/a/b/c")
        .parse()
        .expect("uri");
    match forward(get("/x"), &target, None, None).await {
        Err(StreamError::Dial { addr: dialed, .. }) => assert_eq!(dialed, addr.to_string()),
        other => panic!("expected a dial error, got {other:?}"),
    }
}

#[test]
fn targets_resolve_to_an_address_and_server_name() {
    /// (target, Some((secure, addr, host)) or None when invalid)
    type Case = (&'static str, Option<(bool, &'static str, &'static str)>);
    let cases: &[Case] = &[
        (
            "https://10.0.0.5:10250/exec/a/b/c",
            Some((true, "10.0.0.5:10250", "10.0.0.5")),
        ),
        (
            "https://[fd00::5]:10250/exec/a/b/c",
            Some((true, "[fd00::5]:10250", "fd00::5")),
        ),
        (
            "https://node-1/containerLogs/a/b/c",
            Some((true, "node-1:443", "node-1")),
        ),
        (
            "http://127.0.0.1/x",
            Some((false, "127.0.0.1:80", "127.0.0.1")),
        ),
        ("ftp://node-1/x", None),
        ("/relative/path", None),
    ];
    for (target, expected) in cases {
        let uri: Uri = target.parse().expect("uri");
        match (endpoint(&uri), expected) {
            (Ok(e), Some((secure, addr, host))) => {
                assert_eq!(
                    (e.secure, e.addr.as_str(), e.host.as_str()),
                    (*secure, *addr, *host)
                );
            }
            (Err(StreamError::InvalidTarget { .. }), None) => {}
            (other, _) => panic!("{target}: {other:?}"),
        }
    }
}

fn self_signed(
    san: &str,
) -> (
    rustls::pki_types::CertificateDer<'static>,
    Arc<rustls::ServerConfig>,
) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec![san.to_owned()]).expect("certificate");
    let der = cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![der.clone()], key)
    .expect("server config");
    (der, Arc::new(config))
}

fn trusting(cert: rustls::pki_types::CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    // Offering h2 too must not matter: forward asks for HTTP/1.1 only.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

#[tokio::test]
async fn https_upstreams_are_verified() {
    let (cert, server) = self_signed("127.0.0.1");
    let up = upstream(
        handler(|_| async { Response::new(full("secure")) }),
        Some(server),
    )
    .await;
    let target: Uri = format!("https://{up}/containerLogs/a/b/c")
        .parse()
        .expect("uri");

    let response = forward(get("/x"), &target, Some(trusting(cert)), None)
        .await
        .expect("trusted upstream");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body, "secure");

    let (other, _) = self_signed("127.0.0.1");
    match forward(get("/x"), &target, Some(trusting(other)), None).await {
        Err(StreamError::Tls { .. }) => {}
        other => panic!("expected a tls error, got {other:?}"),
    }
    match forward(get("/x"), &target, None, None).await {
        Err(StreamError::NoTlsConfig(_)) => {}
        other => panic!("expected a missing tls config error, got {other:?}"),
    }
}
