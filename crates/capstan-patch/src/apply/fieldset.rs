//! Field sets in structured-merge-diff's `FieldsV1` form: a trie of path elements `f:<field>`,
//! `k:{"name":"c"}` (list-map keys as JSON), `v:<json>` (set members) and `i:<n>`, where `.` marks
//! a node that is itself a member.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::meta::{Child, FieldMeta, ListType, Ty};

/// A set of field paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    pub(crate) fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    fn child_mut(&mut self, element: String) -> &mut FieldSet {
        self.children.entry(element).or_default()
    }

    /// The node at `path`, if any path goes through it.
    fn node(&self, path: &[String]) -> Option<&FieldSet> {
        path.iter()
            .try_fold(self, |node, element| node.children.get(element))
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|node| node.member)
    }

    /// Whether the set holds `path` or a path below it.
    pub(crate) fn touches(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|node| !node.is_empty())
    }

    /// Removes `path` and every path below it.
    pub(crate) fn remove_subtree(&mut self, path: &[String]) {
        let Some((last, parent)) = path.split_last() else {
            *self = FieldSet::default();
            return;
        };
        let mut node = self;
        for element in parent {
            match node.children.get_mut(element) {
                Some(child) => node = child,
                None => return,
            }
        }
        node.children.remove(last);
    }

    /// Every member path, parents before children.
    pub(crate) fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    pub(crate) fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (element, child) in &other.children {
            self.child_mut(element.clone()).union(child);
        }
    }

    pub(crate) fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            let rest = match other.children.get(element) {
                Some(other_child) => child.difference(other_child),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(element.clone(), rest);
            }
        }
        out
    }

    pub(crate) fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            if let Some(other_child) = other.children.get(element) {
                let both = child.intersection(other_child);
                if !both.is_empty() {
                    out.children.insert(element.clone(), both);
                }
            }
        }
        out
    }

    /// Parses `fieldsV1`.
    pub(crate) fn from_fields_v1(value: &Value) -> Result<FieldSet, String> {
        let Value::Object(map) = value else {
            return Err("fieldsV1 must be an object".to_owned());
        };
        let mut set = FieldSet::default();
        for (element, child) in map {
            if element == "." {
                set.member = true;
                continue;
            }
            if !["f:", "k:", "v:", "i:"]
                .iter()
                .any(|prefix| element.starts_with(prefix))
            {
                return Err(format!("unexpected path element {element:?} in fieldsV1"));
            }
            let mut child = FieldSet::from_fields_v1(child)?;
            if child.children.is_empty() {
                child.member = true;
            }
            set.children.insert(element.clone(), child);
        }
        Ok(set)
    }

    /// Renders `fieldsV1`.
    pub(crate) fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".to_owned(), Value::Object(Map::new()));
        }
        for (element, child) in &self.children {
            if !child.is_empty() {
                map.insert(element.clone(), child.to_fields_v1());
            }
        }
        Value::Object(map)
    }
}

/// `.spec.containers[name="app"].image`, as kube-apiserver prints paths in conflicts.
pub(crate) fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(key) = element.strip_prefix("k:") {
            let fields: Vec<String> = match serde_json::from_str::<Map<String, Value>>(key) {
                Ok(fields) => fields.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                Err(_) => vec![key.to_owned()],
            };
            out.push_str(&format!("[{}]", fields.join(",")));
        } else if let Some(value) = element.strip_prefix("v:") {
            out.push_str(&format!("[={value}]"));
        } else if let Some(index) = element.strip_prefix("i:") {
            out.push_str(&format!("[{index}]"));
        }
    }
    out
}

fn field(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push_str("f:");
    out.push_str(name);
    out
}

/// Appends `value` as canonical JSON (object keys sorted) for `k:` and `v:` elements. Written
/// into one buffer: managedFields are computed on every write, and these elements on every item
/// of every keyed list.
fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            write_object(out, entries.into_iter());
        }
        Value::Array(list) => {
            out.push('[');
            for (i, item) in list.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        Value::String(text) => write_json_string(out, text),
        other => out.push_str(&other.to_string()),
    }
}

/// Appends `{"k":v,...}` of entries already in key order.
fn write_object<'a>(out: &mut String, entries: impl Iterator<Item = (&'a String, &'a Value)>) {
    out.push('{');
    for (i, (key, value)) in entries.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(out, key);
        out.push(':');
        write_canonical(out, value);
    }
    out.push('}');
}

fn write_json_string(out: &mut String, text: &str) {
    if text
        .bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&Value::String(text.to_owned()).to_string());
    }
}

/// The `k:` element of a list-map item: its key fields (defaulted where the item omits them).
pub(crate) fn key_element(item: &Value, keys: &[(&str, Option<&str>)]) -> Option<String> {
    let Value::Object(item) = item else {
        return None;
    };
    let defaults: Vec<(String, Value)> = keys
        .iter()
        .filter(|(key, _)| item.get(*key).is_none_or(Value::is_null))
        .filter_map(|(key, default)| {
            default.map(|d| ((*key).to_owned(), Value::String(d.to_owned())))
        })
        .collect();
    let mut fields: Vec<(&String, &Value)> = item
        .iter()
        .filter(|(key, value)| !value.is_null() && keys.iter().any(|(k, _)| k == key))
        .chain(defaults.iter().map(|(k, v)| (k, v)))
        .collect();
    if fields.is_empty() {
        return None;
    }
    fields.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::with_capacity(64);
    out.push_str("k:");
    write_object(&mut out, fields.into_iter());
    Some(out)
}

