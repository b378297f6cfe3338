//! InterPodAffinity: required pod affinity and anti-affinity over any topology key (filter), and
//! preferred anti-affinity (score). `pre_filter` walks the assigned pods once per cycle and records
//! which topology pairs (label key, value) attract or repel the pod; the filter then checks a
//! node's labels against those sets.
//!
//! A term's namespaces are its `namespaces` list, all namespaces for an empty `namespaceSelector`,
//! or else the pod's own namespace (a non-empty `namespaceSelector` is not evaluated: no namespace
//! labels in the cache).

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::PodAffinityTerm;

use crate::cache::{Cache, NodeInfo};
use crate::framework::{CycleState, Filter, Score, Status};
use crate::selectors::label_selector_matches;
use crate::types::PodInfo;

pub const NAME: &str = "InterPodAffinity";
pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

type Pair = (String, String);

/// Per-cycle topology pairs.
#[derive(Debug, Default)]
pub struct InterPodAffinityState {
    /// Pairs where an assigned pod's required anti-affinity rejects the incoming pod.
    existing_anti: HashSet<Pair>,
    /// Pairs holding a pod the incoming pod's required anti-affinity rejects.
    incoming_anti: HashSet<Pair>,
    /// Pairs holding pods that match all the incoming pod's required affinity terms.
    affinity_counts: HashMap<Pair, i64>,
    /// Weighted preferred anti-affinity matches per pair.
    preferred_anti: HashMap<Pair, i64>,
}

/// Does `term` (declared by a pod in `owner_namespace`) select `candidate`?
fn term_selects(term: &PodAffinityTerm, owner_namespace: &str, candidate: &PodInfo) -> bool {
    let namespaces = term.namespaces.as_deref().unwrap_or_default();
    let namespace_ok = if !namespaces.is_empty() {
        namespaces.contains(&candidate.namespace)
    } else if let Some(sel) = &term.namespace_selector {
        let empty = sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && sel.match_expressions.as_ref().is_none_or(|m| m.is_empty());
        empty || candidate.namespace == owner_namespace
    } else {
        candidate.namespace == owner_namespace
    };
    namespace_ok && label_selector_matches(term.label_selector.as_ref(), &candidate.labels)
}

fn pair(node: &NodeInfo, key: &str) -> Option<Pair> {
    let n = node.node.as_ref()?;
    n.labels.get(key).map(|v| (key.to_owned(), v.clone()))
}

#[derive(Debug)]
pub struct InterPodAffinity;

impl Filter for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn pre_filter(&self, pod: &PodInfo, cache: &Cache, state: &mut CycleState) {
        let mut st = InterPodAffinityState::default();
        for (existing, node) in cache.pods_with_anti_affinity() {
            for term in &existing.required_pod_anti_affinity {
                if term_selects(term, &existing.namespace, pod)
                    && let Some(p) = pair(node, &term.topology_key)
                {
                    st.existing_anti.insert(p);
                }
            }
        }
        let own_terms = !pod.required_pod_affinity.is_empty()
            || !pod.required_pod_anti_affinity.is_empty()
            || !pod.preferred_pod_anti_affinity.is_empty();
        if own_terms {
            for node in cache.live_nodes() {
                for other in node.pods.values() {
                    for term in &pod.required_pod_anti_affinity {
                        if term_selects(term, &pod.namespace, other)
                            && let Some(p) = pair(node, &term.topology_key)
                        {
                            st.incoming_anti.insert(p);
                        }
                    }
                    if !pod.required_pod_affinity.is_empty()
                        && pod
                            .required_pod_affinity
                            .iter()
                            .all(|t| term_selects(t, &pod.namespace, other))
                    {
                        for term in &pod.required_pod_affinity {
                            if let Some(p) = pair(node, &term.topology_key) {
                                *st.affinity_counts.entry(p).or_default() += 1;
                            }
                        }
                    }
                    for weighted in &pod.preferred_pod_anti_affinity {
                        let term = &weighted.pod_affinity_term;
                        if term_selects(term, &pod.namespace, other)
                            && let Some(p) = pair(node, &term.topology_key)
                        {
                            *st.preferred_anti.entry(p).or_default() += i64::from(weighted.weight);
                        }
                    }
                }
            }
        }
        if own_terms || !st.existing_anti.is_empty() {
            state.inter_pod_affinity = Some(st);
        }
    }

    fn skip(&self, state: &CycleState, _: &PodInfo) -> bool {
        state.inter_pod_affinity.is_none()
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(st) = &state.inter_pod_affinity else {
            return Status::Success;
        };
        let Some(n) = &node.node else {
            return Status::unresolvable("node not found");
        };
        let labels = &n.labels;
        let has = |set: &HashSet<Pair>, key: &str| {
            labels
                .get(key)
                .is_some_and(|v| set.contains(&(key.to_owned(), v.clone())))
        };
        // Required affinity: every term's topology key on the node, with matching pods there —
        // unless no pod matches anywhere and the pod matches its own terms (first of a group).
        let mut pods_exist = true;
        for term in &pod.required_pod_affinity {
            let Some(v) = labels.get(&term.topology_key) else {
                return Status::unresolvable(REASON_AFFINITY);
            };
            if st
                .affinity_counts
                .get(&(term.topology_key.clone(), v.clone()))
                .copied()
                .unwrap_or(0)
                <= 0
            {
                pods_exist = false;
            }
        }
        if !pods_exist {
            let self_match = pod
                .required_pod_affinity
                .iter()
                .all(|t| term_selects(t, &pod.namespace, pod));
            if !(st.affinity_counts.is_empty() && self_match) {
                return Status::unresolvable(REASON_AFFINITY);
            }
        }
        if pod
            .required_pod_anti_affinity
            .iter()
            .any(|t| has(&st.incoming_anti, &t.topology_key))
        {
            return Status::unschedulable(REASON_ANTI_AFFINITY);
        }
        if !st.existing_anti.is_empty()
            && st
                .existing_anti
                .iter()
                .any(|(k, v)| labels.get(k) == Some(v))
        {
            return Status::unschedulable(REASON_EXISTING_ANTI_AFFINITY);
        }
        Status::Success
    }
}

