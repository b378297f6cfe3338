//! Patch metadata: which fields of which Kubernetes types merge lists by which key (the Go types'
//! `patchStrategy`/`patchMergeKey` tags and `+listType`/`+listMapKey` markers), and the type graph
//! (which definition a field refers to), learnt from the `k8s-openapi` schemars schemas.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use capstan_api::ResourceInfo;
use serde_json::Value;

/// How a strategic merge patch treats a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// Lists are replaced, maps merged: the default.
    Default,
    /// Lists merge element-wise (by `merge_key`, or as a set for primitives).
    Merge,
    /// Maps are replaced as a whole.
    Replace,
}

/// How server-side apply treats a list (`x-kubernetes-list-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListType {
    Atomic,
    Set,
    /// Keys with their defaults (used when an element omits the key, as kube-apiserver defaults it).
    Map(&'static [(&'static str, Option<&'static str>)]),
}

/// The patch metadata of one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FieldMeta {
    pub(crate) strategy: Strategy,
    pub(crate) merge_key: Option<&'static str>,
    pub(crate) list_type: ListType,
}

impl FieldMeta {
    pub(crate) const UNKNOWN: FieldMeta = FieldMeta {
        strategy: Strategy::Default,
        merge_key: None,
        list_type: ListType::Atomic,
    };
}

/// `(definition, field, patchStrategy, patchMergeKey)` from the Go types' struct tags.
const SMP_TAGS: &[(&str, &str, Strategy, Option<&str>)] = {
    use Strategy::{Merge, Replace};
    &[
        // meta/v1
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "finalizers",
            Merge,
            None,
        ),
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "ownerReferences",
            Merge,
            Some("uid"),
        ),
        // core/v1 Pod
        ("io.k8s.api.core.v1.PodSpec", "volumes", Merge, Some("name")),
        (
            "io.k8s.api.core.v1.PodSpec",
            "initContainers",
            Merge,
            Some("name"),
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "containers",
            Merge,
            Some("name"),
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "ephemeralContainers",
            Merge,
            Some("name"),
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "imagePullSecrets",
            Merge,
            Some("name"),
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "hostAliases",
            Merge,
            Some("ip"),
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "topologySpreadConstraints",
            Merge,
            Some("topologyKey"),
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "schedulingGates",
            Merge,
            Some("name"),
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "resourceClaims",
            Merge,
            Some("name"),
        ),
        (
            "io.k8s.api.core.v1.Container",
            "ports",
            Merge,
            Some("containerPort"),
        ),
        ("io.k8s.api.core.v1.Container", "env", Merge, Some("name")),
        (
            "io.k8s.api.core.v1.Container",
            "volumeMounts",
            Merge,
            Some("mountPath"),
        ),
        (
            "io.k8s.api.core.v1.Container",
            "volumeDevices",
            Merge,
            Some("devicePath"),
        ),
        (
            "io.k8s.api.core.v1.EphemeralContainer",
            "ports",
            Merge,
            Some("containerPort"),
        ),
        (
            "io.k8s.api.core.v1.EphemeralContainer",
            "env",
            Merge,
            Some("name"),
        ),
        (
            "io.k8s.api.core.v1.EphemeralContainer",
            "volumeMounts",
            Merge,
            Some("mountPath"),
        ),
        (
            "io.k8s.api.core.v1.EphemeralContainer",
            "volumeDevices",
            Merge,
            Some("devicePath"),
        ),
        (
            "io.k8s.api.core.v1.ContainerStatus",
            "volumeMounts",
            Merge,
            Some("mountPath"),
        ),
        (
            "io.k8s.api.core.v1.ContainerStatus",
            "allocatedResourcesStatus",
            Merge,
            Some("name"),
        ),
        (
            "io.k8s.api.core.v1.PodStatus",
            "conditions",
            Merge,
            Some("type"),
        ),
        ("io.k8s.api.core.v1.PodStatus", "hostIPs", Merge, Some("ip")),
        ("io.k8s.api.core.v1.PodStatus", "podIPs", Merge, Some("ip")),
        (
            "io.k8s.api.core.v1.PodStatus",
            "resourceClaimStatuses",
            Merge,
            Some("name"),
        ),
        // core/v1 other kinds
        (
            "io.k8s.api.core.v1.ServiceSpec",
            "ports",
            Merge,
            Some("port"),
        ),
        (
            "io.k8s.api.core.v1.ServiceStatus",
            "conditions",
            Merge,
            Some("type"),
        ),
        (
            "io.k8s.api.core.v1.ServiceAccount",
            "secrets",
            Merge,
            Some("name"),
        ),
        ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", Merge, None),
        (
            "io.k8s.api.core.v1.NodeStatus",
            "conditions",
            Merge,
            Some("type"),
        ),
        (
            "io.k8s.api.core.v1.NodeStatus",
            "addresses",
            Merge,
            Some("type"),
        ),
        (
            "io.k8s.api.core.v1.NamespaceStatus",
            "conditions",
            Merge,
            Some("type"),
        ),
        (
            "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
            "conditions",
            Merge,
            Some("type"),
        ),
        (
            "io.k8s.api.core.v1.ReplicationControllerStatus",
            "conditions",
            Merge,
            Some("type"),
        ),
        // apps/v1
        (
            "io.k8s.api.apps.v1.DeploymentStatus",
            "conditions",
            Merge,
            Some("type"),
        ),
        (
            "io.k8s.api.apps.v1.ReplicaSetStatus",
            "conditions",
            Merge,
            Some("type"),
        ),
        (
            "io.k8s.api.apps.v1.StatefulSetStatus",
            "conditions",
            Merge,
            Some("type"),
        ),
        (
            "io.k8s.api.apps.v1.DaemonSetStatus",
            "conditions",
            Merge,
            Some("type"),
        ),
        // batch/v1
        (
            "io.k8s.api.batch.v1.JobStatus",
            "conditions",
            Merge,
            Some("type"),
        ),
        // policy/v1
        (
            "io.k8s.api.policy.v1.PodDisruptionBudgetSpec",
            "selector",
            Replace,
            None,
        ),
        (
            "io.k8s.api.policy.v1.PodDisruptionBudgetStatus",
            "conditions",
            Merge,
            Some("type"),
        ),
        // certificates/v1
        (
            "io.k8s.api.certificates.v1.CertificateSigningRequestStatus",
            "conditions",
            Merge,
            Some("type"),
        ),
    ]
};

