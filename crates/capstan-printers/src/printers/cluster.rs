//! Cluster-level and bookkeeping objects: nodes, namespaces, events, leases, role bindings,
//! certificate signing requests, priority classes and runtime classes.

use std::collections::BTreeSet;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequestSpec, CertificateSigningRequestStatus,
};
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::api::core::v1::{Event, NodeStatus, NodeSystemInfo, ObjectReference};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use serde_json::Value;

use super::pod::or_none;
use super::{Row, age, cells};
use crate::columns::{self, Column, doc};
use crate::json::{arr_at, get, int_at, name, opt_int, opt_str, str_at};
use crate::time::{self, Time, human_duration};

pub(super) fn node_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new("Status", "string", "The status of the node"),
        Column::new("Roles", "string", "The roles of the node"),
        columns::age(),
        Column::new("Version", "string", doc::<NodeSystemInfo>("kubeletVersion")),
        Column::new("Internal-IP", "string", doc::<NodeStatus>("addresses")).wide(),
        Column::new("External-IP", "string", doc::<NodeStatus>("addresses")).wide(),
        Column::new("OS-Image", "string", doc::<NodeSystemInfo>("osImage")).wide(),
        Column::new(
            "Kernel-Version",
            "string",
            doc::<NodeSystemInfo>("kernelVersion"),
        )
        .wide(),
        Column::new(
            "Container-Runtime",
            "string",
            doc::<NodeSystemInfo>("containerRuntimeVersion"),
        )
        .wide(),
    ]
}

/// `Ready`, `NotReady`, `Unknown` (no Ready condition), then `,SchedulingDisabled` when cordoned.
fn node_status(node: &Value) -> String {
    let ready = arr_at(node, &["status", "conditions"])
        .iter()
        .rev()
        .find(|c| str_at(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if get(node, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    status.join(",")
}

/// Roles from `node-role.kubernetes.io/<role>` label keys and the `kubernetes.io/role` value.
fn node_roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    if let Some(labels) = get(node, &["metadata", "labels"]).and_then(Value::as_object) {
        for (key, value) in labels {
            if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role);
                }
            } else if key == "kubernetes.io/role"
                && let Some(role) = value.as_str().filter(|r| !r.is_empty())
            {
                roles.insert(role);
            }
        }
    }
    if roles.is_empty() {
        return "<none>".to_owned();
    }
    roles.into_iter().collect::<Vec<_>>().join(",")
}

fn node_address<'a>(node: &'a Value, kind: &str) -> &'a str {
    arr_at(node, &["status", "addresses"])
        .iter()
        .find(|a| str_at(a, &["type"]) == kind)
        .map_or("<none>", |a| str_at(a, &["address"]))
}

pub(super) fn node_row(node: &Value, now: Time) -> Row {
    let info = |field: &str| match str_at(node, &["status", "nodeInfo", field]) {
        "" => "<unknown>",
        value => value,
    };
    cells![
        name(node),
        node_status(node),
        node_roles(node),
        age(node, now),
        str_at(node, &["status", "nodeInfo", "kubeletVersion"]),
        node_address(node, "InternalIP"),
        node_address(node, "ExternalIP"),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

pub(super) fn namespace_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new("Status", "string", "The status of the namespace"),
        columns::age(),
    ]
}

pub(super) fn namespace_row(namespace: &Value, now: Time) -> Row {
    // `status.phase` defaults to Active.
    let phase = opt_str(namespace, &["status", "phase"])
        .filter(|p| !p.is_empty())
        .unwrap_or("Active");
    cells![name(namespace), phase, age(namespace, now)]
}

pub(super) fn event_columns() -> Vec<Column> {
    vec![
        Column::new("Last Seen", "string", doc::<Event>("lastTimestamp")),
        Column::new("Type", "string", doc::<Event>("type")),
        Column::new("Reason", "string", doc::<Event>("reason")),
        Column::new("Object", "string", doc::<Event>("involvedObject")),
        Column::new("Subobject", "string", doc::<ObjectReference>("fieldPath")).wide(),
        Column::new("Source", "string", doc::<Event>("source")).wide(),
        Column::new("Message", "string", doc::<Event>("message")),
        Column::new("First Seen", "string", doc::<Event>("firstTimestamp")).wide(),
        Column::new("Count", "string", doc::<Event>("count")).wide(),
        columns::name().wide(),
    ]
}

/// The field names of an event in `core/v1` and in `events.k8s.io/v1`.
struct EventFields {
    first_timestamp: &'static str,
    last_timestamp: &'static str,
    count: &'static str,
    object: &'static str,
    message: &'static str,
    source: &'static str,
    reporting_controller: &'static str,
}

