//! JSON field names for the protobuf fields. `k8s-pb` names fields in snake_case (`pod_ips`,
//! `r#type`); Kubernetes JSON uses the Go `json` tags (`podIPs`, `type`). The real names come from
//! the `k8s-openapi` schemas: each message's definition (`io.k8s.api.core.v1.PodStatus`) lists its
//! properties, matched to the proto fields by lowercase letters and digits alone. A message field
//! with no property of its own whose fields are (nearly) all properties of the parent is a Go embedded
//! struct (`Probe.handler`, `Volume.volumeSource`) and is inlined, as Go's JSON encoder does.
//! Messages without a definition fall back to lowerCamelCase. Built once, on first use.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use k8s_openapi::api::{
    admissionregistration::v1 as admissionregistration, apps::v1 as apps,
    authentication::v1 as authentication, authorization::v1 as authorization,
    autoscaling::v1 as autoscaling_v1, autoscaling::v2 as autoscaling_v2, batch::v1 as batch,
    certificates::v1 as certificates, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, events::v1 as events, flowcontrol::v1 as flowcontrol,
    networking::v1 as networking, node::v1 as node, policy::v1 as policy, rbac::v1 as rbac,
    scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
use schemars::SchemaGenerator;
use serde_json::Value;

use crate::table::{Kind, MESSAGES};

/// How one proto field appears in JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FieldName {
    /// A property of this name.
    Json(String),
    /// The field's own fields are merged into the parent object.
    Inline,
}

/// Field names per message, in the order of [`crate::table::Message::fields`].
pub(crate) fn names(message: usize) -> &'static [FieldName] {
    static NAMES: OnceLock<Vec<Vec<FieldName>>> = OnceLock::new();
    NAMES
        .get_or_init(build)
        .get(message)
        .map_or(&[], Vec::as_slice)
}

macro_rules! roots {
    ($generator:expr; $($ty:ty),* $(,)?) => {
        $( $generator.subschema_for::<$ty>(); )*
    };
}

/// Every definition reachable from the kinds clients send, keyed by lowercase name.
fn definitions() -> HashMap<String, BTreeSet<String>> {
    let mut g = SchemaGenerator::default();
    roots!(g;
        core::Binding, core::ConfigMap, core::Endpoints, core::Event, core::LimitRange,
        core::Namespace, core::Node, core::PersistentVolume, core::PersistentVolumeClaim, core::Pod,
        core::PodTemplate, core::ReplicationController, core::ResourceQuota, core::Secret,
        core::Service, core::ServiceAccount, core::EphemeralContainer,
        apps::ControllerRevision, apps::DaemonSet, apps::Deployment, apps::ReplicaSet,
        apps::StatefulSet,
        autoscaling_v1::HorizontalPodAutoscaler, autoscaling_v1::Scale,
        autoscaling_v2::HorizontalPodAutoscaler,
        batch::CronJob, batch::Job,
        policy::Eviction, policy::PodDisruptionBudget,
        rbac::ClusterRole, rbac::ClusterRoleBinding, rbac::Role, rbac::RoleBinding,
        networking::Ingress, networking::IngressClass, networking::NetworkPolicy,
        networking::IPAddress, networking::ServiceCIDR,
        storage::CSIDriver, storage::CSINode, storage::CSIStorageCapacity, storage::StorageClass,
        storage::VolumeAttachment,
        certificates::CertificateSigningRequest,
        coordination::Lease,
        discovery::EndpointSlice,
        events::Event,
        authentication::SelfSubjectReview, authentication::TokenRequest,
        authentication::TokenReview,
        authorization::LocalSubjectAccessReview, authorization::SelfSubjectAccessReview,
        authorization::SelfSubjectRulesReview, authorization::SubjectAccessReview,
        scheduling::PriorityClass,
        node::RuntimeClass,
        admissionregistration::MutatingWebhookConfiguration,
        admissionregistration::ValidatingWebhookConfiguration,
        admissionregistration::ValidatingAdmissionPolicy,
        admissionregistration::ValidatingAdmissionPolicyBinding,
        flowcontrol::FlowSchema, flowcontrol::PriorityLevelConfiguration,
        apiextensions::CustomResourceDefinition,
        apiregistration::APIService,
        meta::DeleteOptions, meta::Status, meta::APIResourceList,
        meta::APIGroupList,
    );
    g.definitions()
        .iter()
        .map(|(name, schema)| {
            let properties = schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            (name.to_ascii_lowercase(), properties)
        })
        .collect()
}

/// `io.k8s.api.apps.v1.deployment` for (`api/apps/v1`, `Deployment`).
fn definition_name(module: &str, name: &str) -> String {
    format!(
        "io.k8s.{}.{name}",
        module.replace('/', ".").replace('_', "-")
    )
    .to_ascii_lowercase()
}

