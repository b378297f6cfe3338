//! What the rules are made from: one [`ServicePort`] per port of every proxied Service, with the
//! endpoints its EndpointSlices list for that port. Pure functions over API objects, so the whole
//! translation is testable without a cluster.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label tying an EndpointSlice to its Service.
pub(crate) const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// One port of one Service, as the proxy forwards it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServicePort {
    pub(crate) namespace: String,
    pub(crate) service: String,
    /// The port's name (`""` for an unnamed single port).
    pub(crate) port_name: String,
    /// `tcp`, `udp` or `sctp`, as iptables spells them.
    pub(crate) protocol: &'static str,
    pub(crate) cluster_ip: Option<Ipv4Addr>,
    pub(crate) port: u16,
    pub(crate) node_port: Option<u16>,
    /// `spec.externalIPs` and load-balancer ingress IPs: reached like a node port.
    pub(crate) external_ips: Vec<Ipv4Addr>,
    /// `sessionAffinity: ClientIP`: the timeout in seconds.
    pub(crate) affinity_seconds: Option<i32>,
    /// `externalTrafficPolicy: Local`.
    pub(crate) external_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub(crate) internal_local: bool,
    pub(crate) endpoints: Vec<Endpoint>,
}

/// One backend of a service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Endpoint {
    pub(crate) ip: Ipv4Addr,
    pub(crate) port: u16,
    pub(crate) node: Option<String>,
    pub(crate) ready: bool,
    pub(crate) serving: bool,
    pub(crate) terminating: bool,
}

impl ServicePort {
    /// `ns/name:port` — how kube-proxy names a service port in comments and logs.
    pub(crate) fn display_name(&self) -> String {
        if self.port_name.is_empty() {
            format!("{}/{}", self.namespace, self.service)
        } else {
            format!("{}/{}:{}", self.namespace, self.service, self.port_name)
        }
    }

    /// The endpoints traffic may go to: the ready ones; when none is ready, those still serving
    /// while terminating (so a rolling update's last pod keeps answering, as kube-proxy does).
    /// `local_only` keeps this node's endpoints only (the `Local` traffic policies).
    pub(crate) fn usable_endpoints(&self, node: &str, local_only: bool) -> Vec<&Endpoint> {
        let candidates: Vec<&Endpoint> = self
            .endpoints
            .iter()
            .filter(|e| !local_only || e.node.as_deref() == Some(node))
            .collect();
        let ready: Vec<&Endpoint> = candidates.iter().copied().filter(|e| e.ready).collect();
        if !ready.is_empty() {
            return ready;
        }
        candidates
            .into_iter()
            .filter(|e| e.serving && e.terminating)
            .collect()
    }

    /// Whether anything outside the cluster IP reaches this port (node port or external IPs).
    pub(crate) fn has_external(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty()
    }
}

fn protocol(name: Option<&str>) -> Option<&'static str> {
    match name.unwrap_or("TCP") {
        "TCP" => Some("tcp"),
        "UDP" => Some("udp"),
        "SCTP" => Some("sctp"),
        _ => None,
    }
}

fn ipv4(text: &str) -> Option<Ipv4Addr> {
    text.parse().ok()
}

/// The EndpointSlices of each Service, by `(namespace, service name)`.
pub(crate) fn slices_by_service<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> BTreeMap<(String, String), Vec<&'a EndpointSlice>> {
    let mut map: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(service) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_SERVICE_NAME))
        else {
            continue;
        };
        let namespace = slice.metadata.namespace.clone().unwrap_or_default();
        map.entry((namespace, service.clone()))
            .or_default()
            .push(slice);
    }
    map
}

/// The proxied ports of `svc` (none for headless and ExternalName services) with their endpoints.
pub(crate) fn service_ports(svc: &Service, slices: &[&EndpointSlice]) -> Vec<ServicePort> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let cluster_ip = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .find_map(|ip| ipv4(ip));
    let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    // A headless service (clusterIP None) has nothing to forward, unless reached from outside.
    let mut external_ips: Vec<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| ipv4(ip))
        .collect();
    if spec.type_.as_deref() == Some("LoadBalancer") {
        let ingress = svc
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        external_ips.extend(
            ingress
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref().and_then(ipv4)),
        );
    }
    external_ips.sort();
    external_ips.dedup();
    let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .unwrap_or(10_800)
    });
    let namespace = svc.metadata.namespace.clone().unwrap_or_default();
    let service = svc.metadata.name.clone().unwrap_or_default();
    let mut out = Vec::new();
    for port in spec.ports.iter().flatten() {
        let Some(proto) = protocol(port.protocol.as_deref()) else {
            continue;
        };
        let Ok(number) = u16::try_from(port.port) else {
            continue;
        };
        let node_port = port
            .node_port
            .filter(|_| node_ports)
            .and_then(|p| u16::try_from(p).ok());
        if cluster_ip.is_none() && node_port.is_none() && external_ips.is_empty() {
            continue;
        }
        let port_name = port.name.clone().unwrap_or_default();
        let mut endpoints = endpoints_for(slices, &port_name, port.protocol.as_deref());
        endpoints.sort();
        endpoints.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
        out.push(ServicePort {
            namespace: namespace.clone(),
            service: service.clone(),
            port_name,
            protocol: proto,
            cluster_ip,
            port: number,
            node_port,
            external_ips: external_ips.clone(),
            affinity_seconds,
            external_local: spec.external_traffic_policy.as_deref() == Some("Local")
                && (node_port.is_some() || !external_ips.is_empty()),
            internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            endpoints,
        });
    }
    out
}

