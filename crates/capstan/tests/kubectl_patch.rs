//! End-to-end: changing live objects with kubectl — label, annotate, scale, set image, the three patch
//! types, edit through `$EDITOR`, and server-side apply with field ownership and conflicts.

mod support;

use std::os::unix::fs::PermissionsExt;

use support::{Cluster, app_manifest, assert_contains};

const WEB: [&str; 4] = ["deploy", "web", "-n", "shop"];

fn cluster_with_app() -> Cluster {
    let k = Cluster::start();
    k.apply_stdin(&app_manifest("shop", 2, true));
    k
}

fn generation(k: &Cluster) -> String {
    k.jsonpath(&WEB, "{.metadata.generation}")
}

#[test]
fn label_annotate_scale_and_set_image_change_the_deployment() {
    let k = cluster_with_app();
    assert_eq!(generation(&k), "1");

    assert_eq!(
        k.ok(&["label", "deploy", "web", "-n", "shop", "tier=frontend"])
            .trim(),
        "deployment.apps/web labeled"
    );
    assert_eq!(
        k.ok(&["annotate", "deploy", "web", "-n", "shop", "note=hello"])
            .trim(),
        "deployment.apps/web annotated"
    );
    assert_eq!(
        k.jsonpath(&WEB, "{.metadata.labels.tier} {.metadata.annotations.note}"),
        "frontend hello"
    );
    // Metadata changes do not bump the generation.
    assert_eq!(generation(&k), "1");

    // Overwriting needs --overwrite, as in Kubernetes.
    let err = k.fails(&["label", "deploy", "web", "-n", "shop", "tier=backend"]);
    assert_contains(
        &err,
        "'tier' already has a value (frontend), and --overwrite is false",
    );
    k.ok(&[
        "label",
        "deploy",
        "web",
        "-n",
        "shop",
        "tier=backend",
        "--overwrite",
    ]);
    k.ok(&["label", "deploy", "web", "-n", "shop", "tier-"]);
    assert_eq!(k.jsonpath(&WEB, "{.metadata.labels}"), r#"{"app":"web"}"#);

    assert_eq!(
        k.ok(&["scale", "deploy", "web", "-n", "shop", "--replicas=3"])
            .trim(),
        "deployment.apps/web scaled"
    );
    assert_eq!(
        k.jsonpath(&WEB, "{.spec.replicas} {.metadata.generation}"),
        "3 2"
    );
    assert_eq!(
        k.jsonpath(&["deploy", "web", "-n", "shop"], "{.spec.replicas}"),
        k.ok(&[
            "get",
            "--raw",
            "/apis/apps/v1/namespaces/shop/deployments/web/scale"
        ])
        .parse::<serde_json::Value>()
        .expect("scale JSON")["spec"]["replicas"]
            .to_string()
    );

    assert_eq!(
        k.ok(&["set", "image", "deploy/web", "-n", "shop", "web=nginx:2"])
            .trim(),
        "deployment.apps/web image updated"
    );
    assert_eq!(
        k.jsonpath(
            &WEB,
            "{.spec.template.spec.containers[0].image} {.metadata.generation}"
        ),
        "nginx:2 3"
    );
    let err = k.fails(&["set", "image", "deploy/web", "-n", "shop", "nosuch=nginx:3"]);
    assert_contains(&err, "unable to find container named \"nosuch\"");
}

#[test]
fn strategic_merge_and_json_patches_each_apply() {
    let k = cluster_with_app();

    // Strategic merge: env is merged by name, so MODE and COLOR stay and EXTRA joins them.
    let out = k.ok(&[
        "patch", "deploy", "web", "-n", "shop", "--type=strategic", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"EXTRA","value":"1"}]}]}}}}"#,
    ]);
    assert_eq!(out.trim(), "deployment.apps/web patched");
    let mut env: Vec<String> = k
        .jsonpath(&WEB, "{.spec.template.spec.containers[0].env[*].name}")
        .split(' ')
        .map(str::to_owned)
        .collect();
    env.sort();
    assert_eq!(env, ["COLOR", "EXTRA", "MODE"]);
    assert_eq!(
        k.jsonpath(&WEB, "{.spec.template.spec.containers[*].name}"),
        "web"
    );
    assert_eq!(generation(&k), "2");

    // Strategic delete directive.
    k.ok(&[
        "patch", "deploy", "web", "-n", "shop", "--type=strategic", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"COLOR","$patch":"delete"}]}]}}}}"#,
    ]);
    let mut env: Vec<String> = k
        .jsonpath(&WEB, "{.spec.template.spec.containers[0].env[*].name}")
        .split(' ')
        .map(str::to_owned)
        .collect();
    env.sort();
    assert_eq!(env, ["EXTRA", "MODE"]);
    assert_eq!(generation(&k), "3");

    // JSON merge patch: a list is replaced wholesale; null removes a key.
    k.ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        "shop",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"app":null,"tier":"x"}},"spec":{"minReadySeconds":5}}"#,
    ]);
    assert_eq!(
        k.jsonpath(&WEB, "{.spec.minReadySeconds} {.metadata.labels}"),
        r#"5 {"tier":"x"}"#
    );
    assert_eq!(generation(&k), "4");

    // JSON patch (RFC 6902), with a passing test op.
    k.ok(&[
        "patch", "deploy", "web", "-n", "shop", "--type=json", "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":2},{"op":"replace","path":"/spec/replicas","value":4},{"op":"add","path":"/metadata/annotations/x","value":"y"}]"#,
    ]);
    assert_eq!(
        k.jsonpath(&WEB, "{.spec.replicas} {.metadata.annotations.x}"),
        "4 y"
    );
    assert_eq!(generation(&k), "5");

    // A failing test op changes nothing.
    let err = k.fails(&[
        "patch", "deploy", "web", "-n", "shop", "--type=json", "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":99},{"op":"replace","path":"/spec/replicas","value":1}]"#,
    ]);
    assert!(!err.trim().is_empty(), "a failed test op must say why");
    assert_eq!(k.jsonpath(&WEB, "{.spec.replicas}"), "4");

    // A patch that changes nothing is reported as such and writes nothing.
    let rv = k.jsonpath(&WEB, "{.metadata.generation}");
    let out = k.ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        "shop",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":4}}"#,
    ]);
    assert_eq!(out.trim(), "deployment.apps/web patched (no change)");
    assert_eq!(k.jsonpath(&WEB, "{.metadata.generation}"), rv);
}