/// Letters and digits, lowercase: `podIPs` and `pod_ips` both become `podips`.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// `pod_ips` -> `podIps`: the fallback when no schema knows the message.
fn lower_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.trim_end_matches('_').chars() {
        if c == '_' {
            upper = !out.is_empty();
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn build() -> Vec<Vec<FieldName>> {
    let defs = definitions();
    MESSAGES
        .iter()
        .map(|message| {
            let properties = defs.get(&definition_name(message.module, message.name));
            message
                .fields
                .iter()
                .map(|field| {
                    let Some(properties) = properties else {
                        return FieldName::Json(lower_camel(field.name));
                    };
                    let wanted = normalize(field.name);
                    if let Some(p) = properties.iter().find(|p| normalize(p) == wanted) {
                        return FieldName::Json(p.clone());
                    }
                    if let Kind::Message(child) = field.kind
                        && !field.repeated
                        && is_embedded(child, properties)
                    {
                        return FieldName::Inline;
                    }
                    FieldName::Json(lower_camel(field.name))
                })
                .collect()
        })
        .collect()
}

/// Whether the fields of message `child` are properties of the parent. `k8s-pb` may be a release
/// ahead of the schemas (`EphemeralContainerCommon.restartPolicyRules`), so nine in ten will do.
fn is_embedded(child: usize, parent: &BTreeSet<String>) -> bool {
    let Some(child) = MESSAGES.get(child) else {
        return false;
    };
    let parent: BTreeSet<String> = parent.iter().map(|p| normalize(p)).collect();
    let known = child
        .fields
        .iter()
        .filter(|f| parent.contains(&normalize(f.name)))
        .count();
    !child.fields.is_empty() && known * 10 >= child.fields.len() * 9
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::find;

    fn json_names(module: &str, message: &str) -> Vec<(&'static str, FieldName)> {
        let index = find(module, message).expect("message");
        MESSAGES[index]
            .fields
            .iter()
            .map(|f| f.name)
            .zip(names(index).iter().cloned())
            .collect()
    }

    fn name_of(module: &str, message: &str, field: &str) -> FieldName {
        json_names(module, message)
            .into_iter()
            .find(|(f, _)| *f == field)
            .map(|(_, n)| n)
            .expect("field")
    }

    #[test]
    fn schema_names_fix_acronyms_and_keywords() {
        for (module, message, field, json) in [
            ("api/core/v1", "PodStatus", "pod_ips", "podIPs"),
            ("api/core/v1", "PodStatus", "host_ip", "hostIP"),
            ("api/core/v1", "ServiceSpec", "cluster_ips", "clusterIPs"),
            ("api/core/v1", "ServiceSpec", "external_ips", "externalIPs"),
            (
                "api/core/v1",
                "FcVolumeSource",
                "target_ww_ns",
                "targetWWNs",
            ),
            ("api/core/v1", "Secret", "type", "type"),
            ("api/core/v1", "PodIp", "ip", "ip"),
            (
                "apimachinery/pkg/apis/meta/v1",
                "ObjectMeta",
                "creation_timestamp",
                "creationTimestamp",
            ),
            (
                "apimachinery/pkg/apis/meta/v1",
                "OwnerReference",
                "api_version",
                "apiVersion",
            ),
            (
                "apiextensions_apiserver/pkg/apis/apiextensions/v1",
                "JsonSchemaProps",
                "ref",
                "$ref",
            ),
            (
                "apiextensions_apiserver/pkg/apis/apiextensions/v1",
                "JsonSchemaProps",
                "x_kubernetes_preserve_unknown_fields",
                "x-kubernetes-preserve-unknown-fields",
            ),
        ] {
            assert_eq!(
                name_of(module, message, field),
                FieldName::Json(json.to_owned()),
                "{message}.{field}"
            );
        }
    }

    #[test]
    fn go_embedded_structs_are_inlined() {
        assert_eq!(
            name_of("api/core/v1", "Probe", "handler"),
            FieldName::Inline
        );
        assert_eq!(
            name_of("api/core/v1", "Volume", "volume_source"),
            FieldName::Inline
        );
        assert_eq!(
            name_of(
                "api/core/v1",
                "PersistentVolumeSpec",
                "persistent_volume_source"
            ),
            FieldName::Inline
        );
        assert_eq!(
            name_of(
                "api/core/v1",
                "EphemeralContainer",
                "ephemeral_container_common"
            ),
            FieldName::Inline
        );
        // An ordinary message field is not.
        assert_eq!(
            name_of("api/core/v1", "PodSpec", "security_context"),
            FieldName::Json("securityContext".into())
        );
    }

    #[test]
    fn messages_without_a_schema_fall_back_to_lower_camel_case() {
        assert_eq!(lower_camel("pod_ips"), "podIps");
        assert_eq!(lower_camel("type_"), "type");
        assert_eq!(lower_camel("name"), "name");
        // apps/v1beta1 has no k8s-openapi schema.
        assert_eq!(
            name_of(
                "api/apps/v1beta1",
                "DeploymentSpec",
                "revision_history_limit"
            ),
            FieldName::Json("revisionHistoryLimit".into())
        );
    }
}