fn value_element(item: &Value) -> String {
    let mut out = String::with_capacity(32);
    out.push_str("v:");
    write_canonical(&mut out, item);
    out
}

/// The child type of a list's elements, with no field metadata of its own.
fn item_child(child: Child) -> Child {
    Child {
        ty: child.ty,
        meta: FieldMeta::UNKNOWN,
        declared: true,
    }
}

/// Every field path `value` sets, by structured-merge-diff's rules: scalars, atomic values, list
/// items, map entries, empty maps and nulls are members; struct fields with content are not.
pub(crate) fn to_set(value: &Value, ty: Ty) -> FieldSet {
    let mut set = FieldSet::default();
    if let Value::Object(map) = value {
        walk_map(map, ty, &mut set);
    }
    set
}

fn walk_map(map: &Map<String, Value>, ty: Ty, set: &mut FieldSet) {
    for (key, value) in map {
        let child = ty.child(key);
        let node = set.child_mut(field(key));
        walk_value(value, child, node);
        let empty_map = value.as_object().is_some_and(Map::is_empty);
        if value.is_null() || empty_map || !child.declared {
            node.member = true;
        }
    }
}

fn walk_value(value: &Value, child: Child, node: &mut FieldSet) {
    match value {
        Value::Object(map) if !child.ty.atomic() => walk_map(map, child.ty, node),
        Value::Array(items) => match child.meta.list_type {
            ListType::Atomic => node.member = true,
            ListType::Set => {
                for item in items {
                    node.child_mut(value_element(item)).member = true;
                }
            }
            ListType::Map(keys) => {
                for item in items {
                    match key_element(item, keys) {
                        Some(key) => {
                            let item_node = node.child_mut(key);
                            item_node.member = true;
                            walk_value(item, item_child(child), item_node);
                        }
                        None => node.member = true,
                    }
                }
            }
        },
        _ => node.member = true,
    }
}

/// The members of `set` (the fields of `new`) whose value in `old` is missing or different: one
/// walk of the set with both objects, instead of a lookup from the root per path. A member with
/// members below it (a list item with fields) is not compared itself; its members are.
pub(crate) fn changed_members(set: &FieldSet, old: &Value, new: &Value, ty: Ty) -> FieldSet {
    let root = Child {
        ty,
        meta: FieldMeta::UNKNOWN,
        declared: true,
    };
    changed_below(set, Some(old), Some(new), root)
}

fn changed_below(set: &FieldSet, old: Option<&Value>, new: Option<&Value>, at: Child) -> FieldSet {
    let mut out = FieldSet {
        member: set.member
            && match old {
                None => true,
                Some(before) => set.children.is_empty() && Some(before) != new,
            },
        children: BTreeMap::new(),
    };
    for (element, below) in &set.children {
        let (old_child, new_child, next) = match element.strip_prefix("f:") {
            Some(name) => (
                old.and_then(|v| v.as_object()?.get(name)),
                new.and_then(|v| v.as_object()?.get(name)),
                at.ty.child(name),
            ),
            None => (
                old.and_then(|v| find_item(v.as_array()?, element, at)),
                new.and_then(|v| find_item(v.as_array()?, element, at)),
                item_child(at),
            ),
        };
        let changed = changed_below(below, old_child, new_child, next);
        if !changed.is_empty() {
            out.children.insert(element.clone(), changed);
        }
    }
    out
}

fn find_item<'a>(list: &'a [Value], element: &str, child: Child) -> Option<&'a Value> {
    find_index(list, element, child).and_then(|at| list.get(at))
}

fn find_index(list: &[Value], element: &str, child: Child) -> Option<usize> {
    if element.starts_with("k:") {
        let ListType::Map(keys) = child.meta.list_type else {
            return None;
        };
        list.iter()
            .position(|item| key_element(item, keys).as_deref() == Some(element))
    } else if element.starts_with("v:") {
        list.iter().position(|item| value_element(item) == element)
    } else {
        element.strip_prefix("i:")?.parse().ok()
    }
}

