//! Services, endpoints, endpoint slices, ingresses, ingress classes and network policies.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Endpoints, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicySpec;
use serde_json::Value;

use super::{Row, age, cells};
use crate::columns::{self, Column, doc};
use crate::json::{arr_at, get, int_at, name, opt_int, opt_str, str_at};
use crate::labels::{format_label_selector, format_labels};
use crate::time::Time;

pub(super) fn service_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new("Type", "string", doc::<ServiceSpec>("type")),
        Column::new("Cluster-IP", "string", doc::<ServiceSpec>("clusterIP")),
        Column::new("External-IP", "string", doc::<ServiceSpec>("externalIPs")),
        Column::new("Port(s)", "string", doc::<ServiceSpec>("ports")),
        columns::age(),
        Column::new("Selector", "string", doc::<ServiceSpec>("selector")).wide(),
    ]
}

/// Load-balancer ingress points (IP, else hostname), sorted and without repeats.
fn load_balancer_addresses(status: &Value) -> String {
    let addresses: BTreeSet<&str> = arr_at(status, &["loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| match (str_at(i, &["ip"]), str_at(i, &["hostname"])) {
            ("", "") => None,
            ("", host) => Some(host),
            (ip, _) => Some(ip),
        })
        .collect();
    addresses.into_iter().collect::<Vec<_>>().join(",")
}

fn service_external_ip(service: &Value, kind: &str) -> String {
    let external_ips: Vec<&str> = arr_at(service, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match kind {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_owned(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let lb = get(service, &["status"])
                .map(load_balancer_addresses)
                .unwrap_or_default();
            if !external_ips.is_empty() {
                let mut all: Vec<&str> = if lb.is_empty() {
                    Vec::new()
                } else {
                    lb.split(',').collect()
                };
                all.extend(external_ips);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_owned()
            }
        }
        "ExternalName" => str_at(service, &["spec", "externalName"]).to_owned(),
        _ => "<unknown>".to_owned(),
    }
}

/// `80/TCP,443:30443/TCP`.
fn service_ports(service: &Value) -> String {
    let ports: Vec<String> = arr_at(service, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = int_at(p, &["port"]);
            let protocol = opt_str(p, &["protocol"]).unwrap_or("TCP");
            match int_at(p, &["nodePort"]) {
                node_port if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".to_owned()
    } else {
        ports.join(",")
    }
}

pub(super) fn service_row(service: &Value, now: Time) -> Row {
    // `type` defaults to ClusterIP; `clusterIP` is authoritative over `clusterIPs`.
    let kind = opt_str(service, &["spec", "type"]).unwrap_or("ClusterIP");
    let cluster_ip = match str_at(service, &["spec", "clusterIP"]) {
        "" => arr_at(service, &["spec", "clusterIPs"])
            .first()
            .and_then(Value::as_str)
            .unwrap_or(""),
        ip => ip,
    };
    cells![
        name(service),
        kind,
        if cluster_ip.is_empty() {
            "<none>"
        } else {
            cluster_ip
        },
        service_external_ip(service, kind),
        service_ports(service),
        age(service, now),
        format_labels(get(service, &["spec", "selector"])),
    ]
}

pub(super) fn endpoints_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new("Endpoints", "string", doc::<Endpoints>("subsets")),
        columns::age(),
    ]
}

/// `host:port`, with brackets around IPv6 hosts.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The first three endpoints, then `+ N more...`; `<none>` without subsets.
fn format_endpoints(endpoints: &Value) -> String {
    const MAX: usize = 3;
    let subsets = arr_at(endpoints, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_owned();
    }
    let mut list: Vec<String> = Vec::new();
    let mut count = 0usize;
    let mut more = false;
    for subset in subsets {
        let addresses = arr_at(subset, &["addresses"]);
        let ports = arr_at(subset, &["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            for address in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(str_at(address, &["ip"]).to_owned());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for address in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(
                    str_at(address, &["ip"]),
                    int_at(port, &["port"]),
                ));
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

pub(super) fn endpoints_row(endpoints: &Value, now: Time) -> Row {
    cells![
        name(endpoints),
        format_endpoints(endpoints),
        age(endpoints, now)
    ]
}

pub(super) fn endpoint_slice_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new("AddressType", "string", doc::<EndpointSlice>("addressType")),
        Column::new("Ports", "string", doc::<EndpointSlice>("ports")),
        Column::new("Endpoints", "string", doc::<EndpointSlice>("endpoints")),
        columns::age(),
    ]
}

/// The first three items, then `+ N more...`; `<unset>` when there are none.
fn list_with_more(items: Vec<String>) -> String {
    const MAX: usize = 3;
    let count = items.len();
    let joined = items.into_iter().take(MAX).collect::<Vec<_>>().join(",");
    if count > MAX {
        format!("{joined} + {} more...", count - MAX)
    } else if joined.is_empty() {
        "<unset>".to_owned()
    } else {
        joined
    }
}

