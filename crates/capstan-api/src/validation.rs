use serde_json::Value;
use crate::field::FieldError;
use crate::registry::ResourceInfo;
pub fn validate_create(resource: &ResourceInfo, object: &Value) -> Vec<FieldError> { let _ = (resource, object); Vec::new() }
pub fn validate_update(resource: &ResourceInfo, new: &Value, old: &Value) -> Vec<FieldError> { let _ = (resource, new, old); Vec::new() }
