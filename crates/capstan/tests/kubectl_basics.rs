//! End-to-end: the everyday kubectl workflow against the real `capstan` binary — apply a multi-document
//! manifest, read it back in every output form, re-apply changes (client-side 3-way merge), delete,
//! discovery/explain/whoami/metrics/version, server-side dry run and list filters.

mod support;

use support::{Cluster, app_manifest, assert_contains, table_rows};

#[test]
fn apply_multi_document_manifest_creates_every_object() {
    let k = Cluster::start();
    let file = k.write_file("app.yaml", &app_manifest("shop", 2, true));
    let out = k.ok(&["apply", "-f", file.to_str().expect("utf-8 path")]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "namespace/shop created",
            "configmap/web-config created",
            "secret/web-secret created",
            "deployment.apps/web created",
            "service/web created",
        ],
        "{out}"
    );

    let all = k.ok(&["get", "all", "-A"]);
    let rows = table_rows(&all);
    let kubernetes = rows
        .iter()
        .find(|r| r.first().map(String::as_str) == Some("default") && r[1] == "service/kubernetes")
        .unwrap_or_else(|| panic!("no kubernetes service in:\n{all}"));
    assert_eq!(kubernetes[2], "ClusterIP", "{all}");
    assert_eq!(kubernetes[3], "10.43.0.1", "{all}");
    assert_eq!(kubernetes[5], "443/TCP", "{all}");
    assert!(
        rows.iter().any(|r| r[0] == "shop" && r[1] == "service/web"),
        "{all}"
    );
    let deploy = rows
        .iter()
        .find(|r| r[0] == "shop" && r[1] == "deployment.apps/web")
        .unwrap_or_else(|| panic!("no deployment in:\n{all}"));
    // No controllers yet: nothing is ready, 2 are wanted.
    assert_eq!(deploy[2], "0/2", "{all}");

    let ns = k.ok(&["get", "ns", "-o", "name"]);
    for want in [
        "namespace/default",
        "namespace/kube-system",
        "namespace/kube-public",
        "namespace/kube-node-lease",
        "namespace/shop",
    ] {
        assert!(ns.lines().any(|l| l == want), "{want} missing from:\n{ns}");
    }
    let ns_table = k.ok(&["get", "ns"]);
    assert_eq!(
        ns_table
            .lines()
            .next()
            .map(|h| h.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["NAME", "STATUS", "AGE"])
    );
    assert!(
        table_rows(&ns_table)
            .iter()
            .any(|r| r[0] == "shop" && r[1] == "Active"),
        "{ns_table}"
    );
}

