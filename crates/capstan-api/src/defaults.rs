use serde_json::Value;
use crate::registry::ResourceInfo;
pub fn apply_defaults(resource: &ResourceInfo, object: &mut Value) { let _ = (resource, object); }
