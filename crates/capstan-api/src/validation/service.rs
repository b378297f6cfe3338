//! Services (`ValidateService`, `ValidateServiceUpdate`).

use std::collections::BTreeSet;

use serde_json::Value;

use super::json::{arr, child, get, index, int, opt_str, str_of};
use super::meta::validate_labels;
use super::names::{NameRule, is_dns1123_label, is_ip, is_port_num, is_qualified_name};
use super::pod::{validate_port_num_or_name, validate_protocol};
use super::{
    FieldError, duplicate, forbidden, gofmt, invalid_num, invalid_raw, invalid_str, not_supported,
    required,
};

/// The default `--service-node-port-range`.
const NODE_PORT_RANGE: (i64, i64) = (30000, 32767);

fn is_headless(spec: &Value) -> bool {
    let ips = arr(spec, "clusterIPs");
    ips.len() == 1 && ips[0].as_str() == Some("None")
}

/// `ExternallyAccessible`: NodePort, LoadBalancer, or ClusterIP with external IPs.
pub(crate) fn externally_accessible(spec: &Value) -> bool {
    match str_of(spec, "type") {
        "LoadBalancer" | "NodePort" => true,
        "ClusterIP" => !arr(spec, "externalIPs").is_empty(),
        _ => false,
    }
}

