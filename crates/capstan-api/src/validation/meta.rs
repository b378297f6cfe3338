//! ObjectMeta, labels, annotations and label selectors (`k8s.io/apimachinery/pkg/api/validation`
//! and `pkg/apis/meta/v1/validation`).

use serde_json::Value;

use super::json::{arr, child, get, index, meta, obj, str_map, str_of};
use super::names::{NameRule, is_label_value, is_qualified_name};
use super::{FieldError, forbidden, gofmt, invalid_num, invalid_raw, invalid_str, required};

pub(crate) const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// `ValidateObjectMeta`; `rule` is `None` when the name is not to be checked.
pub(crate) fn validate_object_meta(
    errs: &mut Vec<FieldError>,
    object: &Value,
    namespaced: bool,
    rule: Option<NameRule>,
) {
    let m = meta(object);
    let path = "metadata";
    let generate_name = str_of(m, "generateName");
    let name = str_of(m, "name");
    if let Some(rule) = rule {
        if !generate_name.is_empty() {
            for msg in rule.check(generate_name, true) {
                errs.push(invalid_str(child(path, "generateName"), generate_name, msg));
            }
        }
        if name.is_empty() {
            errs.push(required(
                child(path, "name"),
                "name or generateName is required",
            ));
        } else {
            for msg in rule.check(name, false) {
                errs.push(invalid_str(child(path, "name"), name, msg));
            }
        }
    }
    if !namespaced && !str_of(m, "namespace").is_empty() {
        errs.push(forbidden(
            child(path, "namespace"),
            "not allowed on this type",
        ));
    }
    if let Some(g) = super::json::int(m, "generation").filter(|g| *g < 0) {
        errs.push(invalid_num(
            child(path, "generation"),
            g,
            "must be greater than or equal to 0",
        ));
    }
    validate_labels(errs, m, "labels", &child(path, "labels"));
    validate_annotations(errs, m, &child(path, "annotations"));
    validate_owner_references(errs, m, &child(path, "ownerReferences"));
    validate_finalizers(errs, arr(m, "finalizers"), &child(path, "finalizers"));
}