const PROTOCOL_TCP: Option<&str> = Some("TCP");

/// Server-side apply list types that differ from what the strategic merge tags imply
/// (`+listType`/`+listMapKey` markers without a patch strategy, or with more keys).
const SSA_LISTS: &[(&str, &str, ListType)] = &[
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        ListType::Map(&[("containerPort", None), ("protocol", PROTOCOL_TCP)]),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        ListType::Map(&[("containerPort", None), ("protocol", PROTOCOL_TCP)]),
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        ListType::Map(&[("port", None), ("protocol", PROTOCOL_TCP)]),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        ListType::Map(&[("topologyKey", None), ("whenUnsatisfiable", None)]),
    ),
    (
        "io.k8s.api.core.v1.ResourceRequirements",
        "claims",
        ListType::Map(&[("name", None)]),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "volumeHealth",
        ListType::Map(&[("name", None)]),
    ),
    (
        "io.k8s.api.core.v1.VolumeMount",
        "bindMountOptions",
        ListType::Set,
    ),
    (
        "io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement",
        "values",
        ListType::Set,
    ),
    (
        "io.k8s.api.batch.v1.UncountedTerminatedPods",
        "succeeded",
        ListType::Set,
    ),
    (
        "io.k8s.api.batch.v1.UncountedTerminatedPods",
        "failed",
        ListType::Set,
    ),
    (
        "io.k8s.api.discovery.v1.Endpoint",
        "addresses",
        ListType::Set,
    ),
];

/// Structs marked `+structType=atomic` and maps marked `+mapType=atomic`: server-side apply owns them
/// as one field.
const ATOMIC_STRUCTS: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference",
    "io.k8s.api.core.v1.SecretReference",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ResourceFieldSelector",
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.NodeSelectorTerm",
    "io.k8s.api.core.v1.TopologySelectorTerm",
    "io.k8s.api.core.v1.EndpointAddress",
    "io.k8s.api.core.v1.EndpointPort",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.core.v1.ScopeSelector",
];
const ATOMIC_MAPS: &[(&str, &str)] = &[("io.k8s.api.core.v1.PodSpec", "nodeSelector")];

