//! End-to-end: custom resources (apiextensions.k8s.io/v1 CustomResourceDefinitions) served as
//! kube-apiserver serves them — a definition becomes Established, its kind shows up in discovery, its
//! objects are created, printed with the definition's columns, changed, watched and deleted with
//! kubectl, bad input gets kube's errors, and objects go with their namespace and their definition.

mod support;

use std::time::{Duration, Instant};

use support::{Cluster, assert_contains, table_header, table_rows};

/// The classic example of the Kubernetes documentation: a namespaced CronTab with a status
/// subresource and three printer columns.
const CRONTAB_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames:
    - ct
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              cronSpec:
                type: string
              image:
                type: string
              replicas:
                type: integer
          status:
            type: object
            properties:
              replicas:
                type: integer
    subresources:
      status: {}
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
"#;

/// A cluster-scoped kind without printer columns.
const BACKUP_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: backups.ops.example.com
spec:
  group: ops.example.com
  scope: Cluster
  names:
    plural: backups
    singular: backup
    kind: Backup
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              target:
                type: string
"#;

const NIGHTLY: &str = r#"apiVersion: ops.example.com/v1
kind: Backup
metadata:
  name: nightly
spec:
  target: /var/lib/data
"#;

const CRONTABS: &str = "crontabs.stable.example.com";
const SPEC: &str = "* * * * */5";
const WAIT: Duration = Duration::from_secs(30);

/// A CronTab `name` in `ns` with `replicas`.
fn cron(name: &str, ns: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: stable.example.com/v1
kind: CronTab
metadata:
  name: {name}
  namespace: {ns}
spec:
  cronSpec: "{SPEC}"
  image: my-awesome-cron-image
  replicas: {replicas}
"#
    )
}

/// Applies a definition named `name`, and waits until it is Established.
fn install(k: &Cluster, manifest: &str, name: &str) {
    assert_eq!(
        k.apply_stdin(manifest).trim(),
        format!("customresourcedefinition.apiextensions.k8s.io/{name} created")
    );
    let out = k.ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=30s",
        &format!("crd/{name}"),
    ]);
    assert_eq!(
        out.trim(),
        format!("customresourcedefinition.apiextensions.k8s.io/{name} condition met")
    );
}

fn install_crontabs(k: &Cluster) {
    install(k, CRONTAB_CRD, CRONTABS);
}

/// NAME, SPEC and REPLICAS of a CronTab table row (AGE last): the spec holds spaces, so it is what
/// lies between the name and the last two words.
fn cron_row(row: &[String]) -> (String, String, String) {
    assert!(row.len() >= 4, "short CronTab row: {row:?}");
    let n = row.len();
    (row[0].clone(), row[1..n - 2].join(" "), row[n - 2].clone())
}

fn row(name: &str, spec: &str, replicas: &str) -> (String, String, String) {
    (name.to_owned(), spec.to_owned(), replicas.to_owned())
}

