//! Validation of objects on create and update, worded as kube-apiserver words it (the rules and
//! messages of `pkg/apis/*/validation` and `k8s.io/apimachinery/pkg/util/validation`).
//!
//! Objects arrive as JSON already decoded through their `k8s-openapi` type and defaulted, so
//! shapes are right but any field may be absent. Nothing here panics on any input.
//!
//! Layout: [`names`] (string formats), [`meta`] (ObjectMeta, labels, selectors), [`pod`] (pod
//! specs and templates), [`workloads`] (apps and batch), [`service`], [`core`] (the other
//! kinds), with [`quantity`] and [`cron`] for the two small grammars Kubernetes checks.

pub(crate) mod cron;
pub(crate) mod gofmt;
pub(crate) mod json;
pub(crate) mod names;
pub(crate) mod quantity;

mod cluster;
mod core;
mod meta;
mod pod;
mod service;
mod workloads;

#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::field::{FieldError, FieldErrorKind};
use crate::registry::ResourceInfo;

use names::NameRule;

pub use pod::validate_ephemeral_containers_update;
pub(crate) use service::externally_accessible as service_externally_accessible;

/// Validates a new object of `resource` (already decoded and defaulted).
pub fn validate_create(resource: &ResourceInfo, object: &Value) -> Vec<FieldError> {
    validate(resource, object, None)
}

/// Validates an update of `old` to `new` (immutable fields, plus everything `validate_create` checks).
pub fn validate_update(resource: &ResourceInfo, new: &Value, old: &Value) -> Vec<FieldError> {
    validate(resource, new, Some(old))
}

fn validate(resource: &ResourceInfo, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    if !resource.stored || resource.kind == "Binding" {
        // Request-only kinds (reviews, bindings) are checked by their handlers.
        return Vec::new();
    }
    let mut errs = Vec::new();
    let rule = name_rule(resource);
    // StatefulSet names are not re-validated on update (old objects had looser rules).
    let check_name = old.is_none() || resource.kind != "StatefulSet";
    meta::validate_object_meta(
        &mut errs,
        object,
        resource.namespaced(),
        check_name.then_some(rule),
    );
    if let Some(old) = old {
        meta::validate_object_meta_update(&mut errs, object, old);
    }
    match (resource.group, resource.kind) {
        ("", "Pod") => pod::validate_pod(&mut errs, object, old),
        ("", "Service") => service::validate_service(&mut errs, object, old),
        ("", "Namespace") => core::validate_namespace(&mut errs, object),
        ("", "ConfigMap") => core::validate_config_map(&mut errs, object, old),
        ("", "Secret") => core::validate_secret(&mut errs, object, old),
        ("", "Endpoints") => core::validate_endpoints(&mut errs, object),
        ("", "Node") => core::validate_node(&mut errs, object, old),
        ("", "Event") => core::validate_event(&mut errs, object),
        ("", "ResourceQuota") => core::validate_resource_quota(&mut errs, object),
        ("", "LimitRange") => core::validate_limit_range(&mut errs, object),
        ("", "PersistentVolume") => cluster::validate_persistent_volume(&mut errs, object),
        ("", "PersistentVolumeClaim") => {
            cluster::validate_persistent_volume_claim(&mut errs, object, old);
        }
        ("networking.k8s.io", "Ingress") => cluster::validate_ingress(&mut errs, object),
        ("networking.k8s.io", "IngressClass") => {
            cluster::validate_ingress_class(&mut errs, object, old);
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            cluster::validate_priority_class(&mut errs, object, old);
        }
        ("storage.k8s.io", "StorageClass") => {
            cluster::validate_storage_class(&mut errs, object, old);
        }
        ("apps", "Deployment") => workloads::validate_deployment(&mut errs, object, old),
        ("apps", "ReplicaSet") => workloads::validate_replica_set(&mut errs, object, old),
        ("apps", "StatefulSet") => workloads::validate_stateful_set(&mut errs, object, old),
        ("apps", "DaemonSet") => workloads::validate_daemon_set(&mut errs, object, old),
        ("apps", "ControllerRevision") => {
            core::validate_controller_revision(&mut errs, object, old)
        }
        ("batch", "Job") => workloads::validate_job(&mut errs, object, old),
        ("batch", "CronJob") => workloads::validate_cron_job(&mut errs, object, old),
        ("coordination.k8s.io", "Lease") => core::validate_lease(&mut errs, object),
        ("discovery.k8s.io", "EndpointSlice") => core::validate_endpoint_slice(&mut errs, object),
        ("policy", "PodDisruptionBudget") => core::validate_pdb(&mut errs, object),
        ("rbac.authorization.k8s.io", kind) => core::validate_rbac(&mut errs, kind, object),
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            core::validate_csr(&mut errs, object, old);
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            crate::autoscaling::validate(&mut errs, object)
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            crate::custom::validate_definition(object, &mut errs);
        }
        _ => {
            if let Some(schema) = resource.custom.and_then(|c| c.schema.as_ref()) {
                crate::custom::validate_object(object, schema, &mut errs);
            }
        }
    }
    errs
}

