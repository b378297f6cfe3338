//! Kubernetes DNS records (the DNS specification of kubernetes/dns, schema 1.1.0) as a pure
//! function: [`Index::build`] turns Services and EndpointSlices into lookup tables, and
//! [`resolve`] / [`resolve_reverse`] answer one question from them. No IO, no clock.
//!
//! Names under the zone:
//! - `<svc>.<ns>.svc` — ClusterIP/NodePort/LoadBalancer: the cluster IPs (A/AAAA by family);
//!   headless: the ready endpoints' addresses; ExternalName: a CNAME.
//! - `<host>.<svc>.<ns>.svc` — an endpoint of a headless service, `<host>` its `hostname` or,
//!   without one, its address with dashes (`10-42-0-5`, as CoreDNS names it).
//! - `_<port>._<proto>.<svc>.<ns>.svc` — SRV per named port (headless: one per endpoint), the
//!   targets' addresses in the additional section.
//! - `<a-b-c-d>.<ns>.pod` — A a.b.c.d, unchecked (kube-dns's and CoreDNS's `pods insecure`).
//! - `dns-version` (TXT `1.1.0`), the apex (SOA, NS `ns.dns.<zone>`) and `ns.dns` (the DNS
//!   Service's IP).
//!
//! A missing name is NXDOMAIN, a name without the asked type NODATA; both carry the zone's SOA.
//! Matching ignores ASCII case; answers use the question's spelling for its name.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::wire::{
    Name, Question, RCODE_NOERROR, RCODE_NXDOMAIN, RData, Record, Soa, TYPE_ANY, TYPE_CNAME,
    TYPE_NS, TYPE_PTR, TYPE_SOA, TYPE_SRV,
};

/// The TTL of every cluster record (CoreDNS's kubernetes plugin default).
pub(crate) const TTL: u32 = 5;
/// `kubernetes.io/service-name`: the service an EndpointSlice belongs to.
pub(crate) const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The spec's schema version, served as TXT at `dns-version.<zone>`.
const SCHEMA_VERSION: &str = "1.1.0";
/// CNAMEs followed inside the zone before giving up.
const MAX_CHASE: usize = 8;

/// What the resolver knows besides the objects.
#[derive(Debug, Clone)]
pub(crate) struct Zone {
    /// The cluster domain, e.g. `cluster.local`.
    pub(crate) domain: Name,
    /// The DNS Service's ClusterIP (the address of `ns.dns.<zone>`).
    pub(crate) dns_ip: IpAddr,
}

/// A service port, or an EndpointSlice port; name and protocol lowercased.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Port {
    name: String,
    protocol: String,
    port: u16,
}

/// One address of a ready endpoint of a headless service.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    ip: IpAddr,
    /// The endpoint's `hostname` (lowercased) or its dashed address: its label under the service.
    label: String,
    ports: Vec<Port>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    ClusterIp(Vec<IpAddr>),
    Headless(Vec<Endpoint>),
    ExternalName(Name),
    /// No address (yet), or an unusable externalName: the name exists with no records.
    Empty,
}

#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    ports: Vec<Port>,
}

/// Services and their endpoints, keyed for lookups. Built anew from the caches on change.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// (namespace, name), lowercased.
    services: HashMap<(String, String), Entry>,
    namespaces: HashSet<String>,
    /// Address -> PTR targets as labels in front of the zone (`[svc, ns, "svc"]`).
    reverse: HashMap<IpAddr, Vec<Vec<String>>>,
    /// The SOA serial.
    serial: u32,
}