/// Polls `done` every 100 ms until it holds, failing with `what` after 30 s.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what} (after {WAIT:?})");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_definition_becomes_established_and_its_objects_are_created_listed_and_deleted() {
    let k = Cluster::start();
    install_crontabs(&k);

    // The definition's status: names accepted, established, the one version stored.
    let crd = ["crd", CRONTABS];
    assert_eq!(
        k.jsonpath(
            &crd,
            r#"{.status.conditions[?(@.type=="NamesAccepted")].status}"#
        ),
        "True"
    );
    assert_eq!(
        k.jsonpath(
            &crd,
            r#"{.status.conditions[?(@.type=="Established")].status}"#
        ),
        "True"
    );
    assert_eq!(
        k.jsonpath(
            &crd,
            "{.status.acceptedNames.kind} {.status.acceptedNames.plural} \
             {.status.acceptedNames.shortNames[*]} {.status.storedVersions[*]}"
        ),
        "CronTab crontabs ct v1"
    );
    let table = k.ok(&["get", "crd"]);
    assert_eq!(table_header(&table), ["NAME", "CREATED", "AT"], "{table}");
    assert!(
        table_rows(&table).iter().any(|r| r[0] == CRONTABS),
        "{table}"
    );

    // Discovery lists the new kind.
    let out = k.ok(&["api-resources", "--api-group=stable.example.com"]);
    assert_eq!(
        table_header(&out),
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"],
        "{out}"
    );
    assert_eq!(
        table_rows(&out),
        [["crontabs", "ct", "stable.example.com/v1", "true", "CronTab"]],
        "{out}"
    );
    let versions = k.ok(&["api-versions"]);
    assert!(
        versions.lines().any(|l| l == "stable.example.com/v1"),
        "{versions}"
    );

    assert_eq!(
        k.apply_stdin(&cron("my-cron", "default", 2)).trim(),
        "crontab.stable.example.com/my-cron created"
    );

    // By short name, plural, and fully qualified singular: the definition's printer columns.
    for args in [
        &["get", "ct"][..],
        &["get", "crontabs"],
        &["get", "crontab.stable.example.com", "my-cron"],
    ] {
        let out = k.ok(args);
        assert_eq!(
            table_header(&out),
            ["NAME", "SPEC", "REPLICAS", "AGE"],
            "{args:?}:\n{out}"
        );
        let rows = table_rows(&out);
        assert_eq!(rows.len(), 1, "{args:?}:\n{out}");
        assert_eq!(cron_row(&rows[0]), row("my-cron", SPEC, "2"), "{out}");
    }
    assert_eq!(
        k.ok(&["get", "ct", "my-cron", "-o", "name"]).trim(),
        "crontab.stable.example.com/my-cron"
    );

    // The stored object: what was sent, plus the metadata the server sets.
    let obj = ["ct", "my-cron"];
    assert_eq!(
        k.jsonpath(
            &obj,
            "{.spec.cronSpec}|{.spec.image}|{.spec.replicas}|{.metadata.namespace}|{.metadata.generation}"
        ),
        "* * * * */5|my-awesome-cron-image|2|default|1"
    );
    let json = k.get_json(&obj);
    assert_eq!(json["apiVersion"], "stable.example.com/v1", "{json:#}");
    assert_eq!(json["kind"], "CronTab", "{json:#}");
    let meta = &json["metadata"];
    for field in ["uid", "resourceVersion"] {
        assert!(
            meta[field].as_str().is_some_and(|v| !v.is_empty()),
            "metadata.{field} missing: {json:#}"
        );
    }
    let created = meta["creationTimestamp"].as_str().unwrap_or_default();
    assert!(
        created.len() == 20 && created.as_bytes()[10] == b'T' && created.ends_with('Z'),
        "creationTimestamp {created:?}"
    );

    // An object of the same name in another namespace is another object.
    k.create_namespace("other");
    k.apply_stdin(&cron("my-cron", "other", 7));
    let other_uid = k.jsonpath(&["ct", "my-cron", "-n", "other"], "{.metadata.uid}");
    assert_ne!(other_uid, meta["uid"].as_str().unwrap_or_default());
    let out = k.ok(&["get", "ct", "-n", "other"]);
    assert_eq!(
        table_rows(&out)
            .iter()
            .map(|r| cron_row(r))
            .collect::<Vec<_>>(),
        [row("my-cron", SPEC, "7")],
        "{out}"
    );
    let out = k.ok(&["get", "ct", "-A"]);
    assert_eq!(
        table_header(&out),
        ["NAMESPACE", "NAME", "SPEC", "REPLICAS", "AGE"],
        "{out}"
    );
    let mut rows: Vec<(String, (String, String, String))> = table_rows(&out)
        .iter()
        .map(|r| (r[0].clone(), cron_row(&r[1..])))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("default".to_owned(), row("my-cron", SPEC, "2")),
            ("other".to_owned(), row("my-cron", SPEC, "7")),
        ],
        "{out}"
    );

    // Creating it again is a conflict.
    let err = k.fails_stdin(&["create", "-f", "-"], &cron("my-cron", "default", 2));
    assert_eq!(
        err.trim(),
        r#"Error from server (AlreadyExists): error when creating "STDIN": crontabs.stable.example.com "my-cron" already exists"#
    );

    assert_eq!(
        k.ok(&["delete", "ct", "my-cron"]).trim(),
        r#"crontab.stable.example.com "my-cron" deleted"#
    );
    let err = k.fails(&["get", "ct", "my-cron"]);
    assert_eq!(
        err.trim(),
        r#"Error from server (NotFound): crontabs.stable.example.com "my-cron" not found"#
    );
    // The other namespace's object stays.
    assert_eq!(
        k.jsonpath(
            &["ct", "-A"],
            "{.items[*].metadata.namespace}/{.items[*].metadata.name}"
        ),
        "other/my-cron"
    );
    let out = k.run(&["get", "ct"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "No resources found in default namespace."
    );
}

