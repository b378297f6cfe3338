//! PodDisruptionBudget checks for the eviction API (what `kubectl drain` calls).
//!
//! An eviction is allowed while every budget that selects the pod keeps enough healthy pods. Each
//! allowed eviction is recorded in the budget's `status.disruptedPods` with a compare-and-swap, so two
//! evictions racing for the last allowed disruption cannot both win.

use bytes::Bytes;
use capstan_store::StoreError;
use serde_json::{Value, json};

use crate::ApiState;
use crate::cache::CachedObject;
use crate::error::{ApiError, ApiResult};
use crate::objects::{metadata_mut, now_rfc3339};
use crate::rest::stored;
use crate::selectors::LabelSelector;

/// How long an eviction counts as pending against a budget.
const DISRUPTION_WINDOW_SECONDS: i64 = 120;

/// A `metav1.LabelSelector` object as a selector string (`matchLabels` and `matchExpressions`).
pub(crate) fn selector_string(selector: &Value) -> Option<String> {
    if !selector.is_object() {
        return None;
    }
    let mut terms = Vec::new();
    if let Some(labels) = selector["matchLabels"].as_object() {
        for (k, v) in labels {
            terms.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    for expr in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = expr["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = expr["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match expr["operator"].as_str() {
            Some("In") => terms.push(format!("{key} in ({})", values.join(","))),
            Some("NotIn") => terms.push(format!("{key} notin ({})", values.join(","))),
            Some("Exists") => terms.push(key.to_owned()),
            Some("DoesNotExist") => terms.push(format!("!{key}")),
            _ => return None,
        }
    }
    Some(terms.join(","))
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Resolves an int-or-percent against `total`, rounding up as Kubernetes does.
fn scaled(value: &Value, total: i64) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let percent: i64 = s.strip_suffix('%')?.parse().ok()?;
            Some((total * percent + 99) / 100)
        }
        _ => None,
    }
}

fn seconds_since(rfc3339: &str) -> i64 {
    let now = jiff::Timestamp::now().as_second();
    rfc3339
        .parse::<jiff::Timestamp>()
        .map(|t| now - t.as_second())
        .unwrap_or(i64::MAX)
}

/// Fails with 429 TooManyRequests when evicting `pod` now would break a budget.
pub(crate) async fn check_budgets(
    state: &std::sync::Arc<ApiState>,
    namespace: &str,
    pod: &Value,
) -> ApiResult<()> {
    let (Some(pdbs), Some(pods)) = (
        capstan_api::find("policy", "v1", "poddisruptionbudgets"),
        capstan_api::find("", "v1", "pods"),
    ) else {
        return Ok(());
    };
    let labels: std::collections::BTreeMap<String, String> = pod["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or_default();
    if !is_ready(pod) {
        // An unhealthy pod never counts towards a budget; evicting it cannot make things worse.
        return Ok(());
    }
    let (budgets, _, _) = state
        .cache
        .list(pdbs, Some(namespace), None, |_| true, None);
    for budget in budgets {
        let budget_name = budget.name.clone();
        let value = budget.value();
        let Some(selector) =
            selector_string(&value["spec"]["selector"]).and_then(|s| LabelSelector::parse(&s).ok())
        else {
            continue;
        };
        if selector.is_empty() || !selector.matches(&labels) {
            continue;
        }
        for _ in 0..8 {
            let (mut current, revision) =
                stored(state, pdbs, Some(namespace), &budget_name).await?;
            let disrupted: Vec<String> = current["status"]["disruptedPods"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(_, t)| {
                            seconds_since(t.as_str().unwrap_or_default())
                                < DISRUPTION_WINDOW_SECONDS
                        })
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            let (matching, _, _) = state.cache.list(
                pods,
                Some(namespace),
                None,
                |o: &CachedObject| selector.matches(&o.labels),
                None,
            );
            let expected = matching.len() as i64;
            let healthy = matching
                .iter()
                .map(|o| o.value())
                .filter(|p| {
                    is_ready(p)
                        && p["metadata"]
                            .get("deletionTimestamp")
                            .is_none_or(Value::is_null)
                })
                .filter(|p| {
                    !disrupted
                        .iter()
                        .any(|d| Some(d.as_str()) == p["metadata"]["name"].as_str())
                })
                .count() as i64;
            let spec = &current["spec"];
            let desired = if !spec["minAvailable"].is_null() {
                scaled(&spec["minAvailable"], expected).unwrap_or(0)
            } else if !spec["maxUnavailable"].is_null() {
                expected - scaled(&spec["maxUnavailable"], expected).unwrap_or(0)
            } else {
                0
            };
            let allowed = healthy - desired;
            if allowed <= 0 {
                return Err(ApiError {
                    details: Some(json!({"causes": [{
                        "reason": "DisruptionBudget",
                        "message": format!("The disruption budget {budget_name} needs {desired} healthy pods and has {healthy} currently"),
                    }]})),
                    ..ApiError::new(
                        429,
                        "TooManyRequests",
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                    )
                });
            }
            let mut map = serde_json::Map::new();
            for d in &disrupted {
                if let Some(t) = current["status"]["disruptedPods"].get(d) {
                    map.insert(d.clone(), t.clone());
                }
            }
            map.insert(pod_name.to_owned(), json!(now_rfc3339()));
            current["status"]["disruptedPods"] = Value::Object(map);
            current["status"]["disruptionsAllowed"] = json!(allowed - 1);
            current["status"]["currentHealthy"] = json!(healthy);
            current["status"]["desiredHealthy"] = json!(desired);
            current["status"]["expectedPods"] = json!(expected);
            metadata_mut(&mut current).remove("resourceVersion");
            let bytes = Bytes::from(
                serde_json::to_vec(&current).map_err(|e| ApiError::internal(e.to_string()))?,
            );
            match state
                .store
                .update(&pdbs.key(Some(namespace), &budget_name), bytes, revision)
                .await
            {
                Ok(_) => break,
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, pdbs, &budget_name)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_render_as_strings() {
        let s = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]});
        assert_eq!(
            selector_string(&s).as_deref(),
            Some("app=web,tier in (a,b)")
        );
    }

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(&json!("50%"), 3), Some(2));
        assert_eq!(scaled(&json!(1), 3), Some(1));
    }
}
