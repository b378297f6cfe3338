//! Schema definitions: generated once from the `k8s-openapi` types through `schemars`, cleaned of
//! JSON Schema constructs that OpenAPI 3.0 and Swagger 2.0 do not know, then rendered for each
//! document flavour.
//!
//! The canonical form kept in [`Definitions`] is what `schemars` produced after [`clean`]: refs read
//! `#/components/schemas/<name>` and a `$ref` may carry siblings (`description`). [`to_v3`] and
//! [`to_v2`] turn it into the shape each kube-apiserver document has.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::{JsonSchema, Schema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};

use crate::OpenApiError;

/// Prefix of a reference to a definition in the canonical form (and in OpenAPI v3).
pub(crate) const V3_REF: &str = "#/components/schemas/";
/// Prefix of a reference to a definition in Swagger 2.0.
pub(crate) const V2_REF: &str = "#/definitions/";

const GVK_EXTENSION: &str = "x-kubernetes-group-version-kind";
const INT_OR_STRING: &str = "x-kubernetes-int-or-string";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// A definition generator seeded with Kubernetes' names: refs point at `#/components/schemas/`.
pub(crate) fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
            s.transforms.clear();
        })
        .into_generator()
}

/// The definition name a `schemars` ref schema points at.
pub(crate) fn ref_name(schema: &Schema, what: &str) -> Result<String, OpenApiError> {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(strip_ref)
        .map(str::to_owned)
        .ok_or_else(|| OpenApiError::NotADefinition {
            what: what.to_owned(),
        })
}

/// `Deployment` from `#/components/schemas/Deployment` (or the `$defs`/`definitions` spellings).
fn strip_ref(reference: &str) -> Option<&str> {
    [V3_REF, V2_REF, "#/$defs/"]
        .iter()
        .find_map(|prefix| reference.strip_prefix(prefix))
}

/// Names of the meta definitions every document may refer to.
pub(crate) struct MetaNames {
    pub(crate) list_meta: String,
    pub(crate) status: String,
    pub(crate) delete_options: String,
    pub(crate) patch: String,
    pub(crate) watch_event: String,
    pub(crate) api_resource_list: String,
    pub(crate) api_versions: String,
    pub(crate) api_group_list: String,
    pub(crate) api_group: String,
    pub(crate) object_meta: String,
}

impl MetaNames {
    pub(crate) fn generate(generator: &mut SchemaGenerator) -> Result<MetaNames, OpenApiError> {
        fn name<T: JsonSchema>(
            g: &mut SchemaGenerator,
            what: &str,
        ) -> Result<String, OpenApiError> {
            ref_name(&g.subschema_for::<T>(), what)
        }
        let names = MetaNames {
            list_meta: name::<meta::ListMeta>(generator, "ListMeta")?,
            status: name::<meta::Status>(generator, "Status")?,
            delete_options: name::<meta::DeleteOptions>(generator, "DeleteOptions")?,
            patch: name::<meta::Patch>(generator, "Patch")?,
            watch_event: name::<meta::WatchEvent<()>>(generator, "WatchEvent")?,
            api_resource_list: name::<meta::APIResourceList>(generator, "APIResourceList")?,
            api_versions: name::<meta::APIVersions>(generator, "APIVersions")?,
            api_group_list: name::<meta::APIGroupList>(generator, "APIGroupList")?,
            api_group: name::<meta::APIGroup>(generator, "APIGroup")?,
            object_meta: name::<meta::ObjectMeta>(generator, "ObjectMeta")?,
        };
        Ok(names)
    }
}

/// One `x-kubernetes-group-version-kind` entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Gvk {
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) kind: String,
}

impl Gvk {
    pub(crate) fn new(group: &str, version: &str, kind: &str) -> Gvk {
        Gvk {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({"group": self.group, "version": self.version, "kind": self.kind})
    }
}

/// Every definition, in canonical form, with the GVKs each top-level kind is served as.
#[derive(Debug, Default)]
pub(crate) struct Definitions {
    schemas: BTreeMap<String, Value>,
    gvks: BTreeMap<String, BTreeSet<Gvk>>,
}

impl Definitions {
    /// Takes the generator's definitions and cleans them.
    pub(crate) fn from_generator(generator: &mut SchemaGenerator) -> Definitions {
        let mut schemas = BTreeMap::new();
        let mut pending: Vec<(String, Value)> =
            generator.take_definitions(false).into_iter().collect();
        while let Some((name, mut schema)) = pending.pop() {
            let mut nested = Map::new();
            clean(&mut schema, &mut nested);
            pending.extend(nested);
            schemas.insert(name, schema);
        }
        Definitions {
            schemas,
            gvks: BTreeMap::new(),
        }
    }

