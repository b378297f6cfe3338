//! The node's pod network: one CNI bridge conflist for this node's podCIDR (bridge + host-local IPAM +
//! portmap for hostPorts + loopback by the runtime). containerd picks the file up when it appears.

use std::path::Path;

use crate::KubeletError;

/// The name of the CNI network (and of the file).
pub const NETWORK: &str = "capstan";
const BRIDGE: &str = "cni0";

/// The conflist JSON for `pod_cidr`; IP allocations live under `agent_dir` (not `/var/lib/cni`) so that
/// each agent's leases are its own.
pub fn conflist(agent_dir: &Path, pod_cidr: &str) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": true,
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
    })
}

/// Writes the conflist atomically (containerd watches the directory).
pub fn write_conflist(
    conf_dir: &Path,
    agent_dir: &Path,
    pod_cidr: &str,
) -> Result<(), KubeletError> {
    std::fs::create_dir_all(conf_dir).map_err(|e| KubeletError::io(conf_dir, e))?;
    let path = conf_dir.join(format!("10-{NETWORK}.conflist"));
    let body = serde_json::to_vec_pretty(&conflist(agent_dir, pod_cidr))
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
        let c = conflist(Path::new("/data/agent"), "10.42.3.0/24");
        assert_eq!(
            c["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.42.3.0/24"
        );
        assert_eq!(c["plugins"][0]["ipam"]["dataDir"], "/data/agent/cni-ipam");
        assert_eq!(c["plugins"][1]["type"], "portmap");
    }
}