const CORE_EVENT: EventFields = EventFields {
    first_timestamp: "firstTimestamp",
    last_timestamp: "lastTimestamp",
    count: "count",
    object: "involvedObject",
    message: "message",
    source: "source",
    reporting_controller: "reportingComponent",
};

const EVENTS_API_EVENT: EventFields = EventFields {
    first_timestamp: "deprecatedFirstTimestamp",
    last_timestamp: "deprecatedLastTimestamp",
    count: "deprecatedCount",
    object: "regarding",
    message: "note",
    source: "deprecatedSource",
    reporting_controller: "reportingController",
};

pub(super) fn core_event_row(event: &Value, now: Time) -> Row {
    event_row(event, now, &CORE_EVENT)
}

pub(super) fn events_api_event_row(event: &Value, now: Time) -> Row {
    event_row(event, now, &EVENTS_API_EVENT)
}

fn event_row(event: &Value, now: Time, f: &EventFields) -> Row {
    let since =
        |field: &str| Time::from_value(get(event, &[field])).map(|t| human_duration(now.since(t)));
    let first_seen = since(f.first_timestamp)
        .unwrap_or_else(|| time::age(Time::from_value(get(event, &["eventTime"])), now));
    let mut last_seen = since(f.last_timestamp).unwrap_or_else(|| first_seen.clone());
    let mut count = int_at(event, &[f.count]);
    if let Some(series) = get(event, &["series"]) {
        last_seen = time::age(Time::from_value(get(series, &["lastObservedTime"])), now);
        count = int_at(series, &["count"]);
    } else if count == 0 {
        // Singleton events of the new API carry no count.
        count = 1;
    }
    let kind = str_at(event, &[f.object, "kind"]).to_lowercase();
    let object = match str_at(event, &[f.object, "name"]) {
        "" => kind,
        object_name => format!("{kind}/{object_name}"),
    };
    let first_non_empty = |a: &'static str, b: &'static str| match str_at(event, &[f.source, a]) {
        "" => str_at(event, &[b]),
        value => value,
    };
    let component = first_non_empty("component", f.reporting_controller);
    let source = match first_non_empty("host", "reportingInstance") {
        "" => component.to_owned(),
        instance => format!("{component}, {instance}"),
    };
    cells![
        last_seen,
        str_at(event, &["type"]),
        str_at(event, &["reason"]),
        object,
        str_at(event, &[f.object, "fieldPath"]),
        source,
        str_at(event, &[f.message]).trim(),
        first_seen,
        count,
        name(event),
    ]
}

pub(super) fn lease_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new("Holder", "string", doc::<LeaseSpec>("holderIdentity")),
        columns::age(),
    ]
}

pub(super) fn lease_row(lease: &Value, now: Time) -> Row {
    cells![
        name(lease),
        str_at(lease, &["spec", "holderIdentity"]),
        age(lease, now)
    ]
}

fn binding_columns(role_doc: String, what: &'static str) -> Vec<Column> {
    let (users, groups, service_accounts) = match what {
        "roleBinding" => (
            "Users in the roleBinding",
            "Groups in the roleBinding",
            "ServiceAccounts in the roleBinding",
        ),
        _ => (
            "Users in the clusterRoleBinding",
            "Groups in the clusterRoleBinding",
            "ServiceAccounts in the clusterRoleBinding",
        ),
    };
    vec![
        columns::name(),
        Column::new("Role", "string", role_doc),
        columns::age(),
        Column::new("Users", "string", users).wide(),
        Column::new("Groups", "string", groups).wide(),
        Column::new("ServiceAccounts", "string", service_accounts).wide(),
    ]
}

pub(super) fn role_binding_columns() -> Vec<Column> {
    binding_columns(doc::<RoleBinding>("roleRef"), "roleBinding")
}

pub(super) fn cluster_role_binding_columns() -> Vec<Column> {
    binding_columns(doc::<ClusterRoleBinding>("roleRef"), "clusterRoleBinding")
}

pub(super) fn role_binding_row(binding: &Value, now: Time) -> Row {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut service_accounts = Vec::new();
    for subject in arr_at(binding, &["subjects"]) {
        let subject_name = str_at(subject, &["name"]);
        match str_at(subject, &["kind"]) {
            "User" => users.push(subject_name.to_owned()),
            "Group" => groups.push(subject_name.to_owned()),
            "ServiceAccount" => service_accounts.push(format!(
                "{}/{subject_name}",
                str_at(subject, &["namespace"])
            )),
            _ => {}
        }
    }
    cells![
        name(binding),
        format!(
            "{}/{}",
            str_at(binding, &["roleRef", "kind"]),
            str_at(binding, &["roleRef", "name"])
        ),
        age(binding, now),
        users.join(", "),
        groups.join(", "),
        service_accounts.join(", "),
    ]
}

