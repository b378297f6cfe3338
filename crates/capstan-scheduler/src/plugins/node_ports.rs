//! NodePorts: the pod's host ports must be free on the node (same protocol and port conflict when
//! either address is `0.0.0.0` or both are equal).

use crate::cache::NodeInfo;
use crate::framework::{CycleState, Filter, Status};
use crate::types::PodInfo;

pub const NAME: &str = "NodePorts";
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

#[derive(Debug)]
pub struct NodePorts;

impl Filter for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn skip(&self, _: &CycleState, pod: &PodInfo) -> bool {
        pod.host_ports.is_empty()
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let conflict = pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
        if conflict {
            Status::unschedulable(REASON)
        } else {
            Status::Success
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{add, node_info, pod_info};
    use serde_json::json;

    fn with_port(name: &str, port: i32, protocol: &str, ip: &str) -> PodInfo {
        pod_info(
            name,
            json!({"spec": {"containers": [{"name": "c", "image": "x",
            "ports": [{"containerPort": 80, "hostPort": port, "protocol": protocol, "hostIP": ip}]}]}}),
        )
    }

    #[test]
    fn host_port_conflicts() {
        let s = CycleState::default();
        let mut n = node_info("n", json!({}));
        add(&mut n, with_port("used", 8080, "TCP", ""));
        add(&mut n, with_port("used2", 9090, "TCP", "10.0.0.1"));
        let cases = [
            (with_port("a", 8080, "TCP", ""), false),
            (with_port("b", 8080, "UDP", ""), true),
            (with_port("c", 8081, "TCP", ""), true),
            (with_port("d", 8080, "TCP", "10.0.0.2"), false),
            (with_port("e", 9090, "TCP", "10.0.0.2"), true),
            (with_port("f", 9090, "TCP", "10.0.0.1"), false),
            (pod_info("g", json!({})), true),
        ];
        for (pod, fits) in cases {
            assert_eq!(
                NodePorts.filter(&s, &pod, &n).is_success(),
                fits,
                "{}",
                pod.name
            );
        }
    }
}