impl Index {
    pub(crate) fn build(
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
        serial: u32,
    ) -> Self {
        let mut index = Index {
            serial,
            ..Index::default()
        };
        for svc in services {
            let (Some(name), Some(ns)) = (&svc.metadata.name, &svc.metadata.namespace) else {
                continue;
            };
            let key = (ns.to_ascii_lowercase(), name.to_ascii_lowercase());
            let Some(spec) = &svc.spec else {
                index.namespaces.insert(key.0.clone());
                index.services.insert(
                    key,
                    Entry {
                        kind: Kind::Empty,
                        ports: Vec::new(),
                    },
                );
                continue;
            };
            let ports = spec
                .ports
                .iter()
                .flatten()
                .filter_map(|p| port(p.name.as_deref(), p.protocol.as_deref(), Some(p.port)))
                .collect();
            let kind = if spec.type_.as_deref() == Some("ExternalName") {
                spec.external_name
                    .as_deref()
                    .and_then(Name::parse)
                    .filter(|n| !n.labels().is_empty())
                    .map_or(Kind::Empty, Kind::ExternalName)
            } else if spec.cluster_ip.as_deref() == Some("None") {
                Kind::Headless(Vec::new())
            } else {
                let mut ips: Vec<IpAddr> = spec
                    .cluster_ips
                    .iter()
                    .flatten()
                    .chain(spec.cluster_ip.as_ref())
                    .filter_map(|ip| ip.parse().ok())
                    .collect();
                ips.sort();
                ips.dedup();
                if ips.is_empty() {
                    Kind::Empty
                } else {
                    for ip in &ips {
                        let target = vec![key.1.clone(), key.0.clone(), "svc".to_owned()];
                        index.reverse.entry(*ip).or_default().push(target);
                    }
                    Kind::ClusterIp(ips)
                }
            };
            index.namespaces.insert(key.0.clone());
            index.services.insert(key, Entry { kind, ports });
        }

        // Ready endpoints of headless services, merged across slices: (ip, label) -> ports.
        let mut endpoints: HashMap<(String, String), ByAddress> = HashMap::new();
        for slice in slices {
            if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
                continue;
            }
            let labels = slice.metadata.labels.as_ref();
            let (Some(svc), Some(ns)) = (
                labels.and_then(|l| l.get(LABEL_SERVICE_NAME)),
                &slice.metadata.namespace,
            ) else {
                continue;
            };
            let key = (ns.to_ascii_lowercase(), svc.to_ascii_lowercase());
            if !matches!(
                index.services.get(&key).map(|e| &e.kind),
                Some(Kind::Headless(_))
            ) {
                continue;
            }
            let ports: Vec<Port> = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| port(p.name.as_deref(), p.protocol.as_deref(), p.port))
                .collect();
            let by_address = endpoints.entry(key).or_default();
            for ep in &slice.endpoints {
                if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                    continue;
                }
                let hostname = ep.hostname.as_deref().map(str::to_ascii_lowercase);
                for ip in ep.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                    let label = hostname.clone().unwrap_or_else(|| dashed(ip));
                    let merged = by_address.entry((ip, label)).or_default();
                    merged.extend(ports.iter().cloned());
                    merged.sort();
                    merged.dedup();
                }
            }
        }
        for (key, by_address) in endpoints {
            let Some(Entry {
                kind: Kind::Headless(list),
                ..
            }) = index.services.get_mut(&key)
            else {
                continue;
            };
            for ((ip, label), ports) in by_address {
                // Only real hostnames get PTR records (as the spec asks).
                if !label.contains(['.', ':']) && label != dashed(ip) {
                    let target = vec![label.clone(), key.1.clone(), key.0.clone(), "svc".into()];
                    index.reverse.entry(ip).or_default().push(target);
                }
                list.push(Endpoint { ip, label, ports });
            }
        }
        for targets in index.reverse.values_mut() {
            targets.sort();
            targets.dedup();
        }
        index
    }
}

/// A headless service's ready endpoints: (address, label) -> ports.
type ByAddress = BTreeMap<(IpAddr, String), Vec<Port>>;

fn port(name: Option<&str>, protocol: Option<&str>, number: Option<i32>) -> Option<Port> {
    Some(Port {
        name: name.unwrap_or_default().to_ascii_lowercase(),
        protocol: protocol.unwrap_or("TCP").to_ascii_lowercase(),
        port: u16::try_from(number?).ok()?,
    })
}

/// An address as one label: `10-42-0-5`, or `fd00--1` for IPv6.
fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// The parsed form of a dashed address label.
fn undashed(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// The answer to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) rcode: u16,
    pub(crate) answers: Vec<Record>,
    pub(crate) authority: Vec<Record>,
    pub(crate) additional: Vec<Record>,
    /// A CNAME target outside the zone whose records (of the question's type) the server should
    /// look up upstream and append.
    pub(crate) chase: Option<Name>,
}

