//! CheckNodeCondition: nodes whose Ready condition is False or Unknown take no pods, unless the pod
//! tolerates the taint the node lifecycle controller would put there (`node.kubernetes.io/not-ready`
//! or `node.kubernetes.io/unreachable`). Upstream relies on those taints alone (TaintToleration);
//! this check also covers the window before the taint is applied.

use k8s_openapi::api::core::v1::Taint;

use crate::cache::NodeInfo;
use crate::framework::{CycleState, Filter, Status};
use crate::selectors::tolerated;
use crate::types::{PodInfo, Readiness};

pub const NAME: &str = "CheckNodeCondition";
pub const REASON_NOT_READY: &str = "node(s) were not ready";
pub const REASON_UNKNOWN: &str = "node(s) had unknown conditions";

#[derive(Debug)]
pub struct CheckNodeCondition;

impl Filter for CheckNodeCondition {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(n) = &node.node else {
            return Status::unresolvable("node not found");
        };
        let (key, reason) = match n.readiness {
            Readiness::Ready => return Status::Success,
            Readiness::NotReady => ("node.kubernetes.io/not-ready", REASON_NOT_READY),
            Readiness::Unknown => ("node.kubernetes.io/unreachable", REASON_UNKNOWN),
        };
        let taint = Taint {
            key: key.to_owned(),
            effect: "NoSchedule".to_owned(),
            ..Default::default()
        };
        if tolerated(&pod.tolerations, &taint) {
            Status::Success
        } else {
            Status::unresolvable(reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_info, pod_info};
    use serde_json::json;

    #[test]
    fn not_ready_and_unknown_nodes_are_skipped_unless_tolerated() {
        let s = CycleState::default();
        let not_ready = node_info(
            "a",
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
        );
        let unknown = node_info(
            "b",
            json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
        );
        let p = pod_info("p", json!({}));
        assert_eq!(
            CheckNodeCondition.filter(&s, &p, &not_ready),
            Status::unresolvable(REASON_NOT_READY)
        );
        assert_eq!(
            CheckNodeCondition.filter(&s, &p, &unknown),
            Status::unresolvable(REASON_UNKNOWN)
        );
        assert!(
            CheckNodeCondition
                .filter(&s, &p, &node_info("c", json!({})))
                .is_success()
        );
        let tolerant = pod_info(
            "t",
            json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]}}),
        );
        assert!(
            CheckNodeCondition
                .filter(&s, &tolerant, &not_ready)
                .is_success()
        );
        assert!(
            !CheckNodeCondition
                .filter(&s, &tolerant, &unknown)
                .is_success()
        );
    }
}
