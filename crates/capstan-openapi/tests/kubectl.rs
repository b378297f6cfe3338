//! The documents against the real kubectl: a tiny plain-HTTP server on 127.0.0.1 answers the
//! discovery kubectl needs and serves the OpenAPI documents, and `/usr/bin/kubectl` runs
//! `explain` and `create --validate=strict` against it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;

use capstan_api::ResourceInfo;
use capstan_openapi::OpenApiDocs;
use serde_json::{Value, json};

const KUBECTL: &str = "/usr/bin/kubectl";

/// One request the server saw.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: String,
}

struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start() -> Server {
        Server::start_with(OpenApiDocs::build(capstan_api::resources()).expect("documents build"))
    }

    fn start_with(docs: OpenApiDocs) -> Server {
        let docs = Arc::new(docs);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let docs = Arc::clone(&docs);
                let log = Arc::clone(&log);
                thread::spawn(move || handle(stream, &docs, &log));
            }
        });
        Server { port, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// A kubeconfig for this server in `dir`.
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

fn handle(stream: TcpStream, docs: &OpenApiDocs, log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut length = 0usize;
    let mut content_type = String::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "content-type" => content_type = value.trim().to_owned(),
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
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let (status, bytes) = route(&method, path, &body, docs);
    let mut stream = stream;
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        bytes.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&bytes);
}

fn route(method: &str, path: &str, body: &[u8], docs: &OpenApiDocs) -> (&'static str, Vec<u8>) {
    let ok = |value: Value| ("200 OK", value.to_string().into_bytes());
    let resources = capstan_api::resources();
    match (method, path) {
        ("GET", "/api") => ok(json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})),
        ("GET", "/apis") => ok(group_list(resources)),
        ("GET", "/openapi/v3") => ("200 OK", docs.v3_index().to_vec()),
        ("GET", p) if p.starts_with("/openapi/v3/") => {
            match docs.v3_group(&p["/openapi/v3/".len()..]) {
                Some((bytes, _)) => ("200 OK", bytes.to_vec()),
                None => not_found(),
            }
        }
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
            ("201 Created", body.to_vec())
        }
        // One live Deployment, last applied with two containers; patches return it unchanged.
        ("GET" | "PATCH", "/apis/apps/v1/namespaces/default/deployments/web") => {
            ok(live_deployment())
        }
        _ => not_found(),
    }
}

fn deployment(containers: &[&str]) -> Value {
    let containers: Vec<Value> = containers
        .iter()
        .map(|name| json!({"name": name, "image": "nginx"}))
        .collect();
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": containers}}}
    })
}

fn live_deployment() -> Value {
    let mut live = deployment(&["app", "sidecar"]);
    let applied = live.to_string();
    live["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": applied});
    live["metadata"]["resourceVersion"] = json!("7");
    live["metadata"]["uid"] = json!("0b4f8a2e-0000-4000-8000-000000000001");
    live
}

fn not_found() -> (&'static str, Vec<u8>) {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
    ("404 Not Found", status.to_string().into_bytes())
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
    let mut list = Vec::new();
    for r in resources
        .iter()
        .filter(|r| r.api_version() == group_version)
    {
        list.push(json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced(), "kind": r.kind,
            "verbs": r.verbs, "shortNames": r.short_names, "categories": r.categories,
        }));
        for sub in r.subresources {
            let kind = sub.gvk.map_or(r.kind, |(_, _, kind)| kind);
            list.push(json!({
                "name": format!("{}/{}", r.plural, sub.name), "singularName": "", "namespaced": r.namespaced(),
                "kind": kind, "verbs": sub.verbs,
            }));
        }
    }
    (!list.is_empty()).then(|| {
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list})
    })
}

/// Runs kubectl against the server with a fresh cache; returns (success, stdout, stderr).
fn kubectl(server: &Server, dir: &Path, args: &[&str]) -> (bool, String, String) {
    let kubeconfig = server.kubeconfig(dir);
    let cache = dir.join("cache");
    let output = Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--cache-dir")
        .arg(&cache)
        .args(args)
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

fn have_kubectl() -> bool {
    Path::new(KUBECTL).exists()
}

#[test]
fn kubectl_explain_deployment_strategy_prints_k8s_openapi_descriptions() {
    assert!(have_kubectl(), "{KUBECTL} is needed for this test");
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, out, err) = kubectl(
        &server,
        dir.path(),
        &["explain", "deployment.spec.strategy"],
    );
    assert!(ok, "kubectl explain failed:\nstdout: {out}\nstderr: {err}");
    for want in [
        "GROUP:      apps",
        "KIND:       Deployment",
        "FIELD: strategy <DeploymentStrategy>",
        // The field's own description and its type's, both from k8s-openapi.
        "The deployment strategy to use to replace existing pods with new ones.",
        "DeploymentStrategy describes how to replace existing pods with new ones.",
        "rollingUpdate\t<RollingUpdateDeployment>",
        "Type of deployment. Can be \"Recreate\" or \"RollingUpdate\". Default is",
    ] {
        assert!(out.contains(want), "explain output lacks {want:?}:\n{out}");
    }
    let seen = server.seen();
    assert!(
        seen.iter()
            .any(|s| s.path == "/openapi/v3/apis/apps/v1" && s.query.starts_with("hash=")),
        "{seen:?}"
    );
}