/// Removes the value at a field path; returns whether something was removed.
pub(crate) fn remove_at(value: &mut Value, path: &[String], ty: Ty) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    let mut node = value;
    let mut child = Child {
        ty,
        meta: FieldMeta::UNKNOWN,
        declared: true,
    };
    for element in parent {
        if let Some(name) = element.strip_prefix("f:") {
            let Some(next) = node.as_object_mut().and_then(|map| map.get_mut(name)) else {
                return false;
            };
            node = next;
            child = child.ty.child(name);
        } else {
            let Some(list) = node.as_array_mut() else {
                return false;
            };
            let Some(at) = find_index(list, element, child) else {
                return false;
            };
            node = &mut list[at];
            child = item_child(child);
        }
    }
    if let Some(name) = last.strip_prefix("f:") {
        return node
            .as_object_mut()
            .and_then(|map| map.remove(name))
            .is_some();
    }
    let Some(list) = node.as_array_mut() else {
        return false;
    };
    match find_index(list, last, child) {
        Some(at) if at < list.len() => {
            list.remove(at);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::meta;

    fn deployment() -> Ty {
        meta::root(capstan_api::find_kind("apps/v1", "Deployment").expect("registered"))
    }

    #[test]
    fn elements_are_canonical_json_with_sorted_keys_and_kube_escapes() {
        // serde_json without preserve_order sorts object keys: its output is the reference.
        let item = json!({"protocol": "UDP", "port": 53, "name": "dns\"q\\ \u{1}é", "x": {"b": [1, null, true], "a": 1.5}});
        let expected = format!(
            "k:{}",
            json!({"name": item["name"], "port": 53, "protocol": "UDP"})
        );
        let keys = [("port", None), ("protocol", Some("TCP")), ("name", None)];
        assert_eq!(
            key_element(&item, &keys).as_deref(),
            Some(expected.as_str())
        );
        // A missing key takes its default; a null one too; one with neither is left out.
        let item = json!({"port": 80, "name": null});
        assert_eq!(
            key_element(&item, &keys).as_deref(),
            Some(r#"k:{"port":80,"protocol":"TCP"}"#)
        );
        assert_eq!(key_element(&json!({"other": 1}), &[("port", None)]), None);
        let value = json!({"z": "1", "a": ["x\ny", {"d": 1, "c": 2}]});
        assert_eq!(value_element(&value), format!("v:{value}"));
        assert_eq!(value_element(&json!("plain")), r#"v:"plain""#);
    }

    #[test]
    fn changed_members_are_the_new_or_different_leaves_only() {
        let old = json!({
            "metadata": {"labels": {"app": "web", "tier": "a"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "app", "image": "app:1", "args": ["x"]},
                {"name": "side", "image": "side:1"}
            ]}}}
        });
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][1]["image"] = json!("side:2");
        new["metadata"]["labels"]["tier"] = json!("b");
        new["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .expect("list")
            .push(json!({"name": "third", "image": "t:1"}));
        let changed = changed_members(&to_set(&new, deployment()), &old, &new, deployment());
        let expected = json!({
            "f:metadata": {"f:labels": {"f:tier": {}}},
            "f:spec": {"f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"side\"}": {"f:image": {}},
                "k:{\"name\":\"third\"}": {".": {}, "f:image": {}, "f:name": {}}
            }}}}
        });
        assert_eq!(changed.to_fields_v1(), expected);
        assert!(changed_members(&to_set(&old, deployment()), &old, &old, deployment()).is_empty());
    }

    #[test]
    fn fields_v1_round_trip_and_member_rules() {
        let object = json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{
                    "name": "app", "image": "app:1",
                    "ports": [{"containerPort": 80}],
                    "args": ["a", "b"]
                }]}}
            }
        });
        let set = to_set(&object, deployment());
        let expected = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {
                    ".": {}, "f:name": {}, "f:image": {}, "f:args": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                }}}}
            }
        });
        assert_eq!(set.to_fields_v1(), expected);
        assert_eq!(FieldSet::from_fields_v1(&expected).expect("parses"), set);
    }

    #[test]
    fn paths_display_like_kube_apiserver() {
        let path = vec![
            "f:spec".to_owned(),
            "f:template".to_owned(),
            "f:spec".to_owned(),
            "f:containers".to_owned(),
            "k:{\"name\":\"app\"}".to_owned(),
            "f:image".to_owned(),
        ];
        assert_eq!(
            display_path(&path),
            ".spec.template.spec.containers[name=\"app\"].image"
        );
        assert_eq!(
            display_path(&[
                "f:metadata".to_owned(),
                "f:finalizers".to_owned(),
                "v:\"a\"".to_owned()
            ]),
            ".metadata.finalizers[=\"a\"]"
        );
    }

    #[test]
    fn set_algebra() {
        let a = FieldSet::from_fields_v1(&json!({"f:a": {}, "f:b": {"f:c": {}, "f:d": {}}}))
            .expect("parses");
        let b = FieldSet::from_fields_v1(&json!({"f:b": {"f:c": {}}, "f:e": {}})).expect("parses");
        assert_eq!(
            a.difference(&b).to_fields_v1(),
            json!({"f:a": {}, "f:b": {"f:d": {}}})
        );
        assert_eq!(
            a.intersection(&b).to_fields_v1(),
            json!({"f:b": {"f:c": {}}})
        );
        let mut u = a.clone();
        u.union(&b);
        assert_eq!(
            u.to_fields_v1(),
            json!({"f:a": {}, "f:b": {"f:c": {}, "f:d": {}}, "f:e": {}})
        );
        assert!(a.touches(&["f:b".to_owned()]));
        assert!(!a.contains(&["f:b".to_owned()]));
    }
}
