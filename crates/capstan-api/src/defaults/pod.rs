//! Pod and pod-template defaults (`SetDefaults_Pod`, `SetDefaults_PodSpec`, containers, probes,
//! volumes), plus what admission adds to every Pod (service account, priority).

use serde_json::{Value, json};

use super::{each, with};
use crate::validation::json::{default_field, default_nonzero, default_str, get, str_of};
use crate::validation::quantity;

/// Defaults of a Pod object: the spec defaults plus the Pod-only ones.
pub(crate) fn default_pod(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    // SetDefaults_Pod: requests default to limits, host-network ports, service links.
    for field in ["containers", "initContainers"] {
        each(spec, field, |c| {
            let limits = c
                .get("resources")
                .and_then(|r| r.get("limits"))
                .and_then(Value::as_object)
                .cloned();
            if let Some(limits) = limits
                && let Some(res) = c.get_mut("resources").and_then(Value::as_object_mut)
            {
                let requests = res
                    .entry("requests".to_owned())
                    .or_insert_with(|| Value::Object(Default::default()));
                if !requests.is_object() {
                    *requests = Value::Object(Default::default());
                }
                if let Some(r) = requests.as_object_mut() {
                    for (k, v) in limits {
                        r.entry(k).or_insert(v);
                    }
                }
            }
        });
    }
    default_field(spec, "enableServiceLinks", json!(true));
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        for field in ["containers", "initContainers"] {
            each(spec, field, |c| {
                each(c, "ports", |p| {
                    if let Some(cp) = p.get("containerPort").cloned() {
                        default_nonzero_value(p, "hostPort", cp);
                    }
                });
            });
        }
    }
    // ServiceAccount admission (a deprecated `serviceAccount` alone still names the account).
    if str_of(spec, "serviceAccountName").is_empty() && str_of(spec, "serviceAccount").is_empty() {
        default_str(spec, "serviceAccountName", "default");
    }
    // Priority admission: the global default, or a built-in class's value.
    let priority = match str_of(spec, "priorityClassName") {
        "" => Some(0),
        name => crate::system_priority_class(name).map(|c| c.value),
    };
    if let Some(p) = priority {
        default_field(spec, "priority", json!(p));
    }
    default_field(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    default_pod_spec(spec);
}

fn default_nonzero_value(v: &mut Value, key: &str, value: Value) {
    let zero = match v.get(key) {
        None | Some(Value::Null) => true,
        Some(n) => n.as_i64() == Some(0),
    };
    if zero && let Some(m) = v.as_object_mut() {
        m.insert(key.to_owned(), value);
    }
}

/// Defaults of the pod template at `v[key]` (`spec.template`). Like Kubernetes, Job templates
/// get `restartPolicy: Always` too, which Job validation then rejects with its own message.
pub(crate) fn default_template(v: &mut Value, key: &str) {
    with(v, key, |template| {
        with(template, "spec", default_pod_spec);
    });
}

/// `SetDefaults_PodSpec` and everything nested in a pod spec.
pub(crate) fn default_pod_spec(spec: &mut Value) {
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "restartPolicy", "Always");
    default_field(spec, "securityContext", json!({}));
    default_field(spec, "terminationGracePeriodSeconds", json!(30));
    default_str(spec, "schedulerName", "default-scheduler");
    // The deprecated `serviceAccount` mirrors `serviceAccountName` (v1 conversion).
    let sa_name = str_of(spec, "serviceAccountName").to_owned();
    let sa = str_of(spec, "serviceAccount").to_owned();
    if let Some(m) = spec.as_object_mut() {
        if sa_name.is_empty() && !sa.is_empty() {
            m.insert("serviceAccountName".to_owned(), json!(sa));
        } else if !sa_name.is_empty() {
            m.insert("serviceAccount".to_owned(), json!(sa_name));
        }
    }
    each(spec, "volumes", default_volume);
    for field in ["containers", "initContainers", "ephemeralContainers"] {
        each(spec, field, default_container);
    }
}

