//! `metrics.k8s.io/v1beta1`: NodeMetrics and PodMetrics, what `kubectl top` (and an autoscaler)
//! reads. In a k3s cluster metrics-server serves this group behind the aggregator; here the API
//! server builds the answers itself, on request, from each node's kubelet Summary
//! (`/stats/summary`, see `capstan-kubelet`'s stats module) — one component fewer, same documents.
//! Nothing is stored and nothing is watched: the group supports `get` and `list` only, as
//! metrics-server's does.
//!
//! Like metrics-server, a node or pod whose kubelet does not answer (or has no CPU rate yet) is left
//! out of lists, and a `get` of it is NotFound. Kubelets of nodes that are not Ready are not asked.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{Value, json};

use crate::ApiState;
use crate::cache::CachedObject;
use crate::error::{ApiError, ApiResult};
use crate::request::{Query, ResourcePath};
use crate::rest::Reply;
use crate::selectors::{FieldSelector, LabelSelector};

pub(crate) const GROUP: &str = "metrics.k8s.io";
pub(crate) const VERSION: &str = "v1beta1";

/// What discovery lists for the group: (resource, kind, namespaced).
pub(crate) const RESOURCES: [(&str, &str, bool); 2] = [
    ("nodes", "NodeMetrics", false),
    ("pods", "PodMetrics", true),
];
pub(crate) const VERBS: [&str; 2] = ["get", "list"];

/// How long a kubelet may take to answer (metrics-server's default scrape timeout is 10 s; a
/// `kubectl top` waits for the slowest node, so less here).
const KUBELET_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest Summary read from one kubelet.
const SUMMARY_LIMIT: usize = 16 << 20;

/// Whether `path` is in this group.
pub(crate) fn is_metrics(path: &ResourcePath) -> bool {
    path.group == GROUP
}

/// Serves a request for `nodes` or `pods` of `metrics.k8s.io`; `verb` is the authorized one.
pub(crate) async fn serve(
    state: &ApiState,
    verb: &str,
    path: &ResourcePath,
    query: &Query,
) -> Reply {
    match serve_inner(state, verb, path, query).await {
        Ok(value) => Reply::json(200, &value),
        Err(error) => Reply::error(&error),
    }
}

async fn serve_inner(
    state: &ApiState,
    verb: &str,
    path: &ResourcePath,
    query: &Query,
) -> ApiResult<Value> {
    let namespaced = match (path.version.as_str(), path.resource.as_str()) {
        (VERSION, "nodes") if path.namespace.is_none() => false,
        (VERSION, "pods") => true,
        _ => return Err(ApiError::path_not_found()),
    };
    if path.subresource.is_some() {
        return Err(ApiError::path_not_found());
    }
    if !matches!(verb, "get" | "list") {
        return Err(ApiError::method_not_allowed());
    }
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or_default())
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())
        .map_err(ApiError::bad_request)?;
    let now = crate::objects::now_rfc3339();
    if namespaced {
        let items = pod_metrics(state, path, &labels, &fields, &now).await?;
        one_or_list(path, items, "PodMetrics", "podmetrics")
    } else {
        let items = node_metrics(state, path, &labels, &fields, &now).await?;
        one_or_list(path, items, "NodeMetrics", "nodemetrics")
    }
}

fn one_or_list(
    path: &ResourcePath,
    items: Vec<Value>,
    kind: &str,
    plural: &str,
) -> ApiResult<Value> {
    let api_version = format!("{GROUP}/{VERSION}");
    match &path.name {
        Some(name) => {
            let mut item = items.into_iter().next().ok_or_else(|| {
                // metrics-server names a pod `namespace/name` in this message.
                let shown = match &path.namespace {
                    Some(ns) => format!("{ns}/{name}"),
                    None => name.clone(),
                };
                ApiError {
                    details: Some(json!({"name": name, "group": GROUP, "kind": plural})),
                    ..ApiError::new(
                        404,
                        "NotFound",
                        format!("{plural}.{GROUP} \"{shown}\" not found"),
                    )
                }
            })?;
            item["kind"] = json!(kind);
            item["apiVersion"] = json!(api_version);
            Ok(item)
        }
        None => Ok(json!({
            "kind": format!("{kind}List"),
            "apiVersion": api_version,
            "metadata": {},
            "items": items,
        })),
    }
}

