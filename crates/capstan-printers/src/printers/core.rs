//! Configuration and storage objects: config maps, secrets, service accounts, resource quotas,
//! pod disruption budgets, pod templates, persistent volumes (and claims) and storage classes.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, PersistentVolumeSpec,
    PersistentVolumeStatus, Secret, ServiceAccount,
};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::Value;

use super::{Row, age, cells, containers_and_images};
use crate::columns::{self, Column, doc};
use crate::json::{arr_at, get, int_at, int_or_string, map_len, name, opt_str, quantity, str_at};
use crate::labels::format_labels;
use crate::time::Time;

pub(super) fn config_map_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new("Data", "string", doc::<ConfigMap>("data")),
        columns::age(),
    ]
}

pub(super) fn config_map_row(object: &Value, now: Time) -> Row {
    let data = map_len(object, &["data"]) + map_len(object, &["binaryData"]);
    cells![name(object), data as i64, age(object, now)]
}

pub(super) fn secret_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new("Type", "string", doc::<Secret>("type")),
        Column::new("Data", "string", doc::<Secret>("data")),
        columns::age(),
    ]
}

pub(super) fn secret_row(object: &Value, now: Time) -> Row {
    // `stringData` is merged into `data` on write; count the keys of both.
    let keys: BTreeSet<&String> = ["data", "stringData"]
        .iter()
        .filter_map(|field| get(object, &[field]).and_then(Value::as_object))
        .flat_map(serde_json::Map::keys)
        .collect();
    cells![
        name(object),
        opt_str(object, &["type"])
            .filter(|t| !t.is_empty())
            .unwrap_or("Opaque"),
        keys.len() as i64,
        age(object, now),
    ]
}

pub(super) fn service_account_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new("Secrets", "string", doc::<ServiceAccount>("secrets")),
        columns::age(),
    ]
}

pub(super) fn service_account_row(object: &Value, now: Time) -> Row {
    cells![
        name(object),
        arr_at(object, &["secrets"]).len() as i64,
        age(object, now)
    ]
}

pub(super) fn resource_quota_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new(
            "Request",
            "string",
            "Request represents a minimum amount of cpu/memory that a container may consume.",
        ),
        Column::new(
            "Limit",
            "string",
            "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
        ),
        columns::age(),
    ]
}

/// `pods: 1/10, requests.cpu: 500m/2` in the Request column; `limits.*` in the Limit column.
pub(super) fn resource_quota_row(object: &Value, now: Time) -> Row {
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    let mut hard: Vec<(&String, &Value)> = get(object, &["status", "hard"])
        .and_then(Value::as_object)
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    hard.sort_by(|a, b| a.0.cmp(b.0));
    for (resource, hard_quantity) in hard {
        let used = quantity(get(object, &["status", "used", resource]));
        let entry = format!("{resource}: {used}/{}", quantity(Some(hard_quantity)));
        match resource.split_once('.') {
            Some(("limits", _)) => limits.push(entry),
            _ => requests.push(entry),
        }
    }
    cells![
        name(object),
        requests.join(", "),
        limits.join(", "),
        age(object, now)
    ]
}

pub(super) fn pod_disruption_budget_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new(
            "Min Available",
            "string",
            "The minimum number of pods that must be available.",
        ),
        Column::new(
            "Max Unavailable",
            "string",
            "The maximum number of pods that may be unavailable.",
        ),
        Column::new(
            "Allowed Disruptions",
            "integer",
            "Calculated number of pods that may be disrupted at this time.",
        ),
        columns::age(),
    ]
}

pub(super) fn pod_disruption_budget_row(object: &Value, now: Time) -> Row {
    cells![
        name(object),
        int_or_string(object, &["spec", "minAvailable"]).unwrap_or_else(|| "N/A".to_owned()),
        int_or_string(object, &["spec", "maxUnavailable"]).unwrap_or_else(|| "N/A".to_owned()),
        int_at(object, &["status", "disruptionsAllowed"]),
        age(object, now),
    ]
}

pub(super) fn pod_template_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new(
            "Containers",
            "string",
            "Names of each container in the template.",
        ),
        Column::new(
            "Images",
            "string",
            "Images referenced by each container in the template.",
        ),
        Column::new("Pod Labels", "string", "The labels for the pod template."),
    ]
}

pub(super) fn pod_template_row(object: &Value, _now: Time) -> Row {
    let (names, images) = containers_and_images(get(object, &["template", "spec"]));
    cells![
        name(object),
        names,
        images,
        format_labels(get(object, &["template", "metadata", "labels"]))
    ]
}

