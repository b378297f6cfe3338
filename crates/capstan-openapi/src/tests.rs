use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::{Value, json};

use super::*;

fn docs() -> &'static OpenApiDocs {
    static DOCS: OnceLock<OpenApiDocs> = OnceLock::new();
    DOCS.get_or_init(|| OpenApiDocs::build(capstan_api::resources()).expect("documents build"))
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("document is JSON")
}

fn index() -> Value {
    parse(docs().v3_index())
}

fn group(key: &str) -> Value {
    let (body, _) = docs()
        .v3_group(key)
        .unwrap_or_else(|| panic!("no document {key}"));
    parse(body)
}

/// Every v3 document, by key.
fn all_groups() -> Vec<(String, Value)> {
    let index = index();
    let paths = index["paths"].as_object().expect("paths");
    paths.keys().map(|k| (k.clone(), group(k))).collect()
}

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];

/// Every operation of a document: (path, method, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(*method) {
                out.push((path.clone(), (*method).to_owned(), op.clone()));
            }
        }
    }
    out
}

fn param_names(op: &Value) -> BTreeSet<String> {
    op["parameters"]
        .as_array()
        .map(|params| {
            params
                .iter()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Resolves a local JSON pointer ref inside `doc`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

#[test]
fn index_lists_every_group_version_of_the_registry() {
    let index = index();
    let paths = index["paths"].as_object().expect("paths");
    for key in [
        "api/v1",
        "apis/apps/v1",
        "apis/batch/v1",
        "apis/rbac.authorization.k8s.io/v1",
        "api",
        "apis",
        "apis/apps",
    ] {
        assert!(
            paths.contains_key(key),
            "index lacks {key}: {:?}",
            paths.keys()
        );
    }
    for r in capstan_api::resources() {
        let key = model::group_version_key(r.group, r.version);
        assert!(paths.contains_key(&key), "index lacks {key}");
    }
}

#[test]
fn every_server_relative_url_resolves_with_its_hash() {
    let index = index();
    for (key, entry) in index["paths"].as_object().expect("paths") {
        let url = entry["serverRelativeURL"].as_str().expect("url");
        let (path, hash) = url
            .strip_prefix("/openapi/v3/")
            .and_then(|rest| rest.split_once("?hash="))
            .unwrap_or_else(|| panic!("bad url {url}"));
        assert_eq!(path, key);
        let (body, served_hash) = docs().v3_group(path).expect("document");
        assert_eq!(hash, served_hash);
        assert_eq!(super::hash(body), hash, "hash is of the served bytes");
        assert_eq!(hash.len(), 128);
    }
    assert!(docs().v3_group("apis/nothing/v1").is_none());
    assert!(
        docs().v3_group("/apis/apps/v1").is_some(),
        "a leading slash is tolerated"
    );
}

#[test]
fn building_twice_gives_the_same_bytes() {
    let again = OpenApiDocs::build(capstan_api::resources()).expect("build");
    assert_eq!(again.v3_index(), docs().v3_index());
    assert_eq!(again.v2(), docs().v2());
}

#[test]
fn deployment_schema_carries_gvk_and_field_descriptions() {
    let doc = group("apis/apps/v1");
    assert_eq!(doc["openapi"], "3.0.0");
    let schemas = &doc["components"]["schemas"];
    let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );
    let spec_ref = deployment["properties"]["spec"]["allOf"][0]["$ref"]
        .as_str()
        .expect("spec ref");
    assert!(deployment["properties"]["spec"]["description"].is_string());
    let spec = resolve(&doc, spec_ref).expect("DeploymentSpec resolves");
    let strategy = &spec["properties"]["strategy"];
    assert!(
        strategy["description"]
            .as_str()
            .expect("description")
            .contains("replace existing pods"),
        "{strategy}"
    );
    let strategy_schema =
        resolve(&doc, strategy["allOf"][0]["$ref"].as_str().expect("ref")).expect("resolves");
    assert!(
        strategy_schema["properties"]["type"]["description"]
            .as_str()
            .expect("type")
            .contains("RollingUpdate")
    );
    assert_eq!(
        schemas["io.k8s.api.apps.v1.DeploymentList"]["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "version": "v1", "kind": "DeploymentList"}])
    );
}

#[test]
fn deployment_patch_lists_field_validation_and_patch_content_types() {
    let doc = group("apis/apps/v1");
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "version": "v1", "kind": "Deployment"})
    );
    let names = param_names(patch);
    for name in ["fieldValidation", "dryRun", "fieldManager", "force"] {
        assert!(names.contains(name), "patch lacks {name}: {names:?}");
    }
    let content = patch["requestBody"]["content"]
        .as_object()
        .expect("content");
    let types: Vec<&str> = content.keys().map(String::as_str).collect();
    assert_eq!(types.len(), 4);
    for t in render::PATCH_CONTENT_TYPES {
        assert!(types.contains(t), "lacks {t}");
    }
}

