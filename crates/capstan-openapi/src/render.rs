//! Renders the paths of [`crate::model`] as OpenAPI 3.0 and Swagger 2.0 path objects, shaped as
//! kube-apiserver shapes them (kubectl reads `x-kubernetes-group-version-kind`,
//! `x-kubernetes-action`, the PATCH content types and the `fieldValidation` parameter).

use serde_json::{Map, Value, json};

use crate::model::{Body, Location, Operation, Param, PathItem, Payload, Response};
use crate::schema::{V2_REF, V3_REF};

/// The content types a PATCH accepts.
pub(crate) const PATCH_CONTENT_TYPES: &[&str] = &[
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// The PATCH content types of a kind, strategic merge patch only if it takes one.
fn patch_content_types(strategic: bool) -> impl Iterator<Item = &'static &'static str> {
    PATCH_CONTENT_TYPES
        .iter()
        .filter(move |m| strategic || !m.contains("strategic"))
}

const JSON: &str = "application/json";
const JSON_WATCH: &str = "application/json;stream=watch";

fn response_description(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        401 => "Unauthorized",
        _ => "",
    }
}

/// The media types a response is served as.
fn produces(op: &Operation) -> Vec<&'static str> {
    if op
        .responses
        .iter()
        .any(|r| r.payload == Some(Payload::Text))
    {
        return vec!["*/*"];
    }
    if op.watchable {
        vec![JSON, JSON_WATCH]
    } else {
        vec![JSON]
    }
}

fn v3_param(param: &Param) -> Value {
    let mut out = json!({
        "name": param.name,
        "in": location(param),
        "description": param.description,
        "schema": {"type": param.ty.as_str(), "uniqueItems": true},
    });
    if param.required {
        out["required"] = Value::Bool(true);
    }
    out
}

fn v2_param(param: &Param) -> Value {
    let mut out = json!({
        "name": param.name,
        "in": location(param),
        "description": param.description,
        "type": param.ty.as_str(),
        "uniqueItems": true,
    });
    if param.required {
        out["required"] = Value::Bool(true);
    }
    out
}

fn location(param: &Param) -> &'static str {
    match param.location {
        Location::Path => "path",
        Location::Query => "query",
    }
}

fn v3_payload(payload: &Payload) -> Value {
    match payload {
        Payload::Definition(name) => json!({"$ref": format!("{V3_REF}{name}")}),
        Payload::Text => json!({"type": "string"}),
    }
}

fn v2_payload(payload: &Payload) -> Value {
    match payload {
        Payload::Definition(name) => json!({"$ref": format!("{V2_REF}{name}")}),
        Payload::Text => json!({"type": "string"}),
    }
}

fn common(op: &Operation, tag: &str) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("description".to_owned(), json!(op.description));
    out.insert("operationId".to_owned(), json!(op.id));
    out.insert("tags".to_owned(), json!([tag]));
    if let Some(action) = op.action {
        out.insert("x-kubernetes-action".to_owned(), json!(action));
    }
    if let Some(gvk) = &op.gvk {
        out.insert("x-kubernetes-group-version-kind".to_owned(), gvk.to_json());
    }
    out
}

fn v3_responses(op: &Operation) -> Value {
    let media = produces(op);
    let mut out = Map::new();
    let unauthorized = Response {
        code: 401,
        payload: None,
    };
    for response in op.responses.iter().chain([&unauthorized]) {
        let mut entry = json!({"description": response_description(response.code)});
        if let Some(payload) = &response.payload {
            let schema = v3_payload(payload);
            let content: Map<String, Value> = media
                .iter()
                .map(|m| ((*m).to_owned(), json!({"schema": schema})))
                .collect();
            entry["content"] = Value::Object(content);
        }
        out.insert(response.code.to_string(), entry);
    }
    Value::Object(out)
}

fn v3_operation(op: &Operation, tag: &str) -> Value {
    let mut out = common(op, tag);
    if !op.params.is_empty() {
        out.insert(
            "parameters".to_owned(),
            Value::Array(op.params.iter().map(v3_param).collect()),
        );
    }
    match &op.body {
        Some(Body::Object(name)) => {
            out.insert(
                "requestBody".to_owned(),
                json!({"content": {"*/*": {"schema": {"$ref": format!("{V3_REF}{name}")}}}, "required": true}),
            );
        }
        Some(Body::Patch(name, strategic)) => {
            let schema = json!({"schema": {"$ref": format!("{V3_REF}{name}")}});
            let content: Map<String, Value> = patch_content_types(*strategic)
                .map(|m| ((*m).to_owned(), schema.clone()))
                .collect();
            out.insert(
                "requestBody".to_owned(),
                json!({"content": content, "required": true}),
            );
        }
        None => {}
    }
    out.insert("responses".to_owned(), v3_responses(op));
    Value::Object(out)
}

fn v2_operation(op: &Operation, tag: &str) -> Value {
    let mut out = common(op, tag);
    let consumes: Vec<&str> = match &op.body {
        Some(Body::Patch(_, strategic)) => patch_content_types(*strategic).copied().collect(),
        _ => vec!["*/*"],
    };
    out.insert("consumes".to_owned(), json!(consumes));
    out.insert("produces".to_owned(), json!(produces(op)));
    out.insert("schemes".to_owned(), json!(["https"]));
    let mut params: Vec<Value> = Vec::new();
    match &op.body {
        Some(Body::Object(name) | Body::Patch(name, _)) => params.push(json!({
            "name": "body",
            "in": "body",
            "required": true,
            "schema": {"$ref": format!("{V2_REF}{name}")},
        })),
        None => {}
    }
    params.extend(op.params.iter().map(v2_param));
    if !params.is_empty() {
        out.insert("parameters".to_owned(), Value::Array(params));
    }
    let mut responses = Map::new();
    for response in &op.responses {
        let mut entry = json!({"description": response_description(response.code)});
        if let Some(payload) = &response.payload {
            entry["schema"] = v2_payload(payload);
        }
        responses.insert(response.code.to_string(), entry);
    }
    responses.insert("401".to_owned(), json!({"description": "Unauthorized"}));
    out.insert("responses".to_owned(), Value::Object(responses));
    Value::Object(out)
}

/// The `paths` object of a v3 document.
pub(crate) fn v3_paths(items: &[PathItem], tag: &str) -> Map<String, Value> {
    items
        .iter()
        .map(|item| {
            let mut path = Map::new();
            for op in &item.operations {
                path.insert(op.method.as_str().to_owned(), v3_operation(op, tag));
            }
            if !item.params.is_empty() {
                path.insert(
                    "parameters".to_owned(),
                    Value::Array(item.params.iter().map(v3_param).collect()),
                );
            }
            (item.path.clone(), Value::Object(path))
        })
        .collect()
}

/// The `paths` entries of the v2 document for these items.
pub(crate) fn v2_paths(items: &[PathItem], tag: &str, out: &mut Map<String, Value>) {
    for item in items {
        let mut path = Map::new();
        for op in &item.operations {
            path.insert(op.method.as_str().to_owned(), v2_operation(op, tag));
        }
        if !item.params.is_empty() {
            path.insert(
                "parameters".to_owned(),
                Value::Array(item.params.iter().map(v2_param).collect()),
            );
        }
        out.insert(item.path.clone(), Value::Object(path));
    }
}