#[test]
fn edit_through_editor_script_changes_replicas() {
    let k = cluster_with_app();
    let script = k.write_file(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/^  replicas: .*/  replicas: 7/' \"$1\"\n",
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = k
        .command()
        .args(["edit", "deploy", "web", "-n", "shop"])
        .env("EDITOR", &script)
        .output()
        .expect("run kubectl edit");
    assert!(
        out.status.success(),
        "kubectl edit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "deployment.apps/web edited"
    );
    assert_eq!(
        k.jsonpath(&WEB, "{.spec.replicas} {.metadata.generation}"),
        "7 2"
    );

    // An editor that changes nothing: "Edit cancelled", no write.
    let noop = k.write_file("noop.sh", "#!/bin/sh\ntrue\n");
    std::fs::set_permissions(&noop, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let rv = k.jsonpath(&WEB, "{.metadata.generation}");
    let out = k
        .command()
        .args(["edit", "deploy", "web", "-n", "shop"])
        .env("EDITOR", &noop)
        .output()
        .expect("run kubectl edit");
    assert!(out.status.success());
    assert_contains(
        &String::from_utf8_lossy(&out.stderr),
        "Edit cancelled, no changes made.",
    );
    assert_eq!(k.jsonpath(&WEB, "{.metadata.generation}"), rv);
}

const API: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: default
  labels:
    app: api
spec:
  replicas: 2
  selector:
    matchLabels:
      app: api
  template:
    metadata:
      labels:
        app: api
    spec:
      containers:
      - name: api
        image: busybox:1.36
";

#[test]
fn server_side_apply_records_an_apply_manager() {
    let k = Cluster::start();
    let out = k.ok_stdin(&["apply", "--server-side", "-f", "-"], API);
    assert_eq!(out.trim(), "deployment.apps/api serverside-applied");

    let obj = k.get_json(&["deploy", "api", "--show-managed-fields"]);
    let managed = obj["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields");
    // A fresh server-side apply gives kubectl exactly one entry, an Apply (the deployment controller
    // may own status fields through its own entry, as in Kubernetes).
    let managed: Vec<_> = managed
        .iter()
        .filter(|m| m["manager"] == "kubectl")
        .cloned()
        .collect();
    assert_eq!(managed.len(), 1, "{managed:#?}");
    assert_eq!(managed[0]["manager"], "kubectl", "{managed:#?}");
    assert_eq!(managed[0]["operation"], "Apply", "{managed:#?}");
    assert_eq!(managed[0]["fieldsType"], "FieldsV1");
    let fields = &managed[0]["fieldsV1"]["f:spec"];
    assert!(fields.get("f:replicas").is_some(), "{fields}");
    // Defaults are not the applier's: Apply owns only what it sent.
    assert!(fields.get("f:revisionHistoryLimit").is_none(), "{fields}");

    let yaml = k.ok(&[
        "get",
        "deploy",
        "api",
        "--show-managed-fields",
        "-o",
        "yaml",
    ]);
    assert_contains(&yaml, "    operation: Apply\n");
    assert_contains(&yaml, "    manager: kubectl\n");
    // Without the flag kubectl hides them.
    let yaml = k.ok(&["get", "deploy", "api", "-o", "yaml"]);
    assert!(!yaml.contains("managedFields"), "{yaml}");

    // Re-applying the same configuration keeps the object as it is.
    let rv = k.jsonpath(&["deploy", "api"], "{.metadata.generation}");
    let out = k.ok_stdin(&["apply", "--server-side", "-f", "-"], API);
    assert_eq!(out.trim(), "deployment.apps/api serverside-applied");
    assert_eq!(k.jsonpath(&["deploy", "api"], "{.metadata.generation}"), rv);
}

#[test]
fn server_side_apply_conflicts_on_fields_owned_by_another_manager() {
    let k = Cluster::start();
    k.ok_stdin(&["apply", "--server-side", "-f", "-"], API);
    k.ok(&["scale", "deploy", "api", "--replicas=4"]);
    assert_eq!(k.jsonpath(&["deploy", "api"], "{.spec.replicas}"), "4");

    // Apply wants replicas 2, but the scale owns the field now.
    let err = k.fails_stdin(&["apply", "--server-side", "-f", "-"], API);
    assert_contains(
        &err,
        "Apply failed with 1 conflict: conflict with \"kubectl\"",
    );
    assert_contains(&err, ".spec.replicas");
    assert_contains(&err, "--force-conflicts");
    assert_eq!(k.jsonpath(&["deploy", "api"], "{.spec.replicas}"), "4");

    // A different image is no conflict: the applier owns it.
    let changed = API
        .replace("busybox:1.36", "busybox:1.37")
        .replace("replicas: 2", "replicas: 4");
    k.ok_stdin(&["apply", "--server-side", "-f", "-"], &changed);
    assert_eq!(
        k.jsonpath(
            &["deploy", "api"],
            "{.spec.replicas} {.spec.template.spec.containers[0].image}"
        ),
        "4 busybox:1.37"
    );

    let out = k.ok_stdin(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        API,
    );
    assert_eq!(out.trim(), "deployment.apps/api serverside-applied");
    assert_eq!(
        k.jsonpath(
            &["deploy", "api"],
            "{.spec.replicas} {.spec.template.spec.containers[0].image}"
        ),
        "2 busybox:1.36"
    );
    // Forcing took the field: a later apply with the same value no longer conflicts.
    k.ok_stdin(&["apply", "--server-side", "-f", "-"], API);
}

#[test]
fn server_side_apply_with_a_custom_field_manager_conflicts_with_kubectl() {
    let k = Cluster::start();
    k.ok_stdin(&["apply", "--server-side", "-f", "-"], API);
    let other = API.replace("replicas: 2", "replicas: 9");
    let err = k.fails_stdin(
        &["apply", "--server-side", "--field-manager=ci", "-f", "-"],
        &other,
    );
    assert_contains(&err, "conflict with \"kubectl\"");
    assert_contains(&err, ".spec.replicas");
    k.ok_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=ci",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &other,
    );
    let obj = k.get_json(&["deploy", "api", "--show-managed-fields"]);
    let managers: Vec<(String, String)> = obj["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap_or_default().to_owned(),
                m["operation"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("ci".to_owned(), "Apply".to_owned())),
        "{managers:?}"
    );
    assert!(
        managers.contains(&("kubectl".to_owned(), "Apply".to_owned())),
        "{managers:?}"
    );
    assert_eq!(k.jsonpath(&["deploy", "api"], "{.spec.replicas}"), "9");
}
