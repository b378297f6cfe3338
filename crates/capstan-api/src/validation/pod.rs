//! Pods, pod specs and pod templates (`ValidatePodSpec`, `ValidatePodTemplateSpec`,
//! `ValidatePodUpdate` of `pkg/apis/core/validation`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::json::{arr, boolean, child, get, index, int, key, meta, str_map, str_of};
use super::meta::{
    validate_annotations, validate_label_name, validate_label_selector, validate_labels,
};
use super::names::{
    NameRule, inclusive_range_error, is_config_map_key, is_dns1123_label, is_env_var_name,
    is_http_header_name, is_ip, is_label_value, is_port_name, is_port_num, is_qualified_name,
};
use super::quantity::Quantity;
use super::{
    FieldError, duplicate, forbidden, gofmt, invalid_num, invalid_raw, invalid_str, nonnegative,
    not_found, not_supported, required,
};

const MAX_INT32: i64 = i32::MAX as i64;
const FILE_MODE_MSG: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// Validates a Pod on create (`old` = `None`) or update.
pub(crate) fn validate_pod(errs: &mut Vec<FieldError>, pod: &Value, old: Option<&Value>) {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    validate_pod_spec(errs, spec, "spec", true);
    for (field, containers) in [
        ("containers", arr(spec, "containers")),
        ("initContainers", arr(spec, "initContainers")),
    ] {
        for (i, c) in containers.iter().enumerate() {
            let image = str_of(c, "image");
            if image.len() != image.trim().len() {
                errs.push(invalid_str(
                    child(&index(&child("spec", field), i), "image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    match old {
        None => {
            if !arr(spec, "ephemeralContainers").is_empty() {
                errs.push(forbidden(
                    "spec.ephemeralContainers",
                    "cannot be set on create",
                ));
            }
            if !str_of(spec, "nodeName").is_empty() && !arr(spec, "schedulingGates").is_empty() {
                errs.push(forbidden(
                    "spec.nodeName",
                    "cannot be set until all schedulingGates have been cleared",
                ));
            }
        }
        Some(old) => validate_pod_update(errs, spec, old.get("spec").unwrap_or(&Value::Null)),
    }
}

/// `ValidatePodTemplateSpec` of the template at `path` (`spec.template`).
pub(crate) fn validate_pod_template(errs: &mut Vec<FieldError>, template: &Value, path: &str) {
    let m = meta(template);
    // Kubernetes reports template label errors at `<path>.labels` (not `.metadata.labels`).
    validate_labels(errs, m, "labels", &child(path, "labels"));
    validate_annotations(errs, m, &child(path, "annotations"));
    let spec = template.get("spec").unwrap_or(&Value::Null);
    validate_pod_spec(errs, spec, &child(path, "spec"), false);
    if !arr(spec, "ephemeralContainers").is_empty() {
        errs.push(forbidden(
            child(&child(path, "spec"), "ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

/// `ValidatePodSpec`. `is_pod` is Kubernetes' `ResourceIsPod` option.
pub(crate) fn validate_pod_spec(
    errs: &mut Vec<FieldError>,
    spec: &Value,
    path: &str,
    is_pod: bool,
) {
    let p = |f: &str| child(path, f);
    let grace = int(spec, "terminationGracePeriodSeconds");
    if get(spec, "terminationGracePeriodSeconds").is_none() {
        errs.push(required(p("terminationGracePeriodSeconds"), ""));
    }
    let volumes = validate_volumes(errs, arr(spec, "volumes"), &p("volumes"));
    let claim_names: BTreeSet<&str> = arr(spec, "resourceClaims")
        .iter()
        .map(|c| str_of(c, "name"))
        .filter(|n| !n.is_empty())
        .collect();
    validate_containers(errs, spec, &volumes, &claim_names, grace, &p("containers"));
    validate_init_containers(
        errs,
        spec,
        &volumes,
        &claim_names,
        grace,
        &p("initContainers"),
    );
    validate_host_network(errs, spec, path, is_pod);
    let restart = str_of(spec, "restartPolicy");
    match restart {
        "Always" | "OnFailure" | "Never" => {}
        "" => errs.push(required(p("restartPolicy"), "")),
        other => errs.push(not_supported(
            p("restartPolicy"),
            other,
            &["Always", "OnFailure", "Never"],
        )),
    }
    let dns_policy = str_of(spec, "dnsPolicy");
    match dns_policy {
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => {}
        "" => errs.push(required(p("dnsPolicy"), "")),
        other => errs.push(not_supported(
            p("dnsPolicy"),
            other,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )),
    }
    validate_labels(errs, spec, "nodeSelector", &p("nodeSelector"));
    validate_pod_security_context(errs, spec, &p("securityContext"));
    for (i, s) in arr(spec, "imagePullSecrets").iter().enumerate() {
        if s.as_object().is_some_and(|o| o.keys().any(|k| k != "name")) {
            errs.push(invalid_raw(
                index(&p("imagePullSecrets"), i),
                s.to_string(),
                "only name may be set",
            ));
        }
    }
    validate_dns_config(errs, spec, dns_policy, &p("dnsConfig"));
    for (i, g) in arr(spec, "readinessGates").iter().enumerate() {
        let t = str_of(g, "conditionType");
        let path = child(&index(&p("readinessGates"), i), "conditionType");
        for msg in is_qualified_name(t) {
            errs.push(invalid_str(&path, t, msg));
        }
    }
    let mut gates = BTreeSet::new();
    for (i, g) in arr(spec, "schedulingGates").iter().enumerate() {
        let name = str_of(g, "name");
        let path = index(&p("schedulingGates"), i);
        for msg in is_qualified_name(name) {
            errs.push(invalid_str(&path, name, msg));
        }
        if !gates.insert(name) {
            errs.push(duplicate(&path, gofmt::quote(name)));
        }
    }
    validate_topology_spread(
        errs,
        arr(spec, "topologySpreadConstraints"),
        &p("topologySpreadConstraints"),
    );
    for (field, rule) in [
        ("serviceAccountName", NameRule::Dns1123Subdomain),
        ("nodeName", NameRule::Dns1123Subdomain),
    ] {
        let v = str_of(spec, field);
        if !v.is_empty() {
            for msg in rule.check(v, false) {
                errs.push(invalid_str(p(field), v, msg));
            }
        }
    }
    if let Some(v) = int(spec, "activeDeadlineSeconds")
        && !(1..=MAX_INT32).contains(&v)
    {
        errs.push(invalid_num(
            p("activeDeadlineSeconds"),
            v,
            inclusive_range_error(1, MAX_INT32),
        ));
    }
    for field in ["hostname", "subdomain"] {
        let v = str_of(spec, field);
        if !v.is_empty() {
            for msg in is_dns1123_label(v) {
                errs.push(invalid_str(p(field), v, msg));
            }
        }
    }
    validate_tolerations(errs, arr(spec, "tolerations"), &p("tolerations"));
    for (i, alias) in arr(spec, "hostAliases").iter().enumerate() {
        let ap = index(&p("hostAliases"), i);
        let ip = str_of(alias, "ip");
        for msg in is_ip(ip) {
            errs.push(invalid_str(child(&ap, "ip"), ip, msg));
        }
        for (j, h) in arr(alias, "hostnames").iter().enumerate() {
            let h = h.as_str().unwrap_or("");
            for msg in NameRule::Dns1123Subdomain.check(h, false) {
                errs.push(invalid_str(index(&child(&ap, "hostnames"), j), h, msg));
            }
        }
    }
    let pcn = str_of(spec, "priorityClassName");
    if !pcn.is_empty() {
        for msg in NameRule::Dns1123Subdomain.check(pcn, false) {
            errs.push(invalid_str(p("priorityClassName"), pcn, msg));
        }
    }
    if let Some(rc) = super::json::opt_str(spec, "runtimeClassName") {
        for msg in NameRule::Dns1123Subdomain.check(rc, false) {
            errs.push(invalid_str(p("runtimeClassName"), rc, msg));
        }
    }
    if let Some(pp) = super::json::opt_str(spec, "preemptionPolicy") {
        match pp {
            "PreemptLowerPriority" | "Never" => {}
            "" => errs.push(required(p("preemptionPolicy"), "")),
            other => errs.push(not_supported(
                p("preemptionPolicy"),
                other,
                &["PreemptLowerPriority", "Never"],
            )),
        }
    }
    if let Some(os) = get(spec, "os") {
        match str_of(os, "name") {
            "" => errs.push(required(child(&p("os"), "name"), "cannot be empty")),
            "linux" | "windows" => {}
            other => errs.push(not_supported(p("os"), other, &["linux", "windows"])),
        }
    }
}

/// Volume sources in the order Kubernetes checks them, with the path segment it reports a
/// second source at (Kubernetes' own spelling, typos included).
const VOLUME_SOURCES: &[(&str, &str)] = &[
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

/// `ValidateVolumes`: returns the valid volumes by name, with their source kind.
fn validate_volumes<'a>(
    errs: &mut Vec<FieldError>,
    volumes: &'a [Value],
    path: &str,
) -> BTreeMap<&'a str, &'static str> {
    let mut valid = BTreeMap::new();
    for (i, vol) in volumes.iter().enumerate() {
        let vp = index(path, i);
        let mut el = Vec::new();
        let mut kind = None;
        for (json_key, report_as) in VOLUME_SOURCES {
            let Some(source) = get(vol, json_key) else {
                continue;
            };
            if kind.is_some() {
                el.push(forbidden(
                    child(&vp, report_as),
                    "may not specify more than 1 volume type",
                ));
            } else {
                kind = Some(*json_key);
                validate_volume_source(&mut el, json_key, source, &child(&vp, json_key));
            }
        }
        if kind.is_none() {
            el.push(required(&vp, "must specify a volume type"));
        }
        let name = str_of(vol, "name");
        let np = child(&vp, "name");
        if name.is_empty() {
            el.push(required(&np, ""));
        } else {
            for msg in is_dns1123_label(name) {
                el.push(invalid_str(&np, name, msg));
            }
        }
        if valid.contains_key(name) {
            el.push(duplicate(&np, gofmt::quote(name)));
        }
        if el.is_empty() {
            valid.insert(name, kind.unwrap_or(""));
        } else {
            errs.append(&mut el);
        }
    }
    valid
}

fn validate_volume_source(errs: &mut Vec<FieldError>, kind: &str, source: &Value, path: &str) {
    let p = |f: &str| child(path, f);
    let required_fields = |errs: &mut Vec<FieldError>, fields: &[&str]| {
        for f in fields {
            if str_of(source, f).is_empty() {
                errs.push(required(p(f), ""));
            }
        }
    };
    match kind {
        "emptyDir" => {
            if let Some(limit) = super::json::opt_str(source, "sizeLimit")
                && Quantity::parse(limit).is_some_and(|q| q.nanos < 0)
            {
                errs.push(forbidden(
                    p("sizeLimit"),
                    "SizeLimit field must be a valid resource quantity",
                ));
            }
        }
        "hostPath" => {
            let hp = str_of(source, "path");
            if hp.is_empty() {
                errs.push(required(p("path"), ""));
                return;
            }
            validate_path_no_backsteps(errs, hp, &p("path"));
            if let Some(t) = super::json::opt_str(source, "type") {
                const TYPES: &[&str] = &[
                    "",
                    "BlockDevice",
                    "CharDevice",
                    "Directory",
                    "DirectoryOrCreate",
                    "File",
                    "FileOrCreate",
                    "Socket",
                ];
                if !TYPES.contains(&t) {
                    errs.push(not_supported(p("type"), t, TYPES));
                }
            }
        }
        "secret" => {
            required_fields(errs, &["secretName"]);
            validate_mode(errs, source, "defaultMode", path);
            validate_items(errs, source, path);
        }
        "configMap" => {
            required_fields(errs, &["name"]);
            validate_mode(errs, source, "defaultMode", path);
            validate_items(errs, source, path);
        }
        "persistentVolumeClaim" => required_fields(errs, &["claimName"]),
        "nfs" => {
            required_fields(errs, &["server", "path"]);
            let np = str_of(source, "path");
            if !np.starts_with('/') {
                errs.push(invalid_str(p("path"), np, "must be an absolute path"));
            }
        }
        "gitRepo" => {
            required_fields(errs, &["repository"]);
            validate_local_descending_path(errs, str_of(source, "directory"), &p("directory"));
        }
        "iscsi" => required_fields(errs, &["targetPortal", "iqn"]),
        "glusterfs" => required_fields(errs, &["endpoints", "path"]),
        "rbd" => {
            if arr(source, "monitors").is_empty() {
                errs.push(required(p("monitors"), ""));
            }
            required_fields(errs, &["image"]);
        }
        "cinder" => required_fields(errs, &["volumeID"]),
        "cephfs" if arr(source, "monitors").is_empty() => {
            errs.push(required(p("monitors"), ""));
        }
        "awsElasticBlockStore" => required_fields(errs, &["volumeID"]),
        "gcePersistentDisk" => required_fields(errs, &["pdName"]),
        "flexVolume" | "csi" => required_fields(errs, &["driver"]),
        "azureFile" => required_fields(errs, &["secretName", "shareName"]),
        "azureDisk" => required_fields(errs, &["diskName", "diskURI"]),
        "downwardAPI" => {
            validate_mode(errs, source, "defaultMode", path);
            for item in arr(source, "items") {
                let ip = str_of(item, "path");
                if ip.is_empty() {
                    errs.push(required(p("path"), ""));
                }
                validate_local_non_reserved_path(errs, ip, &p("path"));
                validate_mode(errs, item, "mode", path);
            }
        }
        "projected" => validate_mode(errs, source, "defaultMode", path),
        "ephemeral" if get(source, "volumeClaimTemplate").is_none() => {
            errs.push(required(p("volumeClaimTemplate"), ""));
        }
        _ => {}
    }
}

fn validate_mode(errs: &mut Vec<FieldError>, v: &Value, field: &str, path: &str) {
    if let Some(mode) = int(v, field)
        && !(0..=0o777).contains(&mode)
    {
        errs.push(invalid_num(child(path, field), mode, FILE_MODE_MSG));
    }
}

fn validate_items(errs: &mut Vec<FieldError>, source: &Value, path: &str) {
    for (i, item) in arr(source, "items").iter().enumerate() {
        let ip = index(&child(path, "items"), i);
        if str_of(item, "key").is_empty() {
            errs.push(required(child(&ip, "key"), ""));
        }
        let target = str_of(item, "path");
        if target.is_empty() {
            errs.push(required(child(&ip, "path"), ""));
        }
        validate_local_non_reserved_path(errs, target, &child(&ip, "path"));
        validate_mode(errs, item, "mode", &ip);
    }
}

fn validate_path_no_backsteps(errs: &mut Vec<FieldError>, target: &str, path: &str) {
    if target.split('/').any(|part| part == "..") {
        errs.push(invalid_str(path, target, "must not contain '..'"));
    }
}

fn validate_local_descending_path(errs: &mut Vec<FieldError>, target: &str, path: &str) {
    if target.starts_with('/') {
        errs.push(invalid_str(path, target, "must be a relative path"));
    }
    validate_path_no_backsteps(errs, target, path);
}

fn validate_local_non_reserved_path(errs: &mut Vec<FieldError>, target: &str, path: &str) {
    let before = errs.len();
    validate_local_descending_path(errs, target, path);
    if target.starts_with("..") && errs.len() == before {
        errs.push(invalid_str(path, target, "must not start with '..'"));
    }
}

type Volumes<'a> = BTreeMap<&'a str, &'static str>;

fn validate_containers(
    errs: &mut Vec<FieldError>,
    spec: &Value,
    volumes: &Volumes<'_>,
    claims: &BTreeSet<&str>,
    grace: Option<i64>,
    path: &str,
) {
    let containers = arr(spec, "containers");
    if containers.is_empty() {
        errs.push(required(path, ""));
        return;
    }
    let mut names = BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let cp = index(path, i);
        validate_container_common(errs, c, volumes, claims, &cp, str_of(spec, "restartPolicy"));
        let name = str_of(c, "name");
        if !names.insert(name) {
            errs.push(duplicate(child(&cp, "name"), gofmt::quote(name)));
        }
        if let Some(lc) = get(c, "lifecycle") {
            validate_lifecycle(errs, lc, grace, &child(&cp, "lifecycle"));
        }
        validate_probes(errs, c, grace, &cp);
        if get(c, "restartPolicy").is_some() {
            errs.push(forbidden(
                child(&cp, "restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    check_host_port_conflicts(errs, containers, path);
}

fn validate_init_containers(
    errs: &mut Vec<FieldError>,
    spec: &Value,
    volumes: &Volumes<'_>,
    claims: &BTreeSet<&str>,
    grace: Option<i64>,
    path: &str,
) {
    let mut names: BTreeSet<&str> = arr(spec, "containers")
        .iter()
        .map(|c| str_of(c, "name"))
        .collect();
    for (i, c) in arr(spec, "initContainers").iter().enumerate() {
        let cp = index(path, i);
        validate_container_common(errs, c, volumes, claims, &cp, str_of(spec, "restartPolicy"));
        let mut restart_always = false;
        if let Some(rp) = super::json::opt_str(c, "restartPolicy") {
            if rp == "Always" {
                restart_always = true;
            } else {
                errs.push(not_supported(child(&cp, "restartPolicy"), rp, &["Always"]));
            }
        }
        let name = str_of(c, "name");
        if names.contains(name) {
            errs.push(duplicate(child(&cp, "name"), gofmt::quote(name)));
        } else if !name.is_empty() {
            names.insert(name);
        }
        check_host_port_conflicts(errs, std::slice::from_ref(c), path);
        if restart_always {
            if let Some(lc) = get(c, "lifecycle") {
                validate_lifecycle(errs, lc, grace, &child(&cp, "lifecycle"));
            }
            validate_probes(errs, c, grace, &cp);
        } else {
            for f in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if get(c, f).is_some() {
                    errs.push(forbidden(
                        child(&cp, f),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
}

/// `validateContainerCommon`.
fn validate_container_common(
    errs: &mut Vec<FieldError>,
    c: &Value,
    volumes: &Volumes<'_>,
    claims: &BTreeSet<&str>,
    path: &str,
    pod_restart_policy: &str,
) {
    let p = |f: &str| child(path, f);
    let name = str_of(c, "name");
    if name.is_empty() {
        errs.push(required(p("name"), ""));
    } else {
        for msg in is_dns1123_label(name) {
            errs.push(invalid_str(p("name"), name, msg));
        }
    }
    if str_of(c, "image").is_empty() {
        errs.push(required(p("image"), ""));
    }
    match str_of(c, "terminationMessagePolicy") {
        "File" | "FallbackToLogsOnError" => {}
        "" => errs.push(required(p("terminationMessagePolicy"), "")),
        other => errs.push(not_supported(
            p("terminationMessagePolicy"),
            other,
            &["File", "FallbackToLogsOnError"],
        )),
    }
    validate_container_ports(errs, arr(c, "ports"), &p("ports"));
    validate_env(errs, arr(c, "env"), &p("env"));
    validate_env_from(errs, arr(c, "envFrom"), &p("envFrom"));
    validate_volume_mounts(errs, c, volumes, &p("volumeMounts"));
    validate_volume_devices(errs, c, volumes, &p("volumeDevices"));
    match str_of(c, "imagePullPolicy") {
        "Always" | "IfNotPresent" | "Never" => {}
        "" => errs.push(required(p("imagePullPolicy"), "")),
        other => errs.push(not_supported(
            p("imagePullPolicy"),
            other,
            &["Always", "IfNotPresent", "Never"],
        )),
    }
    validate_resources(
        errs,
        c.get("resources").unwrap_or(&Value::Null),
        claims,
        &p("resources"),
    );
    for (i, rp) in arr(c, "resizePolicy").iter().enumerate() {
        let _ = i;
        let rpath = p("resizePolicy");
        match str_of(rp, "resourceName") {
            "cpu" | "memory" => {}
            "" => errs.push(required(&rpath, "")),
            other => errs.push(not_supported(&rpath, other, &["cpu", "memory"])),
        }
        let policy = str_of(rp, "restartPolicy");
        match policy {
            "NotRequired" | "RestartContainer" => {}
            "" => errs.push(required(&rpath, "")),
            other => errs.push(not_supported(
                &rpath,
                other,
                &["NotRequired", "RestartContainer"],
            )),
        }
        if pod_restart_policy == "Never" && policy != "NotRequired" {
            errs.push(invalid_str(
                &rpath,
                policy,
                "must be 'NotRequired' when `restartPolicy` is 'Never'",
            ));
        }
    }
    if let Some(sc) = get(c, "securityContext") {
        let sp = p("securityContext");
        for f in ["runAsUser", "runAsGroup"] {
            if let Some(id) = int(sc, f)
                && !(0..=MAX_INT32).contains(&id)
            {
                errs.push(invalid_num(
                    child(&sp, f),
                    id,
                    inclusive_range_error(0, MAX_INT32),
                ));
            }
        }
        if let Some(pm) = super::json::opt_str(sc, "procMount")
            && !matches!(pm, "Default" | "Unmasked")
        {
            errs.push(not_supported(
                child(&sp, "procMount"),
                pm,
                &["Default", "Unmasked"],
            ));
        }
        validate_seccomp(errs, sc, &sp);
        if boolean(sc, "allowPrivilegeEscalation") == Some(false)
            && boolean(sc, "privileged") == Some(true)
        {
            errs.push(invalid_raw(
                &sp,
                sc.to_string(),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            ));
        }
    }
}

fn validate_seccomp(errs: &mut Vec<FieldError>, sc: &Value, path: &str) {
    let Some(profile) = get(sc, "seccompProfile") else {
        return;
    };
    let pp = child(path, "seccompProfile");
    match str_of(profile, "type") {
        "Localhost" => {
            if get(profile, "localhostProfile").is_none() {
                errs.push(required(
                    child(&pp, "localhostProfile"),
                    "must be set when seccomp type is Localhost",
                ));
            }
        }
        "RuntimeDefault" | "Unconfined" => {}
        "" => errs.push(required(
            child(&pp, "type"),
            "type is required when seccompProfile is set",
        )),
        other => errs.push(not_supported(
            child(&pp, "type"),
            other,
            &["Localhost", "RuntimeDefault", "Unconfined"],
        )),
    }
}

fn validate_container_ports(errs: &mut Vec<FieldError>, ports: &[Value], path: &str) {
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = index(path, i);
        let name = str_of(port, "name");
        if !name.is_empty() {
            let msgs = is_port_name(name);
            if !msgs.is_empty() {
                for msg in msgs {
                    errs.push(invalid_str(child(&pp, "name"), name, msg));
                }
            } else if !names.insert(name) {
                errs.push(duplicate(child(&pp, "name"), gofmt::quote(name)));
            }
        }
        match int(port, "containerPort").unwrap_or(0) {
            0 => errs.push(required(child(&pp, "containerPort"), "")),
            n => {
                for msg in is_port_num(n) {
                    errs.push(invalid_num(child(&pp, "containerPort"), n, msg));
                }
            }
        }
        let host_port = int(port, "hostPort").unwrap_or(0);
        if host_port != 0 {
            for msg in is_port_num(host_port) {
                errs.push(invalid_num(child(&pp, "hostPort"), host_port, msg));
            }
        }
        validate_protocol(errs, port, &child(&pp, "protocol"));
    }
}

/// Port protocols: required, one of SCTP/TCP/UDP (listed sorted, as Kubernetes lists a set).
pub(crate) fn validate_protocol(errs: &mut Vec<FieldError>, port: &Value, path: &str) {
    match str_of(port, "protocol") {
        "TCP" | "UDP" | "SCTP" => {}
        "" => errs.push(required(path, "")),
        other => errs.push(not_supported(path, other, &["SCTP", "TCP", "UDP"])),
    }
}

const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const CONVERTIBLE_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const RESOURCE_FIELD_PATHS: &[&str] = &[
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn validate_env(errs: &mut Vec<FieldError>, env: &[Value], path: &str) {
    for (i, ev) in env.iter().enumerate() {
        let ep = index(path, i);
        let name = str_of(ev, "name");
        if name.is_empty() {
            errs.push(required(child(&ep, "name"), ""));
        } else {
            for msg in is_env_var_name(name) {
                errs.push(invalid_str(child(&ep, "name"), name, msg));
            }
        }
        let Some(from) = get(ev, "valueFrom") else {
            continue;
        };
        let fp = child(&ep, "valueFrom");
        let mut sources = 0;
        if let Some(fr) = get(from, "fieldRef") {
            sources += 1;
            validate_object_field_selector(errs, fr, &child(&fp, "fieldRef"));
        }
        if let Some(rr) = get(from, "resourceFieldRef") {
            sources += 1;
            let rp = child(&fp, "resourceFieldRef");
            let resource = str_of(rr, "resource");
            if resource.is_empty() {
                errs.push(required(child(&rp, "resource"), ""));
            } else if !RESOURCE_FIELD_PATHS.contains(&resource)
                && !resource.starts_with("requests.hugepages-")
                && !resource.starts_with("limits.hugepages-")
            {
                errs.push(not_supported(
                    child(&rp, "resource"),
                    resource,
                    RESOURCE_FIELD_PATHS,
                ));
            }
        }
        for f in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(r) = get(from, f) {
                sources += 1;
                let rp = child(&fp, f);
                let n = str_of(r, "name");
                for msg in NameRule::Dns1123Subdomain.check(n, false) {
                    errs.push(invalid_str(child(&rp, "name"), n, msg));
                }
                let k = str_of(r, "key");
                if k.is_empty() {
                    errs.push(required(child(&rp, "key"), ""));
                } else {
                    for msg in is_config_map_key(k) {
                        errs.push(invalid_str(child(&rp, "key"), k, msg));
                    }
                }
            }
        }
        if sources == 0 {
            errs.push(invalid_str(
                &fp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !str_of(ev, "value").is_empty() {
            errs.push(invalid_str(
                &fp,
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if sources > 1 {
            errs.push(invalid_str(
                &fp,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn validate_object_field_selector(errs: &mut Vec<FieldError>, fs: &Value, path: &str) {
    if str_of(fs, "apiVersion").is_empty() {
        errs.push(required(child(path, "apiVersion"), ""));
        return;
    }
    let fp = str_of(fs, "fieldPath");
    if fp.is_empty() {
        errs.push(required(child(path, "fieldPath"), ""));
        return;
    }
    // `metadata.labels['key']` style subscripts.
    if let Some((base, rest)) = fp.split_once('[') {
        let sub = rest
            .strip_suffix(']')
            .and_then(|s| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')));
        if let Some(sub) = sub {
            match base {
                "metadata.annotations" => {
                    for msg in is_qualified_name(&sub.to_lowercase()) {
                        errs.push(invalid_str(path, &sub.to_lowercase(), msg));
                    }
                }
                "metadata.labels" => {
                    for msg in is_qualified_name(sub) {
                        errs.push(invalid_str(path, sub, msg));
                    }
                }
                _ => errs.push(invalid_str(path, base, "does not support subscript")),
            }
            return;
        }
    }
    if !CONVERTIBLE_FIELD_PATHS.contains(&fp) {
        errs.push(invalid_str(
            child(path, "fieldPath"),
            fp,
            format!("error converting fieldPath: field label not supported: {fp}"),
        ));
    } else if !ENV_FIELD_PATHS.contains(&fp) {
        errs.push(not_supported(child(path, "fieldPath"), fp, ENV_FIELD_PATHS));
    }
}

fn validate_env_from(errs: &mut Vec<FieldError>, env_from: &[Value], path: &str) {
    for (i, ef) in env_from.iter().enumerate() {
        let ep = index(path, i);
        let prefix = str_of(ef, "prefix");
        if !prefix.is_empty() {
            for msg in is_env_var_name(prefix) {
                errs.push(invalid_str(child(&ep, "prefix"), prefix, msg));
            }
        }
        let mut sources = 0;
        for f in ["configMapRef", "secretRef"] {
            if let Some(r) = get(ef, f) {
                sources += 1;
                let n = str_of(r, "name");
                let np = child(&child(&ep, f), "name");
                if n.is_empty() {
                    errs.push(required(&np, ""));
                } else {
                    for msg in NameRule::Dns1123Subdomain.check(n, true) {
                        errs.push(invalid_str(&np, n, msg));
                    }
                }
            }
        }
        if sources == 0 {
            errs.push(invalid_str(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if sources > 1 {
            errs.push(invalid_str(
                path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn validate_volume_mounts(
    errs: &mut Vec<FieldError>,
    c: &Value,
    volumes: &Volumes<'_>,
    path: &str,
) {
    let devices: BTreeMap<&str, &str> = arr(c, "volumeDevices")
        .iter()
        .map(|d| (str_of(d, "name"), str_of(d, "devicePath")))
        .collect();
    let mut mount_points = BTreeSet::new();
    for (i, m) in arr(c, "volumeMounts").iter().enumerate() {
        let mp = index(path, i);
        let name = str_of(m, "name");
        let mount_path = str_of(m, "mountPath");
        if name.is_empty() {
            errs.push(required(child(&mp, "name"), ""));
        }
        if !volumes.contains_key(name) {
            errs.push(not_found(child(&mp, "name"), gofmt::quote(name)));
        }
        if mount_path.is_empty() {
            errs.push(required(child(&mp, "mountPath"), ""));
        }
        if !mount_points.insert(mount_path) {
            errs.push(invalid_str(
                child(&mp, "mountPath"),
                mount_path,
                "must be unique",
            ));
        }
        if devices.contains_key(name) {
            errs.push(invalid_str(
                child(&mp, "name"),
                name,
                "must not already exist in volumeDevices",
            ));
        }
        if devices.values().any(|d| *d == mount_path) {
            errs.push(invalid_str(
                child(&mp, "mountPath"),
                mount_path,
                "must not already exist as a path in volumeDevices",
            ));
        }
        let sub_path = str_of(m, "subPath");
        let sub_path_expr = str_of(m, "subPathExpr");
        if volumes.get(name) == Some(&"image") {
            if !sub_path.is_empty() {
                errs.push(invalid_str(
                    child(&mp, "subPath"),
                    sub_path,
                    "not allowed in image volume sources",
                ));
            }
            if !sub_path_expr.is_empty() {
                errs.push(invalid_str(
                    child(&mp, "subPathExpr"),
                    sub_path_expr,
                    "not allowed in image volume sources",
                ));
            }
        }
        if !sub_path.is_empty() {
            validate_local_descending_path(errs, sub_path, &child(path, "subPath"));
        }
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                errs.push(invalid_str(
                    child(&mp, "subPathExpr"),
                    sub_path_expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            validate_local_descending_path(errs, sub_path_expr, &child(path, "subPathExpr"));
        }
        if let Some(mprop) = super::json::opt_str(m, "mountPropagation")
            && !matches!(mprop, "None" | "HostToContainer" | "Bidirectional")
        {
            errs.push(not_supported(
                child(path, "mountPropagation"),
                mprop,
                &["Bidirectional", "HostToContainer", "None"],
            ));
        }
    }
}

fn validate_volume_devices(
    errs: &mut Vec<FieldError>,
    c: &Value,
    volumes: &Volumes<'_>,
    path: &str,
) {
    let mounts: BTreeMap<&str, &str> = arr(c, "volumeMounts")
        .iter()
        .map(|m| (str_of(m, "name"), str_of(m, "mountPath")))
        .collect();
    let mut names = BTreeSet::new();
    let mut paths = BTreeSet::new();
    for (i, d) in arr(c, "volumeDevices").iter().enumerate() {
        let dp = index(path, i);
        let name = str_of(d, "name");
        let device_path = str_of(d, "devicePath");
        let kind = volumes.get(name);
        if name.is_empty() {
            errs.push(required(child(&dp, "name"), ""));
        }
        if names.contains(name) {
            errs.push(invalid_str(child(&dp, "name"), name, "must be unique"));
        }
        match kind {
            Some(&"persistentVolumeClaim") | Some(&"ephemeral") => {}
            Some(_) => errs.push(invalid_str(
                child(&dp, "name"),
                name,
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            )),
            None => errs.push(not_found(child(&dp, "name"), gofmt::quote(name))),
        }
        if device_path.is_empty() {
            errs.push(required(child(&dp, "devicePath"), ""));
        }
        if paths.contains(device_path) {
            errs.push(invalid_str(
                child(&dp, "devicePath"),
                device_path,
                "must be unique",
            ));
        }
        if device_path.split('/').any(|p| p == "..") {
            errs.push(invalid_str(
                child(&dp, "devicePath"),
                device_path,
                "can not contain backsteps ('..')",
            ));
        } else {
            paths.insert(device_path);
        }
        if mounts.contains_key(name) {
            errs.push(invalid_str(
                child(&dp, "name"),
                name,
                "must not already exist in volumeMounts",
            ));
        }
        if mounts.values().any(|m| *m == device_path) {
            errs.push(invalid_str(
                child(&dp, "devicePath"),
                device_path,
                "must not already exist as a path in volumeMounts",
            ));
        }
        if !name.is_empty() {
            names.insert(name);
        }
    }
}

const STANDARD_CONTAINER_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];
const STANDARD_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
];

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// Native resources (no domain, or a `kubernetes.io/` one) other than hugepages may overcommit.
fn overcommit_allowed(name: &str) -> bool {
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    native && !is_hugepages(name)
}

fn validate_container_resource_name(errs: &mut Vec<FieldError>, name: &str, path: &str) {
    let before = errs.len();
    for msg in is_qualified_name(name) {
        errs.push(invalid_str(path, name, msg));
    }
    if errs.len() != before {
        return;
    }
    if !name.contains('/') {
        if !STANDARD_RESOURCES.contains(&name) && !is_hugepages(name) {
            errs.push(invalid_str(
                path,
                name,
                "must be a standard resource type or fully qualified",
            ));
        }
        if !STANDARD_CONTAINER_RESOURCES.contains(&name) && !is_hugepages(name) {
            errs.push(invalid_str(
                path,
                name,
                "must be a standard resource for containers",
            ));
        }
    } else if !name.contains("kubernetes.io/") && name.starts_with("requests.") {
        errs.push(invalid_str(
            path,
            name,
            "doesn't follow extended resource name standard",
        ));
    }
}

fn validate_quantity_value(errs: &mut Vec<FieldError>, raw: &str, path: &str) -> Option<Quantity> {
    let q = Quantity::parse(raw)?;
    if q.nanos < 0 {
        errs.push(invalid_str(
            path,
            &q.canonical(),
            "must be greater than or equal to 0",
        ));
    }
    Some(q)
}

/// `ValidateContainerResourceRequirements`.
fn validate_resources(
    errs: &mut Vec<FieldError>,
    res: &Value,
    claims: &BTreeSet<&str>,
    path: &str,
) {
    let lim_path = child(path, "limits");
    let req_path = child(path, "requests");
    let limits = str_map(res, "limits");
    let mut cpu_or_mem = false;
    let mut hugepages = false;
    for (name, raw) in &limits {
        let fp = key(&lim_path, name);
        validate_container_resource_name(errs, name, &fp);
        validate_quantity_value(errs, raw, &fp);
        cpu_or_mem |= matches!(*name, "cpu" | "memory");
        hugepages |= is_hugepages(name);
    }
    for (name, raw) in str_map(res, "requests") {
        let fp = key(&req_path, name);
        validate_container_resource_name(errs, name, &fp);
        let request = validate_quantity_value(errs, raw, &fp);
        let limit = limits
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, l)| Quantity::parse(l));
        match (request, limit) {
            (Some(req), Some(lim)) => {
                if req.nanos != lim.nanos && !overcommit_allowed(name) {
                    errs.push(invalid_str(
                        &req_path,
                        &req.canonical(),
                        format!("must be equal to {name} limit of {}", lim.canonical()),
                    ));
                } else if req.nanos > lim.nanos {
                    errs.push(invalid_str(
                        &req_path,
                        &req.canonical(),
                        format!(
                            "must be less than or equal to {name} limit of {}",
                            lim.canonical()
                        ),
                    ));
                }
            }
            (_, None) if !overcommit_allowed(name) => {
                errs.push(required(
                    &lim_path,
                    "Limit must be set for non overcommitable resources",
                ));
            }
            _ => {}
        }
        cpu_or_mem |= matches!(name, "cpu" | "memory");
        hugepages |= is_hugepages(name);
    }
    if hugepages && !cpu_or_mem {
        errs.push(forbidden(path, "HugePages require cpu or memory"));
    }
    let mut seen = BTreeSet::new();
    for (i, claim) in arr(res, "claims").iter().enumerate() {
        let cp = index(&child(path, "claims"), i);
        let name = str_of(claim, "name");
        if name.is_empty() {
            errs.push(required(&cp, ""));
            continue;
        }
        if !seen.insert(name) {
            errs.push(duplicate(&cp, gofmt::quote(name)));
        }
        if !claims.contains(name) {
            let mut e = not_found(&cp, gofmt::quote(name));
            e.detail = if claims.is_empty() {
                "must be one of the names in pod.spec.resourceClaims which is empty".to_owned()
            } else {
                let list: Vec<&str> = claims.iter().copied().collect();
                format!(
                    "must be one of the names in pod.spec.resourceClaims: {}",
                    list.join(", ")
                )
            };
            errs.push(e);
        }
    }
}

fn validate_probes(errs: &mut Vec<FieldError>, c: &Value, grace: Option<i64>, path: &str) {
    for (field, success_must_be_one, no_grace) in [
        ("livenessProbe", true, false),
        ("readinessProbe", false, true),
        ("startupProbe", true, false),
    ] {
        let Some(probe) = get(c, field) else { continue };
        let pp = child(path, field);
        validate_handler(errs, probe, false, grace, &pp);
        for f in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            nonnegative(errs, &child(&pp, f), int(probe, f));
        }
        if let Some(t) = int(probe, "terminationGracePeriodSeconds") {
            if t <= 0 {
                errs.push(invalid_num(
                    child(&pp, "terminationGracePeriodSeconds"),
                    t,
                    "must be greater than 0",
                ));
            }
            if no_grace {
                errs.push(invalid_num(
                    child(&pp, "terminationGracePeriodSeconds"),
                    t,
                    "must not be set for readinessProbes",
                ));
            }
        }
        if success_must_be_one {
            let st = int(probe, "successThreshold").unwrap_or(0);
            if st != 1 {
                errs.push(invalid_num(child(&pp, "successThreshold"), st, "must be 1"));
            }
        }
    }
}

fn validate_lifecycle(errs: &mut Vec<FieldError>, lc: &Value, grace: Option<i64>, path: &str) {
    for hook in ["postStart", "preStop"] {
        if let Some(h) = get(lc, hook) {
            validate_handler(errs, h, true, grace, &child(path, hook));
        }
    }
}

/// `validateHandler`: exactly one handler. `lifecycle` allows `sleep`, probes allow `grpc`.
fn validate_handler(
    errs: &mut Vec<FieldError>,
    h: &Value,
    lifecycle: bool,
    grace: Option<i64>,
    path: &str,
) {
    let kinds: &[&str] = if lifecycle {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    } else {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    };
    let mut count = 0;
    for kind in kinds {
        let Some(action) = get(h, kind) else { continue };
        let ap = child(path, kind);
        if count > 0 {
            errs.push(forbidden(&ap, "may not specify more than 1 handler type"));
            continue;
        }
        count += 1;
        match *kind {
            "exec" => {
                if arr(action, "command").is_empty() {
                    errs.push(required(child(&ap, "command"), ""));
                }
            }
            "httpGet" => {
                if str_of(action, "path").is_empty() {
                    errs.push(required(child(&ap, "path"), ""));
                }
                validate_port_num_or_name(errs, action.get("port"), &child(&ap, "port"));
                let scheme = str_of(action, "scheme");
                if !matches!(scheme, "HTTP" | "HTTPS") {
                    errs.push(not_supported(
                        child(&ap, "scheme"),
                        scheme,
                        &["HTTP", "HTTPS"],
                    ));
                }
                for header in arr(action, "httpHeaders") {
                    let n = str_of(header, "name");
                    for msg in is_http_header_name(n) {
                        errs.push(invalid_str(child(&ap, "httpHeaders"), n, msg));
                    }
                }
            }
            "tcpSocket" => validate_port_num_or_name(errs, action.get("port"), &child(&ap, "port")),
            "grpc" => {
                let port = int(action, "port").unwrap_or(0);
                for msg in is_port_num(port) {
                    errs.push(invalid_num(child(&ap, "port"), port, msg));
                }
            }
            _ => {
                let secs = int(action, "seconds").unwrap_or(0);
                if let Some(g) = grace
                    && (secs < 0 || secs > g)
                {
                    errs.push(invalid_num(
                        &ap,
                        secs,
                        format!(
                            "must be non-negative and less than terminationGracePeriodSeconds ({g})"
                        ),
                    ));
                }
            }
        }
    }
    if count == 0 {
        errs.push(required(path, "must specify a handler type"));
    }
}

/// `ValidatePortNumOrName` of an IntOrString (a JSON number or string).
pub(crate) fn validate_port_num_or_name(
    errs: &mut Vec<FieldError>,
    port: Option<&Value>,
    path: &str,
) {
    match port {
        Some(Value::String(name)) => {
            for msg in is_port_name(name) {
                errs.push(invalid_str(path, name, msg));
            }
        }
        Some(v) => {
            let n = v.as_i64().unwrap_or(0);
            for msg in is_port_num(n) {
                errs.push(invalid_num(path, n, msg));
            }
        }
        None => {
            for msg in is_port_num(0) {
                errs.push(invalid_num(path, 0, msg));
            }
        }
    }
}

fn check_host_port_conflicts(errs: &mut Vec<FieldError>, containers: &[Value], path: &str) {
    let mut seen = BTreeSet::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, port) in arr(c, "ports").iter().enumerate() {
            let hp = int(port, "hostPort").unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{hp}",
                str_of(port, "protocol"),
                str_of(port, "hostIP")
            );
            if !seen.insert(key.clone()) {
                errs.push(duplicate(
                    child(&index(&child(&index(path, ci), "ports"), pi), "hostPort"),
                    gofmt::quote(&key),
                ));
            }
        }
    }
}

fn validate_host_network(errs: &mut Vec<FieldError>, spec: &Value, path: &str, is_pod: bool) {
    if boolean(spec, "hostNetwork") != Some(true) {
        return;
    }
    for (i, c) in arr(spec, "containers").iter().enumerate() {
        for (j, port) in arr(c, "ports").iter().enumerate() {
            let hp = int(port, "hostPort").unwrap_or(0);
            let cp = int(port, "containerPort").unwrap_or(0);
            if (is_pod || hp != 0) && hp != cp {
                errs.push(invalid_num(
                    child(
                        &index(&child(&index(&child(path, "containers"), i), "ports"), j),
                        "hostPort",
                    ),
                    hp,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
}

fn validate_pod_security_context(errs: &mut Vec<FieldError>, spec: &Value, path: &str) {
    let Some(sc) = get(spec, "securityContext") else {
        return;
    };
    for f in ["fsGroup", "runAsUser", "runAsGroup"] {
        if let Some(id) = int(sc, f)
            && !(0..=MAX_INT32).contains(&id)
        {
            errs.push(invalid_num(
                child(path, f),
                id,
                inclusive_range_error(0, MAX_INT32),
            ));
        }
    }
    for (i, g) in arr(sc, "supplementalGroups").iter().enumerate() {
        let id = g.as_i64().unwrap_or(0);
        if !(0..=MAX_INT32).contains(&id) {
            errs.push(invalid_num(
                index(&child(path, "supplementalGroups"), i),
                id,
                inclusive_range_error(0, MAX_INT32),
            ));
        }
    }
    if boolean(spec, "shareProcessNamespace") == Some(true)
        && boolean(spec, "hostPID") == Some(true)
    {
        errs.push(invalid_num(
            child(path, "shareProcessNamespace"),
            true,
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    let mut names = BTreeSet::new();
    for (i, s) in arr(sc, "sysctls").iter().enumerate() {
        let np = child(&index(&child(path, "sysctls"), i), "name");
        let name = str_of(s, "name");
        if name.is_empty() {
            errs.push(required(&np, ""));
        } else if !is_sysctl_name(name) {
            errs.push(invalid_str(
                &np,
                name,
                "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
            ));
        } else if names.contains(name) {
            errs.push(duplicate(&np, gofmt::quote(name)));
        }
        names.insert(name);
    }
    if let Some(p) = super::json::opt_str(sc, "fsGroupChangePolicy")
        && !matches!(p, "OnRootMismatch" | "Always")
    {
        errs.push(not_supported(
            child(path, "fsGroupChangePolicy"),
            p,
            &["Always", "OnRootMismatch"],
        ));
    }
    validate_seccomp(errs, sc, path);
}

fn is_sysctl_name(name: &str) -> bool {
    name.len() <= 253
        && name.split(['.', '/']).all(|seg| {
            let b = seg.as_bytes();
            match (b.first(), b.last()) {
                (Some(f), Some(l)) => {
                    (f.is_ascii_lowercase() || f.is_ascii_digit())
                        && (l.is_ascii_lowercase() || l.is_ascii_digit())
                        && b.iter().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_'
                        })
                }
                _ => false,
            }
        })
}

fn validate_dns_config(errs: &mut Vec<FieldError>, spec: &Value, policy: &str, path: &str) {
    let config = get(spec, "dnsConfig");
    if policy == "None" {
        let Some(cfg) = config else {
            errs.push(required(
                path,
                "must provide `dnsConfig` when `dnsPolicy` is None",
            ));
            return;
        };
        if arr(cfg, "nameservers").is_empty() {
            errs.push(required(
                child(path, "nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            ));
            return;
        }
    }
    let Some(cfg) = config else { return };
    let servers = arr(cfg, "nameservers");
    if servers.len() > 3 {
        errs.push(invalid_raw(
            child(path, "nameservers"),
            gofmt::string_slice(cfg, "nameservers"),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, ns) in servers.iter().enumerate() {
        let ns = ns.as_str().unwrap_or("");
        for msg in is_ip(ns) {
            errs.push(invalid_str(index(&child(path, "nameservers"), i), ns, msg));
        }
    }
    let searches = arr(cfg, "searches");
    if searches.len() > 32 {
        errs.push(invalid_raw(
            child(path, "searches"),
            gofmt::string_slice(cfg, "searches"),
            "must not have more than 32 search paths",
        ));
    }
    for (i, s) in searches.iter().enumerate() {
        let s = s.as_str().unwrap_or("");
        if s == "." {
            continue;
        }
        let s = s.strip_suffix('.').unwrap_or(s);
        // Relaxed DNS search validation (1.32+): underscores are allowed.
        let ok = s.len() <= 253
            && s.split('.').all(|label| {
                let label = label.strip_prefix('_').unwrap_or(label);
                let b = label.as_bytes();
                match (b.first(), b.last()) {
                    (Some(f), Some(l)) => {
                        (f.is_ascii_lowercase() || f.is_ascii_digit())
                            && (l.is_ascii_lowercase() || l.is_ascii_digit())
                            && b.iter().all(|c| {
                                c.is_ascii_lowercase()
                                    || c.is_ascii_digit()
                                    || *c == b'-'
                                    || *c == b'_'
                            })
                    }
                    _ => false,
                }
            });
        if !ok {
            errs.push(invalid_str(
                index(&child(path, "searches"), i),
                s,
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '_?[a-z0-9]([-_a-z0-9]*[a-z0-9])?(\\._?[a-z0-9]([-_a-z0-9]*[a-z0-9])?)*')",
            ));
        }
    }
    for (i, o) in arr(cfg, "options").iter().enumerate() {
        if str_of(o, "name").is_empty() {
            errs.push(required(
                index(&child(path, "options"), i),
                "must not be empty",
            ));
        }
    }
}

/// `ValidateTolerations`.
pub(crate) fn validate_tolerations(errs: &mut Vec<FieldError>, tolerations: &[Value], path: &str) {
    for (i, t) in tolerations.iter().enumerate() {
        let tp = index(path, i);
        let k = str_of(t, "key");
        let op = str_of(t, "operator");
        let effect = str_of(t, "effect");
        let value = str_of(t, "value");
        if !k.is_empty() {
            validate_label_name(errs, k, &child(&tp, "key"));
        }
        if k.is_empty() && op != "Exists" {
            errs.push(invalid_str(
                child(&tp, "operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if get(t, "tolerationSeconds").is_some() && effect != "NoExecute" {
            errs.push(invalid_str(
                child(&tp, "effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op {
            "Equal" | "" => {
                let msgs = is_label_value(value);
                if !msgs.is_empty() {
                    errs.push(invalid_str(child(&tp, "operator"), value, msgs.join(";")));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(invalid_str(
                        child(&tp, "operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(not_supported(
                child(&tp, "operator"),
                other,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            errs.push(not_supported(
                child(&tp, "effect"),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            ));
        }
    }
}

fn validate_topology_spread(errs: &mut Vec<FieldError>, constraints: &[Value], path: &str) {
    for (i, c) in constraints.iter().enumerate() {
        let cp = index(path, i);
        let skew = int(c, "maxSkew").unwrap_or(0);
        if skew <= 0 {
            errs.push(invalid_num(
                child(&cp, "maxSkew"),
                skew,
                "must be greater than zero",
            ));
        }
        let tk = str_of(c, "topologyKey");
        if tk.is_empty() {
            errs.push(required(child(&cp, "topologyKey"), "can not be empty"));
        }
        let wu = str_of(c, "whenUnsatisfiable");
        if !matches!(wu, "DoNotSchedule" | "ScheduleAnyway") {
            errs.push(not_supported(
                child(&cp, "whenUnsatisfiable"),
                wu,
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
        let repeated = constraints[i + 1..]
            .iter()
            .any(|o| str_of(o, "topologyKey") == tk && str_of(o, "whenUnsatisfiable") == wu);
        if repeated {
            errs.push(duplicate(
                child(&cp, "{topologyKey, whenUnsatisfiable}"),
                gofmt::quote(&format!("{{{tk}, {wu}}}")),
            ));
        }
        if let Some(md) = int(c, "minDomains") {
            if md <= 0 {
                errs.push(invalid_num(
                    child(&cp, "minDomains"),
                    md,
                    "must be greater than zero",
                ));
            }
            if wu != "DoNotSchedule" {
                errs.push(invalid_num(
                    child(&cp, "minDomains"),
                    md,
                    format!("can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {wu}"),
                ));
            }
        }
        validate_label_selector(errs, c.get("labelSelector"), &child(&cp, "labelSelector"));
    }
}

const UPDATABLE_POD_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodUpdate` (the spec part).
fn validate_pod_update(errs: &mut Vec<FieldError>, new: &Value, old: &Value) {
    for field in ["containers", "initContainers"] {
        let (nc, oc) = (arr(new, field), arr(old, field));
        let path = child("spec", field);
        if nc.len() != oc.len() {
            errs.push(forbidden(
                path,
                "pod updates may not add or remove containers",
            ));
            return;
        }
        for (i, c) in nc.iter().enumerate() {
            let image = str_of(c, "image");
            if image.is_empty() {
                errs.push(required(child(&index(&path, i), "image"), ""));
            }
        }
    }
    if let Some(n) = int(new, "activeDeadlineSeconds") {
        if !(0..=MAX_INT32).contains(&n) {
            errs.push(invalid_num(
                "spec.activeDeadlineSeconds",
                n,
                inclusive_range_error(0, MAX_INT32),
            ));
            return;
        }
        if let Some(o) = int(old, "activeDeadlineSeconds")
            && o < n
        {
            errs.push(invalid_num(
                "spec.activeDeadlineSeconds",
                n,
                "must be less than or equal to previous value",
            ));
            return;
        }
    } else if int(old, "activeDeadlineSeconds").is_some() {
        errs.push(invalid_raw(
            "spec.activeDeadlineSeconds",
            "null".to_owned(),
            "must not update from a positive integer to nil value",
        ));
    }
    // Only additions to tolerations; existing ones may change only tolerationSeconds.
    let new_tolerations = arr(new, "tolerations");
    for old_t in arr(old, "tolerations") {
        let found = new_tolerations.iter().any(|nt| {
            let strip = |t: &Value| {
                let mut t = t.clone();
                if let Some(o) = t.as_object_mut() {
                    o.remove("tolerationSeconds");
                }
                t
            };
            strip(old_t) == strip(nt)
        });
        if !found {
            errs.push(forbidden(
                "spec.tolerations",
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            break;
        }
    }
    let old_gates: BTreeSet<&str> = arr(old, "schedulingGates")
        .iter()
        .map(|g| str_of(g, "name"))
        .collect();
    for (i, g) in arr(new, "schedulingGates").iter().enumerate() {
        let name = str_of(g, "name");
        if !old_gates.contains(name) {
            errs.push(forbidden(
                child(&index("spec.schedulingGates", i), "name"),
                format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }
    if new == old {
        return;
    }
    let mut munged = new.clone();
    if let Some(m) = munged.as_object_mut() {
        for field in ["containers", "initContainers"] {
            if let Some(Value::Array(cs)) = m.get_mut(field) {
                for (i, c) in cs.iter_mut().enumerate() {
                    let old_image = arr(old, field)
                        .get(i)
                        .and_then(|oc| oc.get("image"))
                        .cloned();
                    if let Some(o) = c.as_object_mut() {
                        match old_image {
                            Some(img) => o.insert("image".to_owned(), img),
                            None => o.remove("image"),
                        };
                    }
                }
            }
        }
        // Ephemeral containers change through their own subresource only.
        for field in [
            "activeDeadlineSeconds",
            "schedulingGates",
            "tolerations",
            "ephemeralContainers",
        ] {
            match old.get(field) {
                Some(v) => m.insert(field.to_owned(), v.clone()),
                None => m.remove(field),
            };
        }
        let old_grace = int(old, "terminationGracePeriodSeconds");
        if old_grace.is_some_and(|g| g < 0)
            && m.get("terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                == Some(1)
            && let Some(g) = old.get("terminationGracePeriodSeconds")
        {
            m.insert("terminationGracePeriodSeconds".to_owned(), g.clone());
        }
        // Gated pods may gain nodeSelector entries and node affinity.
        if !arr(old, "schedulingGates").is_empty() {
            let old_sel = str_map(old, "nodeSelector");
            let new_obj = Value::Object(m.clone());
            let new_sel = str_map(&new_obj, "nodeSelector");
            if old_sel.iter().all(|kv| new_sel.contains(kv)) {
                match old.get("nodeSelector") {
                    Some(v) => m.insert("nodeSelector".to_owned(), v.clone()),
                    None => m.remove("nodeSelector"),
                };
            }
        }
    }
    if &munged != old {
        let mut lines = Vec::new();
        diff_values("", old, &munged, &mut lines);
        errs.push(forbidden(
            "spec",
            format!(
                "pod updates may not change fields other than {UPDATABLE_POD_FIELDS}\n  core.PodSpec{{\n{}\n  }}\n",
                lines.join("\n")
            ),
        ));
    }
}

/// A short `cmp.Diff`-like listing of the paths where `old` and `new` differ.
fn diff_values(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    if old == new || out.len() >= 20 {
        return;
    }
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
            for k in keys {
                let null = Value::Null;
                diff_values(
                    &child(path, k),
                    o.get(k).unwrap_or(&null),
                    n.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        (Value::Array(o), Value::Array(n)) if o.len() == n.len() => {
            for (i, (a, b)) in o.iter().zip(n).enumerate() {
                diff_values(&index(path, i), a, b, out);
            }
        }
        _ => {
            out.push(format!("- \t{path}: {old}"));
            out.push(format!("+ \t{path}: {new}"));
        }
    }
}

/// The `pods/ephemeralcontainers` subresource's update (kube's
/// `ValidatePodEphemeralContainersUpdate`): ephemeral containers may only be added, each with a
/// unique name and an image, and without the fields a container that is never restarted and holds
/// no resources cannot have.
pub fn validate_ephemeral_containers_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (spec, old_spec) = (
        new.get("spec").unwrap_or(&Value::Null),
        old.get("spec").unwrap_or(&Value::Null),
    );
    let (now, before) = (
        arr(spec, "ephemeralContainers"),
        arr(old_spec, "ephemeralContainers"),
    );
    let path = "spec.ephemeralContainers";
    for (i, old_c) in before.iter().enumerate() {
        let name = str_of(old_c, "name");
        match now.iter().find(|c| str_of(c, "name") == name) {
            Some(c) if c == old_c => {}
            Some(_) => errs.push(forbidden(
                index(path, i),
                "existing ephemeral containers may not be changed",
            )),
            None => errs.push(forbidden(
                path,
                format!("existing ephemeral containers \"{name}\" may not be removed"),
            )),
        }
    }
    let mut names: BTreeSet<String> = ["containers", "initContainers"]
        .iter()
        .flat_map(|f| arr(old_spec, f))
        .map(|c| str_of(c, "name").to_owned())
        .collect();
    for (i, c) in now.iter().enumerate() {
        let at = index(path, i);
        let name = str_of(c, "name");
        if name.is_empty() {
            errs.push(required(child(&at, "name"), ""));
        } else if !names.insert(name.to_owned()) {
            errs.push(duplicate(child(&at, "name"), gofmt::quote(name)));
        }
        if str_of(c, "image").is_empty() {
            errs.push(required(child(&at, "image"), ""));
        }
        for field in [
            "ports",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "lifecycle",
        ] {
            if c.get(field).is_some_and(|v| !v.is_null()) {
                errs.push(forbidden(
                    child(&at, field),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        if c.get("resources")
            .is_some_and(|r| r.as_object().is_some_and(|o| !o.is_empty()))
        {
            errs.push(forbidden(
                child(&at, "resources"),
                "cannot be set for an Ephemeral Container",
            ));
        }
    }
    errs
}
