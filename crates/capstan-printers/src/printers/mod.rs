//! One printer per resource kube-apiserver has a table handler for, named and computed as in
//! Kubernetes' `pkg/printers/internalversion`. kube-apiserver always prints the wide cells; kubectl
//! hides the priority-1 columns unless asked for `-o wide`.

use std::sync::OnceLock;

use serde_json::Value;

use crate::columns::{self, Column};
use crate::json::{arr_at, get, name, str_at};
use crate::time::{Time, ZERO_RFC3339};

mod apps;
mod autoscaling;
mod batch;
mod cluster;
mod core;
mod network;
mod pod;

/// The cells of one row and the row's conditions (only pods have any).
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) cells: Vec<Value>,
    pub(crate) conditions: Option<Value>,
}

impl From<Vec<Value>> for Row {
    fn from(cells: Vec<Value>) -> Row {
        Row {
            cells,
            conditions: None,
        }
    }
}

/// `cells![a, b, c]`: a [`Row`] of JSON cells.
macro_rules! cells {
    ($($cell:expr),* $(,)?) => {
        $crate::printers::Row::from(vec![$(::serde_json::Value::from($cell)),*])
    };
}
pub(crate) use cells;

type RowFn = fn(&Value, Time) -> Row;

/// How one resource prints.
#[derive(Debug)]
pub(crate) struct Printer {
    group: &'static str,
    plural: &'static str,
    column_defs: fn() -> Vec<Column>,
    columns: OnceLock<Vec<Value>>,
    pub(crate) row: RowFn,
}

impl Printer {
    const fn new(
        group: &'static str,
        plural: &'static str,
        column_defs: fn() -> Vec<Column>,
        row: RowFn,
    ) -> Printer {
        Printer {
            group,
            plural,
            column_defs,
            columns: OnceLock::new(),
            row,
        }
    }

    /// The `columnDefinitions`, built once.
    pub(crate) fn columns(&self) -> &[Value] {
        self.columns
            .get_or_init(|| (self.column_defs)().iter().map(Column::to_json).collect())
    }
}

