//! Container environment: `env` (values, `$(VAR)` expansion, `valueFrom` configMap/secret/field/resource),
//! `envFrom`, and the `KUBERNETES_SERVICE_*` variables every pod gets.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::Api;

use crate::Kubelet;

/// Expands `$(NAME)` from `vars`; `$$(NAME)` escapes; unknown references stay as written (Kubernetes' rule).
pub(crate) fn expand(input: &str, vars: &[(String, String)]) -> String {
    let mut out = String::with_capacity(input.len());
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            if bytes[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if bytes[i + 1] == b'('
                && let Some(end) = input[i + 2..].find(')')
            {
                let name = &input[i + 2..i + 2 + end];
                if let Some((_, v)) = vars.iter().rev().find(|(k, _)| k == name) {
                    out.push_str(v);
                    i += 3 + end;
                    continue;
                }
            }
        }
        let ch = input[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

async fn config_map(k: &Kubelet, ns: &str, name: &str) -> Result<Option<ConfigMap>, String> {
    Api::<ConfigMap>::namespaced(k.client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())
}

async fn secret(k: &Kubelet, ns: &str, name: &str) -> Result<Option<Secret>, String> {
    Api::<Secret>::namespaced(k.client.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())
}

/// Cluster Services every pod needs to know about, read at most every 30 s (each container start
/// would otherwise cost API round trips; every second while there is no cluster DNS).
#[derive(Debug, Default)]
pub(crate) struct ServiceCache {
    inner: tokio::sync::Mutex<Option<(std::time::Instant, Option<Service>, bool)>>,
}

impl ServiceCache {
    async fn get(&self, client: &kube::Client) -> (Option<Service>, bool) {
        let mut guard = self.inner.lock().await;
        // A missing kube-dns is looked up again soon: the server registers it just after start,
        // and the first pods must not miss it for 30 s.
        if let Some((at, svc, dns)) = guard.as_ref()
            && at.elapsed() < std::time::Duration::from_secs(if *dns { 30 } else { 1 })
        {
            return (svc.clone(), *dns);
        }
        let svc = Api::<Service>::namespaced(client.clone(), "default")
            .get_opt("kubernetes")
            .await
            .ok()
            .flatten();
        let dns = Api::<Service>::namespaced(client.clone(), "kube-system")
            .get_opt("kube-dns")
            .await
            .ok()
            .flatten()
            .is_some();
        *guard = Some((std::time::Instant::now(), svc.clone(), dns));
        (svc, dns)
    }

    /// Whether the cluster DNS Service (`kube-system/kube-dns`) exists.
    pub(crate) async fn kube_dns(&self, client: &kube::Client) -> bool {
        self.get(client).await.1
    }
}

/// The service variables for the `kubernetes` Service (Docker-links style, as the kubelet writes them).
async fn service_env(k: &Kubelet) -> Vec<(String, String)> {
    let Some(svc) = k.services.get(&k.client).await.0 else {
        return Vec::new();
    };
    let Some(spec) = svc.spec else {
        return Vec::new();
    };
    let Some(ip) = spec.cluster_ip else {
        return Vec::new();
    };
    let port = spec
        .ports
        .as_ref()
        .and_then(|p| p.first())
        .map(|p| p.port)
        .unwrap_or(443);
    vec![
        ("KUBERNETES_SERVICE_HOST".into(), ip.clone()),
        ("KUBERNETES_SERVICE_PORT".into(), port.to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), port.to_string()),
        ("KUBERNETES_PORT".into(), format!("tcp://{ip}:{port}")),
        (
            format!("KUBERNETES_PORT_{port}_TCP"),
            format!("tcp://{ip}:{port}"),
        ),
        (format!("KUBERNETES_PORT_{port}_TCP_PROTO"), "tcp".into()),
        (format!("KUBERNETES_PORT_{port}_TCP_PORT"), port.to_string()),
        (format!("KUBERNETES_PORT_{port}_TCP_ADDR"), ip),
    ]
}

/// The container's environment in order; an error reads like the kubelet's `CreateContainerConfigError`.
pub(crate) async fn build(
    k: &Kubelet,
    pod: &Pod,
    c: &Container,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut vars: Vec<(String, String)> = service_env(k).await;
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data: BTreeMap<String, String> = if let Some(r) = &from.config_map_ref {
            match config_map(k, &ns, &r.name).await? {
                Some(cm) => cm.data.unwrap_or_default(),
                None if r.optional == Some(true) => BTreeMap::new(),
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        } else if let Some(r) = &from.secret_ref {
            match secret(k, &ns, &r.name).await? {
                Some(s) => s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect(),
                None if r.optional == Some(true) => BTreeMap::new(),
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        } else {
            BTreeMap::new()
        };
        vars.extend(data.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)));
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            expand(v, &vars)
        } else if let Some(src) = &e.value_from {
            if let Some(r) = &src.config_map_key_ref {
                match config_map(k, &ns, &r.name).await? {
                    Some(cm) => match cm.data.and_then(|d| d.get(&r.key).cloned()) {
                        Some(v) => v,
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {ns}/{}",
                                r.key, r.name
                            ));
                        }
                    },
                    None if r.optional == Some(true) => continue,
                    None => return Err(format!("configmap \"{}\" not found", r.name)),
                }
            } else if let Some(r) = &src.secret_key_ref {
                match secret(k, &ns, &r.name).await? {
                    Some(s) => match s.data.and_then(|d| d.get(&r.key).cloned()) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {ns}/{}",
                                r.key, r.name
                            ));
                        }
                    },
                    None if r.optional == Some(true) => continue,
                    None => return Err(format!("secret \"{}\" not found", r.name)),
                }
            } else if let Some(f) = &src.field_ref {
                crate::volumes::field_value(pod, f)?
            } else if let Some(r) = &src.resource_field_ref {
                let mut r = r.clone();
                if r.container_name.is_none() {
                    r.container_name = Some(c.name.clone());
                }
                crate::volumes::resource_value(pod, &r)?
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        vars.push((e.name.clone(), value));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let vars = vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "x".to_string()),
        ];
        for (input, want) in [
            ("$(A)-$(B)", "1-x"),
            ("$$(A)", "$(A)"),
            ("$(MISSING)", "$(MISSING)"),
            ("plain $ sign", "plain $ sign"),
            ("ünï $(A)", "ünï 1"),
            ("$(A", "$(A"),
        ] {
            assert_eq!(expand(input, &vars), want, "{input}");
        }
    }
}
