//! HTTP forwarding with connection upgrades (SPDY/WebSocket pass-through) and helpers for the
//! kubelet stream endpoints; depends on hyper/rustls only, never on the API server or kubelet.
//!
//! kubectl reaches a container through two transparent proxies: the API server forwards
//! `pods/{log,exec,attach,portforward}` to the kubelet of the pod's node, and the kubelet forwards
//! exec/attach/port-forward to the container runtime's streaming server. Neither speaks the stream
//! protocols (SPDY/3.1, `v5.channel.k8s.io` WebSocket, ...): [`forward`] sends the request on over
//! HTTP/1.1, streams a plain response back chunk by chunk (`kubectl logs -f`), and when the upstream
//! answers `101 Switching Protocols` splices the two upgraded connections together byte for byte.
//!
//! [`is_upgrade`], [`is_websocket`] and [`websocket_protocols`] classify a request by its headers.

mod body;
mod forward;
mod headers;

pub use body::ForwardBody;
pub use forward::forward;
pub use headers::{is_upgrade, is_websocket, websocket_protocols};

/// Everything that can go wrong while forwarding a request.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The target URI is not an absolute `http` or `https` URI with a host.
    #[error("invalid target {target}: {reason}")]
    InvalidTarget {
        target: String,
        reason: &'static str,
    },
    /// An `https` target was given without a TLS client config.
    #[error("no tls client config for https target {0}")]
    NoTlsConfig(String),
    /// The TLS server name is neither a DNS name nor an IP address.
    #[error("invalid tls server name {0:?}")]
    ServerName(String),
    /// The TCP connection could not be opened.
    #[error("dial tcp {addr}")]
    Dial {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The TCP connection did not open in time.
    #[error("dial tcp {addr}: i/o timeout")]
    DialTimeout { addr: String },
    /// The TLS handshake failed (for instance, the upstream's certificate is not trusted).
    #[error("tls handshake with {addr}")]
    Tls {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The HTTP/1.1 exchange with the upstream failed before a response arrived.
    #[error("request to {addr}")]
    Upstream {
        addr: String,
        #[source]
        source: hyper::Error,
    },
    /// The upstream switched protocols although the request could not be upgraded.
    #[error("upstream switched protocols on a request that cannot be upgraded")]
    UnexpectedUpgrade,
    /// Reading the upstream's response body failed midway.
    #[error("reading the upstream response body")]
    Body(#[source] hyper::Error),
}
