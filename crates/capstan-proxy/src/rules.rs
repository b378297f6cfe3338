//! The iptables rules for a set of service ports, in `iptables-restore` input form. The chain names
//! and the shape are kube-proxy's (iptables mode), so that someone who knows `iptables -t nat -L
//! KUBE-SERVICES` finds their way:
//!
//! - nat `KUBE-SERVICES` (from PREROUTING and OUTPUT): cluster IP and external IP matches jump to a
//!   per-port `KUBE-SVC-*` (or `KUBE-EXT-*`), and local addresses go on to `KUBE-NODEPORTS`.
//! - `KUBE-SVC-*` picks an endpoint at random (`statistic`, equal weights), `KUBE-SEP-*` DNATs to it.
//! - Traffic from outside the pod network, and a pod reaching itself through its Service (hairpin),
//!   is marked and masqueraded in `KUBE-POSTROUTING`.
//! - filter `KUBE-SERVICES` rejects connections to ports without endpoints (connection refused rather
//!   than a silent timeout); `KUBE-EXTERNAL-SERVICES` does the same for node ports.
//!
//! Rendering is a pure function; the caller applies it with `iptables-restore --noflush`, which
//! replaces exactly the chains declared here and leaves everyone else's rules alone.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::model::ServicePort;

/// The mark that asks `KUBE-POSTROUTING` to masquerade a packet (kube-proxy's bit).
pub(crate) const MASQ_MARK: &str = "0x4000/0x4000";

/// Chains whose names carry a hash: the ones made per service port or endpoint.
pub(crate) const HASHED_PREFIXES: [&str; 4] = ["KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-SVL-"];

/// The rules that send traffic from the built-in chains into ours (`table`, `chain`, rule args).
pub(crate) const JUMPS: [(&str, &str, &str); 11] = [
    ("filter", "INPUT", "-j KUBE-FIREWALL"),
    ("filter", "OUTPUT", "-j KUBE-FIREWALL"),
    (
        "nat",
        "PREROUTING",
        "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    ),
    (
        "nat",
        "OUTPUT",
        "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    ),
    (
        "nat",
        "POSTROUTING",
        "-m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
    ),
    (
        "filter",
        "INPUT",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
    ),
    (
        "filter",
        "FORWARD",
        "-m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD",
    ),
    (
        "filter",
        "FORWARD",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    ),
    (
        "filter",
        "FORWARD",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
    ),
    (
        "filter",
        "OUTPUT",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
    ),
    (
        "filter",
        "OUTPUT",
        "-m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES",
    ),
];

/// What the rules depend on besides the service ports.
#[derive(Debug, Clone)]
pub(crate) struct RuleContext<'a> {
    pub(crate) node_name: &'a str,
    /// The pod network: traffic from elsewhere to a cluster IP is masqueraded.
    pub(crate) cluster_cidr: &'a str,
}

/// A short stable hash for chain names (FNV-1a, 64 bits, 16 hex digits): chain names are limited to
/// 28 characters, so they cannot carry the service's name.
pub(crate) fn chain_hash(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016X}")
}

fn port_chain(prefix: &str, port: &ServicePort) -> String {
    let port_number = port.port.to_string();
    format!(
        "{prefix}{}",
        chain_hash(&[
            &port.namespace,
            &port.service,
            &port.port_name,
            port.protocol,
            &port_number
        ])
    )
}

fn endpoint_chain(port: &ServicePort, ip: &str, endpoint_port: u16) -> String {
    let base = port_chain("", port);
    let endpoint_port = endpoint_port.to_string();
    format!("KUBE-SEP-{}", chain_hash(&[&base, ip, &endpoint_port]))
}

