//! The protobuf v2 document against the real kubectl 1.32. A tiny plain-HTTP server on 127.0.0.1
//! answers discovery, 404s `/openapi/v3` (so kubectl falls back to v2, as it does against
//! kube-apiserver for kinds the v3 documents lack) and serves Capstan's Swagger document encoded
//! by [`encode_openapi_v2`]. kubectl only ever asks for `/openapi/v2` as protobuf.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;

use capstan_api::ResourceInfo;
use capstan_openapi::OpenApiDocs;
use capstan_protobuf::{
    OPENAPI_V2_MEDIA_TYPE, OPENAPI_V2_MEDIA_TYPE_DEPRECATED, encode_openapi_v2,
};
use serde_json::{Value, json};

const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32";

/// One request the server saw.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: String,
    accept: String,
}

struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// Serves `v2` (Swagger JSON), encoded as protobuf, at `/openapi/v2`.
    fn start(v2: &Value) -> Server {
        let v2 = Arc::new(encode_openapi_v2(v2).expect("v2 document encodes"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let v2 = Arc::clone(&v2);
                let log = Arc::clone(&log);
                thread::spawn(move || handle(stream, &v2, &log));
            }
        });
        Server { port, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: capstan\n  cluster:\n    server: http://127.0.0.1:{}\nusers:\n- name: anonymous\n  user: {{}}\ncontexts:\n- name: capstan\n  context:\n    cluster: capstan\n    user: anonymous\n    namespace: default\ncurrent-context: capstan\n",
            self.port
        );
        std::fs::write(&path, config).expect("write kubeconfig");
        path
    }
}

fn handle(stream: TcpStream, v2: &[u8], log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut length = 0usize;
    let mut accept = String::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "accept" => accept = value.trim().to_owned(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    log.lock().expect("lock").push(Seen {
        method: method.clone(),
        path: path.to_owned(),
        query: query.to_owned(),
        accept,
    });
    let (status, content_type, bytes) = route(&method, path, &body, v2);
    let mut stream = stream;
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&bytes);
}

const JSON: &str = "application/json";

fn route(
    method: &str,
    path: &str,
    body: &[u8],
    v2: &[u8],
) -> (&'static str, &'static str, Vec<u8>) {
    let ok = |value: Value| ("200 OK", JSON, value.to_string().into_bytes());
    let resources = capstan_api::resources();
    match (method, path) {
        ("GET", "/openapi/v2") => ("200 OK", OPENAPI_V2_MEDIA_TYPE, v2.to_vec()),
        ("GET", "/api") => ok(json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})),
        ("GET", "/apis") => ok(group_list(resources)),
        // kubectl's field-validation check lists CRDs for kinds it cannot find; none here.
        ("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions") => ok(json!({
            "kind": "CustomResourceDefinitionList", "apiVersion": "apiextensions.k8s.io/v1",
            "metadata": {"resourceVersion": "1"}, "items": []})),
        ("GET", p)
            if p == "/api/v1" || (p.starts_with("/apis/") && p.matches('/').count() == 3) =>
        {
            let gv = p.trim_start_matches("/api/").trim_start_matches("/apis/");
            match resource_list(resources, gv) {
                Some(list) => ok(list),
                None => not_found(),
            }
        }
        // Creates echo the object back, as a server that stored it would.
        ("POST", p) if p.starts_with("/apis/apps/v1/namespaces/default/") => {
            ("201 Created", JSON, body.to_vec())
        }
        _ => not_found(),
    }
}

fn not_found() -> (&'static str, &'static str, Vec<u8>) {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": "NotFound", "code": 404});
    ("404 Not Found", JSON, status.to_string().into_bytes())
}

