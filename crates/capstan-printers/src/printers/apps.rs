//! Workload controllers: deployments, replica sets, stateful sets, daemon sets, controller
//! revisions and replication controllers.

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSetSpec, DaemonSetStatus, DeploymentSpec, DeploymentStatus,
    ReplicaSetSpec, ReplicaSetStatus,
};
use k8s_openapi::api::core::v1::{PodSpec, ReplicationControllerSpec, ReplicationControllerStatus};
use serde_json::Value;

use super::{Row, age, cells, containers_and_images};
use crate::columns::{self, Column, doc};
use crate::json::{arr_at, get, int_at, name, opt_int, str_at};
use crate::labels::{format_label_selector, format_labels, selector_string};
use crate::time::Time;

/// `spec.replicas`, defaulted to 1 as the API server defaults it.
fn desired_replicas(object: &Value) -> i64 {
    opt_int(object, &["spec", "replicas"]).unwrap_or(1)
}

fn template_spec(object: &Value) -> Option<&Value> {
    get(object, &["spec", "template", "spec"])
}

pub(super) fn deployment_columns() -> Vec<Column> {
    let [containers, images] = columns::containers_images();
    vec![
        columns::name(),
        Column::new("Ready", "string", "Number of the pod with ready state"),
        Column::new(
            "Up-to-date",
            "string",
            doc::<DeploymentStatus>("updatedReplicas"),
        ),
        Column::new(
            "Available",
            "string",
            doc::<DeploymentStatus>("availableReplicas"),
        ),
        columns::age(),
        containers,
        images,
        Column::new("Selector", "string", doc::<DeploymentSpec>("selector")).wide(),
    ]
}

pub(super) fn deployment_row(object: &Value, now: Time) -> Row {
    let (names, images) = containers_and_images(template_spec(object));
    let selector = selector_string(get(object, &["spec", "selector"]))
        .unwrap_or_else(|| "<invalid>".to_owned());
    cells![
        name(object),
        format!(
            "{}/{}",
            int_at(object, &["status", "readyReplicas"]),
            desired_replicas(object)
        ),
        int_at(object, &["status", "updatedReplicas"]),
        int_at(object, &["status", "availableReplicas"]),
        age(object, now),
        names,
        images,
        selector,
    ]
}

pub(super) fn replica_set_columns() -> Vec<Column> {
    let [containers, images] = columns::containers_images();
    vec![
        columns::name(),
        Column::new("Desired", "integer", doc::<ReplicaSetSpec>("replicas")),
        Column::new("Current", "integer", doc::<ReplicaSetStatus>("replicas")),
        Column::new("Ready", "integer", doc::<ReplicaSetStatus>("readyReplicas")),
        columns::age(),
        containers,
        images,
        Column::new("Selector", "string", doc::<ReplicaSetSpec>("selector")).wide(),
    ]
}

pub(super) fn replica_set_row(object: &Value, now: Time) -> Row {
    let (names, images) = containers_and_images(template_spec(object));
    cells![
        name(object),
        desired_replicas(object),
        int_at(object, &["status", "replicas"]),
        int_at(object, &["status", "readyReplicas"]),
        age(object, now),
        names,
        images,
        format_label_selector(get(object, &["spec", "selector"])),
    ]
}

pub(super) fn replication_controller_columns() -> Vec<Column> {
    let [containers, images] = columns::containers_images();
    vec![
        columns::name(),
        Column::new(
            "Desired",
            "integer",
            doc::<ReplicationControllerSpec>("replicas"),
        ),
        Column::new(
            "Current",
            "integer",
            doc::<ReplicationControllerStatus>("replicas"),
        ),
        Column::new(
            "Ready",
            "integer",
            doc::<ReplicationControllerStatus>("readyReplicas"),
        ),
        columns::age(),
        containers,
        images,
        Column::new(
            "Selector",
            "string",
            doc::<ReplicationControllerSpec>("selector"),
        )
        .wide(),
    ]
}

