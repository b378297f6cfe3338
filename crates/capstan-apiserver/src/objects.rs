//! What the server does to an object around a write, per resource: system metadata on create,
//! what an update may change (status vs main resource), generation, and admission defaults.

use capstan_api::ResourceInfo;

use crate::cache::WatchCache;
use serde_json::{Map, Value, json};

/// Settings that shape admission.
#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    pub not_ready_toleration_seconds: i64,
    pub unreachable_toleration_seconds: i64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            not_ready_toleration_seconds: 300,
            unreachable_toleration_seconds: 300,
        }
    }
}

/// RFC 3339 time in whole seconds, as Kubernetes writes timestamps.
pub(crate) fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .map(|t| t.to_string())
        .unwrap_or_else(|_| now.to_string())
}

/// RFC 3339 time in whole seconds, `seconds` from now.
pub(crate) fn rfc3339_after(seconds: i64) -> String {
    let now = jiff::Timestamp::now().as_second().saturating_add(seconds);
    jiff::Timestamp::from_second(now)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| now_rfc3339())
}

/// A random (version 4) UUID.
pub(crate) fn new_uid() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Fall back to the clock: uniqueness matters, secrecy does not.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b = nanos.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Five characters for a `generateName` suffix, from Kubernetes' alphabet (no vowels, no look-alikes).
pub(crate) fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    let _ = getrandom::fill(&mut b);
    b.iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect()
}

/// The object's `metadata` map, created (and the object made an object) if needed.
pub(crate) fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let Value::Object(root) = object else {
        unreachable!("made an object above")
    };
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    let Value::Object(meta) = meta else {
        unreachable!("made an object above")
    };
    meta
}

pub(crate) fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// Resources whose `metadata.generation` counts spec changes.
fn tracks_generation(resource: &ResourceInfo) -> bool {
    resource.custom.is_some()
        || matches!(
            resource.group,
            "apps" | "batch" | "policy" | "networking.k8s.io" | "apiextensions.k8s.io"
        )
}

/// Whether an update changes what the generation counts: the spec, or for custom resources
/// everything but metadata (and status, when it has its own subresource).
fn spec_changed(resource: &ResourceInfo, new: &Value, old: &Value) -> bool {
    if resource.custom.is_none() {
        return new.get("spec") != old.get("spec");
    }
    let skip = |key: &str| key == "metadata" || (key == "status" && has_status(resource));
    let content = |v: &Value| -> Vec<(String, Value)> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| !skip(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut a = content(new);
    let mut b = content(old);
    a.sort_by(|x, y| x.0.cmp(&y.0));
    b.sort_by(|x, y| x.0.cmp(&y.0));
    a != b
}

/// Whether the main resource's writes leave `status` alone (it has a status subresource).
pub(crate) fn has_status(resource: &ResourceInfo) -> bool {
    resource.subresource("status").is_some()
}

/// Sets the system fields of a new object: uid, creation time, generation; clears what clients may not set.
pub(crate) fn prepare_create(resource: &ResourceInfo, object: &mut Value) {
    let meta = metadata_mut(object);
    meta.insert("uid".into(), Value::String(new_uid()));
    meta.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("selfLink");
    if tracks_generation(resource) {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    // A new object's status is the server's to set, for resources that have a status subresource,
    // except for the few kinds whose clients create them with status (nodes, as kubelets do).
    if has_status(resource)
        && !matches!(resource.plural, "nodes" | "certificatesigningrequests")
        && let Some(o) = object.as_object_mut()
    {
        o.remove("status");
    }
}

/// A CSR records who asked for it (as kube-apiserver's strategy does): `spec.username`, `groups`,
/// `uid` and `extra` come from the authenticated user, never from the body. Its status starts empty.
pub(crate) fn record_csr_requester(object: &mut Value, user: &crate::User) {
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("username".into(), Value::String(user.name.clone()));
        spec.insert("groups".into(), json!(user.groups));
        spec.remove("uid");
        spec.remove("extra");
    }
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
    }
}

