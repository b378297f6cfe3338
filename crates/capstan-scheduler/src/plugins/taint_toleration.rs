//! TaintToleration: a node's NoSchedule/NoExecute taints must all be tolerated (filter); nodes with
//! fewer untolerated PreferNoSchedule taints score higher.

use crate::cache::NodeInfo;
use crate::framework::{CycleState, Filter, Score, Status, default_normalize};
use crate::selectors::{tolerated, tolerates};
use crate::types::PodInfo;

pub const NAME: &str = "TaintToleration";

#[derive(Debug)]
pub struct TaintToleration;

impl Filter for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(n) = &node.node else {
            return Status::unresolvable("node not found");
        };
        let untolerated = n.taints.iter().find(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(&pod.tolerations, t)
        });
        match untolerated {
            None => Status::Success,
            Some(t) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or_default()
            )),
        }
    }
}

impl Score for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(n) = &node.node else { return 0 };
        let count = n
            .taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|t| {
                !pod.tolerations.iter().any(|tol| {
                    matches!(
                        tol.effect.as_deref(),
                        None | Some("") | Some("PreferNoSchedule")
                    ) && tolerates(tol, t)
                })
            })
            .count();
        i64::try_from(count).unwrap_or(i64::MAX)
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_info, pod_info};
    use serde_json::json;

    #[test]
    fn untolerated_hard_taints_reject_with_kubes_message() {
        let s = CycleState::default();
        let tainted = node_info(
            "n",
            json!({"spec": {"taints": [
            {"key": "soft", "effect": "PreferNoSchedule"},
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]}}),
        );
        let p = pod_info("p", json!({}));
        assert_eq!(
            TaintToleration.filter(&s, &p, &tainted),
            Status::unresolvable(
                "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"
            )
        );
        let valued = node_info(
            "v",
            json!({"spec": {"taints": [{"key": "team", "value": "data", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(
            TaintToleration.filter(&s, &p, &valued),
            Status::unresolvable("node(s) had untolerated taint {team: data}")
        );
        let tolerant = pod_info(
            "t",
            json!({"spec": {"tolerations": [{"key": "team", "value": "data"}]}}),
        );
        assert!(TaintToleration.filter(&s, &tolerant, &valued).is_success());
    }

    #[test]
    fn prefer_no_schedule_taints_lower_the_score() {
        let s = CycleState::default();
        let p = pod_info("p", json!({}));
        let soft = node_info(
            "a",
            json!({"spec": {"taints": [{"key": "soft", "effect": "PreferNoSchedule"}]}}),
        );
        let clean = node_info("b", json!({}));
        let mut scores = vec![
            TaintToleration.score(&s, &p, &soft),
            TaintToleration.score(&s, &p, &clean),
        ];
        Score::normalize(&TaintToleration, &mut scores);
        assert_eq!(scores, vec![0, 100]);
    }
}