fn default_volume(vol: &mut Value) {
    const SOURCES: &[&str] = &[
        "hostPath",
        "emptyDir",
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "gitRepo",
        "secret",
        "nfs",
        "iscsi",
        "glusterfs",
        "persistentVolumeClaim",
        "rbd",
        "flexVolume",
        "cinder",
        "cephfs",
        "flocker",
        "downwardAPI",
        "fc",
        "azureFile",
        "configMap",
        "vsphereVolume",
        "quobyte",
        "azureDisk",
        "photonPersistentDisk",
        "projected",
        "portworxVolume",
        "scaleIO",
        "storageos",
        "csi",
        "ephemeral",
        "image",
    ];
    if !SOURCES.iter().any(|s| get(vol, s).is_some()) {
        if let Some(m) = vol.as_object_mut() {
            m.insert("emptyDir".to_owned(), json!({}));
        }
        return;
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        with(vol, source, |s| default_field(s, "defaultMode", json!(420)));
    }
    with(vol, "hostPath", |h| default_field(h, "type", json!("")));
    with(vol, "downwardAPI", |d| {
        each(d, "items", |item| {
            with(item, "fieldRef", |f| default_str(f, "apiVersion", "v1"));
        });
    });
    with(vol, "projected", |p| {
        each(p, "sources", |source| {
            with(source, "serviceAccountToken", |t| {
                default_field(t, "expirationSeconds", json!(3600));
            });
            with(source, "downwardAPI", |d| {
                each(d, "items", |item| {
                    with(item, "fieldRef", |f| default_str(f, "apiVersion", "v1"));
                });
            });
        });
    });
    with(vol, "ephemeral", |e| {
        with(e, "volumeClaimTemplate", |t| {
            with(t, "spec", |s| {
                default_field(s, "volumeMode", json!("Filesystem"));
                with(s, "resources", default_resource_lists);
            });
        });
    });
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent` (digests count as tagged).
fn pull_policy(image: &str) -> &'static str {
    // An image reference that does not parse has no tag: Kubernetes then picks IfNotPresent.
    let repo = image.split(['@', ':']).next().unwrap_or("");
    let path = repo.split_once('/').map_or(repo, |(domain, rest)| {
        if domain.contains(['.', ':']) || domain == "localhost" {
            rest
        } else {
            repo
        }
    });
    if image.is_empty()
        || image.contains(char::is_whitespace)
        || path.contains(|c: char| c.is_ascii_uppercase())
    {
        return "IfNotPresent";
    }
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

fn default_container(c: &mut Value) {
    let policy = pull_policy(str_of(c, "image"));
    default_str(c, "imagePullPolicy", policy);
    default_str(c, "terminationMessagePath", "/dev/termination-log");
    default_str(c, "terminationMessagePolicy", "File");
    each(c, "ports", |p| default_str(p, "protocol", "TCP"));
    each(c, "env", |e| {
        with(e, "valueFrom", |from| {
            with(from, "fieldRef", |f| default_str(f, "apiVersion", "v1"));
        });
    });
    default_field(c, "resources", json!({}));
    with(c, "resources", default_resource_lists);
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        with(c, probe, |p| {
            default_nonzero(p, "timeoutSeconds", 1);
            default_nonzero(p, "periodSeconds", 10);
            default_nonzero(p, "successThreshold", 1);
            default_nonzero(p, "failureThreshold", 3);
            with(p, "httpGet", default_http_get);
        });
    }
    with(c, "lifecycle", |lc| {
        for hook in ["postStart", "preStop"] {
            with(lc, hook, |h| with(h, "httpGet", default_http_get));
        }
    });
}

fn default_http_get(h: &mut Value) {
    default_str(h, "path", "/");
    default_str(h, "scheme", "HTTP");
}

/// `SetDefaults_ResourceList`: quantities rounded up to milli precision and written in their
/// canonical form, as kube-apiserver returns them.
pub(crate) fn default_resource_lists(res: &mut Value) {
    for list in ["limits", "requests"] {
        if let Some(map) = res.get_mut(list).and_then(Value::as_object_mut) {
            for value in map.values_mut() {
                if let Some(normal) = value.as_str().and_then(quantity::normalize) {
                    *value = Value::String(normal);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pull_policy;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(pull_policy("localhost:5000/app"), "Always");
        assert_eq!(pull_policy("localhost:5000/app:v1"), "IfNotPresent");
        assert_eq!(pull_policy("app@sha256:abc"), "IfNotPresent");
        assert_eq!(pull_policy(""), "IfNotPresent");
        assert_eq!(pull_policy("Nginx"), "IfNotPresent");
    }
}
