//! Which headers make a request an upgrade, and which must not cross a proxy (RFC 9110 §7.6.1).

use http::HeaderMap;
use http::header::{CONNECTION, HOST, HeaderName, HeaderValue, UPGRADE};

/// Headers that describe one connection and are never forwarded as they are.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The comma-separated tokens of every value of `name`, lowercased.
fn tokens(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// A connection upgrade request (SPDY or WebSocket): `Connection: Upgrade` and an `Upgrade` header.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE) && tokens(headers, &CONNECTION).iter().any(|t| t == "upgrade")
}

/// An upgrade to WebSocket (`Upgrade: websocket`), as kubectl's exec and port-forward try first.
pub fn is_websocket(headers: &HeaderMap) -> bool {
    is_upgrade(headers) && tokens(headers, &UPGRADE).iter().any(|t| t == "websocket")
}

/// The subprotocols a WebSocket request offers (`Sec-WebSocket-Protocol`), in order.
pub fn websocket_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Removes the hop-by-hop headers, including every header the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in tokens(headers, &CONNECTION) {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The headers to send upstream: the client's, minus hop-by-hop headers and `Host`; an upgrade
/// keeps its `Upgrade` header and `Connection: Upgrade`.
pub(crate) fn upstream_request_headers(incoming: &HeaderMap, upgrade: bool) -> HeaderMap {
    let mut headers = incoming.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(HOST);
    if upgrade {
        for value in incoming.get_all(UPGRADE) {
            headers.append(UPGRADE, value.clone());
        }
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    #[test]
    fn classifies_upgrade_requests() {
        /// (headers, is_upgrade, is_websocket)
        type Case = (&'static [(&'static str, &'static str)], bool, bool);
        let cases: &[Case] = &[
            (&[], false, false),
            (
                &[("connection", "Upgrade"), ("upgrade", "SPDY/3.1")],
                true,
                false,
            ),
            (
                &[
                    ("connection", "keep-alive, upgrade"),
                    ("upgrade", "websocket"),
                ],
                true,
                true,
            ),
            (
                &[
                    ("connection", "close"),
                    ("connection", "UPGRADE"),
                    ("upgrade", "WebSocket"),
                ],
                true,
                true,
            ),
            // An Upgrade header alone is not a request to upgrade, nor is Connection: Upgrade alone.
            (&[("upgrade", "websocket")], false, false),
            (&[("connection", "Upgrade")], false, false),
            (
                &[("connection", "upgraded"), ("upgrade", "websocket")],
                false,
                false,
            ),
        ];
        for (pairs, upgrade, websocket) in cases {
            let map = headers(pairs);
            assert_eq!(is_upgrade(&map), *upgrade, "{pairs:?}");
            assert_eq!(is_websocket(&map), *websocket, "{pairs:?}");
        }
    }

    #[test]
    fn lists_websocket_subprotocols_in_order() {
        let map = headers(&[
            (
                "sec-websocket-protocol",
                "v5.channel.k8s.io, v4.channel.k8s.io",
            ),
            ("sec-websocket-protocol", "channel.k8s.io"),
        ]);
        assert_eq!(
            websocket_protocols(&map),
            ["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"]
        );
        assert!(websocket_protocols(&HeaderMap::new()).is_empty());
    }

    #[test]
    fn upstream_headers_drop_hop_by_hop_and_keep_upgrades() {
        let incoming = headers(&[
            ("host", "apiserver:6443"),
            ("connection", "Upgrade, X-Private"),
            ("x-private", "secret"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
            ("x-stream-protocol-version", "v3.channel.k8s.io"),
            ("user-agent", "kubectl/v1.32.4"),
        ]);
        let upgraded = upstream_request_headers(&incoming, true);
        assert_eq!(upgraded.get(CONNECTION).expect("connection"), "Upgrade");
        assert_eq!(upgraded.get(UPGRADE).expect("upgrade"), "SPDY/3.1");
        assert_eq!(
            upgraded.get_all("x-stream-protocol-version").iter().count(),
            2
        );
        assert_eq!(
            upgraded.get("user-agent").expect("agent"),
            "kubectl/v1.32.4"
        );
        for gone in ["host", "x-private", "keep-alive", "transfer-encoding"] {
            assert!(!upgraded.contains_key(gone), "{gone} forwarded");
        }
        let plain = upstream_request_headers(&incoming, false);
        assert!(!plain.contains_key(UPGRADE));
        assert!(!plain.contains_key(CONNECTION));
        assert_eq!(plain.get_all("x-stream-protocol-version").iter().count(), 2);
    }
}
