//! The Kubernetes resource model as Capstan serves it: which resources exist (group, version, kind,
//! plural, scope, verbs, subresources), how a request body is decoded against its `k8s-openapi` type
//! (unknown and mistyped fields), and how objects are defaulted and validated.
//!
//! Pure data and functions on `serde_json::Value`s: no IO, no HTTP, no store. The API server builds on
//! it; nothing here may depend on the server or the store.

pub mod autoscaling;
pub mod custom;
pub mod decode;
pub mod defaults;
pub mod field;
pub mod registry;
pub mod validation;

pub use decode::{DecodeError, Decoded, FieldValidation, decode, decode_value};
pub use defaults::apply_defaults;
pub use field::{FieldError, FieldErrorKind};
pub use registry::{
    ResourceInfo, Scope, Subresource, all_resources, find, find_kind, groups, resources,
};
pub use validation::{validate_create, validate_ephemeral_containers_update, validate_update};

/// A PriorityClass every cluster has (kube-apiserver creates them at start).
#[derive(Debug, Clone, Copy)]
pub struct SystemPriorityClass {
    pub name: &'static str,
    pub value: i32,
    pub description: &'static str,
}

/// The built-in PriorityClasses: the only names with the reserved `system-` prefix.
pub const SYSTEM_PRIORITY_CLASSES: &[SystemPriorityClass] = &[
    SystemPriorityClass {
        name: "system-node-critical",
        value: 2_000_001_000,
        description: "Used for system critical pods that must not be moved from their current node.",
    },
    SystemPriorityClass {
        name: "system-cluster-critical",
        value: 2_000_000_000,
        description: "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    },
];

/// The built-in PriorityClass called `name`, if it is one.
pub fn system_priority_class(name: &str) -> Option<&'static SystemPriorityClass> {
    SYSTEM_PRIORITY_CLASSES.iter().find(|c| c.name == name)
}