/// The `iptables-restore` input for `ports`, plus the names of every hashed chain it declares (so
/// the caller can delete the stale ones it finds on the host).
pub(crate) fn render(
    ports: &[ServicePort],
    ctx: &RuleContext<'_>,
    stale: &BTreeSet<String>,
) -> (String, BTreeSet<String>) {
    let mut filter_rules = String::new();
    let mut nat_chains: BTreeSet<String> = BTreeSet::new();
    let mut nat_rules = String::new();
    let mut services = String::new();
    let mut nodeports = String::new();

    for port in ports {
        let name = port.display_name();
        let proto = port.protocol;
        let svc_chain = port_chain("KUBE-SVC-", port);
        let ext_chain = port_chain("KUBE-EXT-", port);
        let svl_chain = port_chain("KUBE-SVL-", port);
        let cluster_endpoints = port.usable_endpoints(ctx.node_name, port.internal_local);
        let local_endpoints = port.usable_endpoints(ctx.node_name, true);
        let all_endpoints = port.usable_endpoints(ctx.node_name, false);

        // Cluster IP.
        if let Some(ip) = port.cluster_ip {
            if cluster_endpoints.is_empty() {
                let _ = writeln!(
                    filter_rules,
                    "-A KUBE-SERVICES -m comment --comment \"{name} has no endpoints\" -d {ip}/32 -p {proto} -m {proto} --dport {} -j REJECT",
                    port.port
                );
            } else {
                let _ = writeln!(
                    services,
                    "-A KUBE-SERVICES -m comment --comment \"{name} cluster IP\" -d {ip}/32 -p {proto} -m {proto} --dport {} -j {svc_chain}",
                    port.port
                );
            }
        }

        // Node port and external IPs.
        if port.has_external() {
            let external_endpoints = if port.external_local {
                &local_endpoints
            } else {
                &all_endpoints
            };
            if external_endpoints.is_empty() {
                let reason = if port.external_local && !all_endpoints.is_empty() {
                    "has no local endpoints"
                } else {
                    "has no endpoints"
                };
                let target = if reason == "has no endpoints" {
                    "REJECT"
                } else {
                    "DROP"
                };
                if let Some(node_port) = port.node_port {
                    let _ = writeln!(
                        filter_rules,
                        "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"{name} {reason}\" -m addrtype --dst-type LOCAL -p {proto} -m {proto} --dport {node_port} -j {target}"
                    );
                }
                for ip in &port.external_ips {
                    let _ = writeln!(
                        filter_rules,
                        "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"{name} {reason}\" -d {ip}/32 -p {proto} -m {proto} --dport {} -j {target}",
                        port.port
                    );
                }
            } else {
                if let Some(node_port) = port.node_port {
                    let _ = writeln!(
                        nodeports,
                        "-A KUBE-NODEPORTS -m comment --comment \"{name}\" -p {proto} -m {proto} --dport {node_port} -j {ext_chain}"
                    );
                }
                for ip in &port.external_ips {
                    let _ = writeln!(
                        services,
                        "-A KUBE-SERVICES -m comment --comment \"{name} external IP\" -d {ip}/32 -p {proto} -m {proto} --dport {} -j {ext_chain}",
                        port.port
                    );
                }
                nat_chains.insert(ext_chain.clone());
                if port.external_local {
                    // Pods and the node itself may use any endpoint; outside clients keep their
                    // source address and reach this node's endpoints only.
                    let _ = writeln!(
                        nat_rules,
                        "-A {ext_chain} -m comment --comment \"pod traffic for {name} external destinations\" -s {} -j {svc_chain}",
                        ctx.cluster_cidr
                    );
                    let _ = writeln!(
                        nat_rules,
                        "-A {ext_chain} -m comment --comment \"masquerade LOCAL traffic for {name} external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"
                    );
                    let _ = writeln!(
                        nat_rules,
                        "-A {ext_chain} -m comment --comment \"route LOCAL traffic for {name} external destinations\" -m addrtype --src-type LOCAL -j {svc_chain}"
                    );
                    let _ = writeln!(nat_rules, "-A {ext_chain} -j {svl_chain}");
                    nat_chains.insert(svl_chain.clone());
                    balance(
                        &mut nat_rules,
                        &mut nat_chains,
                        port,
                        &svl_chain,
                        &local_endpoints,
                        None,
                    );
                } else {
                    let _ = writeln!(
                        nat_rules,
                        "-A {ext_chain} -m comment --comment \"masquerade traffic for {name} external destinations\" -j KUBE-MARK-MASQ"
                    );
                    let _ = writeln!(nat_rules, "-A {ext_chain} -j {svc_chain}");
                }
                // The EXT chain always ends in the SVC chain for some sources: make sure it exists.
                if cluster_endpoints.is_empty() && !nat_chains.contains(&svc_chain) {
                    nat_chains.insert(svc_chain.clone());
                    balance(
                        &mut nat_rules,
                        &mut nat_chains,
                        port,
                        &svc_chain,
                        &all_endpoints,
                        None,
                    );
                }
            }
        }

        if !cluster_endpoints.is_empty() {
            nat_chains.insert(svc_chain.clone());
            let masq = port.cluster_ip.map(|ip| {
                format!(
                    "-A {svc_chain} -m comment --comment \"{name} cluster IP\" ! -s {} -d {ip}/32 -p {proto} -m {proto} --dport {} -j KUBE-MARK-MASQ",
                    ctx.cluster_cidr, port.port
                )
            });
            balance(
                &mut nat_rules,
                &mut nat_chains,
                port,
                &svc_chain,
                &cluster_endpoints,
                masq,
            );
        }
    }

    let mut out = String::new();
    out.push_str("*filter\n");
    for chain in [
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FORWARD",
        "KUBE-FIREWALL",
    ] {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    out.push_str(&filter_rules);
    out.push_str(
        "-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n",
    );
    let _ = writeln!(
        out,
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {MASQ_MARK} -j ACCEPT"
    );
    out.push_str(
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n",
    );
    out.push_str("COMMIT\n*nat\n");
    for chain in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ] {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    for chain in nat_chains.iter().chain(stale.difference(&nat_chains)) {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    let _ = writeln!(
        out,
        "-A KUBE-MARK-MASQ -j MARK --or-mark {}",
        &MASQ_MARK[..6]
    );
    let _ = writeln!(
        out,
        "-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK} -j RETURN"
    );
    let _ = writeln!(
        out,
        "-A KUBE-POSTROUTING -j MARK --xor-mark {}",
        &MASQ_MARK[..6]
    );
    out.push_str(
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n",
    );
    out.push_str(&services);
    // Node ports last: every local address, loopback included (as kube-proxy's default: the node
    // sets route_localnet, and KUBE-FIREWALL drops outside packets aimed at 127/8).
    out.push_str(
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n",
    );
    out.push_str(&nodeports);
    out.push_str(&nat_rules);
    for chain in stale.difference(&nat_chains) {
        let _ = writeln!(out, "-X {chain}");
    }
    out.push_str("COMMIT\n");
    (out, nat_chains)
}

/// Fills `chain` with the rules that spread connections evenly over `endpoints` (with ClientIP
/// affinity first, when asked), and one `KUBE-SEP-*` chain per endpoint.
fn balance(
    rules: &mut String,
    chains: &mut BTreeSet<String>,
    port: &ServicePort,
    chain: &str,
    endpoints: &[&crate::model::Endpoint],
    first: Option<String>,
) {
    let name = port.display_name();
    let proto = port.protocol;
    if let Some(rule) = first {
        let _ = writeln!(rules, "{rule}");
    }
    let seps: Vec<(String, String)> = endpoints
        .iter()
        .map(|e| {
            let ip = e.ip.to_string();
            (
                endpoint_chain(port, &ip, e.port),
                format!("{ip}:{}", e.port),
            )
        })
        .collect();
    if let Some(seconds) = port.affinity_seconds {
        for (sep, target) in &seps {
            let _ = writeln!(
                rules,
                "-A {chain} -m comment --comment \"{name} -> {target}\" -m recent --name {sep} --mask 255.255.255.255 --rsource --rcheck --seconds {seconds} --reap -j {sep}"
            );
        }
    }
    let n = seps.len();
    for (i, (sep, target)) in seps.iter().enumerate() {
        if i + 1 < n {
            let probability = 1.0 / (n - i) as f64;
            let _ = writeln!(
                rules,
                "-A {chain} -m comment --comment \"{name} -> {target}\" -m statistic --mode random --probability {probability:.10} -j {sep}"
            );
        } else {
            let _ = writeln!(
                rules,
                "-A {chain} -m comment --comment \"{name} -> {target}\" -j {sep}"
            );
        }
    }
    for (endpoint, (sep, target)) in endpoints.iter().zip(&seps) {
        if !chains.insert(sep.clone()) {
            continue;
        }
        let _ = writeln!(
            rules,
            "-A {sep} -m comment --comment \"{name}\" -s {}/32 -j KUBE-MARK-MASQ",
            endpoint.ip
        );
        let affinity = if port.affinity_seconds.is_some() {
            format!(" -m recent --name {sep} --mask 255.255.255.255 --rsource --set")
        } else {
            String::new()
        };
        let _ = writeln!(
            rules,
            "-A {sep} -m comment --comment \"{name}\"{affinity} -p {proto} -m {proto} -j DNAT --to-destination {target}"
        );
    }
}

/// The hashed chain names in `iptables-save -t nat` output (the candidates for deletion).
pub(crate) fn hashed_chains(save: &str) -> BTreeSet<String> {
    save.lines()
        .filter_map(|line| line.strip_prefix(':'))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter(|chain| HASHED_PREFIXES.iter().any(|p| chain.starts_with(p)))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::service_ports;
    use crate::model::tests::{web, web_slice};

    fn ctx() -> RuleContext<'static> {
        RuleContext {
            node_name: "n1",
            cluster_cidr: "10.42.0.0/16",
        }
    }

    fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.contains(needle)).collect()
    }

    #[test]
    fn a_cluster_ip_balances_over_ready_endpoints_and_dnats_to_them() {
        let s = web_slice();
        let ports = service_ports(&web(), &[&s]);
        let (rules, chains) = render(&ports[..1], &ctx(), &BTreeSet::new());
        let svc = port_chain("KUBE-SVC-", &ports[0]);
        assert!(rules.contains(&format!(
            "-A KUBE-SERVICES -m comment --comment \"default/web:http cluster IP\" -d 10.43.0.20/32 -p tcp -m tcp --dport 80 -j {svc}"
        )));
        let picks = lines_with(&rules, &format!("-A {svc} "));
        // Masquerade for non-pod sources, then two endpoints: 1/2, then the rest.
        assert_eq!(picks.len(), 3, "{rules}");
        assert!(picks[0].contains("! -s 10.42.0.0/16") && picks[0].ends_with("-j KUBE-MARK-MASQ"));
        assert!(picks[1].contains("--probability 0.5000000000"));
        assert!(!picks[2].contains("statistic"));
        assert_eq!(
            lines_with(&rules, "-j DNAT --to-destination 10.42.0.7:8080").len(),
            1
        );
        assert_eq!(
            lines_with(&rules, "-j DNAT --to-destination 10.42.1.9:8080").len(),
            1
        );
        // The terminating endpoint is not used while ready ones exist.
        assert!(lines_with(&rules, "10.42.0.8").is_empty());
        assert!(chains.contains(&svc));
        assert_eq!(
            chains.iter().filter(|c| c.starts_with("KUBE-SEP-")).count(),
            2
        );
    }

    #[test]
    fn node_ports_go_through_an_ext_chain_that_masquerades() {
        let s = web_slice();
        let ports = service_ports(&web(), &[&s]);
        let (rules, _) = render(&ports, &ctx(), &BTreeSet::new());
        let ext = port_chain("KUBE-EXT-", &ports[0]);
        let svc = port_chain("KUBE-SVC-", &ports[0]);
        assert!(rules.contains(&format!(
            "-A KUBE-NODEPORTS -m comment --comment \"default/web:http\" -p tcp -m tcp --dport 30080 -j {ext}"
        )));
        assert!(rules.contains(&format!("-A {ext} -j {svc}")));
        assert!(rules.contains(&format!(
            "-A {ext} -m comment --comment \"masquerade traffic for default/web:http external destinations\" -j KUBE-MARK-MASQ"
        )));
        // UDP ports use the udp match.
        assert!(rules.contains("-p udp -m udp --dport 30053"));
        // Node ports come after every service rule.
        let nodeports = rules.find("-j KUBE-NODEPORTS").expect("nodeports jump");
        let last_service = rules.rfind("cluster IP\" -d").expect("service rule");
        assert!(nodeports > last_service);
    }

    #[test]
    fn ports_without_endpoints_are_rejected_in_the_filter_table() {
        let ports = service_ports(&web(), &[]);
        let (rules, chains) = render(&ports, &ctx(), &BTreeSet::new());
        assert!(rules.contains(
            "-A KUBE-SERVICES -m comment --comment \"default/web:http has no endpoints\" -d 10.43.0.20/32 -p tcp -m tcp --dport 80 -j REJECT"
        ));
        assert!(rules.contains(
            "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"default/web:http has no endpoints\" -m addrtype --dst-type LOCAL -p tcp -m tcp --dport 30080 -j REJECT"
        ));
        assert!(chains.is_empty());
        // The REJECT is in the filter table, before its COMMIT.
        let reject = rules.find("-j REJECT").expect("reject");
        assert!(reject < rules.find("*nat").expect("nat table"));
    }

    #[test]
    fn stale_chains_are_flushed_and_deleted_and_live_ones_kept() {
        let s = web_slice();
        let ports = service_ports(&web(), &[&s]);
        let live = port_chain("KUBE-SVC-", &ports[0]);
        let stale = BTreeSet::from([live.clone(), "KUBE-SVC-0000000000000000".to_string()]);
        let (rules, _) = render(&ports, &ctx(), &stale);
        assert!(rules.contains(":KUBE-SVC-0000000000000000 - [0:0]\n"));
        assert!(rules.contains("-X KUBE-SVC-0000000000000000\n"));
        assert!(!rules.contains(&format!("-X {live}")));
        assert_eq!(lines_with(&rules, &format!(":{live} ")).len(), 1);
    }

    #[test]
    fn client_ip_affinity_checks_the_recent_list_before_balancing() {
        let s = web_slice();
        let mut ports = service_ports(&web(), &[&s]);
        ports.truncate(1);
        ports[0].affinity_seconds = Some(600);
        let (rules, _) = render(&ports, &ctx(), &BTreeSet::new());
        let svc = port_chain("KUBE-SVC-", &ports[0]);
        let picks = lines_with(&rules, &format!("-A {svc} "));
        assert!(picks[1].contains("--rcheck --seconds 600 --reap"));
        assert!(picks[2].contains("--rcheck"));
        assert!(picks[3].contains("statistic"));
        assert_eq!(lines_with(&rules, "--rsource --set -p tcp").len(), 2);
    }

    #[test]
    fn external_traffic_policy_local_keeps_outside_clients_on_local_endpoints() {
        let s = web_slice();
        let mut ports = service_ports(&web(), &[&s]);
        ports.truncate(1);
        ports[0].external_local = true;
        let (rules, _) = render(
            &ports,
            &RuleContext {
                node_name: "n2",
                cluster_cidr: "10.42.0.0/16",
            },
            &BTreeSet::new(),
        );
        let svl = port_chain("KUBE-SVL-", &ports[0]);
        let local = lines_with(&rules, &format!("-A {svl} "));
        assert_eq!(local.len(), 1, "{rules}");
        assert!(local[0].contains("10.42.1.9:8080"));
        // A node without local endpoints drops outside traffic to the node port.
        let (rules, _) = render(
            &ports,
            &RuleContext {
                node_name: "n3",
                cluster_cidr: "10.42.0.0/16",
            },
            &BTreeSet::new(),
        );
        assert!(rules.contains("has no local endpoints\" -m addrtype --dst-type LOCAL -p tcp -m tcp --dport 30080 -j DROP"));
    }

    /// The real `iptables-restore` parses and builds the whole ruleset (`--test`: nothing is committed).
    #[test]
    fn iptables_restore_accepts_the_rendered_rules() {
        use std::io::Write as _;
        let s = web_slice();
        let mut ports = service_ports(&web(), &[&s]);
        let mut sticky = ports[0].clone();
        sticky.service = "sticky".into();
        sticky.affinity_seconds = Some(60);
        sticky.external_local = true;
        sticky.external_ips = vec!["192.0.2.10".parse().expect("ip")];
        ports.push(sticky);
        ports.extend(service_ports(&web(), &[]).into_iter().map(|mut p| {
            p.service = "empty".into();
            p
        }));
        let stale = BTreeSet::from(["KUBE-SEP-0123456789ABCDEF".to_string()]);
        let (rules, _) = render(&ports, &ctx(), &stale);
        let mut child = std::process::Command::new("iptables-restore")
            .args(["--test", "--noflush", "-w", "5"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("iptables-restore is installed (scripts/setup.sh)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(rules.as_bytes())
            .expect("write rules");
        let out = child.wait_with_output().expect("iptables-restore");
        assert!(
            out.status.success(),
            "{}\n{rules}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn hashed_chains_are_read_from_iptables_save() {
        let save = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-ABC - [0:0]\n:KUBE-SEP-DEF - [0:0]\n:CNI-123 - [0:0]\n-A KUBE-SVC-ABC -j KUBE-SEP-DEF\nCOMMIT\n";
        let chains = hashed_chains(save);
        assert_eq!(
            chains,
            BTreeSet::from(["KUBE-SEP-DEF".to_string(), "KUBE-SVC-ABC".to_string()])
        );
    }

    #[test]
    fn chain_names_fit_iptables_limit_and_differ_per_port() {
        let s = web_slice();
        let ports = service_ports(&web(), &[&s]);
        let a = port_chain("KUBE-SVC-", &ports[0]);
        let b = port_chain("KUBE-SVC-", &ports[1]);
        assert_ne!(a, b);
        assert!(a.len() <= 28);
        assert!(endpoint_chain(&ports[0], "10.42.0.7", 8080).len() <= 28);
    }
}