static PRINTERS: [Printer; 35] = [
    Printer::new("", "pods", pod::columns, pod::row),
    Printer::new(
        "",
        "podtemplates",
        core::pod_template_columns,
        core::pod_template_row,
    ),
    Printer::new(
        "",
        "replicationcontrollers",
        apps::replication_controller_columns,
        apps::replication_controller_row,
    ),
    Printer::new(
        "",
        "services",
        network::service_columns,
        network::service_row,
    ),
    Printer::new(
        "",
        "endpoints",
        network::endpoints_columns,
        network::endpoints_row,
    ),
    Printer::new("", "nodes", cluster::node_columns, cluster::node_row),
    Printer::new(
        "",
        "namespaces",
        cluster::namespace_columns,
        cluster::namespace_row,
    ),
    Printer::new(
        "",
        "events",
        cluster::event_columns,
        cluster::core_event_row,
    ),
    Printer::new(
        "events.k8s.io",
        "events",
        cluster::event_columns,
        cluster::events_api_event_row,
    ),
    Printer::new(
        "",
        "configmaps",
        core::config_map_columns,
        core::config_map_row,
    ),
    Printer::new("", "secrets", core::secret_columns, core::secret_row),
    Printer::new(
        "",
        "serviceaccounts",
        core::service_account_columns,
        core::service_account_row,
    ),
    Printer::new(
        "",
        "resourcequotas",
        core::resource_quota_columns,
        core::resource_quota_row,
    ),
    Printer::new(
        "",
        "persistentvolumes",
        core::persistent_volume_columns,
        core::persistent_volume_row,
    ),
    Printer::new(
        "",
        "persistentvolumeclaims",
        core::persistent_volume_claim_columns,
        core::persistent_volume_claim_row,
    ),
    Printer::new(
        "apps",
        "deployments",
        apps::deployment_columns,
        apps::deployment_row,
    ),
    Printer::new(
        "apps",
        "replicasets",
        apps::replica_set_columns,
        apps::replica_set_row,
    ),
    Printer::new(
        "apps",
        "statefulsets",
        apps::stateful_set_columns,
        apps::stateful_set_row,
    ),
    Printer::new(
        "apps",
        "daemonsets",
        apps::daemon_set_columns,
        apps::daemon_set_row,
    ),
    Printer::new(
        "apps",
        "controllerrevisions",
        apps::controller_revision_columns,
        apps::controller_revision_row,
    ),
    Printer::new("batch", "jobs", batch::job_columns, batch::job_row),
    Printer::new(
        "batch",
        "cronjobs",
        batch::cron_job_columns,
        batch::cron_job_row,
    ),
    Printer::new(
        "discovery.k8s.io",
        "endpointslices",
        network::endpoint_slice_columns,
        network::endpoint_slice_row,
    ),
    Printer::new(
        "networking.k8s.io",
        "ingresses",
        network::ingress_columns,
        network::ingress_row,
    ),
    Printer::new(
        "networking.k8s.io",
        "ingressclasses",
        network::ingress_class_columns,
        network::ingress_class_row,
    ),
    Printer::new(
        "networking.k8s.io",
        "networkpolicies",
        network::network_policy_columns,
        network::network_policy_row,
    ),
    Printer::new(
        "autoscaling",
        "horizontalpodautoscalers",
        autoscaling::hpa_columns,
        autoscaling::hpa_row,
    ),
    Printer::new(
        "coordination.k8s.io",
        "leases",
        cluster::lease_columns,
        cluster::lease_row,
    ),
    Printer::new(
        "policy",
        "poddisruptionbudgets",
        core::pod_disruption_budget_columns,
        core::pod_disruption_budget_row,
    ),
    Printer::new(
        "rbac.authorization.k8s.io",
        "rolebindings",
        cluster::role_binding_columns,
        cluster::role_binding_row,
    ),
    Printer::new(
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        cluster::cluster_role_binding_columns,
        cluster::role_binding_row,
    ),
    Printer::new(
        "certificates.k8s.io",
        "certificatesigningrequests",
        cluster::csr_columns,
        cluster::csr_row,
    ),
    Printer::new(
        "scheduling.k8s.io",
        "priorityclasses",
        cluster::priority_class_columns,
        cluster::priority_class_row,
    ),
    Printer::new(
        "node.k8s.io",
        "runtimeclasses",
        cluster::runtime_class_columns,
        cluster::runtime_class_row,
    ),
    Printer::new(
        "storage.k8s.io",
        "storageclasses",
        core::storage_class_columns,
        core::storage_class_row,
    ),
];

/// The table every other resource gets (`rest.NewDefaultTableConvertor`): name and creation time.
static DEFAULT: Printer = Printer::new("", "", default_columns, default_row);

/// The printer of a resource, or the default one.
pub(crate) fn find(group: &str, plural: &str) -> &'static Printer {
    PRINTERS
        .iter()
        .find(|p| p.group == group && p.plural == plural)
        .unwrap_or(&DEFAULT)
}

fn default_columns() -> Vec<Column> {
    vec![columns::name(), columns::created_at()]
}

fn default_row(object: &Value, _now: Time) -> Row {
    let created = Time::from_value(get(object, &["metadata", "creationTimestamp"]))
        .map_or_else(|| ZERO_RFC3339.to_owned(), Time::rfc3339_utc);
    cells![name(object), created]
}

/// The age of `metadata.creationTimestamp`.
pub(crate) fn age(object: &Value, now: Time) -> String {
    crate::time::age(
        Time::from_value(get(object, &["metadata", "creationTimestamp"])),
        now,
    )
}

