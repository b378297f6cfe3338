//! Self-registration: the server runs inside `capstan server`, not in a pod, so it writes what a
//! CoreDNS Deployment would get from the cluster itself — the `kube-system/kube-dns` Service
//! (no selector, ClusterIP 10.43.0.10, ports 53/UDP `dns` and 53/TCP `dns-tcp`), an
//! EndpointSlice `kube-dns-<identity>` naming this server's address and real port, and the
//! `kube-dns` Endpoints object.
//!
//! The endpoints controller leaves selector-less services alone and only touches slices labelled
//! `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io`, so nothing else
//! rewrites these. An existing Service is kept; only its `targetPort`s are brought to this
//! server's port.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, Endpoints, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use crate::resolve::LABEL_SERVICE_NAME;

pub(crate) const NAMESPACE: &str = "kube-system";
pub(crate) const SERVICE_NAME: &str = "kube-dns";
const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// Who writes the DNS server's EndpointSlices.
pub(crate) const MANAGED_BY: &str = "dns.capstan.io";
const PORTS: [(&str, &str); 2] = [("dns", "UDP"), ("dns-tcp", "TCP")];

/// What this server announces.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub(crate) cluster_ip: IpAddr,
    pub(crate) address: IpAddr,
    pub(crate) port: u16,
    pub(crate) slice_name: String,
}

/// `kube-dns-<identity>`, the identity made a DNS-1123 label (lowercase alphanumerics and `-`,
/// at most 63 characters in all).
pub(crate) fn slice_name(identity: &str) -> String {
    const PREFIX: &str = "kube-dns-";
    let mapped: String = identity
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    let cut = &trimmed[..trimmed.len().min(63 - PREFIX.len())];
    match cut.trim_end_matches('-') {
        "" => format!("{PREFIX}server"),
        id => format!("{PREFIX}{id}"),
    }
}

impl Registration {
    pub(crate) fn service(&self) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(SERVICE_NAME.into()),
                namespace: Some(NAMESPACE.into()),
                labels: Some(BTreeMap::from([
                    ("k8s-app".into(), "kube-dns".into()),
                    ("kubernetes.io/cluster-service".into(), "true".into()),
                ])),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".into()),
                cluster_ip: Some(self.cluster_ip.to_string()),
                ports: Some(
                    PORTS
                        .iter()
                        .map(|(name, protocol)| ServicePort {
                            name: Some((*name).into()),
                            protocol: Some((*protocol).into()),
                            port: 53,
                            target_port: Some(IntOrString::Int(i32::from(self.port))),
                            ..ServicePort::default()
                        })
                        .collect(),
                ),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    /// `existing` with its `dns`/`dns-tcp` target ports set to this server's port; `None` when
    /// nothing needs to change.
    pub(crate) fn updated_service(&self, existing: &Service) -> Option<Service> {
        let mut svc = existing.clone();
        let want = IntOrString::Int(i32::from(self.port));
        let mut changed = false;
        for port in svc
            .spec
            .iter_mut()
            .flat_map(|s| s.ports.iter_mut().flatten())
        {
            let ours = PORTS.iter().any(|(n, _)| port.name.as_deref() == Some(n));
            if ours && port.target_port.as_ref() != Some(&want) {
                port.target_port = Some(want.clone());
                changed = true;
            }
        }
        svc.metadata.managed_fields = None;
        changed.then_some(svc)
    }

