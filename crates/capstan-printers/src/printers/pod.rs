//! Pods: the `READY`, `STATUS` and `RESTARTS` columns kubectl users read most, computed from the
//! container statuses the way `printPod` does.

use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
use serde_json::{Value, json};

use super::{Row, age};
use crate::columns::{self, Column, doc};
use crate::json::{arr_at, bool_at, get, int_at, name, str_at};
use crate::time::{self, Time};

pub(super) fn columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new(
            "Ready",
            "string",
            "The aggregate readiness state of this pod for accepting traffic.",
        ),
        Column::new(
            "Status",
            "string",
            "The aggregate status of the containers in this pod.",
        ),
        Column::new(
            "Restarts",
            "string",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        columns::age(),
        Column::new("IP", "string", doc::<PodStatus>("podIP")).wide(),
        Column::new("Node", "string", doc::<PodSpec>("nodeName")).wide(),
        Column::new(
            "Nominated Node",
            "string",
            doc::<PodStatus>("nominatedNodeName"),
        )
        .wide(),
        Column::new(
            "Readiness Gates",
            "string",
            doc::<PodSpec>("readinessGates"),
        )
        .wide(),
    ]
}

/// The latest of `latest` and the container's last termination time.
fn note_last_termination(latest: &mut Option<Time>, container_status: &Value) {
    if get(container_status, &["lastState", "terminated"]).is_some() {
        let finished = Time::from_value(get(
            container_status,
            &["lastState", "terminated", "finishedAt"],
        ));
        if let Some(finished) = finished
            && latest.is_none_or(|l| l < finished)
        {
            *latest = Some(finished);
        }
    }
}

/// `Signal:9` / `ExitCode:1` for a termination without a reason.
fn exit_description(terminated: &Value) -> String {
    let signal = int_at(terminated, &["signal"]);
    if signal != 0 {
        format!("Signal:{signal}")
    } else {
        format!("ExitCode:{}", int_at(terminated, &["exitCode"]))
    }
}

fn condition_true(conditions: &[Value], kind: &str) -> bool {
    conditions
        .iter()
        .find(|c| str_at(c, &["type"]) == kind)
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

pub(super) fn row(pod: &Value, now: Time) -> Row {
    let phase = str_at(pod, &["status", "phase"]);
    let status_reason = str_at(pod, &["status", "reason"]);
    let conditions = arr_at(pod, &["status", "conditions"]);
    let mut reason = if status_reason.is_empty() {
        phase
    } else {
        status_reason
    }
    .to_owned();
    if conditions.iter().any(|c| {
        str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated"
    }) {
        reason = "SchedulingGated".to_owned();
    }

    let init_specs = arr_at(pod, &["spec", "initContainers"]);
    // Init containers with restartPolicy Always are sidecars: they count as regular containers.
    let is_sidecar = |container_name: &str| {
        init_specs
            .iter()
            .rev()
            .find(|c| str_at(c, &["name"]) == container_name)
            .is_some_and(|c| str_at(c, &["restartPolicy"]) == "Always")
    };
    let sidecars = init_specs
        .iter()
        .filter(|c| str_at(c, &["restartPolicy"]) == "Always")
        .count();
    let total = arr_at(pod, &["spec", "containers"]).len() + sidecars;

    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart = None;
    let mut last_sidecar_restart = None;
    let mut initializing = false;
    for (index, status) in arr_at(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let restart_count = int_at(status, &["restartCount"]);
        restarts += restart_count;
        note_last_termination(&mut last_restart, status);
        let sidecar = is_sidecar(str_at(status, &["name"]));
        if sidecar {
            sidecar_restarts += restart_count;
            note_last_termination(&mut last_sidecar_restart, status);
        }
        let terminated = get(status, &["state", "terminated"]);
        let waiting_reason = str_at(status, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| int_at(t, &["exitCode"]) == 0) {
            continue;
        }
        if sidecar && bool_at(status, &["started"]) {
            if bool_at(status, &["ready"]) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(terminated) = terminated {
            match str_at(terminated, &["reason"]) {
                "" => format!("Init:{}", exit_description(terminated)),
                r => format!("Init:{r}"),
            }
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{index}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for status in arr_at(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += int_at(status, &["restartCount"]);
            note_last_termination(&mut last_restart, status);
            let waiting_reason = str_at(status, &["state", "waiting", "reason"]);
            let terminated = get(status, &["state", "terminated"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_owned();
            } else if let Some(terminated) = terminated {
                reason = match str_at(terminated, &["reason"]) {
                    "" => exit_description(terminated),
                    r => r.to_owned(),
                };
            } else if bool_at(status, &["ready"]) && get(status, &["state", "running"]).is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed but another still runs is not Completed.
        if reason == "Completed" && has_running {
            reason = if condition_true_any(conditions, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_owned();
        }
    }

    if get(pod, &["metadata", "deletionTimestamp"]).is_some() {
        if status_reason == "NodeLost" {
            reason = "Unknown".to_owned();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_owned();
        }
    }

    let restarts = match last_restart {
        Some(last) if restarts != 0 => format!("{restarts} ({} ago)", time::age(Some(last), now)),
        _ => restarts.to_string(),
    };

    let pod_ip = match str_at(pod, &["status", "podIP"]) {
        "" => arr_at(pod, &["status", "podIPs"])
            .first()
            .map_or("", |ip| str_at(ip, &["ip"])),
        ip => ip,
    };
    let readiness_gates = arr_at(pod, &["spec", "readinessGates"]);
    let gates = if readiness_gates.is_empty() {
        "<none>".to_owned()
    } else {
        let passed = readiness_gates
            .iter()
            .filter(|gate| {
                let kind = str_at(gate, &["conditionType"]);
                conditions
                    .iter()
                    .find(|c| str_at(c, &["type"]) == kind)
                    .is_some_and(|c| str_at(c, &["status"]) == "True")
            })
            .count();
        format!("{passed}/{}", readiness_gates.len())
    };

    let conditions = match phase {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]),
        ),
        _ => None,
    };
    let cells = vec![
        Value::from(name(pod)),
        Value::from(format!("{ready}/{total}")),
        Value::from(reason),
        Value::from(restarts),
        Value::from(age(pod, now)),
        Value::from(or_none(pod_ip)),
        Value::from(or_none(str_at(pod, &["spec", "nodeName"]))),
        Value::from(or_none(str_at(pod, &["status", "nominatedNodeName"]))),
        Value::from(gates),
    ];
    Row { cells, conditions }
}

/// `hasPodReadyCondition`: any `Ready` condition that is true.
fn condition_true_any(conditions: &[Value], kind: &str) -> bool {
    conditions
        .iter()
        .any(|c| str_at(c, &["type"]) == kind && str_at(c, &["status"]) == "True")
}

pub(super) fn or_none(value: &str) -> &str {
    if value.is_empty() { "<none>" } else { value }
}
