//! Horizontal pod autoscalers: `REFERENCE`, `TARGETS` (`cpu: 25%/50%`), `MINPODS`, `MAXPODS`,
//! `REPLICAS`, as kube-apiserver 1.32 prints them from the v2 object.

use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscalerSpec, HorizontalPodAutoscalerStatus,
};
use serde_json::Value;

use super::{Row, age, cells};
use crate::columns::{self, Column, doc};
use crate::json::{arr_at, get, int_at, name, opt_int, str_at};
use crate::time::Time;

pub(super) fn hpa_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new(
            "Reference",
            "string",
            doc::<HorizontalPodAutoscalerSpec>("scaleTargetRef"),
        ),
        Column::new(
            "Targets",
            "string",
            doc::<HorizontalPodAutoscalerSpec>("metrics"),
        ),
        Column::new(
            "MinPods",
            "string",
            doc::<HorizontalPodAutoscalerSpec>("minReplicas"),
        ),
        Column::new(
            "MaxPods",
            "string",
            doc::<HorizontalPodAutoscalerSpec>("maxReplicas"),
        ),
        Column::new(
            "Replicas",
            "string",
            doc::<HorizontalPodAutoscalerStatus>("currentReplicas"),
        ),
        columns::age(),
    ]
}

pub(super) fn hpa_row(hpa: &Value, now: Time) -> Row {
    let reference = format!(
        "{}/{}",
        str_at(hpa, &["spec", "scaleTargetRef", "kind"]),
        str_at(hpa, &["spec", "scaleTargetRef", "name"])
    );
    let min = opt_int(hpa, &["spec", "minReplicas"])
        .map_or_else(|| "<unset>".to_owned(), |m| m.to_string());
    cells![
        name(hpa),
        reference,
        metrics(hpa),
        min,
        int_at(hpa, &["spec", "maxReplicas"]),
        int_at(hpa, &["status", "currentReplicas"]),
        age(hpa, now),
    ]
}

/// A quantity as the API returns it.
fn quantity(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// `formatHPAMetrics`: each metric as `current/target`, at most two, then `+ N more...`.
fn metrics(hpa: &Value) -> String {
    let specs = arr_at(hpa, &["spec", "metrics"]);
    if specs.is_empty() {
        return "<none>".to_owned();
    }
    let statuses = arr_at(hpa, &["status", "currentMetrics"]);
    let mut list = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i);
        let kind = str_at(spec, &["type"]);
        let entry = match kind {
            "External" | "Object" => {
                let source = if kind == "External" {
                    "external"
                } else {
                    "object"
                };
                let target = &spec[source]["target"];
                let current = status.and_then(|s| s.get(source)).map(|s| &s["current"]);
                if target.get("averageValue").is_some() {
                    let now = current
                        .and_then(|c| c.get("averageValue"))
                        .map_or_else(|| "<unknown>".to_owned(), |v| quantity(Some(v)));
                    format!("{now}/{} (avg)", quantity(target.get("averageValue")))
                } else {
                    let now = current
                        .map_or_else(|| "<unknown>".to_owned(), |c| quantity(c.get("value")));
                    format!("{now}/{}", quantity(target.get("value")))
                }
            }
            "Pods" => {
                let now = status.and_then(|s| s.get("pods")).map_or_else(
                    || "<unknown>".to_owned(),
                    |p| quantity(get(p, &["current", "averageValue"])),
                );
                format!(
                    "{now}/{}",
                    quantity(get(spec, &["pods", "target", "averageValue"]))
                )
            }
            "Resource" | "ContainerResource" => {
                let source = if kind == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let target = &spec[source]["target"];
                let resource = str_at(spec, &[source, "name"]);
                let current = status.and_then(|s| s.get(source)).map(|s| &s["current"]);
                if target.get("averageValue").is_some() {
                    let now = current.map_or_else(
                        || "<unknown>".to_owned(),
                        |c| quantity(c.get("averageValue")),
                    );
                    format!("{resource}: {now}/{}", quantity(target.get("averageValue")))
                } else {
                    let now = current
                        .and_then(|c| c["averageUtilization"].as_i64())
                        .map_or_else(|| "<unknown>".to_owned(), |u| format!("{u}%"));
                    let goal = target["averageUtilization"]
                        .as_i64()
                        .map_or_else(|| "<auto>".to_owned(), |u| format!("{u}%"));
                    format!("{resource}: {now}/{goal}")
                }
            }
            _ => "<unknown type>".to_owned(),
        };
        list.push(entry);
    }
    let count = list.len();
    if count > 2 {
        list.truncate(2);
        return format!("{} + {} more...", list.join(", "), count - 2);
    }
    list.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cpu(target: i64) -> Value {
        json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}})
    }

    #[test]
    fn targets_read_like_kubectl_get_hpa() {
        let mut hpa = json!({"spec": {"metrics": [cpu(50)]}});
        assert_eq!(metrics(&hpa), "cpu: <unknown>/50%");
        hpa["status"] = json!({"currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 250, "averageValue": "250m"}}}]});
        assert_eq!(metrics(&hpa), "cpu: 250%/50%");
        let memory = json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}});
        let pods = json!({"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}});
        let many = json!({"spec": {"metrics": [cpu(50), memory, pods]}});
        assert_eq!(
            metrics(&many),
            "cpu: <unknown>/50%, memory: <unknown>/100Mi + 1 more..."
        );
        assert_eq!(metrics(&json!({"spec": {}})), "<none>");
    }
}
