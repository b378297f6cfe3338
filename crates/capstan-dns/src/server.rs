//! The DNS listeners and the handling of one query: parse, answer cluster names from the
//! current [`Index`], forward everything else, and fit the answer to the transport (UDP answers
//! over the client's size limit go out truncated so it retries over TCP).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use crate::forward::{Forwarder, random_id};
use crate::resolve::{Answer, Index, Zone, resolve, resolve_reverse};
use crate::wire::{
    CLASS_IN, Edns, Flags, Header, Message, Question, RCODE_BADVERS, RCODE_FORMERR, RCODE_NOTIMP,
    RCODE_SERVFAIL, RData, truncate_encoded,
};

/// The UDP payload size this server advertises in its OPT records (the 2020 DNS flag day's).
const EDNS_UDP_SIZE: u16 = 1232;
/// Queries handled at once over UDP; more are dropped (the client retries).
const MAX_UDP_IN_FLIGHT: usize = 1024;
/// TCP connections served at once; more wait to be accepted.
const MAX_TCP_CONNECTIONS: usize = 256;
/// A TCP connection with no query for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// How a query arrived, which bounds the answer's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
}

/// Everything a query needs.
#[derive(Debug)]
pub(crate) struct Handler {
    pub(crate) zone: Zone,
    /// `None` until the caches have synced.
    pub(crate) index: watch::Receiver<Option<Arc<Index>>>,
    pub(crate) forwarder: Forwarder,
}

impl Handler {
    /// The encoded answer to an encoded query; `None` to stay silent (not a query at all).
    pub(crate) async fn handle(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let header = Header::decode(query)?;
        if header.flags.response {
            return None;
        }
        let msg = match Message::decode(query) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::debug!(error = %e, "malformed query");
                return Some(error_reply(&header, RCODE_FORMERR));
            }
        };
        let limit = match transport {
            Transport::Tcp => usize::from(u16::MAX),
            Transport::Udp => msg
                .edns
                .map_or(512, |e| usize::from(e.udp_size.clamp(512, 4096))),
        };
        let reply = |rcode: u16| {
            let mut r = reply_to(&msg);
            r.rcode = rcode;
            r
        };
        if msg.flags.opcode != 0 {
            return Some(fit(&reply(RCODE_NOTIMP), limit));
        }
        if msg.edns.is_some_and(|e| e.version > 0) {
            return Some(fit(&reply(RCODE_BADVERS), limit));
        }
        let [question] = msg.questions.as_slice() else {
            return Some(fit(&reply(RCODE_FORMERR), limit));
        };
        let index = self.index.borrow().clone();
        let local = match &index {
            Some(index) => resolve(&self.zone, index, question)
                .or_else(|| resolve_reverse(&self.zone, index, question)),
            // Not synced: cluster names fail (the client retries); reverse names go upstream.
            None => question
                .name
                .strip_suffix(&self.zone.domain)
                .map(|_| Answer {
                    rcode: RCODE_SERVFAIL,
                    answers: Vec::new(),
                    authority: Vec::new(),
                    additional: Vec::new(),
                    chase: None,
                }),
        };
        match local {
            Some(answer) => {
                tracing::trace!(name = %question.name, qtype = question.qtype, rcode = answer.rcode, "answered");
                let mut r = reply_to(&msg);
                r.flags.authoritative = answer.rcode != RCODE_SERVFAIL;
                r.rcode = answer.rcode;
                r.answers = answer.answers;
                r.authority = answer.authority;
                r.additional = answer.additional;
                if let Some(target) = answer.chase {
                    r.answers.extend(self.chase(target, question.qtype).await);
                }
                Some(fit(&r, limit))
            }
            None => {
                tracing::trace!(name = %question.name, qtype = question.qtype, "forwarded");
                match self.forwarder.exchange(query).await {
                    Some(answer) if answer.len() > limit => truncate_encoded(&answer),
                    Some(answer) => Some(answer),
                    None => Some(fit(&reply(RCODE_SERVFAIL), limit)),
                }
            }
        }
    }

    /// The upstream's address records (and CNAMEs) for an ExternalName service's target.
    async fn chase(&self, target: crate::wire::Name, qtype: u16) -> Vec<crate::wire::Record> {
        let query = Message {
            id: random_id(),
            flags: Flags {
                recursion_desired: true,
                ..Flags::default()
            },
            questions: vec![Question {
                name: target,
                qtype,
                qclass: CLASS_IN,
            }],
            edns: Some(Edns {
                udp_size: EDNS_UDP_SIZE,
                version: 0,
                dnssec_ok: false,
            }),
            ..Message::default()
        };
        let Some(bytes) = self.forwarder.exchange(&query.encode()).await else {
            return Vec::new();
        };
        let Ok(answer) = Message::decode(&bytes) else {
            return Vec::new();
        };
        answer
            .answers
            .into_iter()
            .filter(|r| matches!(r.data, RData::A(_) | RData::Aaaa(_) | RData::Cname(_)))
            .collect()
    }
}

