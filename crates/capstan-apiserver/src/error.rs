//! API errors and their `Status` bodies, worded and coded as kube-apiserver words and codes them.

use capstan_api::{FieldError, ResourceInfo};
use capstan_store::StoreError;
use serde_json::{Value, json};

/// A failed API request: an HTTP status code and a `Status` object.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

fn details(resource: &ResourceInfo, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": resource.plural});
    if !resource.group.is_empty() {
        d["group"] = json!(resource.group);
    }
    d
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn not_found(resource: &ResourceInfo, name: &str) -> Self {
        Self {
            details: Some(details(resource, name)),
            ..Self::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", resource.qualified_plural()),
            )
        }
    }

    pub fn namespace_not_found(namespace: &str) -> Self {
        Self {
            details: Some(json!({"name": namespace, "kind": "namespaces"})),
            ..Self::new(
                404,
                "NotFound",
                format!("namespaces \"{namespace}\" not found"),
            )
        }
    }

    pub fn already_exists(resource: &ResourceInfo, name: &str) -> Self {
        Self {
            details: Some(details(resource, name)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", resource.qualified_plural()),
            )
        }
    }

    pub fn conflict(resource: &ResourceInfo, name: &str, why: &str) -> Self {
        Self {
            details: Some(details(resource, name)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {why}",
                    resource.qualified_plural()
                ),
            )
        }
    }

    pub fn modified(resource: &ResourceInfo, name: &str) -> Self {
        Self::conflict(
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn invalid(resource: &ResourceInfo, name: &str, errors: &[FieldError]) -> Self {
        Self::invalid_kind(resource.group, resource.kind, resource.kind, name, errors)
    }

    /// Invalid of a kind that is no served resource (e.g. a TokenRequest): kube-apiserver names
    /// it `Kind.group` in the message.
    pub fn invalid_request(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Self {
        Self::invalid_kind(group, kind, &format!("{kind}.{group}"), name, errors)
    }

    fn invalid_kind(
        group: &str,
        kind: &str,
        label: &str,
        name: &str,
        errors: &[FieldError],
    ) -> Self {
        let list = errors.iter().map(ToString::to_string).collect::<Vec<_>>();
        let summary = if list.len() == 1 {
            list[0].clone()
        } else {
            format!("[{}]", list.join(", "))
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.kind.reason(), "message": e.message(), "field": e.field}))
            .collect();
        let mut d = json!({"name": name, "kind": kind, "causes": causes});
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        Self {
            details: Some(d),
            ..Self::new(
                422,
                "Invalid",
                format!("{label} \"{name}\" is invalid: {summary}"),
            )
        }
    }

    /// `Service "x" is invalid: ...`
    pub fn invalid_service(name: &str, errors: &[FieldError]) -> Self {
        match capstan_api::find("", "v1", "services") {
            Some(services) => Self::invalid(services, name, errors),
            None => Self::internal("services are not registered"),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn path_not_found() -> Self {
        Self {
            details: Some(json!({})),
            ..Self::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        }
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml ({content_type})"
            ),
        )
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// The `Status` object for this error.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }

    /// Maps a store failure on `resource`/`name`.
    pub fn from_store(error: StoreError, resource: &ResourceInfo, name: &str) -> Self {
        match error {
            StoreError::AlreadyExists { .. } => Self::already_exists(resource, name),
            StoreError::NotFound { .. } => Self::not_found(resource, name),
            StoreError::Conflict { .. } => Self::modified(resource, name),
            StoreError::Compacted { requested } => Self::gone(format!(
                "The resourceVersion for the provided list is too old: {requested}"
            )),
            StoreError::FutureRevision { requested } => Self::timeout_too_large(requested),
            StoreError::InvalidContinue(why) => {
                Self::bad_request(format!("invalid continue token: {why}"))
            }
            other => Self::internal(other.to_string()),
        }
    }

    pub fn timeout_too_large(requested: i64) -> Self {
        Self {
            details: Some(json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1
            })),
            ..Self::new(
                504,
                "Timeout",
                format!("Too large resource version: {requested}"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_status_reads_like_kubernetes() {
        let deployments = capstan_api::find("apps", "v1", "deployments").expect("deployments");
        let status = ApiError::not_found(deployments, "web").status();
        assert_eq!(status["message"], "deployments.apps \"web\" not found");
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["code"], 404);
        assert_eq!(status["details"]["group"], "apps");
    }

    #[test]
    fn invalid_lists_causes() {
        let pods = capstan_api::find("", "v1", "pods").expect("pods");
        let errors = [FieldError::required("spec.containers[0].image", "")];
        let status = ApiError::invalid(pods, "x", &errors).status();
        assert_eq!(
            status["message"],
            "Pod \"x\" is invalid: spec.containers[0].image: Required value"
        );
        assert_eq!(status["code"], 422);
        assert_eq!(
            status["details"]["causes"][0]["reason"],
            "FieldValueRequired"
        );
        assert_eq!(
            status["details"]["causes"][0]["field"],
            "spec.containers[0].image"
        );
    }
}
