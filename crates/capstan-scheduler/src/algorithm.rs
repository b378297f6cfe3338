//! One scheduling decision: pre-filter, filter a sample of nodes starting at a rotating offset
//! (kube's `percentageOfNodesToScore`), score the feasible ones with weighted plugins, pick the best
//! (ties at random). Pure computation over the cache: no IO, no cloning of API objects.

use std::collections::HashMap;

use crate::Error;
use crate::cache::Cache;
use crate::framework::{CycleState, Filter, Reason, Score, fit_error_message};
use crate::plugins;
use crate::types::PodInfo;

/// The plugins a scheduler runs, in order, with score weights.
#[derive(Debug)]
pub struct Profile {
    filters: Vec<Box<dyn Filter>>,
    scores: Vec<(Box<dyn Score>, i64)>,
}

impl Profile {
    /// Builds a profile from registered plugin names.
    pub fn from_names(filters: &[&str], scores: &[(&str, i64)]) -> Result<Self, Error> {
        let filters = filters
            .iter()
            .map(|n| plugins::filter(n).ok_or_else(|| Error::UnknownPlugin((*n).to_owned())))
            .collect::<Result<_, _>>()?;
        let scores = scores
            .iter()
            .map(|(n, w)| {
                plugins::score(n)
                    .map(|p| (p, *w))
                    .ok_or_else(|| Error::UnknownPlugin((*n).to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Profile { filters, scores })
    }

    /// kube-scheduler's default plugins (see [`plugins::DEFAULT_FILTERS`]).
    pub fn default_profile() -> Self {
        let filters = plugins::DEFAULT_FILTERS
            .iter()
            .filter_map(|n| plugins::filter(n))
            .collect();
        let scores = plugins::DEFAULT_SCORES
            .iter()
            .filter_map(|(n, w)| plugins::score(n).map(|p| (p, *w)))
            .collect();
        Profile { filters, scores }
    }
}

/// Why no node fits: how many nodes gave each reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitError {
    pub num_all_nodes: usize,
    pub reasons: HashMap<Reason, usize>,
}

impl FitError {
    /// kube-scheduler's `FailedScheduling` message.
    pub fn message(&self) -> String {
        fit_error_message(self.num_all_nodes, &self.reasons)
    }
}

/// How many feasible nodes to look for before scoring (kube: `numFeasibleNodesToFind`):
/// all below 100 nodes, else `percentage` (0 = adaptive `50 - nodes/125`, at least 5) of them,
/// at least 100.
pub fn num_feasible_nodes_to_find(percentage: u32, num_all_nodes: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if num_all_nodes < MIN_FEASIBLE || percentage >= 100 {
        return num_all_nodes;
    }
    let percent = if percentage == 0 {
        50usize.saturating_sub(num_all_nodes / 125).max(5)
    } else {
        percentage as usize
    };
    (num_all_nodes * percent / 100).max(MIN_FEASIBLE)
}

/// The decision maker, with buffers reused across cycles.
#[derive(Debug)]
pub struct Algorithm {
    profile: Profile,
    percentage: u32,
    next_start: usize,
    rng: u64,
    feasible: Vec<usize>,
    raw: Vec<i64>,
    totals: Vec<i64>,
}

impl Algorithm {
    pub fn new(profile: Profile, percentage_of_nodes_to_score: u32, seed: u64) -> Self {
        Algorithm {
            profile,
            percentage: percentage_of_nodes_to_score,
            next_start: 0,
            rng: seed | 1,
            feasible: Vec::new(),
            raw: Vec::new(),
            totals: Vec::new(),
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Picks a node for `pod`; returns the node's cache slot.
    pub fn schedule(&mut self, cache: &Cache, pod: &PodInfo) -> Result<usize, FitError> {
        let n = cache.live_count();
        if n == 0 {
            return Err(FitError {
                num_all_nodes: 0,
                reasons: HashMap::new(),
            });
        }
        let mut state = CycleState::default();
        for f in &self.profile.filters {
            f.pre_filter(pod, cache, &mut state);
        }
        let want = num_feasible_nodes_to_find(self.percentage, n);
        self.feasible.clear();
        let mut reasons: HashMap<Reason, usize> = HashMap::new();
        let start = self.next_start % n;
        let mut processed = 0;
        for i in 0..n {
            processed = i + 1;
            let slot = cache.live_slot((start + i) % n);
            let node = cache.slot(slot);
            let failed = self
                .profile
                .filters
                .iter()
                .map(|f| f.filter(&state, pod, node))
                .find(|s| !s.is_success());
            match failed {
                None => {
                    self.feasible.push(slot);
                    if self.feasible.len() >= want {
                        break;
                    }
                }
                Some(status) => {
                    for r in status.reasons() {
                        *reasons.entry(r.clone()).or_default() += 1;
                    }
                }
            }
        }
        self.next_start = (start + processed) % n;
        match self.feasible.len() {
            0 => {
                return Err(FitError {
                    num_all_nodes: n,
                    reasons,
                });
            }
            1 => return Ok(self.feasible[0]),
            _ => {}
        }
        let count = self.feasible.len();
        self.totals.clear();
        self.totals.resize(count, 0);
        for (plugin, weight) in &self.profile.scores {
            self.raw.clear();
            self.raw.extend(
                self.feasible
                    .iter()
                    .map(|&s| plugin.score(&state, pod, cache.slot(s))),
            );
            plugin.normalize(&mut self.raw);
            for (t, s) in self.totals.iter_mut().zip(&self.raw) {
                *t += s * weight;
            }
        }
        // Highest total; ties broken uniformly at random (reservoir sampling, as kube does).
        let mut best = 0;
        let mut ties = 0u64;
        for i in 0..count {
            if i == 0 || self.totals[i] > self.totals[best] {
                best = i;
                ties = 1;
            } else if self.totals[i] == self.totals[best] {
                ties += 1;
                if self.random().is_multiple_of(ties) {
                    best = i;
                }
            }
        }
        Ok(self.feasible[best])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::tests::{node, pod};
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn feasible_node_sample_sizes() {
        assert_eq!(num_feasible_nodes_to_find(0, 3), 3);
        assert_eq!(num_feasible_nodes_to_find(0, 99), 99);
        assert_eq!(num_feasible_nodes_to_find(0, 1000), 420); // 50 - 8 = 42%
        assert_eq!(num_feasible_nodes_to_find(0, 5000), 500); // 50 - 40 = 10%
        assert_eq!(num_feasible_nodes_to_find(0, 10_000), 500); // min 5%
        assert_eq!(num_feasible_nodes_to_find(0, 150), 100); // at least 100
        assert_eq!(num_feasible_nodes_to_find(100, 5000), 5000);
        assert_eq!(num_feasible_nodes_to_find(30, 1000), 300);
    }

    fn cluster(nodes: usize, cpu: &str) -> Cache {
        let mut cache = Cache::default();
        for i in 0..nodes {
            cache.upsert_node(node(json!({"metadata": {"name": format!("n{i}")},
                "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                           "conditions": [{"type": "Ready", "status": "True"}]}})));
        }
        cache
    }

    fn requesting(name: &str, cpu: &str) -> PodInfo {
        pod(json!({"metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": cpu}}}]}}))
    }

    #[test]
    fn reports_kubes_message_when_nothing_fits() {
        let cache = cluster(3, "2");
        let mut alg = Algorithm::new(Profile::default_profile(), 0, 42);
        let err = alg
            .schedule(&cache, &requesting("big", "3"))
            .expect_err("no fit");
        assert_eq!(
            err.message(),
            "0/3 nodes are available: 3 Insufficient cpu."
        );
        let err = alg
            .schedule(&Cache::default(), &requesting("x", "1"))
            .expect_err("no nodes");
        assert_eq!(err.message(), "no nodes available to schedule pods");
    }

    #[test]
    fn consecutive_decisions_spread_over_assumed_pods() {
        let mut cache = cluster(4, "4");
        let mut alg = Algorithm::new(Profile::default_profile(), 0, 7);
        for i in 0..4 {
            let p = Arc::new(requesting(&format!("p{i}"), "1"));
            let slot = alg.schedule(&cache, &p).expect("fits");
            let name = cache.slot(slot).name().to_owned();
            cache.assume(p, &name);
        }
        // LeastAllocated puts one pod on each node.
        assert!(cache.live_nodes().all(|n| n.pod_count == 1));
        // Eight more 1-cpu pods fill the remaining 12 cpu; the ninth does not fit.
        for i in 4..16 {
            let p = Arc::new(requesting(&format!("p{i}"), "1"));
            let slot = alg.schedule(&cache, &p).expect("fits");
            let name = cache.slot(slot).name().to_owned();
            cache.assume(p, &name);
        }
        let err = alg
            .schedule(&cache, &requesting("last", "1"))
            .expect_err("full");
        assert_eq!(
            err.message(),
            "0/4 nodes are available: 4 Insufficient cpu."
        );
    }

    #[test]
    fn large_clusters_filter_a_rotating_sample() {
        let cache = cluster(1000, "4");
        let mut alg = Algorithm::new(Profile::default_profile(), 0, 1);
        alg.schedule(&cache, &requesting("a", "1")).expect("fits");
        assert_eq!(alg.next_start, 420);
        alg.schedule(&cache, &requesting("b", "1")).expect("fits");
        assert_eq!(alg.next_start, 840);
        alg.schedule(&cache, &requesting("c", "1")).expect("fits");
        assert_eq!(alg.next_start, 260);
    }

    #[test]
    fn unknown_plugin_names_are_errors() {
        assert!(Profile::from_names(&["NodeName", "Nope"], &[]).is_err());
        assert!(Profile::from_names(&["NodeName"], &[("SelectorSpread", 1)]).is_ok());
    }
}
