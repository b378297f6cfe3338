//! The Kubernetes resource model as Capstan serves it: which resources exist (group, version, kind,
//! plural, scope, verbs, subresources), how a request body is decoded against its `k8s-openapi` type
//! (unknown and mistyped fields), and how objects are defaulted and validated.
//!
//! Pure data and functions on `serde_json::Value`s: no IO, no HTTP, no store. The API server builds on
//! it; nothing here may depend on the server or the store.

pub mod decode;
pub mod defaults;
pub mod field;
pub mod registry;
pub mod validation;

pub use decode::{DecodeError, Decoded, FieldValidation, decode, decode_value};
pub use defaults::apply_defaults;
pub use field::{FieldError, FieldErrorKind};
pub use registry::{ResourceInfo, Scope, Subresource, find, find_kind, groups, resources};
pub use validation::{validate_create, validate_update};
