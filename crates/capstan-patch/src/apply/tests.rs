use serde_json::{Value, json};

use super::{ApplyError, Conflict, apply, record_update};

const NOW: &str = "2025-01-01T00:00:00Z";
const LATER: &str = "2025-01-01T00:05:00Z";

fn deployments() -> &'static capstan_api::ResourceInfo {
    capstan_api::find_kind("apps/v1", "Deployment").expect("registered")
}

fn config(replicas: Option<i64>, env: &[(&str, &str)]) -> Value {
    let env: Vec<Value> = env
        .iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    let mut config = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "app:1", "env": env}]}
            }
        }
    });
    if let Some(replicas) = replicas {
        config["spec"]["replicas"] = json!(replicas);
    }
    config
}

fn managers(object: &Value) -> Vec<(String, String)> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or("").to_owned(),
                        e["operation"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn fields_of<'a>(object: &'a Value, manager: &str) -> &'a Value {
    object["metadata"]["managedFields"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["manager"] == manager))
        .map(|e| &e["fieldsV1"])
        .expect("manager has an entry")
}

fn conflicts(err: ApplyError) -> Vec<Conflict> {
    match err {
        ApplyError::Conflicts(conflicts) => conflicts,
        other => panic!("expected conflicts, got {other}"),
    }
}

#[test]
fn create_via_apply_records_the_applied_fields() {
    let created = apply(
        None,
        &config(Some(2), &[("A", "1")]),
        "kubectl",
        false,
        deployments(),
        NOW,
    )
    .expect("applies")
    .object;
    assert_eq!(created["spec"]["replicas"], json!(2));
    assert_eq!(
        created["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": NOW,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {
                            ".": {}, "f:name": {}, "f:image": {},
                            "f:env": {"k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}}
                        }}}
                    }
                }
            }
        }])
    );
}

#[test]
fn reapply_without_a_field_removes_it() {
    let created = apply(
        None,
        &config(Some(2), &[("A", "1"), ("B", "2")]),
        "kubectl",
        false,
        deployments(),
        NOW,
    )
    .expect("applies")
    .object;
    let updated = apply(
        Some(&created),
        &config(None, &[("A", "1")]),
        "kubectl",
        false,
        deployments(),
        LATER,
    )
    .expect("applies")
    .object;
    assert_eq!(updated["spec"].get("replicas"), None);
    assert_eq!(
        updated["spec"]["template"]["spec"]["containers"][0]["env"],
        json!([{"name": "A", "value": "1"}])
    );
    let owned = fields_of(&updated, "kubectl");
    assert_eq!(owned["f:spec"].get("f:replicas"), None);
    assert_eq!(
        managers(&updated),
        vec![("kubectl".to_owned(), "Apply".to_owned())]
    );
    assert_eq!(
        updated["metadata"]["managedFields"][0]["time"],
        json!(LATER)
    );
}

#[test]
fn a_field_another_manager_also_applied_stays() {
    let created = apply(None, &config(Some(2), &[]), "a", false, deployments(), NOW)
        .expect("applies")
        .object;
    // b applies the same value: shared ownership, no conflict.
    let shared = apply(Some(&created), &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}}), "b", false, deployments(), NOW)
        .expect("same value does not conflict")
        .object;
    let dropped = apply(
        Some(&shared),
        &config(None, &[]),
        "a",
        false,
        deployments(),
        LATER,
    )
    .expect("applies")
    .object;
    assert_eq!(dropped["spec"]["replicas"], json!(2));
}

#[test]
fn two_appliers_conflict_and_force_takes_ownership() {
    let created = apply(None, &config(Some(2), &[]), "a", false, deployments(), NOW)
        .expect("applies")
        .object;
    let change = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}});
    let err =
        apply(Some(&created), &change, "b", false, deployments(), LATER).expect_err("conflicts");
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"a\": .spec.replicas"
    );
    assert_eq!(
        conflicts(err),
        vec![Conflict {
            manager: "\"a\"".to_owned(),
            field: ".spec.replicas".to_owned()
        }]
    );

    let forced = apply(Some(&created), &change, "b", true, deployments(), LATER)
        .expect("force applies")
        .object;
    assert_eq!(forced["spec"]["replicas"], json!(3));
    assert_eq!(
        fields_of(&forced, "b"),
        &json!({"f:spec": {"f:replicas": {}}})
    );
    assert_eq!(fields_of(&forced, "a")["f:spec"].get("f:replicas"), None);
    // a no longer owns replicas: dropping it from a's config leaves b's value alone.
    let again = apply(
        Some(&forced),
        &config(None, &[]),
        "a",
        false,
        deployments(),
        LATER,
    )
    .expect("applies")
    .object;
    assert_eq!(again["spec"]["replicas"], json!(3));
}