#[test]
fn custom_resources_change_through_label_patch_apply_and_the_status_subresource() {
    let k = Cluster::start();
    install_crontabs(&k);
    k.apply_stdin(&cron("my-cron", "default", 2));
    let obj = ["ct", "my-cron"];
    let generation = || k.jsonpath(&obj, "{.metadata.generation}");
    let replicas = || k.jsonpath(&obj, "{.spec.replicas} {.status.replicas}");

    assert_eq!(
        k.ok(&["label", "ct", "my-cron", "tier=a"]).trim(),
        "crontab.stable.example.com/my-cron labeled"
    );
    assert_eq!(
        k.ok(&["annotate", "ct", "my-cron", "note=hello"]).trim(),
        "crontab.stable.example.com/my-cron annotated"
    );
    assert_eq!(
        k.jsonpath(&obj, "{.metadata.labels.tier} {.metadata.annotations.note}"),
        "a hello"
    );
    // Metadata changes do not bump the generation.
    assert_eq!(generation(), "1");

    // JSON merge patch.
    assert_eq!(
        k.ok(&[
            "patch",
            "ct",
            "my-cron",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":3}}"#
        ])
        .trim(),
        "crontab.stable.example.com/my-cron patched"
    );
    assert_eq!(k.jsonpath(&obj, "{.spec.replicas}"), "3");
    assert_eq!(generation(), "2");

    // JSON patch, with a passing test op; a failing one changes nothing.
    assert_eq!(
        k.ok(&[
            "patch",
            "ct",
            "my-cron",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/spec/replicas","value":3},{"op":"replace","path":"/spec/image","value":"cron:2"}]"#,
        ])
        .trim(),
        "crontab.stable.example.com/my-cron patched"
    );
    assert_eq!(k.jsonpath(&obj, "{.spec.image}"), "cron:2");
    assert_eq!(generation(), "3");
    let err = k.fails(&[
        "patch",
        "ct",
        "my-cron",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":99},{"op":"replace","path":"/spec/replicas","value":1}]"#,
    ]);
    assert!(!err.trim().is_empty(), "a failed test op must say why");
    assert_eq!(k.jsonpath(&obj, "{.spec.replicas}"), "3");

    // kubectl's default patch type, strategic merge, needs Go types a custom resource does not
    // have: the server answers 415 and kubectl names the kind.
    let err = k.fails(&["patch", "ct", "my-cron", "-p", r#"{"spec":{"replicas":9}}"#]);
    assert_eq!(
        err.trim(),
        "error: application/strategic-merge-patch+json is not supported by stable.example.com/v1, \
         Kind=CronTab: the body of the request was in an unknown format - accepted media types \
         include: application/json-patch+json, application/merge-patch+json, \
         application/apply-patch+yaml"
    );
    assert_eq!(k.jsonpath(&obj, "{.spec.replicas}"), "3");
    assert_eq!(generation(), "3");

    // Client-side apply: a three-way merge. What the manifest holds wins (replicas, and the image
    // the JSON patch changed); what it never held (the label, the annotation) stays.
    assert_eq!(
        k.apply_stdin(&cron("my-cron", "default", 4)).trim(),
        "crontab.stable.example.com/my-cron configured"
    );
    assert_eq!(
        k.jsonpath(
            &obj,
            "{.spec.replicas} {.spec.image} {.metadata.labels.tier} {.metadata.annotations.note}"
        ),
        "4 my-awesome-cron-image a hello"
    );
    assert_eq!(generation(), "4");
    assert_eq!(
        k.apply_stdin(&cron("my-cron", "default", 4)).trim(),
        "crontab.stable.example.com/my-cron unchanged"
    );
    assert_eq!(generation(), "4");
    // A field dropped from the manifest is removed from the object.
    let without_image =
        cron("my-cron", "default", 4).replace("  image: my-awesome-cron-image\n", "");
    assert_eq!(
        k.apply_stdin(&without_image).trim(),
        "crontab.stable.example.com/my-cron configured"
    );
    assert_eq!(
        k.jsonpath(&obj, "{.spec}"),
        r#"{"cronSpec":"* * * * */5","replicas":4}"#
    );
    assert_eq!(generation(), "5");

    // The status subresource sets status only, and leaves the generation alone.
    assert_eq!(
        k.ok(&[
            "patch",
            "ct",
            "my-cron",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"replicas":5}}"#,
        ])
        .trim(),
        "crontab.stable.example.com/my-cron patched"
    );
    assert_eq!(replicas(), "4 5");
    assert_eq!(generation(), "5");
    // The main resource ignores status: spec changes apply, the status stays.
    k.ok(&[
        "patch",
        "ct",
        "my-cron",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":6},"status":{"replicas":9}}"#,
    ]);
    assert_eq!(replicas(), "6 5");
    assert_eq!(generation(), "6");
    // ... and the status subresource ignores everything but status.
    k.ok(&[
        "patch",
        "ct",
        "my-cron",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":99},"status":{"replicas":7}}"#,
    ]);
    assert_eq!(replicas(), "6 7");
    assert_eq!(generation(), "6");

    // Server-side apply records kubectl as the Apply manager of what it sent.
    let ssa = cron("ssa-cron", "default", 1);
    assert_eq!(
        k.ok_stdin(&["apply", "--server-side", "-f", "-"], &ssa)
            .trim(),
        "crontab.stable.example.com/ssa-cron serverside-applied"
    );
    let json = k.get_json(&["ct", "ssa-cron", "--show-managed-fields"]);
    let managed = json["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields");
    let apply: Vec<_> = managed
        .iter()
        .filter(|m| m["manager"] == "kubectl" && m["operation"] == "Apply")
        .collect();
    assert_eq!(apply.len(), 1, "{managed:#?}");
    assert_eq!(apply[0]["apiVersion"], "stable.example.com/v1");
    let fields = &apply[0]["fieldsV1"]["f:spec"];
    for field in ["f:cronSpec", "f:image", "f:replicas"] {
        assert!(fields.get(field).is_some(), "{field} not owned: {fields}");
    }
    // A field another manager changed since conflicts; forcing takes it back.
    k.ok(&[
        "patch",
        "ct",
        "ssa-cron",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":7}}"#,
    ]);
    let err = k.fails_stdin(&["apply", "--server-side", "-f", "-"], &ssa);
    assert_contains(
        &err,
        "Apply failed with 1 conflict: conflict with \"kubectl-patch\"",
    );
    assert_contains(&err, ".spec.replicas");
    assert_eq!(k.jsonpath(&["ct", "ssa-cron"], "{.spec.replicas}"), "7");
    assert_eq!(
        k.ok_stdin(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            &ssa
        )
        .trim(),
        "crontab.stable.example.com/ssa-cron serverside-applied"
    );
    assert_eq!(k.jsonpath(&["ct", "ssa-cron"], "{.spec.replicas}"), "1");
}

