//! Defaults of the storage, networking and scheduling kinds (`core/v1` volumes and claims,
//! `networking.k8s.io`, `storage.k8s.io`, `scheduling.k8s.io`), as their `SetDefaults_*` set them.

use serde_json::{Value, json};

use super::{each, with};
use crate::validation::json::{arr, default_field, default_str, ensure_obj};

/// A claim or volume nobody has bound yet reads `Pending` (kube defaults the phase on every
/// decode, so even a claim no controller has seen shows it).
fn default_pending(object: &mut Value) {
    if ensure_obj(object, "status").is_some()
        && let Some(status) = object.get_mut("status")
    {
        default_str(status, "phase", "Pending");
    }
}

pub(crate) fn default_persistent_volume(pv: &mut Value) {
    with(pv, "spec", |spec| {
        default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
        default_str(spec, "volumeMode", "Filesystem");
    });
    default_pending(pv);
}

pub(crate) fn default_persistent_volume_claim(pvc: &mut Value) {
    with(pvc, "spec", |spec| {
        default_str(spec, "volumeMode", "Filesystem")
    });
    default_pending(pvc);
}

pub(crate) fn default_network_policy(np: &mut Value) {
    with(np, "spec", |spec| {
        if arr(spec, "policyTypes").is_empty() {
            let mut types = vec![json!("Ingress")];
            if !arr(spec, "egress").is_empty() {
                types.push(json!("Egress"));
            }
            if let Some(map) = spec.as_object_mut() {
                map.insert("policyTypes".into(), Value::Array(types));
            }
        }
        for direction in ["ingress", "egress"] {
            each(spec, direction, |rule| {
                each(rule, "ports", |port| default_str(port, "protocol", "TCP"));
            });
        }
    });
}

pub(crate) fn default_storage_class(sc: &mut Value) {
    default_str(sc, "reclaimPolicy", "Delete");
    default_str(sc, "volumeBindingMode", "Immediate");
}

pub(crate) fn default_priority_class(pc: &mut Value) {
    default_field(pc, "preemptionPolicy", json!("PreemptLowerPriority"));
}