    fn address_type(&self) -> &'static str {
        match self.address {
            IpAddr::V4(_) => "IPv4",
            IpAddr::V6(_) => "IPv6",
        }
    }

    pub(crate) fn endpoint_slice(&self) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(self.slice_name.clone()),
                namespace: Some(NAMESPACE.into()),
                labels: Some(BTreeMap::from([
                    (LABEL_SERVICE_NAME.into(), SERVICE_NAME.into()),
                    (LABEL_MANAGED_BY.into(), MANAGED_BY.into()),
                ])),
                ..ObjectMeta::default()
            },
            address_type: self.address_type().into(),
            endpoints: vec![Endpoint {
                addresses: vec![self.address.to_string()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                ..Endpoint::default()
            }],
            ports: Some(
                PORTS
                    .iter()
                    .map(|(name, protocol)| EndpointPort {
                        name: Some((*name).into()),
                        protocol: Some((*protocol).into()),
                        port: Some(i32::from(self.port)),
                        ..EndpointPort::default()
                    })
                    .collect(),
            ),
        }
    }

    pub(crate) fn endpoints(&self) -> Endpoints {
        Endpoints {
            metadata: ObjectMeta {
                name: Some(SERVICE_NAME.into()),
                namespace: Some(NAMESPACE.into()),
                labels: Some(BTreeMap::from([
                    ("k8s-app".into(), "kube-dns".into()),
                    ("kubernetes.io/cluster-service".into(), "true".into()),
                ])),
                ..ObjectMeta::default()
            },
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![EndpointAddress {
                    ip: self.address.to_string(),
                    ..EndpointAddress::default()
                }]),
                ports: Some(
                    PORTS
                        .iter()
                        .map(|(name, protocol)| CorePort {
                            name: Some((*name).into()),
                            protocol: Some((*protocol).into()),
                            port: i32::from(self.port),
                            ..CorePort::default()
                        })
                        .collect(),
                ),
                ..EndpointSubset::default()
            }]),
        }
    }

    /// Writes whatever differs from the wanted objects; safe to repeat.
    pub(crate) async fn apply(&self, client: &kube::Client) -> Result<(), kube::Error> {
        let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
        match services.get_opt(SERVICE_NAME).await? {
            None => {
                create(&services, &self.service()).await?;
                tracing::info!(cluster_ip = %self.cluster_ip, "created service kube-system/kube-dns");
            }
            Some(existing) => {
                if let Some(updated) = self.updated_service(&existing) {
                    services
                        .replace(SERVICE_NAME, &PostParams::default(), &updated)
                        .await?;
                    tracing::info!(port = self.port, "updated kube-dns target ports");
                }
            }
        }

        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
        let want = self.endpoint_slice();
        match slices.get_opt(&self.slice_name).await? {
            None => create(&slices, &want).await?,
            Some(current) if current.address_type != want.address_type => {
                // The address type is immutable: start over.
                slices
                    .delete(&self.slice_name, &DeleteParams::default())
                    .await?;
                create(&slices, &want).await?;
            }
            Some(current) => {
                let labels_ok = want.metadata.labels.iter().flatten().all(|(k, v)| {
                    current.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v)
                });
                if !labels_ok || current.endpoints != want.endpoints || current.ports != want.ports
                {
                    let mut updated = want.clone();
                    updated.metadata.resource_version = current.metadata.resource_version;
                    slices
                        .replace(&self.slice_name, &PostParams::default(), &updated)
                        .await?;
                }
            }
        }

        let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), NAMESPACE);
        let want = self.endpoints();
        match endpoints.get_opt(SERVICE_NAME).await? {
            None => create(&endpoints, &want).await?,
            Some(current) if current.subsets != want.subsets => {
                let mut updated = current;
                updated.metadata.managed_fields = None;
                updated.subsets = want.subsets;
                endpoints
                    .replace(SERVICE_NAME, &PostParams::default(), &updated)
                    .await?;
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Removes this server's EndpointSlice, so the Service stops sending it queries.
    pub(crate) async fn withdraw(&self, client: &kube::Client) -> Result<(), kube::Error> {
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
        match slices
            .delete(&self.slice_name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Creates `object`; one that appeared meanwhile counts as created (the next pass compares it).
async fn create<K>(api: &Api<K>, object: &K) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration() -> Registration {
        Registration {
            cluster_ip: IpAddr::from([10, 43, 0, 10]),
            address: IpAddr::from([192, 168, 1, 5]),
            port: 40053,
            slice_name: slice_name("node-1"),
        }
    }

    #[test]
    fn identities_become_dns_labels() {
        assert_eq!(slice_name("node-1"), "kube-dns-node-1");
        assert_eq!(
            slice_name("My_Host.example.com"),
            "kube-dns-my-host-example-com"
        );
        assert_eq!(slice_name("--"), "kube-dns-server");
        assert_eq!(slice_name(""), "kube-dns-server");
        let long = slice_name(&format!("{}-x", "a".repeat(53)));
        assert!(long.len() <= 63 && !long.ends_with('-'), "{long}");
    }

    #[test]
    fn the_service_has_no_selector_and_targets_the_real_port() {
        let svc = registration().service();
        let spec = svc.spec.as_ref().expect("spec");
        assert!(spec.selector.is_none());
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.43.0.10"));
        let ports: Vec<_> = spec
            .ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name.as_deref(),
                    p.protocol.as_deref(),
                    p.port,
                    p.target_port.clone(),
                )
            })
            .collect();
        assert_eq!(
            ports,
            [
                (Some("dns"), Some("UDP"), 53, Some(IntOrString::Int(40053))),
                (
                    Some("dns-tcp"),
                    Some("TCP"),
                    53,
                    Some(IntOrString::Int(40053))
                ),
            ]
        );
    }

    #[test]
    fn an_existing_service_only_gets_its_target_ports_fixed() {
        let r = registration();
        let mut existing = r.service();
        existing.metadata.labels = Some(BTreeMap::from([("mine".into(), "yes".into())]));
        assert!(r.updated_service(&existing).is_none());
        let other = Registration { port: 53, ..r };
        let updated = other.updated_service(&existing).expect("changed");
        assert_eq!(updated.metadata.labels, existing.metadata.labels);
        assert!(
            updated
                .spec
                .iter()
                .flat_map(|s| s.ports.iter().flatten())
                .all(|p| p.target_port == Some(IntOrString::Int(53)))
        );
    }

    #[test]
    fn the_slice_names_this_server_with_the_service_and_manager_labels() {
        let slice = registration().endpoint_slice();
        let labels = slice.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get(LABEL_SERVICE_NAME).map(String::as_str),
            Some("kube-dns")
        );
        assert_eq!(
            labels.get(LABEL_MANAGED_BY).map(String::as_str),
            Some(MANAGED_BY)
        );
        assert_eq!(slice.address_type, "IPv4");
        assert_eq!(slice.endpoints[0].addresses, ["192.168.1.5"]);
        assert!(slice.ports.iter().flatten().all(|p| p.port == Some(40053)));
    }
}