fn smp_tag(def: &str, field: &str) -> Option<(Strategy, Option<&'static str>)> {
    SMP_TAGS
        .iter()
        .find(|(d, f, _, _)| *d == def && *f == field)
        .map(|(_, _, s, k)| (*s, *k))
}

/// The OpenAPI vendor extensions Kubernetes publishes for a field's patch behaviour
/// (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`): with them, kubectl computes the
/// same strategic merge patches (deletions included) that this crate applies.
pub fn openapi_field_extensions(definition: &str, field: &str) -> Vec<(String, Value)> {
    let Some((strategy, merge_key)) = smp_tag(definition, field) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    match strategy {
        Strategy::Merge => out.push((
            "x-kubernetes-patch-strategy".to_owned(),
            Value::from("merge"),
        )),
        Strategy::Replace => out.push((
            "x-kubernetes-patch-strategy".to_owned(),
            Value::from("replace"),
        )),
        Strategy::Default => {}
    }
    if let Some(key) = merge_key {
        out.push(("x-kubernetes-patch-merge-key".to_owned(), Value::from(key)));
    }
    out
}

fn field_meta(def: &str, field: &str, is_list: bool) -> FieldMeta {
    let (strategy, merge_key) = smp_tag(def, field).unwrap_or((Strategy::Default, None));
    let list_type = SSA_LISTS
        .iter()
        .find(|(d, f, _)| *d == def && *f == field)
        .map(|(_, _, l)| *l)
        .unwrap_or(match (is_list, strategy, merge_key) {
            (true, Strategy::Merge, Some(key)) => ListType::Map(single_key(key)),
            (true, Strategy::Merge, None) => ListType::Set,
            _ => ListType::Atomic,
        });
    FieldMeta {
        strategy,
        merge_key,
        list_type,
    }
}

/// The key set of a list map keyed by one field (every merge key of `SMP_TAGS` is listed here).
fn single_key(key: &'static str) -> &'static [(&'static str, Option<&'static str>)] {
    const KEYS: &[&[(&str, Option<&str>)]] = &[
        &[("name", None)],
        &[("uid", None)],
        &[("type", None)],
        &[("ip", None)],
        &[("port", None)],
        &[("mountPath", None)],
        &[("devicePath", None)],
        &[("containerPort", None)],
        &[("topologyKey", None)],
    ];
    KEYS.iter().find(|k| k[0].0 == key).copied().unwrap_or(&[])
}

/// The shape of a field's value (for lists: of its elements).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Elem {
    Scalar,
    Ref(String),
    MapOf(Option<String>),
}

/// FNV-1a: the graph's keys are short field and definition names looked up on every field of every
/// write (managedFields), where SipHash's setup cost dominated; the keys come from the compiled-in
/// schema, not from clients, so flooding resistance buys nothing here.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = self.0;
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

type NameMap<V> = HashMap<String, V, BuildHasherDefault<Fnv>>;

#[derive(Debug)]
struct FieldInfo {
    elem: Elem,
    meta: FieldMeta,
    atomic_map: bool,
}

/// One object definition (`io.k8s.api.core.v1.PodSpec`).
#[derive(Debug)]
pub(crate) struct Def {
    fields: NameMap<FieldInfo>,
    pub(crate) atomic: bool,
}

/// The type of a JSON value, as far as the metadata knows it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ty {
    /// No schema: maps merge, lists are replaced, every key is a map entry.
    Unknown,
    Struct(&'static Def),
    /// A map (`additionalProperties`) whose values have the given definition, if any.
    MapOf(Option<&'static Def>),
    /// An atomic map (`+mapType=atomic`).
    AtomicMap,
}

/// The type of a child and the metadata of the field that holds it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Child {
    pub(crate) ty: Ty,
    pub(crate) meta: FieldMeta,
    /// Whether the key is a declared struct field (not a map entry).
    pub(crate) declared: bool,
}

impl Ty {
    /// The type of `self[key]` (for lists: of their elements).
    pub(crate) fn child(self, key: &str) -> Child {
        match self {
            Ty::Struct(def) => match def.fields.get(key) {
                Some(field) => Child {
                    ty: if field.atomic_map {
                        Ty::AtomicMap
                    } else {
                        graph().resolve(&field.elem)
                    },
                    meta: field.meta,
                    declared: true,
                },
                None => Child {
                    ty: Ty::Unknown,
                    meta: FieldMeta::UNKNOWN,
                    declared: false,
                },
            },
            Ty::MapOf(value) => Child {
                ty: value.map_or(Ty::Unknown, Ty::Struct),
                meta: FieldMeta::UNKNOWN,
                declared: false,
            },
            Ty::Unknown | Ty::AtomicMap => Child {
                ty: Ty::Unknown,
                meta: FieldMeta::UNKNOWN,
                declared: false,
            },
        }
    }

