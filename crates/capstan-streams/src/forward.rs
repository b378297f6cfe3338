//! [`forward`]: one request to an upstream over HTTP/1.1, with upgrade pass-through.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::headers::{is_upgrade, strip_hop_by_hop, upstream_request_headers};
use crate::{ForwardBody, StreamError};

/// How long opening the TCP connection and the TLS handshake may take (Go's net/http dialer).
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);

/// The only ALPN protocol offered upstream: upgrades need HTTP/1.1.
const HTTP11: &[u8] = b"http/1.1";

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where a target URI points.
#[derive(Debug)]
struct Endpoint {
    secure: bool,
    /// `host:port` to dial; IPv6 hosts keep their brackets.
    addr: String,
    /// The host without brackets: the default TLS server name.
    host: String,
    /// The `Host` header.
    authority: String,
}

fn endpoint(target: &Uri) -> Result<Endpoint, StreamError> {
    let invalid = |reason| StreamError::InvalidTarget {
        target: target.to_string(),
        reason,
    };
    let secure = match target.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(invalid("scheme must be http or https")),
    };
    let authority = target.authority().ok_or_else(|| invalid("no host"))?;
    let host = authority.host();
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let port = authority
        .port_u16()
        .unwrap_or(if secure { 443 } else { 80 });
    Ok(Endpoint {
        secure,
        addr: format!("{host}:{port}"),
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        authority: authority.as_str().to_owned(),
    })
}

/// Opens the connection to `endpoint`: TCP, then TLS for https (offering only `http/1.1`).
async fn connect(
    endpoint: &Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    server_name: Option<ServerName<'static>>,
) -> Result<Box<dyn Io>, StreamError> {
    let dial = async {
        let tcp = TcpStream::connect(&endpoint.addr)
            .await
            .map_err(|source| StreamError::Dial {
                addr: endpoint.addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        if !endpoint.secure {
            return Ok(Box::new(tcp) as Box<dyn Io>);
        }
        let config = tls.ok_or_else(|| StreamError::NoTlsConfig(endpoint.addr.clone()))?;
        let config = if config.alpn_protocols.is_empty() || config.alpn_protocols == [HTTP11] {
            config
        } else {
            let mut config = (*config).clone();
            config.alpn_protocols = vec![HTTP11.to_vec()];
            Arc::new(config)
        };
        let name = match server_name {
            Some(name) => name,
            None => ServerName::try_from(endpoint.host.clone())
                .map_err(|_| StreamError::ServerName(endpoint.host.clone()))?,
        };
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|source| StreamError::Tls {
                addr: endpoint.addr.clone(),
                source,
            })?;
        Ok(Box::new(stream) as Box<dyn Io>)
    };
    tokio::time::timeout(DIAL_TIMEOUT, dial)
        .await
        .map_err(|_| StreamError::DialTimeout {
            addr: endpoint.addr.clone(),
        })?
}

/// Forwards `req` to `target` (an absolute `http`/`https` URI whose path and query replace the
/// request's) over HTTP/1.1 and returns the upstream's answer.
///
/// The request keeps its method, headers (minus hop-by-hop ones and `Host`, which becomes the
/// target's) and body. An upgrade request (`Connection: Upgrade`) keeps its `Upgrade` header; if the
/// upstream answers `101 Switching Protocols`, the caller gets a 101 with the upstream's headers,
/// and a spawned task copies bytes both ways between the two upgraded connections until they
/// close (the caller's connection must be served with upgrades enabled). Any other answer comes
/// back with its status and headers (minus hop-by-hop ones) and its body streamed frame by frame.
///
/// `tls` is required for https targets; `server_name` defaults to the target's host.
pub async fn forward<B>(
    mut req: Request<B>,
    target: &Uri,
    tls: Option<Arc<rustls::ClientConfig>>,
    server_name: Option<ServerName<'static>>,
) -> Result<Response<ForwardBody>, StreamError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let endpoint = endpoint(target)?;
    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let io = connect(&endpoint, tls, server_name).await?;
    let upstream_error = |source| StreamError::Upstream {
        addr: endpoint.addr.clone(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(upstream_error)?;
    let addr = endpoint.addr.clone();
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%addr, %error, "upstream connection ended with an error");
        }
    });

    let (parts, body) = req.into_parts();
    let mut headers = upstream_request_headers(&parts.headers, upgrade);
    if let Ok(host) = HeaderValue::from_str(&endpoint.authority) {
        headers.insert(http::header::HOST, host);
    }
    let path = target
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let mut upstream_req = Request::new(body);
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = path.parse().map_err(|_| StreamError::InvalidTarget {
        target: target.to_string(),
        reason: "bad path",
    })?;
    *upstream_req.version_mut() = Version::HTTP_11;
    *upstream_req.headers_mut() = headers;
    tracing::trace!(addr = %endpoint.addr, %path, upgrade, "forwarding");
    let mut response = sender
        .send_request(upstream_req)
        .await
        .map_err(upstream_error)?;

    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        return Ok(Response::from_parts(parts, ForwardBody::upstream(body)));
    }
    let Some(client_upgrade) = client_upgrade else {
        return Err(StreamError::UnexpectedUpgrade);
    };
    let mut switching = Response::new(ForwardBody::empty());
    *switching.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *switching.headers_mut() = response.headers().clone();
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    let addr = endpoint.addr;
    tokio::spawn(async move {
        let (client, upstream) = match tokio::join!(client_upgrade, upstream_upgrade) {
            (Ok(client), Ok(upstream)) => (client, upstream),
            (client, upstream) => {
                tracing::debug!(
                    %addr,
                    client_error = client.err().map(|e| e.to_string()),
                    upstream_error = upstream.err().map(|e| e.to_string()),
                    "connection upgrade failed"
                );
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((sent, received)) => tracing::debug!(%addr, sent, received, "stream closed"),
            Err(error) => tracing::debug!(%addr, %error, "stream ended with an error"),
        }
    });
    Ok(switching)
}

#[cfg(test)]
mod tests;
