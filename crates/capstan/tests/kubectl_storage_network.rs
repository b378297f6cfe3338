//! End-to-end: the storage, networking and scheduling kinds most manifests carry besides workloads
//! (StorageClass, PersistentVolume, PersistentVolumeClaim, IngressClass, Ingress, NetworkPolicy,
//! PriorityClass), driven with the real kubectl against the real binary: apply, the table columns
//! kube-apiserver prints, defaults, validation errors, immutable fields, and priority admission.

mod support;

use support::{Cluster, assert_contains, table_header, table_rows};

const MANIFEST: &str = r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: fast
provisioner: example.com/fast
parameters:
  tier: gold
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pv1
spec:
  capacity:
    storage: 5Gi
  accessModes: [ReadWriteOnce]
  storageClassName: fast
  hostPath:
    path: /tmp/pv1
---
apiVersion: v1
kind: Namespace
metadata:
  name: site
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
  namespace: site
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: fast
  resources:
    requests:
      storage: 1Gi
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: nginx
spec:
  controller: k8s.io/ingress-nginx
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: site
spec:
  ingressClassName: nginx
  rules:
  - host: shop.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all
  namespace: site
spec:
  podSelector: {}
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: high
value: 100000
description: important
"#;

/// The header of a kubectl table, as words.
/// Polls `{.status.phase}` of one object until it reads `want` (10 s).
fn wait_phase(k: &Cluster, object: &[&str], want: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let phase = k.jsonpath(object, "{.status.phase}");
        if phase == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{object:?} is {phase:?}, not {want:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn storage_and_network_kinds_apply_print_and_default_as_kubernetes_does() {
    let k = Cluster::start();
    let out = k.apply_stdin(MANIFEST);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "storageclass.storage.k8s.io/fast created",
            "persistentvolume/pv1 created",
            "namespace/site created",
            "persistentvolumeclaim/data created",
            "ingressclass.networking.k8s.io/nginx created",
            "ingress.networking.k8s.io/web created",
            "networkpolicy.networking.k8s.io/deny-all created",
            "priorityclass.scheduling.k8s.io/high created",
        ],
        "{out}"
    );

    // Short names and the columns kube-apiserver's table handlers print.
    let pvc = k.ok(&["get", "pvc", "-n", "site"]);
    assert_eq!(
        table_header(&pvc),
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ],
        "{pvc}"
    );
    // No provisioner serves class `fast` here, but pv1 fits the claim: the PV controller binds them
    // (static binding), as Kubernetes does.
    wait_phase(&k, &["pvc", "data", "-n", "site"], "Bound");
    let pvc = k.ok(&["get", "pvc", "-n", "site"]);
    let row = &table_rows(&pvc)[0];
    assert_eq!(
        &row[..7],
        ["data", "Bound", "pv1", "5Gi", "RWO", "fast", "<unset>"],
        "{pvc}"
    );
    wait_phase(&k, &["pv", "pv1"], "Bound");
    let pv = k.ok(&["get", "pv"]);
    let row = &table_rows(&pv)[0];
    assert_eq!(
        &row[..7],
        ["pv1", "5Gi", "RWO", "Retain", "Bound", "site/data", "fast"],
        "{pv}"
    );
    let sc = k.ok(&["get", "sc"]);
    assert_eq!(
        table_rows(&sc)[0][..5],
        ["fast", "example.com/fast", "Delete", "Immediate", "false"],
        "{sc}"
    );
    let ing = k.ok(&["get", "ing", "-n", "site"]);
    assert_eq!(
        table_header(&ing),
        ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"],
        "{ing}"
    );
    assert_eq!(
        table_rows(&ing)[0][..4],
        ["web", "nginx", "shop.example.com", "80"],
        "{ing}"
    );
    let netpol = k.ok(&["get", "netpol", "-n", "site"]);
    assert_eq!(
        table_rows(&netpol)[0][..2],
        ["deny-all", "<none>"],
        "{netpol}"
    );
    let pc = k.ok(&["get", "pc"]);
    let classes: Vec<(String, String)> = table_rows(&pc)
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    for want in [
        ("high", "100000"),
        ("system-cluster-critical", "2000000000"),
        ("system-node-critical", "2000001000"),
    ] {
        assert!(
            classes.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{want:?} missing from:\n{pc}"
        );
    }

    // Defaults: volume mode, reclaim policy, policy types.
    assert_eq!(
        k.jsonpath(&["pvc", "data", "-n", "site"], "{.spec.volumeMode}"),
        "Filesystem"
    );
    assert_eq!(
        k.jsonpath(&["netpol", "deny-all", "-n", "site"], "{.spec.policyTypes}"),
        r#"["Ingress"]"#
    );
    assert_eq!(
        k.jsonpath(&["pc", "high"], "{.preemptionPolicy}"),
        "PreemptLowerPriority"
    );

    // kubectl's typed `create ingress` sends protobuf.
    let out = k.ok(&[
        "create",
        "ingress",
        "simple",
        "-n",
        "site",
        "--rule=foo.com/bar=svc1:8080",
    ]);
    assert_eq!(out.trim(), "ingress.networking.k8s.io/simple created");
    assert_eq!(
        k.jsonpath(
            &["ing", "simple", "-n", "site"],
            "{.spec.rules[0].http.paths[0].backend.service.port.number}"
        ),
        "8080"
    );

    // A volume a claim is bound to is protected: deleting it leaves it Terminating...
    assert_eq!(
        k.jsonpath(&["pv", "pv1"], "{.metadata.finalizers}"),
        r#"["kubernetes.io/pv-protection"]"#
    );
    k.ok(&["delete", "pv", "pv1", "--wait=false"]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let pv = k.ok(&["get", "pv", "pv1", "--no-headers"]);
    assert_eq!(pv.split_whitespace().nth(4), Some("Terminating"), "{pv}");

    // Deleting the namespace takes its claims, ingresses and policies with it.
    k.ok(&["delete", "ns", "site"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left = k.run(&["get", "ns", "site"]);
        if !left.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "namespace site still exists"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let left = k.ok(&["get", "pvc,ing,netpol", "-A", "-o", "name"]);
    assert_eq!(left.trim(), "", "left after namespace deletion:\n{left}");
    // ... until its claim is gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while k.run(&["get", "pv", "pv1"]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "pv1 outlived its claim"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // A claim that asks for no class and finds no fitting volume waits, and says why.
    k.apply_stdin(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: lonely\nspec:\n  \
         storageClassName: \"\"\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      \
         storage: 1Gi\n",
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let described = k.ok(&["describe", "pvc", "lonely"]);
        if described.contains("FailedBinding") {
            assert_contains(
                &described,
                "no persistent volumes available for this claim and no storage class is set",
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{described}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(k.jsonpath(&["pvc", "lonely"], "{.status.phase}"), "Pending");
}

#[test]
fn storage_and_network_kinds_reject_bad_input_with_kubernetes_messages() {
    let k = Cluster::start();
    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: bad\nspec:\n  resources: {}\n",
    );
    assert_contains(&err, r#"The PersistentVolumeClaim "bad" is invalid"#);
    assert_contains(
        &err,
        "spec.accessModes: Required value: at least 1 access mode is required",
    );
    assert_contains(&err, "spec.resources[storage]: Required value");

    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: bad\nspec:\n  rules:\n  - http:\n      paths:\n      - path: /\n        backend:\n          service:\n            name: web\n            port:\n              number: 80\n",
    );
    assert_contains(
        &err,
        r#"The Ingress "bad" is invalid: spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"#,
    );

    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: nothing\nspec:\n  capacity:\n    storage: 1Gi\n  accessModes: [ReadWriteOnce]\n",
    );
    assert_contains(&err, "spec: Required value: must specify a volume type");

    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: system-mine\nvalue: 10\n",
    );
    assert_contains(
        &err,
        "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only",
    );

    // Immutable fields.
    k.apply_stdin(MANIFEST);
    let err = k.fails(&[
        "patch",
        "sc",
        "fast",
        "-p",
        r#"{"parameters":{"tier":"silver"}}"#,
    ]);
    assert_contains(
        &err,
        "parameters: Forbidden: updates to parameters are forbidden.",
    );
    let err = k.fails(&["patch", "pc", "high", "-p", r#"{"value":5}"#]);
    assert_contains(&err, "value: Forbidden: may not be changed in an update.");
    let err = k.fails(&[
        "patch",
        "pvc",
        "data",
        "-n",
        "site",
        "-p",
        r#"{"spec":{"accessModes":["ReadWriteMany"]}}"#,
    ]);
    assert_contains(
        &err,
        "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
    );
    // A bound claim may ask for more storage only when its class allows expansion.
    wait_phase(&k, &["pvc", "data", "-n", "site"], "Bound");
    let err = k.fails(&[
        "patch",
        "pvc",
        "data",
        "-n",
        "site",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
    ]);
    assert_contains(
        &err,
        r#"persistentvolumeclaims "data" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"#,
    );
    // Nothing of the refused writes was stored.
    assert_eq!(k.jsonpath(&["sc", "fast"], "{.parameters.tier}"), "gold");
    assert_eq!(k.jsonpath(&["pc", "high"], "{.value}"), "100000");
    assert!(k.run(&["get", "pvc", "bad"]).status.code() != Some(0));
    k.assert_serving();
}

#[test]
fn pods_take_priority_from_their_class_or_the_global_default() {
    let k = Cluster::start();
    k.apply_stdin(MANIFEST);
    let run = |name: &str, overrides: &str| {
        k.run(&[
            "run",
            name,
            "--image=busybox",
            &format!("--overrides={overrides}"),
        ])
    };
    assert!(
        run("named", r#"{"spec":{"priorityClassName":"high"}}"#)
            .status
            .success()
    );
    assert_eq!(
        k.jsonpath(
            &["pod", "named"],
            "{.spec.priority} {.spec.preemptionPolicy}"
        ),
        "100000 PreemptLowerPriority"
    );
    assert!(
        run(
            "critical",
            r#"{"spec":{"priorityClassName":"system-node-critical"}}"#
        )
        .status
        .success()
    );
    assert_eq!(
        k.jsonpath(&["pod", "critical"], "{.spec.priority}"),
        "2000001000"
    );

    let refused = run("missing", r#"{"spec":{"priorityClassName":"nope"}}"#);
    assert!(!refused.status.success());
    assert_contains(
        &String::from_utf8_lossy(&refused.stderr),
        r#"Error from server (Forbidden): pods "missing" is forbidden: no PriorityClass with name nope was found"#,
    );
    let refused = run(
        "contradicts",
        r#"{"spec":{"priorityClassName":"high","priority":5}}"#,
    );
    assert_contains(
        &String::from_utf8_lossy(&refused.stderr),
        "the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 100000 from the given PriorityClass name",
    );

    // Without a default class a pod gets priority 0; with one, that class.
    assert!(run("plain", "{}").status.success());
    assert_eq!(k.jsonpath(&["pod", "plain"], "{.spec.priority}"), "0");
    k.apply_stdin(
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: everyday\nvalue: 1000\nglobalDefault: true\npreemptionPolicy: Never\n",
    );
    // Only one class may be the default, whether created so or changed to it.
    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: second\nvalue: 5\nglobalDefault: true\n",
    );
    assert_contains(
        &err,
        r#"priorityclasses.scheduling.k8s.io "second" is forbidden: PriorityClass everyday is already marked as default. Only one default can exist"#,
    );
    let err = k.fails(&["patch", "pc", "high", "-p", r#"{"globalDefault":true}"#]);
    assert_contains(&err, "PriorityClass everyday is already marked as default");
    assert!(run("defaulted", "{}").status.success());
    assert_eq!(
        k.jsonpath(
            &["pod", "defaulted"],
            "{.spec.priorityClassName} {.spec.priority} {.spec.preemptionPolicy}"
        ),
        "everyday 1000 Never"
    );
}
