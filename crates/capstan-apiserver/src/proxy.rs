//! Pod streams: `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`, proxied to the kubelet
//! of the pod's node over HTTPS as kube-apiserver proxies them (its pod registry's `LogLocation`,
//! `streamLocation` and `PortForwardLocation`).
//!
//! This module checks the pod and picks its container, finds the kubelet from the Node object
//! (`status.addresses`, `status.daemonEndpoints.kubeletEndpoint.Port`), builds the kubelet URL
//! (`/containerLogs/...`, `/exec/...`, `/attach/...`, `/portForward/...`) and hands the request to
//! `capstan-streams`, which streams log bodies and passes SPDY/WebSocket upgrades through. It never
//! speaks the stream protocols itself.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use capstan_api::{FieldError, FieldErrorKind};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};

use crate::ApiState;
use crate::body::Body;
use crate::error::{ApiError, ApiResult};
use crate::request::{Query, ResourcePath};
use crate::rest::stored;

/// The kubelet's port when the Node does not say (`--kubelet-port`'s default).
const DEFAULT_KUBELET_PORT: u16 = 10250;

/// Node address types tried in order (kube-apiserver's `--kubelet-preferred-address-types` as k3s sets it).
const PREFERRED_ADDRESS_TYPES: [&str; 3] = ["InternalIP", "ExternalIP", "Hostname"];

/// How much of a kubelet error body becomes the `Status` message (kube's `maxReadLength`).
const MAX_ERROR_BODY: usize = 50_000;

/// The WebSocket subprotocol kubectl 1.30+ tries first for port-forward (SPDY tunneled in WebSocket).
const PORT_FORWARD_TUNNELING_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Which pod stream a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Log,
    Exec,
    Attach,
    PortForward,
}

impl Stream {
    fn of(path: &ResourcePath) -> Option<Self> {
        if !(path.group.is_empty()
            && path.version == "v1"
            && path.resource == "pods"
            && path.namespace.is_some()
            && path.name.is_some())
        {
            return None;
        }
        match path.subresource.as_deref()? {
            "log" => Some(Stream::Log),
            "exec" => Some(Stream::Exec),
            "attach" => Some(Stream::Attach),
            "portforward" => Some(Stream::PortForward),
            _ => None,
        }
    }
}

/// Whether this request is a pod stream served here rather than by `rest`.
pub(crate) fn is_pod_stream(path: &ResourcePath) -> bool {
    Stream::of(path).is_some()
}