/// Carries over from `old` what an update of the main resource may not change, and bumps the
/// generation when the spec changed.
pub(crate) fn prepare_update(resource: &ResourceInfo, new: &mut Value, old: &Value) {
    let old_meta = &old["metadata"];
    {
        let meta = metadata_mut(new);
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_meta.get(field) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        meta.remove("selfLink");
    }
    if has_status(resource) && resource.plural != "certificatesigningrequests" {
        match old.get("status") {
            Some(status) => new["status"] = status.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    if resource.plural == "services" && resource.group.is_empty() {
        keep_service_allocations(new, old);
    }
    if tracks_generation(resource) && spec_changed(resource, new, old) {
        let generation = old_meta["generation"].as_i64().unwrap_or(1);
        metadata_mut(new).insert("generation".into(), json!(generation + 1));
    }
}

/// A Service update that omits its allocated ClusterIP or node ports keeps them (as `kubectl replace`
/// of an edited manifest expects).
fn keep_service_allocations(new: &mut Value, old: &Value) {
    let old_spec = &old["spec"];
    let spec = &mut new["spec"];
    if !spec.is_object() {
        return;
    }
    if spec["clusterIP"].as_str().unwrap_or_default().is_empty() && !old_spec["clusterIP"].is_null()
    {
        spec["clusterIP"] = old_spec["clusterIP"].clone();
        spec["clusterIPs"] = old_spec["clusterIPs"].clone();
    }
    if spec["healthCheckNodePort"].is_null() && !old_spec["healthCheckNodePort"].is_null() {
        spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"].clone();
    }
    let old_ports = old_spec["ports"].as_array().cloned().unwrap_or_default();
    if let Some(ports) = spec["ports"].as_array_mut() {
        for port in ports.iter_mut().filter(|p| p["nodePort"].is_null()) {
            let protocol = port["protocol"].as_str().unwrap_or("TCP").to_owned();
            if let Some(old_port) = old_ports.iter().find(|o| {
                o["port"] == port["port"] && o["protocol"].as_str().unwrap_or("TCP") == protocol
            }) && !old_port["nodePort"].is_null()
            {
                port["nodePort"] = old_port["nodePort"].clone();
            }
        }
    }
}

/// An update through the `status` subresource: only `status` (and labels/annotations... not even
/// those) changes; everything else is the stored object.
pub(crate) fn prepare_status_update(new: &Value, old: &Value) -> Value {
    let mut merged = old.clone();
    merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
    if merged["status"].is_null()
        && let Some(o) = merged.as_object_mut()
    {
        o.remove("status");
    }
    if let Some(rv) = new["metadata"].get("resourceVersion") {
        metadata_mut(&mut merged).insert("resourceVersion".into(), rv.clone());
    }
    merged
}

/// Priority admission of a new pod: its class (named, or the one marked `globalDefault`) gives
/// `priority` and `preemptionPolicy`; a pod may not name a missing class nor contradict its class.
/// Classes come from the watch cache, as kube's plugin reads them from an informer. The built-in
/// classes are left to defaulting, which knows their values.
pub(crate) fn admit_pod_priority(pod: &mut Value, cache: &WatchCache) -> Result<(), String> {
    let spec = &mut pod["spec"];
    if !spec.is_object() {
        return Ok(());
    }
    let named = spec["priorityClassName"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if capstan_api::system_priority_class(&named).is_some() {
        return Ok(());
    }
    let class = if named.is_empty() {
        // Several defaults can exist after a race; kube takes the lowest value.
        let mut defaults = default_priority_classes(cache, None);
        defaults.sort_by_key(|c| c["value"].as_i64().unwrap_or_default());
        match defaults.into_iter().next() {
            Some(class) => class,
            None => return Ok(()),
        }
    } else {
        let classes = priority_classes()?;
        match cache.get(classes, &classes.key(None, &named)) {
            Some(class) => class.value(),
            None => return Err(format!("no PriorityClass with name {named} was found")),
        }
    };
    let value = class["value"].as_i64().unwrap_or_default();
    let policy = class["preemptionPolicy"]
        .as_str()
        .unwrap_or("PreemptLowerPriority")
        .to_owned();
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != value
    {
        return Err(format!(
            "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
        ));
    }
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
        && given != policy
    {
        return Err(format!(
            "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
        ));
    }
    spec["priorityClassName"] = class["metadata"]["name"].clone();
    spec["priority"] = json!(value);
    spec["preemptionPolicy"] = json!(policy);
    Ok(())
}

/// The annotation that marks the cluster's default StorageClass.
const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

/// DefaultStorageClass admission of a new claim: a claim that names no class (the field absent, not
/// `""`, which asks for no class) gets the default one. Among several defaults kube takes the newest.
pub(crate) fn admit_default_storage_class(claim: &mut Value, cache: &WatchCache) {
    let spec = &mut claim["spec"];
    if !spec.is_object() || spec.get("storageClassName").is_some_and(|c| !c.is_null()) {
        return;
    }
    let Some(classes) = capstan_api::find("storage.k8s.io", "v1", "storageclasses") else {
        return;
    };
    let (candidates, _, _) = cache.list(classes, None, None, |_| true, None);
    let newest_default = candidates
        .iter()
        .map(|c| c.value())
        .filter(|c| c["metadata"]["annotations"][DEFAULT_CLASS_ANNOTATION] == "true")
        .max_by(|a, b| {
            let created = |c: &Value| {
                c["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            };
            created(a).cmp(&created(b)).then_with(|| {
                b["metadata"]["name"]
                    .as_str()
                    .cmp(&a["metadata"]["name"].as_str())
            })
        });
    if let Some(class) = newest_default {
        spec["storageClassName"] = class["metadata"]["name"].clone();
    }
}

/// PersistentVolumeClaimResize admission: a claim may only grow when its StorageClass allows
/// volume expansion (a claim without a class, or of a class without `allowVolumeExpansion`, cannot).
pub(crate) fn admit_claim_resize(
    new: &Value,
    old: &Value,
    cache: &WatchCache,
) -> Result<(), String> {
    let storage = |claim: &Value| claim["spec"]["resources"]["requests"]["storage"].clone();
    if storage(new) == storage(old) {
        return Ok(());
    }
    let class = new["spec"]["storageClassName"].as_str().unwrap_or_default();
    let expandable = !class.is_empty()
        && capstan_api::find("storage.k8s.io", "v1", "storageclasses")
            .and_then(|classes| cache.get(classes, &classes.key(None, class)))
            .is_some_and(|c| c.value()["allowVolumeExpansion"] == true);
    if expandable {
        Ok(())
    } else {
        Err("only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize".into())
    }
}

/// The finalizer that keeps a claim while pods use it (kube's StorageObjectInUseProtection
/// admission adds it to every new claim; the controller manager removes it once no pod uses it).
pub(crate) const CLAIM_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";

/// The finalizer that keeps a volume while a claim is bound to it (kube's pv-protection).
pub(crate) const VOLUME_PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";

/// StorageObjectInUseProtection admission of a new claim.
pub(crate) fn admit_claim_protection(claim: &mut Value) {
    add_finalizer(claim, CLAIM_PROTECTION_FINALIZER);
}

/// StorageObjectInUseProtection admission of a new volume.
pub(crate) fn admit_volume_protection(volume: &mut Value) {
    add_finalizer(volume, VOLUME_PROTECTION_FINALIZER);
}

fn add_finalizer(object: &mut Value, finalizer: &str) {
    let meta = metadata_mut(object);
    let finalizers = meta
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(list) = finalizers.as_array_mut()
        && !list.iter().any(|f| f == finalizer)
    {
        list.push(json!(finalizer));
    }
}

/// Priority admission of PriorityClasses: at most one may be the `globalDefault`.
pub(crate) fn admit_priority_class(
    class: &Value,
    old: Option<&Value>,
    cache: &WatchCache,
) -> Result<(), String> {
    let marks_default = class["globalDefault"] == true;
    let was_default = old.is_some_and(|o| o["globalDefault"] == true);
    if !marks_default || was_default {
        return Ok(());
    }
    let name = class["metadata"]["name"].as_str().unwrap_or_default();
    match default_priority_classes(cache, Some(name)).first() {
        Some(existing) => Err(format!(
            "PriorityClass {} is already marked as default. Only one default can exist",
            existing["metadata"]["name"].as_str().unwrap_or_default()
        )),
        None => Ok(()),
    }
}

fn priority_classes() -> Result<&'static ResourceInfo, String> {
    capstan_api::find("scheduling.k8s.io", "v1", "priorityclasses")
        .ok_or_else(|| "priorityclasses are not registered".to_owned())
}

/// The cached PriorityClasses marked `globalDefault`, but `except`. Only a class whose JSON says
/// so is parsed.
fn default_priority_classes(cache: &WatchCache, except: Option<&str>) -> Vec<Value> {
    const GLOBAL_DEFAULT: &[u8] = br#""globalDefault":true"#;
    let Ok(classes) = priority_classes() else {
        return Vec::new();
    };
    let (candidates, _, _) = cache.list(
        classes,
        None,
        None,
        |c| {
            Some(c.name.as_str()) != except
                && c.json
                    .windows(GLOBAL_DEFAULT.len())
                    .any(|w| w == GLOBAL_DEFAULT)
        },
        None,
    );
    candidates
        .iter()
        .map(|c| c.value())
        .filter(|c| c["globalDefault"] == true)
        .collect()
}

/// Admission defaults for a new pod: the default service account, the node-problem tolerations
/// (DefaultTolerationSeconds), priority, and the initial status.
pub(crate) fn admit_pod(pod: &mut Value, config: &AdmissionConfig) {
    let spec = &mut pod["spec"];
    if !spec.is_object() {
        return;
    }
    if spec["serviceAccountName"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        spec["serviceAccountName"] = json!("default");
    }
    if spec["serviceAccount"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        spec["serviceAccount"] = spec["serviceAccountName"].clone();
    }
    if spec.get("priority").is_none() {
        spec["priority"] = json!(0);
    }
    let mut tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
    for (key, seconds) in [
        (
            "node.kubernetes.io/not-ready",
            config.not_ready_toleration_seconds,
        ),
        (
            "node.kubernetes.io/unreachable",
            config.unreachable_toleration_seconds,
        ),
    ] {
        let tolerated = tolerations.iter().any(|t| {
            let effect = t["effect"].as_str().unwrap_or_default();
            (t["key"].as_str() == Some(key) || (t["key"].is_null() && t["operator"] == "Exists"))
                && (effect.is_empty() || effect == "NoExecute")
        });
        if !tolerated {
            tolerations.push(json!({
                "key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds
            }));
        }
    }
    spec["tolerations"] = Value::Array(tolerations);
    let qos = qos_class(&pod["spec"]);
    pod["status"] = json!({"phase": "Pending", "qosClass": qos});
}

/// The QoS class Kubernetes computes from the containers' requests and limits.
pub(crate) fn qos_class(spec: &Value) -> &'static str {
    let containers = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(spec["initContainers"].as_array().into_iter().flatten());
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let requests = &c["resources"]["requests"];
        let limits = &c["resources"]["limits"];
        for res in ["cpu", "memory"] {
            let (r, l) = (&requests[res], &limits[res]);
            if !r.is_null() || !l.is_null() {
                any = true;
            }
            if l.is_null() || (!r.is_null() && r != l) {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_look_like_uuids() {
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4");
        assert_ne!(uid, new_uid());
    }

    #[test]
    fn pods_get_default_tolerations_and_service_account() {
        let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "i"}]}});
        admit_pod(&mut pod, &AdmissionConfig::default());
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        let tolerations = pod["spec"]["tolerations"].as_array().expect("tolerations");
        assert_eq!(tolerations.len(), 2);
        assert_eq!(tolerations[1]["key"], "node.kubernetes.io/unreachable");
        assert_eq!(tolerations[1]["tolerationSeconds"], 300);
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
    }

    #[test]
    fn qos_classes() {
        let g = json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"containers": [{"resources": {"requests": {"cpu": "100m"}}}]});
        assert_eq!(qos_class(&b), "Burstable");
    }

    #[test]
    fn main_resource_updates_keep_status_and_bump_generation() {
        let deployments = capstan_api::find("apps", "v1", "deployments").expect("deployments");
        let old = json!({"metadata": {"uid": "u", "generation": 3}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let mut new = json!({"metadata": {}, "spec": {"replicas": 2}, "status": {"replicas": 99}});
        prepare_update(deployments, &mut new, &old);
        assert_eq!(new["status"]["replicas"], 1);
        assert_eq!(new["metadata"]["generation"], 4);
        assert_eq!(new["metadata"]["uid"], "u");
    }
}