#[test]
fn deployment_reads_back_with_server_defaults_and_metadata() {
    let k = Cluster::start();
    k.apply_stdin(&app_manifest("shop", 2, true));

    let yaml = k.ok(&["get", "deploy", "web", "-n", "shop", "-o", "yaml"]);
    for want in [
        "  generation: 1\n",
        "  revisionHistoryLimit: 10\n",
        "  progressDeadlineSeconds: 600\n",
        "      maxSurge: 25%\n",
        "      maxUnavailable: 25%\n",
        "    type: RollingUpdate\n",
        "        imagePullPolicy: IfNotPresent\n",
        "        terminationMessagePath: /dev/termination-log\n",
        "        terminationMessagePolicy: File\n",
        "      restartPolicy: Always\n",
        "      dnsPolicy: ClusterFirst\n",
        "      schedulerName: default-scheduler\n",
        "      terminationGracePeriodSeconds: 30\n",
        "          protocol: TCP\n",
        "  uid: ",
        "  resourceVersion: \"",
        "  creationTimestamp: \"",
        "kubectl.kubernetes.io/last-applied-configuration",
    ] {
        assert_contains(&yaml, want);
    }

    let obj = k.get_json(&["deploy", "web", "-n", "shop"]);
    let meta = &obj["metadata"];
    let uid = meta["uid"].as_str().expect("uid");
    assert_eq!(uid.len(), 36, "uid is a UUID: {uid}");
    let rv: u64 = meta["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .parse()
        .expect("numeric resourceVersion");
    assert!(rv > 0);
    assert!(
        meta["creationTimestamp"]
            .as_str()
            .expect("creationTimestamp")
            .ends_with('Z'),
        "{meta}"
    );

    let ip = k.jsonpath(&["svc", "web", "-n", "shop"], "{.spec.clusterIP}");
    let octets: Vec<u8> = ip
        .split('.')
        .map(|o| o.parse().expect("IPv4 octet"))
        .collect();
    assert_eq!(octets.len(), 4, "{ip}");
    assert_eq!(&octets[..2], &[10, 43], "{ip} not in 10.43.0.0/16");
    assert_ne!(ip, "10.43.0.1", "the kubernetes service owns .1");
    assert_eq!(
        k.jsonpath(
            &["svc", "web", "-n", "shop"],
            "{.spec.clusterIPs[0]} {.spec.type} {.spec.sessionAffinity} {.spec.ports[0].protocol}"
        ),
        format!("{ip} ClusterIP None TCP")
    );
    // `kubectl create service` sends nodePort 0, which means "allocate one".
    k.ok(&[
        "create",
        "service",
        "loadbalancer",
        "lb",
        "--tcp=80:8080",
        "-n",
        "shop",
    ]);
    let node_port: u16 = k
        .jsonpath(&["svc", "lb", "-n", "shop"], "{.spec.ports[0].nodePort}")
        .parse()
        .expect("a node port");
    assert!((30000..=32767).contains(&node_port), "{node_port}");

    let describe = k.ok(&["describe", "deployment", "web", "-n", "shop"]);
    for want in [
        "Name:",
        "web",
        "Namespace:",
        "shop",
        "Replicas:",
        "2 desired",
        "StrategyType:",
        "RollingUpdate",
    ] {
        assert_contains(&describe, want);
    }
    assert!(
        describe
            .lines()
            .any(|l| l.starts_with("Selector:") && l.ends_with("app=web")),
        "{describe}"
    );
    assert_contains(&describe, "MODE:");
    assert_contains(&describe, "production");

    // The secret reads back as given, the configmap too.
    assert_eq!(
        k.jsonpath(
            &["secret", "web-secret", "-n", "shop"],
            "{.data.password} {.type}"
        ),
        "czNjcmV0 Opaque"
    );
    assert_eq!(
        k.jsonpath(&["cm", "web-config", "-n", "shop"], "{.data.greeting}"),
        "hello"
    );
}

#[test]
fn reapply_merges_three_ways_and_unchanged_is_a_no_op() {
    let k = Cluster::start();
    let first = k.apply_stdin(&app_manifest("shop", 2, true));
    assert_contains(&first, "deployment.apps/web created");
    assert_eq!(
        k.jsonpath(
            &["deploy", "web", "-n", "shop"],
            "{.spec.template.spec.containers[0].env[*].name}"
        ),
        "MODE COLOR"
    );

    // Drop COLOR, scale to 5: only the deployment changes.
    let second = k.apply_stdin(&app_manifest("shop", 5, false));
    assert_eq!(
        second.lines().collect::<Vec<_>>(),
        [
            "namespace/shop unchanged",
            "configmap/web-config unchanged",
            "secret/web-secret unchanged",
            "deployment.apps/web configured",
            "service/web unchanged",
        ],
        "{second}"
    );
    assert_eq!(
        k.jsonpath(
            &["deploy", "web", "-n", "shop"],
            "{.spec.template.spec.containers[0].env[*].name} {.spec.replicas} {.metadata.generation}"
        ),
        "MODE 5 2"
    );

    // The same file again changes nothing: the spec (generation) stays. The resourceVersion may move,
    // since the deployment controller writes status, as in Kubernetes.
    let rv = k.jsonpath(&["deploy", "web", "-n", "shop"], "{.metadata.generation}");
    let third = k.apply_stdin(&app_manifest("shop", 5, false));
    assert_eq!(
        third.lines().collect::<Vec<_>>(),
        [
            "namespace/shop unchanged",
            "configmap/web-config unchanged",
            "secret/web-secret unchanged",
            "deployment.apps/web unchanged",
            "service/web unchanged",
        ],
        "{third}"
    );
    assert_eq!(
        k.jsonpath(&["deploy", "web", "-n", "shop"], "{.metadata.generation}"),
        rv
    );
}

#[test]
fn reapply_keeps_fields_set_by_other_writers() {
    let k = Cluster::start();
    k.apply_stdin(&app_manifest("shop", 2, true));
    // Another writer adds a label; apply does not own it, so a re-apply keeps it.
    k.ok(&["label", "deploy", "web", "-n", "shop", "team=blue"]);
    let out = k.apply_stdin(&app_manifest("shop", 3, true));
    assert_contains(&out, "deployment.apps/web configured");
    assert_eq!(
        k.jsonpath(
            &["deploy", "web", "-n", "shop"],
            "{.metadata.labels.team} {.metadata.labels.app} {.spec.replicas}"
        ),
        "blue web 3"
    );
}

#[test]
fn delete_by_file_removes_objects_and_get_reports_not_found() {
    let k = Cluster::start();
    let file = k.write_file("app.yaml", &app_manifest("shop", 2, true));
    let path = file.to_str().expect("utf-8 path");
    k.ok(&["apply", "-f", path]);

    // The namespace controller empties and removes the namespace meanwhile; once it is gone, kubectl
    // itself reports the missing namespace (as against kube-apiserver).
    let not_found = |err: &str, expected: &str| {
        let err = err.trim();
        assert!(
            err == expected || err == "Error from server (NotFound): namespaces \"shop\" not found",
            "{err}"
        );
    };
    let out = k.ok(&["delete", "-f", path, "--wait=false"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "namespace \"shop\" deleted",
            "configmap \"web-config\" deleted",
            "secret \"web-secret\" deleted",
            "deployment.apps \"web\" deleted",
            "service \"web\" deleted",
        ],
        "{out}"
    );
    let err = k.fails(&["get", "deploy", "web", "-n", "shop"]);
    not_found(
        &err,
        "Error from server (NotFound): deployments.apps \"web\" not found",
    );
    let err = k.fails(&["get", "cm", "web-config", "-n", "shop"]);
    not_found(
        &err,
        "Error from server (NotFound): configmaps \"web-config\" not found",
    );
    let err = k.fails(&["get", "svc", "web", "-n", "shop"]);
    not_found(
        &err,
        "Error from server (NotFound): services \"web\" not found",
    );
    // Deleting again is NotFound too, and --ignore-not-found makes it quiet.
    let err = k.fails(&["delete", "secret", "web-secret", "-n", "shop"]);
    not_found(
        &err,
        "Error from server (NotFound): secrets \"web-secret\" not found",
    );
    let out = k.ok(&[
        "delete",
        "secret",
        "web-secret",
        "-n",
        "shop",
        "--ignore-not-found",
    ]);
    assert_eq!(out.trim(), "");
    // The namespace itself is being deleted, or already gone.
    let phase = k.run(&["get", "ns", "shop", "-o", "jsonpath={.status.phase}"]);
    let phase = String::from_utf8_lossy(&phase.stdout).into_owned();
    assert!(phase.is_empty() || phase == "Terminating", "{phase}");
}

#[test]
fn discovery_lists_core_resources_with_short_names() {
    let k = Cluster::start();
    let out = k.ok(&["api-resources"]);
    let rows = table_rows(&out);
    let find = |name: &str| {
        rows.iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("{name} missing from api-resources:\n{out}"))
            .clone()
    };
    assert_eq!(find("pods"), ["pods", "po", "v1", "true", "Pod"]);
    assert_eq!(
        find("services"),
        ["services", "svc", "v1", "true", "Service"]
    );
    assert_eq!(
        find("deployments"),
        ["deployments", "deploy", "apps/v1", "true", "Deployment"]
    );
    assert_eq!(
        find("namespaces"),
        ["namespaces", "ns", "v1", "false", "Namespace"]
    );
    assert_eq!(
        find("configmaps"),
        ["configmaps", "cm", "v1", "true", "ConfigMap"]
    );

    let names = k.ok(&["api-resources", "--api-group=apps", "-o", "name"]);
    for want in [
        "deployments.apps",
        "replicasets.apps",
        "statefulsets.apps",
        "daemonsets.apps",
    ] {
        assert!(names.lines().any(|l| l == want), "{want} missing:\n{names}");
    }
    let versions = k.ok(&["api-versions"]);
    for want in ["v1", "apps/v1"] {
        assert!(
            versions.lines().any(|l| l == want),
            "{want} missing:\n{versions}"
        );
    }
}