    /// Adds a custom resource's definition: its `openAPIV3Schema` (any object when it has none)
    /// with `apiVersion`, `kind` and `metadata` as every kind has them, as kube-apiserver publishes
    /// a CustomResourceDefinition's versions.
    pub(crate) fn add_custom(&mut self, name: &str, schema: Option<&Value>, object_meta: &str) {
        let mut schema = schema.cloned().unwrap_or_else(
            || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
        if let Value::Object(root) = &mut schema {
            root.insert("type".into(), json!("object"));
            let properties = root.entry("properties").or_insert_with(|| json!({}));
            if let Value::Object(properties) = properties {
                properties.insert("apiVersion".into(), json!({
                    "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                    "type": "string",
                }));
                properties.insert("kind".into(), json!({
                    "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                    "type": "string",
                }));
                properties.insert("metadata".into(), json!({
                    "$ref": format!("{V3_REF}{object_meta}"),
                    "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
                }));
            }
        }
        self.schemas.insert(name.to_owned(), schema);
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.schemas.contains_key(name)
    }

    /// Records that the definition `name` is the schema of `gvk`.
    /// A kind's `metadata` is optional, as in kube-apiserver's documents (k8s-openapi's types hold
    /// it as a plain field, so the generated schema lists it as required and kubectl's client-side
    /// validation would refuse e.g. a TokenReview without metadata).
    pub(crate) fn add_gvk(&mut self, name: &str, gvk: Gvk) {
        self.gvks.entry(name.to_owned()).or_default().insert(gvk);
        if let Some(Value::Object(schema)) = self.schemas.get_mut(name)
            && let Some(Value::Array(required)) = schema.get_mut("required")
        {
            required.retain(|field| field != "metadata");
            if required.is_empty() {
                schema.remove("required");
            }
        }
    }

    /// Adds the extensions `extensions(definition, field)` yields to each field's schema.
    pub(crate) fn extend_fields(&mut self, extensions: crate::FieldExtensions<'_>) {
        for (name, schema) in &mut self.schemas {
            let Some(Value::Object(properties)) = schema.get_mut("properties") else {
                continue;
            };
            for (field, property) in properties.iter_mut() {
                let Value::Object(property) = property else {
                    continue;
                };
                property.extend(extensions(name, field));
            }
        }
    }

    /// Adds `<Kind>List` for a kind, shaped as Kubernetes' list kinds are.
    pub(crate) fn add_list_kind(
        &mut self,
        list_name: &str,
        item_name: &str,
        kind: &str,
        list_meta: &str,
    ) {
        if self.contains(list_name) {
            return;
        }
        let schema = json!({
            "description": format!("{kind}List is a list of {kind} objects."),
            "type": "object",
            "properties": {
                "apiVersion": {
                    "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                    "type": "string",
                },
                "items": {
                    "description": format!("Items is the list of {kind} objects."),
                    "type": "array",
                    "items": {"$ref": format!("{V3_REF}{item_name}")},
                },
                "kind": {
                    "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                    "type": "string",
                },
                "metadata": {
                    "$ref": format!("{V3_REF}{list_meta}"),
                    "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                },
            },
            "required": ["items"],
        });
        self.schemas.insert(list_name.to_owned(), schema);
    }

    /// The names reachable from `roots` through `$ref`s, roots included.
    pub(crate) fn closure(
        &self,
        roots: impl IntoIterator<Item = String>,
    ) -> Result<BTreeSet<String>, OpenApiError> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<String> = roots.into_iter().collect();
        while let Some(name) = stack.pop() {
            if seen.contains(&name) {
                continue;
            }
            let schema = self
                .schemas
                .get(&name)
                .ok_or_else(|| OpenApiError::UnresolvedRef {
                    reference: format!("{V3_REF}{name}"),
                })?;
            let mut refs = BTreeSet::new();
            collect_refs(schema, &mut refs);
            for reference in refs {
                match strip_ref(&reference) {
                    Some(target) => stack.push(target.to_owned()),
                    None => return Err(OpenApiError::UnresolvedRef { reference }),
                }
            }
            seen.insert(name);
        }
        Ok(seen)
    }

    /// The `components.schemas` (v3) or `definitions` (v2) object for `names`.
    pub(crate) fn render(&self, names: &BTreeSet<String>, flavour: Flavour) -> Map<String, Value> {
        let mut out = Map::new();
        for name in names {
            let Some(schema) = self.schemas.get(name) else {
                continue;
            };
            let mut schema = match flavour {
                Flavour::V3 => to_v3(schema),
                Flavour::V2 => to_v2(schema),
            };
            if schema.get(INT_OR_STRING) == Some(&Value::Bool(true)) {
                int_or_string(name, &mut schema, flavour);
            }
            if let (Some(gvks), Some(object)) = (self.gvks.get(name), schema.as_object_mut()) {
                let list: Vec<Value> = gvks.iter().map(Gvk::to_json).collect();
                object.insert(GVK_EXTENSION.to_owned(), Value::Array(list));
            }
            out.insert(name.clone(), schema);
        }
        out
    }
}

/// Which document a schema is rendered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavour {
    /// OpenAPI 3.0: `#/components/schemas/`, `$ref` siblings wrapped in `allOf`.
    V3,
    /// Swagger 2.0: `#/definitions/`, no `nullable`, no `oneOf`.
    V2,
}

/// Types that are an int or a string on the wire (IntOrString, Quantity) carry no `type` from
/// `k8s-openapi`; give them the shape kube-apiserver serves.
fn int_or_string(name: &str, schema: &mut Value, flavour: Flavour) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if object.contains_key("type") || object.contains_key("oneOf") {
        return;
    }
    let quantity = name == QUANTITY;
    match flavour {
        Flavour::V3 => {
            let types = if quantity {
                json!([{"type": "string"}, {"type": "number"}])
            } else {
                json!([{"type": "integer"}, {"type": "string"}])
            };
            object.insert("oneOf".to_owned(), types);
        }
        Flavour::V2 => {
            object.insert("type".to_owned(), json!("string"));
        }
    }
    if !quantity {
        object.insert("format".to_owned(), json!("int-or-string"));
    }
}

