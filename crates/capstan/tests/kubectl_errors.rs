//! End-to-end: bad input gets the error kube-apiserver (or kubectl) gives, a non-zero exit, stores
//! nothing, and leaves the server serving.

mod support;

use std::process::Command;

use support::{Cluster, assert_contains};

/// Asserts no ConfigMap, Pod or Deployment named `name` exists anywhere, and the server still answers.
fn assert_nothing_stored(k: &Cluster, name: &str) {
    for kind in ["configmaps", "pods", "deployments"] {
        let out = k.ok(&["get", kind, "-A", "-o", "name"]);
        assert!(
            !out.lines().any(|l| l.ends_with(&format!("/{name}"))),
            "{kind} {name} was stored:\n{out}"
        );
    }
    k.assert_serving();
}

#[test]
fn malformed_yaml_is_rejected_by_kubectl() {
    let k = Cluster::start();
    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [bad\n",
    );
    assert_contains(
        &err,
        "error: error parsing STDIN: error converting YAML to JSON: yaml: line 4",
    );
    assert_nothing_stored(&k, "bad");
}

#[test]
fn malformed_json_is_rejected_by_kubectl() {
    let k = Cluster::start();
    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "half""#,
    );
    assert_contains(&err, "error: error parsing STDIN");
    assert_nothing_stored(&k, "half");
}

#[test]
fn malformed_json_sent_raw_is_a_bad_request() {
    let k = Cluster::start();
    let body = k.write_file(
        "bad.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"#,
    );
    let err = k.fails(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        body.to_str().expect("utf-8 path"),
    ]);
    assert_contains(&err, "Error from server (BadRequest)");
    assert_nothing_stored(&k, "raw");
}

#[test]
fn unknown_kind_has_no_resource_mapping() {
    let k = Cluster::start();
    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: default\n",
    );
    assert_contains(
        &err,
        r#"error: resource mapping not found for name: "w" namespace: "default" from "STDIN": no matches for kind "Widget" in version "v1""#,
    );
    assert_contains(&err, "ensure CRDs are installed first");
    k.assert_serving();
}

#[test]
fn invalid_name_is_unprocessable() {
    let k = Cluster::start();
    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Foo_Bar\ndata:\n  a: b\n",
    );
    assert_eq!(
        err.trim(),
        r#"The ConfigMap "Foo_Bar" is invalid: metadata.name: Invalid value: "Foo_Bar": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
    );
    let out = k.ok(&["get", "cm", "-A", "-o", "name"]);
    assert!(!out.contains("Foo_Bar"), "{out}");
    k.assert_serving();
}

#[test]
fn pod_without_image_is_invalid() {
    let k = Cluster::start();
    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: noimage\nspec:\n  containers:\n  - name: c\n",
    );
    assert_eq!(
        err.trim(),
        r#"The Pod "noimage" is invalid: spec.containers[0].image: Required value"#
    );
    assert_nothing_stored(&k, "noimage");
}

#[test]
fn deployment_without_selector_is_invalid() {
    let k = Cluster::start();
    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: nosel
spec:
  template:
    metadata:
      labels:
        app: x
    spec:
      containers:
      - name: c
        image: x
",
    );
    assert_contains(&err, r#"The Deployment "nosel" is invalid: "#);
    assert_contains(&err, "* spec.selector: Required value");
    assert_contains(
        &err,
        "* spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`",
    );
    assert_nothing_stored(&k, "nosel");
}

#[test]
fn replace_with_stale_resource_version_conflicts() {
    let k = Cluster::start();
    k.apply_stdin("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  k: v1\n");
    let stale = k.ok(&["get", "cm", "cfg", "-o", "yaml"]);
    assert_contains(&stale, "resourceVersion:");
    k.ok(&[
        "patch",
        "cm",
        "cfg",
        "--type=merge",
        "-p",
        r#"{"data":{"k":"v2"}}"#,
    ]);

    let edited = stale.replace("k: v1", "k: v3");
    let err = k.fails_stdin(&["replace", "-f", "-"], &edited);
    assert_eq!(
        err.trim(),
        r#"Error from server (Conflict): error when replacing "STDIN": Operation cannot be fulfilled on configmaps "cfg": the object has been modified; please apply your changes to the latest version and try again"#
    );
    assert_eq!(k.jsonpath(&["cm", "cfg"], "{.data.k}"), "v2");

    // Without a resourceVersion, replace is unconditional.
    let fresh = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  k: v4\n";
    assert_eq!(
        k.ok_stdin(&["replace", "-f", "-"], fresh).trim(),
        "configmap/cfg replaced"
    );
    assert_eq!(k.jsonpath(&["cm", "cfg"], "{.data.k}"), "v4");
    k.assert_serving();
}

