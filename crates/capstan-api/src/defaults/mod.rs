//! Kubernetes defaulting: the values kube-apiserver fills in on create and update (the
//! `SetDefaults_*` functions of `pkg/apis/*/v1/defaults.go`, the `+default` markers of
//! `k8s.io/api`, and the few fields registry strategies and admission set that every client
//! sees: a Pod's service account and priority, a Namespace's finalizer, a Job's selector).
//!
//! Defaulting never fails and never panics: a field of the wrong shape is left alone for
//! validation to report.

mod cluster;
mod pod;
mod workloads;

#[cfg(test)]
mod tests;

use serde_json::{Value, json};

use crate::registry::ResourceInfo;
use crate::validation::json::{
    arr, default_field, default_str, ensure_obj, get, obj, opt_str, str_of,
};

/// Fills in the defaults Kubernetes applies to an object of `resource`.
pub fn apply_defaults(resource: &ResourceInfo, object: &mut Value) {
    if !object.is_object() {
        return;
    }
    match (resource.group, resource.kind) {
        ("", "Pod") => pod::default_pod(object),
        ("", "Service") => default_service(object),
        ("", "Namespace") => default_namespace(object),
        ("", "Secret") => default_secret(object),
        ("", "Endpoints") => default_endpoints(object),
        ("", "Node") => default_node(object),
        ("", "LimitRange") => default_limit_range(object),
        ("", "PersistentVolume") => cluster::default_persistent_volume(object),
        ("", "PersistentVolumeClaim") => cluster::default_persistent_volume_claim(object),
        ("", "PodTemplate") => pod::default_template(object, "template"),
        ("networking.k8s.io", "NetworkPolicy") => cluster::default_network_policy(object),
        ("storage.k8s.io", "StorageClass") => cluster::default_storage_class(object),
        ("scheduling.k8s.io", "PriorityClass") => cluster::default_priority_class(object),
        ("autoscaling", "HorizontalPodAutoscaler") => crate::autoscaling::default_v2(object),
        ("apps", "Deployment") => workloads::default_deployment(object),
        ("apps", "ReplicaSet") => workloads::default_replica_set(object),
        ("apps", "StatefulSet") => workloads::default_stateful_set(object),
        ("apps", "DaemonSet") => workloads::default_daemon_set(object),
        ("batch", "Job") => workloads::default_job(object),
        ("batch", "CronJob") => workloads::default_cron_job(object),
        ("discovery.k8s.io", "EndpointSlice") => default_endpoint_slice(object),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            default_binding(object)
        }
        _ => {}
    }
}

/// Applies `f` to every element of the array at `v[key]`.
pub(crate) fn each(v: &mut Value, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(Value::Array(items)) = v.get_mut(key) {
        items.iter_mut().for_each(&mut f);
    }
}

/// Applies `f` to the object at `v[key]`, if there is one.
pub(crate) fn with(v: &mut Value, key: &str, f: impl FnOnce(&mut Value)) {
    if let Some(inner) = v.get_mut(key).filter(|i| i.is_object()) {
        f(inner);
    }
}

