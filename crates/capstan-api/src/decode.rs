//! Decoding a request body into an object of a known resource, as kube-apiserver does: the JSON must
//! fit the kind's `k8s-openapi` type; fields the type does not know are dropped, and reported as the
//! `fieldValidation` parameter asks (ignored, a warning, or a `strict decoding error`).

use serde_json::{Map, Value};

use crate::registry::ResourceInfo;

/// The `fieldValidation` query parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    /// kube-apiserver's default when the parameter is absent.
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    /// Parses the query parameter; `None` for a value Kubernetes rejects.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "Ignore" => Some(Self::Ignore),
            "Warn" | "" => Some(Self::Warn),
            "Strict" => Some(Self::Strict),
            _ => None,
        }
    }
}

/// Why a body could not be decoded. Each maps to a 400 Bad Request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Not JSON (or YAML converted to JSON) at all.
    #[error("{0}")]
    Syntax(String),
    /// `apiVersion`/`kind` name another resource than the URL.
    #[error("{0}")]
    Mismatch(String),
    /// The JSON does not fit the kind's type (a string where a number belongs, ...).
    #[error("{kind} in version \"{version}\" cannot be handled as a {kind}: {detail}")]
    Type {
        kind: String,
        version: String,
        detail: String,
    },
    /// `fieldValidation=Strict` and the body had fields the kind does not know (kube-apiserver
    /// words it as a decoding failure of the kind).
    #[error("{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}", .fields.join(", "))]
    Strict {
        kind: String,
        version: String,
        fields: Vec<String>,
    },
}

/// A decoded object and the warnings to send back (`Warning` headers).
#[derive(Debug, PartialEq)]
pub struct Decoded {
    pub object: Value,
    pub warnings: Vec<String>,
}

/// Decodes `body` as an object of `resource`. `apiVersion` and `kind` are filled in when absent.
pub fn decode(
    resource: &ResourceInfo,
    body: &[u8],
    validation: FieldValidation,
) -> Result<Decoded, DecodeError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        DecodeError::Syntax(format!(
            "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: {e}",
            resource.kind
        ))
    })?;
    decode_value(resource, value, validation)
}

/// [`decode`] for a body that is already parsed.
pub fn decode_value(
    resource: &ResourceInfo,
    mut value: Value,
    validation: FieldValidation,
) -> Result<Decoded, DecodeError> {
    let Some(object) = value.as_object_mut() else {
        return Err(DecodeError::Syntax(format!(
            "the object provided is unrecognized (must be of type {}): expected a JSON object",
            resource.kind
        )));
    };
    let api_version = resource.api_version();
    match object.get("apiVersion").and_then(Value::as_str) {
        Some(given) if given != api_version => {
            return Err(DecodeError::Mismatch(format!(
                "the API version in the data ({given}) does not match the expected API version ({api_version})"
            )));
        }
        Some(_) => {}
        None => {
            object.insert("apiVersion".into(), Value::String(api_version.clone()));
        }
    }
    match object.get("kind").and_then(Value::as_str) {
        Some(given) if given != resource.kind => {
            return Err(DecodeError::Mismatch(format!(
                "the kind in the data ({given}) does not match the expected kind ({})",
                resource.kind
            )));
        }
        Some(_) => {}
        None => {
            object.insert("kind".into(), Value::String(resource.kind.into()));
        }
    }
    let custom_schema = resource.custom.and_then(|c| c.schema.as_ref());
    let typed = match custom_schema {
        Some(schema) => Ok(crate::custom::prune(&value, schema)),
        None => (resource.roundtrip)(&value),
    }
    .map_err(|e| DecodeError::Type {
        kind: resource.kind.into(),
        version: resource.version.into(),
        detail: e.to_string(),
    })?;
    let mut unknown = Vec::new();
    if validation != FieldValidation::Ignore {
        unknown_fields(&value, &typed, &mut String::new(), &mut unknown);
    }
    let messages: Vec<String> = unknown
        .iter()
        .map(|path| format!("unknown field \"{path}\""))
        .collect();
    match validation {
        FieldValidation::Strict if !messages.is_empty() => Err(DecodeError::Strict {
            kind: resource.kind.into(),
            version: resource.version.into(),
            fields: messages,
        }),
        FieldValidation::Warn => Ok(Decoded {
            object: typed,
            warnings: messages,
        }),
        _ => Ok(Decoded {
            object: typed,
            warnings: Vec::new(),
        }),
    }
}