/// `RWO,ROX,RWX,RWOP`, in that order, each once.
fn access_modes(modes: &[Value]) -> String {
    let has = |mode: &str| modes.iter().any(|m| m.as_str() == Some(mode));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The storage class of a volume or claim: the beta annotation wins over `spec.storageClassName`.
fn storage_class(object: &Value) -> &str {
    opt_str(
        object,
        &[
            "metadata",
            "annotations",
            "volume.beta.kubernetes.io/storage-class",
        ],
    )
    .unwrap_or_else(|| str_at(object, &["spec", "storageClassName"]))
}

pub(super) fn persistent_volume_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new(
            "Capacity",
            "string",
            doc::<PersistentVolumeSpec>("capacity"),
        ),
        Column::new(
            "Access Modes",
            "string",
            doc::<PersistentVolumeSpec>("accessModes"),
        ),
        Column::new(
            "Reclaim Policy",
            "string",
            doc::<PersistentVolumeSpec>("persistentVolumeReclaimPolicy"),
        ),
        Column::new("Status", "string", doc::<PersistentVolumeStatus>("phase")),
        Column::new("Claim", "string", doc::<PersistentVolumeSpec>("claimRef")),
        Column::new("StorageClass", "string", "StorageClass of the pv"),
        Column::new(
            "VolumeAttributesClass",
            "string",
            "VolumeAttributesClass of the pv",
        ),
        Column::new("Reason", "string", doc::<PersistentVolumeStatus>("reason")),
        columns::age(),
        Column::new(
            "VolumeMode",
            "string",
            doc::<PersistentVolumeSpec>("volumeMode"),
        )
        .wide(),
    ]
}

fn phase_or_terminating(object: &Value) -> &str {
    if get(object, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating"
    } else {
        opt_str(object, &["status", "phase"])
            .filter(|p| !p.is_empty())
            .unwrap_or("Pending")
    }
}

pub(super) fn persistent_volume_row(object: &Value, now: Time) -> Row {
    let claim = match get(object, &["spec", "claimRef"]) {
        Some(claim) => format!(
            "{}/{}",
            str_at(claim, &["namespace"]),
            str_at(claim, &["name"])
        ),
        None => String::new(),
    };
    cells![
        name(object),
        quantity(get(object, &["spec", "capacity", "storage"])),
        access_modes(arr_at(object, &["spec", "accessModes"])),
        opt_str(object, &["spec", "persistentVolumeReclaimPolicy"]).unwrap_or("Retain"),
        phase_or_terminating(object),
        claim,
        storage_class(object),
        opt_str(object, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>"),
        str_at(object, &["status", "reason"]),
        age(object, now),
        opt_str(object, &["spec", "volumeMode"]).unwrap_or("Filesystem"),
    ]
}

pub(super) fn persistent_volume_claim_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new(
            "Status",
            "string",
            doc::<PersistentVolumeClaimStatus>("phase"),
        ),
        Column::new(
            "Volume",
            "string",
            doc::<PersistentVolumeClaimSpec>("volumeName"),
        ),
        Column::new(
            "Capacity",
            "string",
            doc::<PersistentVolumeClaimStatus>("capacity"),
        ),
        Column::new(
            "Access Modes",
            "string",
            doc::<PersistentVolumeClaimStatus>("accessModes"),
        ),
        Column::new("StorageClass", "string", "StorageClass of the pvc"),
        Column::new(
            "VolumeAttributesClass",
            "string",
            "VolumeAttributesClass of the pvc",
        ),
        columns::age(),
        Column::new(
            "VolumeMode",
            "string",
            doc::<PersistentVolumeClaimSpec>("volumeMode"),
        )
        .wide(),
    ]
}

pub(super) fn persistent_volume_claim_row(object: &Value, now: Time) -> Row {
    let volume = str_at(object, &["spec", "volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(get(object, &["status", "capacity", "storage"])),
            access_modes(arr_at(object, &["status", "accessModes"])),
        )
    };
    cells![
        name(object),
        phase_or_terminating(object),
        volume,
        capacity,
        modes,
        storage_class(object),
        opt_str(object, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>"),
        age(object, now),
        opt_str(object, &["spec", "volumeMode"]).unwrap_or("Filesystem"),
    ]
}

pub(super) fn storage_class_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new("Provisioner", "string", doc::<StorageClass>("provisioner")),
        Column::new(
            "ReclaimPolicy",
            "string",
            doc::<StorageClass>("reclaimPolicy"),
        ),
        Column::new(
            "VolumeBindingMode",
            "string",
            doc::<StorageClass>("volumeBindingMode"),
        ),
        Column::new(
            "AllowVolumeExpansion",
            "string",
            doc::<StorageClass>("allowVolumeExpansion"),
        ),
        columns::age(),
    ]
}

pub(super) fn storage_class_row(object: &Value, now: Time) -> Row {
    let is_default = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|a| str_at(object, &["metadata", "annotations", a]) == "true");
    let mut display = name(object).to_owned();
    if is_default {
        display.push_str(" (default)");
    }
    cells![
        display,
        str_at(object, &["provisioner"]),
        opt_str(object, &["reclaimPolicy"]).unwrap_or("Delete"),
        opt_str(object, &["volumeBindingMode"]).unwrap_or("Immediate"),
        get(object, &["allowVolumeExpansion"])
            .and_then(Value::as_bool)
            .unwrap_or(false),
        age(object, now),
    ]
}
