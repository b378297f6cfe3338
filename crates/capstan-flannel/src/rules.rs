//! The pod network's iptables rules (pure): pods keep their own address towards other pods (on any
//! node) and are masqueraded only when they leave the cluster network; forwarding of pod traffic is
//! accepted even where the host's FORWARD policy drops. Chain names are flannel's, so that people
//! who know flannel find them.

use crate::model::Cidr;

pub(crate) const POSTROUTING_CHAIN: &str = "FLANNEL-POSTRTG";
pub(crate) const FORWARD_CHAIN: &str = "FLANNEL-FWD";

/// Jumps from the built-in chains to ours (checked with `-C`, inserted with `-I`).
pub(crate) const JUMPS: [(&str, &str, &str); 2] = [
    (
        "nat",
        "POSTROUTING",
        "-m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG",
    ),
    (
        "filter",
        "FORWARD",
        "-m comment --comment \"flanneld forward\" -j FLANNEL-FWD",
    ),
];

/// `iptables-restore --noflush` input declaring (and so flushing) our two chains with their rules.
/// Pod-to-pod packets are ACCEPTed (no NAT) rather than RETURNed, so that masquerade rules further
/// down POSTROUTING — a CNI bridge chain written with `ipMasq` before the pod network was on — do
/// not hide the source; packets marked for masquerading by kube-proxy (0x4000) or by CNI portmap's
/// hostPort hairpin (0x2000) are left to those.
pub(crate) fn render(cluster: Cidr, own: Cidr) -> String {
    let masq = "MASQUERADE --random-fully";
    format!(
        "*nat\n\
         :{POSTROUTING_CHAIN} - [0:0]\n\
         -A {POSTROUTING_CHAIN} -m mark --mark 0x4000/0x4000 -m comment --comment \"kube-proxy masquerades it\" -j RETURN\n\
         -A {POSTROUTING_CHAIN} -m mark --mark 0x2000/0x2000 -m comment --comment \"hostPort hairpin: portmap masquerades it\" -j RETURN\n\
         -A {POSTROUTING_CHAIN} -s {own} -d {cluster} -m comment --comment \"pod to pod: keep the source\" -j ACCEPT\n\
         -A {POSTROUTING_CHAIN} -s {cluster} -d {own} -m comment --comment \"pod to pod: keep the source\" -j ACCEPT\n\
         -A {POSTROUTING_CHAIN} ! -s {cluster} -d {own} -m comment --comment \"to this node's pods\" -j RETURN\n\
         -A {POSTROUTING_CHAIN} -s {cluster} ! -d 224.0.0.0/4 -m comment --comment \"pod leaving the cluster\" -j {masq}\n\
         -A {POSTROUTING_CHAIN} ! -s {cluster} -d {cluster} -m comment --comment \"outside to other nodes' pods\" -j {masq}\n\
         COMMIT\n\
         *filter\n\
         :{FORWARD_CHAIN} - [0:0]\n\
         -A {FORWARD_CHAIN} -s {cluster} -m comment --comment \"pod traffic\" -j ACCEPT\n\
         -A {FORWARD_CHAIN} -d {cluster} -m comment --comment \"pod traffic\" -j ACCEPT\n\
         COMMIT\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        Cidr::parse(text).expect("cidr")
    }

    #[test]
    fn pods_keep_their_address_inside_the_cluster_and_are_masqueraded_outside() {
        let rules = render(cidr("10.42.0.0/16"), cidr("10.42.3.0/24"));
        let nat: Vec<&str> = rules
            .lines()
            .filter(|l| l.starts_with("-A FLANNEL-POSTRTG"))
            .collect();
        assert_eq!(nat.len(), 7);
        assert!(nat[2].starts_with("-A FLANNEL-POSTRTG -s 10.42.3.0/24 -d 10.42.0.0/16 "));
        assert!(nat[2].ends_with("-j ACCEPT"));
        assert!(nat[5].contains("-s 10.42.0.0/16 ! -d 224.0.0.0/4"));
        assert!(nat[5].ends_with("-j MASQUERADE --random-fully"));
        assert!(rules.contains("-A FLANNEL-FWD -d 10.42.0.0/16 "));
    }

    /// The real `iptables-restore` parses the rules (`--test`: nothing is committed).
    #[test]
    fn iptables_restore_accepts_the_rules() {
        use std::io::Write as _;
        let rules = render(cidr("10.42.0.0/16"), cidr("10.42.3.0/24"));
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
}