#[test]
fn explain_prints_field_documentation() {
    let k = Cluster::start();
    let out = k.ok(&["explain", "deployment.spec.strategy"]);
    assert_contains(&out, "KIND:       Deployment");
    assert_contains(&out, "FIELD: strategy <DeploymentStrategy>");
    assert_contains(&out, "rollingUpdate\t<RollingUpdateDeployment>");
    assert_contains(&out, "RollingUpdate");
    let out = k.ok(&["explain", "pods.spec.containers.image"]);
    assert_contains(&out, "FIELD: image <string>");
}

#[test]
fn auth_whoami_reports_the_admin_user() {
    let k = Cluster::start();
    let out = k.ok(&["auth", "whoami"]);
    let rows = table_rows(&out);
    assert!(rows.iter().any(|r| r == &["Username", "admin"]), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("Groups") && l.contains("system:masters")),
        "{out}"
    );
    let can = k.ok(&["auth", "can-i", "create", "deployments"]);
    assert_eq!(can.trim(), "yes");
}

#[test]
fn health_metrics_and_version_endpoints_answer() {
    let k = Cluster::start();
    assert_eq!(k.ok(&["get", "--raw", "/livez"]).trim(), "ok");
    assert_eq!(k.ok(&["get", "--raw", "/readyz"]).trim(), "ok");
    // Generate a counted request, then read the counters.
    k.ok(&["get", "pods", "-A"]);
    let metrics = k.ok(&["get", "--raw", "/metrics"]);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("apiserver_request_total{")),
        "no apiserver_request_total samples in:\n{metrics}"
    );
    assert_contains(&metrics, "# TYPE apiserver_request_total counter");

    let version = k.ok(&["version"]);
    let server = version
        .lines()
        .find(|l| l.starts_with("Server Version: v1."))
        .unwrap_or_else(|| panic!("no server version in:\n{version}"));
    assert!(server.len() > "Server Version: v1.".len(), "{server}");
    let raw: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "--raw", "/version"])).expect("version JSON");
    assert_eq!(raw["major"], "1", "{raw}");
    assert!(
        raw["gitVersion"]
            .as_str()
            .expect("gitVersion")
            .starts_with("v1."),
        "{raw}"
    );
}