/// Answers a question for a name under `zone.domain`; `None` for names outside it.
pub(crate) fn resolve(zone: &Zone, index: &Index, q: &Question) -> Option<Answer> {
    q.name.strip_suffix(&zone.domain)?;
    let mut answer = Answer {
        rcode: RCODE_NOERROR,
        answers: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
        chase: None,
    };
    let mut name = q.name.clone();
    // Whether the last name looked up had nothing to answer with (NXDOMAIN or NODATA).
    let mut negative = true;
    for _ in 0..MAX_CHASE {
        let (found, additional) = lookup(zone, index, &name, q.qtype);
        let Some(records) = found else {
            answer.rcode = RCODE_NXDOMAIN;
            break;
        };
        let before = answer.answers.len();
        // A CNAME answers every type but CNAME itself; its target is looked up next.
        let cname = records.iter().find_map(|d| match d {
            RData::Cname(target) if q.qtype != TYPE_CNAME => Some(target.clone()),
            _ => None,
        });
        let wanted = records.into_iter().filter(|d| {
            cname.is_some() && d.rtype() == TYPE_CNAME
                || cname.is_none() && (q.qtype == TYPE_ANY || d.rtype() == q.qtype)
        });
        answer
            .answers
            .extend(wanted.map(|d| Record::new(name.clone(), TTL, d)));
        answer.additional.extend(additional);
        negative = answer.answers.len() == before;
        match cname {
            Some(target) if q.qtype != TYPE_ANY => {
                if target.strip_suffix(&zone.domain).is_some() {
                    name = target;
                    continue;
                }
                answer.chase = Some(target);
            }
            _ => {}
        }
        break;
    }
    if negative {
        answer.authority.push(soa(zone, index, zone.domain.clone()));
    }
    Some(answer)
}

/// Answers a PTR question for a cluster IP or a headless endpoint with a hostname; `None` for
/// other names (they go upstream).
pub(crate) fn resolve_reverse(zone: &Zone, index: &Index, q: &Question) -> Option<Answer> {
    let (ip, apex) = reverse_ip(&q.name)?;
    let targets = index.reverse.get(&ip)?;
    let mut answer = Answer {
        rcode: RCODE_NOERROR,
        answers: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
        chase: None,
    };
    if matches!(q.qtype, TYPE_PTR | TYPE_ANY) {
        for target in targets {
            if let Some(name) = zone.domain.prepend(target) {
                answer
                    .answers
                    .push(Record::new(q.name.clone(), TTL, RData::Ptr(name)));
            }
        }
    }
    if answer.answers.is_empty() {
        answer.authority.push(soa(zone, index, apex));
    }
    Some(answer)
}

/// The address a reverse name stands for, and its reverse zone (`in-addr.arpa` / `ip6.arpa`).
fn reverse_ip(name: &Name) -> Option<(IpAddr, Name)> {
    let v4 = Name::parse("in-addr.arpa")?;
    if let Some(front) = name.strip_suffix(&v4) {
        if front.len() != 4 {
            return None;
        }
        let mut octets = [0u8; 4];
        for (i, label) in front.iter().rev().enumerate() {
            let text = std::str::from_utf8(label).ok()?;
            if text.len() > 1 && text.starts_with('0') {
                return None;
            }
            octets[i] = text.parse().ok()?;
        }
        return Some((IpAddr::from(octets), v4));
    }
    let v6 = Name::parse("ip6.arpa")?;
    let front = name.strip_suffix(&v6)?;
    if front.len() != 32 {
        return None;
    }
    let mut bits: u128 = 0;
    for label in front.iter().rev() {
        let [nibble] = label.as_slice() else {
            return None;
        };
        let digit = char::from(*nibble).to_digit(16)?;
        bits = (bits << 4) | u128::from(digit);
    }
    Some((IpAddr::V6(Ipv6Addr::from(bits)), v6))
}

