//! The table of resources Capstan serves, named and scoped exactly as Kubernetes names them, so that
//! discovery, `kubectl api-resources`, short names (`po`, `deploy`) and `kubectl get all` match.

use k8s_openapi::api::{
    apps::v1 as apps, authentication::v1 as authn, authorization::v1 as authz,
    autoscaling::v1 as autoscaling1, autoscaling::v2 as autoscaling2, batch::v1 as batch,
    certificates::v1 as certificates, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, networking::v1 as networking, node::v1 as node,
    policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use serde_json::Value;

/// Whether objects live in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// A subresource such as `pods/status` or `deployments/scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    /// Group, version and kind of the subresource's body (`autoscaling`, `v1`, `Scale`).
    /// `None` means the parent's own kind (as for `status`).
    pub gvk: Option<(&'static str, &'static str, &'static str)>,
    pub verbs: &'static [&'static str],
}

/// One resource type.
#[derive(Clone, Copy)]
pub struct ResourceInfo {
    /// API group, `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub scope: Scope,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// False for request-only kinds that are never stored (`selfsubjectreviews`).
    pub stored: bool,
    /// Decodes a JSON object into the `k8s-openapi` type and encodes it again.
    pub(crate) roundtrip: fn(&Value) -> Result<Value, serde_json::Error>,
    /// The JSON schema of the kind, from `k8s-openapi`'s `schemars` implementation.
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    /// The store path segment of the objects: the plural for built-in kinds, `<group>/<plural>`
    /// for custom ones (two groups may define the same plural).
    pub storage: &'static str,
    /// What the CustomResourceDefinition says of a custom kind; `None` for built-in kinds.
    pub custom: Option<&'static crate::custom::CustomResource>,
}

impl std::fmt::Debug for ResourceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.gvr())
    }
}

impl ResourceInfo {
    /// `v1` or `apps/v1`, as in `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods`, `deployments.apps`: how kubectl names the resource.
    pub fn gvr(&self) -> String {
        if self.group.is_empty() {
            format!("{}/{}", self.version, self.plural)
        } else {
            format!("{}/{}/{}", self.group, self.version, self.plural)
        }
    }

    /// `pods`, `deployments.apps`: the group-qualified resource name used in messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// The kind of a list of this resource.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Store key prefix of every object of this resource: `/registry/pods/`.
    pub fn key_prefix(&self) -> String {
        format!("/registry/{}/", self.storage)
    }

    /// Store key prefix of the objects in one namespace: `/registry/pods/default/`.
    pub fn namespace_prefix(&self, namespace: &str) -> String {
        format!("/registry/{}/{namespace}/", self.storage)
    }

    /// Store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(namespace) if self.namespaced() => {
                format!("/registry/{}/{namespace}/{name}", self.storage)
            }
            _ => format!("/registry/{}/{name}", self.storage),
        }
    }

    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }
}

/// Decodes `value` as `T` and encodes it again: the typed shape of the object, with unknown fields
/// dropped.
fn roundtrip<T>(value: &Value) -> Result<Value, serde_json::Error>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    // Deserialising from a borrowed value: no copy of the input tree.
    let typed = T::deserialize(value)?;
    serde_json::to_value(typed)
}

fn schema<T: schemars::JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const CREATE_ONLY: &[&str] = &["create"];
const ALL: &[&str] = &["all"];

const STATUS: Subresource = Subresource {
    name: "status",
    gvk: None,
    verbs: &["get", "patch", "update"],
};
const SCALE: Subresource = Subresource {
    name: "scale",
    gvk: Some(("autoscaling", "v1", "Scale")),
    verbs: &["get", "patch", "update"],
};

macro_rules! resource {
    ($ty:ty, $group:literal, $version:literal, $kind:literal, $plural:literal, $singular:literal, $scope:ident,
     short: [$($short:literal),*], categories: $categories:expr, verbs: $verbs:expr,
     subresources: [$($sub:expr),*] $(, stored: $stored:literal)?) => {
        ResourceInfo {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            scope: Scope::$scope,
            short_names: &[$($short),*],
            categories: $categories,
            verbs: $verbs,
            subresources: &[$($sub),*],
            stored: resource!(@stored $($stored)?),
            roundtrip: roundtrip::<$ty>,
            schema: schema::<$ty>,
            storage: $plural,
            custom: None,
        }
    };
    (@stored) => { true };
    (@stored $stored:literal) => { $stored };
}

