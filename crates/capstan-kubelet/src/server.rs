//! The kubelet's HTTPS API (port 10250): `/healthz`, `/stats/summary`, `/containerLogs`, `/exec`,
//! `/attach`, `/portForward`, `/pods`. Only the API server's kubelet-client certificate (or `system:masters`) may
//! call it. Exec, attach and port-forward are handed to containerd's CRI streaming server: this server
//! asks CRI for a one-time URL and forwards the request and its connection upgrade there unchanged, so
//! SPDY and WebSocket clients both work.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use tokio_util::sync::CancellationToken;

use crate::logs::{self, LogOptions, percent_decode};
use crate::{Kubelet, LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

fn full(status: StatusCode, text: impl Into<String>) -> Response<Body> {
    let mut text = text.into();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    body(status, "text/plain; charset=utf-8", Bytes::from(text))
}

fn json(value: &serde_json::Value) -> Response<Body> {
    body(
        StatusCode::OK,
        "application/json",
        Bytes::from(value.to_string()),
    )
}

fn body(status: StatusCode, content_type: &'static str, bytes: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(bytes).map_err(|e: Infallible| match e {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}

/// Serves until shutdown.
pub(crate) async fn serve(
    k: Arc<Kubelet>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let acceptor = acceptor.clone();
        let k = k.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                tracing::debug!(%peer, "kubelet tls handshake failed");
                return;
            };
            let allowed = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| capstan_pki::identity_from_cert(c.as_ref()).ok())
                .is_some_and(|id| {
                    id.user == "kube-apiserver-kubelet-client"
                        || id.groups.iter().any(|g| g == "system:masters")
                });
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let k = k.clone();
                async move {
                    if !allowed {
                        return Ok::<_, Infallible>(full(StatusCode::UNAUTHORIZED, "Unauthorized"));
                    }
                    Ok(route(k, req).await)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "kubelet connection ended");
            }
        });
    }
}

async fn route(k: Arc<Kubelet>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["healthz"] => full(StatusCode::OK, "ok"),
        ["stats", "summary"] => json(&crate::stats::Stats::summary(&k).await),
        ["containerLogs", ns, pod, container] => {
            container_logs(&k, ns, pod, container, &query).await
        }
        ["exec", ns, pod, container] => exec(&k, req, ns, pod, container, &query, false).await,
        ["attach", ns, pod, container] => exec(&k, req, ns, pod, container, &query, true).await,
        ["portForward", ns, pod] => port_forward(&k, req, ns, pod).await,
        _ => full(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// The newest sandbox of the pod `ns/name` on this node.
async fn sandbox_of(k: &Kubelet, ns: &str, name: &str) -> Result<cri::PodSandbox, Response<Body>> {
    let filter = cri::PodSandboxFilter {
        label_selector: [
            (LABEL_POD_NAME.to_string(), name.to_string()),
            (LABEL_POD_NAMESPACE.to_string(), ns.to_string()),
        ]
        .into(),
        ..Default::default()
    };
    let mut list = k
        .cri
        .runtime
        .clone()
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(filter),
        })
        .await
        .map_err(|e| full(StatusCode::INTERNAL_SERVER_ERROR, e.message().to_string()))?
        .into_inner()
        .items;
    list.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    list.into_iter().next().ok_or_else(|| {
        full(
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{name} not found on this node"),
        )
    })
}

