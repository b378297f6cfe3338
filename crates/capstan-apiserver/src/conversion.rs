//! Serving one kind in several versions from one stored form: custom resources (kube's `None`
//! strategy: only `apiVersion` changes) and built-in kinds with a conversion in `capstan-api`
//! (`autoscaling/v1` HorizontalPodAutoscalers, stored as v2). Bodies are converted to the storage
//! version when decoded, and responses (objects, lists, watch events) back to the version asked for.

use bytes::Bytes;
use capstan_api::ResourceInfo;
use capstan_api::autoscaling::Convert;
use serde_json::Value;

/// How responses of one request are converted.
#[derive(Debug)]
pub(crate) enum Conversion {
    /// `"apiVersion":"<group>/<other version>"` of every other version becomes the requested one.
    Rename { from: Vec<Vec<u8>>, to: Vec<u8> },
    /// Objects of `kind` are converted from the storage version.
    Structural {
        kind: &'static str,
        from_storage: Convert,
    },
}

impl Conversion {
    /// The conversion a request of `resource` needs, if any.
    pub(crate) fn for_request(resource: &ResourceInfo) -> Option<Self> {
        if let Some((_, from_storage)) = capstan_api::autoscaling::storage_conversion(resource) {
            return Some(Self::Structural {
                kind: resource.kind,
                from_storage,
            });
        }
        let custom = resource.custom?;
        let mut versions: Vec<&str> = capstan_api::custom::registered()
            .into_iter()
            .filter(|r| r.custom.is_some_and(|c| c.definition == custom.definition))
            .map(|r| r.version)
            .collect();
        versions.push(custom.storage_version.as_str());
        versions.retain(|v| *v != resource.version);
        versions.sort_unstable();
        versions.dedup();
        if versions.is_empty() {
            return None;
        }
        let field = |version: &str| format!(r#""apiVersion":"{}/{version}""#, resource.group);
        Some(Self::Rename {
            from: versions.iter().map(|v| field(v).into_bytes()).collect(),
            to: field(resource.version).into_bytes(),
        })
    }

    /// A response body: an object, a list of them, or anything else (left alone).
    pub(crate) fn body(&self, bytes: &Bytes) -> Bytes {
        match self {
            Self::Rename { from, to } => rename(bytes, from, to),
            Self::Structural { kind, from_storage } => {
                let Ok(mut value) = serde_json::from_slice::<Value>(bytes) else {
                    return bytes.clone();
                };
                let list_kind = format!("{kind}List");
                match value["kind"].as_str() {
                    Some(k) if k == *kind => value = from_storage(&value),
                    Some(k) if k == list_kind => {
                        if let Some(items) = value["items"].as_array_mut() {
                            for item in items {
                                *item = from_storage(item);
                            }
                        }
                    }
                    _ => return bytes.clone(),
                }
                Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
            }
        }
    }

    /// Watch event lines; `partial` carries an incomplete last line over to the next chunk.
    pub(crate) fn watch_chunk(&self, partial: &mut Vec<u8>, chunk: &Bytes) -> Bytes {
        let Self::Structural { kind, from_storage } = self else {
            return self.body(chunk);
        };
        partial.extend_from_slice(chunk);
        let Some(end) = partial.iter().rposition(|b| *b == b'\n') else {
            return Bytes::new();
        };
        let rest = partial.split_off(end + 1);
        let complete = std::mem::replace(partial, rest);
        let mut out = Vec::with_capacity(complete.len());
        for line in complete.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<Value>(line) {
                Ok(mut event) if event["object"]["kind"] == *kind => {
                    event["object"] = from_storage(&event["object"]);
                    out.extend(serde_json::to_vec(&event).unwrap_or_default());
                }
                _ => out.extend_from_slice(line),
            }
            out.push(b'\n');
        }
        Bytes::from(out)
    }
}

fn rename(bytes: &Bytes, from: &[Vec<u8>], to: &[u8]) -> Bytes {
    let mut out: Option<Vec<u8>> = None;
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(f) = from.iter().find(|f| bytes[i..].starts_with(f)) {
            let buf = out.get_or_insert_with(|| Vec::with_capacity(bytes.len() + 16));
            buf.extend_from_slice(&bytes[start..i]);
            buf.extend_from_slice(to);
            i += f.len();
            start = i;
        } else {
            i += 1;
        }
    }
    match out {
        Some(mut buf) => {
            buf.extend_from_slice(&bytes[start..]);
            Bytes::from(buf)
        }
        None => bytes.clone(),
    }
}

/// A decoded body of `resource` in its storage form.
pub(crate) fn to_storage(resource: &ResourceInfo, object: Value) -> Value {
    if let Some((to_storage, _)) = capstan_api::autoscaling::storage_conversion(resource) {
        return to_storage(&object);
    }
    match resource.custom {
        Some(custom) if custom.storage_version != resource.version => {
            let mut object = object;
            object["apiVersion"] =
                Value::String(format!("{}/{}", resource.group, custom.storage_version));
            object
        }
        _ => object,
    }
}

/// A stored object as the request's version shows it, when that differs (a patch applies to it).
pub(crate) fn to_request(resource: &ResourceInfo, stored: &Value) -> Option<Value> {
    if let Some((_, from_storage)) = capstan_api::autoscaling::storage_conversion(resource) {
        return Some(from_storage(stored));
    }
    let custom = resource.custom?;
    (custom.storage_version != resource.version).then(|| {
        let mut view = stored.clone();
        view["apiVersion"] = Value::String(resource.api_version());
        view
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renaming_touches_only_api_version_fields() {
        let conversion = Conversion::Rename {
            from: vec![br#""apiVersion":"x.io/v1""#.to_vec()],
            to: br#""apiVersion":"x.io/v1beta1""#.to_vec(),
        };
        let line = Bytes::from_static(
            br#"{"type":"ADDED","object":{"apiVersion":"x.io/v1","kind":"A","spec":{"note":"x.io/v1"}}}"#,
        );
        assert_eq!(
            &conversion.body(&line)[..],
            br#"{"type":"ADDED","object":{"apiVersion":"x.io/v1beta1","kind":"A","spec":{"note":"x.io/v1"}}}"#
        );
        let untouched = Bytes::from_static(br#"{"apiVersion":"x.io/v1beta1"}"#);
        assert_eq!(conversion.body(&untouched), untouched);
    }

    #[test]
    fn watch_lines_are_converted_whole_even_when_split_across_chunks() {
        let resource =
            capstan_api::find("autoscaling", "v1", "horizontalpodautoscalers").expect("registered");
        let conversion = Conversion::for_request(resource).expect("v1 converts");
        let event = br#"{"type":"ADDED","object":{"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler","spec":{"maxReplicas":3,"metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":50}}}]}}}
"#;
        let mut partial = Vec::new();
        let first = conversion.watch_chunk(&mut partial, &Bytes::copy_from_slice(&event[..40]));
        assert!(first.is_empty());
        let second = conversion.watch_chunk(&mut partial, &Bytes::copy_from_slice(&event[40..]));
        let line: Value = serde_json::from_slice(&second).expect("one JSON line");
        assert_eq!(line["object"]["apiVersion"], "autoscaling/v1");
        assert_eq!(line["object"]["spec"]["targetCPUUtilizationPercentage"], 50);
        assert!(partial.is_empty());
    }
}