static RESOURCES: &[ResourceInfo] = &[
    // core/v1
    resource!(core::Namespace, "", "v1", "Namespace", "namespaces", "namespace", Cluster,
        short: ["ns"], categories: &[], verbs: &["create", "delete", "get", "list", "patch", "update", "watch"],
        subresources: [STATUS, Subresource { name: "finalize", gvk: None, verbs: &["update"] }]),
    resource!(core::Pod, "", "v1", "Pod", "pods", "pod", Namespaced,
    short: ["po"], categories: ALL, verbs: CRUD,
    subresources: [
        STATUS,
        Subresource { name: "binding", gvk: Some(("", "v1", "Binding")), verbs: CREATE_ONLY },
        Subresource { name: "eviction", gvk: Some(("policy", "v1", "Eviction")), verbs: CREATE_ONLY },
        Subresource { name: "log", gvk: None, verbs: &["get"] },
        Subresource { name: "exec", gvk: Some(("", "v1", "PodExecOptions")), verbs: &["create", "get"] },
        Subresource { name: "attach", gvk: Some(("", "v1", "PodAttachOptions")), verbs: &["create", "get"] },
        Subresource { name: "ephemeralcontainers", gvk: None, verbs: &["get", "patch", "update"] },
        Subresource { name: "portforward", gvk: Some(("", "v1", "PodPortForwardOptions")), verbs: &["create", "get"] }
    ]),
    resource!(core::Binding, "", "v1", "Binding", "bindings", "binding", Namespaced,
        short: [], categories: &[], verbs: CREATE_ONLY, subresources: [], stored: false),
    resource!(core::Service, "", "v1", "Service", "services", "service", Namespaced,
        short: ["svc"], categories: ALL, verbs: &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        subresources: [STATUS]),
    resource!(core::Endpoints, "", "v1", "Endpoints", "endpoints", "endpoints", Namespaced,
        short: ["ep"], categories: &[], verbs: CRUD, subresources: []),
    resource!(core::ConfigMap, "", "v1", "ConfigMap", "configmaps", "configmap", Namespaced,
        short: ["cm"], categories: &[], verbs: CRUD, subresources: []),
    resource!(core::Secret, "", "v1", "Secret", "secrets", "secret", Namespaced,
        short: [], categories: &[], verbs: CRUD, subresources: []),
    resource!(core::Node, "", "v1", "Node", "nodes", "node", Cluster,
        short: ["no"], categories: &[], verbs: CRUD, subresources: [STATUS]),
    resource!(core::Event, "", "v1", "Event", "events", "event", Namespaced,
        short: ["ev"], categories: &[], verbs: CRUD, subresources: []),
    resource!(core::ServiceAccount, "", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", Namespaced,
        short: ["sa"], categories: &[], verbs: CRUD,
        subresources: [Subresource { name: "token", gvk: Some(("authentication.k8s.io", "v1", "TokenRequest")), verbs: CREATE_ONLY }]),
    resource!(core::ResourceQuota, "", "v1", "ResourceQuota", "resourcequotas", "resourcequota", Namespaced,
        short: ["quota"], categories: &[], verbs: CRUD, subresources: [STATUS]),
    resource!(core::LimitRange, "", "v1", "LimitRange", "limitranges", "limitrange", Namespaced,
        short: ["limits"], categories: &[], verbs: CRUD, subresources: []),
    resource!(core::PersistentVolume, "", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", Cluster,
        short: ["pv"], categories: &[], verbs: CRUD, subresources: [STATUS]),
    resource!(core::PersistentVolumeClaim, "", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", Namespaced,
        short: ["pvc"], categories: &[], verbs: CRUD, subresources: [STATUS]),
    resource!(core::PodTemplate, "", "v1", "PodTemplate", "podtemplates", "podtemplate", Namespaced,
        short: [], categories: &[], verbs: CRUD, subresources: []),
    // apps/v1
    resource!(apps::Deployment, "apps", "v1", "Deployment", "deployments", "deployment", Namespaced,
        short: ["deploy"], categories: ALL, verbs: CRUD, subresources: [STATUS, SCALE]),
    resource!(apps::ReplicaSet, "apps", "v1", "ReplicaSet", "replicasets", "replicaset", Namespaced,
        short: ["rs"], categories: ALL, verbs: CRUD, subresources: [STATUS, SCALE]),
    resource!(apps::StatefulSet, "apps", "v1", "StatefulSet", "statefulsets", "statefulset", Namespaced,
        short: ["sts"], categories: ALL, verbs: CRUD, subresources: [STATUS, SCALE]),
    resource!(apps::DaemonSet, "apps", "v1", "DaemonSet", "daemonsets", "daemonset", Namespaced,
        short: ["ds"], categories: ALL, verbs: CRUD, subresources: [STATUS]),
    resource!(apps::ControllerRevision, "apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", Namespaced,
        short: [], categories: &[], verbs: CRUD, subresources: []),
    // autoscaling/v2, and v1 for kubectl autoscale: both serve the objects stored as v2 (the first
    // entry of a plural is its storage version); v1 requests are converted (`crate::autoscaling`).
    resource!(autoscaling2::HorizontalPodAutoscaler, "autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", Namespaced,
        short: ["hpa"], categories: ALL, verbs: CRUD, subresources: [STATUS]),
    resource!(autoscaling1::HorizontalPodAutoscaler, "autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", Namespaced,
        short: ["hpa"], categories: ALL, verbs: CRUD, subresources: [STATUS]),
    // batch/v1
    resource!(batch::Job, "batch", "v1", "Job", "jobs", "job", Namespaced,
        short: [], categories: ALL, verbs: CRUD, subresources: [STATUS]),
    resource!(batch::CronJob, "batch", "v1", "CronJob", "cronjobs", "cronjob", Namespaced,
        short: ["cj"], categories: ALL, verbs: CRUD, subresources: [STATUS]),
    // coordination.k8s.io/v1
    resource!(coordination::Lease, "coordination.k8s.io", "v1", "Lease", "leases", "lease", Namespaced,
        short: [], categories: &[], verbs: CRUD, subresources: []),
    // discovery.k8s.io/v1
    resource!(discovery::EndpointSlice, "discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", Namespaced,
        short: [], categories: &[], verbs: CRUD, subresources: []),
    // policy/v1
    resource!(policy::PodDisruptionBudget, "policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", Namespaced,
        short: ["pdb"], categories: &[], verbs: CRUD, subresources: [STATUS]),
    // networking.k8s.io/v1: stored and served; routing traffic by them is an ingress controller's
    // or a network plugin's job, as in Kubernetes.
    resource!(networking::Ingress, "networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", Namespaced,
        short: ["ing"], categories: &[], verbs: CRUD, subresources: [STATUS]),
    resource!(networking::IngressClass, "networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", Cluster,
        short: [], categories: &[], verbs: CRUD, subresources: []),
    resource!(networking::NetworkPolicy, "networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", Namespaced,
        short: ["netpol"], categories: &[], verbs: CRUD, subresources: []),
    // scheduling.k8s.io/v1: pods name a class; admission turns it into their priority.
    resource!(scheduling::PriorityClass, "scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", Cluster,
        short: ["pc"], categories: &[], verbs: CRUD, subresources: []),
    // storage.k8s.io/v1 and node.k8s.io/v1: stored for manifests and provisioners that read them.
    resource!(storage::StorageClass, "storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", Cluster,
        short: ["sc"], categories: &[], verbs: CRUD, subresources: []),
    resource!(node::RuntimeClass, "node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", "runtimeclass", Cluster,
        short: [], categories: &[], verbs: CRUD, subresources: []),
    // rbac.authorization.k8s.io/v1
    resource!(rbac::Role, "rbac.authorization.k8s.io", "v1", "Role", "roles", "role", Namespaced,
        short: [], categories: &[], verbs: CRUD, subresources: []),
    resource!(rbac::RoleBinding, "rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", Namespaced,
        short: [], categories: &[], verbs: CRUD, subresources: []),
    resource!(rbac::ClusterRole, "rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", Cluster,
        short: [], categories: &[], verbs: CRUD, subresources: []),
    resource!(rbac::ClusterRoleBinding, "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", Cluster,
        short: [], categories: &[], verbs: CRUD, subresources: []),
    // certificates.k8s.io/v1
    resource!(certificates::CertificateSigningRequest, "certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", "certificatesigningrequest", Cluster,
        short: ["csr"], categories: &[], verbs: CRUD,
        subresources: [STATUS, Subresource { name: "approval", gvk: None, verbs: &["get", "patch", "update"] }]),
    // apiextensions.k8s.io/v1: stored so that clients can list and create definitions (kubectl looks
    // here for unknown kinds); custom resources themselves are not served yet.
    resource!(apiextensions::CustomResourceDefinition, "apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", "customresourcedefinition", Cluster,
        short: ["crd", "crds"], categories: &[], verbs: CRUD, subresources: [STATUS]),
    // authentication.k8s.io/v1 and authorization.k8s.io/v1: request-only kinds
    resource!(authn::SelfSubjectReview, "authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview", Cluster,
        short: [], categories: &[], verbs: CREATE_ONLY, subresources: [], stored: false),
    resource!(authn::TokenReview, "authentication.k8s.io", "v1", "TokenReview", "tokenreviews", "tokenreview", Cluster,
        short: [], categories: &[], verbs: CREATE_ONLY, subresources: [], stored: false),
    resource!(authz::SelfSubjectAccessReview, "authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", "selfsubjectaccessreview", Cluster,
        short: [], categories: &[], verbs: CREATE_ONLY, subresources: [], stored: false),
    resource!(authz::SubjectAccessReview, "authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", "subjectaccessreview", Cluster,
        short: [], categories: &[], verbs: CREATE_ONLY, subresources: [], stored: false),
    resource!(authz::SelfSubjectRulesReview, "authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews", "selfsubjectrulesreview", Cluster,
        short: [], categories: &[], verbs: CREATE_ONLY, subresources: [], stored: false),
    resource!(authz::LocalSubjectAccessReview, "authorization.k8s.io", "v1", "LocalSubjectAccessReview", "localsubjectaccessreviews", "localsubjectaccessreview", Namespaced,
        short: [], categories: &[], verbs: CREATE_ONLY, subresources: [], stored: false),
];

