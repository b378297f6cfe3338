//! Service ClusterIP and NodePort allocation. Each allocated address or port is a store key created
//! with create-if-absent, so two API servers can never hand out the same one.

use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::Bytes;
use capstan_api::FieldError;
use capstan_store::{Store, StoreError};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

const IP_PREFIX: &str = "/registry/ipallocations/";
const PORT_PREFIX: &str = "/registry/nodeportallocations/";
pub(crate) const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

/// The service network: an IPv4 CIDR.
#[derive(Debug, Clone, Copy)]
pub struct ServiceNetwork {
    base: u32,
    size: u32,
}

impl ServiceNetwork {
    /// Parses `a.b.c.d/len`.
    pub fn parse(cidr: &str) -> Option<Self> {
        let (ip, len) = cidr.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let len: u32 = len.parse().ok()?;
        if !(8..=30).contains(&len) {
            return None;
        }
        let size = 1u32 << (32 - len);
        Some(Self {
            base: u32::from(ip) & !(size - 1),
            size,
        })
    }

    /// The first usable address: the `kubernetes` Service's ClusterIP.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// The tenth address: where the cluster DNS Service lives (10.43.0.10 by default).
    pub fn dns(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 10)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip > self.base && ip < self.base + self.size - 1
    }

    pub fn cidr(&self) -> String {
        format!(
            "{}/{}",
            Ipv4Addr::from(self.base),
            32 - self.size.trailing_zeros()
        )
    }
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    u32::from_le_bytes(b)
}

async fn claim(store: &Arc<dyn Store>, key: String, owner: &str) -> ApiResult<bool> {
    match store.create(&key, Bytes::from(owner.to_owned())).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

/// Allocates the ClusterIP of a new Service (a requested one, or a free random one) and writes it into
/// `spec.clusterIP`/`spec.clusterIPs`. Headless (`None`) and ExternalName services get none.
pub(crate) async fn allocate_cluster_ip(
    store: &Arc<dyn Store>,
    network: &ServiceNetwork,
    service: &mut Value,
    owner: &str,
) -> ApiResult<()> {
    let spec = &service["spec"];
    if spec["type"] == "ExternalName" {
        return Ok(());
    }
    let requested = spec["clusterIP"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let ip = match requested.as_deref() {
        Some("None") => {
            service["spec"]["clusterIPs"] = serde_json::json!(["None"]);
            return Ok(());
        }
        Some(text) => {
            let invalid = |detail: String| {
                ApiError::invalid_service(
                    owner,
                    &[FieldError::invalid(
                        "spec.clusterIPs",
                        Value::String(text.into()),
                        detail,
                    )],
                )
            };
            let ip: Ipv4Addr = text
                .parse()
                .map_err(|_| invalid("must be a valid IP address".into()))?;
            if !network.contains(ip) {
                return Err(invalid(format!(
                    "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                    network.cidr()
                )));
            }
            if !claim(store, format!("{IP_PREFIX}{ip}"), owner).await? {
                return Err(invalid(format!(
                    "failed to allocate IP {ip}: provided IP is already allocated"
                )));
            }
            ip
        }
        None => {
            let mut found = None;
            // Random probing; the first address is reserved for the `kubernetes` Service.
            for _ in 0..64 {
                let offset = 2 + random_u32() % (network.size - 3);
                let ip = Ipv4Addr::from(network.base + offset);
                if claim(store, format!("{IP_PREFIX}{ip}"), owner).await? {
                    found = Some(ip);
                    break;
                }
            }
            found.ok_or_else(|| {
                ApiError::internal("failed to allocate a service IP: range is full")
            })?
        }
    };
    service["spec"]["clusterIP"] = Value::String(ip.to_string());
    service["spec"]["clusterIPs"] = serde_json::json!([ip.to_string()]);
    Ok(())
}

/// Allocates node ports for the ports of a NodePort/LoadBalancer Service that have none.
pub(crate) async fn allocate_node_ports(
    store: &Arc<dyn Store>,
    service: &mut Value,
    owner: &str,
) -> ApiResult<()> {
    if !matches!(
        service["spec"]["type"].as_str(),
        Some("NodePort" | "LoadBalancer")
    ) {
        return Ok(());
    }
    let Some(ports) = service["spec"]["ports"].as_array_mut() else {
        return Ok(());
    };
    for (i, port) in ports.iter_mut().enumerate() {
        // 0 means "allocate one", as kube-apiserver reads it (`kubectl create service` sends it).
        if let Some(requested) = port["nodePort"].as_u64().filter(|p| *p != 0) {
            let fits = u16::try_from(requested).is_ok_and(|p| NODE_PORT_RANGE.contains(&p));
            let field = format!("spec.ports[{i}].nodePort");
            if !fits {
                return Err(ApiError::invalid_service(
                    owner,
                    &[FieldError::invalid(
                        field,
                        requested,
                        "provided port is not in the valid range. The range of valid ports is 30000-32767",
                    )],
                ));
            }
            if !claim(store, format!("{PORT_PREFIX}{requested}"), owner).await? {
                return Err(ApiError::invalid_service(
                    owner,
                    &[FieldError::invalid(
                        field,
                        requested,
                        "provided port is already allocated",
                    )],
                ));
            }
            continue;
        }
        let span = u32::from(NODE_PORT_RANGE.end() - NODE_PORT_RANGE.start()) + 1;
        let mut chosen = None;
        for _ in 0..64 {
            let candidate = NODE_PORT_RANGE.start() + (random_u32() % span) as u16;
            if claim(store, format!("{PORT_PREFIX}{candidate}"), owner).await? {
                chosen = Some(candidate);
                break;
            }
        }
        let chosen = chosen
            .ok_or_else(|| ApiError::internal("failed to allocate a node port: range is full"))?;
        port["nodePort"] = Value::from(chosen);
    }
    Ok(())
}

/// Releases the ClusterIP and node ports a Service held.
pub(crate) async fn release(store: &Arc<dyn Store>, service: &Value) {
    let mut keys = Vec::new();
    for ip in service["spec"]["clusterIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if ip != "None" {
            keys.push(format!("{IP_PREFIX}{ip}"));
        }
    }
    for port in service["spec"]["ports"].as_array().into_iter().flatten() {
        if let Some(p) = port["nodePort"].as_u64() {
            keys.push(format!("{PORT_PREFIX}{p}"));
        }
    }
    for key in keys {
        if let Err(e) = store.delete(&key, None).await
            && !matches!(e, StoreError::NotFound { .. })
        {
            tracing::warn!(key, error = %e, "could not release a service allocation");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_network_addresses() {
        let n = ServiceNetwork::parse("10.43.0.0/16").expect("cidr");
        assert_eq!(n.first(), Ipv4Addr::new(10, 43, 0, 1));
        assert_eq!(n.dns(), Ipv4Addr::new(10, 43, 0, 10));
        assert_eq!(n.cidr(), "10.43.0.0/16");
        assert!(n.contains(Ipv4Addr::new(10, 43, 255, 254)));
        assert!(!n.contains(Ipv4Addr::new(10, 44, 0, 1)));
        assert!(ServiceNetwork::parse("10.43.0.0").is_none());
    }
}