pub(super) fn csr_columns() -> Vec<Column> {
    vec![
        columns::name(),
        columns::age(),
        Column::new(
            "SignerName",
            "string",
            doc::<CertificateSigningRequestSpec>("signerName"),
        ),
        Column::new(
            "Requestor",
            "string",
            doc::<CertificateSigningRequestSpec>("request"),
        ),
        Column::new(
            "RequestedDuration",
            "string",
            doc::<CertificateSigningRequestSpec>("expirationSeconds"),
        ),
        Column::new(
            "Condition",
            "string",
            doc::<CertificateSigningRequestStatus>("conditions"),
        ),
    ]
}

/// `Pending`, `Approved`, `Denied`, then `,Failed` and `,Issued`.
fn csr_condition(csr: &Value) -> String {
    let has = |kind: &str| {
        arr_at(csr, &["status", "conditions"])
            .iter()
            .any(|c| str_at(c, &["type"]) == kind)
    };
    let mut status = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_owned();
    if has("Failed") {
        status.push_str(",Failed");
    }
    if !str_at(csr, &["status", "certificate"]).is_empty() {
        status.push_str(",Issued");
    }
    status
}

pub(super) fn csr_row(csr: &Value, now: Time) -> Row {
    let requested = match opt_int(csr, &["spec", "expirationSeconds"]) {
        Some(seconds) => human_duration(i128::from(seconds) * 1_000_000_000),
        None => "<none>".to_owned(),
    };
    cells![
        name(csr),
        age(csr, now),
        or_none(str_at(csr, &["spec", "signerName"])),
        str_at(csr, &["spec", "username"]),
        requested,
        csr_condition(csr),
    ]
}

pub(super) fn priority_class_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new("Value", "integer", doc::<PriorityClass>("value")),
        Column::new(
            "Global-Default",
            "boolean",
            doc::<PriorityClass>("globalDefault"),
        ),
        columns::age(),
        Column::new(
            "PreemptionPolicy",
            "string",
            doc::<PriorityClass>("preemptionPolicy"),
        ),
    ]
}

pub(super) fn priority_class_row(class: &Value, now: Time) -> Row {
    cells![
        name(class),
        int_at(class, &["value"]),
        get(class, &["globalDefault"])
            .and_then(Value::as_bool)
            .unwrap_or(false),
        age(class, now),
        opt_str(class, &["preemptionPolicy"]).unwrap_or("PreemptLowerPriority"),
    ]
}

pub(super) fn runtime_class_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new("Handler", "string", doc::<RuntimeClass>("handler")),
        columns::age(),
    ]
}

pub(super) fn runtime_class_row(class: &Value, now: Time) -> Row {
    cells![name(class), str_at(class, &["handler"]), age(class, now)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_roles_come_from_labels() {
        let node = json!({"metadata": {"labels": {
            "node-role.kubernetes.io/control-plane": "",
            "node-role.kubernetes.io/etcd": "true",
            "node-role.kubernetes.io/": "",
            "kubernetes.io/role": "master",
            "kubernetes.io/hostname": "n1"}}});
        assert_eq!(node_roles(&node), "control-plane,etcd,master");
        assert_eq!(
            node_roles(&json!({"metadata": {"labels": {"kubernetes.io/role": ""}}})),
            "<none>"
        );
        assert_eq!(node_roles(&json!({})), "<none>");
    }

    #[test]
    fn node_status_without_ready_condition_is_unknown() {
        assert_eq!(node_status(&json!({})), "Unknown");
        assert_eq!(
            node_status(&json!({"spec": {"unschedulable": true}})),
            "Unknown,SchedulingDisabled"
        );
        let flapped = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True"}, {"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(node_status(&flapped), "NotReady");
    }

    #[test]
    fn csr_condition_precedence() {
        let cases = [
            (json!({}), "Pending"),
            (
                json!({"status": {"conditions": [{"type": "Approved"}], "certificate": "LS0t"}}),
                "Approved,Issued",
            ),
            (
                json!({"status": {"conditions": [{"type": "Approved"}, {"type": "Denied"}]}}),
                "Denied",
            ),
            (
                json!({"status": {"conditions": [{"type": "Approved"}, {"type": "Failed"}]}}),
                "Approved,Failed",
            ),
        ];
        for (csr, want) in cases {
            assert_eq!(csr_condition(&csr), want, "{csr}");
        }
    }
}
