//! The edit a `pods/binding` makes to a pod (kube's `assignPod`: `spec.nodeName` and a
//! `PodScheduled=True` condition; no managedFields entry, as kube writes it straight to storage).
//!
//! Bindings are the scheduler's whole write load, so the usual path (decode the cached pod into a
//! tree, edit, encode) is the slow one: most of a pod's bytes are managedFields and container specs
//! that a binding never reads. [`bind_cached`] edits the cached JSON two levels deep instead
//! (top-level fields, and those of `metadata` and `spec`, kept as raw JSON text; `status` decoded)
//! and writes the same bytes [`bind_value`] + [`SplitJson::new`] would. Anything unusual (escaped
//! field names, a non-object `status`, maps that keep insertion order) falls back to the tree.

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::encode::{SplitJson, maps_sort_keys, write_key, write_metadata_fields};

/// Why a pod cannot be bound, in kube's words.
fn deleting() -> String {
    "pod is being deleted, cannot be assigned to a host".to_owned()
}

fn assigned(name: &str, current: &str) -> String {
    format!("pod {name} is already assigned to node \"{current}\"")
}

fn scheduled_condition(now: &str) -> Value {
    json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now})
}

/// Sets `status.conditions`' PodScheduled entry to True (replacing an older one, last in the list).
fn set_scheduled(status: &mut Map<String, Value>, now: &str) {
    let scheduled = scheduled_condition(now);
    match status.get_mut("conditions").and_then(Value::as_array_mut) {
        Some(conditions) => {
            conditions.retain(|c| c["type"] != "PodScheduled");
            conditions.push(scheduled);
        }
        None => {
            status.insert("conditions".to_owned(), json!([scheduled]));
        }
    }
}

/// Binds the decoded `pod` to `node` in place (and drops its resourceVersion, which the store
/// tracks); `Err` is the refusal.
pub(crate) fn bind_value(pod: &mut Value, name: &str, node: &str, now: &str) -> Result<(), String> {
    if pod["metadata"]
        .get("deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        return Err(deleting());
    }
    if let Some(current) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Err(assigned(name, current));
    }
    let root = crate::objects::metadata_mut(pod);
    root.remove("resourceVersion");
    let Some(root) = pod.as_object_mut() else {
        return Err("the pod is not an object".to_owned());
    };
    let spec = root.entry("spec").or_insert_with(|| json!({}));
    if !spec.is_object() {
        *spec = json!({});
    }
    spec["nodeName"] = json!(node);
    let status = root.entry("status").or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    if let Some(status) = status.as_object_mut() {
        set_scheduled(status, now);
    }
    Ok(())
}

/// What [`bind_cached`] made of a cached pod.
#[derive(Debug)]
pub(crate) enum CachedBind {
    /// The bound pod's encoding, and a partial tree of it (metadata name, namespace and labels,
    /// `spec`'s scalar fields, `status`) that has every field the watch cache indexes pods by.
    Bound { split: SplitJson, selectable: Value },
    /// Deleting or already assigned, as cached: the caller reads the store to be sure.
    Refused,
}

/// The object's fields in their order, values as raw JSON text.
struct Fields<'a>(Vec<(&'a str, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(entry) = map.next_entry::<&'de str, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// Keys in order, as written by a sorted map (what the fast path relies on).
    fn sorted(&self) -> bool {
        self.0.windows(2).all(|w| w[0].0 < w[1].0)
    }
}

/// A top-level field as the output writes it.
enum Part<'a> {
    Raw(&'a RawValue),
    Metadata,
    Spec,
    Status,
}

/// The cached pod, read in one pass: the top-level fields in order (raw, but for metadata and spec,
/// whose own fields are kept raw, and status, decoded).
struct CachedPod<'a> {
    parts: Vec<(&'a str, Part<'a>)>,
    meta: Option<Fields<'a>>,
    spec: Option<Fields<'a>>,
    status: Option<Value>,
}

impl<'de> Deserialize<'de> for CachedPod<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PodVisitor;
        impl<'de> Visitor<'de> for PodVisitor {
            type Value = CachedPod<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a pod")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CachedPod<'de>, A::Error> {
                let mut pod = CachedPod {
                    parts: Vec::with_capacity(5),
                    meta: None,
                    spec: None,
                    status: None,
                };
                while let Some(key) = map.next_key::<&'de str>()? {
                    let part = match key {
                        "metadata" => {
                            pod.meta = Some(map.next_value()?);
                            Part::Metadata
                        }
                        "spec" => {
                            pod.spec = Some(map.next_value()?);
                            Part::Spec
                        }
                        "status" => {
                            pod.status = Some(map.next_value()?);
                            Part::Status
                        }
                        _ => Part::Raw(map.next_value()?),
                    };
                    pod.parts.push((key, part));
                }
                Ok(pod)
            }
        }
        deserializer.deserialize_map(PodVisitor)
    }
}

