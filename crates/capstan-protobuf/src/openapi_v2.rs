//! The Swagger 2.0 document (`GET /openapi/v2`) as the protobuf message kubectl asks for:
//! `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, the gnostic
//! `openapi.v2.Document` (package `openapi.v2`, `openapiv2/OpenAPIv2.proto` of gnostic-models).
//! kubectl reads it for client-side validation and to learn whether a kind's PATCH takes
//! `fieldValidation`, when the kind is not in the v3 documents.
//!
//! The encoder walks the JSON document the way gnostic's compiler does: JSON maps become lists of
//! `Named*` pairs in document order, `x-` keys become `vendor_extension` entries whose `Any.yaml` is
//! the value's text (flow-style JSON, which YAML parsers read), `default`, `example` and `enum`
//! values are `Any` too. Keys the message has no field for (`anyOf`, `nullable`, ...) are left out,
//! as kube-apiserver's own v2 document never carries them.

use serde_json::{Map, Value};

use crate::ProtoError;
use crate::wire::Writer;

/// The media type of the protobuf v2 document: the `Content-Type` kube-apiserver answers with
/// (Go's `mime.ParseMediaType`, which kubectl runs on it, rejects the `@` form), and accepted.
pub const OPENAPI_V2_MEDIA_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The older spelling of [`OPENAPI_V2_MEDIA_TYPE`], the one kubectl puts in `Accept`; the answer
/// to it still carries [`OPENAPI_V2_MEDIA_TYPE`].
pub const OPENAPI_V2_MEDIA_TYPE_DEPRECATED: &str =
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// Deepest nesting of schemas (and of parameter `items`) the encoder follows.
const MAX_DEPTH: usize = 64;

/// Encodes a Swagger 2.0 JSON document as the gnostic `openapi.v2.Document` protobuf message.
/// Fails on a document whose known keys have the wrong JSON type (a `paths` that is not an object,
/// a `required` that is not a list of strings, a parameter `in` Swagger 2.0 does not know).
pub fn encode_openapi_v2(doc: &Value) -> Result<Vec<u8>, ProtoError> {
    let at = At::root();
    let map = object(doc, &at)?;
    let mut w = Writer::new();
    document(&mut w, map, &at)?;
    Ok(w.into_bytes())
}

/// Where in the document the encoder is, rendered as a JSON pointer only for errors.
#[derive(Clone, Copy)]
struct At<'a> {
    parent: Option<&'a At<'a>>,
    segment: &'a str,
}

impl<'a> At<'a> {
    fn root() -> At<'static> {
        At {
            parent: None,
            segment: "",
        }
    }

    fn join(&'a self, segment: &'a str) -> At<'a> {
        At {
            parent: Some(self),
            segment,
        }
    }

    fn pointer(&self) -> String {
        let mut segments = Vec::new();
        let mut at = Some(self);
        while let Some(here) = at {
            if here.parent.is_some() {
                segments.push(here.segment.replace('~', "~0").replace('/', "~1"));
            }
            at = here.parent;
        }
        segments.reverse();
        format!("/{}", segments.join("/"))
    }

    fn error(&self, reason: &'static str) -> ProtoError {
        ProtoError::OpenApiV2 {
            at: self.pointer(),
            reason,
        }
    }
}

type Fields = Map<String, Value>;
type Result<T = (), E = ProtoError> = std::result::Result<T, E>;

fn object<'v>(value: &'v Value, at: &At<'_>) -> Result<&'v Fields> {
    value
        .as_object()
        .ok_or_else(|| at.error("is not an object"))
}

fn array<'v>(value: &'v Value, at: &At<'_>) -> Result<&'v [Value]> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| at.error("is not an array"))
}

/// A `string` field; absent and empty strings are not written (proto3 defaults).
fn string(w: &mut Writer, tag: u32, map: &Fields, key: &str, at: &At<'_>) -> Result {
    match map.get(key) {
        None => Ok(()),
        Some(Value::String(s)) => {
            if !s.is_empty() {
                w.string(tag, s);
            }
            Ok(())
        }
        Some(_) => Err(at.join(key).error("is not a string")),
    }
}

/// A `repeated string` field.
fn strings(w: &mut Writer, tag: u32, map: &Fields, key: &str, at: &At<'_>) -> Result {
    let Some(value) = map.get(key) else {
        return Ok(());
    };
    let at = at.join(key);
    for item in array(value, &at)? {
        let s = item
            .as_str()
            .ok_or_else(|| at.error("is not a list of strings"))?;
        w.string(tag, s);
    }
    Ok(())
}

fn boolean(w: &mut Writer, tag: u32, map: &Fields, key: &str, at: &At<'_>) -> Result {
    match map.get(key) {
        None | Some(Value::Bool(false)) => Ok(()),
        Some(Value::Bool(true)) => {
            w.bool(tag, true);
            Ok(())
        }
        Some(_) => Err(at.join(key).error("is not a boolean")),
    }
}

/// An `int64` field from a JSON integer (or a float with no fraction, as `1.0`).
fn int64(w: &mut Writer, tag: u32, map: &Fields, key: &str, at: &At<'_>) -> Result {
    let Some(value) = map.get(key) else {
        return Ok(());
    };
    let n = match value.as_i64() {
        Some(n) => n,
        None => match value.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => f as i64,
            _ => return Err(at.join(key).error("is not an integer")),
        },
    };
    if n != 0 {
        w.int64(tag, n);
    }
    Ok(())
}

