//! HTTPS serving: the TLS accept loop, authentication, routing of non-resource paths (health,
//! version, metrics, discovery, OpenAPI), and turning replies into HTTP responses.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::body::Body;
use crate::error::ApiError;
use crate::metrics::RequestLabels;
use crate::request::{Query, Target, parse_path};
use crate::rest::{Output, Reply};
use crate::{ApiState, User, discovery, rest};

/// HTTP/2 streams one client connection may have open at once (kube-apiserver's default).
const MAX_STREAMS_PER_CONNECTION: u32 = 1000;

/// Largest request body accepted (kube-apiserver's limit).
pub(crate) const MAX_BODY: usize = 3 * 1024 * 1024;

/// Accepts TLS connections until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<ApiState>,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls_stream = match tokio::time::timeout(
                Duration::from_secs(10),
                acceptor.accept(stream),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let cert_user = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| capstan_pki::identity_from_cert(cert.as_ref()).ok())
                .map(|id| User::new(id.user, id.groups));
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                let cert_user = cert_user.clone();
                async move { Ok::<_, Infallible>(handle(state, cert_user, req).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // Clients multiplex every watch over one connection (client-go, capstan's own
            // components): allow as many streams as kube-apiserver does (hyper's default is 200).
            builder
                .http2()
                .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
            let connection =
                builder.serve_connection_with_upgrades(TokioIo::new(tls_stream), service);
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::trace!(%peer, error = %e, "connection ended with an error");
                    }
                }
                () = shutdown.cancelled() => {}
            }
        });
    }
}