fn group_list(resources: &[ResourceInfo]) -> Value {
    let mut groups: Vec<Value> = Vec::new();
    for (group, version) in capstan_api::groups() {
        if group.is_empty() || !resources.iter().any(|r| r.group == group) {
            continue;
        }
        let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
        groups.push(json!({"name": group, "versions": [gv], "preferredVersion": gv}));
    }
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(resources: &[ResourceInfo], group_version: &str) -> Option<Value> {
    let list: Vec<Value> = resources
        .iter()
        .filter(|r| r.api_version() == group_version)
        .map(|r| {
            json!({
                "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced(),
                "kind": r.kind, "verbs": r.verbs, "shortNames": r.short_names,
            })
        })
        .collect();
    (!list.is_empty()).then(|| {
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": list})
    })
}

/// Capstan's Swagger 2.0 document, as `GET /openapi/v2` serves it as JSON.
fn capstan_v2() -> Value {
    let docs = OpenApiDocs::build(capstan_api::resources()).expect("documents build");
    serde_json::from_slice(docs.v2()).expect("v2 is JSON")
}

/// The document with no operation taking `fieldValidation`, as a server older than Kubernetes
/// 1.25 serves it: kubectl then validates client-side, against the v2 schemas.
fn without_field_validation(mut doc: Value) -> Value {
    let paths = doc["paths"].as_object_mut().expect("paths");
    for item in paths.values_mut() {
        for operation in item.as_object_mut().expect("path item").values_mut() {
            if let Some(params) = operation
                .get_mut("parameters")
                .and_then(Value::as_array_mut)
            {
                params.retain(|p| p["name"] != "fieldValidation");
            }
        }
    }
    doc
}

/// Writes `manifest` into `dir` and runs kubectl against the server with a fresh cache.
/// Returns (success, stdout, stderr).
fn kubectl(server: &Server, dir: &Path, args: &[&str], manifest: &Value) -> (bool, String, String) {
    assert!(
        Path::new(KUBECTL).exists(),
        "{KUBECTL} is needed for this test"
    );
    let file = dir.join("manifest.json");
    std::fs::write(&file, manifest.to_string()).expect("write manifest");
    let output = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(server.kubeconfig(dir))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(args)
        .arg("-f")
        .arg(&file)
        .env("HOME", dir)
        .env_remove("KUBECONFIG")
        .output()
        .expect("kubectl runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const APPLY_STRICT: &[&str] = &["apply", "--dry-run=client", "--validate=strict"];

fn deployment(spec_extra: Value) -> Value {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "web", "image": "nginx"}]}},
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), spec_extra) {
        spec.extend(extra);
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

fn assert_fetched_protobuf_v2(server: &Server) {
    let seen = server.seen();
    let v2: Vec<&Seen> = seen.iter().filter(|s| s.path == "/openapi/v2").collect();
    assert!(
        !v2.is_empty(),
        "kubectl never asked for /openapi/v2: {seen:?}"
    );
    for request in v2 {
        assert!(
            request.accept.contains(OPENAPI_V2_MEDIA_TYPE_DEPRECATED),
            "{request:?}"
        );
    }
}

#[test]
fn kubectl_apply_of_an_unknown_kind_reads_v2_and_reports_no_mapping() {
    let server = Server::start(&capstan_v2());
    let dir = tempfile::tempdir().expect("tempdir");
    let widget = json!({"apiVersion": "v1", "kind": "Widget", "metadata": {"name": "w"}});
    let (ok, out, err) = kubectl(&server, dir.path(), APPLY_STRICT, &widget);
    assert!(!ok, "an unknown kind cannot be applied: {out}");
    assert!(
        err.contains(r#"no matches for kind "Widget" in version "v1""#),
        "stderr: {err}"
    );
    assert!(!err.contains("failed to download openapi"), "stderr: {err}");
    assert_fetched_protobuf_v2(&server);
}

/// With the document as Capstan serves it, kubectl finds `fieldValidation` among the parameters
/// of the Deployment PATCH (a query parameter, matched through `x-kubernetes-group-version-kind`)
/// and leaves validation to the server: it sends `fieldValidation=Strict`.
#[test]
fn kubectl_learns_server_side_field_validation_from_the_v2_patch_parameters() {
    let server = Server::start(&capstan_v2());
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = deployment(json!({"replicass": 2}));
    let (ok, out, err) = kubectl(
        &server,
        dir.path(),
        &["create", "--validate=strict"],
        &manifest,
    );
    assert!(ok, "kubectl create failed:\nstdout: {out}\nstderr: {err}");
    // A client-side dry run therefore does not reject the unknown field either.
    let (ok, out, err) = kubectl(&server, dir.path(), APPLY_STRICT, &manifest);
    assert!(ok, "kubectl apply failed:\nstdout: {out}\nstderr: {err}");
    assert!(
        out.contains("deployment.apps/web created (dry run)"),
        "{out}"
    );
    let seen = server.seen();
    let post = seen
        .iter()
        .find(|s| s.method == "POST")
        .unwrap_or_else(|| panic!("no POST: {seen:?}"));
    assert_eq!(post.path, "/apis/apps/v1/namespaces/default/deployments");
    assert!(post.query.contains("fieldValidation=Strict"), "{post:?}");
    assert_fetched_protobuf_v2(&server);
}

/// Against a document whose operations lack `fieldValidation`, kubectl validates client-side
/// against the v2 definitions: the whole schema graph must parse, and an unknown field is caught.
#[test]
fn kubectl_validates_client_side_against_the_v2_definitions() {
    let server = Server::start(&without_field_validation(capstan_v2()));
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, out, err) = kubectl(
        &server,
        dir.path(),
        APPLY_STRICT,
        &deployment(json!({"replicass": 2})),
    );
    assert!(!ok, "an unknown field fails strict validation: {out}");
    // kubectl's client-side message; `unknown field "spec.replicass"` is the server's.
    assert!(
        err.contains(r#"ValidationError(Deployment.spec): unknown field "replicass" in io.k8s.api.apps.v1.DeploymentSpec"#),
        "stderr: {err}"
    );
    assert_fetched_protobuf_v2(&server);

    let (ok, out, err) = kubectl(
        &server,
        dir.path(),
        APPLY_STRICT,
        &deployment(json!({"replicas": 2})),
    );
    assert!(
        ok,
        "a valid Deployment passes:\nstdout: {out}\nstderr: {err}"
    );
    assert!(
        out.contains("deployment.apps/web created (dry run)"),
        "{out}"
    );
}