/// Collects every `$ref` string inside `value`.
pub(crate) fn collect_refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                match (key.as_str(), child) {
                    ("$ref", Value::String(reference)) => {
                        out.insert(reference.clone());
                    }
                    _ => collect_refs(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
        _ => {}
    }
}

/// Keys whose value is one schema.
const SCHEMA_KEYS: &[&str] = &[
    "items",
    "not",
    "additionalItems",
    "contains",
    "propertyNames",
];
/// Keys whose value is a list of schemas.
const SCHEMA_LIST_KEYS: &[&str] = &["allOf", "anyOf", "oneOf"];
/// Keys whose value maps names to schemas.
const SCHEMA_MAP_KEYS: &[&str] = &["properties", "patternProperties"];

/// Brings one schema into the canonical form: no `$schema`, no nested `$defs` (moved to `nested`),
/// refs under `#/components/schemas/`, `type` a single string (`null` becomes `nullable`), `const`
/// an `enum`, boolean schemas spelled as objects. Recurses into every subschema.
fn clean(schema: &mut Value, nested: &mut Map<String, Value>) {
    match schema {
        Value::Bool(true) => *schema = json!({}),
        Value::Bool(false) => *schema = json!({"not": {}}),
        Value::Object(object) => {
            object.remove("$schema");
            object.remove("$id");
            for defs in ["$defs", "definitions"] {
                if let Some(Value::Object(defs)) = object.remove(defs) {
                    nested.extend(defs);
                }
            }
            if let Some(Value::String(reference)) = object.get_mut("$ref")
                && let Some(name) = strip_ref(reference)
            {
                *reference = format!("{V3_REF}{name}");
            }
            if let Some(Value::Array(types)) = object.get("type") {
                let nullable = types.iter().any(|t| t == "null");
                let rest: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
                object.remove("type");
                if rest.len() == 1 {
                    object.insert("type".to_owned(), rest[0].clone());
                }
                if nullable {
                    object.insert("nullable".to_owned(), Value::Bool(true));
                }
            }
            if let Some(value) = object.remove("const") {
                object.insert("enum".to_owned(), Value::Array(vec![value]));
            }
            if let Some(Value::Array(mut examples)) = object.remove("examples")
                && !examples.is_empty()
            {
                object.insert("example".to_owned(), examples.swap_remove(0));
            }
            for key in SCHEMA_KEYS {
                if let Some(child) = object.get_mut(*key) {
                    clean(child, nested);
                }
            }
            if let Some(child @ Value::Object(_)) = object.get_mut("additionalProperties") {
                clean(child, nested);
            }
            for key in SCHEMA_LIST_KEYS {
                if let Some(Value::Array(children)) = object.get_mut(*key) {
                    children.iter_mut().for_each(|child| clean(child, nested));
                }
            }
            for key in SCHEMA_MAP_KEYS {
                if let Some(Value::Object(children)) = object.get_mut(*key) {
                    children.values_mut().for_each(|child| clean(child, nested));
                }
            }
        }
        _ => {}
    }
}

