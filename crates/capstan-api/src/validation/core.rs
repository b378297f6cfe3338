//! The smaller kinds: Namespace, ConfigMap, Secret, Node, Endpoints, EndpointSlice, Lease,
//! PodDisruptionBudget, RBAC, CSR and the rest. Cheap checks only, worded as Kubernetes does.

use std::collections::BTreeSet;

use serde_json::Value;

use super::json::{arr, child, get, index, int, key, meta, obj, opt_str, str_of};
use super::meta::{validate_kube_finalizer_name, validate_label_name, validate_label_selector};
use super::names::{
    NameRule, is_config_map_key, is_dns1123_label, is_ip, is_label_value, is_percent, is_port_num,
    is_qualified_name,
};
use super::{
    FieldError, duplicate, forbidden, gofmt, invalid_num, invalid_raw, invalid_str, nonnegative,
    not_supported, required, too_long,
};

/// `MaxSecretSize`, also the ConfigMap limit.
const MAX_DATA_SIZE: usize = 1024 * 1024;

pub(crate) fn validate_namespace(errs: &mut Vec<FieldError>, ns: &Value) {
    let spec = ns.get("spec").unwrap_or(&Value::Null);
    for f in arr(spec, "finalizers") {
        let f = f.as_str().unwrap_or("");
        for msg in is_qualified_name(f) {
            errs.push(invalid_str("spec.finalizers", f, msg));
        }
        validate_kube_finalizer_name(errs, f, "spec.finalizers");
    }
}

/// The decoded length of a base64 string (`ByteString` in JSON).
fn base64_len(s: &str) -> usize {
    let padding = s.bytes().rev().take_while(|b| *b == b'=').count();
    (s.len() / 4 * 3).saturating_sub(padding)
}