    /// Whether server-side apply treats a value of this type as one leaf.
    pub(crate) fn atomic(self) -> bool {
        match self {
            Ty::Struct(def) => def.atomic,
            Ty::AtomicMap => true,
            Ty::Unknown | Ty::MapOf(_) => false,
        }
    }
}

#[derive(Debug)]
struct Graph {
    defs: NameMap<Def>,
    /// `apps/v1/Deployment` -> `io.k8s.api.apps.v1.Deployment`.
    roots: NameMap<String>,
}

impl Graph {
    fn resolve(&'static self, elem: &Elem) -> Ty {
        match elem {
            Elem::Scalar => Ty::Unknown,
            Elem::Ref(name) => self.defs.get(name).map_or(Ty::Unknown, Ty::Struct),
            Elem::MapOf(value) => Ty::MapOf(value.as_ref().and_then(|name| self.defs.get(name))),
        }
    }
}

fn graph() -> &'static Graph {
    static GRAPH: OnceLock<Graph> = OnceLock::new();
    GRAPH.get_or_init(build_graph)
}

fn root_key(resource: &ResourceInfo) -> String {
    format!("{}/{}", resource.api_version(), resource.kind)
}

/// The type of the objects of `resource`.
pub(crate) fn root(resource: &ResourceInfo) -> Ty {
    let graph = graph();
    graph
        .roots
        .get(&root_key(resource))
        .and_then(|name| graph.defs.get(name))
        .map_or(Ty::Unknown, Ty::Struct)
}

fn ref_name(schema: &Value) -> Option<String> {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
        .map(str::to_owned)
}

fn parse_elem(schema: &Value) -> Elem {
    if let Some(name) = ref_name(schema) {
        return Elem::Ref(name);
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        return Elem::MapOf(ref_name(values));
    }
    Elem::Scalar
}

