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
    /// This cycle's filters and scores (indices into the profile): those that skip are left out.
    filters: Vec<usize>,
    scores: Vec<usize>,
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
            filters: Vec::new(),
            scores: Vec::new(),
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
        let filters = &self.profile.filters;
        self.filters.clear();
        self.filters
            .extend((0..filters.len()).filter(|&i| !filters[i].skip(&state, pod)));
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
                .filters
                .iter()
                .map(|&f| filters[f].filter(&state, pod, node))
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
        let scores = &self.profile.scores;
        self.scores.clear();
        self.scores
            .extend((0..scores.len()).filter(|&i| !scores[i].0.skip(&state, pod)));
        for &i in &self.scores {
            let (plugin, weight) = &scores[i];
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

    /// Runs a wrapped filter, counting per-node calls; `skips` false never skips.
    #[derive(Debug)]
    struct CountedFilter(Box<dyn Filter>, bool, Arc<std::sync::atomic::AtomicUsize>);

    impl Filter for CountedFilter {
        fn name(&self) -> &'static str {
            self.0.name()
        }
        fn pre_filter(&self, pod: &PodInfo, cache: &Cache, state: &mut CycleState) {
            self.0.pre_filter(pod, cache, state);
        }
        fn skip(&self, state: &CycleState, pod: &PodInfo) -> bool {
            self.1 && self.0.skip(state, pod)
        }
        fn filter(
            &self,
            state: &CycleState,
            pod: &PodInfo,
            node: &crate::cache::NodeInfo,
        ) -> crate::framework::Status {
            self.2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.filter(state, pod, node)
        }
    }

    #[derive(Debug)]
    struct CountedScore(Box<dyn Score>, bool, Arc<std::sync::atomic::AtomicUsize>);

    impl Score for CountedScore {
        fn name(&self) -> &'static str {
            self.0.name()
        }
        fn skip(&self, state: &CycleState, pod: &PodInfo) -> bool {
            self.1 && self.0.skip(state, pod)
        }
        fn score(&self, state: &CycleState, pod: &PodInfo, node: &crate::cache::NodeInfo) -> i64 {
            self.2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.score(state, pod, node)
        }
        fn normalize(&self, scores: &mut [i64]) {
            self.0.normalize(scores);
        }
    }

    /// The default profile with every plugin counted; `skips` false disables skipping.
    fn counted_profile(
        skips: bool,
    ) -> (
        Profile,
        Vec<(&'static str, Arc<std::sync::atomic::AtomicUsize>)>,
    ) {
        let mut counters = Vec::new();
        let mut counter = |name: &'static str| {
            let c = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            counters.push((name, c.clone()));
            c
        };
        let filters = plugins::DEFAULT_FILTERS
            .iter()
            .map(|n| {
                let c = counter(n);
                Box::new(CountedFilter(plugins::filter(n).expect("filter"), skips, c))
                    as Box<dyn Filter>
            })
            .collect();
        let scores = plugins::DEFAULT_SCORES
            .iter()
            .map(|(n, w)| {
                let c = counter(n);
                (
                    Box::new(CountedScore(plugins::score(n).expect("score"), skips, c))
                        as Box<dyn Score>,
                    *w,
                )
            })
            .collect();
        (Profile { filters, scores }, counters)
    }

    #[test]
    fn skipping_plugins_changes_no_decision_and_saves_their_calls() {
        // Nodes of mixed sizes, zones and a PreferNoSchedule taint; pods with and without owners,
        // node preferences, host ports and selectors.
        let nodes: Vec<_> = (0..40)
            .map(|i| {
            let mut n = json!({"metadata": {"name": format!("n{i}"),
                    "labels": {"zone": format!("z{}", i % 3), "kubernetes.io/hostname": format!("n{i}")}},
                "status": {"allocatable": {"cpu": format!("{}", 4 + i % 5), "memory": "16Gi", "pods": "110"},
                           "conditions": [{"type": "Ready", "status": "True"}]}});
            if i % 7 == 0 {
                n["spec"] = json!({"taints": [{"key": "k", "value": "v", "effect": "PreferNoSchedule"}]});
            }
            n
        })
        .collect();
        let pods: Vec<Arc<PodInfo>> = (0..120)
            .map(|i| {
                let mut spec = json!({"containers": [{"name": "c", "image": "x",
                    "resources": {"requests": {"cpu": format!("{}m", 100 + (i % 4) * 150)}}}]});
                if i % 5 == 0 {
                    spec["affinity"] = json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution":
                        [{"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}}]}});
                }
                if i % 11 == 0 {
                    spec["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]);
                }
                if i % 13 == 0 {
                    spec["nodeSelector"] = json!({"zone": "z2"});
                }
                let mut meta = json!({"name": format!("p{i}"), "namespace": "ns", "uid": format!("u{i}")});
                if i % 2 == 0 {
                    meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": "rs", "uid": "rs-1", "controller": true}]);
                }
                Arc::new(pod(json!({"metadata": meta, "spec": spec})))
            })
            .collect();
        let run = |skips: bool| {
            let (profile, counters) = counted_profile(skips);
            let mut cache = Cache::default();
            for n in &nodes {
                cache.upsert_node(node(n.clone()));
            }
            let mut alg = Algorithm::new(profile, 0, 99);
            let decisions: Vec<String> = pods
                .iter()
                .map(|p| {
                    let slot = alg.schedule(&cache, p).expect("fits");
                    let name = cache.slot(slot).name().to_owned();
                    cache.assume(p.clone(), &name);
                    name
                })
                .collect();
            let calls: HashMap<&str, usize> = counters
                .iter()
                .map(|(n, c)| (*n, c.load(std::sync::atomic::Ordering::Relaxed)))
                .fold(HashMap::new(), |mut m, (n, c)| {
                    *m.entry(n).or_default() += c;
                    m
                });
            (decisions, calls)
        };
        let (with_skips, skipped_calls) = run(true);
        let (without, all_calls) = run(false);
        assert_eq!(with_skips, without);
        // Only the pods with host ports reach NodePorts' per-node filter; nobody needs NodeName's
        // or InterPodAffinity's; the other filters run as often as before.
        assert!(skipped_calls["NodePorts"] > 0);
        assert!(skipped_calls["NodePorts"] * 5 < all_calls["NodePorts"]);
        assert_eq!(skipped_calls["NodeName"], 0);
        assert_eq!(skipped_calls["InterPodAffinity"], 0);
        assert_eq!(
            skipped_calls["NodeResourcesFit"],
            all_calls["NodeResourcesFit"]
        );
        assert!(skipped_calls["SelectorSpread"] < all_calls["SelectorSpread"]);
        assert!(skipped_calls["SelectorSpread"] > 0);
    }

    #[test]
    fn unknown_plugin_names_are_errors() {
        assert!(Profile::from_names(&["NodeName", "Nope"], &[]).is_err());
        assert!(Profile::from_names(&["NodeName"], &[("SelectorSpread", 1)]).is_ok());
    }
}
