//! What this node's kernel must hold so that its pods reach every other node's pods: a pure function
//! of the Node objects (their podCIDR, address and the annotations each node publishes about itself).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Node;

/// Annotations a node publishes so that the others can reach its pods (flannel's names, so that
/// tools that read them keep working).
pub(crate) const BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
pub(crate) const BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
pub(crate) const PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";
pub(crate) const SUBNET_MANAGER: &str = "flannel.alpha.coreos.com/kube-subnet-manager";

/// The VXLAN device, network identifier and UDP port flannel uses (Linux's own default port 8472).
pub(crate) const DEVICE: &str = "flannel.1";
pub(crate) const VNI: u32 = 1;
pub(crate) const VXLAN_PORT: u16 = 8472;
/// Bytes of outer headers a VXLAN packet carries (Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8).
pub(crate) const VXLAN_OVERHEAD: u32 = 50;

/// How packets cross between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Encapsulated in UDP (works across routed networks).
    Vxlan,
    /// Routed to the other node's address as is (all nodes on one L2 network; no overhead).
    HostGw,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Vxlan => "vxlan",
            Backend::HostGw => "host-gw",
        }
    }
}

/// An IPv4 network, kept normalised (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Cidr {
    pub(crate) network: Ipv4Addr,
    pub(crate) prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`; host bits are cleared. `None` for IPv6 or malformed input.
    pub(crate) fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.trim().split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        if prefix > 32 {
            return None;
        }
        let network = Ipv4Addr::from(u32::from(addr) & Self::mask(prefix));
        Some(Cidr { network, prefix })
    }

    fn mask(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        }
    }

    pub(crate) fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask(self.prefix) == u32::from(self.network)
    }

    pub(crate) fn overlaps(&self, other: &Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Another node whose pods are reachable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Peer {
    pub(crate) name: String,
    pub(crate) subnet: Cidr,
    pub(crate) public_ip: Ipv4Addr,
    /// The MAC of its VXLAN device (vxlan backend only).
    pub(crate) vtep_mac: Option<String>,
}

/// A route to a peer's pod subnet; `onlink` ones go through the VXLAN device.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Route {
    pub(crate) dst: Cidr,
    pub(crate) via: Ipv4Addr,
    pub(crate) onlink_device: Option<String>,
}

/// A permanent ARP entry: the peer's VXLAN gateway address is its device's MAC.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Neighbour {
    pub(crate) ip: Ipv4Addr,
    pub(crate) mac: String,
}

/// A VXLAN forwarding entry: frames for `mac` go in UDP to `dst`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FdbEntry {
    pub(crate) mac: String,
    pub(crate) dst: Ipv4Addr,
}

/// Everything the node's kernel should hold for its peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) routes: BTreeSet<Route>,
    pub(crate) neighbours: BTreeSet<Neighbour>,
    pub(crate) fdb: BTreeSet<FdbEntry>,
}

/// The node's first IPv4 pod CIDR.
pub(crate) fn pod_subnet(node: &Node) -> Option<Cidr> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidrs
        .iter()
        .flatten()
        .chain(spec.pod_cidr.iter())
        .find_map(|c| Cidr::parse(c))
}

fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())
}

/// A MAC as `ip` prints it (six lower-case hex pairs), or `None`.
fn normalise_mac(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split(':').collect();
    let valid = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    valid.then(|| text.to_ascii_lowercase())
}

/// The peers among `nodes`: every other node that has a pod subnet and has published itself for
/// `backend` (a node that has not yet, or uses another backend, is left out until it does). A node
/// at this node's own address (`own_ip`: a second agent on the same host) is no peer: a tunnel or
/// route to ourselves reaches none of its pods, and a route for its subnet would shadow the one
/// its own bridge needs on this host.
pub(crate) fn peers<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    own_name: &str,
    own_ip: std::net::IpAddr,
    backend: Backend,
) -> Vec<Peer> {
    let mut out = Vec::new();
    for node in nodes {
        let Some(name) = node.metadata.name.as_deref() else {
            continue;
        };
        if name == own_name || node.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(subnet) = pod_subnet(node) else {
            continue;
        };
        let annotations = node.metadata.annotations.as_ref();
        let get = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
        if get(BACKEND_TYPE) != Some(backend.name()) {
            continue;
        }
        let Some(public_ip) = get(PUBLIC_IP)
            .and_then(|ip| ip.parse().ok())
            .or_else(|| internal_ip(node))
        else {
            continue;
        };
        if std::net::IpAddr::V4(public_ip) == own_ip {
            tracing::debug!(node = name, %public_ip, "a node at this node's own address; not a peer");
            continue;
        }
        let vtep_mac = match backend {
            Backend::HostGw => None,
            Backend::Vxlan => {
                let mac = get(BACKEND_DATA)
                    .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                    .and_then(|d| d.get("VtepMAC")?.as_str().and_then(normalise_mac));
                match mac {
                    Some(mac) => Some(mac),
                    None => continue,
                }
            }
        };
        out.push(Peer {
            name: name.to_owned(),
            subnet,
            public_ip,
            vtep_mac,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The routes (and, for VXLAN, neighbour and forwarding entries) that reach `peers`' pods. Subnets
/// outside the cluster network, overlapping this node's own, or claimed twice (the first name wins)
/// are skipped: a wrong route there would cut this node's own pods off.
pub(crate) fn plan(peers: &[Peer], backend: Backend, own: Cidr, cluster: Cidr) -> Plan {
    let mut plan = Plan::default();
    let mut taken: Vec<Cidr> = vec![own];
    for peer in peers {
        if !cluster.contains(peer.subnet.network)
            || peer.subnet.prefix < cluster.prefix
            || taken.iter().any(|t| t.overlaps(&peer.subnet))
        {
            tracing::warn!(node = %peer.name, subnet = %peer.subnet, "pod subnet not routable from here; skipped");
            continue;
        }
        taken.push(peer.subnet);
        match (backend, &peer.vtep_mac) {
            (Backend::HostGw, _) => {
                plan.routes.insert(Route {
                    dst: peer.subnet,
                    via: peer.public_ip,
                    onlink_device: None,
                });
            }
            (Backend::Vxlan, Some(mac)) => {
                // The peer's device holds its subnet's network address: our gateway to its pods.
                let gateway = peer.subnet.network;
                plan.routes.insert(Route {
                    dst: peer.subnet,
                    via: gateway,
                    onlink_device: Some(DEVICE.to_owned()),
                });
                plan.neighbours.insert(Neighbour {
                    ip: gateway,
                    mac: mac.clone(),
                });
                plan.fdb.insert(FdbEntry {
                    mac: mac.clone(),
                    dst: peer.public_ip,
                });
            }
            (Backend::Vxlan, None) => {}
        }
    }
    plan
}

/// The annotations this node publishes about itself.
pub(crate) fn own_annotations(
    backend: Backend,
    public_ip: Ipv4Addr,
    vtep_mac: Option<&str>,
) -> BTreeMap<String, String> {
    let data = match (backend, vtep_mac) {
        (Backend::Vxlan, Some(mac)) => {
            serde_json::json!({ "VNI": VNI, "VtepMAC": mac }).to_string()
        }
        _ => "null".to_owned(),
    };
    BTreeMap::from([
        (BACKEND_TYPE.to_owned(), backend.name().to_owned()),
        (BACKEND_DATA.to_owned(), data),
        (PUBLIC_IP.to_owned(), public_ip.to_string()),
        (SUBNET_MANAGER.to_owned(), "true".to_owned()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: &str, ip: &str, annotations: &[(&str, &str)]) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "annotations": annotations.iter().map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            },
            "spec": { "podCIDR": cidr, "podCIDRs": [cidr] },
            "status": { "addresses": [{ "type": "InternalIP", "address": ip }] },
        }))
        .expect("node")
    }

    fn vxlan_node(name: &str, cidr: &str, ip: &str, mac: &str) -> Node {
        let data = format!("{{\"VNI\":1,\"VtepMAC\":\"{mac}\"}}");
        node(
            name,
            cidr,
            ip,
            &[
                (BACKEND_TYPE, "vxlan"),
                (BACKEND_DATA, &data),
                (PUBLIC_IP, ip),
            ],
        )
    }

    fn cidr(text: &str) -> Cidr {
        Cidr::parse(text).expect("cidr")
    }

    #[test]
    fn cidrs_normalise_and_compare() {
        assert_eq!(cidr("10.42.1.7/24").to_string(), "10.42.1.0/24");
        assert!(cidr("10.42.0.0/16").contains("10.42.200.1".parse().expect("ip")));
        assert!(!cidr("10.42.0.0/16").contains("10.43.0.1".parse().expect("ip")));
        assert!(cidr("10.42.0.0/16").overlaps(&cidr("10.42.3.0/24")));
        assert!(!cidr("10.42.2.0/24").overlaps(&cidr("10.42.3.0/24")));
        assert_eq!(Cidr::parse("fd00::/64"), None);
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
    }

    #[test]
    fn vxlan_peers_get_a_route_an_arp_entry_and_a_forwarding_entry() {
        let nodes = [
            vxlan_node("a", "10.42.0.0/24", "192.168.1.1", "aa:aa:aa:aa:aa:01"),
            vxlan_node("b", "10.42.1.0/24", "192.168.1.2", "AA:AA:AA:AA:AA:02"),
            vxlan_node("c", "10.42.2.0/24", "192.168.1.3", "aa:aa:aa:aa:aa:03"),
        ];
        let peers = peers(&nodes, "a", OWN_IP, Backend::Vxlan);
        assert_eq!(
            peers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        let plan = plan(
            &peers,
            Backend::Vxlan,
            cidr("10.42.0.0/24"),
            cidr("10.42.0.0/16"),
        );
        let routes: Vec<String> = plan
            .routes
            .iter()
            .map(|r| format!("{} via {} {:?}", r.dst, r.via, r.onlink_device))
            .collect();
        assert_eq!(
            routes,
            [
                "10.42.1.0/24 via 10.42.1.0 Some(\"flannel.1\")",
                "10.42.2.0/24 via 10.42.2.0 Some(\"flannel.1\")"
            ]
        );
        assert!(plan.neighbours.contains(&Neighbour {
            ip: "10.42.1.0".parse().expect("ip"),
            mac: "aa:aa:aa:aa:aa:02".into()
        }));
        assert!(plan.fdb.contains(&FdbEntry {
            mac: "aa:aa:aa:aa:aa:03".into(),
            dst: "192.168.1.3".parse().expect("ip")
        }));
    }

    #[test]
    fn host_gw_routes_go_to_the_peer_address() {
        let nodes = [node(
            "b",
            "10.42.1.0/24",
            "192.168.1.2",
            &[(BACKEND_TYPE, "host-gw"), (BACKEND_DATA, "null")],
        )];
        let peers = peers(&nodes, "a", OWN_IP, Backend::HostGw);
        assert_eq!(peers[0].public_ip.to_string(), "192.168.1.2");
        let plan = plan(
            &peers,
            Backend::HostGw,
            cidr("10.42.0.0/24"),
            cidr("10.42.0.0/16"),
        );
        let route = plan.routes.iter().next().expect("one route");
        assert_eq!(
            (route.dst, route.via.to_string()),
            (cidr("10.42.1.0/24"), "192.168.1.2".into())
        );
        assert_eq!(route.onlink_device, None);
        assert!(plan.neighbours.is_empty() && plan.fdb.is_empty());
    }

    /// The address of node "a" in these tests' clusters.
    const OWN_IP: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 1));

    #[test]
    fn a_node_at_our_own_address_is_no_peer() {
        let nodes = [
            vxlan_node("a", "10.42.0.0/24", "192.168.1.1", "aa:aa:aa:aa:aa:01"),
            // A second agent on this host: same address, another name and subnet.
            vxlan_node(
                "same-host",
                "10.42.1.0/24",
                "192.168.1.1",
                "aa:aa:aa:aa:aa:02",
            ),
            vxlan_node("c", "10.42.2.0/24", "192.168.1.3", "aa:aa:aa:aa:aa:03"),
        ];
        for backend in [Backend::Vxlan, Backend::HostGw] {
            let names: Vec<String> = peers(&nodes, "a", OWN_IP, backend)
                .into_iter()
                .map(|p| p.name)
                .collect();
            let expected: &[&str] = match backend {
                Backend::Vxlan => &["c"],
                // The vxlan-published nodes are not host-gw peers at all.
                Backend::HostGw => &[],
            };
            assert_eq!(names, expected);
        }
    }

    #[test]
    fn nodes_not_yet_published_or_on_another_backend_are_not_peers() {
        let nodes = [
            node("bare", "10.42.1.0/24", "192.168.1.2", &[]),
            node(
                "other",
                "10.42.2.0/24",
                "192.168.1.3",
                &[(BACKEND_TYPE, "host-gw")],
            ),
            node(
                "bad-mac",
                "10.42.3.0/24",
                "192.168.1.4",
                &[
                    (BACKEND_TYPE, "vxlan"),
                    (BACKEND_DATA, "{\"VtepMAC\":\"zz\"}"),
                ],
            ),
            vxlan_node("ok", "10.42.4.0/24", "192.168.1.5", "aa:aa:aa:aa:aa:05"),
        ];
        let names: Vec<String> = peers(&nodes, "a", OWN_IP, Backend::Vxlan)
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["ok"]);
    }

    #[test]
    fn subnets_outside_the_cluster_or_overlapping_are_skipped() {
        let nodes = [
            vxlan_node("b", "10.99.0.0/24", "192.168.1.2", "aa:aa:aa:aa:aa:02"),
            vxlan_node("c", "10.42.0.0/25", "192.168.1.3", "aa:aa:aa:aa:aa:03"),
            vxlan_node("d", "10.42.5.0/24", "192.168.1.4", "aa:aa:aa:aa:aa:04"),
            vxlan_node("e", "10.42.5.0/24", "192.168.1.5", "aa:aa:aa:aa:aa:05"),
        ];
        let plan = plan(
            &peers(&nodes, "a", OWN_IP, Backend::Vxlan),
            Backend::Vxlan,
            cidr("10.42.0.0/24"),
            cidr("10.42.0.0/16"),
        );
        let dsts: Vec<String> = plan.routes.iter().map(|r| r.dst.to_string()).collect();
        assert_eq!(dsts, ["10.42.5.0/24"]);
        // The first name wins the contested subnet.
        assert_eq!(
            plan.fdb.iter().next().map(|f| f.dst.to_string()),
            Some("192.168.1.4".into())
        );
    }

    #[test]
    fn own_annotations_say_how_to_reach_this_node() {
        let a = own_annotations(
            Backend::Vxlan,
            "192.168.1.1".parse().expect("ip"),
            Some("aa:bb:cc:dd:ee:ff"),
        );
        assert_eq!(a[BACKEND_TYPE], "vxlan");
        assert_eq!(
            a[BACKEND_DATA],
            "{\"VNI\":1,\"VtepMAC\":\"aa:bb:cc:dd:ee:ff\"}"
        );
        assert_eq!(a[PUBLIC_IP], "192.168.1.1");
        // What one node publishes, another reads back.
        let n = node(
            "a",
            "10.42.0.0/24",
            "10.0.0.9",
            &a.iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        );
        let b_ip = "192.168.1.2".parse().expect("ip");
        let p = peers([&n], "b", b_ip, Backend::Vxlan);
        assert_eq!(p[0].public_ip.to_string(), "192.168.1.1");
        assert_eq!(p[0].vtep_mac.as_deref(), Some("aa:bb:cc:dd:ee:ff"));
    }
}