#[test]
fn kubectl_explain_pods_lists_fields_and_nested_types() {
    assert!(have_kubectl(), "{KUBECTL} is needed for this test");
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, out, err) = kubectl(&server, dir.path(), &["explain", "pods"]);
    assert!(ok, "kubectl explain failed:\nstdout: {out}\nstderr: {err}");
    for want in [
        "KIND:       Pod",
        "VERSION:    v1",
        "metadata\t<ObjectMeta>",
        "spec\t<PodSpec>",
        "status\t<PodStatus>",
    ] {
        assert!(out.contains(want), "explain output lacks {want:?}:\n{out}");
    }
    let (ok, out, err) = kubectl(
        &server,
        dir.path(),
        &["explain", "pods.spec.containers.resources.limits"],
    );
    assert!(ok, "kubectl explain failed:\nstdout: {out}\nstderr: {err}");
    assert!(out.contains("FIELD: limits <map[string]Quantity>"), "{out}");
    let (ok, out, err) = kubectl(
        &server,
        dir.path(),
        &["explain", "deployment.spec.strategy.rollingUpdate.maxSurge"],
    );
    assert!(ok, "kubectl explain failed:\nstdout: {out}\nstderr: {err}");
    assert!(out.contains("FIELD: maxSurge <IntOrString>"), "{out}");
    let (ok, out, _) = kubectl(&server, dir.path(), &["explain", "pods.spec.nosuchfield"]);
    assert!(!ok, "an unknown field is an error: {out}");
}

/// kubectl asks the v3 document whether PATCH of the kind lists `fieldValidation`; when it does,
/// kubectl trusts the server to validate and never falls back to client-side validation through
/// the v2 document (which this server does not serve).
#[test]
fn kubectl_detects_server_side_field_validation_from_v3() {
    assert!(have_kubectl(), "{KUBECTL} is needed for this test");
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("deploy.json");
    std::fs::write(&manifest, deployment(&["c"]).to_string()).expect("write manifest");
    let path = manifest.to_str().expect("utf-8 path");
    let (ok, out, err) = kubectl(
        &server,
        dir.path(),
        &["create", "-f", path, "--validate=strict"],
    );
    assert!(ok, "kubectl create failed:\nstdout: {out}\nstderr: {err}");
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let seen = server.seen();
    let post = seen
        .iter()
        .find(|s| s.method == "POST")
        .unwrap_or_else(|| panic!("no POST: {seen:?}"));
    assert_eq!(post.path, "/apis/apps/v1/namespaces/default/deployments");
    assert!(post.query.contains("fieldValidation=Strict"), "{post:?}");
    assert!(
        seen.iter().any(|s| s.path == "/openapi/v3/apis/apps/v1"),
        "{seen:?}"
    );
    let v2: Vec<&Seen> = seen.iter().filter(|s| s.path == "/openapi/v2").collect();
    assert!(
        v2.is_empty(),
        "kubectl fell back to client-side validation: {v2:?}"
    );
}

/// Client-side `kubectl apply` computes a strategic merge patch from the v3 document: with the
/// patch strategy and merge key of `containers` it deletes the removed container by name instead
/// of sending the whole list.
#[test]
fn kubectl_apply_builds_strategic_merge_patches_from_v3_field_extensions() {
    assert!(have_kubectl(), "{KUBECTL} is needed for this test");
    let extensions = |definition: &str, field: &str| match (definition, field) {
        ("io.k8s.api.core.v1.PodSpec", "containers") => vec![
            ("x-kubernetes-patch-strategy".to_owned(), json!("merge")),
            ("x-kubernetes-patch-merge-key".to_owned(), json!("name")),
        ],
        _ => Vec::new(),
    };
    let docs =
        OpenApiDocs::build_with(capstan_api::resources(), &extensions).expect("documents build");
    let server = Server::start_with(docs);
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("deploy.json");
    std::fs::write(&manifest, deployment(&["app"]).to_string()).expect("write manifest");
    let path = manifest.to_str().expect("utf-8 path");
    let (ok, out, err) = kubectl(&server, dir.path(), &["apply", "-f", path]);
    assert!(ok, "kubectl apply failed:\nstdout: {out}\nstderr: {err}");
    let seen = server.seen();
    let patch = seen
        .iter()
        .find(|s| s.method == "PATCH")
        .unwrap_or_else(|| panic!("no PATCH: {seen:?}"));
    assert_eq!(patch.content_type, "application/strategic-merge-patch+json");
    let body: Value = serde_json::from_str(&patch.body).expect("patch is JSON");
    let spec = &body["spec"]["template"]["spec"];
    assert_eq!(
        spec["$setElementOrder/containers"],
        json!([{"name": "app"}]),
        "{body}"
    );
    assert_eq!(
        spec["containers"],
        json!([{"$patch": "delete", "name": "sidecar"}]),
        "{body}"
    );
}