#[test]
fn watching_custom_resources_sees_added_modified_deleted() {
    let k = Cluster::start();
    install_crontabs(&k);
    k.create_namespace("other");
    k.apply_stdin(&cron("sentinel", "default", 1));
    let watch = k.spawn_lines(&["get", "ct", "-w", "--output-watch-events"]);
    // The header and the initial list: from then on every change must show up as an event.
    let mut lines = watch.lines_until(WAIT, |l| l.len() >= 2);

    k.apply_stdin(&cron("c1", "default", 1));
    k.ok(&[
        "patch",
        "ct",
        "c1",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":2}}"#,
    ]);
    k.ok(&[
        "patch",
        "ct",
        "c1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":2}}"#,
    ]);
    // Another namespace is not watched.
    k.apply_stdin(&cron("elsewhere", "other", 1));
    k.ok(&["delete", "ct", "c1"]);

    lines.extend(watch.lines_until(WAIT, |l| l.len() >= 4));
    // EVENT, NAME and REPLICAS of each line (the spec holds spaces; AGE is last).
    let events: Vec<(String, String, String)> = lines
        .iter()
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let n = words.len();
            assert!(n >= 4, "short watch line {l:?} in {lines:#?}");
            (
                words[0].to_owned(),
                words[1].to_owned(),
                words[n - 2].to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = [
        ("EVENT", "NAME", "REPLICAS"),
        ("ADDED", "sentinel", "1"),
        ("ADDED", "c1", "1"),
        ("MODIFIED", "c1", "2"),
        ("MODIFIED", "c1", "2"),
        ("DELETED", "c1", "2"),
    ]
    .iter()
    .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
    .collect();
    assert_eq!(events, want, "{lines:#?}");
}