/// `ValidateObjectMetaUpdate`: identity fields may not change.
pub(crate) fn validate_object_meta_update(errs: &mut Vec<FieldError>, new: &Value, old: &Value) {
    let (n, o) = (meta(new), meta(old));
    let path = "metadata";
    if get(o, "deletionTimestamp").is_some() {
        let old_finalizers: Vec<&str> = arr(o, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut extra: Vec<&str> = arr(n, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .filter(|f| !old_finalizers.contains(f))
            .collect();
        extra.sort_unstable();
        extra.dedup();
        if !extra.is_empty() {
            let list: Vec<String> = extra.iter().map(|f| gofmt::quote(f)).collect();
            errs.push(forbidden(
                child(path, "finalizers"),
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    list.join(", ")
                ),
            ));
        }
    }
    if let (Some(ng), Some(og)) = (
        super::json::int(n, "generation"),
        super::json::int(o, "generation"),
    ) && ng < og
    {
        errs.push(invalid_num(
            child(path, "generation"),
            ng,
            "must not be decremented",
        ));
    }
    super::immutable_str(
        errs,
        &child(path, "name"),
        str_of(n, "name"),
        str_of(o, "name"),
    );
    super::immutable_str(
        errs,
        &child(path, "namespace"),
        str_of(n, "namespace"),
        str_of(o, "namespace"),
    );
    // The server keeps the stored uid when the request has none.
    if !str_of(n, "uid").is_empty() {
        super::immutable_str(
            errs,
            &child(path, "uid"),
            str_of(n, "uid"),
            str_of(o, "uid"),
        );
    }
}

/// `ValidateLabels` of the map at `v[key]`; errors carry `path` (no key), as Kubernetes does.
pub(crate) fn validate_labels(errs: &mut Vec<FieldError>, v: &Value, key: &str, path: &str) {
    for (k, val) in str_map(v, key) {
        validate_label_name(errs, k, path);
        for msg in is_label_value(val) {
            errs.push(invalid_str(path, val, msg));
        }
    }
}

pub(crate) fn validate_label_name(errs: &mut Vec<FieldError>, name: &str, path: &str) {
    for msg in is_qualified_name(name) {
        errs.push(invalid_str(path, name, msg));
    }
}

pub(crate) fn validate_annotations(errs: &mut Vec<FieldError>, m: &Value, path: &str) {
    let mut total = 0usize;
    for (k, v) in str_map(m, "annotations") {
        for msg in is_qualified_name(&k.to_lowercase()) {
            errs.push(invalid_str(path, k, msg));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(super::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

fn validate_owner_references(errs: &mut Vec<FieldError>, m: &Value, path: &str) {
    let mut controller: Option<String> = None;
    for r in arr(m, "ownerReferences") {
        let api_version = str_of(r, "apiVersion");
        let version = api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            errs.push(invalid_str(
                child(path, "apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        for (field, msg) in [
            ("kind", "kind must not be empty"),
            ("name", "name must not be empty"),
            ("uid", "uid must not be empty"),
        ] {
            if str_of(r, field).is_empty() {
                errs.push(invalid_str(child(path, field), "", msg));
            }
        }
        if api_version == "v1" && str_of(r, "kind") == "Event" {
            errs.push(invalid_raw(
                path,
                r.to_string(),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if super::json::boolean(r, "controller") == Some(true) {
            let this = format!("{}/{}", str_of(r, "kind"), str_of(r, "name"));
            match &controller {
                Some(first) => errs.push(invalid_raw(
                    path,
                    Value::Array(arr(m, "ownerReferences").to_vec()).to_string(),
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"
                    ),
                )),
                None => controller = Some(this),
            }
        }
    }
}

const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

fn validate_finalizers(errs: &mut Vec<FieldError>, finalizers: &[Value], path: &str) {
    let names: Vec<&str> = finalizers.iter().filter_map(Value::as_str).collect();
    for f in &names {
        for msg in is_qualified_name(f) {
            errs.push(invalid_str(path, f, msg));
        }
    }
    if names.contains(&"orphan") && names.contains(&"foregroundDeletion") {
        errs.push(invalid_raw(
            path,
            gofmt::string_slice(&serde_json::json!({ "f": names }), "f"),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    for (i, f) in names.iter().enumerate() {
        validate_kube_finalizer_name(errs, f, &index(path, i));
    }
}

/// `validateKubeFinalizerName`: unqualified finalizers must be standard ones.
pub(crate) fn validate_kube_finalizer_name(errs: &mut Vec<FieldError>, name: &str, path: &str) {
    if !name.contains('/') && !STANDARD_FINALIZERS.contains(&name) {
        errs.push(invalid_str(
            path,
            name,
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
}

/// `ValidateLabelSelector`.
pub(crate) fn validate_label_selector(
    errs: &mut Vec<FieldError>,
    selector: Option<&Value>,
    path: &str,
) {
    let Some(sel) = selector.filter(|s| !s.is_null()) else {
        return;
    };
    validate_labels(errs, sel, "matchLabels", &child(path, "matchLabels"));
    for (i, e) in arr(sel, "matchExpressions").iter().enumerate() {
        let p = index(&child(path, "matchExpressions"), i);
        let values = arr(e, "values");
        match str_of(e, "operator") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(required(
                        child(&p, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(forbidden(
                        child(&p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            op => errs.push(invalid_str(
                child(&p, "operator"),
                op,
                "not a valid selector operator",
            )),
        }
        validate_label_name(errs, str_of(e, "key"), &child(&p, "key"));
        for (j, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            for msg in is_label_value(v) {
                errs.push(invalid_str(index(&child(&p, "values"), j), v, msg));
            }
        }
    }
}

/// A label selector made ready to match (`metav1.LabelSelectorAsSelector`).
#[derive(Debug)]
pub(crate) struct Selector<'a> {
    requirements: Vec<(&'a str, &'a str, Vec<&'a str>)>,
}

impl<'a> Selector<'a> {
    /// `Err` when an operator is unknown (the selector does not convert); a nil selector is
    /// the empty selector that matches nothing (Kubernetes' `labels.Nothing()`).
    pub(crate) fn parse(selector: Option<&'a Value>) -> Result<Option<Selector<'a>>, ()> {
        let Some(sel) = selector.filter(|s| !s.is_null()) else {
            return Ok(None);
        };
        let mut requirements = Vec::new();
        for (k, v) in str_map(sel, "matchLabels") {
            requirements.push((k, "In", vec![v]));
        }
        for e in arr(sel, "matchExpressions") {
            let op = str_of(e, "operator");
            if !matches!(op, "In" | "NotIn" | "Exists" | "DoesNotExist") {
                return Err(());
            }
            let values: Vec<&str> = arr(e, "values").iter().filter_map(Value::as_str).collect();
            requirements.push((str_of(e, "key"), op, values));
        }
        Ok(Some(Selector { requirements }))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether the labels at `v[key]` satisfy every requirement.
    pub(crate) fn matches(&self, v: &Value, key: &str) -> bool {
        let labels = obj(v, key);
        self.requirements.iter().all(|(k, op, values)| {
            let actual = labels.and_then(|l| l.get(*k)).and_then(Value::as_str);
            match *op {
                "In" => actual.is_some_and(|a| values.contains(&a)),
                "NotIn" => actual.is_none_or(|a| !values.contains(&a)),
                "Exists" => actual.is_some(),
                _ => actual.is_none(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_match_like_kubernetes() {
        let sel = json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]});
        let s = Selector::parse(Some(&sel))
            .expect("valid")
            .expect("present");
        assert!(s.matches(&json!({"labels": {"app": "web"}}), "labels"));
        assert!(!s.matches(&json!({"labels": {"app": "web", "tier": "db"}}), "labels"));
        assert!(!s.matches(&json!({}), "labels"));
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "Like"}]});
        assert!(Selector::parse(Some(&bad)).is_err());
    }
}
