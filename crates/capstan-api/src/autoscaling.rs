//! HorizontalPodAutoscaler in two versions: objects are stored as `autoscaling/v2`; `autoscaling/v1`
//! (what `kubectl autoscale` of kubectl 1.32 sends) is converted on the way in and out, as
//! kube-apiserver's conversion does for the one metric v1 knows, the CPU utilization target.
//! Not kept through v1: other metrics, `behavior` and conditions (kube keeps them in annotations).

use serde_json::{Map, Value, json};

use crate::registry::ResourceInfo;

/// Converts an object between a served version and the storage version.
pub type Convert = fn(&Value) -> Value;

/// For a resource served in a version other than its storage version: (to storage, from storage).
pub fn storage_conversion(resource: &ResourceInfo) -> Option<(Convert, Convert)> {
    match (resource.group, resource.version, resource.kind) {
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => Some((v1_to_v2, v2_to_v1)),
        _ => None,
    }
}

fn cpu_utilization(metrics: &Value, side: &str) -> Option<i64> {
    metrics.as_array()?.iter().find_map(|m| {
        let resource = &m["resource"];
        (m["type"] == "Resource" && resource["name"] == "cpu")
            .then(|| resource[side]["averageUtilization"].as_i64())
            .flatten()
    })
}

fn take(object: &mut Value, section: &str, field: &str) -> Option<Value> {
    object
        .get_mut(section)?
        .as_object_mut()?
        .remove(field)
        .filter(|v| !v.is_null())
}

fn section(object: &mut Value, name: &str) -> Option<Map<String, Value>> {
    object.get_mut(name)?.as_object_mut().map(std::mem::take)
}

/// `autoscaling/v1` -> `autoscaling/v2`.
pub fn v1_to_v2(v1: &Value) -> Value {
    let mut out = v1.clone();
    out["apiVersion"] = json!("autoscaling/v2");
    if let Some(target) = take(&mut out, "spec", "targetCPUUtilizationPercentage") {
        out["spec"]["metrics"] = json!([{
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}},
        }]);
    }
    if let Some(current) = take(&mut out, "status", "currentCPUUtilizationPercentage") {
        out["status"]["currentMetrics"] = json!([{
            "type": "Resource",
            "resource": {"name": "cpu", "current": {"averageUtilization": current}},
        }]);
    }
    out
}

/// `autoscaling/v2` -> `autoscaling/v1`.
pub fn v2_to_v1(v2: &Value) -> Value {
    let mut out = v2.clone();
    out["apiVersion"] = json!("autoscaling/v1");
    if let Some(mut spec) = section(&mut out, "spec") {
        let target = spec
            .get("metrics")
            .and_then(|m| cpu_utilization(m, "target"));
        spec.remove("metrics");
        spec.remove("behavior");
        if let Some(target) = target {
            spec.insert("targetCPUUtilizationPercentage".into(), json!(target));
        }
        out["spec"] = Value::Object(spec);
    }
    if let Some(mut status) = section(&mut out, "status") {
        let current = status
            .get("currentMetrics")
            .and_then(|m| cpu_utilization(m, "current"));
        status.remove("currentMetrics");
        status.remove("conditions");
        if let Some(current) = current {
            status.insert("currentCPUUtilizationPercentage".into(), json!(current));
        }
        out["status"] = Value::Object(status);
    }
    out
}

/// kube's defaults of an `autoscaling/v2` object: one replica at least, and a CPU target of 80%
/// when no metric is given.
pub(crate) fn default_v2(object: &mut Value) {
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("minReplicas").is_none_or(Value::is_null) {
        spec.insert("minReplicas".into(), json!(1));
    }
    if spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
}

/// What kube-apiserver checks of a HorizontalPodAutoscaler that a user could get wrong.
pub(crate) fn validate(errs: &mut Vec<crate::FieldError>, object: &Value) {
    use crate::validation::{invalid_num, not_supported, required};
    let spec = &object["spec"];
    for field in ["kind", "name"] {
        if spec["scaleTargetRef"][field]
            .as_str()
            .is_none_or(str::is_empty)
        {
            errs.push(required(format!("spec.scaleTargetRef.{field}"), ""));
        }
    }
    let min = spec["minReplicas"].as_i64().unwrap_or(1);
    if min < 1 {
        errs.push(invalid_num(
            "spec.minReplicas",
            min,
            "must be greater than or equal to 1",
        ));
    }
    let max = spec["maxReplicas"].as_i64().unwrap_or(0);
    if max < 1 {
        errs.push(invalid_num(
            "spec.maxReplicas",
            max,
            "must be greater than 0",
        ));
    } else if max < min {
        errs.push(invalid_num(
            "spec.maxReplicas",
            max,
            "must be greater than or equal to `minReplicas`",
        ));
    }
    let types = [
        "ContainerResource",
        "External",
        "Object",
        "Pods",
        "Resource",
    ];
    for (i, metric) in spec["metrics"].as_array().into_iter().flatten().enumerate() {
        let path = format!("spec.metrics[{i}]");
        let kind = metric["type"].as_str().unwrap_or_default();
        if !types.contains(&kind) {
            errs.push(not_supported(format!("{path}.type"), kind, &types));
            continue;
        }
        let source = match kind {
            "Resource" => "resource",
            "ContainerResource" => "containerResource",
            "External" => "external",
            "Object" => "object",
            _ => "pods",
        };
        if !metric[source].is_object() {
            errs.push(required(
                format!("{path}.{source}"),
                "must populate information for the given metric source",
            ));
            continue;
        }
        if let Some(utilization) = metric[source]["target"]["averageUtilization"].as_i64()
            && utilization <= 0
        {
            errs.push(invalid_num(
                format!("{path}.{source}.target.averageUtilization"),
                utilization,
                "must be greater than 0",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_target_survives_both_ways() {
        let v1 = json!({
            "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50},
            "status": {"currentReplicas": 1, "desiredReplicas": 2, "currentCPUUtilizationPercentage": 90}
        });
        let v2 = v1_to_v2(&v1);
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"],
            json!({"type": "Utilization", "averageUtilization": 50})
        );
        assert!(v2["spec"].get("targetCPUUtilizationPercentage").is_none());
        assert_eq!(
            v2["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
            90
        );
        assert_eq!(v2_to_v1(&v2), v1);
    }

    #[test]
    fn v1_shows_only_what_it_can_hold() {
        let v2 = json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"maxReplicas": 3, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
                     "metrics": [{"type": "Resource", "resource": {"name": "memory",
                                  "target": {"type": "AverageValue", "averageValue": "100Mi"}}}]},
            "status": {"conditions": [{"type": "AbleToScale", "status": "True"}]}
        });
        let v1 = v2_to_v1(&v2);
        assert_eq!(
            v1,
            json!({
                "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "web"},
                "spec": {"maxReplicas": 3},
                "status": {}
            })
        );
    }
}