/// Serves a pod stream request (the caller has authenticated and authorized it).
pub(crate) async fn serve(
    state: &Arc<ApiState>,
    parts: Parts,
    body: Incoming,
    path: &ResourcePath,
    query: &Query,
) -> ApiResult<Response<Body>> {
    let (Some(stream), Some(ns), Some(name)) = (
        Stream::of(path),
        path.namespace.as_deref(),
        path.name.as_deref(),
    ) else {
        return Err(ApiError::path_not_found());
    };
    let allowed = match stream {
        Stream::Log => parts.method == Method::GET,
        _ => matches!(parts.method, Method::GET | Method::POST),
    };
    if !allowed {
        return Err(ApiError::method_not_allowed());
    }
    let pods = capstan_api::find("", "v1", "pods").ok_or_else(ApiError::path_not_found)?;
    let (pod, _) = stored(state, pods, Some(ns), name).await?;

    if stream == Stream::Log {
        let kubelet_query = log_query(query, name)?;
        let container = pick_container(&pod, name, query.get("container"))?;
        let Some(node) = node_name(&pod) else {
            // kube streams nothing for a pod that has no node yet.
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            return Ok(response);
        };
        let kubelet = kubelet(state, node).await?;
        let target = kubelet.uri(
            &format!("/containerLogs/{ns}/{name}/{container}"),
            &kubelet_query,
        )?;
        return logs(state, kubelet, target, name).await;
    }

    let (kubelet_path, kubelet_query) = if stream == Stream::PortForward {
        (
            format!("/portForward/{ns}/{name}"),
            port_forward_query(query)?,
        )
    } else {
        let container = pick_container(&pod, name, query.get("container"))?;
        let verb = if stream == Stream::Exec {
            "exec"
        } else {
            "attach"
        };
        (
            format!("/{verb}/{ns}/{name}/{container}"),
            exec_query(query, stream == Stream::Exec),
        )
    };
    let node = node_name(&pod).ok_or_else(|| {
        ApiError::bad_request(format!("pod {name} does not have a host assigned"))
    })?;
    let kubelet = kubelet(state, node).await?;
    let target = kubelet.uri(&kubelet_path, &kubelet_query)?;
    if !capstan_streams::is_upgrade(&parts.headers) {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    if stream == Stream::PortForward
        && capstan_streams::is_websocket(&parts.headers)
        && capstan_streams::websocket_protocols(&parts.headers)
            .iter()
            .any(|p| p == PORT_FORWARD_TUNNELING_PROTOCOL)
    {
        // kubectl falls back to plain SPDY when this upgrade fails.
        return Err(ApiError::bad_request(
            "unable to upgrade connection: websocket tunneling for port-forward is not supported, use SPDY",
        ));
    }
    let mut request = Request::from_parts(parts, body);
    // The kubelet authenticates this server by its client certificate, never the user's token.
    request.headers_mut().remove(http::header::AUTHORIZATION);
    match capstan_streams::forward(
        request,
        &target,
        state.kubelet_client_tls.clone(),
        Some(kubelet.server_name),
    )
    .await
    {
        Ok(response) => Ok(response.map(Body::Proxied)),
        Err(error) => {
            tracing::debug!(%target, error = %chain(&error), "kubelet stream failed");
            Err(unknown_error(format!(
                "error dialing backend: {}",
                chain(&error)
            )))
        }
    }
}

/// A GET of the kubelet's `containerLogs`, its body streamed back as `text/plain`.
async fn logs(
    state: &ApiState,
    kubelet: Kubelet,
    target: Uri,
    name: &str,
) -> ApiResult<Response<Body>> {
    let response = get_from(state, &kubelet, &target).await?;
    let status = response.status();
    if !(200..=206).contains(&status.as_u16()) {
        let text = error_body(response.into_body()).await;
        return Err(kubelet_log_error(status.as_u16(), &text, name));
    }
    let mut proxied = Response::new(Body::Proxied(response.into_body()));
    proxied.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    Ok(proxied)
}

/// A GET of `target` on `kubelet`, answered as soon as the response head arrives.
async fn get_from(
    state: &ApiState,
    kubelet: &Kubelet,
    target: &Uri,
) -> ApiResult<Response<capstan_streams::ForwardBody>> {
    let request = Request::get(target.clone())
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    capstan_streams::forward(
        request,
        target,
        state.kubelet_client_tls.clone(),
        Some(kubelet.server_name.clone()),
    )
    .await
    .map_err(|e| unknown_error(format!("Get \"{target}\": {}", chain(&e))))
}

/// A GET of `path` on the kubelet of the Node object `node`, its whole body (at most `limit` bytes,
/// within `timeout`): for API server features built on kubelet data (`metrics.k8s.io`).
pub(crate) async fn kubelet_get(
    state: &ApiState,
    node: &Value,
    path: &str,
    limit: usize,
    timeout: Duration,
) -> ApiResult<Bytes> {
    let kubelet = kubelet_endpoint(node)?;
    let target = kubelet.uri(path, "")?;
    let fetch = async {
        let response = get_from(state, &kubelet, &target).await?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| unknown_error(format!("Get \"{target}\": {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(unknown_error(format!(
                "Get \"{target}\": {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )));
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| unknown_error(format!("Get \"{target}\": timed out after {timeout:?}")))?
}

/// The start of an error body, as text.
async fn error_body(mut body: capstan_streams::ForwardBody) -> String {
    let mut text = BytesMut::new();
    let read = async {
        while text.len() < MAX_ERROR_BODY {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        text.extend_from_slice(&data);
                    }
                }
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    text.truncate(MAX_ERROR_BODY);
    String::from_utf8_lossy(&text).into_owned()
}

/// A kubelet's non-2xx answer to a log request, as kube's `GenericHttpResponseChecker` words it.
fn kubelet_log_error(code: u16, body: &str, name: &str) -> ApiError {
    match code {
        500 => return ApiError::internal(body),
        400 => return ApiError::bad_request(body),
        _ => {}
    }
    let (reason, message) = match code {
        404 => ("NotFound", "the server could not find the requested resource".to_owned()),
        401 => (
            "Unauthorized",
            "the server has asked for the client to provide credentials".to_owned(),
        ),
        403 => ("Forbidden", body.to_owned()),
        405 => (
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".to_owned(),
        ),
        409 => ("Conflict", "the server reported a conflict".to_owned()),
        422 => (
            "Invalid",
            "the server rejected our request due to an error in our request".to_owned(),
        ),
        429 => (
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later"
                .to_owned(),
        ),
        504 => (
            "Timeout",
            "the server was unable to return a response in the time allotted, but may still be processing the request"
                .to_owned(),
        ),
        _ if code >= 500 => (
            "InternalError",
            format!("an error on the server ({body:?}) has prevented the request from succeeding"),
        ),
        _ => (
            "",
            format!("the server responded with the status code {code} but did not return more information"),
        ),
    };
    ApiError {
        details: Some(json!({"name": name, "kind": "pods/log"})),
        ..ApiError::new(code, reason, format!("{message} ( pods/log {name})"))
    }
}

/// An error kube-apiserver reports without a reason (a plain Go error): code 500.
fn unknown_error(message: String) -> ApiError {
    ApiError::new(500, "", message)
}

/// An error and its sources on one line, as Go prints wrapped errors.
fn chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn node_name(pod: &Value) -> Option<&str> {
    pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
}

/// Every container name of a pod: init containers, containers, ephemeral containers.
fn container_names(pod: &Value) -> Vec<&str> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|kind| pod["spec"][kind].as_array())
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

/// The container a request addresses, as kube's `validateContainer` picks it: the named one (any
/// kind), else the only regular container.
fn pick_container(pod: &Value, name: &str, requested: Option<&str>) -> ApiResult<String> {
    match requested.filter(|c| !c.is_empty()) {
        Some(container) if container_names(pod).contains(&container) => Ok(container.to_owned()),
        Some(container) => Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        ))),
        None => {
            let containers = pod["spec"]["containers"]
                .as_array()
                .map_or(&[][..], Vec::as_slice);
            match containers {
                [only] => only["name"].as_str().map(str::to_owned).ok_or_else(|| {
                    ApiError::internal(format!("pod {name} has a nameless container"))
                }),
                [] => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}"
                ))),
                _ => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    container_names(pod).join(" ")
                ))),
            }
        }
    }
}