fn soa(zone: &Zone, index: &Index, owner: Name) -> Record {
    let under = |l: &[&str]| {
        zone.domain
            .prepend(l)
            .unwrap_or_else(|| zone.domain.clone())
    };
    Record::new(
        owner,
        TTL,
        RData::Soa(Soa {
            mname: under(&["ns", "dns"]),
            rname: under(&["hostmaster"]),
            serial: index.serial,
            refresh: 7200,
            retry: 1800,
            expire: 86400,
            minimum: TTL,
        }),
    )
}

fn address(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(v4),
        IpAddr::V6(v6) => RData::Aaaa(v6),
    }
}

/// The records at `name` (under the zone), only those of type `qtype` computed when costly:
/// `None` when the name does not exist. Also the additional records (SRV targets' addresses).
fn lookup(
    zone: &Zone,
    index: &Index,
    name: &Name,
    qtype: u16,
) -> (Option<Vec<RData>>, Vec<Record>) {
    let Some(front) = name.strip_suffix(&zone.domain) else {
        return (None, Vec::new());
    };
    let rel: Vec<String> = front
        .iter()
        .rev()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect();
    let rel: Vec<&str> = rel.iter().map(String::as_str).collect();
    let wants = |t: u16| qtype == t || qtype == TYPE_ANY;
    let mut additional = Vec::new();
    let under = |labels: &[&str]| zone.domain.prepend(labels);
    let records = match rel.as_slice() {
        [] => {
            let mut records = vec![];
            if wants(TYPE_SOA) {
                records.push(soa(zone, index, zone.domain.clone()).data);
            }
            if wants(TYPE_NS)
                && let Some(ns) = under(&["ns", "dns"])
            {
                additional.push(Record::new(ns.clone(), TTL, address(zone.dns_ip)));
                records.push(RData::Ns(ns));
            }
            Some(records)
        }
        ["dns-version"] => Some(vec![RData::Txt(vec![SCHEMA_VERSION.into()])]),
        ["dns"] => Some(vec![]),
        ["dns", "ns"] => Some(vec![address(zone.dns_ip)]),
        ["svc"] | ["pod"] => Some(vec![]),
        ["svc", ns] => index.namespaces.contains(*ns).then(Vec::new),
        ["pod", _] => Some(vec![]),
        ["pod", _, ip] => undashed(ip).map(|ip| vec![address(ip)]),
        ["svc", ns, svc, rest @ ..] => {
            let Some(entry) = index.services.get(&((*ns).to_owned(), (*svc).to_owned())) else {
                return (None, additional);
            };
            let Some(svc_name) = under(&[svc, ns, "svc"]) else {
                return (None, additional);
            };
            service(entry, &svc_name, rest, &wants, &mut additional)
        }
        _ => None,
    };
    (records, additional)
}