#[test]
fn every_write_operation_lists_dry_run_field_manager_and_field_validation() {
    for (key, doc) in all_groups() {
        for (path, method, op) in operations(&doc) {
            let names = param_names(&op);
            let connect = op["x-kubernetes-action"] == "connect";
            if matches!(method.as_str(), "post" | "put" | "patch") && !connect {
                for name in ["dryRun", "fieldManager", "fieldValidation"] {
                    assert!(names.contains(name), "{key} {method} {path} lacks {name}");
                }
            }
            if method == "patch" {
                assert!(names.contains("force"), "{key} patch {path} lacks force");
            }
        }
    }
}

#[test]
fn paths_follow_scope_and_subresources() {
    let core = group("api/v1");
    let apps = group("apis/apps/v1");
    let cases: &[(&Value, &str, &str, Value)] = &[
        (
            &core,
            "/api/v1/namespaces/{namespace}/pods",
            "post",
            json!({"group": "", "version": "v1", "kind": "Pod"}),
        ),
        (
            &core,
            "/api/v1/namespaces/{namespace}/pods/{name}",
            "get",
            json!({"group": "", "version": "v1", "kind": "Pod"}),
        ),
        (
            &core,
            "/api/v1/pods",
            "get",
            json!({"group": "", "version": "v1", "kind": "Pod"}),
        ),
        (
            &core,
            "/api/v1/nodes/{name}",
            "delete",
            json!({"group": "", "version": "v1", "kind": "Node"}),
        ),
        (
            &core,
            "/api/v1/namespaces/{name}/status",
            "patch",
            json!({"group": "", "version": "v1", "kind": "Namespace"}),
        ),
        (
            &core,
            "/api/v1/namespaces/{namespace}/pods/{name}/eviction",
            "post",
            json!({"group": "policy", "version": "v1", "kind": "Eviction"}),
        ),
        (
            &core,
            "/api/v1/namespaces/{namespace}/pods/{name}/exec",
            "post",
            json!({"group": "", "version": "v1", "kind": "PodExecOptions"}),
        ),
        (
            &core,
            "/api/v1/namespaces/{namespace}/pods/{name}/log",
            "get",
            json!({"group": "", "version": "v1", "kind": "Pod"}),
        ),
        (
            &apps,
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
            "put",
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
        ),
        (
            &apps,
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status",
            "get",
            json!({"group": "apps", "version": "v1", "kind": "Deployment"}),
        ),
    ];
    for (doc, path, method, gvk) in cases {
        let op = &doc["paths"][*path][*method];
        assert_eq!(
            &op["x-kubernetes-group-version-kind"], gvk,
            "{method} {path}: {op}"
        );
    }
    assert!(
        core["paths"]
            .get("/api/v1/namespaces/{namespace}/nodes")
            .is_none()
    );
    assert!(
        core["paths"]
            .get("/api/v1/namespaces/{namespace}/namespaces")
            .is_none()
    );
    let scale = &apps["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"];
    assert_eq!(
        scale["x-kubernetes-group-version-kind"],
        json!([{"group": "autoscaling", "version": "v1", "kind": "Scale"}])
    );
    // Create-only kinds have no item path and no list.
    let authz = group("apis/authorization.k8s.io/v1");
    assert!(
        authz["paths"]["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"]["post"]
            .is_object()
    );
    assert!(
        authz["paths"]["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"]
            .get("get")
            .is_none()
    );
    assert!(
        authz["paths"]
            .get("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews/{name}")
            .is_none()
    );
}