/// Where a node's kubelet listens.
#[derive(Debug)]
struct Kubelet {
    /// An IP address or host name, without brackets.
    host: String,
    port: u16,
    server_name: ServerName<'static>,
}

impl Kubelet {
    fn uri(&self, path: &str, query: &str) -> ApiResult<Uri> {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        format!("https://{host}:{}{path}{query}", self.port)
            .parse()
            .map_err(|e| ApiError::internal(format!("kubelet url: {e}")))
    }
}

async fn kubelet(state: &ApiState, node: &str) -> ApiResult<Kubelet> {
    let nodes = capstan_api::find("", "v1", "nodes").ok_or_else(ApiError::path_not_found)?;
    let (node, _) = stored(state, nodes, None, node).await?;
    kubelet_endpoint(&node)
}

/// The kubelet address of a Node object: its preferred address and daemon endpoint port.
fn kubelet_endpoint(node: &Value) -> ApiResult<Kubelet> {
    let addresses = node["status"]["addresses"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let hostname_label = node["metadata"]["labels"]["kubernetes.io/hostname"].as_str();
    let host = PREFERRED_ADDRESS_TYPES
        .iter()
        .find_map(|kind| {
            addresses
                .iter()
                .find(|a| a["type"] == *kind)
                .and_then(|a| a["address"].as_str())
                .filter(|a| !a.is_empty())
                .or_else(|| (*kind == "Hostname").then_some(hostname_label).flatten())
        })
        .ok_or_else(|| {
            let known: Vec<String> = addresses
                .iter()
                .map(|a| {
                    format!(
                        "{{{} {}}}",
                        a["type"].as_str().unwrap_or_default(),
                        a["address"].as_str().unwrap_or_default()
                    )
                })
                .collect();
            unknown_error(format!(
                "no preferred addresses found; known addresses: [{}]",
                known.join(" ")
            ))
        })?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    let server_name = ServerName::try_from(host.to_owned())
        .map_err(|_| unknown_error(format!("invalid kubelet address {host:?}")))?;
    Ok(Kubelet {
        host: host.to_owned(),
        port,
        server_name,
    })
}

/// A boolean query parameter as kube decodes it: its first value, true unless `0` or `false`.
fn flag(query: &Query, key: &str) -> bool {
    query
        .all(key)
        .next()
        .is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// An integer query parameter (its first value).
fn int(query: &Query, key: &str) -> ApiResult<Option<i64>> {
    query
        .all(key)
        .next()
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))
            })
        })
        .transpose()
}