fn respond(reply: Reply) -> Response<Body> {
    let mut response = Response::new(Body::full(reply.body));
    *response.status_mut() =
        StatusCode::from_u16(reply.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(&reply.content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    for warning in &reply.warnings {
        let text = format!("299 - \"{}\"", warning.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            response.headers_mut().append(http::header::WARNING, v);
        }
    }
    response
}

fn text(code: u16, body: &str, content_type: &'static str) -> Reply {
    Reply {
        code,
        body: Bytes::from(body.to_owned()),
        content_type: content_type.into(),
        warnings: Vec::new(),
    }
}

/// kubectl asks for the v2 document only as gnostic protobuf.
fn wants_protobuf_openapi(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("com.github.proto-openapi.spec.v2"))
        && !accepts_json(req)
}

fn openapi_v2_protobuf(state: &Arc<ApiState>) -> Reply {
    match state.openapi_v2_protobuf() {
        Ok(bytes) => Reply {
            code: 200,
            body: bytes,
            // kube-apiserver's spelling: Go's MIME parser rejects the `@` form clients send.
            content_type: capstan_protobuf::OPENAPI_V2_MEDIA_TYPE.into(),
            warnings: Vec::new(),
        },
        Err(e) => Reply::error(&e),
    }
}

fn accepts_json(req: &Request<Incoming>) -> bool {
    let accept: Vec<&str> = req
        .headers()
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    accept.is_empty()
        || accept
            .iter()
            .flat_map(|v| v.split(','))
            .any(|m| m.contains("json") || m.contains("*/*"))
}

fn bearer(req: &Request<Incoming>) -> Option<&str> {
    let value = req
        .headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

async fn handle(
    state: Arc<ApiState>,
    cert_user: Option<User>,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let path = req.uri().path().to_owned();
    let target = parse_path(&path);
    let mut labels = RequestLabels {
        verb: req.method().as_str().to_owned(),
        scope: "cluster",
        ..Default::default()
    };

    // Anonymous requests may only ask for health and version, as kube-apiserver's default RBAC allows.
    let public = matches!(
        path.as_str(),
        "/healthz" | "/livez" | "/readyz" | "/version" | "/cacerts"
    ) || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/");
    // As kube-apiserver's authenticator chain: a valid client certificate wins, then tokens
    // (static, then service account); a bad token with no certificate is unauthenticated.
    let user = cert_user.or_else(|| {
        bearer(&req).and_then(|token| {
            state
                .tokens
                .authenticate(token)
                .or_else(|| crate::sa_tokens::authenticate(&state, token))
        })
    });
    let response = match (user, public) {
        (None, false) => respond(Reply::error(&ApiError::unauthorized())),
        (user, _) => {
            let user = user.unwrap_or_else(|| User {
                name: "system:anonymous".into(),
                groups: vec!["system:unauthenticated".into()],
            });
            match crate::impersonation::resolve(state.authorizer.as_ref(), user, req.headers()) {
                Ok(user) => route(&state, &user, req, target, &mut labels).await,
                Err(e) => respond(Reply::error(&e)),
            }
        }
    };
    let code = response.status().as_u16();
    if labels.verb != "WATCH" {
        state.metrics.observe(labels, code, started.elapsed());
    }
    tracing::debug!(%path, code, elapsed_ms = started.elapsed().as_millis() as u64, "request");
    response
}

async fn route(
    state: &Arc<ApiState>,
    user: &User,
    req: Request<Incoming>,
    target: Target,
    labels: &mut RequestLabels,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let get = req.method() == Method::GET;
    match target {
        Target::CoreVersions if get => respond(discovery::core_versions(
            req.headers(),
            &state.advertise.to_string(),
        )),
        Target::Groups if get => respond(discovery::groups_list(req.headers())),
        Target::Group(group) if get => respond(
            discovery::group(&group).unwrap_or_else(|| Reply::error(&ApiError::path_not_found())),
        ),
        Target::Resources { group, version } if get => respond(
            discovery::resource_list(&group, &version)
                .unwrap_or_else(|| Reply::error(&ApiError::path_not_found())),
        ),
        Target::Resource(resource_path) => {
            labels.group = resource_path.group.clone();
            labels.version = resource_path.version.clone();
            labels.resource = resource_path.resource.clone();
            labels.subresource = resource_path.subresource.clone().unwrap_or_default();
            labels.scope = if resource_path.name.is_some() {
                "resource"
            } else if resource_path.namespace.is_some() {
                "namespace"
            } else {
                "cluster"
            };
            resource(state, user, req, resource_path, labels).await
        }
        _ => respond(non_resource(state, &req, &path)),
    }
}

fn non_resource(state: &Arc<ApiState>, req: &Request<Incoming>, path: &str) -> Reply {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Reply::error(&ApiError::method_not_allowed());
    }
    match path {
        "/healthz" | "/livez" => text(200, "ok", "text/plain; charset=utf-8"),
        // The cluster CA, as k3s serves it: a joining agent checks it against the hash in its token.
        "/cacerts" => match state.cluster_ca_pem.get() {
            Some(pem) => text(200, pem, "text/plain; charset=utf-8"),
            None => Reply::error(&ApiError::path_not_found()),
        },
        "/readyz" => {
            if *state.ready.borrow() && state.booted.load(std::sync::atomic::Ordering::SeqCst) {
                text(200, "ok", "text/plain; charset=utf-8")
            } else {
                text(
                    500,
                    "[-]informer-sync failed: reason withheld\nreadyz check failed",
                    "text/plain; charset=utf-8",
                )
            }
        }
        "/version" => Reply::json(
            200,
            &json!({
                "major": "1",
                "minor": "32",
                "gitVersion": format!("v1.32.0+capstan-{}", env!("CARGO_PKG_VERSION")),
                "gitCommit": "capstan",
                "gitTreeState": "clean",
                "buildDate": "1970-01-01T00:00:00Z",
                "goVersion": "rust",
                "compiler": "rustc",
                "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
            }),
        ),
        "/metrics" => text(
            200,
            &state.metrics.render(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        "/openapi/v2" if wants_protobuf_openapi(req) => openapi_v2_protobuf(state),
        _ if path.starts_with("/openapi/") => openapi(state, path),
        _ => Reply::error(&ApiError::path_not_found()),
    }
}

fn openapi(state: &Arc<ApiState>, path: &str) -> Reply {
    let body = state.with_openapi(|docs| {
        match path {
            "/openapi/v2" => Some(docs.v2()),
            "/openapi/v3" => Some(docs.v3_index()),
            _ => path
                .strip_prefix("/openapi/v3/")
                .and_then(|group| docs.v3_group(group))
                .map(|(doc, _hash)| doc),
        }
        .map(Bytes::copy_from_slice)
    });
    match body {
        Ok(Some(body)) => Reply {
            code: 200,
            body,
            content_type: "application/json".into(),
            warnings: Vec::new(),
        },
        Ok(None) => Reply::error(&ApiError::path_not_found()),
        Err(e) => Reply::error(&e),
    }
}

/// Asks the authorizer; a request refused before the default roles exist (the first moments after
/// start, when components connect) waits for them, up to 5 s, and is asked again.
async fn authorized(
    state: &Arc<ApiState>,
    user: &User,
    verb: &str,
    path: &crate::request::ResourcePath,
    resource: &str,
) -> bool {
    let ask = || {
        state.authorizer.authorize(
            user,
            verb,
            &path.group,
            resource,
            path.namespace.as_deref(),
            path.name.as_deref(),
        )
    };
    if ask() {
        return true;
    }
    let booted = || state.booted.load(std::sync::atomic::Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !booted() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    booted() && ask()
}

async fn resource(
    state: &Arc<ApiState>,
    user: &User,
    req: Request<Incoming>,
    path: crate::request::ResourcePath,
    labels: &mut RequestLabels,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let query = Query::parse(parts.uri.query());
    let verb = match (&parts.method, path.name.is_some()) {
        (&Method::GET, _) if path.watch_path || query.flag("watch") => "watch",
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => return respond(Reply::error(&ApiError::method_not_allowed())),
    };
    labels.verb = match verb {
        "watch" => "WATCH",
        "list" => "LIST",
        "get" => "GET",
        "create" => "POST",
        "update" => "PUT",
        "patch" => "PATCH",
        _ => "DELETE",
    }
    .into();
    if crate::proxy::is_pod_stream(&path) {
        // kube-apiserver counts these as CONNECT.
        labels.verb = "CONNECT".into();
    }
    let resource_name = match &path.subresource {
        Some(sub) => format!("{}/{sub}", path.resource),
        None => path.resource.clone(),
    };
    if !authorized(state, user, verb, &path, &resource_name).await {
        let scope = match &path.namespace {
            Some(ns) => format!(" in the namespace \"{ns}\""),
            None => " at the cluster scope".into(),
        };
        let group = if path.group.is_empty() {
            "\"\"".into()
        } else {
            format!("\"{}\"", path.group)
        };
        // kube-apiserver names the object as `<resource>[.<group>] ["<name>"]`.
        let mut object = path.resource.clone();
        if !path.group.is_empty() {
            object = format!("{object}.{}", path.group);
        }
        if let Some(name) = &path.name {
            object = format!("{object} \"{name}\"");
        }
        return respond(Reply::error(&ApiError::forbidden(format!(
            "{object} is forbidden: User \"{}\" cannot {verb} resource \"{resource_name}\" in API group {group}{scope}",
            user.name
        ))));
    }
    if crate::metrics_api::is_metrics(&path) {
        return respond(crate::metrics_api::serve(state, verb, &path, &query).await);
    }
    if crate::proxy::is_pod_stream(&path) {
        return match crate::proxy::serve(state, parts, body, &path, &query).await {
            Ok(response) => response,
            Err(error) => respond(Reply::error(&error)),
        };
    }
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let error = if e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::too_large(MAX_BODY)
            } else {
                ApiError::bad_request(format!("error reading request body: {e}"))
            };
            return respond(Reply::error(&error));
        }
    };
    let mut headers = parts.headers;
    // Typed Kubernetes clients (kubectl's create commands among them) send protobuf; everything past
    // this point works on JSON.
    let is_protobuf = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(capstan_protobuf::MEDIA_TYPE));
    let body = if is_protobuf && !body.is_empty() {
        match capstan_protobuf::decode(&body) {
            Ok(value) => {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
            }
            Err(e) => {
                return respond(Reply::error(&ApiError::bad_request(format!(
                    "error decoding protobuf request body: {e}"
                ))));
            }
        }
    } else {
        body
    };
    let request = rest::Request {
        state,
        user,
        method: parts.method,
        path,
        query,
        headers,
        body,
    };
    match rest::serve(request).await {
        Output::Reply(reply) => respond(reply),
        Output::Stream {
            content_type,
            chunks,
        } => {
            let mut response = Response::new(Body::Stream(chunks));
            if let Ok(v) = HeaderValue::from_str(&content_type) {
                response.headers_mut().insert(http::header::CONTENT_TYPE, v);
            }
            response.headers_mut().insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, private"),
            );
            response
        }
        Output::List(list) => {
            let content_type = HeaderValue::from_static(list.content_type);
            let mut response = Response::new(Body::List(list));
            response
                .headers_mut()
                .insert(http::header::CONTENT_TYPE, content_type);
            response
        }
    }
}
