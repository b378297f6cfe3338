//! Storage, networking and scheduling kinds: PersistentVolume(Claim), Ingress, IngressClass,
//! PriorityClass and StorageClass. The checks users meet first, worded as Kubernetes words them.

use serde_json::Value;

use super::json::{arr, child, get, index, int, obj, str_of};
use super::names::is_qualified_name;
use super::quantity::Quantity;
use super::{FieldError, forbidden, immutable_str, invalid_str, not_supported, required};

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
/// The volume sources a PersistentVolume may name (exactly one).
const PV_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];
/// `HighestUserDefinablePriority`.
const MAX_USER_PRIORITY: i64 = 1_000_000_000;

/// An optional enum field: empty, or one of `supported`.
fn one_of(errs: &mut Vec<FieldError>, path: &str, value: &str, supported: &[&str]) {
    if !value.is_empty() && !supported.contains(&value) {
        errs.push(not_supported(path, value, supported));
    }
}

fn access_modes(errs: &mut Vec<FieldError>, spec: &Value, detail: &str) {
    let modes = arr(spec, "accessModes");
    if modes.is_empty() {
        errs.push(required("spec.accessModes", detail));
    }
    for mode in modes {
        let mode = mode.as_str().unwrap_or_default();
        if !ACCESS_MODES.contains(&mode) {
            errs.push(not_supported("spec.accessModes", mode, ACCESS_MODES));
        }
    }
    let mode = str_of(spec, "volumeMode");
    one_of(errs, "spec.volumeMode", mode, VOLUME_MODES);
}