impl Score for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Minus the weights of preferred anti-affinity terms matched in the node's topology domains.
    fn skip(&self, state: &CycleState, _: &PodInfo) -> bool {
        state.inter_pod_affinity.is_none()
    }

    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(st) = &state.inter_pod_affinity else {
            return 0;
        };
        let Some(n) = &node.node else { return 0 };
        let mut seen_keys: Vec<&str> = Vec::new();
        let mut score = 0;
        for weighted in &pod.preferred_pod_anti_affinity {
            let key = weighted.pod_affinity_term.topology_key.as_str();
            if seen_keys.contains(&key) {
                continue;
            }
            seen_keys.push(key);
            if let Some(v) = n.labels.get(key) {
                score -= st
                    .preferred_anti
                    .get(&(key.to_owned(), v.clone()))
                    .copied()
                    .unwrap_or(0);
            }
        }
        score
    }

    /// `(score - min) * 100 / (max - min)`; all zero when every node scored the same.
    fn normalize(&self, scores: &mut [i64]) {
        let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else {
            return;
        };
        for s in scores.iter_mut() {
            *s = if max == min {
                0
            } else {
                (*s - min) * crate::framework::MAX_NODE_SCORE / (max - min)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::pod_info;
    use crate::types::tests::node;
    use serde_json::json;
    use std::sync::Arc;

    fn anti(name: &str, app: &str) -> PodInfo {
        pod_info(
            name,
            json!({"metadata": {"labels": {"app": app}}, "spec": {"affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}]}}}}),
        )
    }

    fn cache_with(nodes: &[&str]) -> Cache {
        let mut cache = Cache::default();
        for n in nodes {
            cache.upsert_node(node(json!({"metadata": {"name": n, "labels": {"kubernetes.io/hostname": n, "zone": "z1"}}})));
        }
        cache
    }

    fn run(cache: &Cache, pod: &PodInfo) -> Vec<Status> {
        let mut state = CycleState::default();
        InterPodAffinity.pre_filter(pod, cache, &mut state);
        cache
            .live_nodes()
            .map(|n| InterPodAffinity.filter(&state, pod, n))
            .collect()
    }

    #[test]
    fn required_anti_affinity_rejects_nodes_with_matching_pods() {
        let mut cache = cache_with(&["a", "b"]);
        cache.assume(Arc::new(anti("web-1", "web")), "a");
        let statuses = run(&cache, &anti("web-2", "web"));
        assert_eq!(
            statuses,
            vec![Status::unschedulable(REASON_ANTI_AFFINITY), Status::Success]
        );
        // A pod without terms is rejected by the existing pod's anti-affinity (symmetry).
        let plain = pod_info("plain", json!({"metadata": {"labels": {"app": "web"}}}));
        assert_eq!(
            run(&cache, &plain),
            vec![
                Status::unschedulable(REASON_EXISTING_ANTI_AFFINITY),
                Status::Success
            ]
        );
        let other = pod_info("other", json!({"metadata": {"labels": {"app": "db"}}}));
        assert_eq!(run(&cache, &other), vec![Status::Success, Status::Success]);
    }

    #[test]
    fn required_affinity_follows_matching_pods_or_accepts_the_first() {
        let mut cache = cache_with(&["a", "b"]);
        let with_affinity = |name: &str| {
            pod_info(
                name,
                json!({"metadata": {"labels": {"app": "cache"}}, "spec": {"affinity": {"podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "kubernetes.io/hostname"}]}}}}),
            )
        };
        assert_eq!(
            run(&cache, &with_affinity("c1")),
            vec![Status::Success, Status::Success]
        );
        cache.assume(Arc::new(with_affinity("c1")), "b");
        assert_eq!(
            run(&cache, &with_affinity("c2")),
            vec![Status::unresolvable(REASON_AFFINITY), Status::Success]
        );
    }

    #[test]
    fn preferred_anti_affinity_scores_lower_where_matches_are() {
        let mut cache = cache_with(&["a", "b"]);
        cache.assume(
            Arc::new(pod_info(
                "x",
                json!({"metadata": {"labels": {"app": "web"}}}),
            )),
            "a",
        );
        let p = pod_info(
            "p",
            json!({"spec": {"affinity": {"podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": {
                "labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}}]}}}}),
        );
        let mut state = CycleState::default();
        InterPodAffinity.pre_filter(&p, &cache, &mut state);
        let mut scores: Vec<i64> = cache
            .live_nodes()
            .map(|n| InterPodAffinity.score(&state, &p, n))
            .collect();
        assert_eq!(scores, vec![-50, 0]);
        Score::normalize(&InterPodAffinity, &mut scores);
        assert_eq!(scores, vec![0, 100]);
    }
}
