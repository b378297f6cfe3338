//! Forwarding to the host's resolvers: a query is relayed as received (only its ID changes, so
//! answers cannot be matched to a guessed ID) over UDP from a fresh socket, again over TCP when
//! the answer comes back truncated. Upstreams are tried in order, each for [`UPSTREAM_TIMEOUT`].

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::wire::{HEADER_LEN, Header};

/// How long one upstream gets to answer.
pub(crate) const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this many upstreams are tried for one query (resolv.conf's own limit, `MAXNS`).
const MAX_TRIES: usize = 3;

/// The nameservers of a resolv.conf text, port 53. Scoped IPv6 addresses (`fe80::1%eth0`) are
/// skipped.
pub(crate) fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// A random query ID (std's per-instance random SipHash keys; no crate needed for 16 bits).
pub(crate) fn random_id() -> u16 {
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u8(0);
    (h.finish() & 0xffff) as u16
}

#[derive(Debug, Clone)]
pub(crate) struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
}

impl Forwarder {
    pub(crate) fn new(upstreams: Vec<SocketAddr>) -> Self {
        Self {
            upstreams,
            timeout: UPSTREAM_TIMEOUT,
        }
    }

    /// The first upstream answer to `query` (a whole DNS message), with the query's ID; `None`
    /// when there are no upstreams or none answered in time.
    pub(crate) async fn exchange(&self, query: &[u8]) -> Option<Vec<u8>> {
        let original = Header::decode(query)?.id;
        for upstream in self.upstreams.iter().take(MAX_TRIES) {
            let id = random_id();
            let mut relayed = query.to_vec();
            relayed[..2].copy_from_slice(&id.to_be_bytes());
            match tokio::time::timeout(self.timeout, exchange_one(*upstream, &relayed, id)).await {
                Ok(Ok(mut answer)) => {
                    answer[..2].copy_from_slice(&original.to_be_bytes());
                    return Some(answer);
                }
                Ok(Err(e)) => tracing::debug!(%upstream, error = %e, "upstream failed"),
                Err(_) => tracing::debug!(%upstream, "upstream timed out"),
            }
        }
        None
    }
}

async fn exchange_one(upstream: SocketAddr, query: &[u8], id: u16) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    let answer = loop {
        let n = socket.recv(&mut buf).await?;
        match Header::decode(&buf[..n]) {
            Some(h) if h.id == id && h.flags.response => break buf[..n].to_vec(),
            _ => continue, // a stray or late datagram
        }
    };
    if answer.get(2).is_some_and(|flags| flags & 0x02 != 0) {
        return exchange_tcp(upstream, query, id).await;
    }
    Ok(answer)
}

async fn exchange_tcp(upstream: SocketAddr, query: &[u8], id: u16) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(query.len()).map_err(std::io::Error::other)?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let len = usize::from(stream.read_u16().await?);
    let mut answer = vec![0u8; len];
    stream.read_exact(&mut answer).await?;
    match Header::decode(&answer) {
        Some(h) if h.id == id && answer.len() >= HEADER_LEN => Ok(answer),
        _ => Err(std::io::Error::other("answer does not match the query")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_are_read_in_order() {
        let text = "# generated\nsearch example.com\nnameserver 192.0.2.1\nnameserver  2001:db8::53 \n\
                    nameserver fe80::1%eth0\nnameserver bogus\noptions ndots:5\n";
        assert_eq!(
            parse_resolv_conf(text),
            [
                "192.0.2.1:53".parse::<SocketAddr>().expect("addr"),
                "[2001:db8::53]:53".parse().expect("addr"),
            ]
        );
        assert!(parse_resolv_conf("").is_empty());
    }

    #[test]
    fn query_ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..64).map(|_| random_id()).collect();
        assert!(ids.len() > 32);
    }
}