#[test]
fn update_then_apply_conflicts_on_the_updated_field() {
    let mut object = config(Some(1), &[]);
    record_update(
        None,
        &mut object,
        "kubectl-client-side-apply",
        deployments(),
        NOW,
    )
    .expect("records");
    assert_eq!(
        managers(&object),
        vec![("kubectl-client-side-apply".to_owned(), "Update".to_owned())]
    );
    let err = apply(
        Some(&object),
        &config(Some(2), &[]),
        "kubectl",
        false,
        deployments(),
        LATER,
    )
    .expect_err("conflicts");
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    // Unchanged values (image, labels) are shared, not conflicts.
    let applied = apply(
        Some(&object),
        &config(Some(1), &[]),
        "kubectl",
        false,
        deployments(),
        LATER,
    )
    .expect("no change, no conflict");
    assert_eq!(managers(&applied.object).len(), 2);
}

#[test]
fn several_conflicts_are_listed_per_manager() {
    let mut object = config(Some(1), &[("A", "1")]);
    record_update(None, &mut object, "editor", deployments(), NOW).expect("records");
    let mut changed = config(Some(2), &[("A", "2")]);
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("app:2");
    let err = apply(
        Some(&object),
        &changed,
        "kubectl",
        false,
        deployments(),
        LATER,
    )
    .expect_err("conflicts");
    assert_eq!(
        err.to_string(),
        "Apply failed with 3 conflicts: conflicts with \"editor\" using apps/v1:\n\
         - .spec.replicas\n\
         - .spec.template.spec.containers[name=\"app\"].env[name=\"A\"].value\n\
         - .spec.template.spec.containers[name=\"app\"].image"
    );
}

#[test]
fn record_update_moves_changed_fields_and_drops_empty_entries() {
    let created = apply(
        None,
        &config(Some(2), &[]),
        "kubectl",
        false,
        deployments(),
        NOW,
    )
    .expect("applies")
    .object;
    // kubectl scale: the scaler takes replicas; kubectl keeps the rest.
    let mut scaled = created.clone();
    scaled["spec"]["replicas"] = json!(5);
    record_update(
        Some(&created),
        &mut scaled,
        "kubectl-scale",
        deployments(),
        LATER,
    )
    .expect("records");
    assert_eq!(
        fields_of(&scaled, "kubectl-scale"),
        &json!({"f:spec": {"f:replicas": {}}})
    );
    assert_eq!(
        fields_of(&scaled, "kubectl")["f:spec"].get("f:replicas"),
        None
    );
    assert_eq!(
        fields_of(&scaled, "kubectl")["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"]
            ["f:image"],
        json!({})
    );

    // Scaling again by another writer leaves kubectl-scale with nothing: its entry goes.
    let mut rescaled = scaled.clone();
    rescaled["spec"]["replicas"] = json!(1);
    record_update(Some(&scaled), &mut rescaled, "hpa", deployments(), LATER).expect("records");
    let names: Vec<String> = managers(&rescaled).into_iter().map(|(m, _)| m).collect();
    assert_eq!(names, vec!["kubectl".to_owned(), "hpa".to_owned()]);

    // An update that changes nothing adds no entry.
    let mut same = rescaled.clone();
    record_update(Some(&rescaled), &mut same, "noop", deployments(), LATER).expect("records");
    assert_eq!(managers(&same).len(), 2);
}

#[test]
fn apply_ignores_status_and_managed_fields_of_the_config() {
    let mut applied = config(Some(1), &[]);
    applied["status"] = json!({"replicas": 9});
    applied["metadata"]["managedFields"] =
        json!([{"manager": "forged", "operation": "Apply", "fieldsV1": {"f:spec": {}}}]);
    let created = apply(None, &applied, "kubectl", false, deployments(), NOW)
        .expect("applies")
        .object;
    assert_eq!(created.get("status"), None);
    assert_eq!(
        managers(&created),
        vec![("kubectl".to_owned(), "Apply".to_owned())]
    );

    let mut live = created.clone();
    live["status"] = json!({"replicas": 1});
    let reapplied = apply(
        Some(&live),
        &applied,
        "kubectl",
        false,
        deployments(),
        LATER,
    )
    .expect("applies")
    .object;
    assert_eq!(reapplied["status"], json!({"replicas": 1}));
}

#[test]
fn objects_without_managed_fields_are_owned_before_first_apply() {
    let live = config(Some(1), &[]);
    let err = apply(
        Some(&live),
        &config(Some(2), &[]),
        "kubectl",
        false,
        deployments(),
        NOW,
    )
    .expect_err("conflicts");
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
    );
}