/// What `kubectl explain <resource>` does with the v3 document: find an operation on the
/// resource's paths that names a GVK, then the schema that lists that GVK.
#[test]
fn kubectl_explain_finds_every_resource_schema_by_gvk() {
    for r in capstan_api::resources() {
        let key = model::group_version_key(r.group, r.version);
        let doc = group(&key);
        let prefix = format!("/{key}");
        let candidates = [
            format!("{prefix}/{}", r.plural),
            format!("{prefix}/{}/{{name}}", r.plural),
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural),
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
        ];
        let gvk = candidates
            .iter()
            .filter_map(|path| doc["paths"].get(path))
            .flat_map(|item| METHODS.iter().filter_map(move |m| item.get(*m)))
            .find_map(|op| op.get("x-kubernetes-group-version-kind"))
            .unwrap_or_else(|| panic!("no operation of {} names a gvk", r.gvr()));
        assert_eq!(
            gvk,
            &json!({"group": r.group, "version": r.version, "kind": r.kind})
        );
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let found = schemas.values().any(|s| {
            s["x-kubernetes-group-version-kind"]
                .as_array()
                .is_some_and(|list| list.contains(gvk))
        });
        assert!(found, "no schema of {} carries its gvk", r.gvr());
    }
}

fn check_refs(doc: &Value, value: &Value, prefix: &str, what: &str) -> usize {
    let mut refs = BTreeSet::new();
    schema::collect_refs(value, &mut refs);
    for reference in &refs {
        assert!(
            reference.starts_with(prefix),
            "{what}: {reference} is not under {prefix}"
        );
        assert!(
            resolve(doc, reference).is_some(),
            "{what}: {reference} does not resolve"
        );
    }
    refs.len()
}

#[test]
fn every_ref_resolves_inside_its_document() {
    for (key, doc) in all_groups() {
        let count = check_refs(&doc, &doc, "#/components/schemas/", &key);
        assert!(count > 0, "{key} has no refs");
    }
    let v2 = parse(docs().v2());
    assert!(check_refs(&v2, &v2, "#/definitions/", "v2") > 50);
}

/// Constructs OpenAPI 3.0 does not have must not appear anywhere.
fn assert_openapi_3_0(value: &Value, at: &str) {
    match value {
        Value::Object(object) => {
            // Under `properties` the keys are field names (JSONSchemaProps has a `$schema` field).
            if !at.ends_with("/properties") {
                for key in ["$schema", "$defs", "const", "examples", "$id"] {
                    assert!(!object.contains_key(key), "{at} has {key}");
                }
            }
            if let Some(t) = object.get("type") {
                assert!(
                    t.is_string() || at.ends_with("/properties"),
                    "{at}: type {t}"
                );
            }
            for (key, child) in object {
                assert_openapi_3_0(child, &format!("{at}/{key}"));
            }
        }
        Value::Array(items) => items.iter().for_each(|i| assert_openapi_3_0(i, at)),
        _ => {}
    }
}

#[test]
fn documents_hold_no_json_schema_only_constructs() {
    for (key, doc) in all_groups() {
        assert_openapi_3_0(&doc, &key);
    }
}

#[test]
fn meta_types_are_in_every_group_version_document() {
    for key in ["api/v1", "apis/apps/v1", "apis/batch/v1"] {
        let doc = group(key);
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for name in [
            "ObjectMeta",
            "ListMeta",
            "Status",
            "DeleteOptions",
            "Patch",
            "WatchEvent",
            "APIResourceList",
        ] {
            let full = format!("io.k8s.apimachinery.pkg.apis.meta.v1.{name}");
            assert!(schemas.contains_key(&full), "{key} lacks {full}");
        }
    }
    let apps = group("apis/apps/v1");
    let delete_options =
        &apps["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"];
    let gvks = delete_options["x-kubernetes-group-version-kind"]
        .as_array()
        .expect("gvks");
    assert!(gvks.contains(&json!({"group": "apps", "version": "v1", "kind": "DeleteOptions"})));
    assert!(gvks.contains(&json!({"group": "", "version": "v1", "kind": "DeleteOptions"})));
}