fn immutable_data(errs: &mut Vec<FieldError>, new: &Value, old: &Value, fields: &[&str]) {
    if super::json::boolean(old, "immutable") != Some(true) {
        return;
    }
    if super::json::boolean(new, "immutable") != Some(true) {
        errs.push(forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    for f in fields {
        let norm = |v: &Value| obj(v, f).filter(|m| !m.is_empty()).cloned();
        if norm(new) != norm(old) {
            errs.push(forbidden(*f, "field is immutable when `immutable` is set"));
        }
    }
}

pub(crate) fn validate_config_map(errs: &mut Vec<FieldError>, cm: &Value, old: Option<&Value>) {
    if let Some(old) = old {
        immutable_data(errs, cm, old, &["data", "binaryData"]);
    }
    let mut total = 0;
    let binary = obj(cm, "binaryData");
    for (k, v) in super::json::str_map(cm, "data") {
        for msg in is_config_map_key(k) {
            errs.push(invalid_str(key("data", k), k, msg));
        }
        if binary.is_some_and(|b| b.contains_key(k)) {
            errs.push(invalid_str(
                key("data", k),
                k,
                "duplicate of key present in binaryData",
            ));
        }
        total += v.len();
    }
    for (k, v) in super::json::str_map(cm, "binaryData") {
        for msg in is_config_map_key(k) {
            errs.push(invalid_str(key("binaryData", k), k, msg));
        }
        total += base64_len(v);
    }
    if total > MAX_DATA_SIZE {
        errs.push(too_long("", MAX_DATA_SIZE));
    }
}

pub(crate) fn validate_secret(errs: &mut Vec<FieldError>, secret: &Value, old: Option<&Value>) {
    if let Some(old) = old {
        super::immutable_str(errs, "type", str_of(secret, "type"), str_of(old, "type"));
        immutable_data(errs, secret, old, &["data"]);
    }
    let data = super::json::str_map(secret, "data");
    let mut total = 0;
    for (k, v) in &data {
        for msg in is_config_map_key(k) {
            errs.push(invalid_str(key("data", k), k, msg));
        }
        total += base64_len(v);
    }
    if total > MAX_DATA_SIZE {
        errs.push(too_long("data", MAX_DATA_SIZE));
    }
    let has = |k: &str| data.iter().any(|(n, _)| *n == k);
    match str_of(secret, "type") {
        "kubernetes.io/service-account-token" => {
            let annotation = super::json::obj(meta(secret), "annotations")
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if annotation.is_empty() {
                errs.push(required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" if !has(".dockercfg") => {
            errs.push(required("data[.dockercfg]", ""))
        }
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
            errs.push(required("data[.dockerconfigjson]", ""));
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(required("data[username]", ""));
            errs.push(required("data[password]", ""));
        }
        "kubernetes.io/ssh-auth"
            if !data
                .iter()
                .any(|(n, v)| *n == "ssh-privatekey" && !v.is_empty()) =>
        {
            errs.push(required("data[ssh-privatekey]", ""));
        }
        "kubernetes.io/tls" => {
            if !has("tls.crt") {
                errs.push(required("data[tls.crt]", ""));
            }
            if !has("tls.key") {
                errs.push(required("data[tls.key]", ""));
            }
        }
        _ => {}
    }
}

pub(crate) fn validate_endpoints(errs: &mut Vec<FieldError>, ep: &Value) {
    for (i, subset) in arr(ep, "subsets").iter().enumerate() {
        let sp = index("subsets", i);
        if arr(subset, "addresses").is_empty() && arr(subset, "notReadyAddresses").is_empty() {
            errs.push(required(
                &sp,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for field in ["addresses", "notReadyAddresses"] {
            for (j, addr) in arr(subset, field).iter().enumerate() {
                let ap = index(&child(&sp, field), j);
                let ip = str_of(addr, "ip");
                for msg in is_ip(ip) {
                    errs.push(invalid_str(child(&ap, "ip"), ip, msg));
                }
                let host = str_of(addr, "hostname");
                if !host.is_empty() {
                    for msg in is_dns1123_label(host) {
                        errs.push(invalid_str(child(&ap, "hostname"), host, msg));
                    }
                }
            }
        }
        let ports = arr(subset, "ports");
        for (j, port) in ports.iter().enumerate() {
            let pp = index(&child(&sp, "ports"), j);
            let name = str_of(port, "name");
            if ports.len() > 1 && name.is_empty() {
                errs.push(required(child(&pp, "name"), ""));
            } else if !name.is_empty() {
                for msg in is_dns1123_label(name) {
                    errs.push(invalid_str(child(&pp, "name"), name, msg));
                }
            }
            let n = int(port, "port").unwrap_or(0);
            for msg in is_port_num(n) {
                errs.push(invalid_num(child(&pp, "port"), n, msg));
            }
            super::pod::validate_protocol(errs, port, &child(&pp, "protocol"));
        }
    }
}

pub(crate) fn validate_node(errs: &mut Vec<FieldError>, node: &Value, old: Option<&Value>) {
    let spec = node.get("spec").unwrap_or(&Value::Null);
    // Kubernetes reports node taints under `metadata.taints`.
    let mut unique = BTreeSet::new();
    for (i, t) in arr(spec, "taints").iter().enumerate() {
        let tp = index("metadata.taints", i);
        let k = str_of(t, "key");
        validate_label_name(errs, k, &child(&tp, "key"));
        let v = str_of(t, "value");
        let msgs = is_label_value(v);
        if !msgs.is_empty() {
            errs.push(invalid_str(child(&tp, "value"), v, msgs.join(";")));
        }
        let effect = str_of(t, "effect");
        match effect {
            "" => errs.push(required(child(&tp, "effect"), "")),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute" => {}
            other => errs.push(not_supported(
                child(&tp, "effect"),
                other,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            )),
        }
        if !unique.insert((effect, k)) {
            let mut e = duplicate(&tp, t.to_string());
            e.detail = "taints must be unique by key and effect pair".to_owned();
            errs.push(e);
        }
    }
    for (i, cidr) in arr(spec, "podCIDRs").iter().enumerate() {
        let c = cidr.as_str().unwrap_or("");
        let ok = c
            .split_once('/')
            .is_some_and(|(ip, bits)| is_ip(ip).is_empty() && bits.parse::<u8>().is_ok());
        if !ok {
            errs.push(invalid_str(
                index("spec.podCIDRs", i),
                c,
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
    if let Some(old) = old {
        let os = old.get("spec").unwrap_or(&Value::Null);
        let (np, op) = (arr(spec, "podCIDRs"), arr(os, "podCIDRs"));
        if !op.is_empty() && np != op {
            errs.push(forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let (npid, opid) = (str_of(spec, "providerID"), str_of(os, "providerID"));
        if !opid.is_empty() && npid != opid {
            errs.push(forbidden(
                "spec.providerID",
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
    }
}

pub(crate) fn validate_event(errs: &mut Vec<FieldError>, ev: &Value) {
    let involved = ev.get("involvedObject").unwrap_or(&Value::Null);
    let ns = str_of(meta(ev), "namespace");
    let ins = str_of(involved, "namespace");
    if !ins.is_empty() && !ns.is_empty() && ins != ns {
        errs.push(invalid_str(
            "involvedObject.namespace",
            ins,
            "does not match event.namespace",
        ));
    }
}

pub(crate) fn validate_resource_quota(errs: &mut Vec<FieldError>, rq: &Value) {
    let spec = rq.get("spec").unwrap_or(&Value::Null);
    for (name, raw) in super::json::str_map(spec, "hard") {
        if super::quantity::Quantity::parse(raw).is_some_and(|q| q.nanos < 0) {
            errs.push(invalid_str(
                key("spec.hard", name),
                raw,
                "must be greater than or equal to 0",
            ));
        }
    }
}

pub(crate) fn validate_limit_range(errs: &mut Vec<FieldError>, lr: &Value) {
    let spec = lr.get("spec").unwrap_or(&Value::Null);
    let mut types = BTreeSet::new();
    for (i, limit) in arr(spec, "limits").iter().enumerate() {
        let t = str_of(limit, "type");
        let tp = child(&index("spec.limits", i), "type");
        for msg in is_qualified_name(t) {
            errs.push(invalid_str(&tp, t, msg));
        }
        if !types.insert(t) {
            errs.push(duplicate(&tp, gofmt::quote(t)));
        }
    }
}

pub(crate) fn validate_controller_revision(
    errs: &mut Vec<FieldError>,
    cr: &Value,
    old: Option<&Value>,
) {
    if get(cr, "data").is_none() {
        errs.push(required("data", "data is mandatory"));
    }
    nonnegative(errs, "revision", int(cr, "revision"));
    if let Some(old) = old
        && cr.get("data") != old.get("data")
    {
        errs.push(invalid_raw(
            "data",
            cr.get("data")
                .map_or_else(|| "null".to_owned(), Value::to_string),
            "field is immutable",
        ));
    }
}

pub(crate) fn validate_lease(errs: &mut Vec<FieldError>, lease: &Value) {
    let spec = lease.get("spec").unwrap_or(&Value::Null);
    if let Some(d) = int(spec, "leaseDurationSeconds").filter(|d| *d <= 0) {
        errs.push(invalid_num(
            "spec.leaseDurationSeconds",
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = int(spec, "leaseTransitions").filter(|t| *t < 0) {
        errs.push(invalid_num(
            "spec.leaseTransitions",
            t,
            "must be greater than or equal to 0",
        ));
    }
}

pub(crate) fn validate_endpoint_slice(errs: &mut Vec<FieldError>, slice: &Value) {
    let address_type = str_of(slice, "addressType");
    match address_type {
        "" => errs.push(required("addressType", "")),
        "IPv4" | "IPv6" | "FQDN" => {}
        other => errs.push(not_supported(
            "addressType",
            other,
            &["FQDN", "IPv4", "IPv6"],
        )),
    }
    let endpoints = arr(slice, "endpoints");
    if endpoints.len() > 1000 {
        errs.push(super::FieldError {
            kind: super::FieldErrorKind::TooMany,
            field: "endpoints".to_owned(),
            value: Some(endpoints.len().to_string()),
            detail: "must have at most 1000 items".to_owned(),
        });
    }
    for (i, ep) in endpoints.iter().enumerate() {
        let ep_path = index("endpoints", i);
        let addresses = arr(ep, "addresses");
        if addresses.is_empty() {
            errs.push(required(
                child(&ep_path, "addresses"),
                "must contain at least 1 address",
            ));
        } else if addresses.len() > 100 {
            errs.push(invalid_raw(
                child(&ep_path, "addresses"),
                gofmt::string_slice(ep, "addresses"),
                "must not contain more than 100 addresses",
            ));
        }
        for (j, addr) in addresses.iter().enumerate() {
            let a = addr.as_str().unwrap_or("");
            let ap = index(&child(&ep_path, "addresses"), j);
            match address_type {
                "IPv4" | "IPv6" => {
                    let wrong_family = if address_type == "IPv4" {
                        a.contains(':')
                    } else {
                        !a.contains(':')
                    };
                    let msgs = is_ip(a);
                    if !msgs.is_empty() {
                        for msg in msgs {
                            errs.push(invalid_str(&ap, a, msg));
                        }
                    } else if wrong_family {
                        errs.push(invalid_str(
                            &ap,
                            a,
                            format!("must be an {address_type} address"),
                        ));
                    }
                }
                "FQDN" => {
                    for msg in NameRule::Dns1123Subdomain.check(a, false) {
                        errs.push(invalid_str(&ap, a, msg));
                    }
                }
                _ => {}
            }
        }
    }
    let mut names = BTreeSet::new();
    for (i, port) in arr(slice, "ports").iter().enumerate() {
        let pp = index("ports", i);
        let name = str_of(port, "name");
        if !name.is_empty() {
            for msg in is_dns1123_label(name) {
                errs.push(invalid_str(child(&pp, "name"), name, msg));
            }
        }
        if !names.insert(name) {
            errs.push(duplicate(child(&pp, "name"), gofmt::quote(name)));
        }
        if let Some(n) = int(port, "port") {
            for msg in is_port_num(n).into_iter().filter(|_| n != 0) {
                errs.push(invalid_num(child(&pp, "port"), n, msg));
            }
        }
        if opt_str(port, "protocol").is_some() {
            super::pod::validate_protocol(errs, port, &child(&pp, "protocol"));
        }
    }
}

pub(crate) fn validate_pdb(errs: &mut Vec<FieldError>, pdb: &Value) {
    let spec = pdb.get("spec").unwrap_or(&Value::Null);
    let (min, max) = (get(spec, "minAvailable"), get(spec, "maxUnavailable"));
    if min.is_some() && max.is_some() {
        errs.push(invalid_raw(
            "spec",
            spec.to_string(),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for (field, v) in [("minAvailable", min), ("maxUnavailable", max)] {
        let path = child("spec", field);
        match v {
            Some(Value::String(s)) => {
                for msg in is_percent(s) {
                    errs.push(invalid_str(&path, s, msg));
                }
                let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
                if is_percent(s).is_empty() && pct > 100 {
                    errs.push(invalid_str(&path, s, "must not be greater than 100%"));
                }
            }
            Some(n) => nonnegative(errs, &path, n.as_i64()),
            None => {}
        }
    }
    validate_label_selector(errs, spec.get("selector"), "spec.selector");
    if let Some(p) = opt_str(spec, "unhealthyPodEvictionPolicy")
        && !matches!(p, "IfHealthyBudget" | "AlwaysAllow")
    {
        errs.push(not_supported(
            "spec.unhealthyPodEvictionPolicy",
            p,
            &["AlwaysAllow", "IfHealthyBudget"],
        ));
    }
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

pub(crate) fn validate_rbac(errs: &mut Vec<FieldError>, kind: &str, object: &Value) {
    match kind {
        "Role" | "ClusterRole" => {
            let aggregated = kind == "ClusterRole" && get(object, "aggregationRule").is_some();
            for (i, rule) in arr(object, "rules").iter().enumerate() {
                if !aggregated || !arr(object, "rules").is_empty() {
                    validate_policy_rule(errs, rule, kind == "Role", &index("rules", i));
                }
            }
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            let namespaced = kind == "RoleBinding";
            let role_ref = object.get("roleRef").unwrap_or(&Value::Null);
            let group = str_of(role_ref, "apiGroup");
            if group != RBAC_GROUP {
                errs.push(not_supported("roleRef.apiGroup", group, &[RBAC_GROUP]));
            }
            let ref_kind = str_of(role_ref, "kind");
            if namespaced && !matches!(ref_kind, "Role" | "ClusterRole") {
                errs.push(not_supported(
                    "roleRef.kind",
                    ref_kind,
                    &["Role", "ClusterRole"],
                ));
            } else if !namespaced && ref_kind != "ClusterRole" {
                errs.push(not_supported("roleRef.kind", ref_kind, &["ClusterRole"]));
            }
            let name = str_of(role_ref, "name");
            if name.is_empty() {
                errs.push(required("roleRef.name", ""));
            } else {
                for msg in NameRule::PathSegment.check(name, false) {
                    errs.push(invalid_str("roleRef.name", name, msg));
                }
            }
            for (i, subject) in arr(object, "subjects").iter().enumerate() {
                validate_subject(errs, subject, namespaced, &index("subjects", i));
            }
        }
        _ => {}
    }
}

fn validate_policy_rule(errs: &mut Vec<FieldError>, rule: &Value, namespaced: bool, path: &str) {
    if arr(rule, "verbs").is_empty() {
        errs.push(required(
            child(path, "verbs"),
            "verbs must contain at least one value",
        ));
    }
    if !arr(rule, "nonResourceURLs").is_empty() {
        let urls = gofmt::string_slice(rule, "nonResourceURLs");
        if namespaced {
            errs.push(invalid_raw(
                child(path, "nonResourceURLs"),
                urls.clone(),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if !arr(rule, "apiGroups").is_empty()
            || !arr(rule, "resources").is_empty()
            || !arr(rule, "resourceNames").is_empty()
        {
            errs.push(invalid_raw(
                child(path, "nonResourceURLs"),
                urls,
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return;
    }
    if get(rule, "apiGroups").is_none() || arr(rule, "apiGroups").is_empty() {
        errs.push(required(
            child(path, "apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if arr(rule, "resources").is_empty() {
        errs.push(required(
            child(path, "resources"),
            "resource rules must supply at least one resource",
        ));
    }
}

fn validate_subject(errs: &mut Vec<FieldError>, subject: &Value, namespaced: bool, path: &str) {
    let name = str_of(subject, "name");
    if name.is_empty() {
        errs.push(required(child(path, "name"), ""));
    }
    let group = str_of(subject, "apiGroup");
    match str_of(subject, "kind") {
        "ServiceAccount" => {
            if !name.is_empty() {
                for msg in NameRule::Dns1123Subdomain.check(name, false) {
                    errs.push(invalid_str(child(path, "name"), name, msg));
                }
            }
            if !group.is_empty() {
                errs.push(not_supported(child(path, "apiGroup"), group, &[""]));
            }
            if !namespaced && str_of(subject, "namespace").is_empty() {
                errs.push(required(child(path, "namespace"), ""));
            }
        }
        "User" | "Group" => {
            if group != RBAC_GROUP {
                errs.push(not_supported(child(path, "apiGroup"), group, &[RBAC_GROUP]));
            }
        }
        other => errs.push(not_supported(
            child(path, "kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
}

pub(crate) fn validate_csr(errs: &mut Vec<FieldError>, csr: &Value, old: Option<&Value>) {
    let spec = csr.get("spec").unwrap_or(&Value::Null);
    if str_of(spec, "request").is_empty() {
        errs.push(required("spec.request", ""));
    }
    let signer = str_of(spec, "signerName");
    if signer.is_empty() {
        errs.push(required("spec.signerName", ""));
    }
    if let Some(old) = old {
        let os = old.get("spec").unwrap_or(&Value::Null);
        if spec != os {
            errs.push(forbidden("spec", "field is immutable"));
        }
    }
}