/// The endpoints of the slices' port named `port_name` (slices name ports as the service does).
fn endpoints_for(
    slices: &[&EndpointSlice],
    port_name: &str,
    protocol: Option<&str>,
) -> Vec<Endpoint> {
    let protocol = protocol.unwrap_or("TCP");
    let mut out = Vec::new();
    for slice in slices {
        let Some(port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && p.protocol.as_deref().unwrap_or("TCP") == protocol
        }) else {
            continue;
        };
        let Some(number) = port.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            let conditions = endpoint.conditions.as_ref();
            // Absent conditions mean ready (the EndpointSlice API's rule).
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            for ip in endpoint.addresses.iter().filter_map(|a| ipv4(a)) {
                out.push(Endpoint {
                    ip,
                    port: number,
                    node: endpoint.node_name.clone(),
                    ready,
                    serving,
                    terminating,
                });
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A Service from JSON (tests read better in the API's own shape).
    pub(crate) fn service(json: serde_json::Value) -> Service {
        serde_json::from_value(json).expect("service")
    }

    pub(crate) fn slice(json: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json).expect("slice")
    }

    pub(crate) fn web() -> Service {
        service(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.43.0.20",
                "clusterIPs": ["10.43.0.20"],
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080},
                    {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}
                ]
            }
        }))
    }

    pub(crate) fn web_slice() -> EndpointSlice {
        slice(serde_json::json!({
            "metadata": {"name": "web-abc", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                      {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [
                {"addresses": ["10.42.0.7"], "nodeName": "n1", "conditions": {"ready": true}},
                {"addresses": ["10.42.1.9"], "nodeName": "n2", "conditions": {"ready": true}},
                {"addresses": ["10.42.0.8"], "nodeName": "n1",
                 "conditions": {"ready": false, "serving": true, "terminating": true}}
            ]
        }))
    }

    #[test]
    fn each_port_gets_the_slices_port_of_the_same_name_and_protocol() {
        let s = web_slice();
        let ports = service_ports(&web(), &[&s]);
        assert_eq!(ports.len(), 2);
        let http = &ports[0];
        assert_eq!(http.display_name(), "default/web:http");
        assert_eq!(http.protocol, "tcp");
        assert_eq!(http.cluster_ip, Some(Ipv4Addr::new(10, 43, 0, 20)));
        assert_eq!(http.node_port, Some(30080));
        assert_eq!(http.endpoints.len(), 3);
        assert!(http.endpoints.iter().all(|e| e.port == 8080));
        assert_eq!(ports[1].protocol, "udp");
        assert!(ports[1].endpoints.iter().all(|e| e.port == 5353));
    }

    #[test]
    fn ready_endpoints_win_and_terminating_ones_serve_only_when_none_is_ready() {
        let s = web_slice();
        let ports = service_ports(&web(), &[&s]);
        let usable: Vec<String> = ports[0]
            .usable_endpoints("n1", false)
            .iter()
            .map(|e| e.ip.to_string())
            .collect();
        assert_eq!(usable, ["10.42.0.7", "10.42.1.9"]);
        let mut only_terminating = ports[0].clone();
        only_terminating.endpoints.retain(|e| !e.ready);
        assert_eq!(only_terminating.usable_endpoints("n1", false).len(), 1);
        let local: Vec<String> = ports[0]
            .usable_endpoints("n2", true)
            .iter()
            .map(|e| e.ip.to_string())
            .collect();
        assert_eq!(local, ["10.42.1.9"]);
    }

    #[test]
    fn headless_external_name_and_cluster_ip_types_are_told_apart() {
        let headless = service(serde_json::json!({
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}
        }));
        assert!(service_ports(&headless, &[]).is_empty());
        let external = service(serde_json::json!({
            "metadata": {"name": "ext", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "example.com"}
        }));
        assert!(service_ports(&external, &[]).is_empty());
        // A ClusterIP service carries no node port even if one is set.
        let mut plain = web();
        if let Some(spec) = plain.spec.as_mut() {
            spec.type_ = Some("ClusterIP".into());
        }
        assert!(
            service_ports(&plain, &[])
                .iter()
                .all(|p| p.node_port.is_none())
        );
    }

    #[test]
    fn slices_are_grouped_by_their_service_label_and_ipv6_is_skipped() {
        let a = web_slice();
        let mut b = web_slice();
        b.address_type = "IPv6".into();
        let mut unlabelled = web_slice();
        unlabelled.metadata.labels = None;
        let map = slices_by_service([&a, &b, &unlabelled]);
        assert_eq!(map.len(), 1);
        assert_eq!(map[&("default".to_string(), "web".to_string())].len(), 1);
    }

    #[test]
    fn client_ip_affinity_defaults_to_three_hours() {
        let mut svc = web();
        if let Some(spec) = svc.spec.as_mut() {
            spec.session_affinity = Some("ClientIP".into());
        }
        assert_eq!(service_ports(&svc, &[])[0].affinity_seconds, Some(10_800));
    }
}