/// Records of a service's name (`rest` empty) or of names below it.
fn service(
    entry: &Entry,
    svc_name: &Name,
    rest: &[&str],
    wants: &dyn Fn(u16) -> bool,
    additional: &mut Vec<Record>,
) -> Option<Vec<RData>> {
    let endpoints: &[Endpoint] = match &entry.kind {
        Kind::Headless(list) => list,
        _ => &[],
    };
    let endpoint_name = |ep: &Endpoint| svc_name.prepend(&[ep.label.as_str()]);
    match rest {
        [] => {
            let mut records = Vec::new();
            match &entry.kind {
                Kind::ExternalName(target) => records.push(RData::Cname(target.clone())),
                Kind::ClusterIp(ips) => {
                    records.extend(ips.iter().map(|ip| address(*ip)));
                    if wants(TYPE_SRV) {
                        let ports: Vec<&Port> = entry.ports.iter().collect();
                        records.extend(srv_records(&ports, svc_name, ips, additional));
                    }
                }
                Kind::Headless(list) => {
                    let mut seen = HashSet::new();
                    records.extend(
                        list.iter()
                            .filter(|ep| seen.insert(ep.ip))
                            .map(|ep| address(ep.ip)),
                    );
                    if wants(TYPE_SRV) {
                        records.extend(headless_srv(list, None, &endpoint_name, additional));
                    }
                }
                Kind::Empty => {}
            }
            Some(records)
        }
        [proto] if proto.starts_with('_') => {
            let proto = &proto[1..];
            entry
                .ports
                .iter()
                .chain(endpoints.iter().flat_map(|e| &e.ports))
                .any(|p| !p.name.is_empty() && p.protocol == proto)
                .then(Vec::new)
        }
        [label] => {
            let mut found = endpoints.iter().filter(|ep| ep.label == *label).peekable();
            found.peek()?;
            Some(found.map(|ep| address(ep.ip)).collect())
        }
        [proto, port] if proto.starts_with('_') && port.starts_with('_') => {
            let (proto, port) = (&proto[1..], &port[1..]);
            if port.is_empty() {
                return None;
            }
            let matches = |p: &Port| p.name == port && p.protocol == proto;
            let service_ports: Vec<&Port> = entry.ports.iter().filter(|p| matches(p)).collect();
            let endpoint_has_port = endpoints.iter().flat_map(|e| &e.ports).any(matches);
            if service_ports.is_empty() && !endpoint_has_port {
                return None;
            }
            if !wants(TYPE_SRV) {
                return Some(Vec::new());
            }
            Some(match &entry.kind {
                Kind::ClusterIp(ips) => srv_records(&service_ports, svc_name, ips, additional),
                Kind::Headless(list) => {
                    headless_srv(list, Some(&matches), &endpoint_name, additional)
                }
                Kind::ExternalName(_) | Kind::Empty => Vec::new(),
            })
        }
        _ => None,
    }
}

/// SRV records pointing at a service's own name, its addresses as additional records.
fn srv_records(
    ports: &[&Port],
    target: &Name,
    ips: &[IpAddr],
    additional: &mut Vec<Record>,
) -> Vec<RData> {
    if !ports.is_empty() {
        additional.extend(
            ips.iter()
                .map(|ip| Record::new(target.clone(), TTL, address(*ip))),
        );
    }
    let weight = srv_weight(ports.len());
    ports
        .iter()
        .map(|p| RData::Srv {
            priority: 0,
            weight,
            port: p.port,
            target: target.clone(),
        })
        .collect()
}

/// SRV records of a headless service: one per endpoint and (matching) port.
fn headless_srv(
    endpoints: &[Endpoint],
    filter: Option<&dyn Fn(&Port) -> bool>,
    endpoint_name: &dyn Fn(&Endpoint) -> Option<Name>,
    additional: &mut Vec<Record>,
) -> Vec<RData> {
    let mut pairs = Vec::new();
    for ep in endpoints {
        let Some(target) = endpoint_name(ep) else {
            continue;
        };
        let ports: Vec<&Port> = ep
            .ports
            .iter()
            .filter(|p| filter.is_none_or(|f| f(p)))
            .collect();
        if !ports.is_empty() {
            additional.push(Record::new(target.clone(), TTL, address(ep.ip)));
        }
        pairs.extend(ports.into_iter().map(|p| (p.port, target.clone())));
    }
    let weight = srv_weight(pairs.len());
    pairs
        .into_iter()
        .map(|(port, target)| RData::Srv {
            priority: 0,
            weight,
            port,
            target,
        })
        .collect()
}