/// The kubelet query of a log request, after kube's `ValidatePodLogOptions`.
fn log_query(query: &Query, name: &str) -> ApiResult<String> {
    let tail_lines = int(query, "tailLines")?;
    let limit_bytes = int(query, "limitBytes")?;
    let since_seconds = int(query, "sinceSeconds")?;
    let since_time = match query.all("sinceTime").next().filter(|t| !t.is_empty()) {
        None => None,
        Some(text) => {
            let time: jiff::Timestamp = text.parse().map_err(|_| {
                ApiError::bad_request(format!(
                    "parsing time {text:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse"
                ))
            })?;
            Some(jiff::Timestamp::from_second(time.as_second()).unwrap_or(time))
        }
    };
    let mut errors = Vec::new();
    if let Some(n) = tail_lines.filter(|n| *n < 0) {
        errors.push(FieldError::invalid(
            "tailLines",
            n,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(n) = limit_bytes.filter(|n| *n < 1) {
        errors.push(FieldError::invalid(
            "limitBytes",
            n,
            "must be greater than 0",
        ));
    }
    match (since_seconds, since_time) {
        (Some(_), Some(_)) => errors.push(FieldError::with_kind(
            FieldErrorKind::Forbidden,
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        )),
        (Some(n), None) if n < 1 => {
            errors.push(FieldError::invalid(
                "sinceSeconds",
                n,
                "must be greater than 0",
            ));
        }
        _ => {}
    }
    if !errors.is_empty() {
        return Err(invalid_options("PodLogOptions", name, &errors));
    }
    let mut params: Vec<(&str, String)> = Vec::new();
    for key in ["follow", "previous", "timestamps"] {
        if flag(query, key) {
            params.push((key, "true".into()));
        }
    }
    if let Some(n) = since_seconds {
        params.push(("sinceSeconds", n.to_string()));
    }
    if let Some(t) = since_time {
        params.push(("sinceTime", t.to_string()));
    }
    if let Some(n) = tail_lines {
        params.push(("tailLines", n.to_string()));
    }
    if let Some(n) = limit_bytes {
        params.push(("limitBytes", n.to_string()));
    }
    Ok(encode_query(params))
}

/// `PodLogOptions "x" is invalid: ...`: a 422 for bad options of a connect request.
fn invalid_options(kind: &str, name: &str, errors: &[FieldError]) -> ApiError {
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let summary = match list.as_slice() {
        [one] => one.clone(),
        _ => format!("[{}]", list.join(", ")),
    };
    let causes: Vec<Value> = errors
        .iter()
        .map(|e| json!({"reason": e.kind.reason(), "message": e.message(), "field": e.field}))
        .collect();
    ApiError {
        details: Some(json!({"name": name, "kind": kind, "causes": causes})),
        ..ApiError::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {summary}"),
        )
    }
}

/// The kubelet query of an exec or attach request: stdin/stdout/stderr become input/output/error.
fn exec_query(query: &Query, with_command: bool) -> String {
    let mut params: Vec<(&str, String)> = Vec::new();
    for (param, kubelet_param) in [
        ("stdin", "input"),
        ("stdout", "output"),
        ("stderr", "error"),
        ("tty", "tty"),
    ] {
        if flag(query, param) {
            params.push((kubelet_param, "1".into()));
        }
    }
    if with_command {
        params.extend(query.all("command").map(|c| ("command", c.to_owned())));
    }
    encode_query(params)
}

/// The kubelet query of a port-forward request: `ports=80&ports=443` becomes `port=80,443`.
fn port_forward_query(query: &Query) -> ApiResult<String> {
    let ports = query
        .all("ports")
        .map(|p| {
            p.parse::<u16>().map_err(|_| {
                ApiError::bad_request(format!("strconv.ParseInt: parsing {p:?}: invalid syntax"))
            })
        })
        .collect::<ApiResult<Vec<u16>>>()?;
    if ports.is_empty() {
        return Ok(String::new());
    }
    let joined = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    Ok(encode_query(vec![("port", joined)]))
}

/// Encodes parameters as Go's `url.Values.Encode`: sorted by key (values keep their order).
fn encode_query(mut params: Vec<(&str, String)>) -> String {
    params.sort_by_key(|(key, _)| *key);
    params
        .iter()
        .map(|(key, value)| format!("{}={}", escape(key), escape(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Go's `url.QueryEscape`: unreserved bytes stay, space becomes `+`, the rest `%XX`.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(init: &[&str], containers: &[&str]) -> Value {
        let list = |names: &[&str]| names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>();
        json!({"spec": {"initContainers": list(init), "containers": list(containers)}})
    }

    #[test]
    fn picks_the_container_as_kube_does() {
        /// (init containers, containers, requested, Ok(container) or Err(message))
        type Case = (
            &'static [&'static str],
            &'static [&'static str],
            Option<&'static str>,
            Result<&'static str, &'static str>,
        );
        let cases: &[Case] = &[
            (&[], &["app"], None, Ok("app")),
            (&[], &["app"], Some(""), Ok("app")),
            (&[], &["a", "b"], Some("b"), Ok("b")),
            (&["setup"], &["a", "b"], Some("setup"), Ok("setup")),
            (
                &["setup"],
                &["a", "b"],
                None,
                Err("a container name must be specified for pod web, choose one of: [setup a b]"),
            ),
            (
                &[],
                &[],
                None,
                Err("a container name must be specified for pod web"),
            ),
            (
                &[],
                &["a"],
                Some("zz"),
                Err("container zz is not valid for pod web"),
            ),
        ];
        for (init, containers, requested, expected) in cases {
            let got = pick_container(&pod(init, containers), "web", *requested);
            match (got, expected) {
                (Ok(c), Ok(want)) => assert_eq!(c, *want),
                (Err(e), Err(want)) => {
                    assert_eq!((e.code, e.message.as_str()), (400, *want));
                }
                (got, _) => panic!("{containers:?} {requested:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn finds_the_kubelet_from_the_node() {
        // (addresses, labels, daemon endpoint port, expected host:port or error)
        let cases: &[(Value, Value, Value, Result<&str, &str>)] = &[
            (
                json!([{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.2"}]),
                json!({}),
                json!(10250),
                Ok("10.0.0.2:10250"),
            ),
            (
                json!([{"type": "ExternalIP", "address": "203.0.113.9"}, {"type": "Hostname", "address": "n1"}]),
                json!({}),
                json!(12345),
                Ok("203.0.113.9:12345"),
            ),
            (
                json!([{"type": "Hostname", "address": "n1"}]),
                json!({}),
                Value::Null,
                Ok("n1:10250"),
            ),
            (
                json!([]),
                json!({"kubernetes.io/hostname": "n2"}),
                json!(0),
                Ok("n2:10250"),
            ),
            (
                json!([{"type": "InternalIP", "address": "fd00::2"}]),
                json!({}),
                json!(10250),
                Ok("[fd00::2]:10250"),
            ),
            (
                json!([{"type": "InternalDNS", "address": "n1.local"}]),
                json!({}),
                json!(10250),
                Err("no preferred addresses found; known addresses: [{InternalDNS n1.local}]"),
            ),
        ];
        for (addresses, labels, port, expected) in cases {
            let node = json!({
                "metadata": {"labels": labels},
                "status": {"addresses": addresses, "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}},
            });
            match (kubelet_endpoint(&node), expected) {
                (Ok(k), Ok(want)) => {
                    let uri = k.uri("/x", "").expect("uri");
                    assert_eq!(uri.authority().expect("authority").as_str(), *want);
                }
                (Err(e), Err(want)) => assert_eq!((e.code, e.message.as_str()), (500, *want)),
                (got, _) => panic!("{addresses}: {got:?}"),
            }
        }
    }

    #[test]
    fn log_options_become_the_kubelet_query() {
        /// (request query, Ok(kubelet query) or Err((code, message)))
        type Case = (&'static str, Result<&'static str, (u16, &'static str)>);
        let cases: &[Case] = &[
            ("", Ok("")),
            (
                "container=c1&tailLines=5&previous=true",
                Ok("previous=true&tailLines=5"),
            ),
            (
                "follow=1&timestamps=true&sinceSeconds=60&limitBytes=100",
                Ok("follow=true&limitBytes=100&sinceSeconds=60&timestamps=true"),
            ),
            ("follow=false&previous=0", Ok("")),
            (
                "sinceTime=2024-05-01T10:00:00.5%2B02:00",
                Ok("sinceTime=2024-05-01T08%3A00%3A00Z"),
            ),
            (
                "tailLines=-1",
                Err((
                    422,
                    "PodLogOptions \"web\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0",
                )),
            ),
            (
                "sinceSeconds=5&sinceTime=2024-05-01T10:00:00Z",
                Err((
                    422,
                    "PodLogOptions \"web\" is invalid: : Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified",
                )),
            ),
            (
                "limitBytes=0&sinceSeconds=0",
                Err((
                    422,
                    "PodLogOptions \"web\" is invalid: [limitBytes: Invalid value: 0: must be greater than 0, sinceSeconds: Invalid value: 0: must be greater than 0]",
                )),
            ),
            (
                "tailLines=ten",
                Err((400, "strconv.ParseInt: parsing \"ten\": invalid syntax")),
            ),
        ];
        for (query, expected) in cases {
            match (log_query(&Query::parse(Some(query)), "web"), expected) {
                (Ok(q), Ok(want)) => assert_eq!(q, *want, "{query}"),
                (Err(e), Err((code, message))) => {
                    assert_eq!((e.code, e.message.as_str()), (*code, *message), "{query}");
                }
                (got, _) => panic!("{query}: {got:?}"),
            }
        }
    }

    #[test]
    fn exec_and_attach_options_become_the_kubelet_query() {
        let q = Query::parse(Some(
            "command=sh&command=-c&command=echo+hi%26bye&container=c1&stdin=true&stdout=true&stderr=false&tty=true",
        ));
        assert_eq!(
            exec_query(&q, true),
            "command=sh&command=-c&command=echo+hi%26bye&input=1&output=1&tty=1"
        );
        assert_eq!(exec_query(&q, false), "input=1&output=1&tty=1");
        let q = Query::parse(Some("ports=8080&ports=53"));
        assert_eq!(port_forward_query(&q).expect("ports"), "port=8080%2C53");
        assert_eq!(port_forward_query(&Query::parse(None)).expect("none"), "");
        assert_eq!(
            port_forward_query(&Query::parse(Some("ports=http")))
                .map_err(|e| e.code)
                .err(),
            Some(400)
        );
    }

    #[test]
    fn kubelet_log_errors_read_like_kube() {
        let e = kubelet_log_error(
            400,
            "previous terminated container \"c\" in pod \"web\" not found",
            "web",
        );
        assert_eq!(
            (e.code, e.reason, e.message.as_str()),
            (
                400,
                "BadRequest",
                "previous terminated container \"c\" in pod \"web\" not found"
            )
        );
        let e = kubelet_log_error(404, "404 page not found", "web");
        assert_eq!(
            (e.code, e.reason, e.message.as_str()),
            (
                404,
                "NotFound",
                "the server could not find the requested resource ( pods/log web)"
            )
        );
        let e = kubelet_log_error(500, "boom", "web");
        assert_eq!(
            (e.code, e.message.as_str()),
            (500, "Internal error occurred: boom")
        );
        let e = kubelet_log_error(502, "bad gateway", "web");
        assert_eq!(e.reason, "InternalError");
    }

    #[test]
    fn only_core_pod_stream_subresources_are_streams() {
        let path = |group: &str, resource: &str, sub: Option<&str>| ResourcePath {
            group: group.into(),
            version: "v1".into(),
            namespace: Some("default".into()),
            resource: resource.into(),
            name: Some("web".into()),
            subresource: sub.map(Into::into),
            watch_path: false,
        };
        for sub in ["log", "exec", "attach", "portforward"] {
            assert!(is_pod_stream(&path("", "pods", Some(sub))), "{sub}");
        }
        assert!(!is_pod_stream(&path("", "pods", Some("status"))));
        assert!(!is_pod_stream(&path("", "pods", None)));
        assert!(!is_pod_stream(&path("apps", "pods", Some("log"))));
        assert!(!is_pod_stream(&path("", "nodes", Some("log"))));
    }
}