fn build_graph() -> Graph {
    let mut generator = schemars::SchemaGenerator::default();
    let mut roots = NameMap::default();
    for resource in capstan_api::resources() {
        let schema = (resource.schema)(&mut generator);
        if let Some(name) = ref_name(schema.as_value()) {
            roots.insert(root_key(resource), name);
        }
    }
    let mut defs = NameMap::default();
    for (name, body) in generator.definitions() {
        let mut fields = NameMap::default();
        if let Some(properties) = body.get("properties").and_then(Value::as_object) {
            for (field, schema) in properties {
                let is_list = schema.get("type").and_then(Value::as_str) == Some("array");
                let elem = match (is_list, schema.get("items")) {
                    (true, Some(items)) => parse_elem(items),
                    _ => parse_elem(schema),
                };
                fields.insert(
                    field.clone(),
                    FieldInfo {
                        elem,
                        meta: field_meta(name, field, is_list),
                        atomic_map: ATOMIC_MAPS.contains(&(name.as_str(), field.as_str())),
                    },
                );
            }
        }
        defs.insert(
            name.clone(),
            Def {
                fields,
                atomic: ATOMIC_STRUCTS.contains(&name.as_str()),
            },
        );
    }
    Graph { defs, roots }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(resource: &ResourceInfo, path: &[&str]) -> Child {
        let mut child = Child {
            ty: root(resource),
            meta: FieldMeta::UNKNOWN,
            declared: true,
        };
        for key in path {
            child = child.ty.child(key);
        }
        child
    }

    fn resource(api_version: &str, kind: &str) -> &'static ResourceInfo {
        capstan_api::find_kind(api_version, kind).expect("resource is registered")
    }

    #[test]
    fn every_tagged_definition_exists_in_the_graph() {
        let graph = graph();
        for (def, field, _, _) in SMP_TAGS {
            let known = graph
                .defs
                .get(*def)
                .is_some_and(|d| d.fields.contains_key(*field));
            // Definitions of kinds Capstan does not serve (PVCs, CSRs) may be absent.
            if graph.defs.contains_key(*def) {
                assert!(known, "{def}.{field} is not a field");
            }
        }
    }

    #[test]
    fn every_merge_key_has_a_list_map_key_set() {
        for (def, field, _, key) in SMP_TAGS {
            if let Some(key) = key {
                assert_eq!(single_key(key), &[(*key, None)], "{def}.{field}");
            }
        }
    }

    /// `(apiVersion, kind, path, strategy, merge key)`.
    type MetaCase = (
        &'static str,
        &'static str,
        &'static [&'static str],
        Strategy,
        Option<&'static str>,
    );

    #[test]
    fn merge_keys_are_found_through_the_type_graph() {
        let cases: &[MetaCase] = &[
            (
                "apps/v1",
                "Deployment",
                &["spec", "template", "spec", "containers"],
                Strategy::Merge,
                Some("name"),
            ),
            (
                "apps/v1",
                "StatefulSet",
                &["spec", "template", "spec", "volumes"],
                Strategy::Merge,
                Some("name"),
            ),
            (
                "apps/v1",
                "DaemonSet",
                &["spec", "template", "spec", "initContainers"],
                Strategy::Merge,
                Some("name"),
            ),
            (
                "apps/v1",
                "ReplicaSet",
                &["spec", "template", "spec", "containers", "env"],
                Strategy::Merge,
                Some("name"),
            ),
            (
                "batch/v1",
                "Job",
                &["spec", "template", "spec", "containers", "ports"],
                Strategy::Merge,
                Some("containerPort"),
            ),
            (
                "batch/v1",
                "CronJob",
                &[
                    "spec",
                    "jobTemplate",
                    "spec",
                    "template",
                    "spec",
                    "containers",
                    "volumeMounts",
                ],
                Strategy::Merge,
                Some("mountPath"),
            ),
            (
                "v1",
                "Pod",
                &["spec", "tolerations"],
                Strategy::Default,
                None,
            ),
            (
                "v1",
                "Pod",
                &["spec", "hostAliases"],
                Strategy::Merge,
                Some("ip"),
            ),
            (
                "v1",
                "Pod",
                &["status", "conditions"],
                Strategy::Merge,
                Some("type"),
            ),
            (
                "v1",
                "Service",
                &["spec", "ports"],
                Strategy::Merge,
                Some("port"),
            ),
            (
                "v1",
                "Node",
                &["status", "addresses"],
                Strategy::Merge,
                Some("type"),
            ),
            (
                "v1",
                "Node",
                &["status", "conditions"],
                Strategy::Merge,
                Some("type"),
            ),
            (
                "v1",
                "ConfigMap",
                &["metadata", "finalizers"],
                Strategy::Merge,
                None,
            ),
            (
                "v1",
                "ConfigMap",
                &["metadata", "ownerReferences"],
                Strategy::Merge,
                Some("uid"),
            ),
            (
                "v1",
                "Pod",
                &["spec", "containers", "args"],
                Strategy::Default,
                None,
            ),
        ];
        for (api_version, kind, fields, strategy, key) in cases {
            let child = path(resource(api_version, kind), fields);
            assert_eq!(child.meta.strategy, *strategy, "{kind} {fields:?}");
            assert_eq!(child.meta.merge_key, *key, "{kind} {fields:?}");
        }
    }

    #[test]
    fn list_types_for_server_side_apply() {
        let ports = path(resource("v1", "Service"), &["spec", "ports"]);
        assert_eq!(
            ports.meta.list_type,
            ListType::Map(&[("port", None), ("protocol", Some("TCP"))])
        );
        let containers = path(
            resource("apps/v1", "Deployment"),
            &["spec", "template", "spec", "containers"],
        );
        assert_eq!(containers.meta.list_type, ListType::Map(&[("name", None)]));
        assert!(
            matches!(containers.ty, Ty::Struct(def) if def.fields.contains_key("imagePullPolicy"))
        );
        let finalizers = path(resource("v1", "Pod"), &["metadata", "finalizers"]);
        assert_eq!(finalizers.meta.list_type, ListType::Set);
        let selector = path(resource("apps/v1", "Deployment"), &["spec", "selector"]);
        assert!(selector.ty.atomic());
        let labels = path(resource("apps/v1", "Deployment"), &["metadata", "labels"]);
        assert!(matches!(labels.ty, Ty::MapOf(None)));
    }
}