pub(super) fn replication_controller_row(object: &Value, now: Time) -> Row {
    let (names, images) = containers_and_images(template_spec(object));
    cells![
        name(object),
        desired_replicas(object),
        int_at(object, &["status", "replicas"]),
        int_at(object, &["status", "readyReplicas"]),
        age(object, now),
        names,
        images,
        format_labels(get(object, &["spec", "selector"])),
    ]
}

pub(super) fn stateful_set_columns() -> Vec<Column> {
    let [containers, images] = columns::containers_images();
    vec![
        columns::name(),
        Column::new("Ready", "string", "Number of the pod with ready state"),
        columns::age(),
        containers,
        images,
    ]
}

pub(super) fn stateful_set_row(object: &Value, now: Time) -> Row {
    let (names, images) = containers_and_images(template_spec(object));
    cells![
        name(object),
        format!(
            "{}/{}",
            int_at(object, &["status", "readyReplicas"]),
            desired_replicas(object)
        ),
        age(object, now),
        names,
        images,
    ]
}

pub(super) fn daemon_set_columns() -> Vec<Column> {
    let [containers, images] = columns::containers_images();
    vec![
        columns::name(),
        Column::new(
            "Desired",
            "integer",
            doc::<DaemonSetStatus>("desiredNumberScheduled"),
        ),
        Column::new(
            "Current",
            "integer",
            doc::<DaemonSetStatus>("currentNumberScheduled"),
        ),
        Column::new("Ready", "integer", doc::<DaemonSetStatus>("numberReady")),
        Column::new(
            "Up-to-date",
            "integer",
            doc::<DaemonSetStatus>("updatedNumberScheduled"),
        ),
        Column::new(
            "Available",
            "integer",
            doc::<DaemonSetStatus>("numberAvailable"),
        ),
        Column::new("Node Selector", "string", doc::<PodSpec>("nodeSelector")),
        columns::age(),
        containers,
        images,
        Column::new("Selector", "string", doc::<DaemonSetSpec>("selector")).wide(),
    ]
}

pub(super) fn daemon_set_row(object: &Value, now: Time) -> Row {
    let (names, images) = containers_and_images(template_spec(object));
    cells![
        name(object),
        int_at(object, &["status", "desiredNumberScheduled"]),
        int_at(object, &["status", "currentNumberScheduled"]),
        int_at(object, &["status", "numberReady"]),
        int_at(object, &["status", "updatedNumberScheduled"]),
        int_at(object, &["status", "numberAvailable"]),
        format_labels(get(object, &["spec", "template", "spec", "nodeSelector"])),
        age(object, now),
        names,
        images,
        format_label_selector(get(object, &["spec", "selector"])),
    ]
}

pub(super) fn controller_revision_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new("Controller", "string", "Controller of the object"),
        Column::new("Revision", "string", doc::<ControllerRevision>("revision")),
        columns::age(),
    ]
}

/// `statefulset.apps/web`: the controlling owner as `kind.group/name`, `<none>` without one.
pub(super) fn controller_name(object: &Value) -> String {
    let Some(owner) = arr_at(object, &["metadata", "ownerReferences"])
        .iter()
        .find(|o| get(o, &["controller"]).and_then(Value::as_bool) == Some(true))
    else {
        return "<none>".to_owned();
    };
    let owner_name = str_at(owner, &["name"]);
    let kind = str_at(owner, &["kind"]);
    let group = match str_at(owner, &["apiVersion"]).split_once('/') {
        Some((group, _)) => group,
        None => "",
    };
    match (kind, group) {
        ("", "") => owner_name.to_owned(),
        (kind, "") => format!("{}/{owner_name}", kind.to_lowercase()),
        (kind, group) => format!("{}/{owner_name}", format!("{kind}.{group}").to_lowercase()),
    }
}

pub(super) fn controller_revision_row(object: &Value, now: Time) -> Row {
    cells![
        name(object),
        controller_name(object),
        int_at(object, &["revision"]),
        age(object, now)
    ]
}