#[test]
fn custom_resources_follow_their_scope_and_go_with_their_namespace_and_definition() {
    let k = Cluster::start();
    install_crontabs(&k);
    install(&k, BACKUP_CRD, "backups.ops.example.com");

    // A cluster-scoped kind: no namespace, no NAMESPACE column even with -A.
    let out = k.ok(&["api-resources", "--api-group=ops.example.com"]);
    assert_eq!(
        table_rows(&out),
        [["backups", "ops.example.com/v1", "false", "Backup"]],
        "{out}"
    );
    assert_eq!(
        k.apply_stdin(NIGHTLY).trim(),
        "backup.ops.example.com/nightly created"
    );
    for args in [&["get", "backups"][..], &["get", "backups", "-A"]] {
        let out = k.ok(args);
        assert_eq!(table_header(&out), ["NAME", "AGE"], "{args:?}:\n{out}");
        let names: Vec<String> = table_rows(&out).iter().map(|r| r[0].clone()).collect();
        assert_eq!(names, ["nightly"], "{args:?}:\n{out}");
    }
    assert_eq!(
        k.jsonpath(
            &["backup", "nightly"],
            "{.metadata.namespace}|{.spec.target}"
        ),
        "|/var/lib/data"
    );

    // Deleting a namespace deletes its custom resources, and only those.
    k.create_namespace("batch");
    k.apply_stdin(&cron("report", "batch", 1));
    k.apply_stdin(&cron("keeper", "default", 1));
    assert_eq!(
        k.ok(&["delete", "ns", "batch", "--timeout=60s"]).trim(),
        r#"namespace "batch" deleted"#
    );
    let err = k.fails(&["get", "ns", "batch"]);
    assert_contains(&err, r#"namespaces "batch" not found"#);
    assert_eq!(
        k.jsonpath(
            &["ct", "-A"],
            "{.items[*].metadata.namespace}/{.items[*].metadata.name}"
        ),
        "default/keeper"
    );

    // Deleting the definition deletes its objects, then the definition, then the kind.
    assert_eq!(
        k.ok(&["delete", "crd", CRONTABS, "--timeout=60s"]).trim(),
        format!(r#"customresourcedefinition.apiextensions.k8s.io "{CRONTABS}" deleted"#)
    );
    let err = k.fails(&["get", "crd", CRONTABS]);
    assert_eq!(
        err.trim(),
        format!(
            r#"Error from server (NotFound): customresourcedefinitions.apiextensions.k8s.io "{CRONTABS}" not found"#
        )
    );
    // (`kubectl api-resources` always asks the server, and so refreshes kubectl's discovery cache,
    // which would otherwise still map "crontabs" for hours.)
    wait_until("crontabs still in discovery", || {
        let out = k.ok(&["api-resources", "-o", "name"]);
        !out.lines().any(|l| l == CRONTABS)
    });
    let err = k.fails(&["get", "crontabs"]);
    assert_eq!(
        err.trim(),
        r#"error: the server doesn't have a resource type "crontabs""#
    );
    // The other definition and its objects are untouched.
    assert_eq!(
        k.ok(&["get", "backups", "-o", "name"]).trim(),
        "backup.ops.example.com/nightly"
    );

    // A new definition of the same name starts empty.
    install_crontabs(&k);
    let out = k.run(&["get", "ct", "-A"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "No resources found"
    );

    assert_eq!(
        k.ok(&["delete", "backup", "nightly"]).trim(),
        r#"backup.ops.example.com "nightly" deleted"#
    );
    let out = k.run(&["get", "backups"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");
}

#[test]
fn bad_custom_resources_and_definitions_get_kubes_errors() {
    let k = Cluster::start();
    install_crontabs(&k);

    let err = k.fails_stdin(&["apply", "-f", "-"], &cron("My_Cron", "default", 1));
    assert_eq!(
        err.trim(),
        r#"The CronTab "My_Cron" is invalid: metadata.name: Invalid value: "My_Cron": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
    );

    // The schema is enforced: a string where an integer belongs.
    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        &cron("bad-replicas", "default", 1).replace("replicas: 1", "replicas: three"),
    );
    assert!(
        err.trim()
            .starts_with(r#"The CronTab "bad-replicas" is invalid: "#),
        "{err}"
    );
    assert_contains(
        &err,
        r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#,
    );

    // A field the schema does not know: strict field validation (kubectl's default) refuses it.
    let colour =
        cron("colour", "default", 1).replace("  replicas: 1\n", "  replicas: 1\n  colour: blue\n");
    let err = k.fails_stdin(&["apply", "-f", "-"], &colour);
    assert_eq!(
        err.trim(),
        r#"Error from server (BadRequest): error when creating "STDIN": CronTab in version "v1" cannot be handled as a CronTab: strict decoding error: unknown field "spec.colour""#
    );

    // A version the definition does not have is no kind kubectl knows.
    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        &cron("v2-cron", "default", 1).replace("stable.example.com/v1", "stable.example.com/v2"),
    );
    assert_contains(
        &err,
        r#"error: resource mapping not found for name: "v2-cron" namespace: "default" from "STDIN": no matches for kind "CronTab" in version "stable.example.com/v2""#,
    );
    assert_contains(&err, "ensure CRDs are installed first");

    // Namespaced objects need their namespace.
    let err = k.fails_stdin(&["apply", "-f", "-"], &cron("lost", "nowhere", 1));
    assert_eq!(
        err.trim(),
        r#"Error from server (NotFound): error when creating "STDIN": namespaces "nowhere" not found"#
    );

    // None of them was stored.
    let out = k.run(&["get", "ct", "-A", "-o", "name"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "");

    // Without validation the unknown field is pruned, as a structural schema prunes.
    assert_eq!(
        k.ok_stdin(&["apply", "--validate=false", "-f", "-"], &colour)
            .trim(),
        "crontab.stable.example.com/colour created"
    );
    assert_eq!(
        k.jsonpath(&["ct", "colour"], "{.spec}"),
        r#"{"cronSpec":"* * * * */5","image":"my-awesome-cron-image","replicas":1}"#
    );

    // A definition's name must be <plural>.<group>.
    let misnamed = CRONTAB_CRD.replace(
        "name: crontabs.stable.example.com",
        "name: crontab.stable.example.com",
    );
    let err = k.fails_stdin(&["apply", "-f", "-"], &misnamed);
    assert_eq!(
        err.trim(),
        r#"The CustomResourceDefinition "crontab.stable.example.com" is invalid: metadata.name: Invalid value: "crontab.stable.example.com": must be spec.names.plural+"."+spec.group"#
    );
    let out = k.ok(&["get", "crd", "-o", "name"]);
    assert!(
        !out.lines()
            .any(|l| l.ends_with("/crontab.stable.example.com")),
        "the misnamed definition was stored:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l
                == "customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com"),
        "{out}"
    );
    k.assert_serving();
}

/// Operators own their Deployments and ConfigMaps through custom objects: the garbage collector
/// must take an owned object away with its custom owner, and leave those whose owner lives.
#[test]
fn objects_owned_by_a_custom_resource_go_with_it() {
    let k = Cluster::start();
    install_crontabs(&k);
    k.apply_stdin(&cron("doomed", "default", 1));
    k.apply_stdin(&cron("kept", "default", 1));
    let owned = |owner: &str| {
        let uid = k.jsonpath(&["ct", owner], "{.metadata.uid}");
        assert!(!uid.is_empty(), "{owner} has a uid");
        format!(
            r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {owner}-config
  namespace: default
  ownerReferences:
  - apiVersion: stable.example.com/v1
    kind: CronTab
    name: {owner}
    uid: {uid}
data:
  a: b
"#
        )
    };
    k.apply_stdin(&owned("doomed"));
    k.apply_stdin(&owned("kept"));
    assert_eq!(
        k.ok(&["delete", "ct", "doomed"]).trim(),
        r#"crontab.stable.example.com "doomed" deleted"#
    );
    // The collector finds new kinds by discovery every 30 s; give it two rounds.
    let deadline = Instant::now() + Duration::from_secs(75);
    loop {
        let names = k.ok(&["get", "configmaps", "-o", "name"]);
        if !names.contains("configmap/doomed-config") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ConfigMap owned by a deleted CronTab is still there: {names}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        k.jsonpath(
            &["configmap", "kept-config"],
            "{.metadata.ownerReferences[0].name}"
        ),
        "kept"
    );
}

/// A definition serving two versions (kube's `None` conversion): objects are stored once, in the
/// storage version, and every response names the version the client asked for.
#[test]
fn every_served_version_reads_and_writes_the_same_objects() {
    let k = Cluster::start();
    install(
        &k,
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.multi.example.com
spec:
  group: multi.example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#,
        "widgets.multi.example.com",
    );
    let group = k.ok(&["get", "--raw", "/apis/multi.example.com"]);
    assert_contains(
        &group,
        r#""preferredVersion":{"groupVersion":"multi.example.com/v1","version":"v1"}"#,
    );
    assert_eq!(
        k.apply_stdin(
            "apiVersion: multi.example.com/v1beta1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: default\nspec:\n  size: 3\n"
        )
        .trim(),
        "widget.multi.example.com/w1 created"
    );
    // kubectl picks the preferred version; the fully qualified name picks another.
    assert_eq!(
        k.jsonpath(&["widgets", "w1"], "{.apiVersion} {.spec.size}"),
        "multi.example.com/v1 3"
    );
    assert_eq!(
        k.jsonpath(
            &["widgets.v1beta1.multi.example.com", "w1"],
            "{.apiVersion} {.spec.size}"
        ),
        "multi.example.com/v1beta1 3"
    );
    k.ok(&[
        "patch",
        "widgets.v1beta1.multi.example.com",
        "w1",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":4}}"#,
    ]);
    let list = k.ok(&[
        "get",
        "--raw",
        "/apis/multi.example.com/v1beta1/namespaces/default/widgets",
    ]);
    assert_contains(
        &list,
        r#""apiVersion":"multi.example.com/v1beta1","kind":"Widget""#,
    );
    assert!(!list.contains("multi.example.com/v1\""), "{list}");
    assert_eq!(
        k.jsonpath(&["widgets", "w1"], "{.apiVersion} {.spec.size}"),
        "multi.example.com/v1 4"
    );
}

#[test]
fn explain_describes_a_custom_kind_from_its_schema() {
    let k = Cluster::start();
    install_crontabs(&k);
    let out = k.ok(&["explain", "crontabs.spec"]);
    for want in [
        "GROUP:      stable.example.com",
        "KIND:       CronTab",
        "VERSION:    v1",
        "FIELD: spec <Object>",
    ] {
        assert!(
            out.lines().any(|l| l.trim_end() == want),
            "{want:?} in\n{out}"
        );
    }
    for (field, ty) in [
        ("cronSpec", "<string>"),
        ("image", "<string>"),
        ("replicas", "<integer>"),
    ] {
        assert!(
            out.lines().any(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words == [field, ty]
            }),
            "{field} {ty} in\n{out}"
        );
    }
    // The kind itself, with the metadata every kind has.
    let out = k.ok(&["explain", "crontab"]);
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["metadata", "<ObjectMeta>"]),
        "{out}"
    );
    // A definition removed takes its kind out of the documents.
    k.ok(&["delete", "crd", CRONTABS]);
    wait_until("the kind unserved", || {
        k.run(&["explain", "crontabs"]).status.code() != Some(0)
    });
}