/// Binds the pod whose cached JSON is `json` to `node`, without decoding what the binding does not
/// touch; `None` when the pod is not in the shape this path handles (the caller decodes it then).
pub(crate) fn bind_cached(json: &[u8], node: &str, now: &str) -> Option<CachedBind> {
    if !maps_sort_keys() {
        return None;
    }
    let CachedPod {
        mut parts,
        meta,
        spec,
        status,
    } = serde_json::from_slice(json).ok()?;
    let meta = meta?;
    let spec = spec.unwrap_or(Fields(Vec::new()));
    let top_sorted = parts.windows(2).all(|w| w[0].0 < w[1].0);
    if !(top_sorted && meta.sorted() && spec.sorted()) {
        return None;
    }
    if meta
        .get("deletionTimestamp")
        .is_some_and(|t| t.get() != "null")
    {
        return Some(CachedBind::Refused);
    }
    if let Some(raw) = spec.get("nodeName") {
        let current: Option<String> = serde_json::from_str(raw.get()).ok()?;
        if current.is_some_and(|c| !c.is_empty()) {
            return Some(CachedBind::Refused);
        }
    }
    let mut status = match status {
        Some(Value::Object(status)) => status,
        Some(Value::Null) | None => Map::new(),
        Some(_) => return None,
    };
    set_scheduled(&mut status, now);
    // `spec` and `status` go where a sorted map puts them when the pod has none.
    for (key, part) in [("spec", Part::Spec), ("status", Part::Status)] {
        if let Err(at) = parts.binary_search_by(|(k, _)| (*k).cmp(key)) {
            parts.insert(at, (key, part));
        }
    }

    let node_json = serde_json::to_string(node).ok()?;
    let mut out = Vec::with_capacity(json.len() + 160);
    let mut split_at = None;
    out.push(b'{');
    for (i, (key, part)) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_key(&mut out, key)?;
        match part {
            Part::Raw(raw) => out.extend_from_slice(raw.get().as_bytes()),
            Part::Metadata => {
                let fields = meta.0.iter().map(|&(k, raw)| (k, raw));
                let write = |out: &mut Vec<u8>, raw: &RawValue| {
                    out.extend_from_slice(raw.get().as_bytes());
                    Some(())
                };
                split_at = Some(write_metadata_fields(&mut out, fields, write)?);
            }
            Part::Spec => write_spec(&mut out, &spec, &node_json)?,
            Part::Status => serde_json::to_writer(&mut out, &status).ok()?,
        }
    }
    out.push(b'}');
    let (before, after, at) = split_at?;

    let mut selectable_meta = Map::new();
    for key in ["name", "namespace", "labels"] {
        if let Some(raw) = meta.get(key) {
            selectable_meta.insert(key.to_owned(), serde_json::from_str(raw.get()).ok()?);
        }
    }
    let mut selectable_spec = Map::new();
    for (key, raw) in &spec.0 {
        if !raw.get().starts_with(['{', '[']) {
            selectable_spec.insert((*key).to_owned(), serde_json::from_str(raw.get()).ok()?);
        }
    }
    selectable_spec.insert("nodeName".to_owned(), json!(node));
    let selectable = Value::Object(Map::from_iter([
        ("metadata".to_owned(), Value::Object(selectable_meta)),
        ("spec".to_owned(), Value::Object(selectable_spec)),
        ("status".to_owned(), Value::Object(status)),
    ]));
    Some(CachedBind::Bound {
        split: SplitJson::from_parts(out, at, before, after),
        selectable,
    })
}

