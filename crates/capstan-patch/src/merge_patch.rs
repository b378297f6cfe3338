//! RFC 7386 JSON merge patch (`kubectl patch --type=merge`, `kubectl label`/`annotate`).

use serde_json::{Map, Value};

use crate::PatchError;

/// Applies an RFC 7386 merge patch: objects merge recursively, `null` deletes a key, anything else
/// (arrays included) replaces. A patch that is not an object replaces the whole document; a `null`
/// patch is malformed.
pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    if patch.is_null() {
        return Err(PatchError::malformed(
            "invalid JSON merge patch: the patch is null",
        ));
    }
    Ok(merge(Some(doc), patch))
}

fn merge(target: Option<&Value>, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut result = match target {
        Some(Value::Object(target)) => target.clone(),
        _ => Map::new(),
    };
    for (key, value) in patch {
        if value.is_null() {
            result.remove(key);
        } else {
            let merged = merge(result.get(key), value);
            result.insert(key.clone(), merged);
        }
    }
    Value::Object(result)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(doc: Value, patch: Value, expected: Value) {
        assert_eq!(
            merge_patch(&doc, &patch).expect("patch applies"),
            expected,
            "patch {patch}"
        );
    }

    #[test]
    fn rfc7386_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (doc, patch, expected) in cases {
            check(doc, patch, expected);
        }
    }

    #[test]
    fn kubectl_label_and_annotate_patch_metadata() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}, "annotations": {"a": "1"}},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}
        });
        // kubectl label pod web env=prod tier-
        check(
            pod.clone(),
            json!({"metadata": {"labels": {"env": "prod", "tier": null}}}),
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "labels": {"app": "web", "env": "prod"}, "annotations": {"a": "1"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]}
            }),
        );
        // kubectl annotate pod web b=2
        let patched =
            merge_patch(&pod, &json!({"metadata": {"annotations": {"b": "2"}}})).expect("applies");
        assert_eq!(
            patched["metadata"]["annotations"],
            json!({"a": "1", "b": "2"})
        );
    }

    #[test]
    fn null_patch_is_a_bad_request() {
        let err = merge_patch(&json!({}), &Value::Null).expect_err("null patch");
        assert!(err.is_bad_request());
    }
}