/// Every resource Capstan serves.
pub fn resources() -> &'static [ResourceInfo] {
    RESOURCES
}

/// Every resource served now: the built-in ones, then the custom ones.
pub fn all_resources() -> Vec<&'static ResourceInfo> {
    let mut all: Vec<&'static ResourceInfo> = RESOURCES.iter().collect();
    all.extend(crate::custom::registered());
    all
}

/// The resource `plural` in `group`/`version`, built-in or custom.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
        .or_else(|| {
            crate::custom::find(|r| r.group == group && r.version == version && r.plural == plural)
        })
}

/// The resource of objects with this `apiVersion` and `kind`.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
        .or_else(|| {
            crate::custom::find(|r| r.group == group && r.version == version && r.kind == kind)
        })
}

/// The built-in API groups in the order discovery lists them, each with its one version.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !groups.contains(&(r.group, r.version)) {
            groups.push((r.group, r.version));
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_found_by_plural_and_kind() {
        let pods = find("", "v1", "pods").expect("pods");
        assert_eq!(pods.kind, "Pod");
        assert_eq!(pods.api_version(), "v1");
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/pods/default/web"
        );
        let deployments = find_kind("apps/v1", "Deployment").expect("deployments");
        assert_eq!(deployments.plural, "deployments");
        assert_eq!(deployments.qualified_plural(), "deployments.apps");
        assert_eq!(
            find("", "v1", "nodes").expect("nodes").key(None, "n1"),
            "/registry/nodes/n1"
        );
    }

    #[test]
    fn a_plural_names_one_kind_so_store_keys_never_collide() {
        for r in RESOURCES {
            for other in RESOURCES.iter().filter(|o| o.plural == r.plural) {
                // Only versions of one kind share a plural (and so their stored objects).
                assert_eq!((r.group, r.kind), (other.group, other.kind), "{}", r.plural);
            }
            let same_version = RESOURCES
                .iter()
                .filter(|o| o.plural == r.plural && o.version == r.version)
                .count();
            assert_eq!(same_version, 1, "{} {}", r.plural, r.version);
        }
    }

    #[test]
    fn roundtrip_keeps_known_fields_and_drops_unknown_ones() {
        let pods = find("", "v1", "pods").expect("pods");
        let out = (pods.roundtrip)(&serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "bogus": 1}]}
        }))
        .expect("decodes");
        assert_eq!(out["spec"]["containers"][0]["image"], "busybox");
        assert!(out["spec"]["containers"][0].get("bogus").is_none());
    }
}