/// An empty reply to `query`, its question echoed.
fn reply_to(query: &Message) -> Message {
    Message {
        id: query.id,
        flags: Flags {
            response: true,
            opcode: query.flags.opcode,
            recursion_desired: query.flags.recursion_desired,
            recursion_available: true,
            checking_disabled: query.flags.checking_disabled,
            ..Flags::default()
        },
        questions: query.questions.clone(),
        edns: query.edns.map(|_| Edns {
            udp_size: EDNS_UDP_SIZE,
            version: 0,
            dnssec_ok: false,
        }),
        ..Message::default()
    }
}

/// A reply to a query that could not be read past its header.
fn error_reply(header: &Header, rcode: u16) -> Vec<u8> {
    Message {
        id: header.id,
        flags: Flags {
            response: true,
            opcode: header.flags.opcode,
            recursion_desired: header.flags.recursion_desired,
            recursion_available: true,
            ..Flags::default()
        },
        rcode,
        ..Message::default()
    }
    .encode()
}

/// Encodes `msg`, truncated (TC, no records) when it is larger than `limit`.
pub(crate) fn fit(msg: &Message, limit: usize) -> Vec<u8> {
    let bytes = msg.encode();
    if bytes.len() <= limit {
        return bytes;
    }
    msg.truncated().encode()
}

pub(crate) async fn serve_udp(
    socket: Arc<UdpSocket>,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_UDP_IN_FLIGHT));
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many queries in flight; dropped");
            continue;
        };
        let query = buf[..n].to_vec();
        let (socket, handler) = (socket.clone(), handler.clone());
        tokio::spawn(async move {
            if let Some(reply) = handler.handle(&query, Transport::Udp).await
                && let Err(e) = socket.send_to(&reply, peer).await
            {
                tracing::debug!(%peer, error = %e, "udp send failed");
            }
            drop(permit);
        });
    }
}

pub(crate) async fn serve_tcp(
    listener: TcpListener,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let (handler, shutdown) = (handler.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = serve_connection(stream, &handler) => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "tcp connection ended");
                    }
                }
            }
            drop(permit);
        });
    }
}

