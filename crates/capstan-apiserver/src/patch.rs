//! PATCH: picks the patch flavour from the Content-Type and applies it with `capstan-patch`; keeps
//! `metadata.managedFields` up to date on every write so that server-side apply sees who owns what.

use capstan_api::ResourceInfo;
use capstan_patch::PatchError;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::objects::now_rfc3339;
use crate::rest::Request;

const JSON_PATCH: &str = "application/json-patch+json";
const MERGE_PATCH: &str = "application/merge-patch+json";
const STRATEGIC_PATCH: &str = "application/strategic-merge-patch+json";
const APPLY_YAML: &str = "application/apply-patch+yaml";
const APPLY_CBOR: &str = "application/apply-patch+cbor";

pub(crate) fn is_apply(content_type: &str) -> bool {
    content_type == APPLY_YAML || content_type == APPLY_CBOR
}

/// Parses a patch body: JSON, or YAML for apply patches (JSON is YAML too).
fn parse(body: &[u8], yaml: bool) -> ApiResult<Value> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(_) if yaml => serde_saphyr::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}"))),
        Err(e) => Err(ApiError::bad_request(format!("error decoding patch: {e}"))),
    }
}

fn patch_error(error: PatchError) -> ApiError {
    if error.is_bad_request() {
        ApiError::bad_request(error.to_string())
    } else {
        ApiError::new(422, "Invalid", error.to_string())
    }
}

/// Applies the request's patch body to `current`.
pub(crate) fn apply(
    content_type: &str,
    current: &Value,
    body: &[u8],
    resource: &ResourceInfo,
    manager: &str,
    force: bool,
) -> ApiResult<Value> {
    match content_type {
        JSON_PATCH => capstan_patch::json_patch(current, &parse(body, false)?).map_err(patch_error),
        MERGE_PATCH => {
            capstan_patch::merge_patch(current, &parse(body, false)?).map_err(patch_error)
        }
        // Custom kinds have no patch strategies: kube-apiserver refuses strategic merge for them.
        STRATEGIC_PATCH if resource.custom.is_some() => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {JSON_PATCH}, {MERGE_PATCH}, {APPLY_YAML}"
            ),
        )),
        STRATEGIC_PATCH => {
            capstan_patch::strategic_merge_patch(current, &parse(body, false)?, resource)
                .map_err(patch_error)
        }
        APPLY_YAML => {
            let applied = parse(body, true)?;
            server_side_apply(Some(current), &applied, resource, manager, force)
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    resource: &ResourceInfo,
    manager: &str,
    force: bool,
) -> ApiResult<Value> {
    if manager.is_empty() || manager == "unknown" {
        return Err(ApiError::bad_request(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    capstan_patch::apply::apply(live, applied, manager, force, resource, &now_rfc3339())
        .map(|outcome| outcome.object)
        .map_err(|e| match e {
            capstan_patch::apply::ApplyError::Conflicts(ref conflicts) => {
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|c| serde_json::json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\"", c.manager), "field": c.field}))
                    .collect();
                ApiError { details: Some(serde_json::json!({"causes": causes})), ..ApiError::new(409, "Conflict", e.to_string()) }
            }
            other => ApiError::bad_request(other.to_string()),
        })
}

/// The object a server-side apply creates when nothing exists yet.
pub(crate) fn apply_create(
    req: &Request<'_>,
    resource: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
) -> ApiResult<Value> {
    let applied = parse(&req.body, true)?;
    let given = applied["metadata"]["name"].as_str().unwrap_or_default();
    if given != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    let _ = ns;
    let manager = req.query.get("fieldManager").unwrap_or_default();
    server_side_apply(None, &applied, resource, manager, req.query.flag("force"))
}

/// Records `manager`'s ordinary write in `metadata.managedFields`.
pub(crate) fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    resource: &ResourceInfo,
) {
    if let Err(e) = capstan_patch::apply::record_update(old, new, manager, resource, &now_rfc3339())
    {
        tracing::debug!(error = %e, "managed fields not recorded");
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::parse;

    #[test]
    fn apply_bodies_may_be_yaml_and_other_patches_must_be_json() {
        let yaml =
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n  b: x\n";
        let value = parse(yaml, true).expect("yaml apply body");
        assert_eq!(
            value,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                   "data": {"a": "1", "b": "x"}})
        );
        assert_eq!(parse(br#"{"a": 1}"#, true).expect("json"), json!({"a": 1}));
        let error = parse(yaml, false).expect_err("not JSON");
        assert_eq!(error.code, 400);
        let error = parse(b"a: [1,", true).expect_err("bad yaml");
        assert!(
            error.message.starts_with("error decoding YAML"),
            "{}",
            error.message
        );
    }
}
