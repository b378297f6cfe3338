//! Custom resources: the kinds CustomResourceDefinitions add, as [`ResourceInfo`]s the rest of the
//! server treats like built-in ones, and the table of those currently served.
//!
//! The table is process-wide, as the built-in one is: the API server registers a definition's
//! resources once it has accepted its names, and removes them when the definition goes. Entries are
//! leaked (`&'static`), like the built-in table's; a definition's entries are replaced only when what
//! they describe changes, so status writes leak nothing.

use std::sync::RwLock;

use serde_json::Value;

use crate::field::FieldError;
use crate::registry::{ResourceInfo, Scope, Subresource};

/// What a CustomResourceDefinition says of one served version beyond names and scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomResource {
    /// The definition's name (`crontabs.stable.example.com`).
    pub definition: String,
    /// The version objects are stored as (`spec.versions[].storage`).
    pub storage_version: String,
    /// The `status` subresource is enabled: the main resource ignores status and vice versa.
    pub status: bool,
    /// The `scale` subresource, if enabled.
    pub scale: Option<ScalePaths>,
    /// The table columns after `Name` (`additionalPrinterColumns`, or `Age` when none).
    pub columns: Vec<PrinterColumn>,
    /// The version's `openAPIV3Schema`: what is kept (pruning), defaulted and validated.
    pub schema: Option<Value>,
}

/// Where a custom kind keeps what the `scale` subresource reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// One `additionalPrinterColumns` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn {
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub column_type: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    /// A simple JSONPath such as `.spec.replicas`.
    pub json_path: String,
}

/// The finalizer with which a definition's objects are deleted before the definition is.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

const CUSTOM_VERBS: &[&str] = &[
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "create",
    "update",
    "watch",
];

static REGISTERED: RwLock<Vec<&'static ResourceInfo>> = RwLock::new(Vec::new());

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_owned().into_boxed_str())
}

fn leak_all(values: &[String]) -> &'static [&'static str] {
    let strs: Vec<&'static str> = values.iter().map(|s| leak(s)).collect();
    Box::leak(strs.into_boxed_slice())
}

fn identity(value: &Value) -> Result<Value, serde_json::Error> {
    Ok(value.clone())
}

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object"})
}

fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    let mut at = value;
    for key in path {
        at = &at[*key];
    }
    at.as_str().unwrap_or_default()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Checks what the API server needs of a definition, with kube-apiserver's messages.