/// Collects the paths present in `input` but absent from `typed` (what the type dropped).
fn unknown_fields(input: &Value, typed: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(input), Value::Object(typed)) => object_fields(input, typed, path, out),
        (Value::Array(input), Value::Array(typed)) => {
            for (i, (a, b)) in input.iter().zip(typed).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                unknown_fields(a, b, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn object_fields(
    input: &Map<String, Value>,
    typed: &Map<String, Value>,
    path: &mut String,
    out: &mut Vec<String>,
) {
    for (key, value) in input {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
        match typed.get(key) {
            Some(typed_value) => unknown_fields(value, typed_value, path, out),
            // An explicit null is an absent optional field, not an unknown one.
            None if value.is_null() => {}
            None => out.push(path.clone()),
        }
        path.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::find;
    use serde_json::json;

    fn pods() -> &'static ResourceInfo {
        find("", "v1", "pods").expect("pods")
    }

    fn pod_with(extra: Value) -> Vec<u8> {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        });
        if let (Some(pod), Some(extra)) = (pod.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                pod.insert(k.clone(), v.clone());
            }
        }
        serde_json::to_vec(&pod).expect("json")
    }

    #[test]
    fn strict_validation_names_every_unknown_field() {
        let body = serde_json::to_vec(&json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "busybox", "imagee": "x"}]}
        }))
        .expect("json");
        let err = decode(pods(), &body, FieldValidation::Strict).expect_err("strict");
        assert_eq!(
            err.to_string(),
            "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"metadata.bogus\", unknown field \"spec.containers[0].imagee\""
        );
        let ok = decode(pods(), &body, FieldValidation::Warn).expect("warn");
        assert_eq!(ok.warnings.len(), 2);
        assert!(ok.object["metadata"].get("bogus").is_none());
        let ok = decode(pods(), &body, FieldValidation::Ignore).expect("ignore");
        assert!(ok.warnings.is_empty());
    }

    #[test]
    fn mistyped_fields_are_rejected_with_the_kind() {
        let body = pod_with(json!({"spec": {"containers": "not a list"}}));
        let err = decode(pods(), &body, FieldValidation::Strict).expect_err("type");
        assert!(
            err.to_string()
                .starts_with("Pod in version \"v1\" cannot be handled as a Pod:"),
            "{err}"
        );
    }

    #[test]
    fn another_kind_in_the_body_is_rejected() {
        let body = pod_with(json!({"kind": "Service"}));
        let err = decode(pods(), &body, FieldValidation::Strict).expect_err("kind");
        assert!(matches!(err, DecodeError::Mismatch(_)));
        let body = pod_with(json!({"apiVersion": "apps/v1"}));
        assert!(matches!(
            decode(pods(), &body, FieldValidation::Strict),
            Err(DecodeError::Mismatch(_))
        ));
    }

    #[test]
    fn missing_type_meta_is_filled_in_and_nulls_are_not_unknown() {
        let body = br#"{"metadata":{"name":"a","labels":null},"spec":{"containers":[]}}"#;
        let ok = decode(pods(), body, FieldValidation::Strict).expect("decodes");
        assert_eq!(ok.object["kind"], "Pod");
        assert_eq!(ok.object["apiVersion"], "v1");
    }

    #[test]
    fn garbage_is_a_syntax_error() {
        assert!(matches!(
            decode(pods(), b"{not json", FieldValidation::Warn),
            Err(DecodeError::Syntax(_))
        ));
        assert!(matches!(
            decode(pods(), b"[1,2]", FieldValidation::Warn),
            Err(DecodeError::Syntax(_))
        ));
    }
}
