//! End-to-end: HorizontalPodAutoscalers through kubectl — `kubectl autoscale` (which sends
//! `autoscaling/v1`), the same object read as `autoscaling/v2`, v2 manifests with several metrics,
//! kube's table columns, `explain`, and validation errors. The scaling itself, which needs real pods
//! using real CPU, is in `kubelet_pods.rs`.

mod support;

use support::{Cluster, app_manifest, assert_contains, table_header, table_rows};

#[test]
fn kubectl_autoscale_creates_an_hpa_served_in_both_versions() {
    let k = Cluster::start();
    k.apply_stdin(&app_manifest("shop", 1, false));
    assert_eq!(
        k.ok(&[
            "autoscale",
            "deployment",
            "web",
            "-n",
            "shop",
            "--min=1",
            "--max=3",
            "--cpu-percent=50"
        ])
        .trim(),
        "horizontalpodautoscaler.autoscaling/web autoscaled"
    );
    // kubectl reads the preferred version, v2: the v1 CPU target is its one metric.
    assert_eq!(
        k.jsonpath(
            &["hpa", "web", "-n", "shop"],
            "{.apiVersion} {.spec.scaleTargetRef.kind}/{.spec.scaleTargetRef.name} {.spec.minReplicas}-{.spec.maxReplicas} {.spec.metrics[0].resource.name} {.spec.metrics[0].resource.target.averageUtilization}"
        ),
        "autoscaling/v2 Deployment/web 1-3 cpu 50"
    );
    assert_eq!(
        k.jsonpath(
            &[
                "horizontalpodautoscalers.v1.autoscaling",
                "web",
                "-n",
                "shop"
            ],
            "{.apiVersion} {.spec.targetCPUUtilizationPercentage}"
        ),
        "autoscaling/v1 50"
    );
    let table = k.ok(&["get", "hpa", "-n", "shop"]);
    assert_eq!(
        table_header(&table),
        [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ]
    );
    let rows = table_rows(&table);
    // No pod runs (no agent), so no usage: the current value is unknown.
    assert_eq!(
        rows[0][..6],
        ["web", "Deployment/web", "cpu:", "<unknown>/50%", "1", "3"]
    );

    let resources = k.ok(&["api-resources", "--api-group=autoscaling"]);
    assert_contains(&resources, "horizontalpodautoscalers");
    assert_contains(&resources, "hpa");
    assert_contains(&resources, "autoscaling/v2");
    let versions = k.ok(&["api-versions"]);
    assert_contains(&versions, "autoscaling/v1");
    assert_contains(&versions, "autoscaling/v2");

    let explain = k.ok(&["explain", "hpa.spec.behavior"]);
    assert_contains(&explain, "VERSION:    v2");
    assert_contains(
        &explain,
        "FIELD: behavior <HorizontalPodAutoscalerBehavior>",
    );

    // A patch through v1 changes the stored v2 object.
    k.ok(&[
        "patch",
        "horizontalpodautoscalers.v1.autoscaling",
        "web",
        "-n",
        "shop",
        "--type=merge",
        "-p",
        r#"{"spec":{"targetCPUUtilizationPercentage":70}}"#,
    ]);
    assert_eq!(
        k.jsonpath(
            &["hpa", "web", "-n", "shop"],
            "{.spec.metrics[0].resource.target.averageUtilization}"
        ),
        "70"
    );
    assert_eq!(
        k.ok(&["delete", "hpa", "web", "-n", "shop"]).trim(),
        r#"horizontalpodautoscaler.autoscaling "web" deleted"#
    );
}

#[test]
fn v2_manifests_keep_every_metric_and_bad_ones_are_refused() {
    let k = Cluster::start();
    k.apply_stdin(&app_manifest("shop", 1, false));
    let out = k.apply_stdin(
        r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
  namespace: shop
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: web
  maxReplicas: 5
  metrics:
  - type: Resource
    resource:
      name: cpu
      target:
        type: Utilization
        averageUtilization: 60
  - type: Resource
    resource:
      name: memory
      target:
        type: AverageValue
        averageValue: 100Mi
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 30
"#,
    );
    assert_eq!(
        out.trim(),
        "horizontalpodautoscaler.autoscaling/web created"
    );
    // minReplicas defaults to 1.
    assert_eq!(
        k.jsonpath(
            &["hpa", "web", "-n", "shop"],
            "{.spec.minReplicas} {.spec.metrics[1].resource.target.averageValue} {.spec.behavior.scaleDown.stabilizationWindowSeconds}"
        ),
        "1 100Mi 30"
    );
    let rows = table_rows(&k.ok(&["get", "hpa", "-n", "shop"]));
    assert_eq!(
        rows[0][..7],
        [
            "web",
            "Deployment/web",
            "cpu:",
            "<unknown>/60%,",
            "memory:",
            "<unknown>/100Mi",
            "1"
        ]
    );
    // v1 shows only the CPU target.
    let v1 = k.get_json(&[
        "horizontalpodautoscalers.v1.autoscaling",
        "web",
        "-n",
        "shop",
    ]);
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
    assert!(v1["spec"].get("metrics").is_none(), "{v1}");

    // An HPA without a CPU target given through v1 gets kube's default of 80%.
    k.ok_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion":"autoscaling/v1","kind":"HorizontalPodAutoscaler","metadata":{"name":"plain","namespace":"shop"},
            "spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},"maxReplicas":2}}"#,
    );
    assert_eq!(
        k.jsonpath(
            &["hpa", "plain", "-n", "shop"],
            "{.spec.metrics[0].resource.target.averageUtilization}"
        ),
        "80"
    );

    let err = k.fails_stdin(
        &["apply", "-f", "-"],
        r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: bad
  namespace: shop
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: web
  minReplicas: 4
  maxReplicas: 2
"#,
    );
    assert_contains(
        &err,
        r#"The HorizontalPodAutoscaler "bad" is invalid: spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"#,
    );
    let names = k.ok(&["get", "hpa", "-n", "shop", "-o", "name"]);
    assert!(!names.contains("/bad"), "{names}");
}