/// Equal shares of 100, as CoreDNS weighs records of one priority.
fn srv_weight(n: usize) -> u16 {
    u16::try_from(100 / n.max(1)).unwrap_or(100).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{CLASS_IN, TYPE_A, TYPE_AAAA, TYPE_TXT};
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{
        Endpoint as SliceEndpoint, EndpointConditions, EndpointPort,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn name(s: &str) -> Name {
        Name::parse(s).expect("name")
    }

    fn svc(
        ns: &str,
        n: &str,
        cluster_ip: Option<&str>,
        ports: &[(&str, &str, i32)],
    ) -> Arc<Service> {
        Arc::new(Service {
            metadata: ObjectMeta {
                name: Some(n.into()),
                namespace: Some(ns.into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: cluster_ip.map(Into::into),
                ports: Some(
                    ports
                        .iter()
                        .map(|(name, proto, port)| ServicePort {
                            name: (!name.is_empty()).then(|| (*name).to_owned()),
                            protocol: Some((*proto).into()),
                            port: *port,
                            ..ServicePort::default()
                        })
                        .collect(),
                ),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        })
    }

    fn external(ns: &str, n: &str, target: &str) -> Arc<Service> {
        Arc::new(Service {
            metadata: ObjectMeta {
                name: Some(n.into()),
                namespace: Some(ns.into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("ExternalName".into()),
                external_name: Some(target.into()),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        })
    }

    /// (address, hostname, ready)
    fn slice(
        ns: &str,
        svc: &str,
        endpoints: &[(&str, Option<&str>, Option<bool>)],
    ) -> Arc<EndpointSlice> {
        Arc::new(EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{svc}-abc")),
                namespace: Some(ns.into()),
                labels: Some([(LABEL_SERVICE_NAME.to_owned(), svc.to_owned())].into()),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: endpoints
                .iter()
                .map(|(ip, host, ready)| SliceEndpoint {
                    addresses: vec![(*ip).into()],
                    hostname: host.map(Into::into),
                    conditions: Some(EndpointConditions {
                        ready: *ready,
                        ..EndpointConditions::default()
                    }),
                    ..SliceEndpoint::default()
                })
                .collect(),
            ports: Some(vec![EndpointPort {
                name: Some("db".into()),
                protocol: Some("TCP".into()),
                port: Some(5432),
                ..EndpointPort::default()
            }]),
        })
    }

    fn zone() -> Zone {
        Zone {
            domain: name("cluster.local"),
            dns_ip: IpAddr::from([10, 43, 0, 10]),
        }
    }

    fn index() -> Index {
        Index::build(
            &[
                svc(
                    "default",
                    "web",
                    Some("10.43.0.20"),
                    &[("http", "TCP", 80), ("", "UDP", 53)],
                ),
                svc("db", "pg", Some("None"), &[("db", "TCP", 5432)]),
                external("default", "ext", "example.com"),
                external("default", "alias", "web.default.svc.cluster.local"),
                svc("default", "pending", None, &[]),
            ],
            &[
                slice(
                    "db",
                    "pg",
                    &[
                        ("10.42.0.5", Some("pg-0"), Some(true)),
                        ("10.42.0.6", None, None),
                        ("10.42.0.7", Some("pg-2"), Some(false)),
                    ],
                ),
                // A slice of a ClusterIP service: not used for DNS.
                slice("default", "web", &[("10.42.0.9", Some("w"), Some(true))]),
            ],
            42,
        )
    }

    fn ask(qname: &str, qtype: u16) -> Answer {
        let q = Question {
            name: name(qname),
            qtype,
            qclass: CLASS_IN,
        };
        resolve(&zone(), &index(), &q)
            .or_else(|| resolve_reverse(&zone(), &index(), &q))
            .expect("in zone")
    }

    /// The answer section as text, one `name type data` line per record.
    fn show(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| {
                let data = match &r.data {
                    RData::A(ip) => format!("A {ip}"),
                    RData::Aaaa(ip) => format!("AAAA {ip}"),
                    RData::Cname(n) => format!("CNAME {n}"),
                    RData::Ns(n) => format!("NS {n}"),
                    RData::Ptr(n) => format!("PTR {n}"),
                    RData::Soa(s) => format!("SOA {} {} {}", s.mname, s.rname, s.serial),
                    RData::Srv {
                        priority,
                        weight,
                        port,
                        target,
                    } => format!("SRV {priority} {weight} {port} {target}"),
                    RData::Txt(t) => format!("TXT {:?}", t),
                    RData::Other { rtype, .. } => format!("TYPE{rtype}"),
                };
                format!("{} {} {data}", r.name, r.ttl)
            })
            .collect()
    }

    #[test]
    fn a_cluster_ip_service_resolves_to_its_cluster_ip_in_the_questions_case() {
        let a = ask("Web.Default.SVC.cluster.LOCAL.", TYPE_A);
        assert_eq!(a.rcode, RCODE_NOERROR);
        assert_eq!(
            show(&a.answers),
            ["Web.Default.SVC.cluster.LOCAL. 5 A 10.43.0.20"]
        );
        assert!(a.authority.is_empty());
    }

    #[test]
    fn an_ipv4_service_has_no_aaaa_records_but_exists() {
        let a = ask("web.default.svc.cluster.local", TYPE_AAAA);
        assert_eq!(a.rcode, RCODE_NOERROR);
        assert!(a.answers.is_empty());
        assert_eq!(
            show(&a.authority),
            ["cluster.local. 5 SOA ns.dns.cluster.local. hostmaster.cluster.local. 42"]
        );
    }

    #[test]
    fn missing_names_are_nxdomain_with_the_soa() {
        for q in [
            "nope.default.svc.cluster.local",
            "web.other.svc.cluster.local",
            "x.web.default.svc.cluster.local",
            "_http._udp.web.default.svc.cluster.local",
            "foo.cluster.local",
            "nothere.svc.cluster.local",
            "not-an-ip.default.pod.cluster.local",
        ] {
            let a = ask(q, TYPE_A);
            assert_eq!(a.rcode, RCODE_NXDOMAIN, "{q}");
            assert!(a.answers.is_empty(), "{q}");
            assert_eq!(a.authority.len(), 1, "{q}");
        }
    }

    #[test]
    fn names_that_exist_without_records_are_nodata() {
        for (q, t) in [
            ("default.svc.cluster.local", TYPE_A),
            ("svc.cluster.local", TYPE_A),
            ("cluster.local", TYPE_A),
            ("_tcp.web.default.svc.cluster.local", TYPE_A),
            ("_http._tcp.web.default.svc.cluster.local", TYPE_A),
            ("pending.default.svc.cluster.local", TYPE_A),
            ("pg-0.pg.db.svc.cluster.local", TYPE_AAAA),
        ] {
            let a = ask(q, t);
            assert_eq!((a.rcode, a.answers.len()), (RCODE_NOERROR, 0), "{q}");
            assert_eq!(a.authority.len(), 1, "{q}");
        }
    }

    #[test]
    fn a_headless_service_resolves_to_its_ready_endpoints() {
        let a = ask("pg.db.svc.cluster.local", TYPE_A);
        assert_eq!(
            show(&a.answers),
            [
                "pg.db.svc.cluster.local. 5 A 10.42.0.5",
                "pg.db.svc.cluster.local. 5 A 10.42.0.6",
            ]
        );
    }

    #[test]
    fn endpoints_with_hostnames_get_their_own_names() {
        let a = ask("PG-0.pg.db.svc.cluster.local", TYPE_A);
        assert_eq!(
            show(&a.answers),
            ["PG-0.pg.db.svc.cluster.local. 5 A 10.42.0.5"]
        );
        // Not ready: gone.
        assert_eq!(
            ask("pg-2.pg.db.svc.cluster.local", TYPE_A).rcode,
            RCODE_NXDOMAIN
        );
        // Without a hostname: its dashed address.
        let a = ask("10-42-0-6.pg.db.svc.cluster.local", TYPE_A);
        assert_eq!(
            show(&a.answers),
            ["10-42-0-6.pg.db.svc.cluster.local. 5 A 10.42.0.6"]
        );
    }

    #[test]
    fn srv_records_of_a_cluster_ip_service_point_at_the_service() {
        let a = ask("_http._tcp.web.default.svc.cluster.local", TYPE_SRV);
        assert_eq!(
            show(&a.answers),
            [
                "_http._tcp.web.default.svc.cluster.local. 5 SRV 0 100 80 web.default.svc.cluster.local."
            ]
        );
        assert_eq!(
            show(&a.additional),
            ["web.default.svc.cluster.local. 5 A 10.43.0.20"]
        );
    }

    #[test]
    fn srv_records_of_a_headless_service_name_each_endpoint() {
        let a = ask("_db._tcp.pg.db.svc.cluster.local", TYPE_SRV);
        assert_eq!(
            show(&a.answers),
            [
                "_db._tcp.pg.db.svc.cluster.local. 5 SRV 0 50 5432 pg-0.pg.db.svc.cluster.local.",
                "_db._tcp.pg.db.svc.cluster.local. 5 SRV 0 50 5432 10-42-0-6.pg.db.svc.cluster.local.",
            ]
        );
        assert_eq!(
            show(&a.additional),
            [
                "pg-0.pg.db.svc.cluster.local. 5 A 10.42.0.5",
                "10-42-0-6.pg.db.svc.cluster.local. 5 A 10.42.0.6",
            ]
        );
    }

    #[test]
    fn external_name_services_are_cnames_chased_inside_the_zone() {
        let a = ask("ext.default.svc.cluster.local", TYPE_A);
        assert_eq!(
            show(&a.answers),
            ["ext.default.svc.cluster.local. 5 CNAME example.com."]
        );
        assert_eq!(a.chase, Some(name("example.com")));
        let a = ask("alias.default.svc.cluster.local", TYPE_A);
        assert_eq!(
            show(&a.answers),
            [
                "alias.default.svc.cluster.local. 5 CNAME web.default.svc.cluster.local.",
                "web.default.svc.cluster.local. 5 A 10.43.0.20",
            ]
        );
        assert_eq!(a.chase, None);
        let a = ask("ext.default.svc.cluster.local", TYPE_CNAME);
        assert_eq!(a.answers.len(), 1);
        assert_eq!(a.chase, None);
    }

    #[test]
    fn pod_names_resolve_to_the_address_they_spell() {
        let a = ask("10-42-1-7.any.pod.cluster.local", TYPE_A);
        assert_eq!(
            show(&a.answers),
            ["10-42-1-7.any.pod.cluster.local. 5 A 10.42.1.7"]
        );
        let a = ask("10-42-1-7.any.pod.cluster.local", TYPE_AAAA);
        assert_eq!((a.rcode, a.answers.len()), (RCODE_NOERROR, 0));
    }

    #[test]
    fn ptr_records_exist_for_cluster_ips_and_endpoint_hostnames() {
        let a = ask("20.0.43.10.in-addr.arpa", TYPE_PTR);
        assert_eq!(
            show(&a.answers),
            ["20.0.43.10.in-addr.arpa. 5 PTR web.default.svc.cluster.local."]
        );
        let a = ask("5.0.42.10.IN-ADDR.ARPA.", TYPE_PTR);
        assert_eq!(
            show(&a.answers),
            ["5.0.42.10.IN-ADDR.ARPA. 5 PTR pg-0.pg.db.svc.cluster.local."]
        );
        // Unknown addresses (and the dashed-name endpoint) are not ours: they go upstream.
        let q = |n: &str| Question {
            name: name(n),
            qtype: TYPE_PTR,
            qclass: CLASS_IN,
        };
        assert!(resolve_reverse(&zone(), &index(), &q("6.0.42.10.in-addr.arpa")).is_none());
        assert!(resolve_reverse(&zone(), &index(), &q("1.1.1.1.in-addr.arpa")).is_none());
        assert!(resolve(&zone(), &index(), &q("example.com")).is_none());
    }

    #[test]
    fn the_apex_has_soa_and_ns_and_the_schema_version() {
        let a = ask("cluster.local", TYPE_NS);
        assert_eq!(
            show(&a.answers),
            ["cluster.local. 5 NS ns.dns.cluster.local."]
        );
        assert_eq!(
            show(&a.additional),
            ["ns.dns.cluster.local. 5 A 10.43.0.10"]
        );
        assert_eq!(ask("cluster.local", TYPE_SOA).answers.len(), 1);
        let a = ask("dns-version.cluster.local", TYPE_TXT);
        assert_eq!(
            show(&a.answers),
            ["dns-version.cluster.local. 5 TXT [[49, 46, 49, 46, 48]]"]
        );
    }

    #[test]
    fn srv_on_the_service_name_lists_every_port() {
        let a = ask("web.default.svc.cluster.local", TYPE_SRV);
        let ports: Vec<u16> = a
            .answers
            .iter()
            .filter_map(|r| match r.data {
                RData::Srv { port, .. } => Some(port),
                _ => None,
            })
            .collect();
        assert_eq!(ports, [80, 53]);
    }
}