/// Applies `f` to every object schema inside `schema` (itself included), outermost first.
fn walk_schemas(schema: &mut Value, f: &mut impl FnMut(&mut Map<String, Value>)) {
    let Value::Object(object) = schema else {
        return;
    };
    f(object);
    for key in SCHEMA_KEYS {
        if let Some(child) = object.get_mut(*key) {
            walk_schemas(child, f);
        }
    }
    if let Some(child) = object.get_mut("additionalProperties") {
        walk_schemas(child, f);
    }
    for key in SCHEMA_LIST_KEYS {
        if let Some(Value::Array(children)) = object.get_mut(*key) {
            children.iter_mut().for_each(|child| walk_schemas(child, f));
        }
    }
    for key in SCHEMA_MAP_KEYS {
        if let Some(Value::Object(children)) = object.get_mut(*key) {
            children
                .values_mut()
                .for_each(|child| walk_schemas(child, f));
        }
    }
}

/// OpenAPI 3.0 ignores the siblings of a `$ref`: kube-apiserver wraps the ref in a one-element
/// `allOf` so that a field's own `description` survives (kubectl explain prints both).
pub(crate) fn to_v3(schema: &Value) -> Value {
    let mut schema = schema.clone();
    walk_schemas(&mut schema, &mut |object| {
        if object.len() > 1
            && let Some(reference) = object.remove("$ref")
        {
            object.insert("allOf".to_owned(), json!([{"$ref": reference}]));
        }
    });
    schema
}

/// Swagger 2.0: refs under `#/definitions/`, no `nullable`.
pub(crate) fn to_v2(schema: &Value) -> Value {
    let mut schema = schema.clone();
    walk_schemas(&mut schema, &mut |object| {
        object.remove("nullable");
        if let Some(Value::String(reference)) = object.get_mut("$ref")
            && let Some(name) = reference.strip_prefix(V3_REF)
        {
            *reference = format!("{V2_REF}{name}");
        }
    });
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaned(mut schema: Value) -> (Value, Map<String, Value>) {
        let mut nested = Map::new();
        clean(&mut schema, &mut nested);
        (schema, nested)
    }

    #[test]
    fn clean_turns_json_schema_2020_constructs_into_openapi_3_0() {
        let cases = [
            (
                json!({"$schema": "x", "type": ["string", "null"]}),
                json!({"type": "string", "nullable": true}),
            ),
            (json!({"const": "a"}), json!({"enum": ["a"]})),
            (json!({"examples": [1, 2]}), json!({"example": 1})),
            (
                json!({"properties": {"a": true, "b": false}}),
                json!({"properties": {"a": {}, "b": {"not": {}}}}),
            ),
            (
                json!({"items": {"$ref": "#/$defs/X"}}),
                json!({"items": {"$ref": "#/components/schemas/X"}}),
            ),
            (
                json!({"additionalProperties": false}),
                json!({"additionalProperties": false}),
            ),
            (
                json!({"anyOf": [{"type": ["integer", "string"]}]}),
                json!({"anyOf": [{}]}),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(cleaned(input.clone()).0, want, "input {input}");
        }
    }

    #[test]
    fn clean_hoists_nested_defs() {
        let (schema, nested) =
            cleaned(json!({"$defs": {"Y": {"type": "string"}}, "type": "object"}));
        assert_eq!(schema, json!({"type": "object"}));
        assert_eq!(nested.get("Y"), Some(&json!({"type": "string"})));
    }

    #[test]
    fn v3_wraps_refs_with_siblings_and_v2_rewrites_ref_prefix() {
        let canonical = json!({"properties": {
            "spec": {"$ref": "#/components/schemas/S", "description": "d"},
            "bare": {"$ref": "#/components/schemas/B"},
            "n": {"type": "string", "nullable": true},
        }});
        assert_eq!(
            to_v3(&canonical)["properties"]["spec"],
            json!({"allOf": [{"$ref": "#/components/schemas/S"}], "description": "d"})
        );
        assert_eq!(
            to_v3(&canonical)["properties"]["bare"],
            json!({"$ref": "#/components/schemas/B"})
        );
        let v2 = to_v2(&canonical);
        assert_eq!(
            v2["properties"]["spec"],
            json!({"$ref": "#/definitions/S", "description": "d"})
        );
        assert_eq!(v2["properties"]["n"], json!({"type": "string"}));
    }

    #[test]
    fn int_or_string_definitions_get_kube_apiserver_shapes() {
        let mut generator = generator();
        let name = ref_name(
            &generator.subschema_for::<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>(),
            "IntOrString",
        )
        .expect("ref");
        let defs = Definitions::from_generator(&mut generator);
        let names: BTreeSet<String> = [name.clone()].into();
        let v3 = defs.render(&names, Flavour::V3);
        assert_eq!(v3[&name]["format"], "int-or-string");
        assert_eq!(
            v3[&name]["oneOf"],
            json!([{"type": "integer"}, {"type": "string"}])
        );
        assert!(
            v3[&name].get("type").is_none(),
            "kubectl explain names the ref type"
        );
        let v2 = defs.render(&names, Flavour::V2);
        assert_eq!(v2[&name]["type"], "string");
    }
}
