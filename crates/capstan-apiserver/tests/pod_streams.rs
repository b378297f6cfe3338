//! Pod logs, exec, attach and port-forward through the API server to a kubelet: a fake kubelet
//! (HTTPS with a cluster-CA certificate, requiring the API server's kubelet client certificate)
//! answers `/containerLogs` with a streamed body and `/exec` upgrades with an echo.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use capstan_apiserver::testing::TestCluster;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

mod support;
use support::{Client, WAIT};

const KUBECTL: &str = "/usr/bin/kubectl";

/// A body fed from a channel, one chunk per message.
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

fn text_response(code: StatusCode, text: &str) -> Response<ChannelBody> {
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.try_send(Bytes::from(text.to_owned()));
    let mut response = Response::new(ChannelBody(rx));
    *response.status_mut() = code;
    response
}

/// What the fake kubelet saw.
#[derive(Default)]
struct Seen {
    /// Path and query of every request.
    requests: Vec<String>,
    /// Subject CN of the client certificate of every connection.
    client_cns: Vec<String>,
    /// Whether the API server's Authorization header ever reached the kubelet.
    saw_authorization: bool,
}

struct FakeKubelet {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    /// Releases the second chunk of a followed log.
    follow_gate: Arc<Notify>,
}

impl FakeKubelet {
    async fn start(cluster: &TestCluster) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor = tokio_rustls::TlsAcceptor::from(cluster.kubelet_server_tls());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let follow_gate = Arc::new(Notify::new());
        let (seen2, gate2) = (seen.clone(), follow_gate.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let (seen, gate) = (seen2.clone(), gate2.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let cn = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| capstan_pki::identity_from_cert(c.as_ref()).ok())
                        .map(|id| id.user)
                        .unwrap_or_default();
                    seen.lock().expect("lock").client_cns.push(cn);
                    let service = hyper::service::service_fn(move |req| {
                        let (seen, gate) = (seen.clone(), gate.clone());
                        async move { Ok::<_, Infallible>(kubelet(req, &seen, gate)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            follow_gate,
        }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().expect("lock").requests.clone()
    }
}

/// The fake kubelet's answers.
fn kubelet(
    mut req: Request<Incoming>,
    seen: &Mutex<Seen>,
    gate: Arc<Notify>,
) -> Response<ChannelBody> {
    let target = req.uri().to_string();
    {
        let mut seen = seen.lock().expect("lock");
        seen.requests.push(target.clone());
        seen.saw_authorization |= req.headers().contains_key("authorization");
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    if path.starts_with("/containerLogs/") {
        if path.ends_with("/c2") && query.contains("previous=true") {
            return text_response(
                StatusCode::BAD_REQUEST,
                "previous terminated container \"c2\" in pod \"web\" not found",
            );
        }
        let (tx, rx) = mpsc::channel(4);
        let follow = query.contains("follow=true");
        tokio::spawn(async move {
            let _ = tx.send(Bytes::from(format!("request: {target}\n"))).await;
            if follow {
                gate.notified().await;
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = tx.send(Bytes::from_static(b"last line\n")).await;
        });
        let mut response = Response::new(ChannelBody(rx));
        response
            .headers_mut()
            .insert("content-type", http::HeaderValue::from_static("text/plain"));
        return response;
    }
    if path.starts_with("/exec/") || path.starts_with("/attach/") {
        if !capstan_streams::is_upgrade(req.headers()) {
            return text_response(StatusCode::BAD_REQUEST, "upgrade required");
        }
        let protocol = req
            .headers()
            .get("x-stream-protocol-version")
            .cloned()
            .unwrap_or_else(|| http::HeaderValue::from_static("v4.channel.k8s.io"));
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut io = TokioIo::new(upgraded);
            let mut buf = [0u8; 256];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        let mut response = text_response(StatusCode::SWITCHING_PROTOCOLS, "");
        let headers = response.headers_mut();
        headers.insert("connection", http::HeaderValue::from_static("Upgrade"));
        headers.insert("upgrade", http::HeaderValue::from_static("SPDY/3.1"));
        headers.insert("x-stream-protocol-version", protocol);
        return response;
    }
    text_response(StatusCode::NOT_FOUND, "404 page not found")
}

/// A request asking to upgrade to SPDY, as kubectl exec sends it.
fn spdy(path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header("host", "127.0.0.1")
        .header("authorization", "Basic bm90OmZvci10aGUta3ViZWxldA==")
        .header("connection", "Upgrade")
        .header("upgrade", "SPDY/3.1")
        .header("x-stream-protocol-version", "v4.channel.k8s.io")
        .body(Full::new(Bytes::new()))
        .expect("request")
}

/// A Node whose kubelet endpoint is `addr`.
async fn create_node(client: &Client, name: &str, addr: SocketAddr) {
    let status = json!({
        "addresses": [
            {"type": "Hostname", "address": "not-resolvable.invalid"},
            {"type": "InternalIP", "address": addr.ip().to_string()},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": addr.port()}},
    });
    let (code, mut node) = client
        .json(
            "POST",
            "/api/v1/nodes",
            Some(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": status})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{node}");
    node["status"] = status;
    let (code, node) = client
        .json("PUT", &format!("/api/v1/nodes/{name}/status"), Some(node))
        .await;
    assert_eq!(code, StatusCode::OK, "{node}");
}

async fn create_pod(client: &Client, name: &str, node: Option<&str>, containers: &[&str]) {
    let containers: Vec<Value> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "busybox"}))
        .collect();
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": containers},
    });
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
    }
    let (code, body) = client
        .json("POST", "/api/v1/namespaces/default/pods", Some(pod))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
}

struct Setup {
    /// Keep it bound: the server stops when it is dropped.
    _cluster: TestCluster,
    client: Client,
    kubelet: FakeKubelet,
}

/// A cluster, a fake kubelet for node `n1`, pod `web` (c1, c2) and pod `solo` (c1) on it.
async fn setup() -> Setup {
    let cluster = TestCluster::start().await;
    let client = Client::new(&cluster);
    let kubelet = FakeKubelet::start(&cluster).await;
    create_node(&client, "n1", kubelet.addr).await;
    create_pod(&client, "web", Some("n1"), &["c1", "c2"]).await;
    create_pod(&client, "solo", Some("n1"), &["c1"]).await;
    Setup {
        _cluster: cluster,
        client,
        kubelet,
    }
}

#[tokio::test]
async fn logs_are_streamed_from_the_kubelet_with_the_options() {
    let Setup {
        _cluster,
        client,
        kubelet,
    } = setup().await;
    let (code, body) = client
        .request(
            "GET",
            "/api/v1/namespaces/default/pods/web/log?container=c1&tailLines=5&previous=true&timestamps=true",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "request: /containerLogs/default/web/c1?previous=true&tailLines=5&timestamps=true\nlast line\n"
    );
    let (code, body) = client
        .request(
            "GET",
            "/api/v1/namespaces/default/pods/solo/log?limitBytes=10&sinceSeconds=30",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        String::from_utf8_lossy(&body)
            .starts_with("request: /containerLogs/default/solo/c1?limitBytes=10&sinceSeconds=30\n"),
        "{body:?}"
    );
    let seen = kubelet.seen.lock().expect("lock");
    assert!(
        seen.client_cns
            .iter()
            .all(|cn| cn == "kube-apiserver-kubelet-client"),
        "{:?}",
        seen.client_cns
    );
    assert!(!seen.saw_authorization);
}

#[tokio::test]
async fn followed_logs_arrive_before_the_kubelet_finishes() {
    let Setup {
        _cluster,
        client,
        kubelet,
    } = setup().await;
    let req = Request::get("/api/v1/namespaces/default/pods/solo/log?follow=true")
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = client.send(req).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/plain");
    let mut body = response.into_body();
    let first = tokio::time::timeout(WAIT, body.frame())
        .await
        .expect("first chunk while the kubelet still holds the rest")
        .expect("frame")
        .expect("data");
    assert_eq!(
        first.into_data().expect("data"),
        "request: /containerLogs/default/solo/c1?follow=true\n"
    );
    kubelet.follow_gate.notify_one();
    let rest = tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("rest in time")
        .expect("rest")
        .to_bytes();
    assert_eq!(rest, "last line\n");
}

#[tokio::test]
async fn exec_upgrades_are_passed_through_to_the_kubelet() {
    let Setup {
        _cluster,
        client,
        kubelet,
    } = setup().await;
    let response = client
        .send(spdy(
            "/api/v1/namespaces/default/pods/web/exec?container=c2&command=sh&command=-c&command=echo%20hi&stdin=true&stdout=true&tty=true",
        ))
        .await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()["upgrade"], "SPDY/3.1");
    assert_eq!(
        response.headers()["x-stream-protocol-version"],
        "v4.channel.k8s.io"
    );
    let mut io = TokioIo::new(
        tokio::time::timeout(WAIT, hyper::upgrade::on(response))
            .await
            .expect("upgrade in time")
            .expect("upgraded"),
    );
    io.write_all(b"hello kubelet").await.expect("write");
    let mut echoed = [0u8; 13];
    tokio::time::timeout(WAIT, io.read_exact(&mut echoed))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(&echoed, b"hello kubelet");
    assert!(
        kubelet.requests().contains(
            &"/exec/default/web/c2?command=sh&command=-c&command=echo+hi&input=1&output=1&tty=1"
                .to_owned()
        )
    );
    assert!(!kubelet.seen.lock().expect("lock").saw_authorization);