/// The cached objects of `resource` the request selects.
fn selected(
    state: &ApiState,
    resource: &str,
    path: &ResourcePath,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> ApiResult<Vec<Value>> {
    cached(state, resource, path.namespace.as_deref(), |o| {
        path.name.as_deref().is_none_or(|n| o.name == n)
            && labels.matches(&o.labels)
            && fields.matches(|f| match f {
                "metadata.name" => Some(o.name.clone()),
                "metadata.namespace" => o.namespace.clone(),
                _ => o.field(f),
            })
    })
}

/// The cached core/v1 objects of `resource` (in `namespace`, or all) that `keep` accepts.
fn cached(
    state: &ApiState,
    resource: &str,
    namespace: Option<&str>,
    keep: impl FnMut(&CachedObject) -> bool,
) -> ApiResult<Vec<Value>> {
    let info = capstan_api::find("", "v1", resource).ok_or_else(ApiError::path_not_found)?;
    let (objects, _, _) = state.cache.list(info, namespace, None, keep, None);
    Ok(objects.iter().map(|o| o.value()).collect())
}

/// Summaries of these nodes' kubelets, fetched concurrently; nodes that fail are left out.
async fn summaries(state: &ApiState, nodes: &[&Value]) -> HashMap<String, Value> {
    let fetches = nodes.iter().map(|node| async move {
        let name = node["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let fetched = crate::proxy::kubelet_get(
            state,
            node,
            "/stats/summary",
            SUMMARY_LIMIT,
            KUBELET_TIMEOUT,
        )
        .await
        .and_then(|body| {
            serde_json::from_slice::<Value>(&body)
                .map_err(|e| ApiError::internal(format!("kubelet summary: {e}")))
        });
        match fetched {
            Ok(summary) => Some((name, summary)),
            Err(error) => {
                tracing::debug!(node = %name, %error, "no resource metrics from the kubelet");
                None
            }
        }
    });
    futures::future::join_all(fetches)
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn node_metrics(
    state: &ApiState,
    path: &ResourcePath,
    labels: &LabelSelector,
    fields: &FieldSelector,
    now: &str,
) -> ApiResult<Vec<Value>> {
    let nodes = selected(state, "nodes", path, labels, fields)?;
    // A node that is not Ready rarely answers: asking would hold the whole answer for the timeout.
    let refs: Vec<&Value> = nodes.iter().filter(|n| is_ready(n)).collect();
    let summaries = summaries(state, &refs).await;
    Ok(nodes
        .iter()
        .filter_map(|node| {
            let name = node["metadata"]["name"].as_str()?;
            let summary = summaries.get(name)?;
            node_item(node, &summary["node"], now)
        })
        .collect())
}

/// Whether a Node object's Ready condition is True.
fn is_ready(node: &Value) -> bool {
    node["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// One NodeMetrics from the node's Summary; `None` until its CPU rate is known.
fn node_item(node: &Value, stats: &Value, now: &str) -> Option<Value> {
    let (cpu, window, timestamp) = cpu_usage(&stats["cpu"])?;
    let memory = stats["memory"]["workingSetBytes"].as_u64()?;
    Some(json!({
        "metadata": {
            "name": node["metadata"]["name"],
            "creationTimestamp": now,
            "labels": node["metadata"].get("labels").cloned().unwrap_or_else(|| json!({})),
        },
        "timestamp": timestamp,
        "window": duration(window),
        "usage": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(memory)},
    }))
}

/// (nanocores, window in ns, reading time) of a Summary CPU reading that has a rate.
fn cpu_usage(cpu: &Value) -> Option<(u64, u64, String)> {
    Some((
        cpu["usageNanoCores"].as_u64()?,
        cpu["usageWindowNanoSeconds"].as_u64()?,
        cpu["time"].as_str()?.to_owned(),
    ))
}

async fn pod_metrics(
    state: &ApiState,
    path: &ResourcePath,
    labels: &LabelSelector,
    fields: &FieldSelector,
    now: &str,
) -> ApiResult<Vec<Value>> {
    let pods = selected(state, "pods", path, labels, fields)?;
    // Only the kubelets of nodes that run selected pods are asked.
    let mut node_names: Vec<&str> = pods
        .iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    node_names.sort_unstable();
    node_names.dedup();
    let nodes: Vec<Value> = cached(state, "nodes", None, |o| {
        node_names.binary_search(&o.name.as_str()).is_ok()
    })?
    .into_iter()
    .filter(is_ready)
    .collect();
    let refs: Vec<&Value> = nodes.iter().collect();
    let summaries = summaries(state, &refs).await;
    // (namespace, name, uid) -> the pod's Summary entry.
    let mut by_pod: BTreeMap<(String, String, String), &Value> = BTreeMap::new();
    for summary in summaries.values() {
        for pod in summary["pods"].as_array().map_or(&[][..], Vec::as_slice) {
            let r = &pod["podRef"];
            let key = |f: &str| r[f].as_str().unwrap_or_default().to_owned();
            by_pod.insert((key("namespace"), key("name"), key("uid")), pod);
        }
    }
    Ok(pods
        .iter()
        .filter_map(|pod| {
            let meta = &pod["metadata"];
            let key = (
                meta["namespace"].as_str()?.to_owned(),
                meta["name"].as_str()?.to_owned(),
                meta["uid"].as_str().unwrap_or_default().to_owned(),
            );
            pod_item(pod, by_pod.get(&key)?, now)
        })
        .collect())
}

/// One PodMetrics from the pod's Summary entry; `None` unless every container has a CPU rate and
/// a working set (metrics-server leaves such pods out too).
fn pod_item(pod: &Value, stats: &Value, now: &str) -> Option<Value> {
    let mut containers = Vec::new();
    let mut window = 0;
    let mut timestamp = String::new();
    for c in stats["containers"].as_array()? {
        let (cpu, w, t) = cpu_usage(&c["cpu"])?;
        let memory = c["memory"]["workingSetBytes"].as_u64()?;
        window = window.max(w);
        timestamp = timestamp.max(t);
        containers.push(json!({
            "name": c["name"],
            "usage": {"cpu": cpu_quantity(cpu), "memory": memory_quantity(memory)},
        }));
    }
    if containers.is_empty() {
        return None;
    }
    Some(json!({
        "metadata": {
            "name": pod["metadata"]["name"],
            "namespace": pod["metadata"]["namespace"],
            "creationTimestamp": now,
            "labels": pod["metadata"].get("labels").cloned().unwrap_or_else(|| json!({})),
        },
        "timestamp": timestamp,
        "window": duration(window),
        "containers": containers,
    }))
}

/// Nanocores as a canonical decimal quantity (`250m`, `1`, `1500u`, `123456789n`).
fn cpu_quantity(nanocores: u64) -> String {
    let mut value = nanocores;
    for suffix in ["n", "u", "m"] {
        if value == 0 || !value.is_multiple_of(1000) {
            return format!("{value}{suffix}");
        }
        value /= 1000;
    }
    value.to_string()
}

/// Bytes as a canonical binary quantity (`1234Ki`, `2Gi`, or plain bytes).
fn memory_quantity(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    let mut value = bytes;
    let mut suffix = "";
    for next in ["Ki", "Mi", "Gi", "Ti"] {
        if !value.is_multiple_of(1024) {
            break;
        }
        value /= 1024;
        suffix = next;
    }
    format!("{value}{suffix}")
}

/// A duration in ns as Go's `metav1.Duration` encodes it (`10s`, `10.5s`, `1.000000001s`).
fn duration(nanos: u64) -> String {
    let secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    if frac == 0 {
        return format!("{secs}s");
    }
    let digits = format!("{frac:09}");
    format!("{secs}.{}s", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_canonical() {
        assert_eq!(cpu_quantity(0), "0n");
        assert_eq!(cpu_quantity(123_456_789), "123456789n");
        assert_eq!(cpu_quantity(1_500_000), "1500u");
        assert_eq!(cpu_quantity(250_000_000), "250m");
        assert_eq!(cpu_quantity(2_000_000_000), "2");
        assert_eq!(memory_quantity(0), "0");
        assert_eq!(memory_quantity(1000), "1000");
        assert_eq!(memory_quantity(5 * 1024 + 1024 * 1024), "1029Ki");
        assert_eq!(memory_quantity(2 << 30), "2Gi");
        assert_eq!(duration(10_000_000_000), "10s");
        assert_eq!(duration(10_500_000_000), "10.5s");
        assert_eq!(duration(1_000_000_001), "1.000000001s");
        assert_eq!(duration(250_000_000), "0.25s");
    }

    fn summary_cpu(cores: u64) -> Value {
        json!({"time": "2026-12-03T10:00:00Z", "usageNanoCores": cores,
               "usageCoreNanoSeconds": 99, "usageWindowNanoSeconds": 10_000_000_000u64})
    }

    #[test]
    fn only_ready_nodes_are_asked() {
        let node = |status: &str| {
            json!({"status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                              {"type": "Ready", "status": status}]}})
        };
        assert!(is_ready(&node("True")));
        assert!(!is_ready(&node("Unknown")));
        assert!(!is_ready(&json!({"metadata": {"name": "new"}})));
    }

    #[test]
    fn node_metrics_from_a_summary() {
        let node = json!({"metadata": {"name": "n1", "labels": {"a": "b"}}});
        let stats = json!({"nodeName": "n1", "cpu": summary_cpu(250_000_000),
                           "memory": {"workingSetBytes": 1u64 << 30}});
        let item = node_item(&node, &stats, "2026-12-03T10:00:01Z").expect("metrics");
        assert_eq!(
            item,
            json!({
                "metadata": {"name": "n1", "creationTimestamp": "2026-12-03T10:00:01Z", "labels": {"a": "b"}},
                "timestamp": "2026-12-03T10:00:00Z",
                "window": "10s",
                "usage": {"cpu": "250m", "memory": "1Gi"},
            })
        );
        // No rate yet (a kubelet that just started): left out, as metrics-server does.
        let young = json!({"cpu": {"time": "t", "usageCoreNanoSeconds": 5}, "memory": {"workingSetBytes": 1}});
        assert!(node_item(&node, &young, "now").is_none());
    }

    #[test]
    fn pod_metrics_need_every_container() {
        let pod = json!({"metadata": {"name": "web", "namespace": "ns", "uid": "u"}});
        let stats = json!({"containers": [
            {"name": "app", "cpu": summary_cpu(1_000_000), "memory": {"workingSetBytes": 2048}},
            {"name": "side", "cpu": summary_cpu(0), "memory": {"workingSetBytes": 1024}},
        ]});
        let item = pod_item(&pod, &stats, "now").expect("metrics");
        assert_eq!(item["metadata"]["namespace"], "ns");
        assert_eq!(item["metadata"]["labels"], json!({}));
        assert_eq!(
            item["containers"],
            json!([
                {"name": "app", "usage": {"cpu": "1m", "memory": "2Ki"}},
                {"name": "side", "usage": {"cpu": "0n", "memory": "1Ki"}},
            ])
        );
        let partial = json!({"containers": [
            {"name": "app", "cpu": summary_cpu(1), "memory": {"workingSetBytes": 1}},
            {"name": "new", "cpu": {"time": "t", "usageCoreNanoSeconds": 1}, "memory": {"workingSetBytes": 1}},
        ]});
        assert!(pod_item(&pod, &partial, "now").is_none());
        assert!(pod_item(&pod, &json!({"containers": []}), "now").is_none());
    }

    #[test]
    fn a_missing_object_is_not_found_as_metrics_server_words_it() {
        let path = ResourcePath {
            group: GROUP.into(),
            version: VERSION.into(),
            namespace: Some("default".into()),
            resource: "pods".into(),
            name: Some("web".into()),
            subresource: None,
            watch_path: false,
        };
        let error =
            one_or_list(&path, Vec::new(), "PodMetrics", "podmetrics").expect_err("missing");
        assert_eq!(error.code, 404);
        assert_eq!(
            error.message,
            "podmetrics.metrics.k8s.io \"default/web\" not found"
        );
        let list = one_or_list(
            &ResourcePath { name: None, ..path },
            vec![json!({"metadata": {"name": "a"}})],
            "PodMetrics",
            "podmetrics",
        )
        .expect("list");
        assert_eq!(list["kind"], "PodMetricsList");
        assert_eq!(list["apiVersion"], "metrics.k8s.io/v1beta1");
        assert_eq!(list["items"][0]["metadata"]["name"], "a");
    }
}