#[test]
fn create_of_existing_object_already_exists() {
    let k = Cluster::start();
    let cm = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"},"data":{"a":"1"}}"#;
    assert_eq!(
        k.ok_stdin(&["create", "-f", "-"], cm).trim(),
        "configmap/dup created"
    );
    let err = k.fails_stdin(&["create", "-f", "-"], cm);
    assert_eq!(
        err.trim(),
        r#"Error from server (AlreadyExists): error when creating "STDIN": configmaps "dup" already exists"#
    );
}

#[test]
fn body_over_three_mebibytes_is_too_large() {
    let k = Cluster::start();
    let blob = "x".repeat(3 * 1024 * 1024 + 512 * 1024);
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "huge", "namespace": "default"},
        "data": {"blob": blob},
    });
    let file = k.write_file("huge.json", &body.to_string());
    let err = k.fails(&["create", "-f", file.to_str().expect("utf-8 path")]);
    assert_contains(&err, "Error from server (RequestEntityTooLarge)");
    assert_contains(&err, "Request entity too large");
    assert_nothing_stored(&k, "huge");
}

#[test]
fn unknown_field_fails_strict_validation() {
    let k = Cluster::start();
    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: typo
spec:
  replicass: 2
  selector:
    matchLabels:
      app: typo
  template:
    metadata:
      labels:
        app: typo
    spec:
      containers:
      - name: c
        image: x
",
    );
    assert_contains(&err, "Error from server (BadRequest)");
    assert_contains(
        &err,
        r#"Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.replicass""#,
    );
    assert_nothing_stored(&k, "typo");

    // With validation off, the field is dropped and the object is created.
    let out = k.ok_stdin(
        &["create", "--validate=false", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"lax"},"bogus":1,"data":{"a":"b"}}"#,
    );
    assert_eq!(out.trim(), "configmap/lax created");
    let obj = k.get_json(&["cm", "lax"]);
    assert!(obj.get("bogus").is_none(), "{obj}");
}

#[test]
fn request_without_credentials_is_unauthorized() {
    let k = Cluster::start();
    let url = format!("https://127.0.0.1:{}/api/v1/pods", k.port());
    let out = Command::new("curl")
        .args(["-sk", "-w", "\n%{http_code}", &url])
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text
        .rsplit_once('\n')
        .expect("curl printed the status code");
    assert_eq!(code, "401", "{text}");
    let status: serde_json::Value = serde_json::from_str(body).expect("a Status body");
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["reason"], "Unauthorized", "{status}");
    assert_eq!(status["code"], 401, "{status}");

    // kubectl with the CA but a token the server does not know.
    let path = k.token_kubeconfig("stranger.kubeconfig", "not-a-real-token");
    // Cold discovery cache: discovery itself is refused.
    let out = k
        .command_with(&path)
        .args(["get", "pods"])
        .output()
        .expect("run kubectl");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.trim()
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("error: You must be logged in to the server (")),
        "{err}"
    );
    // Warm discovery cache (same HOME as the admin): the list request itself gets the 401 Status.
    k.ok(&["get", "pods"]);
    let out = k
        .command_with(&path)
        .args(["get", "pods"])
        .output()
        .expect("run kubectl");
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: You must be logged in to the server (Unauthorized)"
    );
    k.assert_serving();
}

#[test]
fn wrong_kind_for_resource_path_and_unknown_resource_are_rejected() {
    let k = Cluster::start();
    let err = k.fails(&["get", "widgets"]);
    assert_eq!(
        err.trim(),
        r#"error: the server doesn't have a resource type "widgets""#
    );
    let err = k.fails(&["get", "--raw", "/api/v1/namespaces/default/widgets"]);
    assert_contains(&err, "Error from server (NotFound)");
    k.assert_serving();
}