pub(crate) fn validate_service(errs: &mut Vec<FieldError>, svc: &Value, old: Option<&Value>) {
    let spec = svc.get("spec").unwrap_or(&Value::Null);
    let ty = str_of(spec, "type");
    let ports = arr(spec, "ports");
    let headless = is_headless(spec);
    if let Some(old) = old {
        validate_update(errs, spec, old.get("spec").unwrap_or(&Value::Null));
    }
    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(required("spec.ports", ""));
    }
    match ty {
        "LoadBalancer" | "NodePort" if headless => {
            errs.push(invalid_str(
                "spec.clusterIPs[0]",
                "None",
                format!("may not be set to 'None' for {ty} services"),
            ));
        }
        "ExternalName" => {
            if !arr(spec, "clusterIPs").is_empty() {
                errs.push(forbidden(
                    "spec.clusterIPs",
                    "may not be set for ExternalName services",
                ));
            }
            if !arr(spec, "ipFamilies").is_empty() {
                errs.push(forbidden(
                    "spec.ipFamilies",
                    "may not be set for ExternalName services",
                ));
            }
            if get(spec, "ipFamilyPolicy").is_some() {
                errs.push(forbidden(
                    "spec.ipFamilyPolicy",
                    "may not be set for ExternalName services",
                ));
            }
            let name = str_of(spec, "externalName");
            let cname = name.strip_suffix('.').unwrap_or(name);
            if cname.is_empty() {
                errs.push(required("spec.externalName", ""));
            } else {
                for msg in NameRule::Dns1123Subdomain.check(cname, false) {
                    errs.push(invalid_str("spec.externalName", cname, msg));
                }
            }
        }
        _ => {}
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = index("spec.ports", i);
        let name = str_of(port, "name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(required(child(&pp, "name"), ""));
        } else if !name.is_empty() {
            for msg in is_dns1123_label(name) {
                errs.push(invalid_str(child(&pp, "name"), name, msg));
            }
            if !names.insert(name) {
                errs.push(duplicate(child(&pp, "name"), gofmt::quote(name)));
            }
        }
        let number = int(port, "port").unwrap_or(0);
        for msg in is_port_num(number) {
            errs.push(invalid_num(child(&pp, "port"), number, msg));
        }
        validate_protocol(errs, port, &child(&pp, "protocol"));
        validate_port_num_or_name(errs, port.get("targetPort"), &child(&pp, "targetPort"));
        if let Some(ap) = opt_str(port, "appProtocol") {
            for msg in is_qualified_name(ap) {
                errs.push(invalid_str(child(&pp, "appProtocol"), ap, msg));
            }
        }
        let node_port = int(port, "nodePort").unwrap_or(0);
        if node_port != 0
            && ty != "ClusterIP"
            && !(NODE_PORT_RANGE.0..=NODE_PORT_RANGE.1).contains(&node_port)
        {
            errs.push(invalid_num(
                child(&pp, "nodePort"),
                node_port,
                format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    NODE_PORT_RANGE.0, NODE_PORT_RANGE.1
                ),
            ));
        }
    }
    validate_labels(errs, spec, "selector", "spec.selector");
    match str_of(spec, "sessionAffinity") {
        "" => errs.push(required("spec.sessionAffinity", "")),
        "ClientIP" => {
            let path = "spec.sessionAffinityConfig";
            let when = "when session affinity type is ClientIP";
            match get(spec, "sessionAffinityConfig") {
                None => errs.push(required(path, when)),
                Some(cfg) => match get(cfg, "clientIP") {
                    None => errs.push(required(child(path, "clientIP"), when)),
                    Some(cip) => match int(cip, "timeoutSeconds") {
                        None => errs.push(required(child(path, "clientIP.timeoutSeconds"), when)),
                        Some(t) if !(1..=86400).contains(&t) => errs.push(invalid_num(
                            child(path, "clientIP.timeoutSeconds"),
                            t,
                            "must be greater than 0 and less than 86400",
                        )),
                        Some(_) => {}
                    },
                },
            }
        }
        "None" => {
            if get(spec, "sessionAffinityConfig").is_some() {
                errs.push(forbidden(
                    "spec.sessionAffinityConfig",
                    "must not be set when session affinity is None",
                ));
            }
        }
        other => errs.push(not_supported(
            "spec.sessionAffinity",
            other,
            &["ClientIP", "None"],
        )),
    }
    validate_cluster_ips(errs, spec);
    for (i, ip) in arr(spec, "externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        let path = index("spec.externalIPs", i);
        let msgs = is_ip(ip);
        if msgs.is_empty() {
            validate_non_special_ip(errs, ip, &path);
        }
        for msg in msgs {
            errs.push(invalid_str(&path, ip, msg));
        }
    }
    match ty {
        "" => errs.push(required("spec.type", "")),
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName" => {}
        other => errs.push(not_supported(
            "spec.type",
            other,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
    }
    if ty == "ClusterIP" {
        for (i, port) in ports.iter().enumerate() {
            if int(port, "nodePort").unwrap_or(0) != 0 {
                errs.push(forbidden(
                    child(&index("spec.ports", i), "nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports = BTreeSet::new();
    let mut port_keys = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let protocol = str_of(port, "protocol");
        let np = int(port, "nodePort").unwrap_or(0);
        if np != 0 && !node_ports.insert((protocol, np)) {
            errs.push(duplicate(
                child(&index("spec.ports", i), "nodePort"),
                np.to_string(),
            ));
        }
        let number = int(port, "port").unwrap_or(0);
        if !port_keys.insert((protocol, number)) {
            errs.push(duplicate(
                index("spec.ports", i),
                format!(
                    "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{number}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                    gofmt::quote(protocol)
                ),
            ));
        }
    }
    if !arr(spec, "loadBalancerSourceRanges").is_empty() && ty != "LoadBalancer" {
        errs.push(forbidden(
            "spec.LoadBalancerSourceRanges",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if get(spec, "allocateLoadBalancerNodePorts").is_some() && ty != "LoadBalancer" {
        errs.push(forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if ty == "LoadBalancer" && get(spec, "allocateLoadBalancerNodePorts").is_none() {
        errs.push(required("allocateLoadBalancerNodePorts", ""));
    }
    if let Some(class) = opt_str(spec, "loadBalancerClass") {
        if ty == "LoadBalancer" {
            for msg in is_qualified_name(class) {
                errs.push(invalid_str("spec.loadBalancerClass", class, msg));
            }
        } else {
            errs.push(forbidden(
                "spec.loadBalancerClass",
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
    }
    let etp = str_of(spec, "externalTrafficPolicy");
    if !externally_accessible(spec) {
        if !etp.is_empty() {
            errs.push(invalid_str(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(required("spec.externalTrafficPolicy", ""));
    } else if !matches!(etp, "Cluster" | "Local") {
        errs.push(not_supported(
            "spec.externalTrafficPolicy",
            etp,
            &["Cluster", "Local"],
        ));
    }
    let hcnp = int(spec, "healthCheckNodePort").unwrap_or(0);
    if ty == "LoadBalancer" && etp == "Local" {
        if hcnp != 0 {
            for msg in is_port_num(hcnp) {
                errs.push(invalid_num("spec.healthCheckNodePort", hcnp, msg));
            }
        }
    } else if hcnp != 0 {
        errs.push(invalid_num(
            "spec.healthCheckNodePort",
            hcnp,
            "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
        ));
    }
    match opt_str(spec, "internalTrafficPolicy") {
        None if matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer") => {
            errs.push(required("spec.internalTrafficPolicy", ""));
        }
        Some(itp) if !matches!(itp, "Cluster" | "Local") => {
            errs.push(not_supported(
                "spec.internalTrafficPolicy",
                itp,
                &["Cluster", "Local"],
            ));
        }
        _ => {}
    }
    if let Some(td) = opt_str(spec, "trafficDistribution")
        && td != "PreferClose"
    {
        errs.push(not_supported(
            "spec.trafficDistribution",
            td,
            &["PreferClose"],
        ));
    }
}

fn validate_non_special_ip(errs: &mut Vec<FieldError>, ip: &str, path: &str) {
    let Ok(addr) = ip.parse::<std::net::IpAddr>() else {
        return;
    };
    if addr.is_unspecified() {
        errs.push(invalid_str(
            path,
            ip,
            format!("may not be unspecified ({ip})"),
        ));
    }
    if addr.is_loopback() {
        errs.push(invalid_str(
            path,
            ip,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    let link_local = match addr {
        std::net::IpAddr::V4(v4) => v4.is_link_local(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        errs.push(invalid_str(
            path,
            ip,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
}

/// `ValidateServiceClusterIPsRelatedFields`.
fn validate_cluster_ips(errs: &mut Vec<FieldError>, spec: &Value) {
    if str_of(spec, "type") == "ExternalName" {
        return;
    }
    let cluster_ip = str_of(spec, "clusterIP");
    let ips: Vec<&str> = arr(spec, "clusterIPs")
        .iter()
        .map(|v| v.as_str().unwrap_or(""))
        .collect();
    let ips_rendered = || gofmt::string_slice(spec, "clusterIPs");
    if !cluster_ip.is_empty() {
        if ips.is_empty() {
            errs.push(required("spec.clusterIPs", ""));
        } else if ips[0] != cluster_ip {
            errs.push(invalid_raw(
                "spec.clusterIPs",
                ips_rendered(),
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        errs.push(invalid_raw(
            "spec.clusterIPs",
            ips_rendered(),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, family) in arr(spec, "ipFamilies").iter().enumerate() {
        let family = family.as_str().unwrap_or("");
        let path = index("spec.ipFamilies", i);
        if !matches!(family, "IPv4" | "IPv6") {
            errs.push(not_supported(&path, family, &["IPv4", "IPv6"]));
        }
        if !seen.insert(family) {
            errs.push(duplicate(&path, gofmt::quote(family)));
        }
    }
    if let Some(policy) = opt_str(spec, "ipFamilyPolicy")
        && !matches!(
            policy,
            "SingleStack" | "PreferDualStack" | "RequireDualStack"
        )
    {
        errs.push(not_supported(
            "spec.ipFamilyPolicy",
            policy,
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        ));
    }
    let mut invalid = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && *ip == "None" {
            if ips.len() > 1 {
                invalid = true;
                errs.push(invalid_raw(
                    "spec.clusterIPs",
                    ips_rendered(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        for msg in is_ip(ip) {
            invalid = true;
            errs.push(invalid_str(index("spec.clusterIPs", i), ip, msg));
        }
    }
    if ips.len() > 2 {
        errs.push(invalid_raw(
            "spec.clusterIPs",
            ips_rendered(),
            "may only hold up to 2 values",
        ));
    }
    if invalid {
        return;
    }
    if ips.len() > 1 {
        let v6: Vec<bool> = ips.iter().map(|ip| ip.contains(':')).collect();
        if v6.len() != 2 || v6[0] == v6[1] {
            errs.push(invalid_raw(
                "spec.clusterIPs",
                ips_rendered(),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    if !is_headless(spec) {
        let families = arr(spec, "ipFamilies");
        for (i, ip) in ips.iter().enumerate() {
            let Some(family) = families.get(i).and_then(Value::as_str) else {
                break;
            };
            let is_v6 = ip.contains(':');
            if family == "IPv4" && is_v6 {
                errs.push(invalid_str(
                    index("spec.clusterIPs", i),
                    ip,
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if family == "IPv6" && !is_v6 {
                errs.push(invalid_str(
                    index("spec.clusterIPs", i),
                    ip,
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
}

/// `validateUpgradeDowngradeClusterIPs` and `...IPFamilies`.
fn validate_update(errs: &mut Vec<FieldError>, new: &Value, old: &Value) {
    if str_of(new, "type") == "ExternalName" || str_of(old, "type") == "ExternalName" {
        return;
    }
    let (new_headless, old_headless) = (is_headless(new), is_headless(old));
    let strs = |v: &Value, f: &str| -> Vec<String> {
        arr(v, f)
            .iter()
            .map(|s| s.as_str().unwrap_or("").to_owned())
            .collect()
    };
    let (ni, oi) = (strs(new, "clusterIPs"), strs(old, "clusterIPs"));
    let rendered = gofmt::string_slice(new, "clusterIPs");
    let single_stack = opt_str(new, "ipFamilyPolicy") == Some("SingleStack");
    let policy_rendered = match opt_str(new, "ipFamilyPolicy") {
        Some(p) => gofmt::quote(p),
        None => "null".to_owned(),
    };
    if !(old_headless && new_headless) {
        if ni.len() == oi.len() {
            for (i, ip) in oi.iter().enumerate() {
                if *ip != ni[i] {
                    errs.push(invalid_raw(
                        index("spec.clusterIPs", i),
                        rendered.clone(),
                        "may not change once set",
                    ));
                }
            }
        } else if oi.len() > ni.len() {
            if ni.is_empty() {
                errs.push(invalid_raw(
                    "spec.clusterIPs[0]",
                    rendered.clone(),
                    "primary clusterIP can not be unset",
                ));
            }
            if !oi.is_empty() && !ni.is_empty() && ni[0] != oi[0] {
                errs.push(invalid_raw(
                    "spec.clusterIPs[0]",
                    rendered.clone(),
                    "may not change once set",
                ));
            }
            if ni.len() == 1 && !single_stack {
                errs.push(invalid_raw(
                    "spec.ipFamilyPolicy",
                    policy_rendered.clone(),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                ));
            }
        } else if !oi.is_empty() && ni[0] != oi[0] {
            errs.push(invalid_raw(
                "spec.clusterIPs[0]",
                rendered.clone(),
                "may not change once set",
            ));
        }
    }
    if new_headless != old_headless || new_headless {
        return;
    }
    let (nf, of) = (strs(new, "ipFamilies"), strs(old, "ipFamilies"));
    let families_rendered = gofmt::string_slice(new, "ipFamilies");
    if nf.len() == of.len() {
        if nf != of {
            errs.push(invalid_raw(
                "spec.ipFamilies[0]",
                families_rendered,
                "may not change once set",
            ));
        }
    } else if of.len() > nf.len() {
        if ni.is_empty() {
            errs.push(invalid_raw(
                "spec.ipFamilies[0]",
                families_rendered,
                "primary ipFamily can not be unset",
            ));
        }
        if !nf.is_empty() && nf[0] != of[0] {
            errs.push(invalid_raw(
                "spec.ipFamilies[0]",
                rendered,
                "may not change once set",
            ));
        }
        if nf.len() == 1 && !single_stack {
            errs.push(invalid_raw(
                "spec.ipFamilyPolicy",
                policy_rendered,
                "must be set to 'SingleStack' when releasing the secondary ipFamily",
            ));
        }
    } else if !of.is_empty() && !nf.is_empty() && nf[0] != of[0] {
        errs.push(invalid_raw(
            "spec.ipFamilies[0]",
            rendered,
            "may not change once set",
        ));
    }
}