pub(crate) fn validate_persistent_volume_claim(
    errs: &mut Vec<FieldError>,
    pvc: &Value,
    old: Option<&Value>,
) {
    let spec = pvc.get("spec").unwrap_or(&Value::Null);
    access_modes(errs, spec, "at least 1 access mode is required");
    let path = "spec.resources[storage]";
    match get(spec, "resources")
        .and_then(|r| get(r, "requests"))
        .and_then(|r| get(r, "storage"))
    {
        None => errs.push(required(path, "")),
        Some(raw) => {
            let raw = raw.as_str().unwrap_or_default();
            if Quantity::parse(raw).is_some_and(|q| q.nanos <= 0) {
                errs.push(invalid_str(path, raw, "must be greater than zero"));
            }
        }
    }
    if let Some(old) = old {
        // Only a bound claim may grow (resources.requests); nothing else in spec changes.
        let old_spec = old.get("spec").unwrap_or(&Value::Null);
        let bound = old["status"]["phase"] == "Bound";
        // Binding sets `volumeName` once: an empty one may take the new value (kube's strategy).
        let unset_volume = old_spec["volumeName"].as_str().is_none_or(str::is_empty);
        let comparable = |s: &Value| -> Value {
            let mut s = s.clone();
            if unset_volume && let Some(map) = s.as_object_mut() {
                map.remove("volumeName");
            }
            if bound && let Some(resources) = s.get_mut("resources").and_then(Value::as_object_mut)
            {
                resources.remove("requests");
            }
            if let Some(map) = s.as_object_mut() {
                map.remove("volumeAttributesClassName");
            }
            s
        };
        if comparable(spec) != comparable(old_spec) {
            errs.push(forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
    }
}

pub(crate) fn validate_persistent_volume(errs: &mut Vec<FieldError>, pv: &Value) {
    let spec = pv.get("spec").unwrap_or(&Value::Null);
    access_modes(errs, spec, "");
    match obj(spec, "capacity") {
        None => errs.push(required("spec.capacity", "")),
        Some(capacity) if capacity.is_empty() => errs.push(required("spec.capacity", "")),
        Some(capacity) => {
            if !capacity.contains_key("storage") || capacity.len() > 1 {
                let names: Vec<&str> = capacity.keys().map(String::as_str).collect();
                let mut e = not_supported("spec.capacity", "", &["storage"]);
                e.value = Some(format!("map[{}]", names.join(" ")));
                errs.push(e);
            }
        }
    }
    let sources: Vec<&str> = PV_SOURCES
        .iter()
        .copied()
        .filter(|s| get(spec, s).is_some_and(|v| !v.is_null()))
        .collect();
    match sources.as_slice() {
        [] => errs.push(required("spec", "must specify a volume type")),
        [_] => {}
        [_, more @ ..] => {
            for source in more {
                errs.push(forbidden(
                    child("spec", source),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    let policy = str_of(spec, "persistentVolumeReclaimPolicy");
    one_of(
        errs,
        "spec.persistentVolumeReclaimPolicy",
        policy,
        &["Delete", "Recycle", "Retain"],
    );
}

fn ingress_backend(errs: &mut Vec<FieldError>, backend: &Value, path: &str) {
    let service = get(backend, "service").filter(|s| !s.is_null());
    let resource = get(backend, "resource").filter(|r| !r.is_null());
    match (service, resource) {
        (Some(_), Some(_)) => errs.push(invalid_str(
            path,
            "",
            "cannot set both resource and service backends",
        )),
        (None, Some(resource)) => {
            if str_of(resource, "kind").is_empty() {
                errs.push(required(child(&child(path, "resource"), "kind"), ""));
            }
            if str_of(resource, "name").is_empty() {
                errs.push(required(child(&child(path, "resource"), "name"), ""));
            }
        }
        (Some(service), None) => {
            let service_path = child(path, "service");
            if str_of(service, "name").is_empty() {
                errs.push(required(child(&service_path, "name"), ""));
            }
            let port = service.get("port").unwrap_or(&Value::Null);
            let name = str_of(port, "name");
            let number = int(port, "number").unwrap_or(0);
            match (name.is_empty(), number == 0) {
                (false, false) => errs.push(invalid_str(
                    path,
                    "",
                    "cannot set both port name & port number",
                )),
                (true, true) => errs.push(required(
                    child(&service_path, "port"),
                    "port name or number is required",
                )),
                _ => {}
            }
        }
        (None, None) => errs.push(invalid_str(
            path,
            "",
            "resource or service backend is required",
        )),
    }
}

pub(crate) fn validate_ingress(errs: &mut Vec<FieldError>, ing: &Value) {
    let spec = ing.get("spec").unwrap_or(&Value::Null);
    let default_backend = get(spec, "defaultBackend").filter(|b| !b.is_null());
    let rules = arr(spec, "rules");
    if rules.is_empty() && default_backend.is_none() {
        let mut e = invalid_str(
            "spec",
            "",
            "either `defaultBackend` or `rules` must be specified",
        );
        e.value = Some("[]networking.IngressRule(nil)".into());
        errs.push(e);
    }
    if let Some(backend) = default_backend {
        ingress_backend(errs, backend, "spec.defaultBackend");
    }
    for (i, rule) in rules.iter().enumerate() {
        let rule_path = index("spec.rules", i);
        let Some(http) = get(rule, "http").filter(|h| !h.is_null()) else {
            continue;
        };
        let paths_path = child(&child(&rule_path, "http"), "paths");
        let paths = arr(http, "paths");
        if paths.is_empty() {
            errs.push(required(&paths_path, ""));
        }
        for (j, p) in paths.iter().enumerate() {
            let path = index(&paths_path, j);
            match str_of(p, "pathType") {
                "" => {
                    errs.push(required(
                        child(&path, "pathType"),
                        "pathType must be specified",
                    ));
                    continue;
                }
                "Exact" | "Prefix" => {
                    let value = str_of(p, "path");
                    if !value.starts_with('/') {
                        errs.push(invalid_str(
                            child(&path, "path"),
                            value,
                            "must be an absolute path",
                        ));
                    }
                }
                "ImplementationSpecific" => {}
                other => errs.push(not_supported(
                    child(&path, "pathType"),
                    other,
                    &["Exact", "ImplementationSpecific", "Prefix"],
                )),
            }
            ingress_backend(
                errs,
                p.get("backend").unwrap_or(&Value::Null),
                &child(&path, "backend"),
            );
        }
    }
}

pub(crate) fn validate_ingress_class(errs: &mut Vec<FieldError>, ic: &Value, old: Option<&Value>) {
    let controller = str_of(&ic["spec"], "controller");
    if controller.is_empty() {
        errs.push(required("spec.controller", ""));
    }
    if let Some(old) = old {
        immutable_str(
            errs,
            "spec.controller",
            controller,
            str_of(&old["spec"], "controller"),
        );
    }
}

pub(crate) fn validate_priority_class(errs: &mut Vec<FieldError>, pc: &Value, old: Option<&Value>) {
    let name = str_of(&pc["metadata"], "name");
    let value = int(pc, "value").unwrap_or(0);
    if name.starts_with("system-") {
        if crate::system_priority_class(name).is_none() {
            errs.push(forbidden(
                "metadata.name",
                format!("priority class names with 'system-' prefix are reserved for system use only. error: {name} is not a known system priority class"),
            ));
        }
    } else if value > MAX_USER_PRIORITY {
        errs.push(forbidden(
            "value",
            format!("maximum allowed value of a user defined priority is {MAX_USER_PRIORITY}"),
        ));
    }
    let policy = str_of(pc, "preemptionPolicy");
    one_of(
        errs,
        "preemptionPolicy",
        policy,
        &["Never", "PreemptLowerPriority"],
    );
    if let Some(old) = old {
        if int(old, "value").unwrap_or(0) != value {
            errs.push(forbidden("value", "may not be changed in an update."));
        }
        immutable_str(
            errs,
            "preemptionPolicy",
            policy,
            str_of(old, "preemptionPolicy"),
        );
    }
}

pub(crate) fn validate_storage_class(errs: &mut Vec<FieldError>, sc: &Value, old: Option<&Value>) {
    let provisioner = str_of(sc, "provisioner");
    if provisioner.is_empty() {
        errs.push(required("provisioner", ""));
    } else {
        for msg in is_qualified_name(&provisioner.to_lowercase()) {
            errs.push(invalid_str("provisioner", provisioner, msg));
        }
    }
    let reclaim = str_of(sc, "reclaimPolicy");
    one_of(errs, "reclaimPolicy", reclaim, &["Delete", "Retain"]);
    let binding = str_of(sc, "volumeBindingMode");
    one_of(
        errs,
        "volumeBindingMode",
        binding,
        &["Immediate", "WaitForFirstConsumer"],
    );
    if let Some(old) = old {
        if sc.get("parameters") != old.get("parameters") {
            errs.push(forbidden(
                "parameters",
                "updates to parameters are forbidden.",
            ));
        }
        if provisioner != str_of(old, "provisioner") {
            errs.push(forbidden(
                "provisioner",
                "updates to provisioner are forbidden.",
            ));
        }
        if reclaim != str_of(old, "reclaimPolicy") {
            errs.push(forbidden(
                "reclaimPolicy",
                "updates to reclaimPolicy are forbidden.",
            ));
        }
        immutable_str(
            errs,
            "volumeBindingMode",
            binding,
            str_of(old, "volumeBindingMode"),
        );
    }
}
