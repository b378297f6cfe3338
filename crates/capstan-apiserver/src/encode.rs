//! Serialising an object once for a write: the bytes the store keeps (no `metadata.resourceVersion`,
//! which the store tracks itself) and, once the write's revision is known, the bytes clients and the
//! watch cache get (with it), without encoding the object a second time.
//!
//! The output matches `serde_json::to_vec` of the object with `metadata.resourceVersion` inserted:
//! keys in the map's own order, the resourceVersion where the map would put it.

use bytes::Bytes;
use serde_json::{Map, Value};

/// An object serialised without `metadata.resourceVersion`, split where that field goes.
#[derive(Debug, Clone)]
pub(crate) struct SplitJson {
    /// What the store keeps: valid JSON on its own.
    stored: Bytes,
    /// Where `"resourceVersion":"N"` goes in `stored`, and whether metadata has fields before and
    /// after that point (for the commas).
    at: usize,
    before: bool,
    after: bool,
}

impl SplitJson {
    /// Serialises `object`; `None` when it is not a JSON object with an object `metadata` (then the
    /// caller falls back to plain serialisation).
    pub(crate) fn new(object: &Value) -> Option<Self> {
        let root = object.as_object()?;
        root.get("metadata")?.as_object()?;
        let mut out = Vec::with_capacity(4096);
        let mut at = None;
        let (mut before, mut after) = (false, false);
        out.push(b'{');
        for (i, (key, value)) in root.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_key(&mut out, key)?;
            match value {
                Value::Object(meta) if key == "metadata" => {
                    let (b, a, position) = write_metadata(&mut out, meta)?;
                    before = b;
                    after = a;
                    at = Some(position);
                }
                _ => serde_json::to_writer(&mut out, value).ok()?,
            }
        }
        out.push(b'}');
        Some(Self {
            stored: Bytes::from(out),
            at: at?,
            before,
            after,
        })
    }

    /// An encoding made elsewhere (see `binding`): `stored` without resourceVersion, which goes at
    /// `at`, with metadata fields `before` and/or `after` that place.
    pub(crate) fn from_parts(stored: Vec<u8>, at: usize, before: bool, after: bool) -> Self {
        Self {
            stored: Bytes::from(stored),
            at,
            before,
            after,
        }
    }

    /// The bytes to store.
    pub(crate) fn stored(&self) -> Bytes {
        self.stored.clone()
    }

    pub(crate) fn stored_bytes(&self) -> &[u8] {
        &self.stored
    }

    /// Writes the object with `metadata.resourceVersion` set to `revision` into `out`.
    pub(crate) fn write_with_revision(&self, revision: i64, out: &mut Vec<u8>) {
        out.reserve(self.stored.len() + 48);
        out.extend_from_slice(&self.stored[..self.at]);
        if self.before {
            out.push(b',');
        }
        out.extend_from_slice(b"\"resourceVersion\":\"");
        out.extend_from_slice(revision.to_string().as_bytes());
        out.push(b'"');
        // After a field, the rest starts with the comma that follows it; first, a comma goes here.
        if !self.before && self.after {
            out.push(b',');
        }
        out.extend_from_slice(&self.stored[self.at..]);
    }

    /// The object with `metadata.resourceVersion` set to `revision`.
    #[cfg(test)]
    pub(crate) fn with_revision(&self, revision: i64) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_with_revision(revision, &mut out);
        out
    }
}

/// Whether `serde_json::Map` keeps keys sorted (not built with `preserve_order`).
pub(crate) fn maps_sort_keys() -> bool {
    static SORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SORTED.get_or_init(|| {
        let mut map = Map::new();
        map.insert("b".into(), Value::Null);
        map.insert("a".into(), Value::Null);
        map.keys().next().is_some_and(|k| k == "a")
    })
}

pub(crate) fn write_key(out: &mut Vec<u8>, key: &str) -> Option<()> {
    serde_json::to_writer(&mut *out, key).ok()?;
    out.push(b':');
    Some(())
}

/// Writes `meta` without `resourceVersion`; returns whether fields come before and after the place
/// `resourceVersion` belongs, and that place.
fn write_metadata(out: &mut Vec<u8>, meta: &Map<String, Value>) -> Option<(bool, bool, usize)> {
    write_metadata_fields(
        out,
        meta.iter().map(|(k, v)| (k.as_str(), v)),
        |out, value| serde_json::to_writer(out, value).ok(),
    )
}

/// [`write_metadata`] over any map's fields in their order, each value written by `write`.
pub(crate) fn write_metadata_fields<'a, T>(
    out: &mut Vec<u8>,
    fields: impl Iterator<Item = (&'a str, T)> + Clone,
    write: impl Fn(&mut Vec<u8>, T) -> Option<()>,
) -> Option<(bool, bool, usize)> {
    // Where the map itself would put the key: in key order (serde_json's default map), or where it
    // already is, else last (`preserve_order`).
    let index = if maps_sort_keys() {
        fields
            .clone()
            .filter(|(k, _)| *k < "resourceVersion")
            .count()
    } else {
        let mut keys = fields.clone().map(|(k, _)| k);
        let len = fields.clone().count();
        keys.position(|k| k == "resourceVersion").unwrap_or(len)
    };
    out.push(b'{');
    let mut written = 0;
    let mut at = None;
    for (key, value) in fields.filter(|(k, _)| *k != "resourceVersion") {
        if written == index {
            at = Some(out.len());
        }
        if written > 0 {
            out.push(b',');
        }
        write_key(out, key)?;
        write(out, value)?;
        written += 1;
    }
    let at = at.unwrap_or(out.len());
    out.push(b'}');
    Some((index > 0, index < written, at))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn expected(object: &Value, revision: i64) -> Vec<u8> {
        let mut object = object.clone();
        object["metadata"]["resourceVersion"] = json!(revision.to_string());
        serde_json::to_vec(&object).expect("serialises")
    }

    #[test]
    fn matches_plain_serialisation() {
        let cases = [
            json!({"metadata": {}}),
            json!({"metadata": {"name": "a"}}),
            json!({"metadata": {"uid": "u"}}),
            json!({"metadata": {"name": "a", "uid": "u"}}),
            json!({"metadata": {"name": "a", "resourceVersion": "7", "uid": "u"}}),
            json!({"apiVersion": "v1", "kind": "Pod", "data": {"metadata": {"x": 1}},
                   "metadata": {"annotations": {"a": "\"resourceVersion\":\"1\""},
                                "labels": {"app": "x"}, "managedFields": [{"manager": "m"}],
                                "name": "p", "namespace": "n", "uid": "u"},
                   "spec": {"f": 1.5, "n": null, "s": "é\n"}, "status": {}}),
        ];
        for object in cases {
            let split = SplitJson::new(&object).expect("an object with metadata");
            for revision in [1, 42, 1_000_000_007] {
                assert_eq!(
                    String::from_utf8(split.with_revision(revision)).expect("utf-8"),
                    String::from_utf8(expected(&object, revision)).expect("utf-8"),
                );
            }
            let mut without = object.clone();
            metadata_remove_rv(&mut without);
            let stored: Value = serde_json::from_slice(&split.stored()).expect("stored is JSON");
            assert_eq!(stored, without);
        }
    }

    fn metadata_remove_rv(object: &mut Value) {
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
    }

    #[test]
    fn objects_without_metadata_are_refused() {
        assert!(SplitJson::new(&json!({"spec": {}})).is_none());
        assert!(SplitJson::new(&json!({"metadata": "x"})).is_none());
        assert!(SplitJson::new(&json!([1])).is_none());
    }
}