#[test]
fn create_deployment_dry_run_server_defaults_without_storing() {
    let k = Cluster::start();
    let out = k.ok(&[
        "create",
        "deployment",
        "d",
        "--image=x",
        "--replicas=2",
        "--dry-run=server",
        "-o",
        "yaml",
    ]);
    for want in [
        "  name: d\n",
        "  replicas: 2\n",
        "    type: RollingUpdate\n",
        "  revisionHistoryLimit: 10\n",
        "        imagePullPolicy: Always\n",
        "        terminationMessagePath: /dev/termination-log\n",
    ] {
        assert_contains(&out, want);
    }
    let err = k.fails(&["get", "deploy", "d"]);
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): deployments.apps \"d\" not found"
    );
}

#[test]
fn create_from_file_dry_run_server_defaults_without_storing() {
    let k = Cluster::start();
    let manifest = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
      "spec":{"replicas":2,"selector":{"matchLabels":{"app":"d"}},
      "template":{"metadata":{"labels":{"app":"d"}},"spec":{"containers":[{"name":"x","image":"x"}]}}}}"#;
    let out = k.ok_stdin(
        &["create", "-f", "-", "--dry-run=server", "-o", "yaml"],
        manifest,
    );
    for want in [
        "  replicas: 2\n",
        "    type: RollingUpdate\n",
        "  revisionHistoryLimit: 10\n",
        // `image: x` has no tag, so it means :latest and the pull policy defaults to Always.
        "        imagePullPolicy: Always\n",
        "  uid: ",
    ] {
        assert_contains(&out, want);
    }
    let err = k.fails(&["get", "deploy", "d"]);
    assert_eq!(
        err.trim(),
        "Error from server (NotFound): deployments.apps \"d\" not found"
    );
    let listed = k.ok(&["get", "deploy", "-o", "name"]);
    assert_eq!(listed.trim(), "");
}

