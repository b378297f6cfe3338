//! Applying a [`Plan`] with iproute2 (`ip`, `bridge`): read what the kernel holds (`-j` JSON), then
//! one batch of replaces for what is wanted and deletes for what is ours but no longer wanted. Our
//! routes carry their own protocol number, so routes someone else added are never touched.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use capstan_proxy::host::command;
use serde_json::Value;

use crate::FlannelError;
use crate::model::{Cidr, DEVICE, FdbEntry, Neighbour, Plan, Route, VNI, VXLAN_PORT};

/// The `proto` of the routes we own (unassigned in iproute2's `rt_protos`).
pub(crate) const ROUTE_PROTO: &str = "202";

fn json(text: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The interface holding `ip` and its MTU, as `ip -j addr` lists them.
pub(crate) async fn interface_of(ip: Ipv4Addr) -> Option<(String, u32)> {
    let out = command("ip", &["-j", "-4", "addr", "show"], None)
        .await
        .ok()?;
    interface_in(&out, ip)
}

fn interface_in(addr_json: &str, ip: Ipv4Addr) -> Option<(String, u32)> {
    let wanted = ip.to_string();
    json(addr_json).into_iter().find_map(|link| {
        let has = link
            .get("addr_info")?
            .as_array()?
            .iter()
            .any(|a| str_field(a, "local") == wanted);
        let mtu = u32::try_from(link.get("mtu")?.as_u64()?).ok()?;
        has.then(|| (str_field(&link, "ifname").to_owned(), mtu))
    })
}

/// Makes sure the VXLAN device exists as configured (recreating it when its VNI, local address or
/// port differ), holds `address`/32 and is up. Returns its MAC.
pub(crate) async fn ensure_vxlan(
    local: Ipv4Addr,
    address: Ipv4Addr,
    underlay: Option<&(String, u32)>,
) -> Result<String, FlannelError> {
    let current = command("ip", &["-j", "-d", "link", "show", DEVICE], None)
        .await
        .ok()
        .and_then(|out| json(&out).into_iter().next());
    let fits = current.as_ref().is_some_and(|link| {
        let data = &link["linkinfo"]["info_data"];
        link["linkinfo"]["info_kind"] == "vxlan"
            && data["id"].as_u64() == Some(u64::from(VNI))
            && str_field(data, "local") == local.to_string()
            && data["port"].as_u64() == Some(u64::from(VXLAN_PORT))
    });
    if !fits {
        if current.is_some() {
            tracing::info!(
                device = DEVICE,
                "VXLAN device configured differently; recreating it"
            );
            command("ip", &["link", "del", DEVICE], None).await?;
        }
        let (vni, local, port) = (VNI.to_string(), local.to_string(), VXLAN_PORT.to_string());
        let mut args = vec![
            "link",
            "add",
            DEVICE,
            "type",
            "vxlan",
            "id",
            &vni,
            "local",
            &local,
            "dstport",
            &port,
            "nolearning",
        ];
        if let Some((dev, _)) = underlay.filter(|(dev, _)| dev != "lo") {
            args.extend(["dev", dev.as_str()]);
        }
        command("ip", &args, None).await?;
    }
    if let Some((dev, mtu)) = underlay.filter(|(dev, _)| dev != "lo") {
        let mtu = mtu.saturating_sub(crate::model::VXLAN_OVERHEAD).to_string();
        tracing::debug!(underlay = %dev, %mtu, "VXLAN device MTU");
        command("ip", &["link", "set", DEVICE, "mtu", &mtu], None).await?;
    }
    // Exactly one address: this node's subnet's network address (the peers' gateway to our pods).
    let wanted = address.to_string();
    let addrs = command("ip", &["-j", "-4", "addr", "show", "dev", DEVICE], None).await?;
    let held: Vec<String> = json(&addrs)
        .iter()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .map(|a| str_field(&a, "local").to_owned())
        .collect();
    if held != [wanted.clone()] {
        command("ip", &["addr", "flush", "dev", DEVICE], None).await?;
        command(
            "ip",
            &["addr", "add", &format!("{wanted}/32"), "dev", DEVICE],
            None,
        )
        .await?;
    }
    command("ip", &["link", "set", DEVICE, "up"], None).await?;
    let link = command("ip", &["-j", "link", "show", DEVICE], None).await?;
    json(&link)
        .first()
        .map(|l| str_field(l, "address").to_ascii_lowercase())
        .filter(|mac| !mac.is_empty())
        .ok_or_else(|| FlannelError::Device(format!("{DEVICE} has no MAC address")))
}

/// Routes with our protocol number, as the kernel holds them.
fn current_routes(route_json: &str) -> BTreeSet<Route> {
    json(route_json)
        .iter()
        .filter_map(|r| {
            let dst = Cidr::parse(str_field(r, "dst"))?;
            let via = str_field(r, "gateway").parse().ok()?;
            let onlink = r["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f == "onlink"));
            Some(Route {
                dst,
                via,
                onlink_device: onlink.then(|| str_field(r, "dev").to_owned()),
            })
        })
        .collect()
}

fn current_neighbours(neigh_json: &str) -> BTreeSet<Neighbour> {
    json(neigh_json)
        .iter()
        .filter_map(|n| {
            Some(Neighbour {
                ip: str_field(n, "dst").parse().ok()?,
                mac: str_field(n, "lladdr").to_ascii_lowercase(),
            })
        })
        .collect()
}

fn current_fdb(fdb_json: &str) -> BTreeSet<FdbEntry> {
    json(fdb_json)
        .iter()
        .filter_map(|f| {
            Some(FdbEntry {
                mac: str_field(f, "mac").to_ascii_lowercase(),
                dst: str_field(f, "dst").parse().ok()?,
            })
        })
        .collect()
}

fn route_spec(r: &Route) -> String {
    match &r.onlink_device {
        Some(dev) => format!(
            "{} via {} dev {dev} onlink proto {ROUTE_PROTO}",
            r.dst, r.via
        ),
        None => format!("{} via {} proto {ROUTE_PROTO}", r.dst, r.via),
    }
}

/// The `ip -batch` and `bridge -batch` input that turns `current` into `plan`: deletes first (a
/// stale route could shadow a replacement), then replaces for everything wanted (idempotent).
pub(crate) fn batches(
    plan: &Plan,
    routes: &BTreeSet<Route>,
    neighbours: &BTreeSet<Neighbour>,
    fdb: &BTreeSet<FdbEntry>,
) -> (String, String) {
    let mut ip = String::new();
    for r in routes.difference(&plan.routes) {
        ip.push_str(&format!("route del {}\n", route_spec(r)));
    }
    for n in neighbours.difference(&plan.neighbours) {
        ip.push_str(&format!("neigh del {} dev {DEVICE}\n", n.ip));
    }
    for n in &plan.neighbours {
        ip.push_str(&format!(
            "neigh replace {} lladdr {} dev {DEVICE} nud permanent\n",
            n.ip, n.mac
        ));
    }
    for r in &plan.routes {
        ip.push_str(&format!("route replace {}\n", route_spec(r)));
    }
    let mut bridge = String::new();
    for f in fdb.difference(&plan.fdb) {
        bridge.push_str(&format!(
            "fdb del {} dev {DEVICE} dst {} self\n",
            f.mac, f.dst
        ));
    }
    for f in &plan.fdb {
        bridge.push_str(&format!(
            "fdb replace {} dev {DEVICE} dst {} self permanent\n",
            f.mac, f.dst
        ));
    }
    (ip, bridge)
}

/// Brings the kernel in line with `plan`. `vxlan` says whether the device exists to be read.
pub(crate) async fn apply(plan: &Plan, vxlan: bool) -> Result<(), FlannelError> {
    let routes = command(
        "ip",
        &["-j", "-4", "route", "show", "proto", ROUTE_PROTO],
        None,
    )
    .await?;
    let (neighbours, fdb) = if vxlan {
        (
            command("ip", &["-j", "-4", "neigh", "show", "dev", DEVICE], None).await?,
            command("bridge", &["-j", "fdb", "show", "dev", DEVICE], None).await?,
        )
    } else {
        (String::new(), String::new())
    };
    // Forwarding entries first: a route is only useful once its packets can be encapsulated.
    let (ip, bridge) = batches(
        plan,
        &current_routes(&routes),
        &current_neighbours(&neighbours),
        &current_fdb(&fdb),
    );
    if !bridge.is_empty() {
        command("bridge", &["-force", "-batch", "-"], Some(&bridge)).await?;
    }
    if !ip.is_empty() {
        command("ip", &["-force", "-batch", "-"], Some(&ip)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().expect("ip")
    }

    #[test]
    fn the_interface_holding_an_address_is_found_with_its_mtu() {
        let out = r#"[{"ifindex":1,"ifname":"lo","mtu":65536,"addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
            {"ifindex":2,"ifname":"eth0","mtu":1450,"addr_info":[{"family":"inet","local":"192.0.2.2","prefixlen":24}]}]"#;
        assert_eq!(
            interface_in(out, ip("192.0.2.2")),
            Some(("eth0".into(), 1450))
        );
        assert_eq!(
            interface_in(out, ip("127.0.0.1")),
            Some(("lo".into(), 65536))
        );
        assert_eq!(interface_in(out, ip("10.9.9.9")), None);
        assert_eq!(interface_in("not json", ip("10.9.9.9")), None);
    }

    #[test]
    fn stale_entries_are_deleted_and_wanted_ones_replaced() {
        let routes = current_routes(
            r#"[{"dst":"10.42.1.0/24","gateway":"10.42.1.0","dev":"flannel.1","protocol":"202","flags":["onlink"]},
                {"dst":"10.42.9.0/24","gateway":"10.42.9.0","dev":"flannel.1","protocol":"202","flags":["onlink"]}]"#,
        );
        let neighbours = current_neighbours(
            r#"[{"dst":"10.42.9.0","dev":"flannel.1","lladdr":"AA:AA:AA:AA:AA:09","state":["PERMANENT"]}]"#,
        );
        let fdb = current_fdb(
            r#"[{"mac":"aa:aa:aa:aa:aa:09","ifname":"flannel.1","dst":"192.168.1.9","flags":["self"],"state":"permanent"}]"#,
        );
        let mut plan = Plan::default();
        plan.routes.insert(Route {
            dst: Cidr::parse("10.42.1.0/24").expect("cidr"),
            via: ip("10.42.1.0"),
            onlink_device: Some(DEVICE.into()),
        });
        plan.neighbours.insert(Neighbour {
            ip: ip("10.42.1.0"),
            mac: "aa:aa:aa:aa:aa:01".into(),
        });
        plan.fdb.insert(FdbEntry {
            mac: "aa:aa:aa:aa:aa:01".into(),
            dst: ip("192.168.1.1"),
        });
        let (ip_batch, bridge_batch) = batches(&plan, &routes, &neighbours, &fdb);
        assert_eq!(
            ip_batch,
            "route del 10.42.9.0/24 via 10.42.9.0 dev flannel.1 onlink proto 202\n\
             neigh del 10.42.9.0 dev flannel.1\n\
             neigh replace 10.42.1.0 lladdr aa:aa:aa:aa:aa:01 dev flannel.1 nud permanent\n\
             route replace 10.42.1.0/24 via 10.42.1.0 dev flannel.1 onlink proto 202\n"
        );
        assert_eq!(
            bridge_batch,
            "fdb del aa:aa:aa:aa:aa:09 dev flannel.1 dst 192.168.1.9 self\n\
             fdb replace aa:aa:aa:aa:aa:01 dev flannel.1 dst 192.168.1.1 self permanent\n"
        );
    }

    #[test]
    fn host_gw_routes_have_no_device() {
        let routes = current_routes(
            r#"[{"dst":"10.42.3.0/24","gateway":"192.168.1.3","dev":"eth0","protocol":"202","flags":[]}]"#,
        );
        let (ip_batch, bridge_batch) = batches(
            &Plan::default(),
            &routes,
            &BTreeSet::new(),
            &BTreeSet::new(),
        );
        assert_eq!(
            ip_batch,
            "route del 10.42.3.0/24 via 192.168.1.3 proto 202\n"
        );
        assert!(bridge_batch.is_empty());
    }
}