/// The name rule of a kind (`ValidateNameFunc` in Kubernetes).
fn name_rule(resource: &ResourceInfo) -> NameRule {
    match (resource.group, resource.kind) {
        ("", "Namespace") => NameRule::Dns1123Label,
        ("", "Service") => NameRule::Dns1035Label,
        ("apps", "StatefulSet") => NameRule::Dns1123Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        ("certificates.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Dns1123Subdomain,
    }
}

// Error constructors. Bad values are pre-rendered as Go renders them (`"x"`, `80`, `map[...]`).

pub(crate) fn required(path: impl Into<String>, detail: &str) -> FieldError {
    FieldError::required(path, detail)
}

pub(crate) fn forbidden(path: impl Into<String>, detail: impl Into<String>) -> FieldError {
    FieldError::with_kind(FieldErrorKind::Forbidden, path, detail)
}

fn with_value(
    kind: FieldErrorKind,
    path: impl Into<String>,
    rendered: String,
    detail: impl Into<String>,
) -> FieldError {
    FieldError {
        kind,
        field: path.into(),
        value: Some(rendered),
        detail: detail.into(),
    }
}

/// An invalid string value (`Invalid value: "x": detail`).
pub(crate) fn invalid_str(
    path: impl Into<String>,
    value: &str,
    detail: impl Into<String>,
) -> FieldError {
    with_value(FieldErrorKind::Invalid, path, gofmt::quote(value), detail)
}

/// An invalid integer or boolean value, printed bare.
pub(crate) fn invalid_num(
    path: impl Into<String>,
    value: impl std::fmt::Display,
    detail: impl Into<String>,
) -> FieldError {
    with_value(FieldErrorKind::Invalid, path, value.to_string(), detail)
}

/// An invalid value already rendered (maps, structs).
pub(crate) fn invalid_raw(
    path: impl Into<String>,
    rendered: String,
    detail: impl Into<String>,
) -> FieldError {
    with_value(FieldErrorKind::Invalid, path, rendered, detail)
}

pub(crate) fn duplicate(path: impl Into<String>, rendered: String) -> FieldError {
    with_value(FieldErrorKind::Duplicate, path, rendered, "")
}

pub(crate) fn not_found(path: impl Into<String>, rendered: String) -> FieldError {
    with_value(FieldErrorKind::NotFound, path, rendered, "")
}

/// `field.NotSupported` of a string value; `supported` is printed in the given order.
pub(crate) fn not_supported(
    path: impl Into<String>,
    value: &str,
    supported: &[&str],
) -> FieldError {
    let quoted: Vec<String> = supported.iter().map(|s| gofmt::quote(s)).collect();
    let detail = if quoted.is_empty() {
        String::new()
    } else {
        format!("supported values: {}", quoted.join(", "))
    };
    with_value(
        FieldErrorKind::NotSupported,
        path,
        gofmt::quote(value),
        detail,
    )
}

/// `field.NotSupported` of a value already rendered (structs, booleans).
pub(crate) fn with_value_not_supported(
    path: impl Into<String>,
    rendered: String,
    supported: &[&str],
) -> FieldError {
    let mut e = not_supported(path, "", supported);
    e.value = Some(rendered);
    e
}

pub(crate) fn too_long(path: impl Into<String>, max: usize) -> FieldError {
    FieldError::with_kind(
        FieldErrorKind::TooLong,
        path,
        format!("may not be more than {max} bytes"),
    )
}

/// `ValidateNonnegativeField`.
pub(crate) fn nonnegative(errs: &mut Vec<FieldError>, path: &str, value: Option<i64>) {
    if let Some(v) = value.filter(|v| *v < 0) {
        errs.push(invalid_num(path, v, "must be greater than or equal to 0"));
    }
}

/// `ValidateImmutableField` for values that render as strings.
pub(crate) fn immutable_str(errs: &mut Vec<FieldError>, path: &str, new: &str, old: &str) {
    if new != old {
        errs.push(invalid_str(path, new, "field is immutable"));
    }
}