pub(super) fn endpoint_slice_row(slice: &Value, now: Time) -> Row {
    let ports = arr_at(slice, &["ports"])
        .iter()
        .map(|p| match (opt_int(p, &["port"]), opt_str(p, &["name"])) {
            (Some(port), _) => port.to_string(),
            (None, Some(port_name)) => port_name.to_owned(),
            (None, None) => "*".to_owned(),
        })
        .collect();
    let endpoints = arr_at(slice, &["endpoints"])
        .iter()
        .flat_map(|e| arr_at(e, &["addresses"]))
        .map(|a| a.as_str().unwrap_or("").to_owned())
        .collect();
    cells![
        name(slice),
        str_at(slice, &["addressType"]),
        list_with_more(ports),
        list_with_more(endpoints),
        age(slice, now),
    ]
}

pub(super) fn ingress_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new(
            "Class",
            "string",
            "The name of the IngressClass resource that should be used for additional configuration",
        ),
        Column::new(
            "Hosts",
            "string",
            "Hosts that incoming requests are matched against before the ingress rule",
        ),
        Column::new(
            "Address",
            "string",
            "Address is a list containing ingress points for the load-balancer",
        ),
        Column::new("Ports", "string", "Ports of TLS configurations that open"),
        columns::age(),
    ]
}

/// The first three rule hosts, `*` when no rule names a host.
fn format_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == MAX {
            more = true;
        }
        let host = str_at(rule, &["host"]);
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".to_owned();
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - MAX)
    } else {
        joined
    }
}

pub(super) fn ingress_row(ingress: &Value, now: Time) -> Row {
    let ports = if arr_at(ingress, &["spec", "tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    cells![
        name(ingress),
        opt_str(ingress, &["spec", "ingressClassName"]).unwrap_or("<none>"),
        format_hosts(arr_at(ingress, &["spec", "rules"])),
        get(ingress, &["status"])
            .map(load_balancer_addresses)
            .unwrap_or_default(),
        ports,
        age(ingress, now),
    ]
}

pub(super) fn ingress_class_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new(
            "Controller",
            "string",
            "Controller that is responsible for handling this class",
        ),
        Column::new(
            "Parameters",
            "string",
            "A reference to a resource with additional parameters",
        ),
        columns::age(),
    ]
}

pub(super) fn ingress_class_row(class: &Value, now: Time) -> Row {
    let parameters = match get(class, &["spec", "parameters"]) {
        None => "<none>".to_owned(),
        Some(p) => {
            let kind = match opt_str(p, &["apiGroup"]) {
                Some(group) => format!("{}.{group}", str_at(p, &["kind"])),
                None => str_at(p, &["kind"]).to_owned(),
            };
            format!("{kind}/{}", str_at(p, &["name"]))
        }
    };
    cells![
        name(class),
        str_at(class, &["spec", "controller"]),
        parameters,
        age(class, now)
    ]
}

pub(super) fn network_policy_columns() -> Vec<Column> {
    vec![
        columns::name(),
        Column::new(
            "Pod-Selector",
            "string",
            doc::<NetworkPolicySpec>("podSelector"),
        ),
        columns::age(),
    ]
}

pub(super) fn network_policy_row(policy: &Value, now: Time) -> Row {
    cells![
        name(policy),
        format_label_selector(get(policy, &["spec", "podSelector"])),
        age(policy, now),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_list_three_then_count_the_rest() {
        let cases = [
            (json!({}), "<none>"),
            (
                json!({"subsets": [{"addresses": [{"ip": "10.42.0.5"}], "ports": [{"port": 80}]}]}),
                "10.42.0.5:80",
            ),
            (
                json!({"subsets": [{"addresses": [{"ip": "10.42.0.5"}, {"ip": "10.42.0.6"}, {"ip": "10.42.0.7"}, {"ip": "10.42.0.8"}, {"ip": "10.42.0.9"}], "ports": [{"port": 80}]}]}),
                "10.42.0.5:80,10.42.0.6:80,10.42.0.7:80 + 2 more...",
            ),
            (
                json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]}),
                "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...",
            ),
            (
                json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 53}]}]}),
                "[fd00::1]:53",
            ),
            (
                json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]}),
                "10.0.0.1",
            ),
            (
                json!({"subsets": [{"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}),
                "",
            ),
        ];
        for (endpoints, want) in cases {
            assert_eq!(format_endpoints(&endpoints), want, "{endpoints}");
        }
    }

    #[test]
    fn ingress_hosts_default_to_star() {
        assert_eq!(format_hosts(&[]), "*");
        assert_eq!(format_hosts(&[json!({"http": {}})]), "*");
        let rules: Vec<Value> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|h| json!({"host": h}))
            .collect();
        assert_eq!(format_hosts(&rules), "a,b,c + 2 more...");
    }

    #[test]
    fn load_balancer_external_ips() {
        let lb = json!({"spec": {"type": "LoadBalancer", "externalIPs": ["1.2.3.4"]},
                        "status": {"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}, {"ip": "9.9.9.9"}]}}});
        assert_eq!(
            service_external_ip(&lb, "LoadBalancer"),
            "9.9.9.9,lb.example.com,1.2.3.4"
        );
        let pending = json!({"spec": {"type": "LoadBalancer"}});
        assert_eq!(service_external_ip(&pending, "LoadBalancer"), "<pending>");
        let external_name =
            json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}});
        assert_eq!(
            service_external_ip(&external_name, "ExternalName"),
            "db.example.com"
        );
    }
}