fn double(w: &mut Writer, tag: u32, map: &Fields, key: &str, at: &At<'_>) -> Result {
    let Some(value) = map.get(key) else {
        return Ok(());
    };
    let f = value
        .as_f64()
        .ok_or_else(|| at.join(key).error("is not a number"))?;
    if f != 0.0 {
        w.double(tag, f);
    }
    Ok(())
}

/// `Any {2: yaml}`: the value as flow-style text.
fn any(w: &mut Writer, tag: u32, value: &Value) {
    let mut text = String::new();
    flow_yaml(value, &mut text);
    let mut inner = Writer::new();
    inner.string(2, &text);
    w.bytes(tag, &inner.into_bytes());
}

fn any_field(w: &mut Writer, tag: u32, map: &Fields, key: &str) {
    if let Some(value) = map.get(key) {
        any(w, tag, value);
    }
}

/// `repeated Any` (`enum`).
fn any_list(w: &mut Writer, tag: u32, map: &Fields, key: &str, at: &At<'_>) -> Result {
    if let Some(value) = map.get(key) {
        for item in array(value, &at.join(key))? {
            any(w, tag, item);
        }
    }
    Ok(())
}

/// JSON text with a space after every `:` and `,`, which YAML parsers read as flow collections
/// (gnostic's own documents carry block YAML; kubectl parses either with `yaml.Unmarshal`).
fn flow_yaml(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                flow_yaml(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                flow_yaml(item, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// `repeated NamedAny vendor_extension`: every `x-` key, `{1: name, 2: Any}`.
fn extensions(w: &mut Writer, tag: u32, map: &Fields) {
    for (name, value) in map.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Writer::new();
        named.string(1, name);
        any(&mut named, 2, value);
        w.bytes(tag, &named.into_bytes());
    }
}

/// A map field as a list of `Named*` messages `{1: name, 2: value}`, skipping `x-` keys when the
/// map's own message keeps them apart.
fn named(
    w: &mut Writer,
    tag: u32,
    value: &Value,
    at: &At<'_>,
    skip_extensions: bool,
    mut encode: impl FnMut(&mut Writer, &Value, &At<'_>) -> Result,
) -> Result {
    for (name, item) in object(value, at)? {
        if skip_extensions && name.starts_with("x-") {
            continue;
        }
        let at = at.join(name);
        w.message(tag, |pair| {
            pair.string(1, name);
            pair.message(2, |inner| encode(inner, item, &at))
        })?;
    }
    Ok(())
}

/// A message field holding one `repeated Named*` field 1 (`Definitions`, `Properties`, ...).
fn named_map(
    w: &mut Writer,
    tag: u32,
    map: &Fields,
    key: &str,
    at: &At<'_>,
    encode: impl FnMut(&mut Writer, &Value, &At<'_>) -> Result,
) -> Result {
    let Some(value) = map.get(key) else {
        return Ok(());
    };
    let at = at.join(key);
    w.message(tag, |inner| named(inner, 1, value, &at, false, encode))
}

fn sub_message(
    w: &mut Writer,
    tag: u32,
    map: &Fields,
    key: &str,
    at: &At<'_>,
    encode: impl FnOnce(&mut Writer, &Fields, &At<'_>) -> Result,
) -> Result {
    let Some(value) = map.get(key) else {
        return Ok(());
    };
    let at = at.join(key);
    let fields = object(value, &at)?;
    w.message(tag, |inner| encode(inner, fields, &at))
}

fn document(w: &mut Writer, map: &Fields, at: &At<'_>) -> Result {
    string(w, 1, map, "swagger", at)?;
    sub_message(w, 2, map, "info", at, info)?;
    string(w, 3, map, "host", at)?;
    string(w, 4, map, "basePath", at)?;
    strings(w, 5, map, "schemes", at)?;
    strings(w, 6, map, "consumes", at)?;
    strings(w, 7, map, "produces", at)?;
    if let Some(paths) = map.get("paths") {
        let at = at.join("paths");
        let fields = object(paths, &at)?;
        w.message(8, |inner| {
            extensions(inner, 1, fields);
            named(inner, 2, paths, &at, true, |w, v, at| {
                path_item(w, object(v, at)?, at)
            })
        })?;
    }
    named_map(w, 9, map, "definitions", at, |w, v, at| schema(w, v, at, 0))?;
    named_map(w, 10, map, "parameters", at, |w, v, at| {
        parameter(w, object(v, at)?, at)
    })?;
    named_map(w, 11, map, "responses", at, |w, v, at| {
        response(w, object(v, at)?, at)
    })?;
    security(w, 12, map, at)?;
    named_map(w, 13, map, "securityDefinitions", at, |w, v, at| {
        security_definition(w, object(v, at)?, at)
    })?;
    if let Some(tags) = map.get("tags") {
        let at = at.join("tags");
        for tag in array(tags, &at)? {
            let fields = object(tag, &at)?;
            w.message(14, |inner| {
                string(inner, 1, fields, "name", &at)?;
                string(inner, 2, fields, "description", &at)?;
                sub_message(inner, 3, fields, "externalDocs", &at, external_docs)?;
                extensions(inner, 4, fields);
                Ok(())
            })?;
        }
    }
    sub_message(w, 15, map, "externalDocs", at, external_docs)?;
    extensions(w, 16, map);
    Ok(())
}

fn info(w: &mut Writer, map: &Fields, at: &At<'_>) -> Result {
    string(w, 1, map, "title", at)?;
    string(w, 2, map, "version", at)?;
    string(w, 3, map, "description", at)?;
    string(w, 4, map, "termsOfService", at)?;
    sub_message(w, 5, map, "contact", at, |w, map, at| {
        string(w, 1, map, "name", at)?;
        string(w, 2, map, "url", at)?;
        string(w, 3, map, "email", at)?;
        extensions(w, 4, map);
        Ok(())
    })?;
    sub_message(w, 6, map, "license", at, |w, map, at| {
        string(w, 1, map, "name", at)?;
        string(w, 2, map, "url", at)?;
        extensions(w, 3, map);
        Ok(())
    })?;
    extensions(w, 7, map);
    Ok(())
}

fn external_docs(w: &mut Writer, map: &Fields, at: &At<'_>) -> Result {
    string(w, 1, map, "description", at)?;
    string(w, 2, map, "url", at)?;
    extensions(w, 3, map);
    Ok(())
}

/// `repeated SecurityRequirement`: each `{1: NamedStringArray {1: name, 2: StringArray {1: ...}}}`.
fn security(w: &mut Writer, tag: u32, map: &Fields, at: &At<'_>) -> Result {
    let Some(value) = map.get("security") else {
        return Ok(());
    };
    let at = at.join("security");
    for requirement in array(value, &at)? {
        w.message(tag, |inner| {
            named(inner, 1, requirement, &at, false, |w, scopes, at| {
                for scope in array(scopes, at)? {
                    w.string(
                        1,
                        scope.as_str().ok_or_else(|| at.error("is not a string"))?,
                    );
                }
                Ok(())
            })
        })?;
    }
    Ok(())
}

/// `SecurityDefinitionsItem`: a oneof chosen by `type` (and `flow` for oauth2).
fn security_definition(w: &mut Writer, map: &Fields, at: &At<'_>) -> Result {
    let ty = map.get("type").and_then(Value::as_str).unwrap_or_default();
    let flow = map.get("flow").and_then(Value::as_str).unwrap_or_default();
    let scopes = |w: &mut Writer| -> Result {
        sub_message(w, 3, map, "scopes", at, |w, scopes, at| {
            for (name, value) in scopes {
                let value = value
                    .as_str()
                    .ok_or_else(|| at.join(name).error("is not a string"))?;
                w.message(1, |pair| {
                    pair.string(1, name);
                    pair.string(2, value);
                    Ok::<(), ProtoError>(())
                })?;
            }
            Ok(())
        })
    };
    match (ty, flow) {
        ("basic", _) => w.message(1, |w| {
            string(w, 1, map, "type", at)?;
            string(w, 2, map, "description", at)?;
            extensions(w, 3, map);
            Ok(())
        }),
        ("apiKey", _) => w.message(2, |w| {
            string(w, 1, map, "type", at)?;
            string(w, 2, map, "name", at)?;
            string(w, 3, map, "in", at)?;
            string(w, 4, map, "description", at)?;
            extensions(w, 5, map);
            Ok(())
        }),
        ("oauth2", "implicit") => w.message(3, |w| {
            string(w, 1, map, "type", at)?;
            string(w, 2, map, "flow", at)?;
            scopes(w)?;
            string(w, 4, map, "authorizationUrl", at)?;
            string(w, 5, map, "description", at)?;
            extensions(w, 6, map);
            Ok(())
        }),
        ("oauth2", "password" | "application") => {
            let tag = if flow == "password" { 4 } else { 5 };
            w.message(tag, |w| {
                string(w, 1, map, "type", at)?;
                string(w, 2, map, "flow", at)?;
                scopes(w)?;
                string(w, 4, map, "tokenUrl", at)?;
                string(w, 5, map, "description", at)?;
                extensions(w, 6, map);
                Ok(())
            })
        }
        ("oauth2", "accessCode") => w.message(6, |w| {
            string(w, 1, map, "type", at)?;
            string(w, 2, map, "flow", at)?;
            scopes(w)?;
            string(w, 4, map, "authorizationUrl", at)?;
            string(w, 5, map, "tokenUrl", at)?;
            string(w, 6, map, "description", at)?;
            extensions(w, 7, map);
            Ok(())
        }),
        _ => Err(at.error("is not a known security scheme")),
    }
}

/// The operations of a `PathItem`, by field number.
const OPERATIONS: [(&str, u32); 7] = [
    ("get", 2),
    ("put", 3),
    ("post", 4),
    ("delete", 5),
    ("options", 6),
    ("head", 7),
    ("patch", 8),
];

fn path_item(w: &mut Writer, map: &Fields, at: &At<'_>) -> Result {
    string(w, 1, map, "$ref", at)?;
    for (method, tag) in OPERATIONS {
        sub_message(w, tag, map, method, at, operation)?;
    }
    parameters(w, 9, map, at)?;
    extensions(w, 10, map);
    Ok(())
}

fn operation(w: &mut Writer, map: &Fields, at: &At<'_>) -> Result {
    strings(w, 1, map, "tags", at)?;
    string(w, 2, map, "summary", at)?;
    string(w, 3, map, "description", at)?;
    sub_message(w, 4, map, "externalDocs", at, external_docs)?;
    string(w, 5, map, "operationId", at)?;
    strings(w, 6, map, "produces", at)?;
    strings(w, 7, map, "consumes", at)?;
    parameters(w, 8, map, at)?;
    if let Some(responses) = map.get("responses") {
        let at = at.join("responses");
        let fields = object(responses, &at)?;
        w.message(9, |inner| {
            named(inner, 1, responses, &at, true, |w, v, at| {
                let fields = object(v, at)?;
                match fields.get("$ref") {
                    Some(_) => w.message(2, |w| json_reference(w, fields, at)),
                    None => w.message(1, |w| response(w, fields, at)),
                }
            })?;
            extensions(inner, 2, fields);
            Ok(())
        })?;
    }
    strings(w, 10, map, "schemes", at)?;
    boolean(w, 11, map, "deprecated", at)?;
    security(w, 12, map, at)?;
    extensions(w, 13, map);
    Ok(())
}

fn json_reference(w: &mut Writer, map: &Fields, at: &At<'_>) -> Result {
    string(w, 1, map, "$ref", at)?;
    string(w, 2, map, "description", at)
}

/// `repeated ParametersItem`: `{1: Parameter}` or `{2: JsonReference}` for a `$ref`.
fn parameters(w: &mut Writer, tag: u32, map: &Fields, at: &At<'_>) -> Result {
    let Some(value) = map.get("parameters") else {
        return Ok(());
    };
    let at = at.join("parameters");
    for item in array(value, &at)? {
        let fields = object(item, &at)?;
        w.message(tag, |w| match fields.get("$ref") {
            Some(_) => w.message(2, |w| json_reference(w, fields, &at)),
            None => w.message(1, |w| parameter(w, fields, &at)),
        })?;
    }
    Ok(())
}

/// `Parameter`: `{1: BodyParameter}` or `{2: NonBodyParameter}`, whose oneof is chosen by `in`.
fn parameter(w: &mut Writer, map: &Fields, at: &At<'_>) -> Result {
    let location = map.get("in").and_then(Value::as_str).unwrap_or_default();
    if location == "body" {
        return w.message(1, |w| {
            string(w, 1, map, "description", at)?;
            string(w, 2, map, "name", at)?;
            string(w, 3, map, "in", at)?;
            boolean(w, 4, map, "required", at)?;
            if let Some(schema_value) = map.get("schema") {
                let at = at.join("schema");
                w.message(5, |w| schema(w, schema_value, &at, 0))?;
            }
            extensions(w, 6, map);
            Ok(())
        });
    }
    // Each sub-schema starts with required, in, description, name; query and formData add
    // allowEmptyValue; the rest follows the numbering of `PrimitivesItems`, shifted.
    let (oneof, shift) = match location {
        "header" => (1, 4),
        "formData" => (2, 5),
        "query" => (3, 5),
        "path" => (4, 4),
        _ => {
            return Err(at
                .join("in")
                .error("is not body, header, formData, query or path"));
        }
    };
    w.message(2, |w| {
        w.message(oneof, |w| {
            boolean(w, 1, map, "required", at)?;
            string(w, 2, map, "in", at)?;
            string(w, 3, map, "description", at)?;
            string(w, 4, map, "name", at)?;
            if shift == 5 {
                boolean(w, 5, map, "allowEmptyValue", at)?;
            }
            primitive(w, map, at, shift, 0)?;
            extensions(w, 18 + shift, map);
            Ok(())
        })
    })
}

/// The fields `PrimitivesItems` numbers 1 (type) to 17 (multipleOf), at `tag + shift`.
fn primitive(w: &mut Writer, map: &Fields, at: &At<'_>, shift: u32, depth: usize) -> Result {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep);
    }
    string(w, 1 + shift, map, "type", at)?;
    string(w, 2 + shift, map, "format", at)?;
    sub_message(w, 3 + shift, map, "items", at, |w, items, at| {
        primitives_items(w, items, at, depth + 1)
    })?;
    string(w, 4 + shift, map, "collectionFormat", at)?;
    any_field(w, 5 + shift, map, "default");
    double(w, 6 + shift, map, "maximum", at)?;
    boolean(w, 7 + shift, map, "exclusiveMaximum", at)?;
    double(w, 8 + shift, map, "minimum", at)?;
    boolean(w, 9 + shift, map, "exclusiveMinimum", at)?;
    int64(w, 10 + shift, map, "maxLength", at)?;
    int64(w, 11 + shift, map, "minLength", at)?;
    string(w, 12 + shift, map, "pattern", at)?;
    int64(w, 13 + shift, map, "maxItems", at)?;
    int64(w, 14 + shift, map, "minItems", at)?;
    boolean(w, 15 + shift, map, "uniqueItems", at)?;
    any_list(w, 16 + shift, map, "enum", at)?;
    double(w, 17 + shift, map, "multipleOf", at)
}

fn primitives_items(w: &mut Writer, map: &Fields, at: &At<'_>, depth: usize) -> Result {
    primitive(w, map, at, 0, depth)?;
    extensions(w, 18, map);
    Ok(())
}

fn response(w: &mut Writer, map: &Fields, at: &At<'_>) -> Result {
    string(w, 1, map, "description", at)?;
    if let Some(value) = map.get("schema") {
        let at = at.join("schema");
        let fields = object(value, &at)?;
        // SchemaItem: {1: Schema} or {2: FileSchema} for `type: file`.
        w.message(2, |w| {
            if fields.get("type").and_then(Value::as_str) == Some("file") {
                w.message(2, |w| file_schema(w, fields, &at))
            } else {
                w.message(1, |w| schema(w, value, &at, 0))
            }
        })?;
    }
    named_map(w, 3, map, "headers", at, |w, v, at| {
        let fields = object(v, at)?;
        primitive(w, fields, at, 0, 0)?;
        string(w, 18, fields, "description", at)?;
        extensions(w, 19, fields);
        Ok(())
    })?;
    if let Some(examples) = map.get("examples") {
        let at = at.join("examples");
        let fields = object(examples, &at)?;
        w.message(4, |w| {
            for (name, value) in fields {
                w.message(1, |pair| {
                    pair.string(1, name);
                    any(pair, 2, value);
                    Ok::<(), ProtoError>(())
                })?;
            }
            Ok::<(), ProtoError>(())
        })?;
    }
    extensions(w, 5, map);
    Ok(())
}

fn file_schema(w: &mut Writer, map: &Fields, at: &At<'_>) -> Result {
    string(w, 1, map, "format", at)?;
    string(w, 2, map, "title", at)?;
    string(w, 3, map, "description", at)?;
    any_field(w, 4, map, "default");
    strings(w, 5, map, "required", at)?;
    string(w, 6, map, "type", at)?;
    boolean(w, 7, map, "readOnly", at)?;
    sub_message(w, 8, map, "externalDocs", at, external_docs)?;
    any_field(w, 9, map, "example");
    extensions(w, 10, map);
    Ok(())
}

/// `Schema`. `properties` is written even when empty: kubectl tells an object with fields from a
/// map by whether the message is present.
fn schema(w: &mut Writer, value: &Value, at: &At<'_>, depth: usize) -> Result {
    if depth > MAX_DEPTH {
        return Err(ProtoError::TooDeep);
    }
    let map = object(value, at)?;
    let nested = |w: &mut Writer, v: &Value, at: &At<'_>| schema(w, v, at, depth + 1);
    string(w, 1, map, "$ref", at)?;
    string(w, 2, map, "format", at)?;
    string(w, 3, map, "title", at)?;
    string(w, 4, map, "description", at)?;
    any_field(w, 5, map, "default");
    double(w, 6, map, "multipleOf", at)?;
    double(w, 7, map, "maximum", at)?;
    boolean(w, 8, map, "exclusiveMaximum", at)?;
    double(w, 9, map, "minimum", at)?;
    boolean(w, 10, map, "exclusiveMinimum", at)?;
    int64(w, 11, map, "maxLength", at)?;
    int64(w, 12, map, "minLength", at)?;
    string(w, 13, map, "pattern", at)?;
    int64(w, 14, map, "maxItems", at)?;
    int64(w, 15, map, "minItems", at)?;
    boolean(w, 16, map, "uniqueItems", at)?;
    int64(w, 17, map, "maxProperties", at)?;
    int64(w, 18, map, "minProperties", at)?;
    strings(w, 19, map, "required", at)?;
    any_list(w, 20, map, "enum", at)?;
    if let Some(additional) = map.get("additionalProperties") {
        let at = at.join("additionalProperties");
        // AdditionalPropertiesItem: {1: Schema} or {2: bool}.
        w.message(21, |w| match additional {
            Value::Bool(b) => {
                w.bool(2, *b);
                Ok(())
            }
            other => w.message(1, |w| nested(w, other, &at)),
        })?;
    }
    match map.get("type") {
        None => {}
        Some(Value::String(ty)) => w.message(22, |w| {
            w.string(1, ty);
            Ok::<(), ProtoError>(())
        })?,
        Some(_) => strings_message(w, 22, map, "type", at)?,
    }
    if let Some(items) = map.get("items") {
        let at = at.join("items");
        // ItemsItem: {1: repeated Schema}, one for an object, each for a list.
        w.message(23, |w| match items {
            Value::Array(list) => list
                .iter()
                .try_for_each(|item| w.message(1, |w| nested(w, item, &at))),
            item => w.message(1, |w| nested(w, item, &at)),
        })?;
    }
    if let Some(all_of) = map.get("allOf") {
        let at = at.join("allOf");
        for item in array(all_of, &at)? {
            w.message(24, |w| nested(w, item, &at))?;
        }
    }
    named_map(w, 25, map, "properties", at, nested)?;
    string(w, 26, map, "discriminator", at)?;
    boolean(w, 27, map, "readOnly", at)?;
    sub_message(w, 28, map, "xml", at, |w, map, at| {
        string(w, 1, map, "name", at)?;
        string(w, 2, map, "namespace", at)?;
        string(w, 3, map, "prefix", at)?;
        boolean(w, 4, map, "attribute", at)?;
        boolean(w, 5, map, "wrapped", at)?;
        extensions(w, 6, map);
        Ok(())
    })?;
    sub_message(w, 29, map, "externalDocs", at, external_docs)?;
    any_field(w, 30, map, "example");
    extensions(w, 31, map);
    Ok(())
}

/// A message holding `repeated string value = 1` (`TypeItem`).
fn strings_message(w: &mut Writer, tag: u32, map: &Fields, key: &str, at: &At<'_>) -> Result {
    w.message(tag, |w| strings(w, 1, map, key, at))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::wire::{FIXED64, LEN, Reader, VARINT};

    /// One decoded field: its number and its value.
    #[derive(Debug, Clone, PartialEq)]
    enum F<'a> {
        Int(u64),
        Double(f64),
        Bytes(&'a [u8]),
    }

    fn fields(buf: &[u8]) -> Vec<(u32, F<'_>)> {
        let mut reader = Reader::new(buf);
        let mut out = Vec::new();
        while !reader.is_empty() {
            let (tag, wire) = reader.key().expect("key");
            let value = match wire {
                VARINT => F::Int(reader.varint().expect("varint")),
                FIXED64 => F::Double(f64::from_bits(reader.fixed64().expect("fixed64"))),
                LEN => F::Bytes(reader.bytes().expect("bytes")),
                other => panic!("unexpected wire type {other}"),
            };
            out.push((tag, value));
        }
        out
    }

    /// Every value of field `tag`.
    fn all(buf: &[u8], tag: u32) -> Vec<F<'_>> {
        fields(buf)
            .into_iter()
            .filter(|(t, _)| *t == tag)
            .map(|(_, v)| v)
            .collect()
    }

    /// The message at a path of (field, index) steps.
    fn at<'a>(buf: &'a [u8], path: &[(u32, usize)]) -> &'a [u8] {
        path.iter()
            .fold(buf, |buf, &(tag, index)| match all(buf, tag).get(index) {
                Some(F::Bytes(b)) => b,
                other => panic!("field {tag}[{index}] is {other:?}"),
            })
    }

    fn text(buf: &[u8], tag: u32) -> Vec<String> {
        all(buf, tag)
            .into_iter()
            .map(|v| match v {
                F::Bytes(b) => String::from_utf8(b.to_vec()).expect("utf-8"),
                other => panic!("field {tag} is {other:?}"),
            })
            .collect()
    }

    fn one(buf: &[u8], tag: u32) -> String {
        let mut values = text(buf, tag);
        assert_eq!(values.len(), 1, "field {tag}: {values:?}");
        values.remove(0)
    }

    /// `{name: yaml}` of the `NamedAny` entries in field `tag`.
    fn named_any(buf: &[u8], tag: u32) -> Vec<(String, String)> {
        (0..all(buf, tag).len())
            .map(|i| {
                let pair = at(buf, &[(tag, i)]);
                (one(pair, 1), one(at(pair, &[(2, 0)]), 2))
            })
            .collect()
    }

    fn encode(doc: Value) -> Vec<u8> {
        encode_openapi_v2(&doc).expect("encodes")
    }

    #[test]
    fn document_info_schemes_and_extensions() {
        let doc = encode(json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "unversioned", "x-a": 1},
            "host": "",
            "schemes": ["https"],
            "x-kubernetes-b": {"k": ["v", 2]},
        }));
        assert_eq!(one(&doc, 1), "2.0");
        let info = at(&doc, &[(2, 0)]);
        assert_eq!(one(info, 1), "Kubernetes");
        assert_eq!(one(info, 2), "unversioned");
        assert_eq!(named_any(info, 7), [("x-a".to_owned(), "1".to_owned())]);
        assert!(all(&doc, 3).is_empty(), "empty strings are proto3 defaults");
        assert_eq!(text(&doc, 5), ["https"]);
        assert_eq!(
            named_any(&doc, 16),
            [("x-kubernetes-b".to_owned(), r#"{"k": ["v", 2]}"#.to_owned())]
        );
    }

    #[test]
    fn operations_parameters_and_responses() {
        let doc = encode(json!({
            "swagger": "2.0",
            "paths": {
                "x-p": true,
                "/apis/apps/v1/namespaces/{namespace}/deployments/{name}": {
                    "parameters": [
                        {"name": "name", "in": "path", "required": true, "type": "string", "uniqueItems": true},
                        {"$ref": "#/parameters/pretty"},
                    ],
                    "patch": {
                        "description": "partially update",
                        "consumes": ["application/merge-patch+json"],
                        "produces": ["application/json"],
                        "schemes": ["https"],
                        "tags": ["appsV1"],
                        "operationId": "patchAppsV1NamespacedDeployment",
                        "parameters": [
                            {"name": "body", "in": "body", "required": true,
                             "schema": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
                            {"name": "fieldValidation", "in": "query", "description": "d",
                             "type": "string", "uniqueItems": true},
                            {"name": "X-H", "in": "header", "type": "integer", "maximum": 3},
                        ],
                        "responses": {
                            "200": {"description": "OK", "schema": {"$ref": "#/definitions/D"}},
                            "401": {"description": "Unauthorized"},
                            "x-r": "v",
                        },
                        "x-kubernetes-action": "patch",
                        "x-kubernetes-group-version-kind": {"group": "apps", "kind": "Deployment", "version": "v1"},
                    },
                },
            },
        }));
        let paths = at(&doc, &[(8, 0)]);
        assert_eq!(named_any(paths, 1), [("x-p".to_owned(), "true".to_owned())]);
        let named = at(paths, &[(2, 0)]);
        assert_eq!(
            one(named, 1),
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
        );
        let item = at(named, &[(2, 0)]);
        // Path-level parameters: a path parameter and a reference.
        let path_param = at(item, &[(9, 0), (1, 0), (2, 0), (4, 0)]);
        assert_eq!(all(path_param, 1), [F::Int(1)]);
        assert_eq!(one(path_param, 2), "path");
        assert_eq!(one(path_param, 4), "name");
        assert_eq!(one(path_param, 5), "string");
        assert_eq!(all(path_param, 19), [F::Int(1)], "uniqueItems");
        assert_eq!(one(at(item, &[(9, 1), (2, 0)]), 1), "#/parameters/pretty");

        let patch = at(item, &[(8, 0)]);
        assert!(all(item, 2).is_empty(), "no get");
        assert_eq!(text(patch, 1), ["appsV1"]);
        assert_eq!(one(patch, 3), "partially update");
        assert_eq!(one(patch, 5), "patchAppsV1NamespacedDeployment");
        assert_eq!(text(patch, 6), ["application/json"]);
        assert_eq!(text(patch, 7), ["application/merge-patch+json"]);
        assert_eq!(text(patch, 10), ["https"]);
        let body = at(patch, &[(8, 0), (1, 0), (1, 0)]);
        assert_eq!(one(body, 2), "body");
        assert_eq!(one(body, 3), "body");
        assert_eq!(all(body, 4), [F::Int(1)]);
        assert_eq!(
            one(at(body, &[(5, 0)]), 1),
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
        );
        // What kubectl's QueryParamVerifier reads:
        // parameters[].parameter.non_body_parameter.query_parameter_sub_schema.name.
        let query = at(patch, &[(8, 1), (1, 0), (2, 0), (3, 0)]);
        assert_eq!(one(query, 2), "query");
        assert_eq!(one(query, 3), "d");
        assert_eq!(one(query, 4), "fieldValidation");
        assert_eq!(one(query, 6), "string");
        assert_eq!(all(query, 20), [F::Int(1)], "uniqueItems");
        let header = at(patch, &[(8, 2), (1, 0), (2, 0), (1, 0)]);
        assert_eq!(one(header, 5), "integer");
        assert_eq!(all(header, 10), [F::Double(3.0)], "maximum");

        let responses = at(patch, &[(9, 0)]);
        assert_eq!(
            named_any(responses, 2),
            [("x-r".to_owned(), r#""v""#.to_owned())]
        );
        let ok = at(responses, &[(1, 0)]);
        assert_eq!(one(ok, 1), "200");
        let ok = at(ok, &[(2, 0), (1, 0)]);
        assert_eq!(one(ok, 1), "OK");
        assert_eq!(one(at(ok, &[(2, 0), (1, 0)]), 1), "#/definitions/D");
        let unauthorized = at(responses, &[(1, 1), (2, 0), (1, 0)]);
        assert_eq!(one(unauthorized, 1), "Unauthorized");
        assert!(all(unauthorized, 2).is_empty());
        assert_eq!(
            named_any(patch, 13),
            [
                ("x-kubernetes-action".to_owned(), r#""patch""#.to_owned()),
                (
                    "x-kubernetes-group-version-kind".to_owned(),
                    r#"{"group": "apps", "kind": "Deployment", "version": "v1"}"#.to_owned()
                ),
            ]
        );
    }

    #[test]
    fn schemas_with_types_items_properties_and_maps() {
        let doc = encode(json!({
            "swagger": "2.0",
            "definitions": {
                "io.k8s.api.apps.v1.Deployment": {
                    "description": "Deployment enables declarative updates.",
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string", "default": "apps/v1"},
                        "replicas": {"type": "integer", "format": "int32", "minimum": 0},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "containers": {"type": "array", "items": {"$ref": "#/definitions/C"},
                                       "x-kubernetes-patch-merge-key": "name"},
                        "policy": {"type": "string", "enum": ["Always", "Never"]},
                        "closed": {"type": "object", "additionalProperties": false, "maxProperties": 2},
                        "empty": {"type": "object", "properties": {}},
                        "either": {"type": ["string", "integer"]},
                        "tuple": {"items": [{"type": "string"}, {"type": "integer"}]},
                        "both": {"allOf": [{"$ref": "#/definitions/C"}], "nullable": true},
                    },
                    "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "Deployment", "version": "v1"}],
                },
            },
        }));
        let definitions = at(&doc, &[(9, 0)]);
        let named = at(definitions, &[(1, 0)]);
        assert_eq!(one(named, 1), "io.k8s.api.apps.v1.Deployment");
        let deployment = at(named, &[(2, 0)]);
        assert_eq!(
            one(deployment, 4),
            "Deployment enables declarative updates."
        );
        assert_eq!(text(at(deployment, &[(22, 0)]), 1), ["object"]);
        assert_eq!(text(deployment, 19), ["spec"]);
        assert_eq!(
            named_any(deployment, 31),
            [(
                "x-kubernetes-group-version-kind".to_owned(),
                r#"[{"group": "apps", "kind": "Deployment", "version": "v1"}]"#.to_owned()
            )]
        );
        let properties = at(deployment, &[(25, 0)]);
        let property = |name: &str| -> &[u8] {
            let count = all(properties, 1).len();
            (0..count)
                .map(|i| at(properties, &[(1, i)]))
                .find(|pair| one(pair, 1) == name)
                .map(|pair| at(pair, &[(2, 0)]))
                .unwrap_or_else(|| panic!("no property {name}"))
        };
        let api_version = property("apiVersion");
        assert_eq!(one(at(api_version, &[(5, 0)]), 2), r#""apps/v1""#);
        let replicas = property("replicas");
        assert_eq!(one(replicas, 2), "int32");
        assert!(all(replicas, 9).is_empty(), "minimum 0 is the default");
        let labels = property("labels");
        let value = at(labels, &[(21, 0), (1, 0)]);
        assert_eq!(text(at(value, &[(22, 0)]), 1), ["string"]);
        assert!(all(labels, 25).is_empty(), "a map has no properties");
        let containers = property("containers");
        assert_eq!(text(at(containers, &[(22, 0)]), 1), ["array"]);
        assert_eq!(
            one(at(containers, &[(23, 0), (1, 0)]), 1),
            "#/definitions/C"
        );
        assert_eq!(
            named_any(containers, 31),
            [(
                "x-kubernetes-patch-merge-key".to_owned(),
                r#""name""#.to_owned()
            )]
        );
        let policy = property("policy");
        let values: Vec<String> = (0..2).map(|i| one(at(policy, &[(20, i)]), 2)).collect();
        assert_eq!(values, [r#""Always""#, r#""Never""#]);
        let closed = property("closed");
        assert_eq!(all(at(closed, &[(21, 0)]), 2), [F::Int(0)]);
        assert_eq!(all(closed, 17), [F::Int(2)]);
        // Present but empty: kubectl then treats `empty` as an object with no fields.
        assert_eq!(all(property("empty"), 25), [F::Bytes(&[])]);
        assert_eq!(
            text(at(property("either"), &[(22, 0)]), 1),
            ["string", "integer"]
        );
        let tuple = at(property("tuple"), &[(23, 0)]);
        assert_eq!(all(tuple, 1).len(), 2);
        assert_eq!(text(at(tuple, &[(1, 1), (22, 0)]), 1), ["integer"]);
        let both = property("both");
        assert_eq!(one(at(both, &[(24, 0)]), 1), "#/definitions/C");
        assert_eq!(fields(both).len(), 1, "nullable has no field: {both:?}");
    }

    #[test]
    fn top_level_parameters_responses_security_and_tags() {
        let doc = encode(json!({
            "swagger": "2.0",
            "parameters": {"pretty": {"name": "pretty", "in": "query", "type": "string"}},
            "responses": {"NotFound": {"description": "gone",
                "headers": {"X-Rate": {"type": "integer", "description": "r"}},
                "examples": {"application/json": {"a": 1}}}},
            "security": [{"BearerToken": []}],
            "securityDefinitions": {
                "BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"},
                "OAuth": {"type": "oauth2", "flow": "accessCode", "scopes": {"read": "r"},
                          "authorizationUrl": "a", "tokenUrl": "t"},
            },
            "tags": [{"name": "core", "description": "c"}],
        }));
        let pretty = at(&doc, &[(10, 0), (1, 0)]);
        assert_eq!(one(pretty, 1), "pretty");
        assert_eq!(one(at(pretty, &[(2, 0), (2, 0), (3, 0)]), 4), "pretty");
        let not_found = at(&doc, &[(11, 0), (1, 0)]);
        assert_eq!(one(not_found, 1), "NotFound");
        let not_found = at(not_found, &[(2, 0)]);
        assert_eq!(one(not_found, 1), "gone");
        let rate = at(not_found, &[(3, 0), (1, 0)]);
        assert_eq!(one(rate, 1), "X-Rate");
        assert_eq!(one(at(rate, &[(2, 0)]), 1), "integer");
        assert_eq!(one(at(rate, &[(2, 0)]), 18), "r");
        assert_eq!(
            named_any(at(not_found, &[(4, 0)]), 1),
            [("application/json".to_owned(), r#"{"a": 1}"#.to_owned())]
        );
        let requirement = at(&doc, &[(12, 0), (1, 0)]);
        assert_eq!(one(requirement, 1), "BearerToken");
        assert_eq!(all(requirement, 2), [F::Bytes(&[])]);
        let definitions = at(&doc, &[(13, 0)]);
        let bearer = at(definitions, &[(1, 0)]);
        assert_eq!(one(bearer, 1), "BearerToken");
        let api_key = at(bearer, &[(2, 0), (2, 0)]);
        assert_eq!(
            (one(api_key, 1), one(api_key, 2), one(api_key, 3)),
            (
                "apiKey".to_owned(),
                "authorization".to_owned(),
                "header".to_owned()
            )
        );
        let oauth = at(definitions, &[(1, 1), (2, 0), (6, 0)]);
        assert_eq!(
            (one(oauth, 4), one(oauth, 5)),
            ("a".to_owned(), "t".to_owned())
        );
        let scope = at(oauth, &[(3, 0), (1, 0)]);
        assert_eq!(
            (one(scope, 1), one(scope, 2)),
            ("read".to_owned(), "r".to_owned())
        );
        let tag = at(&doc, &[(14, 0)]);
        assert_eq!(
            (one(tag, 1), one(tag, 2)),
            ("core".to_owned(), "c".to_owned())
        );
    }

    #[test]
    fn wrong_json_types_are_errors_with_a_pointer() {
        let cases = [
            (json!([]), "/", "is not an object"),
            (json!({"swagger": 2}), "/swagger", "is not a string"),
            (json!({"paths": []}), "/paths", "is not an object"),
            (
                json!({"definitions": {"a/b": {"required": "x"}}}),
                "/definitions/a~1b/required",
                "is not an array",
            ),
            (
                json!({"definitions": {"A": {"properties": {"n": {"maxLength": 1.5}}}}}),
                "/definitions/A/properties/n/maxLength",
                "is not an integer",
            ),
            (
                json!({"paths": {"/p": {"get": {"parameters": [{"name": "n", "in": "cookie"}]}}}}),
                "/paths/~1p/get/parameters/in",
                "is not body, header, formData, query or path",
            ),
        ];
        for (doc, want_at, want_reason) in cases {
            match encode_openapi_v2(&doc) {
                Err(ProtoError::OpenApiV2 { at, reason }) => {
                    assert_eq!((at.as_str(), reason), (want_at, want_reason), "{doc}");
                }
                other => panic!("{doc}: {other:?}"),
            }
        }
    }

    #[test]
    fn deep_schemas_are_refused_not_overflowed() {
        let mut deep = json!({"type": "string"});
        for _ in 0..200 {
            deep = json!({"type": "array", "items": deep});
        }
        let doc = json!({"definitions": {"Deep": deep}});
        assert!(matches!(encode_openapi_v2(&doc), Err(ProtoError::TooDeep)));
    }

    #[test]
    fn flow_yaml_spaces_separators_and_escapes_strings() {
        let mut out = String::new();
        flow_yaml(
            &json!({"a\"b": [1, "x\ny", null, true, {}], "c": 1.5}),
            &mut out,
        );
        assert_eq!(out, r#"{"a\"b": [1, "x\ny", null, true, {}], "c": 1.5}"#);
    }
}