#[test]
fn v2_is_swagger_with_body_parameters_and_gvks() {
    let v2 = parse(docs().v2());
    assert_eq!(v2["swagger"], "2.0");
    let deployment = &v2["definitions"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );
    assert_eq!(
        deployment["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    );
    let patch = &v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["consumes"].as_array().expect("consumes").len(), 4);
    let params = patch["parameters"].as_array().expect("params");
    assert!(params.iter().any(|p| p["in"] == "body"
        && p["schema"]["$ref"] == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"));
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["type"] == "string")
    );
    assert_eq!(
        v2["definitions"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["type"],
        "string"
    );
    assert!(v2["paths"]["/api/v1/namespaces/{namespace}/pods"]["get"].is_object());
}

#[test]
fn field_extensions_reach_both_documents() {
    let extensions = |definition: &str, field: &str| match (definition, field) {
        ("io.k8s.api.core.v1.PodSpec", "containers") => vec![
            ("x-kubernetes-patch-strategy".to_owned(), json!("merge")),
            ("x-kubernetes-patch-merge-key".to_owned(), json!("name")),
        ],
        _ => Vec::new(),
    };
    let docs = OpenApiDocs::build_with(capstan_api::resources(), &extensions).expect("build");
    let (body, hash) = docs.v3_group("api/v1").expect("core");
    let core = parse(body);
    let containers =
        &core["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["type"], "array");
    assert_ne!(
        Some(hash),
        self::docs().v3_group("api/v1").map(|(_, h)| h),
        "the hash follows the content"
    );
    let v2 = parse(docs.v2());
    assert_eq!(
        v2["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["x-kubernetes-patch-merge-key"],
        "name"
    );
    assert!(self::docs().v2() != docs.v2());
}

#[test]
fn kinds_do_not_require_metadata() {
    let v2: serde_json::Value = serde_json::from_slice(docs().v2()).expect("v2 json");
    for name in [
        "io.k8s.api.authentication.v1.TokenReview",
        "io.k8s.api.core.v1.Pod",
        "io.k8s.api.core.v1.ConfigMap",
    ] {
        let definition = &v2["definitions"][name];
        assert!(definition.is_object(), "{name} missing");
        let required = definition["required"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            !required.iter().any(|f| f == "metadata"),
            "{name} requires metadata: {required:?}"
        );
    }
    // Other required fields stay (TokenReview needs its spec, as in kube-apiserver's document).
    assert_eq!(
        v2["definitions"]["io.k8s.api.authentication.v1.TokenReview"]["required"],
        serde_json::json!(["spec"])
    );
}

#[test]
fn a_custom_kind_gets_its_schema_and_paths_without_strategic_merge_patch() {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"cronSpec": {"type": "string"}}}
                }}},
                "subresources": {"status": {}}
            }]
        }
    });
    let custom = capstan_api::custom::resources_of(&crd).expect("a valid definition");
    let resources: Vec<capstan_api::ResourceInfo> = capstan_api::resources()
        .iter()
        .copied()
        .chain(custom)
        .collect();
    let docs = OpenApiDocs::build(&resources).expect("build");
    let (body, _) = docs
        .v3_group("apis/stable.example.com/v1")
        .expect("a document for the custom group-version");
    let doc = parse(body);
    let schema = &doc["components"]["schemas"]["com.example.stable.v1.CronTab"];
    assert_eq!(
        schema["properties"]["spec"]["properties"]["cronSpec"]["type"],
        "string"
    );
    assert_eq!(
        schema["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert_eq!(
        schema["x-kubernetes-group-version-kind"],
        json!([{"group": "stable.example.com", "version": "v1", "kind": "CronTab"}])
    );
    let patch = &doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]
        ["patch"];
    let types: Vec<&String> = patch["requestBody"]["content"]
        .as_object()
        .expect("patch content types")
        .keys()
        .collect();
    assert_eq!(
        types,
        [
            "application/apply-patch+yaml",
            "application/json-patch+json",
            "application/merge-patch+json"
        ]
    );
    assert!(
        patch["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .any(|p| p["name"] == "fieldValidation"),
        "server-side field validation advertised"
    );
    // Built-in kinds keep strategic merge patch.
    let apps = parse(docs.v3_group("apis/apps/v1").expect("apps").0);
    let patch = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert!(patch["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object());
}