    let response = client
        .send(spdy(
            "/api/v1/namespaces/default/pods/solo/attach?stdout=true&stderr=true",
        ))
        .await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(
        kubelet
            .requests()
            .contains(&"/attach/default/solo/c1?error=1&output=1".to_owned())
    );
}

#[tokio::test]
async fn bad_stream_requests_get_kube_statuses() {
    let Setup {
        _cluster,
        client,
        kubelet,
    } = setup().await;
    create_pod(&client, "pending", None, &["c1"]).await;
    // (method, path, code, message)
    let cases = [
        (
            "GET",
            "/api/v1/namespaces/default/pods/web/log",
            400,
            "a container name must be specified for pod web, choose one of: [c1 c2]",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/pods/web/log?container=nope",
            400,
            "container nope is not valid for pod web",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/pods/web/log?container=c2&previous=true",
            400,
            "previous terminated container \"c2\" in pod \"web\" not found",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/pods/web/log?container=c1&tailLines=-3",
            422,
            "PodLogOptions \"web\" is invalid: tailLines: Invalid value: -3: must be greater than or equal to 0",
        ),
        (
            "GET",
            "/api/v1/namespaces/default/pods/missing/log",
            404,
            "pods \"missing\" not found",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods/pending/exec?command=ls&stdout=true",
            400,
            "pod pending does not have a host assigned",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods/solo/exec?command=ls&stdout=true",
            400,
            "Upgrade request required",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods/web/exec?command=ls&stdout=true",
            400,
            "a container name must be specified for pod web, choose one of: [c1 c2]",
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods/solo/log",
            405,
            "the server does not allow this method on the requested resource",
        ),
    ];
    for (method, path, code, message) in cases {
        let (status, body) = client.json(method, path, None).await;
        assert_eq!(status.as_u16(), code, "{method} {path}: {body}");
        assert_eq!(body["kind"], "Status", "{path}");
        assert_eq!(body["message"], message, "{path}");
    }
    // A pod without a node has no logs yet.
    let (status, body) = client
        .request("GET", "/api/v1/namespaces/default/pods/pending/log", None)
        .await;
    assert_eq!((status, body.len()), (StatusCode::NO_CONTENT, 0));
    // kubectl's port-forward tries SPDY tunneled over WebSocket first and falls back on a failed upgrade.
    let req = Request::get("/api/v1/namespaces/default/pods/solo/portforward")
        .header("host", "127.0.0.1")
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-protocol", "SPDY/3.1+portforward.k8s.io")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = client.send(req).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // None of the rejected requests reached the kubelet, except the log it refused.
    assert_eq!(
        kubelet.requests(),
        ["/containerLogs/default/web/c2?previous=true"]
    );
}

