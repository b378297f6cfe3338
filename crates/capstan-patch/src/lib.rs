//! Everything PATCH does to a JSON object in kube-apiserver: RFC 6902 JSON patch ([`json_patch`]),
//! RFC 7386 merge patch ([`merge_patch`]), Kubernetes strategic merge patch
//! ([`strategic_merge_patch`], what `kubectl apply`, `edit`, `set image` and `patch` send) and
//! server-side apply with `metadata.managedFields` ([`apply`]).
//!
//! Pure functions on `serde_json::Value`s. The merge keys and list types come from a table of facts
//! about the Kubernetes API (the Go types' `patchStrategy`/`patchMergeKey` tags) and from the type
//! graph of the `k8s-openapi` schemas, reached through `capstan-api`'s resource registry.
//! Nothing here may do IO or depend on the API server, the store or HTTP.

pub mod apply;
mod json_patch;
mod merge_patch;
mod meta;
mod strategic;

pub use json_patch::json_patch;
pub use merge_patch::merge_patch;
pub use meta::openapi_field_extensions;
pub use strategic::strategic_merge_patch;

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch itself is malformed (kube-apiserver answers 400 BadRequest).
    #[error("{0}")]
    Malformed(String),
    /// The patch is well formed but cannot be applied to this object (422 Invalid, or 500 for
    /// the strategic merge patch errors kube-apiserver does not classify).
    #[error("{0}")]
    CannotApply(String),
}

impl PatchError {
    /// Whether kube-apiserver reports this error as 400 BadRequest.
    pub fn is_bad_request(&self) -> bool {
        matches!(self, PatchError::Malformed(_))
    }

    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        PatchError::Malformed(message.into())
    }

    pub(crate) fn cannot_apply(message: impl Into<String>) -> Self {
        PatchError::CannotApply(message.into())
    }
}
