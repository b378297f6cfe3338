//! What kubectl sends, through the public API: client-side apply, label, set image, JSON patch and
//! server-side apply.

use capstan_patch::apply::{ApplyError, apply, record_update};
use capstan_patch::{json_patch, merge_patch, strategic_merge_patch};
use serde_json::{Value, json};

fn deployments() -> &'static capstan_api::ResourceInfo {
    capstan_api::find_kind("apps/v1", "Deployment").expect("registered")
}

fn live() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                    {"name": "sidecar", "image": "side:1"}
                ]}
            }
        }
    })
}

#[test]
fn client_side_apply_patch() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}, {"name": "sidecar"}],
        "containers": [{"$setElementOrder/env": [{"name": "A"}], "env": [{"$patch": "delete", "name": "B"}], "image": "app:2", "name": "app"}]
    }}}});
    let patched = strategic_merge_patch(&live(), &patch, deployments()).expect("applies");
    let containers = &patched["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers[0],
        json!({"name": "app", "image": "app:2", "env": [{"name": "A", "value": "1"}]})
    );
    assert_eq!(containers[1], json!({"name": "sidecar", "image": "side:1"}));
}

#[test]
fn label_set_image_and_json_patch() {
    let labelled =
        merge_patch(&live(), &json!({"metadata": {"labels": {"env": "prod"}}})).expect("applies");
    assert_eq!(
        labelled["metadata"]["labels"],
        json!({"app": "web", "env": "prod"})
    );

    let set_image = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "side:2"}]}}}});
    let patched = strategic_merge_patch(&live(), &set_image, deployments()).expect("applies");
    assert_eq!(
        patched["spec"]["template"]["spec"]["containers"][1]["image"],
        json!("side:2")
    );
    assert_eq!(
        patched["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("app:1")
    );

    let scaled = json_patch(
        &live(),
        &json!([{"op": "replace", "path": "/spec/replicas", "value": 4}]),
    )
    .expect("applies");
    assert_eq!(scaled["spec"]["replicas"], json!(4));
    let failed = json_patch(
        &live(),
        &json!([{"op": "test", "path": "/spec/replicas", "value": 4}]),
    )
    .expect_err("test fails");
    assert!(!failed.is_bad_request());
}

#[test]
fn server_side_apply_after_client_side_create() {
    let mut created = live();
    record_update(
        None,
        &mut created,
        "kubectl-client-side-apply",
        deployments(),
        "2025-01-01T00:00:00Z",
    )
    .expect("records");
    let mut applied = live();
    applied["spec"]["replicas"] = json!(3);
    let err = apply(
        Some(&created),
        &applied,
        "kubectl",
        false,
        deployments(),
        "2025-01-01T00:01:00Z",
    )
    .expect_err("conflicts");
    assert!(matches!(err, ApplyError::Conflicts(ref c) if c.len() == 1));
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    let forced = apply(
        Some(&created),
        &applied,
        "kubectl",
        true,
        deployments(),
        "2025-01-01T00:01:00Z",
    )
    .expect("forced")
    .object;
    assert_eq!(forced["spec"]["replicas"], json!(3));
}