#[tokio::test]
async fn an_unreachable_kubelet_is_a_server_error() {
    let Setup {
        _cluster, client, ..
    } = setup().await;
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    create_node(&client, "down", addr).await;
    create_pod(&client, "lost", Some("down"), &["c1"]).await;

    let (status, body) = client
        .json("GET", "/api/v1/namespaces/default/pods/lost/log", None)
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let message = body["message"].as_str().expect("message");
    assert!(
        message.starts_with(&format!(
            "Get \"https://{addr}/containerLogs/default/lost/c1\": dial tcp {addr}"
        )),
        "{message}"
    );

    let response = client
        .send(spdy(
            "/api/v1/namespaces/default/pods/lost/exec?command=ls&stdout=true",
        ))
        .await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let status: Value = serde_json::from_slice(&body).expect("status");
    let message = status["message"].as_str().expect("message");
    assert!(
        message.starts_with(&format!("error dialing backend: dial tcp {addr}")),
        "{message}"
    );
}

#[tokio::test]
async fn kubectl_logs_prints_the_kubelet_body() {
    let Setup {
        _cluster: cluster, ..
    } = setup().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("admin.kubeconfig");
    std::fs::write(&kubeconfig, cluster.admin_kubeconfig()).expect("write kubeconfig");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["logs", "web", "-c", "c1", "--tail=5"])
            .output(),
    )
    .await
    .expect("kubectl in time")
    .expect("run kubectl");
    assert!(
        output.status.success(),
        "kubectl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "request: /containerLogs/default/web/c1?tailLines=5\nlast line\n"
    );
}