#[test]
fn dry_run_patch_answers_the_change_at_the_current_resource_version_without_storing() {
    let k = Cluster::start();
    k.ok(&["create", "configmap", "c", "--from-literal=a=1"]);
    let rv = k.jsonpath(&["cm", "c"], "{.metadata.resourceVersion}");
    let out = k.ok(&[
        "patch",
        "cm",
        "c",
        "--dry-run=server",
        "-p",
        r#"{"data":{"a":"2"}}"#,
        "-o",
        "jsonpath={.data.a} {.metadata.resourceVersion}",
    ]);
    // kube-apiserver answers a dry-run update with the version it read (kubectl diff shows no
    // resourceVersion change because of it).
    assert_eq!(out, format!("2 {rv}"));
    assert_eq!(
        k.jsonpath(&["cm", "c"], "{.data.a} {.metadata.resourceVersion}"),
        format!("1 {rv}")
    );
}

#[test]
fn pods_filter_by_label_and_field_selectors() {
    let k = Cluster::start();
    let out = k.ok(&[
        "run",
        "p1",
        "--image=x",
        "--labels=app=web",
        "--restart=Never",
    ]);
    assert_eq!(out.trim(), "pod/p1 created");
    k.ok(&[
        "run",
        "p2",
        "--image=x",
        "--labels=app=web",
        "--restart=Never",
    ]);
    k.ok(&[
        "run",
        "q",
        "--image=x",
        "--labels=app=db",
        "--restart=Never",
    ]);

    let web = k.ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    assert_eq!(web.lines().collect::<Vec<_>>(), ["pod/p1", "pod/p2"]);
    let not_web = k.ok(&["get", "pods", "-l", "app!=web", "-o", "name"]);
    assert_eq!(not_web.lines().collect::<Vec<_>>(), ["pod/q"]);
    let set = k.ok(&["get", "pods", "-l", "app in (db,cache)", "-o", "name"]);
    assert_eq!(set.lines().collect::<Vec<_>>(), ["pod/q"]);

    // No scheduler yet: every pod is unbound and Pending.
    let unbound = k.ok(&[
        "get",
        "pods",
        "--field-selector",
        "spec.nodeName=",
        "-o",
        "name",
    ]);
    assert_eq!(
        unbound.lines().collect::<Vec<_>>(),
        ["pod/p1", "pod/p2", "pod/q"]
    );
    let bound = k.ok(&[
        "get",
        "pods",
        "--field-selector",
        "spec.nodeName!=",
        "-o",
        "name",
    ]);
    assert_eq!(bound.trim(), "");
    let pending = k.ok(&[
        "get",
        "pods",
        "--field-selector",
        "status.phase=Pending",
        "-l",
        "app=web",
        "-o",
        "name",
    ]);
    assert_eq!(pending.lines().collect::<Vec<_>>(), ["pod/p1", "pod/p2"]);
    let by_name = k.ok(&[
        "get",
        "pods",
        "--field-selector",
        "metadata.name=q",
        "-o",
        "name",
    ]);
    assert_eq!(by_name.trim(), "pod/q");

    let table = k.ok(&["get", "pods", "-l", "app=web"]);
    let rows = table_rows(&table);
    assert_eq!(rows.len(), 2, "{table}");
    for row in rows {
        assert_eq!(row[1..4], ["0/1", "Pending", "0"], "{table}");
    }

    let err = k.fails(&["get", "pods", "--field-selector", "spec.bogus=x"]);
    assert_contains(&err, "field label not supported: spec.bogus");
}