/// `spec` with `nodeName` set (replaced, or inserted in key order).
fn write_spec(out: &mut Vec<u8>, spec: &Fields, node_json: &str) -> Option<()> {
    out.push(b'{');
    let mut written = 0;
    let mut node_written = false;
    let write_node = |out: &mut Vec<u8>, written: &mut usize| -> Option<()> {
        if *written > 0 {
            out.push(b',');
        }
        write_key(out, "nodeName")?;
        out.extend_from_slice(node_json.as_bytes());
        *written += 1;
        Some(())
    };
    for (key, raw) in &spec.0 {
        if !node_written && *key >= "nodeName" {
            write_node(out, &mut written)?;
            node_written = true;
            if *key == "nodeName" {
                continue;
            }
        }
        if written > 0 {
            out.push(b',');
        }
        write_key(out, key)?;
        out.extend_from_slice(raw.get().as_bytes());
        written += 1;
    }
    if !node_written {
        write_node(out, &mut written)?;
    }
    out.push(b'}');
    Some(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: &str = "2026-12-03T07:00:00Z";

    /// The tree path's answer for `pod`: the stored bytes with resourceVersion 9.
    fn by_value(pod: &Value) -> Result<Vec<u8>, String> {
        let mut pod = pod.clone();
        bind_value(&mut pod, "web", "node-1", NOW)?;
        Ok(SplitJson::new(&pod).expect("split").with_revision(9))
    }

    fn cases() -> Vec<Value> {
        let full = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "5",
                "creationTimestamp": "2026-12-03T06:00:00Z", "labels": {"app": "web", "tier": "a\"b"},
                "annotations": {"note": "é\n\u{1}"},
                "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {}}}}}]},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": "100m"}}}],
                "dnsPolicy": "ClusterFirst", "priority": 0, "restartPolicy": "Always",
                "schedulerName": "default-scheduler", "terminationGracePeriodSeconds": 30,
                "hostNetwork": false, "overhead": null},
            "status": {"phase": "Pending", "qosClass": "Burstable", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes"},
                {"type": "Other", "status": "True"}]}
        });
        let mut no_status = full.clone();
        no_status.as_object_mut().expect("object").remove("status");
        let mut null_node = full.clone();
        null_node["spec"]["nodeName"] = Value::Null;
        let mut empty_node = full.clone();
        empty_node["spec"]["nodeName"] = json!("");
        let mut null_conditions = full.clone();
        null_conditions["status"]["conditions"] = Value::Null;
        let mut no_rv = full.clone();
        no_rv["metadata"]
            .as_object_mut()
            .expect("object")
            .remove("resourceVersion");
        let mut rv_last = full.clone();
        rv_last["metadata"] =
            json!({"name": "web", "namespace": "default", "resourceVersion": "5"});
        let mut rv_only = full.clone();
        rv_only["metadata"] = json!({"resourceVersion": "5"});
        let mut null_deletion = full.clone();
        null_deletion["metadata"]["deletionTimestamp"] = Value::Null;
        vec![
            full,
            no_status,
            null_node,
            empty_node,
            null_conditions,
            no_rv,
            rv_last,
            rv_only,
            null_deletion,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}}),
            json!({"metadata": {"name": "web"}, "zz": [1, 2.5, "x"]}),
        ]
    }

    #[test]
    fn writes_what_the_tree_path_writes() {
        for pod in cases() {
            let json = serde_json::to_vec(&pod).expect("json");
            let Some(CachedBind::Bound { split, selectable }) = bind_cached(&json, "node-1", NOW)
            else {
                panic!("no fast binding for {pod}");
            };
            let fast = String::from_utf8(split.with_revision(9)).expect("utf-8");
            let slow = String::from_utf8(by_value(&pod).expect("binds")).expect("utf-8");
            assert_eq!(fast, slow, "for {pod}");
            // What the cache indexes by: the same as the full bound object's.
            let bound: Value = serde_json::from_str(&slow).expect("json");
            assert_eq!(selectable["spec"]["nodeName"], "node-1");
            for path in [
                ["metadata", "name"],
                ["metadata", "namespace"],
                ["metadata", "labels"],
                ["spec", "restartPolicy"],
                ["spec", "schedulerName"],
                ["spec", "hostNetwork"],
                ["status", "phase"],
                ["status", "podIP"],
            ] {
                assert_eq!(
                    selectable[path[0]][path[1]], bound[path[0]][path[1]],
                    "{path:?} of {pod}"
                );
            }
        }
    }

    #[test]
    fn refuses_what_the_tree_path_refuses() {
        let mut assigned = cases().remove(0);
        assigned["spec"]["nodeName"] = json!("node-0");
        let mut deleting = cases().remove(0);
        deleting["metadata"]["deletionTimestamp"] = json!(NOW);
        for pod in [assigned, deleting] {
            let json = serde_json::to_vec(&pod).expect("json");
            assert!(
                matches!(bind_cached(&json, "node-1", NOW), Some(CachedBind::Refused)),
                "{pod}"
            );
            assert!(by_value(&pod).is_err(), "{pod}");
        }
        assert_eq!(
            by_value(&json!({"metadata": {"name": "web"}, "spec": {"nodeName": "node-0"}})),
            Err("pod web is already assigned to node \"node-0\"".to_owned())
        );
    }

    #[test]
    fn leaves_unusual_shapes_to_the_tree_path() {
        for json in [
            &br#"{"metadata":{"na\u006de":"web"},"spec":{}}"#[..],
            br#"{"metadata":{"name":"web"},"status":[1]}"#,
            br#"{"spec":{}}"#,
            br#"{"metadata":{"name":"web"},"spec":{"nodeName":5}}"#,
            br#"{"metadata":{"name":"web"}"#,
            br#"[1]"#,
        ] {
            assert!(
                bind_cached(json, "node-1", NOW).is_none(),
                "{}",
                String::from_utf8_lossy(json)
            );
        }
    }
}