/// The container instances named `container`, oldest first.
async fn instances(
    k: &Kubelet,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<(cri::PodSandbox, Vec<cri::Container>), Response<Body>> {
    let sb = sandbox_of(k, ns, pod).await?;
    let mut list: Vec<cri::Container> = k
        .cri
        .containers(&sb.id)
        .await
        .map_err(|e| full(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .into_iter()
        .filter(|c| c.labels.get(LABEL_CONTAINER_NAME).map(String::as_str) == Some(container))
        .collect();
    list.sort_by_key(|c| {
        (
            c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
            c.created_at,
        )
    });
    Ok((sb, list))
}

async fn container_logs(
    k: &Arc<Kubelet>,
    ns: &str,
    pod: &str,
    container: &str,
    query: &str,
) -> Response<Body> {
    let opts = LogOptions::from_query(query);
    let list = match instances(k, ns, pod, container).await {
        Ok((_, list)) => list,
        Err(resp) => return resp,
    };
    let chosen = if opts.previous {
        if list.len() < 2 {
            return full(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
            );
        }
        list.get(list.len() - 2)
    } else {
        list.last()
    };
    let Some(chosen) = chosen else {
        return full(
            StatusCode::BAD_REQUEST,
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            ),
        );
    };
    let status = match k.cri.container_status(&chosen.id).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return full(
                StatusCode::NOT_FOUND,
                format!("container {container} not found"),
            );
        }
        Err(e) => return full(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let path = std::path::PathBuf::from(&status.log_path);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let cri = k.cri.clone();
    let id = chosen.id.clone();
    tokio::spawn(logs::stream(path, opts, tx, move || {
        let cri = cri.clone();
        let id = id.clone();
        async move {
            matches!(cri.container_status(&id).await, Ok(Some(s)) if s.state == cri::ContainerState::ContainerRunning as i32)
        }
    }));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, BoxError>(Frame::data(b)), rx))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    resp
}

fn flag(query: &str, names: &[&str]) -> bool {
    query.split('&').any(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        names.contains(&k) && (v == "1" || v == "true")
    })
}

async fn exec(
    k: &Arc<Kubelet>,
    req: Request<Incoming>,
    ns: &str,
    pod: &str,
    container: &str,
    query: &str,
    attach: bool,
) -> Response<Body> {
    let list = match instances(k, ns, pod, container).await {
        Ok((_, list)) => list,
        Err(resp) => return resp,
    };
    let Some(c) = list
        .last()
        .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
    else {
        return full(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not running in pod {pod}"),
        );
    };
    let stdin = flag(query, &["input", "stdin"]);
    let stdout = flag(query, &["output", "stdout"]);
    let stderr = flag(query, &["error", "stderr"]);
    let tty = flag(query, &["tty"]);
    let mut rt = k.cri.runtime.clone();
    let url = if attach {
        rt.attach(cri::AttachRequest {
            container_id: c.id.clone(),
            stdin,
            tty,
            stdout,
            stderr,
        })
        .await
        .map(|r| r.into_inner().url)
    } else {
        let cmd: Vec<String> = query
            .split('&')
            .filter_map(|kv| kv.strip_prefix("command="))
            .map(percent_decode)
            .collect();
        if cmd.is_empty() {
            return full(
                StatusCode::BAD_REQUEST,
                "you must specify at least one command for the container",
            );
        }
        rt.exec(cri::ExecRequest {
            container_id: c.id.clone(),
            cmd,
            tty,
            stdin,
            stdout,
            stderr: stderr && !tty,
        })
        .await
        .map(|r| r.into_inner().url)
    };
    match url {
        Ok(url) => forward_to(req, &url).await,
        Err(e) => full(StatusCode::INTERNAL_SERVER_ERROR, e.message().to_string()),
    }
}

async fn port_forward(
    k: &Arc<Kubelet>,
    req: Request<Incoming>,
    ns: &str,
    pod: &str,
) -> Response<Body> {
    let sb = match sandbox_of(k, ns, pod).await {
        Ok(sb) => sb,
        Err(resp) => return resp,
    };
    match k
        .cri
        .runtime
        .clone()
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: sb.id,
            port: Vec::new(),
        })
        .await
    {
        Ok(r) => forward_to(req, &r.into_inner().url).await,
        Err(e) => full(StatusCode::INTERNAL_SERVER_ERROR, e.message().to_string()),
    }
}

/// Hands the request (and its upgrade) to containerd's streaming server.
async fn forward_to(req: Request<Incoming>, url: &str) -> Response<Body> {
    let target: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            return full(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("bad stream url {url}: {e}"),
            );
        }
    };
    match capstan_streams::forward(req, &target, None, None).await {
        Ok(resp) => resp.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed()),
        Err(e) => full(
            StatusCode::BAD_GATEWAY,
            format!("error dialing the container runtime: {e}"),
        ),
    }
}