pub fn validate_definition(crd: &Value, errs: &mut Vec<FieldError>) {
    let spec = &crd["spec"];
    let group = text(spec, &["group"]);
    let plural = text(spec, &["names", "plural"]);
    let name = text(crd, &["metadata", "name"]);
    if !name.is_empty() && name != format!("{plural}.{group}") {
        errs.push(crate::validation::invalid_str(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if group.is_empty() {
        errs.push(crate::validation::required("spec.group", ""));
    } else if !group.contains('.') {
        errs.push(crate::validation::invalid_str(
            "spec.group",
            group,
            "should be a domain with at least one dot",
        ));
    }
    for (field, value) in [
        ("plural", plural),
        ("singular", text(spec, &["names", "singular"])),
        ("listKind", text(spec, &["names", "listKind"])),
    ] {
        if value.is_empty() {
            continue;
        }
        for message in crate::validation::names::is_dns1035_label(value) {
            errs.push(crate::validation::invalid_str(
                format!("spec.names.{field}"),
                value,
                message,
            ));
        }
    }
    if plural.is_empty() {
        errs.push(crate::validation::required("spec.names.plural", ""));
    }
    if text(spec, &["names", "kind"]).is_empty() {
        errs.push(crate::validation::required("spec.names.kind", ""));
    }
    let scope = text(spec, &["scope"]);
    if scope.is_empty() {
        errs.push(crate::validation::required("spec.scope", ""));
    } else if !matches!(scope, "Cluster" | "Namespaced") {
        errs.push(crate::validation::not_supported(
            "spec.scope",
            scope,
            &["Cluster", "Namespaced"],
        ));
    }
    let versions = spec["versions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if versions.is_empty() {
        errs.push(crate::validation::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
        return;
    }
    let storage = versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count();
    if storage != 1 {
        errs.push(crate::validation::invalid_raw(
            "spec.versions",
            format!("{} versions", versions.len()),
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, version) in versions.iter().enumerate() {
        let name = text(version, &["name"]);
        if name.is_empty() {
            errs.push(crate::validation::required(
                format!("spec.versions[{i}].name"),
                "",
            ));
        } else {
            for message in crate::validation::names::is_dns1035_label(name) {
                errs.push(crate::validation::invalid_str(
                    format!("spec.versions[{i}].name"),
                    name,
                    message,
                ));
            }
        }
    }
}

/// The resources a definition serves, one per served version, or why it cannot serve any.
pub fn resources_of(crd: &Value) -> Result<Vec<ResourceInfo>, String> {
    let mut errs = Vec::new();
    validate_definition(crd, &mut errs);
    if let Some(first) = errs.first() {
        return Err(format!("{}: {}", first.field, first.message()));
    }
    let spec = &crd["spec"];
    let definition = text(crd, &["metadata", "name"]);
    let group = text(spec, &["group"]);
    let names = &spec["names"];
    let plural = text(names, &["plural"]);
    let kind = text(names, &["kind"]);
    let singular = match text(names, &["singular"]) {
        "" => kind.to_ascii_lowercase(),
        s => s.to_owned(),
    };
    let scope = if text(spec, &["scope"]) == "Cluster" {
        Scope::Cluster
    } else {
        Scope::Namespaced
    };
    let versions = spec["versions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let storage_version = versions
        .iter()
        .find(|v| v["storage"].as_bool() == Some(true))
        .map(|v| text(v, &["name"]))
        .unwrap_or_default();
    let short_names = strings(&names["shortNames"]);
    let categories = strings(&names["categories"]);
    let mut out = Vec::new();
    for version in versions {
        if version["served"].as_bool() != Some(true) {
            continue;
        }
        let subresources = &version["subresources"];
        let status = subresources["status"].is_object();
        let scale = subresources["scale"].as_object().map(|scale| ScalePaths {
            spec_replicas: text(&Value::Object(scale.clone()), &["specReplicasPath"]).to_owned(),
            status_replicas: text(&Value::Object(scale.clone()), &["statusReplicasPath"])
                .to_owned(),
            label_selector: scale
                .get("labelSelectorPath")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
        let mut columns: Vec<PrinterColumn> = version["additionalPrinterColumns"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .map(|c| PrinterColumn {
                name: text(c, &["name"]).to_owned(),
                column_type: text(c, &["type"]).to_owned(),
                format: text(c, &["format"]).to_owned(),
                description: text(c, &["description"]).to_owned(),
                priority: c["priority"].as_i64().unwrap_or(0),
                json_path: text(c, &["jsonPath"]).to_owned(),
            })
            .collect();
        if columns.is_empty() {
            columns.push(PrinterColumn {
                name: "Age".into(),
                column_type: "date".into(),
                format: String::new(),
                description: "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata".into(),
                priority: 0,
                json_path: ".metadata.creationTimestamp".into(),
            });
        }
        let custom = CustomResource {
            definition: definition.to_owned(),
            storage_version: storage_version.to_owned(),
            status,
            scale,
            columns,
            schema: version["schema"].get("openAPIV3Schema").cloned(),
        };
        let mut subs: Vec<Subresource> = Vec::new();
        if custom.status {
            subs.push(Subresource {
                name: "status",
                gvk: None,
                verbs: &["get", "patch", "update"],
            });
        }
        if custom.scale.is_some() {
            subs.push(Subresource {
                name: "scale",
                gvk: Some(("autoscaling", "v1", "Scale")),
                verbs: &["get", "patch", "update"],
            });
        }
        out.push(ResourceInfo {
            group: leak(group),
            version: leak(text(version, &["name"])),
            kind: leak(kind),
            plural: leak(plural),
            singular: leak(&singular),
            scope,
            short_names: leak_all(&short_names),
            categories: leak_all(&categories),
            verbs: CUSTOM_VERBS,
            subresources: Box::leak(subs.into_boxed_slice()),
            stored: true,
            roundtrip: identity,
            schema: any_object,
            storage: leak(&format!("{group}/{plural}")),
            custom: Some(Box::leak(Box::new(custom))),
        });
    }
    Ok(out)
}

/// What a custom object keeps of `value`: `apiVersion`, `kind`, the fields of `metadata`, and what
/// the schema declares (everything under `x-kubernetes-preserve-unknown-fields`), with the
/// schema's defaults set where fields are absent. The dropped fields are what `fieldValidation`
/// reports as unknown.
pub fn prune(value: &Value, schema: &Value) -> Value {
    let Some(object) = value.as_object() else {
        return value.clone();
    };
    let mut out = serde_json::Map::new();
    for (key, field) in object {
        match key.as_str() {
            "apiVersion" | "kind" => {
                out.insert(key.clone(), field.clone());
            }
            "metadata" => {
                let meta = serde_json::from_value::<
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
                >(field.clone())
                .ok()
                .and_then(|m| serde_json::to_value(m).ok())
                .unwrap_or_else(|| field.clone());
                out.insert(key.clone(), meta);
            }
            _ => {}
        }
    }
    let mut rest = value.clone();
    if let Some(o) = rest.as_object_mut() {
        o.remove("apiVersion");
        o.remove("kind");
        o.remove("metadata");
    }
    if let Value::Object(pruned) = prune_value(&rest, schema) {
        out.extend(pruned);
    }
    Value::Object(out)
}

fn prune_value(value: &Value, schema: &Value) -> Value {
    let preserve = schema["x-kubernetes-preserve-unknown-fields"].as_bool() == Some(true);
    match value {
        Value::Object(object) => {
            let properties = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let mut out = serde_json::Map::new();
            for (key, field) in object {
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(sub), _) | (None, Some(sub)) => {
                        out.insert(key.clone(), prune_value(field, sub));
                    }
                    (None, None)
                        if preserve || properties.is_none() && schema.get("type").is_none() =>
                    {
                        out.insert(key.clone(), field.clone());
                    }
                    (None, None) => {}
                }
            }
            if let Some(properties) = properties {
                for (key, sub) in properties {
                    if !out.contains_key(key)
                        && let Some(default) = sub.get("default")
                    {
                        out.insert(key.clone(), prune_value(default, sub));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => match schema.get("items") {
            Some(sub) => Value::Array(items.iter().map(|i| prune_value(i, sub)).collect()),
            None => value.clone(),
        },
        other => other.clone(),
    }
}

/// Checks a custom object against its schema (types, required fields, bounds, enums), with
/// kube-apiserver's messages. `metadata`, `apiVersion` and `kind` are the server's to check.
pub fn validate_object(object: &Value, schema: &Value, errs: &mut Vec<FieldError>) {
    let Some(fields) = object.as_object() else {
        return;
    };
    let properties = schema["properties"].as_object();
    for (key, value) in fields {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(sub) = properties.and_then(|p| p.get(key)) {
            validate_value(value, sub, key, errs);
        }
    }
    required(fields, schema, "", errs);
}

fn required(
    fields: &serde_json::Map<String, Value>,
    schema: &Value,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    for name in schema["required"].as_array().into_iter().flatten() {
        if let Some(name) = name.as_str()
            && fields.get(name).is_none_or(Value::is_null)
        {
            let field = if path.is_empty() {
                name.to_owned()
            } else {
                format!("{path}.{name}")
            };
            errs.push(crate::validation::required(field, ""));
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn validate_value(value: &Value, schema: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if value.is_null() {
        return;
    }
    let given = type_name(value);
    if let Some(want) = schema["type"].as_str() {
        let fits = want == given
            || (want == "number" && given == "integer")
            || (want == "integer" && value.as_f64().is_some_and(|f| f.fract() == 0.0));
        let int_or_string = schema["x-kubernetes-int-or-string"].as_bool() == Some(true)
            && matches!(given, "integer" | "string");
        if !fits && !int_or_string {
            errs.push(crate::validation::invalid_str(
                path,
                given,
                // kube-openapi names the given type, not the value, in both places.
                format!("{path} in body must be of type {want}: \"{given}\""),
            ));
            return;
        }
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        let supported: Vec<String> = options.iter().map(render).collect();
        let mut e = crate::validation::not_supported(path, "", &[]);
        e.value = Some(render(value));
        e.detail = format!("supported values: {}", supported.join(", "));
        errs.push(e);
    }
    if let Some(n) = value.as_f64() {
        let bounds = [
            (
                "minimum",
                "greater",
                n < schema["minimum"].as_f64().unwrap_or(f64::MIN),
            ),
            (
                "maximum",
                "less",
                n > schema["maximum"].as_f64().unwrap_or(f64::MAX),
            ),
        ];
        for (bound, side, broken) in bounds {
            if broken {
                errs.push(crate::validation::invalid_raw(
                    path,
                    render(value),
                    format!(
                        "{path} in body should be {side} than or equal to {}",
                        render(&schema[bound])
                    ),
                ));
            }
        }
    }
    match value {
        Value::Object(fields) => {
            let properties = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, field) in fields {
                if let Some(sub) = properties.and_then(|p| p.get(key)).or(additional) {
                    validate_value(field, sub, &format!("{path}.{key}"), errs);
                }
            }
            required(fields, schema, path, errs);
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate_value(item, sub, &format!("{path}[{i}]"), errs);
                }
            }
        }
        _ => {}
    }
}

/// A value as Go's `%v`-ish rendering in messages: strings quoted, others as JSON.
fn render(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Two entries describe the same resource (so the old one can stay).
fn same(a: &ResourceInfo, b: &ResourceInfo) -> bool {
    a.group == b.group
        && a.version == b.version
        && a.kind == b.kind
        && a.plural == b.plural
        && a.singular == b.singular
        && a.scope == b.scope
        && a.short_names == b.short_names
        && a.categories == b.categories
        && a.subresources == b.subresources
        && a.custom == b.custom
}

/// Serves `resources` (from [`resources_of`]) for the definition `definition`, replacing what it
/// served before. Returns the entries now served; an unchanged entry is the one already there.
pub fn register(definition: &str, resources: Vec<ResourceInfo>) -> Vec<&'static ResourceInfo> {
    let mut table = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    let mut served = Vec::new();
    for resource in resources {
        let existing = table
            .iter()
            .find(|r| r.custom.is_some_and(|c| c.definition == definition) && same(r, &resource))
            .copied();
        served.push(existing.unwrap_or_else(|| &*Box::leak(Box::new(resource))));
    }
    table.retain(|r| r.custom.is_none_or(|c| c.definition != definition));
    table.extend(served.iter().copied());
    served
}

/// Stops serving the definition's resources; returns what it served.
pub fn unregister(definition: &str) -> Vec<&'static ResourceInfo> {
    let mut table = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    let (gone, kept): (Vec<_>, Vec<_>) = table
        .iter()
        .copied()
        .partition(|r| r.custom.is_some_and(|c| c.definition == definition));
    *table = kept;
    gone
}

/// Every custom resource served now.
pub fn registered() -> Vec<&'static ResourceInfo> {
    REGISTERED.read().unwrap_or_else(|e| e.into_inner()).clone()
}

pub(crate) fn find(pred: impl Fn(&ResourceInfo) -> bool) -> Option<&'static ResourceInfo> {
    REGISTERED
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .copied()
        .find(|r| pred(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crontabs() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "crontabs.unit.example.com"},
            "spec": {
                "group": "unit.example.com",
                "scope": "Namespaced",
                "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                     "additionalPrinterColumns": [{"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"}]},
                    {"name": "v1beta1", "served": true, "storage": false},
                    {"name": "v0", "served": false, "storage": false}
                ]
            }
        })
    }

    #[test]
    fn a_definition_serves_each_served_version_under_one_storage_path() {
        let resources = resources_of(&crontabs()).expect("valid");
        assert_eq!(resources.len(), 2);
        let v1 = &resources[0];
        assert_eq!(
            (v1.group, v1.version, v1.kind, v1.plural),
            ("unit.example.com", "v1", "CronTab", "crontabs")
        );
        assert_eq!(v1.short_names, &["ct"]);
        assert_eq!(v1.storage, "unit.example.com/crontabs");
        assert_eq!(
            v1.key(Some("default"), "a"),
            "/registry/unit.example.com/crontabs/default/a"
        );
        assert!(v1.subresource("status").is_some());
        let custom = v1.custom.expect("custom");
        assert_eq!(custom.storage_version, "v1");
        assert_eq!(custom.columns[0].json_path, ".spec.cronSpec");
        // A version without columns gets the Age column, as kube-apiserver serves it.
        let beta = resources[1].custom.expect("custom");
        assert_eq!(beta.columns[0].name, "Age");
        assert!(resources[1].subresource("status").is_none());
    }

    #[test]
    fn registering_again_unchanged_keeps_the_entries_and_unregistering_removes_them() {
        let first = register(
            "crontabs.unit.example.com",
            resources_of(&crontabs()).expect("valid"),
        );
        let again = register(
            "crontabs.unit.example.com",
            resources_of(&crontabs()).expect("valid"),
        );
        assert!(std::ptr::eq(first[0], again[0]));
        assert!(crate::find("unit.example.com", "v1", "crontabs").is_some());
        assert!(crate::find_kind("unit.example.com/v1beta1", "CronTab").is_some());
        let mut changed = crontabs();
        changed["spec"]["names"]["shortNames"] = json!(["cts"]);
        let third = register(
            "crontabs.unit.example.com",
            resources_of(&changed).expect("valid"),
        );
        assert!(!std::ptr::eq(first[0], third[0]));
        assert_eq!(
            crate::find("unit.example.com", "v1", "crontabs").map(|r| r.short_names),
            Some(&["cts"][..])
        );
        assert_eq!(unregister("crontabs.unit.example.com").len(), 2);
        assert!(crate::find("unit.example.com", "v1", "crontabs").is_none());
    }

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string"},
                        "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                        "mode": {"type": "string", "enum": ["Fast", "Slow"]},
                        "ports": {"type": "array", "items": {"type": "object", "properties": {"port": {"type": "integer"}}}},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                },
                "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
            }
        })
    }

    #[test]
    fn pruning_keeps_declared_fields_and_sets_defaults() {
        let object = json!({
            "apiVersion": "unit.example.com/v1", "kind": "CronTab",
            "metadata": {"name": "a", "bogus": 1, "labels": {"x": "y"}},
            "spec": {
                "image": "busybox", "colour": "blue",
                "ports": [{"port": 80, "extra": true}],
                "labels": {"a": "b"},
                "free": {"anything": {"goes": 1}}
            },
            "top": 1
        });
        let pruned = prune(&object, &schema());
        assert_eq!(
            pruned,
            json!({
                "apiVersion": "unit.example.com/v1", "kind": "CronTab",
                "metadata": {"name": "a", "labels": {"x": "y"}},
                "spec": {
                    "image": "busybox", "replicas": 1,
                    "ports": [{"port": 80}],
                    "labels": {"a": "b"},
                    "free": {"anything": {"goes": 1}}
                }
            })
        );
    }

    #[test]
    fn objects_are_checked_against_their_schema() {
        let check = |spec: Value| {
            let mut errs = Vec::new();
            validate_object(
                &json!({"metadata": {"name": "a"}, "spec": spec}),
                &schema(),
                &mut errs,
            );
            errs.iter()
                .map(|e| format!("{}: {}", e.field, e.message()))
                .collect::<Vec<_>>()
        };
        assert!(check(json!({"image": "x", "replicas": 3, "mode": "Fast"})).is_empty());
        assert_eq!(
            check(json!({"image": "x", "replicas": "three"})),
            vec![
                r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
            ]
        );
        assert_eq!(
            check(json!({"replicas": 2})),
            vec!["spec.image: Required value"]
        );
        assert_eq!(
            check(json!({"image": "x", "replicas": 11})),
            vec![
                "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"
            ]
        );
        assert_eq!(
            check(json!({"image": "x", "mode": "Medium"})),
            vec![r#"spec.mode: Unsupported value: "Medium": supported values: "Fast", "Slow""#]
        );
        assert_eq!(
            check(json!({"image": "x", "ports": [{"port": "http"}]})),
            vec![
                r#"spec.ports[0].port: Invalid value: "string": spec.ports[0].port in body must be of type integer: "string""#
            ]
        );
    }

    #[test]
    fn bad_definitions_get_kube_apiserver_messages() {
        let mut crd = crontabs();
        crd["metadata"]["name"] = json!("wrong.unit.example.com");
        crd["spec"]["group"] = json!("nodot");
        crd["spec"]["scope"] = json!("Global");
        crd["spec"]["versions"][1]["storage"] = json!(true);
        let mut errs = Vec::new();
        validate_definition(&crd, &mut errs);
        let messages: Vec<String> = errs
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message()))
            .collect();
        assert!(messages.iter().any(|m| m.contains(
            r#"metadata.name: Invalid value: "wrong.unit.example.com": must be spec.names.plural+"."+spec.group"#
        )), "{messages:?}");
        assert!(
            messages.iter().any(|m| m.contains(
                r#"spec.group: Invalid value: "nodot": should be a domain with at least one dot"#
            )),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| {
                m.contains(
            r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#
        )
            }),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.contains("must have exactly one version marked as storage version")),
            "{messages:?}"
        );
        assert!(resources_of(&crd).is_err());
    }
}
