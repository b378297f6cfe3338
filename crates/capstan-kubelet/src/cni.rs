//! The node's pod network: one CNI bridge conflist for this node's podCIDR (bridge + host-local IPAM +
//! portmap for hostPorts + loopback by the runtime). containerd picks the file up when it appears.
//! Other nodes' pods are reached through routes the pod network (`capstan-flannel`) keeps.

use std::path::Path;

use crate::{KubeletConfig, KubeletError};

/// The name of the CNI network (and of the file).
pub const NETWORK: &str = "capstan";
const BRIDGE: &str = "cni0";

/// The conflist JSON for `pod_cidr`; IP allocations live under `agent_dir` (not `/var/lib/cni`) so that
/// each agent's leases are its own.
pub fn conflist(
    agent_dir: &Path,
    pod_cidr: &str,
    mtu: Option<u32>,
    masquerade: bool,
) -> serde_json::Value {
    let mut list = serde_json::json!({
        "cniVersion": "0.4.0",
        "name": NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": masquerade,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": pod_cidr }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": agent_dir.join("cni-ipam").display().to_string(),
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    });
    if let Some(mtu) = mtu {
        list["plugins"][0]["mtu"] = mtu.into();
    }
    list
}

/// Writes the conflist atomically (containerd watches the directory).
pub fn write_conflist(
    conf_dir: &Path,
    config: &KubeletConfig,
    pod_cidr: &str,
) -> Result<(), KubeletError> {
    std::fs::create_dir_all(conf_dir).map_err(|e| KubeletError::io(conf_dir, e))?;
    let path = conf_dir.join(format!("10-{NETWORK}.conflist"));
    let body = serde_json::to_vec_pretty(&conflist(
        &config.data_dir,
        pod_cidr,
        config.pod_mtu,
        config.bridge_masquerade,
    ))
    .map_err(|e| KubeletError::Invalid(e.to_string()))?;
    if std::fs::read(&path).is_ok_and(|old| old == body) {
        return Ok(());
    }
    let tmp = conf_dir.join(format!(".10-{NETWORK}.conflist.tmp"));
    std::fs::write(&tmp, &body).map_err(|e| KubeletError::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| KubeletError::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_uses_the_pod_cidr_and_our_ipam_dir() {
        let c = conflist(Path::new("/data/agent"), "10.42.3.0/24", None, true);
        assert_eq!(c["plugins"][0]["ipMasq"], true);
        assert!(c["plugins"][0].get("mtu").is_none());
        assert_eq!(
            c["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.42.3.0/24"
        );
        assert_eq!(c["plugins"][0]["ipam"]["dataDir"], "/data/agent/cni-ipam");
        assert_eq!(c["plugins"][1]["type"], "portmap");
    }

    #[test]
    fn with_a_pod_network_the_bridge_leaves_masquerading_to_it_and_takes_its_mtu() {
        let c = conflist(Path::new("/data/agent"), "10.42.3.0/24", Some(1450), false);
        assert_eq!(c["plugins"][0]["ipMasq"], false);
        assert_eq!(c["plugins"][0]["mtu"], 1450);
    }
}
