//! API discovery: `/api`, `/apis`, group and resource lists, and the aggregated discovery documents
//! (`apidiscovery.k8s.io/v2`) that kubectl asks for first.

use capstan_api::{ResourceInfo, Scope, all_resources, groups};
use http::HeaderMap;
use serde_json::{Value, json};

use crate::metrics_api;
use crate::rest::Reply;

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client accepts aggregated discovery (v2).
pub(crate) fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            m.contains("as=APIGroupDiscoveryList")
                && m.contains("v=v2")
                && m.contains("g=apidiscovery.k8s.io")
        })
}

fn aggregated(items: Vec<Value>) -> Reply {
    let mut reply = Reply::json(
        200,
        &json!({
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": items,
        }),
    );
    reply.content_type = AGGREGATED.into();
    reply
}

fn discoverable(r: &ResourceInfo) -> bool {
    r.plural != "bindings"
}

fn group_item(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|version| {
            json!({"version": version, "resources": version_resources(group, version), "freshness": "Current"})
        })
        .collect();
    json!({
        "metadata": {"name": group, "creationTimestamp": null},
        "versions": versions,
    })
}

fn version_resources(group: &str, version: &str) -> Vec<Value> {
    all_resources()
        .into_iter()
        .filter(|r| r.group == group && r.version == version && discoverable(r))
        .map(|r| {
            let subresources: Vec<Value> = r
                .subresources
                .iter()
                .map(|s| {
                    let (g, v, k) = s.gvk.unwrap_or((r.group, r.version, r.kind));
                    json!({"subresource": s.name, "responseKind": {"group": g, "version": v, "kind": k}, "verbs": s.verbs})
                })
                .collect();
            let mut entry = json!({
                "resource": r.plural,
                "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                "scope": if r.scope == Scope::Namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": r.singular,
                "verbs": r.verbs,
            });
            if !r.short_names.is_empty() {
                entry["shortNames"] = json!(r.short_names);
            }
            if !r.categories.is_empty() {
                entry["categories"] = json!(r.categories);
            }
            if !subresources.is_empty() {
                entry["subresources"] = json!(subresources);
            }
            entry
        })
        .collect()
}

/// The aggregated discovery entry of `metrics.k8s.io`, which is served without being stored.
fn metrics_group_item() -> Value {
    let resources: Vec<Value> = metrics_api::RESOURCES
        .iter()
        .map(|(plural, kind, namespaced)| {
            json!({
                "resource": plural,
                "responseKind": {"group": metrics_api::GROUP, "version": metrics_api::VERSION, "kind": kind},
                "scope": if *namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": "",
                "verbs": metrics_api::VERBS,
            })
        })
        .collect();
    json!({
        "metadata": {"name": metrics_api::GROUP, "creationTimestamp": null},
        "versions": [{"version": metrics_api::VERSION, "resources": resources, "freshness": "Current"}],
    })
}

/// Named groups with their versions, preferred first: the built-in ones, `metrics.k8s.io`, then
/// the custom resources' groups.
fn named_groups() -> Vec<(&'static str, Vec<&'static str>)> {
    // A built-in group with several versions lists them in registry order (preferred first).
    let mut named: Vec<(&str, Vec<&str>)> = Vec::new();
    for (g, v) in groups().into_iter().filter(|(g, _)| !g.is_empty()) {
        match named.iter_mut().find(|(name, _)| *name == g) {
            Some((_, versions)) => versions.push(v),
            None => named.push((g, vec![v])),
        }
    }
    named.push((metrics_api::GROUP, vec![metrics_api::VERSION]));
    let mut custom: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in capstan_api::custom::registered() {
        match custom.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => custom.push((r.group, vec![r.version])),
        }
    }
    custom.sort_by(|a, b| a.0.cmp(b.0));
    for (_, versions) in &mut custom {
        versions.sort_by(|a, b| version_priority(b).cmp(&version_priority(a)).then(a.cmp(b)));
    }
    named.extend(custom);
    named
}

/// Kubernetes' version order: GA before beta before alpha, higher numbers first, anything else
/// last (compared by name by the caller).
fn version_priority(version: &str) -> (u8, u64, u64) {
    let Some(rest) = version.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    let Ok(major) = rest[..digits].parse::<u64>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    let (level, minor) = if let Some(n) = tail.strip_prefix("beta") {
        (2, n)
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n)
    } else {
        return (0, 0, 0);
    };
    match minor.parse::<u64>() {
        Ok(minor) => (level, major, minor),
        Err(_) => (0, 0, 0),
    }
}

/// `GET /api`.
pub(crate) fn core_versions(headers: &HeaderMap, server_address: &str) -> Reply {
    if wants_aggregated(headers) {
        return aggregated(vec![group_item("", &["v1"])]);
    }
    Reply::json(
        200,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        }),
    )
}

fn api_group(group: &str, versions: &[&str]) -> Value {
    let gvs: Vec<Value> = versions
        .iter()
        .map(|version| json!({"groupVersion": format!("{group}/{version}"), "version": version}))
        .collect();
    let preferred = gvs.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": gvs, "preferredVersion": preferred})
}

/// `GET /apis`.
pub(crate) fn groups_list(headers: &HeaderMap) -> Reply {
    let named = named_groups();
    if wants_aggregated(headers) {
        return aggregated(
            named
                .iter()
                .map(|(g, v)| {
                    if *g == metrics_api::GROUP {
                        metrics_group_item()
                    } else {
                        group_item(g, v)
                    }
                })
                .collect(),
        );
    }
    Reply::json(
        200,
        &json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": named.iter().map(|(g, v)| api_group(g, v)).collect::<Vec<_>>(),
        }),
    )
}

/// `GET /apis/<group>`.
pub(crate) fn group(name: &str) -> Option<Reply> {
    let (group, versions) = named_groups().into_iter().find(|(g, _)| *g == name)?;
    let mut body = api_group(group, &versions);
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    Some(Reply::json(200, &body))
}

/// `GET /api/v1` or `GET /apis/<group>/<version>`.
pub(crate) fn resource_list(group: &str, version: &str) -> Option<Reply> {
    if group == metrics_api::GROUP && version == metrics_api::VERSION {
        let list: Vec<Value> = metrics_api::RESOURCES
            .iter()
            .map(|(plural, kind, namespaced)| {
                json!({"name": plural, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": metrics_api::VERBS})
            })
            .collect();
        return Some(Reply::json(
            200,
            &json!({
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": format!("{group}/{version}"),
                "resources": list,
            }),
        ));
    }
    let matching: Vec<&ResourceInfo> = all_resources()
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if matching.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for r in matching.iter().filter(|r| discoverable(r)) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced(),
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        list.push(entry);
        for s in r.subresources {
            let mut sub = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced(),
                "kind": s.gvk.map(|(_, _, k)| k).unwrap_or(r.kind),
                "verbs": s.verbs,
            });
            if let Some((g, v, _)) = s.gvk {
                sub["group"] = json!(g);
                sub["version"] = json!(v);
            }
            list.push(sub);
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(Reply::json(
        200,
        &json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": list,
        }),
    ))
}
