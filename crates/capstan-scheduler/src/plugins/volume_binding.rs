//! VolumeBinding, for the volumes Capstan has (claims bound to node-local volumes): a pod whose
//! claim is bound to a volume pinned to nodes (`nodeAffinity`, as `local-path` volumes are) fits
//! only those nodes, and a pod naming a claim that does not exist fits none. Unbound claims fit
//! anywhere: the `local-path` provisioner binds them on the node the pod lands on
//! (WaitForFirstConsumer).

use k8s_openapi::api::core::v1::NodeSelector;

use crate::cache::{Cache, NodeInfo};
use crate::framework::{CycleState, Filter, Status};
use crate::selectors::node_selector_matches;
use crate::types::PodInfo;

pub const NAME: &str = "VolumeBinding";
/// kube's `ErrReasonNodeConflict`.
pub const CONFLICT: &str = "node(s) had volume node affinity conflict";

/// What a cycle needs from the pod's claims.
#[derive(Debug, Default)]
pub struct VolumeBindingState {
    /// A claim the pod names that does not exist.
    missing: Option<String>,
    /// Node affinities of the volumes the pod's claims are bound to: a node must match all.
    required: Vec<NodeSelector>,
}

#[derive(Debug)]
pub struct VolumeBinding;

impl Filter for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, pod: &PodInfo, cache: &Cache, state: &mut CycleState) {
        if pod.claims.is_empty() {
            return;
        }
        let mut s = VolumeBindingState::default();
        for claim in &pod.claims {
            match cache.claim(&format!("{}/{claim}", pod.namespace)) {
                None => {
                    s.missing.get_or_insert_with(|| claim.clone());
                }
                Some(Some(volume)) => {
                    if let Some(affinity) = cache.volume_affinity(volume) {
                        s.required.push(affinity.clone());
                    }
                }
                Some(None) => {}
            }
        }
        state.volume_binding = Some(s);
    }

    fn skip(&self, state: &CycleState, _pod: &PodInfo) -> bool {
        state
            .volume_binding
            .as_ref()
            .is_none_or(|s| s.missing.is_none() && s.required.is_empty())
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = &state.volume_binding else {
            return Status::Success;
        };
        if let Some(claim) = &s.missing {
            return Status::unresolvable(format!("persistentvolumeclaim \"{claim}\" not found"));
        }
        let Some(spec) = &node.node else {
            return Status::unresolvable("node not found");
        };
        if s.required
            .iter()
            .all(|sel| node_selector_matches(sel, &spec.name, &spec.labels))
        {
            Status::Success
        } else {
            Status::unresolvable(CONFLICT)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_info, pod_info};
    use serde_json::json;

    fn pinned_to(host: &str) -> NodeSelector {
        serde_json::from_value(json!({"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [host]}
        ]}]}))
        .expect("selector")
    }

    fn with_claim(claim: &str) -> PodInfo {
        pod_info(
            "p",
            json!({"spec": {"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]}}),
        )
    }

    fn run(cache: &Cache, pod: &PodInfo, node: &str) -> Status {
        let mut state = CycleState::default();
        VolumeBinding.pre_filter(pod, cache, &mut state);
        if VolumeBinding.skip(&state, pod) {
            return Status::Success;
        }
        VolumeBinding.filter(&state, pod, &node_info(node, json!({})))
    }

    #[test]
    fn bound_local_volumes_pin_the_pod_to_their_node() {
        let mut cache = Cache::default();
        cache.upsert_claim("ns/data".into(), Some("pv-1".into()));
        cache.upsert_volume("pv-1".into(), Some(pinned_to("n1")));
        let pod = with_claim("data");
        assert!(run(&cache, &pod, "n1").is_success());
        assert_eq!(run(&cache, &pod, "n2"), Status::unresolvable(CONFLICT));
    }

    #[test]
    fn unbound_claims_fit_anywhere_and_missing_ones_nowhere() {
        let mut cache = Cache::default();
        cache.upsert_claim("ns/fresh".into(), None);
        assert!(run(&cache, &with_claim("fresh"), "n2").is_success());
        assert_eq!(
            run(&cache, &with_claim("gone"), "n1"),
            Status::unresolvable("persistentvolumeclaim \"gone\" not found")
        );
        // A claim in another namespace is not this pod's.
        cache.upsert_claim("other/gone".into(), None);
        assert!(!run(&cache, &with_claim("gone"), "n1").is_success());
        // A volume with no node affinity (or not seen yet) pins nothing; pods without claims skip.
        cache.upsert_claim("ns/net".into(), Some("pv-net".into()));
        cache.upsert_volume("pv-net".into(), None);
        assert!(run(&cache, &with_claim("net"), "n3").is_success());
        assert!(run(&cache, &pod_info("plain", json!({})), "n3").is_success());
    }
}