fn default_service(svc: &mut Value) {
    if ensure_obj(svc, "spec").is_none() {
        return;
    }
    let Some(spec) = svc.get_mut("spec") else {
        return;
    };
    default_str(spec, "type", "ClusterIP");
    default_str(spec, "sessionAffinity", "None");
    match str_of(spec, "sessionAffinity") {
        "None" => {
            if let Some(m) = spec.as_object_mut() {
                m.remove("sessionAffinityConfig");
            }
        }
        "ClientIP" => {
            let has_timeout = get(spec, "sessionAffinityConfig")
                .and_then(|c| get(c, "clientIP"))
                .and_then(|c| get(c, "timeoutSeconds"))
                .is_some();
            if !has_timeout && let Some(m) = spec.as_object_mut() {
                m.insert(
                    "sessionAffinityConfig".to_owned(),
                    json!({"clientIP": {"timeoutSeconds": 10800}}),
                );
            }
        }
        _ => {}
    }
    each(spec, "ports", |port| {
        default_str(port, "protocol", "TCP");
        let number = port.get("port").cloned().unwrap_or(Value::Null);
        let missing = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(n) => n.as_i64() == Some(0),
        };
        if missing
            && !number.is_null()
            && let Some(m) = port.as_object_mut()
        {
            m.insert("targetPort".to_owned(), number);
        }
    });
    let ty = str_of(spec, "type").to_owned();
    if crate::validation::service_externally_accessible(spec) {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(ty.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        default_field(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        default_field(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if ty == "ExternalName" {
        return;
    }
    // Keep clusterIP and clusterIPs in step (the service strategy's normalization).
    let cluster_ip = str_of(spec, "clusterIP").to_owned();
    let ips: Vec<String> = arr(spec, "clusterIPs")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    if let Some(m) = spec.as_object_mut() {
        if !cluster_ip.is_empty() && ips.is_empty() {
            m.insert("clusterIPs".to_owned(), json!([cluster_ip]));
        } else if cluster_ip.is_empty() && !ips.is_empty() {
            m.insert("clusterIP".to_owned(), json!(ips[0]));
        }
    }
    // IP families of a single-stack IPv4 cluster (the family of a given address wins).
    let headless = str_of(spec, "clusterIP") == "None";
    let selectorless = obj(spec, "selector").is_none_or(|s| s.is_empty());
    let policy = if headless && selectorless {
        "RequireDualStack"
    } else {
        "SingleStack"
    };
    default_field(spec, "ipFamilyPolicy", json!(policy));
    if arr(spec, "ipFamilies").is_empty() {
        let family = match opt_str(spec, "clusterIP") {
            Some(ip) if ip.contains(':') => "IPv6",
            _ => "IPv4",
        };
        if let Some(m) = spec.as_object_mut() {
            m.insert("ipFamilies".to_owned(), json!([family]));
        }
    }
}

fn default_namespace(ns: &mut Value) {
    let name = str_of(crate::validation::json::meta(ns), "name").to_owned();
    if !name.is_empty()
        && let Some(meta) = ensure_obj(ns, "metadata")
    {
        let labels = meta
            .entry("labels".to_owned())
            .or_insert_with(|| Value::Object(Default::default()));
        if !labels.is_object() {
            *labels = Value::Object(Default::default());
        }
        if let Some(l) = labels.as_object_mut() {
            l.insert(
                "kubernetes.io/metadata.name".to_owned(),
                Value::String(name),
            );
        }
    }
    if let Some(spec) = ensure_obj(ns, "spec") {
        spec.entry("finalizers".to_owned())
            .or_insert_with(|| json!(["kubernetes"]));
    }
    if let Some(status) = ensure_obj(ns, "status") {
        let phase = status.get("phase").and_then(Value::as_str).unwrap_or("");
        if phase.is_empty() {
            status.insert("phase".to_owned(), json!("Active"));
        }
    }
}

/// `type: Opaque`, and `stringData` merged into `data` (the v1 conversion does this; the
/// server never returns `stringData`).
fn default_secret(secret: &mut Value) {
    default_str(secret, "type", "Opaque");
    let Some(m) = secret.as_object_mut() else {
        return;
    };
    let Some(Value::Object(string_data)) = m.remove("stringData") else {
        return;
    };
    if !m.get("data").is_some_and(Value::is_object) {
        m.insert("data".to_owned(), json!({}));
    }
    if let Some(data) = m.get_mut("data").and_then(Value::as_object_mut) {
        for (k, v) in string_data {
            if let Some(text) = v.as_str() {
                data.insert(k, Value::String(base64_encode(text.as_bytes())));
            }
        }
    }
}

/// Standard base64 with padding (how `ByteString` appears in JSON).
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn default_endpoints(ep: &mut Value) {
    each(ep, "subsets", |subset| {
        each(subset, "ports", |p| default_str(p, "protocol", "TCP"))
    });
}

fn default_endpoint_slice(slice: &mut Value) {
    each(slice, "ports", |p| {
        default_field(p, "name", json!(""));
        default_field(p, "protocol", json!("TCP"));
    });
}

fn default_node(node: &mut Value) {
    with(node, "status", |status| {
        if get(status, "allocatable").is_none()
            && let Some(capacity) = get(status, "capacity").cloned()
        {
            default_field(status, "allocatable", capacity);
        }
    });
}

fn default_limit_range(lr: &mut Value) {
    with(lr, "spec", |spec| {
        each(spec, "limits", |item| {
            if str_of(item, "type") != "Container" {
                return;
            }
            let max = obj(item, "max").cloned().unwrap_or_default();
            let min = obj(item, "min").cloned().unwrap_or_default();
            let Some(m) = item.as_object_mut() else {
                return;
            };
            let mut default = m
                .get("default")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for (k, v) in max {
                default.entry(k).or_insert(v);
            }
            let mut request = m
                .get("defaultRequest")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for (k, v) in &default {
                request.entry(k.clone()).or_insert(v.clone());
            }
            for (k, v) in min {
                request.entry(k).or_insert(v);
            }
            m.insert("default".to_owned(), Value::Object(default));
            m.insert("defaultRequest".to_owned(), Value::Object(request));
        });
    });
}

fn default_binding(binding: &mut Value) {
    with(binding, "roleRef", |r| {
        default_str(r, "apiGroup", "rbac.authorization.k8s.io")
    });
    each(binding, "subjects", |s| {
        if matches!(str_of(s, "kind"), "User" | "Group") {
            default_str(s, "apiGroup", "rbac.authorization.k8s.io");
        }
    });
}