/// `layoutContainerCells`: container names and images of a pod spec, comma-separated.
pub(crate) fn containers_and_images(pod_spec: Option<&Value>) -> (String, String) {
    let containers = pod_spec.map_or(&[][..], |spec| arr_at(spec, &["containers"]));
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Time {
        Time::parse("2024-05-01T12:00:00Z").expect("valid")
    }

    #[test]
    fn every_printer_fills_every_column_even_for_garbage() {
        let objects = [
            json!(null),
            json!({}),
            json!({"metadata": [], "spec": 1, "status": "x", "template": 3}),
            json!({"metadata": {"name": "x", "creationTimestamp": "2024-05-01T11:00:00Z", "deletionTimestamp": "2024-05-01T11:59:00Z"}}),
        ];
        for printer in PRINTERS.iter().chain([&DEFAULT]) {
            let columns = printer.columns();
            assert!(!columns.is_empty());
            for object in &objects {
                let row = (printer.row)(object, now());
                assert_eq!(
                    row.cells.len(),
                    columns.len(),
                    "{}/{}",
                    printer.group,
                    printer.plural
                );
            }
        }
    }

    #[test]
    fn every_printer_has_distinct_columns_with_descriptions() {
        for printer in &PRINTERS {
            let names: Vec<&str> = printer
                .columns()
                .iter()
                .filter_map(|c| c["name"].as_str())
                .collect();
            let mut unique = names.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), names.len(), "{}", printer.plural);
            for column in printer.columns() {
                assert!(
                    column["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{}: {column}",
                    printer.plural
                );
            }
        }
    }

    fn cells_of(group: &str, plural: &str, object: &Value) -> Value {
        Value::Array(((find(group, plural)).row)(object, now()).cells)
    }

    #[test]
    fn printers_of_resources_not_yet_served() {
        let cases = [
            (
                ("networking.k8s.io", "ingresses"),
                json!({"metadata": {"name": "web"}, "spec": {"ingressClassName": "traefik", "tls": [{}],
                       "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}]},
                       "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}}),
                json!([
                    "web",
                    "traefik",
                    "a.example.com,b.example.com",
                    "192.0.2.10",
                    "80, 443",
                    "<unknown>"
                ]),
            ),
            (
                ("", "persistentvolumes"),
                json!({"metadata": {"name": "pv-1"}, "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                       "persistentVolumeReclaimPolicy": "Delete", "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "local-path"},
                       "status": {"phase": "Bound"}}),
                json!([
                    "pv-1",
                    "10Gi",
                    "RWO,RWX",
                    "Delete",
                    "Bound",
                    "default/data",
                    "local-path",
                    "<unset>",
                    "",
                    "<unknown>",
                    "Filesystem"
                ]),
            ),
            (
                ("", "persistentvolumeclaims"),
                json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pv-1", "storageClassName": "local-path"},
                       "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"]}}),
                json!([
                    "data",
                    "Bound",
                    "pv-1",
                    "10Gi",
                    "RWO",
                    "local-path",
                    "<unset>",
                    "<unknown>",
                    "Filesystem"
                ]),
            ),
            (
                ("storage.k8s.io", "storageclasses"),
                json!({"metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                       "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}),
                json!([
                    "local-path (default)",
                    "rancher.io/local-path",
                    "Delete",
                    "WaitForFirstConsumer",
                    false,
                    "<unknown>"
                ]),
            ),
            (
                ("scheduling.k8s.io", "priorityclasses"),
                json!({"metadata": {"name": "system-node-critical"}, "value": 2000001000}),
                json!([
                    "system-node-critical",
                    2000001000,
                    false,
                    "<unknown>",
                    "PreemptLowerPriority"
                ]),
            ),
            (
                ("", "replicationcontrollers"),
                json!({"metadata": {"name": "rc"}, "spec": {"selector": {"app": "x"}}, "status": {"replicas": 1}}),
                json!(["rc", 1, 1, 0, "<unknown>", "", "", "app=x"]),
            ),
            (
                ("", "podtemplates"),
                json!({"metadata": {"name": "t"}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}),
                json!(["t", "c", "i", "a=b"]),
            ),
            (
                ("events.k8s.io", "events"),
                json!({"metadata": {"name": "e"}, "regarding": {"kind": "Pod", "name": "p"}, "note": "Pulled image", "type": "Normal",
                       "reason": "Pulled", "reportingController": "kubelet", "reportingInstance": "node-1",
                       "eventTime": "2024-05-01T11:59:00.000000Z"}),
                json!([
                    "60s",
                    "Normal",
                    "Pulled",
                    "pod/p",
                    "",
                    "kubelet, node-1",
                    "Pulled image",
                    "60s",
                    1,
                    "e"
                ]),
            ),
        ];
        for ((group, plural), object, want) in cases {
            assert_eq!(cells_of(group, plural, &object), want, "{plural}");
        }
    }
}