/// Length-prefixed queries, answered in order, until EOF or idleness.
async fn serve_connection(mut stream: TcpStream, handler: &Handler) -> std::io::Result<()> {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        let mut query = vec![0u8; len];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "query timed out"))??;
        let Some(reply) = handler.handle(&query, Transport::Tcp).await else {
            return Ok(());
        };
        let Ok(n) = u16::try_from(reply.len()) else {
            continue;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Name, RCODE_NOERROR, RCODE_NXDOMAIN, TYPE_A, TYPE_SRV};
    use k8s_openapi::api::core::v1::{Service, ServiceSpec};
    use k8s_openapi::api::discovery::v1::{
        Endpoint, EndpointConditions, EndpointPort, EndpointSlice,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::net::IpAddr;

    fn handler(index: Option<Index>) -> Handler {
        let (_tx, rx) = watch::channel(index.map(Arc::new));
        Handler {
            zone: Zone {
                domain: Name::parse("cluster.local").expect("domain"),
                dns_ip: IpAddr::from([10, 43, 0, 10]),
            },
            index: rx,
            forwarder: Forwarder::new(Vec::new()),
        }
    }

    /// A headless service `big` in `default` with `n` ready endpoints on a named port.
    fn big_index(n: u8) -> Index {
        let svc = Service {
            metadata: ObjectMeta {
                name: Some("big".into()),
                namespace: Some("default".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        };
        let slice = EndpointSlice {
            metadata: ObjectMeta {
                name: Some("big-x".into()),
                namespace: Some("default".into()),
                labels: Some([("kubernetes.io/service-name".to_owned(), "big".to_owned())].into()),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: (1..=n)
                .map(|i| Endpoint {
                    addresses: vec![format!("10.42.0.{i}")],
                    conditions: Some(EndpointConditions {
                        ready: Some(true),
                        ..EndpointConditions::default()
                    }),
                    ..Endpoint::default()
                })
                .collect(),
            ports: Some(vec![EndpointPort {
                name: Some("http".into()),
                port: Some(80),
                protocol: Some("TCP".into()),
                ..EndpointPort::default()
            }]),
        };
        Index::build(&[Arc::new(svc)], &[Arc::new(slice)], 1)
    }

    fn query(name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        Message {
            id: 77,
            flags: Flags {
                recursion_desired: true,
                ..Flags::default()
            },
            questions: vec![Question {
                name: Name::parse(name).expect("name"),
                qtype,
                qclass: CLASS_IN,
            }],
            edns: edns.map(|udp_size| Edns {
                udp_size,
                version: 0,
                dnssec_ok: false,
            }),
            ..Message::default()
        }
        .encode()
    }

    async fn ask(h: &Handler, q: &[u8], t: Transport) -> Message {
        let reply = h.handle(q, t).await.expect("a reply");
        Message::decode(&reply).expect("decodable reply")
    }

    #[tokio::test]
    async fn large_udp_answers_are_truncated_and_complete_over_tcp() {
        let h = handler(Some(big_index(100)));
        let q = query("_http._tcp.big.default.svc.cluster.local", TYPE_SRV, None);
        let udp = ask(&h, &q, Transport::Udp).await;
        assert!(udp.flags.truncated);
        assert!(udp.answers.is_empty());
        assert_eq!(udp.questions.len(), 1);
        let tcp = ask(&h, &q, Transport::Tcp).await;
        assert!(!tcp.flags.truncated);
        assert_eq!((tcp.answers.len(), tcp.additional.len()), (100, 100));
        // A large enough EDNS size lets 20 A records through over UDP; 512 bytes do not.
        let h = handler(Some(big_index(40)));
        let a = ask(
            &h,
            &query("big.default.svc.cluster.local", TYPE_A, Some(4096)),
            Transport::Udp,
        )
        .await;
        assert!(!a.flags.truncated);
        assert_eq!(a.answers.len(), 40);
        assert!(a.edns.is_some());
        let a = ask(
            &h,
            &query("big.default.svc.cluster.local", TYPE_A, None),
            Transport::Udp,
        )
        .await;
        assert!(a.flags.truncated);
    }

    #[tokio::test]
    async fn replies_echo_the_id_and_question_and_are_authoritative() {
        let h = handler(Some(big_index(1)));
        let a = ask(
            &h,
            &query("nope.default.svc.cluster.local", TYPE_A, None),
            Transport::Udp,
        )
        .await;
        assert_eq!(a.id, 77);
        assert!(a.flags.response && a.flags.authoritative && a.flags.recursion_desired);
        assert_eq!(a.rcode, RCODE_NXDOMAIN);
        assert_eq!(a.authority.len(), 1);
        assert_eq!(
            a.questions[0].name.to_string(),
            "nope.default.svc.cluster.local."
        );
    }

    #[tokio::test]
    async fn cluster_names_fail_until_the_caches_have_synced() {
        let h = handler(None);
        let a = ask(
            &h,
            &query("big.default.svc.cluster.local", TYPE_A, None),
            Transport::Udp,
        )
        .await;
        assert_eq!(a.rcode, RCODE_SERVFAIL);
    }

    #[tokio::test]
    async fn without_upstreams_outside_names_get_servfail() {
        let h = handler(Some(big_index(1)));
        let a = ask(&h, &query("example.com", TYPE_A, None), Transport::Udp).await;
        assert_eq!(a.rcode, RCODE_SERVFAIL);
        assert!(a.answers.is_empty());
    }

    #[tokio::test]
    async fn malformed_queries_get_formerr_or_silence() {
        let h = handler(Some(big_index(1)));
        // Too short for a header: nothing.
        assert!(h.handle(&[1, 2, 3], Transport::Udp).await.is_none());
        // A response: nothing (no loops between servers).
        let mut resp = query("big.default.svc.cluster.local", TYPE_A, None);
        resp[2] |= 0x80;
        assert!(h.handle(&resp, Transport::Udp).await.is_none());
        // A header promising a question that is not there: FORMERR.
        let mut cut = query("big.default.svc.cluster.local", TYPE_A, None);
        cut.truncate(20);
        let a = ask(&h, &cut, Transport::Tcp).await;
        assert_eq!((a.id, a.rcode), (77, RCODE_FORMERR));
        // Two questions: FORMERR.
        let mut two = Message::decode(&query("a.cluster.local", TYPE_A, None)).expect("decode");
        two.questions.push(two.questions[0].clone());
        let a = ask(&h, &two.encode(), Transport::Udp).await;
        assert_eq!(a.rcode, RCODE_FORMERR);
        // Not a QUERY: NOTIMP.
        let mut notify = query("cluster.local", TYPE_A, None);
        notify[2] |= 4 << 3;
        assert_eq!(ask(&h, &notify, Transport::Udp).await.rcode, RCODE_NOTIMP);
        // EDNS version 1: BADVERS.
        let mut v1 = Message::decode(&query("cluster.local", TYPE_A, Some(1232))).expect("decode");
        if let Some(e) = v1.edns.as_mut() {
            e.version = 1;
        }
        assert_eq!(
            ask(&h, &v1.encode(), Transport::Udp).await.rcode,
            RCODE_BADVERS
        );
        // Random garbage never panics.
        for seed in 0u32..2000 {
            let bytes: Vec<u8> = (0..(seed % 64))
                .map(|i| (seed.wrapping_mul(2654435761).rotate_left(i) & 0xff) as u8)
                .collect();
            let _ = h.handle(&bytes, Transport::Udp).await;
        }
        let ok = ask(
            &h,
            &query("big.default.svc.cluster.local", TYPE_A, None),
            Transport::Udp,
        )
        .await;
        assert_eq!(ok.rcode, RCODE_NOERROR);
    }
}
